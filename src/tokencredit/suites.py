"""Evaluation suites: each paper's benchmark table, as the awesome-perception-aware-rlvr fork
(zsxm1998/awesome-perception-aware-rlvr, eval/config/suites.yaml and benchmarks.yaml) evaluates it.

`eval.suite: <name>` defines one `benchmarks` entry per column of the table, each reading the local
copy of its release named in `eval.suite_paths` (papo_eval, vppo_eval, pope, hallusionbench), and
adds the columns to `eval.benchmarks`. Every suite is scored with the fork's protocol, PAPO-Eval's:

- reasoning columns: the answer in the last \\boxed{} (prompt.answer_format: boxed), rule-based
  match, mean accuracy over 8 samples (avg@8) at temperature 1.0, top-p 1.0, 2,048 new tokens;
- POPE: greedy decoding, macro-F1 over its three subsets; HallusionBench: greedy, question
  accuracy (aAcc) on its 951 image questions.

Validation refuses a suite whose protocol keys (PROTOCOL) differ. Where a paper evaluates
otherwise, its suite's note says so; where it uses an LLM judge, the figures here stay rule-based.
Our rule-based match is tokencredit.graders (by answer type, math-verify), not PAPO-Eval's
mathruler grade_answer: a figure can differ from the fork's where the two rules disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

AVG_AT_K = "avg_at_k"


@dataclass(frozen=True)
class Column:
    """One benchmark column of a paper's table: where its rows come from and the figure it reports."""

    label: str  # the column's name in the tables
    release: str  # the local copy it reads: a key of eval.suite_paths
    source: str  # the adapter (tokencredit.sources)
    split: str  # the adapter's split
    metric: str  # the figure of the grade record: a key, or a dotted path into it


@dataclass(frozen=True)
class Suite:
    description: str
    columns: tuple[str, ...]  # keys of COLUMNS, in the table's order
    note: str  # where its paper evaluates otherwise


def _papo(label: str, split: str) -> Column:
    return Column(label, "papo_eval", "papo_eval", split, AVG_AT_K)


def _vppo(label: str, split: str) -> Column:
    return Column(label, "vppo_eval", "vppo_eval", split, AVG_AT_K)


# The fork's benchmark registry (benchmarks.yaml): the nine PAPO-Eval splits, VPPO-Eval's two
# verifiable subsets, and the two perception benchmarks of lmms-lab.
COLUMNS: dict[str, Column] = {
    "geo3k": _papo("Geo3K", "hiyouga_geometry3k"),
    "mathvista": _papo("MathVista", "AI4Math_MathVista"),
    "wemath": _papo("We-Math", "We_Math"),
    "mmk12": _papo("MMK12", "PAPO_MMK12"),
    "mathverse": _papo("MathVerse", "AI4Math_MathVerse"),
    "mathverse_v": _papo("MathVerse-V", "AI4Math_MathVerse_vision_dependent"),
    "logicvista": _papo("LogicVista", "lscpku_LogicVista"),
    "clevr_count": _papo("Counting", "BUAADreamer_clevr_count_70k"),
    "mmmu_pro": _papo("MMMU-Pro", "MMMU_MMMU_Pro"),
    "dynamath": _vppo("DynaMath", "DynaMath_DynaMath_Sample"),
    "mathvision": _vppo("MathVision", "MathLLMs_MathVision"),
    "pope": Column("POPE", "pope", "pope", "test", "release_metrics.greedy.macro_f1"),
    "hallusionbench": Column("HallusionBench", "hallusionbench", "hallusionbench", "image", "release_metrics.greedy.aAcc"),
}

