"""End to end: the smoke pipeline through `dvc repro` (which runs Snakemake) in a git copy of the
project, then what reruns after a change (Snakemake's own dry runs), and a DVC round trip."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tokencredit.params import merged_params

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if check and out.returncode != 0:
        raise AssertionError(f"{cmd} failed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-8000:]}")
    return out


def snakemake(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(project, "snakemake", "--cores", "2", *args, check=check)


def git(cwd: Path, *args: str) -> None:
    run(cwd, "git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args)


def planned_jobs(out: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table ({} when nothing is to be done)."""
    text = out.stdout + out.stderr
    if "Job stats" not in text:
        return {}
    table = text.split("Job stats:")[1].split("\n\n")[0]
    rows = (re.match(r"^(\w+)\s+(\d+)$", line.strip()) for line in table.splitlines())
    return {m[1]: int(m[2]) for m in rows if m and m[1] not in ("total", "all")}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """A git + DVC copy of the project whose default params are the smoke set, reproduced by `dvc repro`."""
    project = tmp_path_factory.mktemp("workspace") / "project"
    files = run(ROOT, "git", "ls-files", "-co", "--exclude-standard").stdout.split()
    for name in files:
        src = ROOT / name
        if src.is_file() or src.is_symlink():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            (project / name).symlink_to(src.readlink()) if src.is_symlink() else shutil.copy2(src, project / name)
    smoke = merged_params(ROOT / "params/default.yaml", ROOT / "params/smoke.yaml")
    (project / "params/default.yaml").write_text(yaml.safe_dump(smoke))
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "smoke")
    run(project, "dvc", "repro")
    return project


def test_smoke_pipeline_produces_the_report(smoke_run):
    metrics = json.loads((smoke_run / "results/report/metrics.json").read_text())
    summary = (smoke_run / "results/report/summary.md").read_text()
    assert "sft" in summary and "uniform" in summary
    assert metrics  # runs x splits with accuracies
    for split in ("test", "test_ood"):
        result = json.loads((smoke_run / f"results/eval/grpo-uniform-s0/{split}.json").read_text())
        assert 0.0 <= result["greedy_accuracy"] <= 1.0 and result["n"] == 24
    run_metrics = (smoke_run / "results/runs/grpo-uniform-s0/metrics.jsonl").read_text().splitlines()
    assert any("loss" in json.loads(line) for line in run_metrics)
    assert (smoke_run / "mlflow.db").is_file()


def test_smoke_pipeline_caches_scores_and_writes_the_html_report(smoke_run):
    for policy in ("sft", "grpo-uniform-s0"):
        for split in ("test", "test_ood"):
            assert {p.name for p in (smoke_run / f"results/rollouts/{policy}/{split}").iterdir()} == {
                "sampled.parquet", "greedy.parquet", "no_image.parquet",
            }  # fmt: skip
        assert (smoke_run / f"results/scores/{policy}/test.parquet").is_file()
    assert not list(smoke_run.glob("results/checkpoints/rollouts/*"))  # shards are removed once merged
    page = (smoke_run / "results/report/index.html").read_text()
    assert 'id="viewer-data"' in page and "AUROC for perception tokens" in page
    analysis = json.loads((smoke_run / "results/report/analysis.json").read_text())
    sft = [r for r in analysis["auroc"] if r["policy"] == "sft" and r["family"] == "all"]
    assert {r["signal"] for r in sft} >= {"entropy", "attn_image", "vis_k3.patch_blackening", "vis_absdiff.drop_image"}
    assert all(r["ci_low"] <= r["auroc"] <= r["ci_high"] for r in sft if r["auroc"] is not None)


