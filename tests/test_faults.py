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
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from tokencredit.manifest import write_manifest
from tokencredit.params import MethodSpec, ModelParams, RolloutParams, ScoringParams, TrainParams
from tokencredit.run_lock import STALE_AFTER_S, RunHeld, hold_run
from tokencredit.training import MetricsLogger, check_checkpoint, discard_stale_checkpoints, last_checkpoint, run_fingerprint

ROOT = Path(__file__).resolve().parents[1]
KILLS = 2
JOB_TIMEOUT_S = 120
# The tiny random policy earns no accuracy reward. DAPO's overlong shaping rewards the rare
# completions that stop early, so dynamic sampling draws extra prompts every step and VPPO (with
# patch-blackening noise) weighs the mixed groups; the entropy penalty gives every step a gradient.
TRAIN = TrainParams(
    max_steps=6, prompts_per_step=2, num_generations=4, max_completion_length=10, learning_rate=1e-2,
    entropy_penalty=0.5, overlong_cache=8, max_dynamic_sampling_tries=2, save_steps=1,
)  # fmt: skip
ROLLOUTS = RolloutParams(num_samples=2, max_new_tokens=8, batch_size=1)  # one prompt per shard


def env() -> dict[str, str]:
    """Steps import from the checkout; MLflow is unreachable and fails fast (jobs fall back to files)."""
    return {
        **os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "OMP_NUM_THREADS": "1",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:1", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "2", "TOKENCREDIT_MLFLOW_TRIES": "1",
    }  # fmt: skip


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    with open(cwd / "job.log", "a") as log:  # the job keeps its own copy of the handle
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
    assert (records[-1]["event"], records[-1]["status"]) == ("end", "FINISHED")


def test_killed_rollout_generation_resumes_to_the_uninterrupted_cache(tiny_world, tmp_path):
    data_dir, base_dir = tiny_world
    policy = tmp_path / "sft"
    shutil.copytree(base_dir, policy)
    write_manifest(policy)
    work = "results/checkpoints/rollouts/sft/test-sampled"
    args = [
        "steps.rollouts", "--params", ROLLOUTS.model_dump_json(), "--model-params", ModelParams().model_dump_json(),
        "--policy-name", "sft", "--policy", str(policy), "--data", str(data_dir / "test.parquet"),
        "--out", "results/rollouts/sft/test/sampled.parquet", "--work", "results/checkpoints/rollouts/sft", "--threads", "1",
    ]  # fmt: skip
    reference, killed = workspace(tmp_path, "reference"), workspace(tmp_path, "killed")
    uninterrupted = start(args, reference)
    shards = len(pd.read_parquet(data_dir / "test.parquet", columns=["id"]))

    def done_shards() -> int:
        return len(list((killed / work).glob("shard-*.parquet")))

    kills = kill_and_rerun(args, killed, done_shards, shards, seed=1)
    finish(uninterrupted, reference)
    assert kills, "no kill landed before the job finished"
    out = "results/rollouts/sft/test/sampled.parquet"
    assert (killed / out).read_bytes() == (reference / out).read_bytes()
    assert not (killed / work).exists()


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def deterministic(row: dict) -> dict:
    """A metrics row without its timings, which no two runs share."""
    return {k: v for k, v in row.items() if not (k.startswith("time/") or k == "step_time")}


def newest(directory: Path) -> Path:
    return max(directory.glob("*.jsonl"), key=lambda p: p.stat().st_mtime_ns)


# -- what a rerun resumes from ----------------------------------------------------------------------


def fake_checkpoint(directory: Path, step: int, state: str | None = None) -> Path:
    """The files a single-process Trainer checkpoint holds; `state` replaces trainer_state.json's text."""
    checkpoint = directory / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    save_file({"w": torch.zeros(2)}, checkpoint / "model.safetensors")
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        torch.save({"state": torch.ones(1)}, checkpoint / name)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}) if state is None else state)
    return checkpoint


def test_resume_passes_over_cut_short_checkpoints_and_other_fingerprints(tmp_path):
    run_dir = tmp_path / "results/checkpoints/grpo-uniform-s0"
    current, stale = run_dir / "fingerprint", run_dir / "other-params"
    complete = fake_checkpoint(current, 2)
    cut_short = fake_checkpoint(current, 3)
    (cut_short / "trainer_state.json").unlink()  # killed before the Trainer wrote its last file
    half_written = fake_checkpoint(current, 4, state='{"global_st')  # killed while writing it
    fake_checkpoint(stale, 9)
    assert last_checkpoint(current) == complete and last_checkpoint(tmp_path / "nothing") is None
    discard_stale_checkpoints(run_dir, current)
    assert not stale.exists() and not cut_short.exists() and not half_written.exists() and complete.is_dir()
    check_checkpoint(complete, ("optimizer.pt", "scheduler.pt"))


