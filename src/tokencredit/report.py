"""The report: every policy's evaluation side by side, differences from `uniform`, training curves.

Reads results/eval/{policy}/{split}.json and results/runs/{policy}/metrics.jsonl; writes
metrics.json (numbers for `dvc metrics show` / `dvc exp show`), curves_*.png, and summary.md and
index.html, both rendered from one list of sections (tokencredit.document); from the token scores,
index.html adds the token analysis (tokencredit.analysis, tokencredit.report_html), analysis.json.
Training runs (their algo, method and seed from the run.json in each run's directory) are grouped
over seeds into one row "{algo}-{method}": mean ± 95 % Student-t interval over seeds. Reference
policies ("base", "sft") are single models shown first.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tokencredit.algorithms import ALGORITHMS
from tokencredit.atomic import atomic_path, write_json, write_text
from tokencredit.comparison import (
    BASELINE_METHOD, FAMILY_ALPHA, ORACLE_PREFIX, PAIRED_SCORES, claims, comparisons, correct_claims, is_control, method_sentence,
    minimal_detectable, points,
)  # fmt: skip
from tokencredit.document import Image, Section, Table, render_html, render_markdown
from tokencredit.papers import PAPER_RESULTS, reported_for
from tokencredit.params import AnalysisParams
from tokencredit.run_record import read_run_record
from tokencredit.stats import mean_ci

TITLE = "tokencredit report"
REFERENCE_POLICIES = ("base", "sft")
SFT = "sft"
SPLIT_ORDER = ("train", "validation", "test", "test_ood")
EVAL_KEYS = (
    "policy", "split", "n", "k", "greedy_accuracy", "avg_at_k", "pass_at_k", "per_family", "per_example"
)
# One PNG per entry: the training metrics it plots side by side.
CURVES = {
    "reward": ("reward",),
    "entropy": ("entropy",),
    "weights": ("weight_mean", "weight_max", "frac_selected"),
}


@dataclass(frozen=True)
class Policy:
    name: str
    group: str  # the report row its seeds share: "sft" or "{algo}-{method}"
    algo: str | None = None
    method: str | None = None
    seed: int | None = None
    run_dir: Path | None = None  # a training run's directory


Policies = dict[str, Policy]  # the training runs, by name


def read_policies(run_dirs: list[Path]) -> Policies:
    """Each training run's algo, method and seed, from the run.json in its directory."""
    policies = {}
    for run_dir in run_dirs:
        record = read_run_record(run_dir)
        if record is None or record.algo is None or record.method is None or record.seed is None:
            raise ValueError(f"{run_dir}: a training run's directory needs a run.json with its algo, method and seed")
        policies[record.policy] = Policy(record.policy, f"{record.algo}-{record.method}", record.algo, record.method, record.seed, Path(run_dir))
    return policies


def policy_of(policies: Policies, name: str) -> Policy:
    if name in policies:
        return policies[name]
    if name in REFERENCE_POLICIES:
        return Policy(name, name)
    raise ValueError(f"policy {name!r} is neither a run given with its directory nor one of {REFERENCE_POLICIES}")


def _group_order(policy: Policy) -> tuple:
    if policy.algo is None:
        return (0, REFERENCE_POLICIES.index(policy.name), "")
    return (1, list(ALGORITHMS).index(policy.algo), policy.method != BASELINE_METHOD, policy.method)


def _split_order(split: str) -> tuple:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def load_evals(files: list[Path], policies: Policies) -> dict[str, dict[str, list[dict]]]:
    """{split: {group: [eval dicts, one per seed, by seed]}}, validated."""
    seen: dict[tuple[str, str], Path] = {}
    table: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for path in files:
        path = Path(path)
        try:
            ev = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from exc
        missing = [key for key in EVAL_KEYS if key not in ev]
        if missing:
            raise ValueError(f"{path}: missing keys {missing}")
        key = (ev["policy"], ev["split"])
        if key in seen:
            raise ValueError(f"{path}: {key[0]!r} on {key[1]!r} was already read from {seen[key]}")
        seen[key] = path
        table[ev["split"]][policy_of(policies, ev["policy"]).group].append(ev)

    def seed(ev: dict) -> int:
        return policy_of(policies, ev["policy"]).seed or 0

    def order(item: tuple[str, list[dict]]) -> tuple:
        return _group_order(policy_of(policies, item[1][0]["policy"]))

    return {
        split: {group: sorted(evs, key=seed) for group, evs in sorted(groups.items(), key=order)}
        for split, groups in sorted(table.items(), key=lambda item: _split_order(item[0]))
    }