def test_mlflow_records_every_job(smoke_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_run / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tokencredit-smoke")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    stages = sorted(r.data.tags.get("stage") for r in runs)
    assert stages.count("grade") == 4 and stages.count("train") == 1
    assert stages.count("rollouts") == 12 and stages.count("score") == 2  # 2 policies x 2 splits x 3 decodings
    assert {"prepare_data", "build_base", "sft", "report"} <= set(stages)


def test_nothing_to_do_after_a_complete_run(smoke_run):
    assert planned_jobs(snakemake(smoke_run, "-n")) == {}


def dry_run(project: Path, tmp_path: Path, override: str) -> dict[str, int]:
    path = tmp_path / "override.yaml"
    path.write_text(override)
    return planned_jobs(snakemake(project, "-n", "--configfile", str(path)))


def test_train_change_reruns_only_the_runs_jobs(smoke_run, tmp_path):
    # One rollouts job per policy and split (all its decodings), one grade job per policy (all its splits).
    jobs = dry_run(smoke_run, tmp_path, "train:\n  max_steps: 3\n")
    assert jobs == {"train": 1, "rollouts": 2, "grade": 1, "score": 1, "report": 1}


def test_grading_changes_regrade_without_generating(smoke_run, tmp_path):
    # Grading reads the cached decodings: no rollouts job, hence no generation.
    assert dry_run(smoke_run, tmp_path, "eval:\n  k: 1\n") == {"grade": 2, "report": 1}
    assert dry_run(smoke_run, tmp_path, "eval:\n  without_image: false\n") == {"grade": 2, "report": 1}


def test_scoring_changes_rescore_without_generating(smoke_run, tmp_path):
    assert dry_run(smoke_run, tmp_path, "score:\n  batch_size: 7\n") == {"score": 2, "report": 1}
    # Every method variant is weighted on every policy's tokens, trained in the grid or not.
    tor = "methods:\n  uniform: {weighting: uniform}\n  tor: {weighting: tor, hparams: {rho_r: 0.2}}\n"
    assert dry_run(smoke_run, tmp_path, tor) == {"score": 2, "report": 1}
    assert dry_run(smoke_run, tmp_path, "analysis:\n  n_bootstrap: 50\n") == {"report": 1}


def test_a_changed_rollout_cache_key_regenerates(smoke_run, tmp_path):
    # Any rollouts key reruns every rollouts job; which decodings it regenerates is the cache
    # key's business (test_rollouts_rerun_regenerates_only_stale_decodings).
    for override in ("rollouts:\n  temperature: 0.7\n", "rollouts:\n  max_new_tokens: 20\n"):
        assert dry_run(smoke_run, tmp_path, override) == {"rollouts": 4, "grade": 2, "score": 2, "report": 1}


def rollout_files(project: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (project / "results/rollouts/sft/test").glob("*.parquet")}


def test_rollouts_rerun_regenerates_only_stale_decodings(smoke_run, tmp_path):
    """A new temperature regenerates `sampled` and keeps greedy and no_image as they are; a new token
    budget regenerates all; a rerun leaves nothing to do. In a copy: the other tests keep the run."""
    project = tmp_path / "project"
    shutil.copytree(smoke_run, project, symlinks=True)
    target = "results/rollouts/sft/test/sampled.parquet"  # the rollouts job of sft on test alone
    before = rollout_files(project)
    hotter = tmp_path / "hotter.yaml"
    hotter.write_text("rollouts:\n  temperature: 0.7\n")
    snakemake(project, target, "--configfile", str(hotter))
    after = rollout_files(project)
    assert sorted(name for name in before if after[name] != before[name]) == ["sampled.parquet"]
    assert planned_jobs(snakemake(project, target, "-n", "--configfile", str(hotter))) == {}

    longer = tmp_path / "longer.yaml"
    longer.write_text("rollouts:\n  temperature: 0.7\n  max_new_tokens: 20\n")
    snakemake(project, target, "--configfile", str(longer))
    regenerated = rollout_files(project)
    assert sorted(regenerated) == sorted(after) and all(regenerated[name] != after[name] for name in after)


def test_dvc_pull_into_a_fresh_clone_is_up_to_date(smoke_run):
    git(smoke_run, "add", "-A")
    git(smoke_run, "commit", "-qm", "results")  # dvc.lock: the hashes of this run's outputs
    run(smoke_run, "dvc", "push")
    clone = smoke_run.parent / "clone"
    git(smoke_run.parent, "clone", "-q", str(smoke_run), str(clone))
    run(clone, "dvc", "pull")
    assert (clone / "results/report/metrics.json").read_bytes() == (smoke_run / "results/report/metrics.json").read_bytes()
    assert planned_jobs(snakemake(clone, "-n")) == {}
    assert "Nothing to be done" in snakemake(clone, "-n").stdout + snakemake(clone, "-n").stderr


def test_bad_params_fail_before_any_job_and_keep_outputs(smoke_run, tmp_path):
    before = (smoke_run / "results/report/metrics.json").read_bytes()
    override = tmp_path / "bad.yaml"
    override.write_text("train:\n  methods: [uniform, no_such_method]\n")
    out = snakemake(smoke_run, "--configfile", str(override), check=False)
    assert out.returncode != 0
    assert "no_such_method" in out.stdout + out.stderr
    assert (smoke_run / "results/report/metrics.json").read_bytes() == before
