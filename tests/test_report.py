"""The report on fake evaluations of sft + grpo-{uniform, entropy_topk} × 2 seeds."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from PIL import Image

from tokencredit.manifest import write_manifest
from tokencredit.report import build_report, read_policies
from tokencredit.run_record import write_run_record

T95_DF1 = 12.7062  # two-sided 95 % Student t, 1 degree of freedom (2 seeds)
FAMILIES = ["count_color", "count_color", "exists", "exists"]  # of examples e0..e3

# policy -> (greedy_correct, avg_at_k, greedy_correct_no_image) per example e0..e3 on "test"
TEST = {
    "sft": ([1, 0, 0, 0], [0.5, 0.25, 0.0, 0.25], [0, 0, 0, 0]),
    "grpo-uniform-s0": ([1, 1, 0, 0], [1.0, 0.5, 0.25, 0.25], [1, 0, 0, 0]),
    "grpo-uniform-s1": ([1, 0, 0, 0], [0.75, 0.25, 0.0, 0.0], [0, 0, 0, 0]),
    "grpo-entropy_topk-s0": ([1, 1, 1, 0], [1.0, 0.75, 0.5, 0.25], [1, 1, 0, 0]),
    "grpo-entropy_topk-s1": ([1, 1, 0, 1], [1.0, 0.75, 0.5, 0.75], [1, 0, 0, 0]),
}


def fake_eval(policy: str, split: str, greedy: list, avg: list, no_image: list | None) -> dict:
    per_example = [
        {
            "id": f"e{i}",
            "family": FAMILIES[i],
            "greedy_correct": greedy[i],
            "avg_at_k": avg[i],
            "greedy_correct_no_image": None if no_image is None else no_image[i],
        }
        for i in range(len(greedy))
    ]
    per_family = {}
    for family in sorted(set(FAMILIES)):
        rows = [r for r in per_example if r["family"] == family]
        per_family[family] = {
            "n": len(rows),
            "greedy_accuracy": statistics.fmean(r["greedy_correct"] for r in rows),
            "avg_at_k": statistics.fmean(r["avg_at_k"] for r in rows),
        }
    return {
        "policy": policy,
        "split": split,
        "n": len(greedy),
        "k": 4,
        "greedy_accuracy": statistics.fmean(greedy),
        "avg_at_k": statistics.fmean(avg),
        "pass_at_k": statistics.fmean(a > 0 for a in avg),
        "greedy_accuracy_no_image": None if no_image is None else statistics.fmean(no_image),
        "per_family": per_family,
        "per_example": per_example,
    }


def write_eval(root: Path, ev: dict) -> Path:
    path = root / "eval" / ev["policy"] / f"{ev['split']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ev))
    return path


def write_run(root: Path, policy: str, algo: str = "grpo") -> Path:
    """A training run's directory: metrics.jsonl and run.json (method and seed from the name, as the pipeline names runs)."""
    run_dir = root / "runs" / policy
    run_dir.mkdir(parents=True)
    method, seed = policy.removeprefix(f"{algo}-").rsplit("-s", 1)
    seed = int(seed)
    lines = [
        {
            "step": step,
            "reward": 0.1 * step + 0.05 * seed,
            "reward_std": 0.2,
            "entropy": 1.0 - 0.1 * step,
            "loss": 0.0,
            "step_time": 0.1,
            "weight_mean": 1.0,
            "weight_max": 2.0 + seed,
            "frac_selected": 0.2,
        }
        for step in range(5)
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    write_manifest(run_dir)
    write_run_record(run_dir, policy, {"train": {"max_steps": 5}}, None, algo, method, seed)
    return run_dir


def run_dirs(root: Path, policies) -> list[Path]:
    return [write_run(root, p) for p in policies if p != "sft"]


@pytest.fixture
def report(tmp_path: Path) -> tuple[dict, Path]:
    evals = [write_eval(tmp_path, fake_eval(p, "test", *scores)) for p, scores in TEST.items()]
    # A second split where the image-free score was not measured.
    evals.append(write_eval(tmp_path, fake_eval("sft", "validation", [1, 1, 0, 0], [0.5] * 4, None)))
    out = tmp_path / "report"
    return build_report(evals, run_dirs(tmp_path, TEST), out), out


def test_metrics_by_hand(report: tuple[dict, Path]) -> None:
    metrics, out = report
    assert json.loads((out / "metrics.json").read_text()) == metrics

    sft = metrics["sft"]["test"]
    assert sft["greedy_accuracy_mean"] == 0.25 and sft["avg_at_k_mean"] == 0.25
    assert sft["pass_at_k_mean"] == 0.75  # some sample right on e0, e1, e3
    assert sft["greedy_accuracy_ci95"] is None and sft["n_seeds"] == 1 and sft["n"] == 4
    assert sft["greedy_accuracy_no_image_mean"] == 0.0
    assert metrics["sft"]["validation"]["greedy_accuracy_no_image_mean"] is None

    # seeds 0.5 and 0.25: mean 0.375, sd 0.25/sqrt(2), sem 0.125
    uniform = metrics["grpo-uniform"]["test"]
    assert uniform["greedy_accuracy_mean"] == 0.375
    assert uniform["greedy_accuracy_ci95"] == pytest.approx(T95_DF1 * 0.125, rel=1e-4)
    # avg@k seeds 0.5 and 0.25 again
    assert uniform["avg_at_k_mean"] == 0.375
    assert uniform["avg_at_k_ci95"] == pytest.approx(T95_DF1 * 0.125, rel=1e-4)
    assert uniform["greedy_accuracy_no_image_mean"] == 0.125
    assert uniform["pass_at_k_mean"] == 0.75  # seeds 1.0 and 0.5
    assert uniform["greedy_accuracy_delta_vs_sft"] == 0.125
    assert uniform["n_seeds"] == 2 and "vs_uniform" not in uniform

    topk = metrics["grpo-entropy_topk"]["test"]
    assert topk["greedy_accuracy_mean"] == 0.75 and topk["greedy_accuracy_ci95"] == 0.0
    assert topk["avg_at_k_mean"] == 0.6875  # seeds 0.625 and 0.75: sem 0.0625
    assert topk["avg_at_k_ci95"] == pytest.approx(T95_DF1 * 0.0625, rel=1e-4)
    # Greedy: entropy_topk's seeds (.75, .75) do not vary, uniform's (.5, .25) do: se^2 = 0.03125 / 2.
    # The examples add nothing: per example over seeds entropy_topk (1, 1, .5, .5) - uniform (1, .5, 0, 0)
    # = (0, .5, .5, .5) has variance 1/16, less than the residual noise it carries (1/6 + 1/16): clipped at 0.
    # So Welch's df is uniform's 1, and the interval .375 +- t(0.975, 1) x .125.
    greedy = topk["vs_uniform"]["greedy_accuracy"]
    assert greedy["diff"] == 0.375 and greedy["se"] == pytest.approx(0.125) and greedy["df"] == pytest.approx(1)
    assert (greedy["ci_low"], greedy["ci_high"]) == pytest.approx((0.375 - T95_DF1 * 0.125, 0.375 + T95_DF1 * 0.125), rel=1e-4)
    assert greedy["p_value"] == pytest.approx(2 * 0.10242, rel=1e-3)  # t = 3 on 1 df
    assert greedy["mdd"] == pytest.approx((T95_DF1 + 1.3764) * 0.125, rel=1e-4)  # t(0.975, 1) + t(0.8, 1)
    # avg@k: (1, .75, .5, .5) - (.875, .375, .125, .125) = (.125, .375, .375, .375)
    assert topk["vs_uniform"]["avg_at_k"]["diff"] == pytest.approx(0.3125)


def test_summary_tables(report: tuple[dict, Path]) -> None:
    _, out = report
    md = (out / "summary.md").read_text()
    assert "### test (n = 4 examples, k = 4 samples)" in md
    assert "| run | seeds | greedy acc % | avg@4 % | pass@4 % | no-image greedy acc % |" in md
    assert "| sft | 1 | 25.0 | 25.0 | 75.0 | 0.0 |  |" in md
    assert "| grpo-uniform | 2 | 37.5 ± 158.8 | 37.5 ± 158.8 | 75.0 ± 317.7 | 12.5 | +12.5 |" in md
    assert "| grpo-entropy_topk | 2 | 75.0 ± 0.0 | 68.8 ± 79.4 | 100.0 ± 0.0 | 37.5 | +50.0 |" in md
    assert "| grpo-entropy_topk | test | +37.5 [" in md
    # per family: count_color (e0, e1), exists (e2, e3)
    assert "| run | count_color (n=2) | exists (n=2) |" in md
    assert "| grpo-uniform | 75.0 | 0.0 |" in md
    assert "| grpo-entropy_topk | 100.0 | 50.0 |" in md
    assert "## Reported in the papers (not reproduced here; different models and benchmarks)" in md
    assert "GRPO 50.8 · ToR-GRPO 53.0 · DAPO 50.6 · ToR-DAPO 53.4" in md
    assert "GRPO 50.90 · DAPO 52.69 · VPPO 54.08 · PGPO 54.70" in md
    assert md.index("| sft |") < md.index("| grpo-uniform |") < md.index("| grpo-entropy_topk |")
    assert "![curves_reward](curves_reward.png)" in md
    # the methods table: every component, batch scope and tie rule from the registries
    assert "| method | weighting | auxiliary loss | rollout transform | reward | counterfactual input | batch scope | ties |" in md
    assert "| entropy_topk | entropy_topk | none | none | task | none | global batch: top-ρ over every valid token of the generated batch | random among" in md
    assert "| uniform | uniform | none | none | task | none | none: every valid token | none: no selection |" in md


def test_curves_are_pngs(report: tuple[dict, Path]) -> None:
    _, out = report
    for name in ("reward", "entropy", "weights"):
        path = out / f"curves_{name}.png"
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(path) as image:
            image.verify()
    assert not list(out.glob(".*.tmp"))


def test_curves_of_metrics_only_some_runs_log(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, p) for p in ("grpo-uniform-s0", "grpo-tor-s0")]
    (runs[1] / "metrics.jsonl").write_text('{"step": 0, "reward": 0.1}\n{"step": 1, "reward": 0.2}\n')
    path = write_eval(tmp_path, fake_eval("sft", "test", *TEST["sft"]))
    build_report([path], runs, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [
        "curves_entropy.png",
        "curves_reward.png",
        "curves_weights.png",
    ]


def test_without_papers(tmp_path: Path) -> None:
    path = write_eval(tmp_path, fake_eval("sft", "test", *TEST["sft"]))
    build_report([path], [], tmp_path / "out", papers=False)
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "Reported in the papers" not in md and "Training curves" not in md
    assert "No method has a `uniform` run" in md


def test_policies_come_from_run_json(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "dr_grpo-tor_reasoning-only-s12", algo="dr_grpo")
    renamed = run_dir.rename(tmp_path / "anything")  # the name is not parsed
    policy = read_policies([renamed])["dr_grpo-tor_reasoning-only-s12"]
    assert (policy.algo, policy.method, policy.seed) == ("dr_grpo", "tor_reasoning-only", 12)
    assert policy.group == "dr_grpo-tor_reasoning-only" and policy.run_dir == renamed
    record = json.loads((renamed / "run.json").read_text())
    assert record["params"] == {"train": {"max_steps": 5}} and record["mlflow_run_id"] is None
    assert len(record["manifest_sha256"]) == 64
    assert "run.json" not in json.loads((tmp_path / "runs" / "dr_grpo-tor_reasoning-only-s12.manifest.json").read_text())["files"]
    (tmp_path / "bare").mkdir()
    with pytest.raises(ValueError, match="bare: a training run's directory needs a run.json"):
        read_policies([tmp_path / "bare"])
    ev = write_eval(tmp_path, fake_eval("grpo-uniform-s0", "test", *TEST["grpo-uniform-s0"]))
    with pytest.raises(ValueError, match="policy 'grpo-uniform-s0' is neither a run given"):
        build_report([ev], [], tmp_path / "out")


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    ev = fake_eval("sft", "test", *TEST["sft"])
    del ev["per_example"]
    bad = write_eval(tmp_path, ev)
    with pytest.raises(ValueError, match=rf"{bad}: missing keys \['per_example'\]"):
        build_report([bad], [], tmp_path / "out")
    good = write_eval(tmp_path / "a", fake_eval("sft", "test", *TEST["sft"]))
    with pytest.raises(ValueError, match="already read"):
        build_report([good, good], [], tmp_path / "out")
    ours = fake_eval("grpo-tor-s0", "test", [1, 0, 1], [1.0, 0.0, 1.0], None)
    base = fake_eval("grpo-uniform-s0", "test", *TEST["grpo-uniform-s0"])
    files = [write_eval(tmp_path / "b", ours), write_eval(tmp_path / "b", base)]
    with pytest.raises(ValueError, match="different examples"):
        build_report(files, run_dirs(tmp_path / "b", ["grpo-tor-s0", "grpo-uniform-s0"]), tmp_path / "out")
    run_dir = write_run(tmp_path, "grpo-uniform-s0")
    (run_dir / "metrics.jsonl").write_text('{"step": 0}\nnot json\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not JSON"):
        build_report([good], [run_dir], tmp_path / "out")


def test_real_benchmark_results_sit_beside_the_papers_figures(tmp_path):
    files = []
    for policy, (greedy, avg, _) in TEST.items():
        ev = fake_eval(policy, "mathverse_testmini", greedy, avg, None)
        ev["source"] = "mathverse"
        files.append(write_eval(tmp_path, ev))
    build_report(files, run_dirs(tmp_path, TEST), tmp_path / "report")
    summary = (tmp_path / "report" / "summary.md").read_text()
    section = summary.split("## Real benchmarks beside the papers' figures")[1].split("## ")[0]
    assert "| mathverse_testmini | grpo-uniform | 37.5 |" in section  # greedy: seeds 2/4 and 1/4
    assert "ToR (Lu et al.): GRPO 50.8, ToR-GRPO 53.0, DAPO 50.6, ToR-DAPO 53.4" in section


def test_no_papers_section_without_real_benchmarks(tmp_path):
    files = [write_eval(tmp_path, fake_eval(p, "test", g, a, n)) for p, (g, a, n) in TEST.items()]
    build_report(files, run_dirs(tmp_path, TEST), tmp_path / "report")
    assert "beside the papers" not in (tmp_path / "report" / "summary.md").read_text()


# Three seeds per group on 4 examples (avg@k; greedy the same 0/1 rounding): entropy_topk is uniform
# + 0.25 on every example of every seed, its random twin equals uniform, the oracle scores 1
# everywhere, atrl has one seed.
UNIFORM3 = [[0.5, 0.25, 0.25, 0.0], [0.5, 0.5, 0.25, 0.0], [0.75, 0.25, 0.25, 0.0]]
GRID3 = {
    "grpo-uniform": UNIFORM3,
    "grpo-random_entropy_topk": UNIFORM3,
    "grpo-entropy_topk": [[x + 0.25 for x in row] for row in UNIFORM3],
    "grpo-oracle_perception": [[1.0] * 4] * 3,
    "grpo-atrl": [[1.0, 0.5, 0.25, 0.25]],
}


def test_report_opens_with_the_ranking_then_the_forest_plot_and_a_sentence_per_method(tmp_path: Path) -> None:
    runs = {f"{group}-s{seed}": ([round(x) for x in row], row, None) for group, rows in GRID3.items() for seed, row in enumerate(rows)}
    evals = [write_eval(tmp_path, fake_eval(p, "test", *scores)) for p, scores in runs.items()]
    out = tmp_path / "report"
    metrics = build_report(evals, run_dirs(tmp_path, runs), out)
    topk = metrics["grpo-entropy_topk"]["test"]
    # uniform's seed means .25, .3125, .3125 (variance 1/768), entropy_topk's the same + .25; the
    # per-example differences are all .25: no example term. Welch: se = sqrt(2 / 768 / 3), df 4.
    c = topk["vs_uniform"]["avg_at_k"]
    se = (2 / 768 / 3) ** 0.5
    assert c["diff"] == pytest.approx(0.25) and c["se"] == pytest.approx(se) and c["df"] == pytest.approx(4)
    assert c["ci_low"] == pytest.approx(0.25 - 2.7764 * se, rel=1e-4)
    assert topk["vs_twin"]["twin"] == "grpo-random_entropy_topk" and topk["vs_twin"]["avg_at_k"] == c
    # oracle gain 1 - .2917 with uniform's seed variance only (df 2); entropy_topk's fraction .25 / .7083
    fraction = topk["gain_fraction"]["grpo-oracle_perception"]
    assert fraction["defined"] and fraction["ratio"] == pytest.approx(0.25 / (1 - 0.875 / 3))
    assert fraction["ci_low"] < fraction["ratio"] < fraction["ci_high"]
    twin = metrics["grpo-random_entropy_topk"]["test"]
    assert twin["gain_fraction"]["grpo-oracle_perception"]["ratio"] == 0 and "vs_twin" not in twin  # controls: no sentence
    # Holm over the 3 claims of entropy_topk (uniform, twin, oracle; atrl's have no p-value)
    p_values = sorted(x["avg_at_k"]["p_value"] for x in (topk["vs_uniform"], topk["vs_twin"], *topk["vs_oracle"].values()))
    assert topk["vs_uniform"]["avg_at_k"]["p_holm"] == pytest.approx(max(3 * p_values[0], 2 * p_values[1]))
    atrl = metrics["grpo-atrl"]["test"]
    assert atrl["vs_uniform"]["avg_at_k"]["ci_low"] is None and "p_holm" not in atrl["vs_uniform"]["avg_at_k"]

    md = (out / "summary.md").read_text()
    assert md.index("## Ranking: gain over `uniform` as a fraction of the oracle's") < md.index("![forest plot") < md.index("## Accuracy")
    ranking = md.split("## Ranking")[1].split("## ")[0]
    assert "| run | fraction of oracle_perception's gain |" in ranking
    assert ranking.index("| grpo-oracle_perception | 1.00 [1.00, 1.00] |") < ranking.index("| grpo-entropy_topk | 0.35 [")
    assert ranking.index("| grpo-entropy_topk |") < ranking.index("| grpo-random_entropy_topk | 0.00 [")
    assert "| grpo-atrl | 0.29 (no interval: a group has one seed) |" in ranking
    assert "test: `grpo-oracle_perception` − uniform, avg@k: +70.8 [" in ranking
    assert (out / "forest.png").read_bytes().startswith(b"\x89PNG")
    assert "test: with 3 seeds per run, the minimal detectable difference in avg@k is" in md  # atrl has none
    assert "hold after Holm's correction over the 3 claims this report makes (family-wise α = 0.05)" in md
    sentence = next(line for line in md.splitlines() if line.startswith("`grpo-entropy_topk` on test"))
    assert "vs uniform +25.0 [" in sentence and "vs its random twin `grpo-random_entropy_topk` +25.0 [" in sentence
    assert sentence.count("beats it") == 2 and "vs the oracle `grpo-oracle_perception` -45.8 [" in sentence and "below it" in sentence
    atrl_sentence = next(line for line in md.splitlines() if line.startswith("`grpo-atrl` on test"))
    assert "vs uniform +20.8 (no interval: a group has one seed), not tested" in atrl_sentence
    assert "| +20.8 (no interval: a group has one seed) | – | – |" in md.split("| grpo-atrl | test |")[1].splitlines()[0]


def test_a_barely_significant_difference_is_no_claim_after_holm(tmp_path: Path) -> None:
    from tokencredit.comparison import method_sentence

    summary = {"vs_uniform": {"avg_at_k": {"diff": 0.05, "ci_low": 0.001, "ci_high": 0.099, "p_value": 0.04, "p_holm": 0.12}}}
    sentence = method_sentence("grpo-tor", "test", summary)
    assert "vs uniform +5.0 [+0.1, +9.9], not told apart after Holm's correction (p 0.040, adjusted 0.120)" in sentence


def test_benchmarks_show_official_metrics_rule_based_figures_and_skipped_rows(tmp_path):
    files = []
    for policy, (greedy, avg, _) in TEST.items():
        seed = int(policy.rsplit("-s", 1)[1]) if policy != "sft" else 0
        wemath = {**fake_eval(policy, "wemath", greedy, avg, None), "source": "wemath", "skipped_rows": []}
        wemath["release_metrics"] = {"greedy": {"score_strict": 0.25 + 0.5 * seed, "IK": 0.5}, "avg_at_k": {}}
        logic = {**fake_eval(policy, "logicvista", greedy, avg, None), "source": "logicvista", "rule_based": True,
                 "skipped_rows": ["data/dataset.json row 382: empty question"]}  # fmt: skip
        files += [write_eval(tmp_path, wemath), write_eval(tmp_path, logic)]
    build_report(files, run_dirs(tmp_path, TEST), tmp_path / "report")
    summary = (tmp_path / "report" / "summary.md").read_text()
    official = summary.split("## Official metrics of the benchmarks' scorers")[1]
    assert "| run | score_strict | IK |" in official and "| grpo-uniform | 50.0 | 50.0 |" in official  # (25 + 75) / 2
    logic_section = summary.split("### logicvista")[1].split("###")[0]
    assert "Rule-based: the official scorer of this benchmark is an LLM judge" in logic_section
    assert "1 row(s) of the release left out: data/dataset.json row 382: empty question" in logic_section
    assert "Rule-based" not in summary.split("### wemath")[1].split("###")[0]
