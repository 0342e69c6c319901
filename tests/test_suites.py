"""Evaluation suites: a paper's table as benchmark entries on local copies, the protocol they need,
POPE's metrics by hand, and a suite's row read from grade records."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tokencredit.evaluation import grade_completions
from tokencredit.graders import pope_metrics
from tokencredit.params import ParamsError, validate
from tokencredit.sources import check_sources
from tokencredit.suites import COLUMNS, SUITES

RELEASES = ("papo_eval", "vppo_eval", "pope", "hallusionbench")


def suite_params(tmp_path, suite: str = "comparison", **sections) -> dict:
    """Raw params asking for `suite` with the protocol it needs, every release at a local folder."""
    paths = {}
    for release in RELEASES:
        (tmp_path / release).mkdir(exist_ok=True)
        paths[release] = str(tmp_path / release)
    raw = {
        "eval": {"suite": suite, "suite_paths": paths, "splits": [], "k": 8},
        "rollouts": {"num_samples": 8, "temperature": 1.0, "max_new_tokens": 2048},
        "prompt": {"answer_format": "boxed"},
    }
    for name, section in sections.items():
        raw[name] = {**raw.get(name, {}), **section}
    return raw


def test_comparison_suite_is_the_forks_thirteen_columns(tmp_path):
    params = validate(suite_params(tmp_path))
    labels = [COLUMNS[name].label for name in params.eval.benchmarks]
    assert labels == ["Geo3K", "MathVista", "We-Math", "MMK12", "MathVerse", "LogicVista", "Counting", "MMMU-Pro",
                      "MathVerse-V", "DynaMath", "MathVision", "POPE", "HallusionBench"]  # fmt: skip
    clevr, dynamath, pope = (params.benchmarks[name] for name in ("clevr_count", "dynamath", "pope"))
    assert (clevr.source, clevr.split, clevr.path) == ("papo_eval", "BUAADreamer_clevr_count_70k", str(tmp_path / "papo_eval"))
    assert (dynamath.source, dynamath.split) == ("vppo_eval", "DynaMath_DynaMath_Sample")
    assert (pope.source, pope.split, params.benchmarks["hallusionbench"].split) == ("pope", "test", "image")
    check_sources(params)  # every column names a registered adapter and one of its splits
    for name, suite in SUITES.items():
        assert set(suite.columns) <= set(COLUMNS) and suite.note, name
        assert validate(suite_params(tmp_path, name)).eval.benchmarks == list(suite.columns)


def test_own_entries_win_and_extra_benchmarks_stay(tmp_path):
    raw = suite_params(tmp_path, "tor", eval={"benchmarks": ["mine"]})
    raw["benchmarks"] = {"mathvista": {"source": "mathvista", "path": str(tmp_path)}, "mine": {"source": "mmk12", "path": str(tmp_path)}}
    params = validate(raw)
    assert params.eval.benchmarks == ["mathverse", "mathvision", "mathvista", "wemath", "hallusionbench", "mine"]
    assert params.benchmarks["mathvista"].source == "mathvista"  # the params' own copy of that column


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"eval": {"suite": "nope"}}, "unknown eval.suite 'nope' (known: papo, vppo"),
        ({"eval": {"suite_paths": {}}}, "set eval.suite_paths.<name> to each (missing: ['hallusionbench', 'papo_eval', 'pope', 'vppo_eval']"),
        ({"rollouts": {"max_new_tokens": 1024}}, "rollouts.max_new_tokens is 1024, the suites' protocol needs 2048"),
        ({"rollouts": {"temperature": 0.7}}, "rollouts.temperature is 0.7"),
        ({"eval": {"k": 4}}, "eval.k is 4, the suites' protocol needs 8"),
        ({"prompt": {"answer_format": "tags"}}, "prompt.answer_format is 'tags', the suites' protocol needs 'boxed'"),
    ],
)
def test_a_suite_needs_its_releases_and_protocol(tmp_path, change, expected):
    raw = suite_params(tmp_path)
    for name, section in change.items():
        raw[name] = {**raw[name], **section}
    with pytest.raises(ParamsError) as err:
        validate(raw, "s.yaml")
    assert expected in str(err.value)


def test_eval_k_may_be_left_to_the_eight_samples(tmp_path):
    assert validate(suite_params(tmp_path, eval={"k": None})).eval.suite == "comparison"


def pope_frame(labels: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"id": f"{c}-{i}", "source": "pope", "family": c, "answer": a, "answer_type": "yes_no", "answer_format": "boxed",
          "metadata": json.dumps({"category": c, "label": a})} for i, (c, a) in enumerate(labels)]
    )  # fmt: skip


def test_pope_metrics_by_hand():
    # random: labels yes yes no no, answers yes no yes no -> TP 1, FP 1, FN 1: P = R = F1 = 0.5, accuracy 0.5, yes ratio 0.5
    # popular: labels yes no, answers yes and an unreadable one -> TP 1, FP 0, FN 0: F1 1, accuracy 0.5, yes ratio 0.5
    labels = [("random", "yes"), ("random", "yes"), ("random", "no"), ("random", "no"), ("popular", "yes"), ("popular", "no")]
    answers = ["yes", "no", "yes", "no", "Yes.", "unsure"]
    metadata = [{"category": c, "label": a} for c, a in labels]
    metrics = pope_metrics(metadata, [int(p.lower().startswith(a)) for p, (_, a) in zip(answers, labels)], answers)
    assert metrics["random/precision"] == metrics["random/recall"] == metrics["random/f1"] == 0.5
    assert (metrics["random/accuracy"], metrics["random/yes_ratio"]) == (0.5, 0.5)
    assert (metrics["popular/f1"], metrics["popular/accuracy"], metrics["popular/yes_ratio"]) == (1.0, 0.5, 0.5)
    assert metrics["macro_f1"] == 0.75
    # graded end to end from boxed answers: the same figures, from the greedy decoding
    greedy = [f"<think>look</think> \\boxed{{{a}}}" for a in answers]
    record = grade_completions(pope_frame(labels), greedy, [[g] for g in greedy], None, "base", "pope")
    assert record["release_metrics"]["greedy"] == metrics


def test_the_report_shows_the_complete_suites_table():
    """The report's suite table: each column's figure as its protocol reads it, mean over seeds."""
    from tokencredit.report import suite_sections

    def record(source: str, avg: float, **greedy: float) -> dict:
        return {"source": source, "avg_at_k": avg, "greedy_accuracy": 0.0, "release_metrics": {"greedy": greedy}}

    evals = {name: {"grpo-uniform": [record(COLUMNS[name].source, 0.5), record(COLUMNS[name].source, 0.7)]} for name in SUITES["tor"].columns}
    evals["hallusionbench"]["grpo-uniform"] = [record("hallusionbench", 0.1, aAcc=0.25), record("hallusionbench", 0.1, aAcc=0.35)]
    (section,) = suite_sections(evals)  # tor only: no other suite is complete
    table = section.blocks[1]
    assert section.title.startswith("Suite `tor`") and table.header == ["run", "MathVerse", "MathVision", "MathVista", "We-Math", "HallusionBench", "Avg"]
    assert table.rows == [["grpo-uniform", "60.0", "60.0", "60.0", "60.0", "30.0", "54.0"]]
    evals["mathvista"]["grpo-uniform"][0]["source"] = "mathvista"  # the original release, not PAPO-Eval's copy
    assert suite_sections(evals) == []
