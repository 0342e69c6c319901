"""End to end: the smoke pipeline through Snakemake, then what reruns after a change (dry runs)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_EXPERIMENT_NAME", None)
    cmd = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(ROOT / "Snakefile"),
        "--directory", str(workdir),
        "--profile", str(ROOT / "workflow/profiles/default"),
        "--configfile", str(ROOT / "params/smoke.yaml"),
        "--cores", "2",
        *args,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake failed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-8000:]}")
    return out


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
    workdir = tmp_path_factory.mktemp("smoke")
    snakemake(workdir)
    return workdir


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


def test_mlflow_records_every_job(smoke_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_run / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tokencredit-smoke")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    stages = sorted(r.data.tags.get("stage") for r in runs)
    assert stages.count("evaluate") == 4 and stages.count("train") == 1
    assert {"prepare_data", "build_base", "sft", "report"} <= set(stages)


def test_nothing_to_do_after_a_complete_run(smoke_run):
    assert planned_jobs(snakemake(smoke_run, "-n")) == {}


def test_train_change_reruns_only_train_evaluate_report(smoke_run, tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text("train:\n  max_steps: 3\n")
    jobs = planned_jobs(snakemake(smoke_run, "-n", "--configfile", str(ROOT / "params/smoke.yaml"), str(override)))
    assert jobs == {"train": 1, "evaluate": 2, "report": 1}


def test_eval_change_reruns_only_evaluate_report(smoke_run, tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text("eval:\n  k: 3\n")
    jobs = planned_jobs(snakemake(smoke_run, "-n", "--configfile", str(ROOT / "params/smoke.yaml"), str(override)))
    assert jobs == {"evaluate": 4, "report": 1}


def test_bad_params_fail_before_any_job_and_keep_outputs(smoke_run, tmp_path):
    before = (smoke_run / "results/report/metrics.json").read_bytes()
    override = tmp_path / "bad.yaml"
    override.write_text("train:\n  methods: [uniform, no_such_method]\n")
    out = snakemake(smoke_run, "--configfile", str(ROOT / "params/smoke.yaml"), str(override), check=False)
    assert out.returncode != 0
    assert "no_such_method" in out.stdout + out.stderr
    assert (smoke_run / "results/report/metrics.json").read_bytes() == before