def test_a_resumed_run_keeps_the_metrics_up_to_its_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": s / 10}) + "\n" for s in range(1, 6)) + '{"step": 6, "lo')
    forwarded = []
    MetricsLogger(path, lambda row, step: forwarded.append((step, row))).resume(3)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]
    assert forwarded == [(1, {"loss": 0.1}), (2, {"loss": 0.2}), (3, {"loss": 0.3})]  # the new tracking run gets them again
    MetricsLogger(path).resume(0)  # no checkpoint: a fresh start
    assert path.read_text() == ""


def test_the_fingerprint_follows_settings_policy_and_data(tiny_world, tmp_path):
    data_dir, base_dir = tiny_world
    policy = tmp_path / "policy"
    shutil.copytree(base_dir, policy)
    key = run_fingerprint({"train": {"max_steps": 2}}, policy, data_dir / "train.parquet")
    assert key == run_fingerprint({"train": {"max_steps": 2}}, policy, data_dir / "train.parquet")
    assert key != run_fingerprint({"train": {"max_steps": 3}}, policy, data_dir / "train.parquet")
    assert key != run_fingerprint({"train": {"max_steps": 2}}, policy, data_dir / "validation.parquet")
    (policy / "extra.txt").write_text("new weights")
    assert key != run_fingerprint({"train": {"max_steps": 2}}, policy, data_dir / "train.parquet")
    write_manifest(policy)  # a pipeline-built policy counts by its manifest
    with_manifest = run_fingerprint({"train": {"max_steps": 2}}, policy, data_dir / "train.parquet")
    os.utime(policy / "extra.txt", ns=(0, 0))
    assert with_manifest == run_fingerprint({"train": {"max_steps": 2}}, policy, data_dir / "train.parquet")


def test_a_second_trainer_stops_before_touching_a_run_another_holds(tiny_world, tmp_path):
    """The orphan of a killed job's shell, still training, and the rerun's trainer on the same run: the
    rerun stops at once, naming the holder, and the holder's checkpoints stay; the holder finishes."""
    data_dir, base_dir = tiny_world
    run = "grpo-uniform-s0"
    train = TrainParams(max_steps=2, prompts_per_step=2, num_generations=4, max_completion_length=8, save_steps=1, entropy_penalty=0.5)
    args = [
        "steps.train", "--params", train.model_dump_json(), "--method-spec", MethodSpec(weighting="uniform").model_dump_json(),
        "--scoring", ScoringParams().model_dump_json(), "--model-params", ModelParams().model_dump_json(),
        "--algo", "grpo", "--method", "uniform", "--seed", "0",
        "--init", str(base_dir), "--data", str(data_dir), "--out", f"results/runs/{run}",
    ]  # fmt: skip
    holder = start(args, tmp_path)
    checkpoints = tmp_path / "results/checkpoints" / run
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while last_checkpoint(next(checkpoints.glob("*/"), checkpoints)) is None and holder.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    holder.send_signal(signal.SIGSTOP)  # a checkpoint saved, more to come: hold it still while the rerun tries
    try:
        kept = sorted((p.relative_to(checkpoints), p.stat().st_mtime_ns) for p in checkpoints.rglob("*"))
        assert any(name.name.startswith("checkpoint-") for name, _ in kept)
        rerun = subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
        assert rerun.returncode != 0
        assert f"is held by trainer pid {holder.pid} on host {socket.gethostname()}" in rerun.stderr, rerun.stderr[-3000:]
        assert sorted((p.relative_to(checkpoints), p.stat().st_mtime_ns) for p in checkpoints.rglob("*")) == kept
        assert "Loading weights" not in rerun.stderr  # stopped before any work
    finally:
        holder.send_signal(signal.SIGCONT)
    finish(holder, tmp_path)
    assert len(metrics(tmp_path / "results/runs" / run)) == train.max_steps


def test_a_run_recorded_by_a_live_trainer_on_another_host_is_refused_until_its_record_is_stale(tmp_path):
    """On NFS or Lustre without shared flocks the lock does not see another host's trainer; its
    pid@host record, refreshed while it runs, does."""
    run_dir = tmp_path / "results/checkpoints/grpo-uniform-s0"
    record = run_dir.with_name(run_dir.name + ".holder")
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"pid": 4242, "host": "node-17", "since": "2026-12-06T10:00:00+0000"}))
    with pytest.raises(RunHeld, match="held by trainer pid 4242 on host node-17"):
        with hold_run(run_dir):
            pass
    stale = time.time() - STALE_AFTER_S - 1
    os.utime(record, (stale, stale))  # its holder stopped refreshing it
    with hold_run(run_dir):
        assert json.loads(record.read_text())["pid"] == os.getpid()
    assert not record.exists()
