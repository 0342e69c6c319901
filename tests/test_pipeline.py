"""End to end: the smoke pipeline through `dvc repro` (which runs Snakemake) in a git copy of the
project, then what reruns after a change (Snakemake's own dry runs), and a DVC round trip."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tokencredit.params import activate
from tokencredit.tracking import RUNS_VIEW

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


def snakemake(project: Path, *args: str, overrides: tuple[str, ...] = (), check: bool = True) -> subprocess.CompletedProcess:
    """Snakemake on the active params set (params.yaml, as DVC's stage runs it), then `overrides`.

    Targets and flags go first: `--configfile` takes every word after it, and a second
    `--configfile` would replace the first."""
    return run(project, "snakemake", "--cores", "2", *args, "--configfile", "params.yaml", *overrides, check=check)


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
    """A git + DVC copy of the project whose active params set is the smoke set, reproduced by `dvc repro`."""
    project = tmp_path_factory.mktemp("workspace") / "project"
    files = run(ROOT, "git", "ls-files", "-co", "--exclude-standard").stdout.split()
    for name in files:
        src = ROOT / name
        if src.is_file() or src.is_symlink():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            (project / name).symlink_to(src.readlink()) if src.is_symlink() else shutil.copy2(src, project / name)
    activate("params/smoke.yaml", root=project)
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def page_text(chromium: str, url: str, profile: Path, rendered: str) -> str:
    """The visible text of a page in headless Chromium (--dump-dom, tags stripped).

    A busy machine may dump the page before its data arrived: up to 3 tries, until `rendered` shows.
    The window is wide because MLflow's runs table renders only the columns that fit in it.
    """
    for _ in range(3):
        dom = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
             "--window-size=2560,1200", "--virtual-time-budget=30000", "--dump-dom", url],
            capture_output=True, text=True, timeout=180,
        ).stdout  # fmt: skip
        text = re.sub(r"\s+", " ", re.sub(r"<(style|script)\b.*?</\1>|<[^>]+>", " ", dom, flags=re.S))
        if rendered in text:
            break
    return text


def mlflow_runs_view(chromium: str, url: str, experiment_id: str, tmp_path: Path) -> str:
    """The experiment's runs table in the view the report step saves, as the README links it."""
    return page_text(chromium, f"{url}/#/experiments/{experiment_id}/runs?viewStateShareKey={RUNS_VIEW}", tmp_path / "p1", "test/greedy_acc")


def test_compare_methods_in_the_mlflow_ui(smoke_run, tmp_path):
    from mlflow.tracking import MlflowClient

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{smoke_run / 'mlflow.db'}",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(1)
        client = MlflowClient(url)
        experiment = client.get_experiment_by_name("tokencredit-smoke")
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # a model-training experiment
        runs = client.search_runs([experiment.experiment_id], "params.method = 'uniform'", order_by=["metrics.`test/greedy_acc` DESC"])
        assert [r.info.run_name for r in runs] == ["grpo-uniform-s0"]
        uniform = runs[0].data
        assert {"algo": "grpo", "method": "uniform", "seed": "0"}.items() <= uniform.params.items()
        for split in ("test", "test_ood"):
            assert {f"{split}/greedy_acc", f"{split}/avg_at_k", f"{split}/pass_at_k", f"{split}/no_image_acc"} <= uniform.metrics.keys()
        record = json.loads((smoke_run / "results/runs/grpo-uniform-s0/run.json").read_text())
        assert record["mlflow_run_id"] == runs[0].info.run_id and record["params"]["train"]["max_steps"] == 2
        # Every run of the policy carries its identifying tags; one invocation tag groups the whole call.
        jobs = client.search_runs([experiment.experiment_id], "tags.policy = 'grpo-uniform-s0'", max_results=100)
        assert len(jobs) > 5 and all(r.data.tags.get("method") == "uniform" and r.data.tags.get("seed") == "0" for r in jobs)
        assert len({r.data.tags["invocation"] for r in client.search_runs([experiment.experiment_id], max_results=200)}) == 1

        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            if os.environ.get("CI"):
                pytest.fail("CI must run the browser test: install Debian's `chromium` package")
            pytest.skip("chromium is not installed (apt-get install chromium)")
        table = mlflow_runs_view(chromium, url, experiment.experiment_id, tmp_path)
        assert "Training runs" in table and "grpo-uniform-s0" in table and "sft" in table  # the runs table, not traces
        # Columns: method (each run's value beside its name) and the accuracies, sorted by test accuracy.
        assert "Sort: test/greedy_acc" in table and "test/avg_at_k" in table and "test_ood/greedy_acc" in table
        assert "uniform" in table.split()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_nothing_to_do_after_a_complete_run(smoke_run):
    assert planned_jobs(snakemake(smoke_run, "-n")) == {}


def dry_run(project: Path, tmp_path: Path, override: str) -> dict[str, int]:
    path = tmp_path / "override.yaml"
    path.write_text(override)
    return planned_jobs(snakemake(project, "-n", overrides=(str(path),)))


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
    snakemake(project, target, overrides=(str(hotter),))
    after = rollout_files(project)
    assert sorted(name for name in before if after[name] != before[name]) == ["sampled.parquet"]
    assert planned_jobs(snakemake(project, target, "-n", overrides=(str(hotter),))) == {}

    longer = tmp_path / "longer.yaml"
    longer.write_text("rollouts:\n  temperature: 0.7\n  max_new_tokens: 20\n")
    snakemake(project, target, overrides=(str(longer),))
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
    out = snakemake(smoke_run, overrides=(str(override),), check=False)
    assert out.returncode != 0
    assert "no_such_method" in out.stdout + out.stderr
    assert (smoke_run / "results/report/metrics.json").read_bytes() == before


def test_dvc_exp_run_sets_a_key_of_the_active_set(smoke_run):
    """Last: it retrains. `-S` edits params.yaml, the smoke set here; `dvc exp show` lists the report's metrics."""
    run(smoke_run, "dvc", "exp", "run", "-S", "train.max_steps=3")
    record = json.loads((smoke_run / "results/runs/grpo-uniform-s0/run.json").read_text())
    assert record["params"]["train"]["max_steps"] == 3 and record["params"]["train"]["prompts_per_step"] == 2  # smoke's
    shown = run(smoke_run, "dvc", "exp", "show", "--csv").stdout
    header = shown.splitlines()[0].split(",")
    assert "grpo-uniform.test.greedy_accuracy_mean" in header and "train.max_steps" in header