def _finite(x: float | None) -> float | None:
    """nan (e.g. the interval of one seed) becomes None: JSON has no nan."""
    return None if x is None or math.isnan(x) else x


def summarize(evals: list[dict]) -> dict:
    """Mean ± 95 % CI over seeds of one group's evaluations on one split."""
    summary: dict = {"n_seeds": len(evals), "n": evals[0]["n"], "k": evals[0]["k"]}
    for key in ("greedy_accuracy", "avg_at_k", "pass_at_k"):
        mean, half = mean_ci([ev[key] for ev in evals])
        summary[f"{key}_mean"], summary[f"{key}_ci95"] = mean, _finite(half)
    no_image = [
        ev["greedy_accuracy_no_image"]
        for ev in evals
        if ev.get("greedy_accuracy_no_image") is not None
    ]
    summary["greedy_accuracy_no_image_mean"] = statistics.fmean(no_image) if no_image else None
    return summary


def build_metrics(evals: dict[str, dict[str, list[dict]]], policies: Policies) -> dict:
    """{group: {split: summary (+ greedy_accuracy_delta_vs_sft, vs_uniform, gain_fraction, vs_twin,
    vs_oracle)}}, the sentences' claims with Holm-adjusted p-values (p_holm)."""
    metrics: dict[str, dict] = defaultdict(dict)
    for split, groups in evals.items():
        sft = summarize(groups[SFT]) if SFT in groups else None
        for group, evs in groups.items():
            summary = summarize(evs)
            policy = policy_of(policies, evs[0]["policy"])
            if policy.algo is not None and sft is not None:
                delta = summary["greedy_accuracy_mean"] - sft["greedy_accuracy_mean"]
                summary["greedy_accuracy_delta_vs_sft"] = delta
            if policy.algo is not None:
                summary |= comparisons(policy.algo, policy.method, groups)
            metrics[group][split] = summary
    correct_claims(metrics)
    return dict(metrics)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _pct_ci(mean: float, half: float | None) -> str:
    return _pct(mean) if half is None else f"{_pct(mean)} ± {_pct(half)}"


def _signed(x: float) -> str:
    return f"{100 * x:+.1f}"


