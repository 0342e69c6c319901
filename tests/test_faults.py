"""Fault injection: train and rollout jobs killed with SIGKILL at random moments, then rerun as the
Snakemake rules run them, end exactly as uninterrupted jobs do (tolerance: none, on CPU).

Each job is a subprocess (`python -m steps.<rule>`, the rules' command). The kill moments are
random but seeded and bounded: at most KILLS kills per job, each after a random number of
completed steps (or shards) plus a random fraction of a step, so kills land anywhere, saves
included. The reference job runs beside the killed ones (two cores). MLflow is unreachable here,
so these jobs also show that a job keeps its result when tracking falls back to files.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tokencredit.manifest import write_manifest
from tokencredit.params import MethodSpec, ModelParams, RolloutParams, ScoringParams, TrainParams

ROOT = Path(__file__).resolve().parents[1]
KILLS = 2
JOB_TIMEOUT_S = 120
# The tiny random policy earns no accuracy reward. DAPO's overlong shaping rewards short
# completions, so groups have mixed rewards and VPPO's weights (with patch-blackening noise) shape the
# update; the entropy penalty gives every step a gradient whatever the rewards.
TRAIN = TrainParams(
    max_steps=6, prompts_per_step=2, num_generations=4, max_completion_length=10, learning_rate=1e-2,
    entropy_penalty=0.5, overlong_cache=8, max_dynamic_sampling_tries=2, save_steps=1,
)  # fmt: skip
ROLLOUTS = RolloutParams(num_samples=2, max_new_tokens=8, batch_size=1)  # one prompt per shard


def env() -> dict[str, str]:
    """Steps import from the checkout; MLflow is unreachable and fails fast (jobs fall back to files)."""
    return {
        **os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:1", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "2", "TOKENCREDIT_MLFLOW_TRIES": "1",
    }  # fmt: skip


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    log = open(cwd / "job.log", "a")
    return subprocess.Popen([sys.executable, "-m", *args], cwd=cwd, env=env(), stdout=log, stderr=subprocess.STDOUT)


def finish(job: subprocess.Popen, cwd: Path) -> None:
    if job.wait(timeout=JOB_TIMEOUT_S) != 0:
        raise AssertionError(f"job failed ({job.returncode}):\n{(cwd / 'job.log').read_text()[-6000:]}")


def kill_and_rerun(args: list[str], cwd: Path, progress, total: int, seed: int) -> list[int]:
    """Kill the job up to KILLS times at random moments, rerun it to the end; the progress at each kill."""
    rng = random.Random(seed)
    seen = []
    for _ in range(KILLS):
        job = start(args, cwd)
        done = progress()
        target = done + rng.randrange(max(1, total - done))  # steps (or shards) to let finish first ...
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while progress() < target and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))  # ... and a random part of the next one
        if job.poll() is not None:  # it finished first: nothing left to interrupt
            break
        job.send_signal(signal.SIGKILL)
        job.wait()
        seen.append(progress())
    finish(start(args, cwd), cwd)
    return seen


def workspace(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def test_killed_training_resumes_to_the_uninterrupted_result(tiny_world, tmp_path):
    data_dir, base_dir = tiny_world
    run = "dapo-vppo-s0"
    args = [
        "steps.train", "--params", TRAIN.model_dump_json(), "--method-spec", MethodSpec(weighting="vppo").model_dump_json(),
        "--scoring", ScoringParams().model_dump_json(), "--model-params", ModelParams().model_dump_json(),
        "--algo", "dapo", "--method", "vppo", "--seed", "0",
        "--init", str(base_dir), "--data", str(data_dir), "--out", f"results/runs/{run}", "--threads", "1",
    ]  # fmt: skip
    reference, killed = workspace(tmp_path, "reference"), workspace(tmp_path, "killed")
    uninterrupted = start(args, reference)

    def logged_steps() -> int:
        files = list((killed / "results/checkpoints" / run).glob("*/metrics.jsonl"))
        return len(files[0].read_text().splitlines()) if files else 0

    kills = kill_and_rerun(args, killed, logged_steps, TRAIN.max_steps, seed=0)
    finish(uninterrupted, reference)
    assert kills, "no kill landed before the job finished"

    out, expected = killed / "results/runs" / run, reference / "results/runs" / run
    assert (out / "model.safetensors").read_bytes() == (expected / "model.safetensors").read_bytes()
    rows, expected_rows = metrics(out), metrics(expected)
    assert [r["step"] for r in rows] == list(range(1, TRAIN.max_steps + 1))  # every step once
    assert [deterministic(r) for r in rows] == [deterministic(r) for r in expected_rows]
    assert not (killed / "results/checkpoints" / run).exists()

    # MLflow was unreachable: each job wrote its run to a file; the last one has every step and finished.
    records = [json.loads(line) for line in newest(killed / "mlflow_fallback").read_text().splitlines()]
    assert sorted(r["step"] for r in records if r["event"] == "metrics") == list(range(1, TRAIN.max_steps + 1))
    assert records[-1] == {**records[-1], "event": "end", "status": "FINISHED"}


def test_killed_rollout_generation_resumes_to_the_uninterrupted_cache(tiny_world, tmp_path):
    data_dir, base_dir = tiny_world
    policy = tmp_path / "sft"
    shutil.copytree(base_dir, policy)
    write_manifest(policy)
    work = "results/checkpoints/rollouts/sft-test"
    args = [
        "steps.rollouts", "--params", ROLLOUTS.model_dump_json(), "--model-params", ModelParams().model_dump_json(),
        "--policy-name", "sft", "--policy", str(policy), "--data", str(data_dir), "--split", "test",
        "--out", "results/rollouts/sft/test.parquet", "--work", work, "--threads", "1",
    ]  # fmt: skip
    reference, killed = workspace(tmp_path, "reference"), workspace(tmp_path, "killed")
    uninterrupted = start(args, reference)
    shards = len(pd.read_parquet(data_dir / "test.parquet", columns=["id"]))

    def done_shards() -> int:
        return len(list((killed / work).glob("shard-*.parquet")))

    kills = kill_and_rerun(args, killed, done_shards, shards, seed=1)
    finish(uninterrupted, reference)
    assert kills, "no kill landed before the job finished"
    out = "results/rollouts/sft/test.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(killed / out), pd.read_parquet(reference / out))
    assert not (killed / work).exists()


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def deterministic(row: dict) -> dict:
    """A metrics row without its timings, which no two runs share."""
    return {k: v for k, v in row.items() if not (k.startswith("time/") or k == "step_time")}


def newest(directory: Path) -> Path:
    return max(directory.glob("*.jsonl"), key=lambda p: p.stat().st_mtime_ns)