PAPO = ("geo3k", "mathvista", "wemath", "mmk12", "mathverse", "logicvista", "clevr_count", "mmmu_pro", "mathverse_v")
VPPO = ("mathverse", "dynamath", "mmk12", "geo3k", "mathvision", "wemath", "logicvista", "mmmu_pro")
RULE_BASED = "LLM judges stay rule-based here."
SUITES: dict[str, Suite] = {
    "papo": Suite(
        "PAPO Table 1 (5 general and 4 vision-dependent reasoning benchmarks)", PAPO,
        "Same data and protocol as PAPO-Eval. The Counting (SuperCLEVR) column is the 200-item "
        "clevr_count_70k split PAPO-Eval ships; MathVista keeps some free-form answers, matched by rule.",
    ),
    "vppo": Suite(
        "VPPO Table 1 (8 reasoning benchmarks)", VPPO,
        "DynaMath and MathVision are VPPO-Eval's verifiable subsets; the other six are the PAPO-Eval "
        "splits. VPPO gives its 32B model 4,096 new tokens.",
    ),
    "pgpo": Suite(
        "PGPO Table 1 (8 reasoning benchmarks)",
        ("geo3k", "mmk12", "mathverse", "dynamath", "mathvision", "logicvista", "mmmu_pro", "mathverse_v"),
        "PGPO evaluates DynaMath's sample variant 1 (501 items); this suite reads VPPO-Eval's DynaMath "
        "(3,666 verifiable items over the variants).",
    ),
    "tor": Suite(
        "ToR Table 4 (4 reasoning benchmarks and HallusionBench)",
        ("mathverse", "mathvision", "mathvista", "wemath", "hallusionbench"),
        "ToR follows NoisyRollout's evaluation (greedy decoding, Gemini-2.0-Flash answer parsing); here "
        f"avg@8 at T 1.0 and rule-based parsing. {RULE_BASED}",
    ),
    "pepo": Suite(
        "PEPO Table 1 (Geometry3K training) and Table 5 (ViRL39K scaling)",
        ("geo3k", "mathvista", "wemath", "mathverse", "logicvista", "clevr_count", "mmmu_pro"),
        "PEPO scores MathVista with its official checker and its Geometry3K models answer in <answer> "
        "tags; here the PAPO-Eval match, and Geometry3K validation is not included.",
    ),
    "vepo": Suite(
        "VEPO Table 1 (2 in-domain and 5 out-of-domain benchmarks)",
        ("geo3k", "mmk12", "hallusionbench", "mathvista", "wemath", "mathverse", "mathvision"),
        "VEPO decodes greedily and judges MathVista, MathVerse, MathVision and We-Math with "
        f"gpt-4o-mini; here avg@8 at T 1.0 (greedy accuracy is in every record too). {RULE_BASED}",
    ),
    "dvrp": Suite(
        "DVRP Table 1, general-domain columns",
        ("geo3k", "mathvista", "wemath", "mathverse", "mathverse_v", "mmk12"),
        "The medical half of the table is not included; DVRP samples with top-p 0.9 / 0.99, here 1.0.",
    ),
    "comparison": Suite(
        "The fork's controlled comparison (examples/comparison): the PAPO and VPPO columns, POPE, HallusionBench",
        (*PAPO, *(c for c in VPPO if c not in PAPO), "pope", "hallusionbench"),
        "POPE: greedy macro-F1 over its subsets (CFPO reports pooled accuracy at avg@8); HallusionBench: "
        "greedy aAcc on the image questions. The fork asks POPE and HallusionBench with ' Please answer "
        "yes or no.' appended; here the question as published, with prompt.template.",
    ),
}

# The protocol every suite is scored with (PAPO-Eval's), as params keys: validation checks them
# (eval.k: the samples avg@k averages, all rollouts.num_samples when it is null).
PROTOCOL: dict[str, Any] = {
    "prompt.answer_format": "boxed",
    "rollouts.temperature": 1.0,
    "rollouts.max_new_tokens": 2048,
    "eval.k": 8,
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"unknown eval.suite {name!r} (known: {', '.join(SUITES)})")
    return SUITES[name]


def expand_suite(raw: dict[str, Any]) -> dict[str, Any]:
    """Raw params with eval.suite's columns added: a `benchmarks` entry per column on its release's
    local copy (an entry of the same name in the params wins) and the columns first in eval.benchmarks."""
    evaluation = raw.get("eval") or {}
    if not isinstance(evaluation, dict) or not evaluation.get("suite"):
        return raw
    suite = get_suite(evaluation["suite"])
    paths = evaluation.get("suite_paths") or {}
    needed = sorted({COLUMNS[c].release for c in suite.columns})
    missing = [release for release in needed if release not in paths]
    if missing:
        raise ValueError(
            f"eval.suite {evaluation['suite']!r} reads the local copies {needed}: set eval.suite_paths.<name> "
            f"to each (missing: {missing}; README.md, 'Evaluation suites', says what each holds)"
        )
    own = raw.get("benchmarks") or {}
    benchmarks = {c: {"source": COLUMNS[c].source, "path": paths[COLUMNS[c].release], "split": COLUMNS[c].split} for c in suite.columns}
    listed = [*suite.columns, *(b for b in evaluation.get("benchmarks") or [] if b not in suite.columns)]
    return {**raw, "benchmarks": {**benchmarks, **own}, "eval": {**evaluation, "benchmarks": listed}}


def protocol_errors(values: dict[str, Any]) -> list[str]:
    """The protocol keys whose params `values` (dotted key -> value) differ from PROTOCOL."""
    return [f"{key} is {values[key]!r}, the suites' protocol needs {want!r}" for key, want in PROTOCOL.items() if values[key] != want]


def figure(record: dict[str, Any], metric: str) -> float | None:
    """A column's figure in a grade record: `metric` is a key or a dotted path (release_metrics.greedy.macro_f1)."""
    value: Any = record
    for part in metric.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if value is not None else None


def complete_suites(graded: dict[str, str]) -> list[str]:
    """The suites whose every column was graded (`graded`: benchmark name -> its adapter) on its own
    release, leaving out those another complete suite holds (with `comparison`, only it)."""
    complete = [
        name for name, suite in SUITES.items()
        if all(graded.get(column) == COLUMNS[column].source for column in suite.columns)
    ]  # fmt: skip
    return [name for name in complete if not any(set(SUITES[name].columns) < set(SUITES[other].columns) for other in complete)]