def _p_value(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def accuracy_sections(metrics: dict, evals: dict) -> list[Section]:
    sections = []
    for split, groups in evals.items():
        first = metrics[next(iter(groups))][split]
        rows = []
        for group in groups:
            s = metrics[group][split]
            delta = s.get("greedy_accuracy_delta_vs_sft")
            rows.append(
                [
                    group,
                    str(s["n_seeds"]),
                    _pct_ci(s["greedy_accuracy_mean"], s["greedy_accuracy_ci95"]),
                    _pct_ci(s["avg_at_k_mean"], s["avg_at_k_ci95"]),
                    _pct_ci(s["pass_at_k_mean"], s["pass_at_k_ci95"]),
                    _pct(s["greedy_accuracy_no_image_mean"]),
                    "" if delta is None else _signed(delta),
                ]
            )
        header = [
            "run",
            "seeds",
            "greedy acc %",
            f"avg@{first['k']} %",
            f"pass@{first['k']} %",
            "no-image greedy acc %",
            "greedy Δ vs sft (points)",
        ]
        title = f"{split} (n = {first['n']} examples, k = {first['k']} samples)"
        sections.append(Section(title, [*benchmark_notes(groups), Table(header, rows)], level=3))
    return sections


def benchmark_notes(groups: dict[str, list[dict]]) -> list[str]:
    """What a reader of a real benchmark's figures must know: a rule-based stand-in for an LLM
    judge, and the rows its release publishes broken, left out with their reasons."""
    first = next(iter(groups.values()))[0]
    notes = []
    if first.get("rule_based"):
        notes.append("Rule-based: the official scorer of this benchmark is an LLM judge; these figures approximate it.")
    skipped = first.get("skipped_rows") or []
    if skipped:
        notes.append(f"{len(skipped)} row(s) of the release left out: " + "; ".join(skipped))
    return notes


def release_metric_sections(evals: dict) -> list[Section]:
    """The metrics each benchmark's official scorer reports (greedy decoding, mean over seeds, %)."""
    sections = []
    for split, groups in evals.items():
        names = list(next(iter(groups.values()))[0].get("release_metrics", {}).get("greedy", {}))
        if not names:
            continue
        rows = [
            [group, *(_pct(statistics.fmean(ev["release_metrics"]["greedy"][name] for ev in evs)) for name in names)]
            for group, evs in groups.items()
        ]
        sections.append(Section(split, [Table(["run", *names], rows)], level=3))
    return sections


def suite_sections(evals: dict) -> list[Section]:
    """Each complete evaluation suite's table (tokencredit.suites): every run's figure per column, as
    the suite's protocol reads it (%, mean over seeds), and their unweighted mean."""
    from tokencredit.suites import COLUMNS, SUITES, complete_suites, figure

    graded = {split: next(iter(groups.values()))[0].get("source", "") for split, groups in evals.items()}
    sections = []
    for name in complete_suites(graded):
        columns = SUITES[name].columns
        rows = []
        for group in evals[columns[0]]:
            values = [[figure(ev, COLUMNS[c].metric) for ev in evals[c].get(group, [])] for c in columns]
            means = [statistics.fmean(v) if v and None not in v else None for v in values]
            rows.append([group, *map(_pct, means), _pct(statistics.fmean(means) if None not in means else None)])
        table = Table(["run", *(COLUMNS[c].label for c in columns), "Avg"], rows)
        sections.append(Section(f"Suite `{name}`: {SUITES[name].description}", [SUITES[name].note, table], level=3))
    return sections


def uniform_block(metrics: dict, evals: dict) -> Table | str:
    rows = []
    for split, groups in evals.items():
        for group in groups:
            comparison = metrics[group][split].get("vs_uniform")
            if comparison is None:
                continue
            row = [group, split]
            for metric in PAIRED_SCORES:
                c = comparison[metric]
                no_interval = c["p_value"] is None
                row += [points(c), "–" if no_interval else _p_value(c["p_value"]), "–" if no_interval else f"{100 * c['mdd']:.1f}"]
            rows.append(row)
    if not rows:
        return "No method has a `uniform` run of the same algorithm to compare with."
    header = ["run", "split", "Δ greedy acc (points) [95 % CI]", "p", "MDD"]
    header += ["Δ avg@k (points) [95 % CI]", "p", "MDD"]
    return Table(header, rows)


def plot_forest(metrics: dict, evals: dict, out_dir: Path) -> Path | None:
    """forest.png: each run's avg@k difference from uniform with its seed-aware 95 % CI, one panel per split."""
    from matplotlib.figure import Figure

    panels = {split: [g for g in groups if "vs_uniform" in metrics[g][split]] for split, groups in evals.items()}
    panels = {split: groups for split, groups in panels.items() if groups}
    if not panels:
        return None
    height = 1 + 0.35 * max(len(groups) for groups in panels.values())
    fig = Figure(figsize=(4.5 * len(panels), height), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for ax, (split, groups) in zip(axes, panels.items()):
        for y, group in enumerate(reversed(groups)):
            c = metrics[group][split]["vs_uniform"]["avg_at_k"]
            color = "tab:gray" if is_control(group) else "tab:blue"
            if c["ci_low"] is None:  # a group with one seed: no interval
                ax.plot(100 * c["diff"], y, "o", color=color, fillstyle="none")
                continue
            low, high = 100 * (c["diff"] - c["ci_low"]), 100 * (c["ci_high"] - c["diff"])
            ax.errorbar(100 * c["diff"], y, xerr=[[low], [high]], fmt="o", color=color, capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(groups)), list(reversed(groups)))
        ax.set(title=split, xlabel="avg@k − uniform (points)")
    path = Path(out_dir) / "forest.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def _fraction(r: dict | None) -> str:
    if r is None:
        return "–"
    if r["ratio"] is None or not (r["defined"] or r["one_seed"]):
        return "undefined"
    if r["one_seed"]:
        return f"{r['ratio']:.2f} (no interval: a group has one seed)"
    return f"{r['ratio']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"


def ranking_section(metrics: dict, evals: dict) -> Section:
    """The report's opening: every run's avg@k gain over uniform as a fraction of each oracle's gain."""
    blocks: list = [
        "Each run's avg@k gain over `uniform` as a fraction of the oracle's gain (same algorithm, same split): "
        "0 is uniform, 1 the oracle (the ceiling of any token selection on this task); a random twin should sit "
        "near 0. Brackets: 95 % Fieller interval (seeds and the shared examples as in the difference below). "
        "Undefined where the oracle's own gain is not told apart from 0 at that level: the scale has no unit."
    ]
    for split, groups in evals.items():
        rows = {g: metrics[g][split]["gain_fraction"] for g in groups if metrics[g][split].get("gain_fraction")}
        if not rows:
            continue
        oracles = sorted({o.split("-", 1)[1] for fractions in rows.values() for o in fractions})
        for group in groups:
            if group.split("-", 1)[-1].startswith(ORACLE_PREFIX) and "vs_uniform" in metrics[group][split]:
                blocks.append(f"{split}: `{group}` − uniform, avg@k: {points(metrics[group][split]['vs_uniform']['avg_at_k'])} points.")

        def cell(group: str, oracle: str) -> dict | None:
            return rows[group].get(f"{group.split('-', 1)[0]}-{oracle}")

        def rank(group: str) -> tuple:  # by the first oracle's scale, undefined last
            first = cell(group, oracles[0]) or {}
            return (not first.get("defined"), -(first.get("ratio") or 0.0))

        body = [[group, *(_fraction(cell(group, o)) for o in oracles)] for group in sorted(rows, key=rank)]
        header = ["run", *(f"fraction of {o}'s gain" for o in oracles)]
        blocks.append(Table(header, body, f"{split}: avg@k gain over uniform on the oracle's scale, ranked"))
    if len(blocks) == 1:
        blocks = ["No oracle run beside a `uniform` run of the same algorithm: no common scale."]
    return Section("Ranking: gain over `uniform` as a fraction of the oracle's", blocks)


def forest_section(metrics: dict, evals: dict, forest: Path | None) -> Section:
    """The forest plot, the minimal detectable difference, one sentence per method."""
    if forest is None:
        return Section("Difference from `uniform`", ["No method has a `uniform` run of the same algorithm to compare with."])
    n_claims = sum(c.get("p_holm") is not None for c in claims(metrics))
    blocks: list = [
        Image("forest plot: difference from uniform", forest.read_bytes(), forest.name),
        "Each run's avg@k minus uniform's, mean over seeds, with a 95 % interval: Student's t with the training "
        "seed as the unit (Welch over the two groups' per-seed means) plus the draw of the test examples, which "
        "every seed shares (tokencredit.stats). Open circles: a group with one seed, no interval. Grey: controls "
        "(random twins at the same sparsity, oracles from the ground-truth token roles).",
        f"The verdicts below (beats, falls below, above, below) hold after Holm's correction over the {n_claims} "
        f"claims this report makes (family-wise α = {FAMILY_ALPHA:.2f}); the intervals are per comparison.",
    ]
    for split in evals:
        found = minimal_detectable(metrics, split)
        if found is not None:
            mdd, n_seeds = found
            blocks.append(
                f"{split}: with {n_seeds} seed{'s' if n_seeds != 1 else ''} per run, the minimal detectable difference in avg@k is "
                f"{100 * mdd:.1f} points (80 % power, two-sided per-comparison α = 0.05: (t_0.975 + t_0.8) standard errors at "
                "the comparison's degrees of freedom, median over runs); a claim corrected for the whole family needs more."
            )
    for split, groups in evals.items():
        for group in groups:
            summary = metrics[group][split]
            if not is_control(group) and any(key in summary for key in ("vs_uniform", "vs_twin", "vs_oracle")):
                blocks.append(method_sentence(group, split, summary))
    return Section("Difference from `uniform`, with controls", blocks)


def family_sections(evals: dict) -> list[Section]:
    sections = []
    for split, groups in evals.items():
        counts = {}
        for evs in groups.values():
            for ev in evs:
                for family, stats in ev["per_family"].items():
                    counts.setdefault(family, stats["n"])
        families = sorted(counts)
        rows = []
        for group, evs in groups.items():
            cells = []
            for family in families:
                values = [
                    ev["per_family"][family]["greedy_accuracy"]
                    for ev in evs
                    if family in ev["per_family"]
                ]
                cells.append(_pct(statistics.fmean(values)) if values else "–")
            rows.append([group, *cells])
        header = ["run", *(f"{family} (n={counts[family]})" for family in families)]
        sections.append(Section(split, [Table(header, rows)], level=3))
    return sections


def papers_table() -> Table:
    rows = []
    for paper in PAPER_RESULTS:
        results = " · ".join(f"{label} {value:.{paper.decimals}f}" for label, value in paper.results)
        rows.append([paper.source, paper.model, paper.benchmark, results, paper.note])
    return Table(["source", "model", "benchmark", "results", "note"], rows)


def beside_papers_table(metrics: dict, evals: dict) -> Table | None:
    """Our runs on real benchmarks next to what the papers report there (None without such benchmarks)."""
    rows = []
    for split, groups in evals.items():
        source = next(iter(groups.values()))[0].get("source")
        reported = [
            f"{p.source}: " + ", ".join(f"{label} {value:.{p.decimals}f}" for label, value in p.results)
            for p in reported_for(source or "")
        ]
        if not reported:
            continue
        for group in groups:
            m = metrics[group][split]
            rows.append([split, group, _pct(m["greedy_accuracy_mean"]), _pct(m["avg_at_k_mean"]), reported])
    if not rows:
        return None
    return Table(["benchmark", "run", "greedy acc %", "avg@k %", "reported in the papers (their models)"], rows)


def methods_table(policies: Policies) -> Table | None:
    """Each trained method's components (weighting, auxiliary loss, rollout transform, reward set,
    counterfactual input, with their hyperparameters) and, from the weighting registry, its batch scope and tie rule
    (None without training runs)."""
    from tokencredit.params import MethodSpec, _default_methods
    from tokencredit.recipe import resolve  # torch-backed: only with training runs
    from tokencredit.weighting import describe

    rows = {}
    for policy in policies.values():
        record = read_run_record(policy.run_dir)
        recorded = record.params.get("method_spec") if record is not None else None
        spec = MethodSpec.model_validate(recorded) if recorded else _default_methods()[policy.method]  # an older run: built-in spec
        parts, facts = resolve(policy.method, spec).components(), describe(spec.weighting)
        rows[policy.method] = [
            policy.method, parts["weighting"], parts.get("loss", "none"), parts.get("transform", "none"),
            parts.get("reward", "task"), parts["counterfactual"], facts["scope"], facts["ties"],
        ]  # fmt: skip
    if not rows:
        return None
    header = ["method", "weighting", "auxiliary loss", "rollout transform", "reward", "counterfactual input", "batch scope", "ties"]
    return Table(header, [rows[m] for m in sorted(rows)])


def summary_sections(
    metrics: dict, evals: dict, curves: list[Path], papers: bool, methods: Table | None = None, forest: Path | None = None
) -> list[Section]:
    """The report's sections on accuracy (in summary.md and index.html)."""
    sections = [
        Section(
            TITLE,
            ["Runs `{algo}-{method}` are grouped over seeds: mean ± 95 % Student-t interval over seeds "
             "(no interval with one seed). Accuracies in %."],
            level=1,
        ),
        ranking_section(metrics, evals),
        forest_section(metrics, evals, forest),
        Section("Accuracy"),
        *accuracy_sections(metrics, evals),
        Section(
            "Difference from `uniform` (same algorithm)",
            ["95 % Student-t interval over training seeds plus the shared examples' draw (as above); p is "
             "two-sided for no difference, per comparison (not corrected); MDD: the minimal detectable difference at "
             "this grid size (points, 80 % power, per-comparison α = 0.05). A group with one seed has no interval.",
             uniform_block(metrics, evals)],
        ),
        Section("Greedy accuracy per question family (%, mean over seeds)"),
        *family_sections(evals),
    ]  # fmt: skip
    suites = suite_sections(evals)
    if suites:
        sections += [Section("Evaluation suites (README: protocol, local copies)"), *suites]
    official = release_metric_sections(evals)
    if official:
        sections += [Section("Official metrics of the benchmarks' scorers (greedy, %, mean over seeds)"), *official]
    if methods:
        sections.append(Section("Methods", [methods]))
    beside = beside_papers_table(metrics, evals)
    if papers and beside:
        sections.append(Section("Real benchmarks beside the papers' figures", [beside]))
    if papers:
        title = "Reported in the papers (not reproduced here; different models and benchmarks)"
        sections.append(Section(title, [papers_table()]))
    if curves:
        images = [Image(path.stem, path.read_bytes(), path.name) for path in curves]
        sections.append(Section("Training curves", images))
    return sections


def load_training_metrics(run_dir: Path) -> pd.DataFrame:
    """One row per logged step of a run's metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from exc
    frame = pd.DataFrame(rows)
    if "step" not in frame:
        raise ValueError(f"{path}: records have no 'step'")
    return frame


def plot_curves(policies: Policies, out_dir: Path) -> list[Path]:
    """curves_{name}.png per CURVES entry with data: mean over seeds per method, min–max band."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, renders with Agg

    groups: dict[str, list[pd.DataFrame]] = defaultdict(list)
    for policy in sorted(policies.values(), key=lambda policy: (_group_order(policy), policy.seed)):
        groups[policy.group].append(load_training_metrics(policy.run_dir))
    frames = [frame for group_frames in groups.values() for frame in group_frames]
    written = []
    for name, columns in CURVES.items():
        present = [c for c in columns if any(c in frame for frame in frames)]
        if not present:
            continue
        fig = Figure(figsize=(5 * len(present), 3.5), layout="constrained")
        fig.suptitle("mean over seeds; band: min–max over seeds", fontsize="small")
        axes = fig.subplots(1, len(present), squeeze=False)[0]
        for ax, column in zip(axes, present):
            for group, group_frames in groups.items():
                with_column = [f[["step", column]] for f in group_frames if column in f]
                if not with_column:
                    continue
                values = pd.concat(with_column).dropna().groupby("step")[column]
                by_step = values.agg(["mean", "min", "max"])
                label = f"{group} ({len(with_column)} seeds)"
                (line,) = ax.plot(by_step.index, by_step["mean"], label=label)
                ax.fill_between(
                    by_step.index, by_step["min"], by_step["max"], color=line.get_color(), alpha=0.2
                )
            ax.set(title=column, xlabel="step")
        axes[0].legend(fontsize="small")
        path = Path(out_dir) / f"curves_{name}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        written.append(path)
    return written


def build_report(
    eval_files: list[Path],
    run_dirs: list[Path],
    out_dir: Path,
    score_files: list[Path] = (),
    analysis_params: AnalysisParams | None = None,
    papers: bool = True,
) -> dict:
    """Write summary.md, metrics.json, curves_*.png, analysis.json ({} without scores) and index.html.

    Returns the metrics. Both summary.md and index.html render the same sections; index.html adds
    the token analysis and viewer (tokencredit.report_html) when there are token scores.
    """
    out_dir = Path(out_dir)
    policies = read_policies(run_dirs)
    evals = load_evals(eval_files, policies)
    metrics = build_metrics(evals, policies)
    forest = plot_forest(metrics, evals, out_dir)
    sections = summary_sections(metrics, evals, plot_curves(policies, out_dir), papers, methods_table(policies), forest)
    analysis = None
    if score_files:
        from tokencredit.analysis import analyze, load_scores  # pandas-heavy: only when asked
        from tokencredit.report_html import analysis_sections

        params = analysis_params or AnalysisParams()
        scores = load_scores(score_files)
        analysis = analyze(scores, [ev for groups in evals.values() for evs in groups.values() for ev in evs], params)
        sections += analysis_sections(analysis, scores, params)
    write_text(out_dir / "summary.md", render_markdown(sections))
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "analysis.json", analysis or {})
    write_text(out_dir / "index.html", render_html(TITLE, sections))
    return metrics
