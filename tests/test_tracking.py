"""MLflow tracking helpers: what lands in the backend, concurrency, fallback to files."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tokencredit import tracking


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sqlite file for the tests that do not need a fresh one (creating one takes seconds)."""
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"


@pytest.fixture
def backend(shared_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The shared sqlite backend; the working directory moves to tmp_path."""
    return use_backend(shared_db, tmp_path, monkeypatch)


def use_backend(db: Path, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{db}"
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "test-exp")
    return uri


def client(uri: str):
    import mlflow

    return mlflow.MlflowClient(uri)


def test_params_metrics_tags_land(backend: str, tmp_path: Path) -> None:
    params = {"sft": {"learning_rate": 1e-3, "steps": 10}, "seeds": [0, 1], "long": "x" * 7000}
    artifact = tmp_path / "note.txt"
    artifact.write_text("hello")
    with tracking.job_run(
        "train", params, tags={"policy": "grpo-uniform-s0", "algo": "grpo", "seed": 0}
    ) as run:
        run.log_metrics({"reward": 0.5, "entropy": 1.25}, step=1)
        run.log_metrics({"reward": 0.75}, step=2)
        run.log_artifact(artifact)

    data = client(backend).get_run(run.run_id)
    assert data.info.status == "FINISHED"
    assert data.info.run_name == "train-grpo-uniform-s0"
    assert data.data.params["sft.learning_rate"] == "0.001"
    assert data.data.params["sft.steps"] == "10"
    assert data.data.params["seeds"] == "[0, 1]"
    assert len(data.data.params["long"]) == tracking.MAX_PARAM_VALUE_CHARS
    assert data.data.metrics == {"reward": 0.75, "entropy": 1.25}
    history = client(backend).get_metric_history(run.run_id, "reward")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.75)]
    tags = data.data.tags
    assert tags["stage"] == "train" and tags["policy"] == "grpo-uniform-s0" and tags["seed"] == "0"
    assert tags["params_hash"] == tracking.params_hash(params) and len(tags["params_hash"]) == 12
    assert tags["git_commit"]
    artifacts = client(backend).list_artifacts(run.run_id)
    assert [a.path for a in artifacts] == ["note.txt"]
    assert not (tmp_path / tracking.FALLBACK_DIR).exists()


def test_failed_body_marks_run_failed(backend: str) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with tracking.job_run("sft") as run:
            raise RuntimeError("boom")
    assert client(backend).get_run(run.run_id).info.status == "FAILED"


def test_sigterm_ends_the_run_killed(backend: str) -> None:
    with pytest.raises(tracking.Terminated) as exit_info:
        with tracking.job_run("grade", tags={"policy": "sft", "split": "test"}) as run:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert client(backend).get_run(run.run_id).info.status == "KILLED"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the job's handler is gone


def test_a_killed_attempts_run_is_closed_when_the_job_starts_again(backend: str) -> None:
    """A SIGKILLed job leaves its run RUNNING; the next attempt of the same job marks it KILLED."""
    mlflow_client = client(backend)
    experiment = tracking.init_backend()
    job = {"stage": "rollouts", "policy": "sft", "split": "test", "decoding": "greedy"}
    killed = mlflow_client.create_run(experiment, tags={**job, "git_commit": "old"}, run_name="rollouts-sft").info.run_id
    other_job = mlflow_client.create_run(experiment, tags={**job, "decoding": "sampled"}, run_name="rollouts-sft").info.run_id
    with tracking.job_run("rollouts", tags={k: v for k, v in job.items() if k != "stage"}) as run:
        pass
    assert mlflow_client.get_run(killed).info.status == "KILLED"
    assert mlflow_client.get_run(other_job).info.status == "RUNNING"  # another job's run is left alone
    assert mlflow_client.get_run(run.run_id).info.status == "FINISHED"


def test_nested_job_run_adds_to_its_policy_run(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    experiment = tracking.init_backend()
    mlflow_client = client(backend)
    # MLflow 3's UI opens an experiment of this kind on its runs table, not on the GenAI overview.
    assert mlflow_client.get_experiment(experiment).tags["mlflow.experimentKind"] == "custom_model_development"
    monkeypatch.setenv(tracking.INVOCATION_ENV, "20260101T000000-abc")
    with tracking.job_run("train", tags={"policy": "grpo-tor-s0"}) as train:
        pass
    with tracking.job_run("grade", tags={"policy": "grpo-tor-s0"}, parent_run_id=train.run_id) as grade:
        tracking.log_to_run(train.run_id, {"test/greedy_acc": 0.5})
    tags = mlflow_client.get_run(grade.run_id).data.tags
    assert tags["mlflow.parentRunId"] == train.run_id and tags["invocation"] == "20260101T000000-abc"
    assert mlflow_client.get_run(train.run_id).data.metrics == {"test/greedy_acc": 0.5}


def test_params_hash_and_flatten() -> None:
    assert tracking.params_hash({"a": 1, "b": 2}) == tracking.params_hash({"b": 2, "a": 1})
    assert tracking.params_hash({"a": 1}) != tracking.params_hash({"a": 2})
    assert tracking.flatten_params({"a": {"b": {"c": None}}, "d": True}) == {
        "a.b.c": "None",
        "d": "True",
    }


def test_retry_waits_out_a_locked_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracking.time, "sleep", lambda s: None)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "ok"

    assert tracking.retry(flaky, tries=5) == "ok" and len(calls) == 3
    calls.clear()
    with pytest.raises(sqlite3.OperationalError):
        tracking.retry(flaky, tries=2)
    assert len(calls) == 2
    calls.clear()

    def broken() -> None:
        calls.append(1)
        raise ValueError("not a lock problem")

    with pytest.raises(ValueError):
        tracking.retry(broken, tries=5)
    assert len(calls) == 1  # only busy/locked errors are retried


def _log_one(seed: int) -> str | None:
    with tracking.job_run("train", {"seed": seed}, tags={"policy": f"grpo-uniform-s{seed}"}) as run:
        for step in range(5):
            run.log_metrics({"reward": step * 0.1 + seed}, step=step)
    return None if run.fallback_path else run.run_id


def test_concurrent_processes_on_a_fresh_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = use_backend(tmp_path / "fresh.db", tmp_path, monkeypatch)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        run_ids = pool.map(_log_one, range(4))
    assert all(run_ids), "a process fell back to a file"
    mlflow_client = client(fresh)
    experiment = mlflow_client.get_experiment_by_name("test-exp")
    runs = mlflow_client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_id for r in runs) == sorted(run_ids)
    assert all(len(mlflow_client.get_metric_history(r, "reward")) == 5 for r in run_ids)


def test_unreachable_backend_falls_back_to_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setenv(tracking.TRIES_ENV, "1")
    assert tracking.init_backend() is None
    tracking.log_to_run("0" * 32, {"test/greedy_acc": 1.0})  # warns only
    with tracking.job_run("train", {"lr": 0.1}, tags={"policy": "dapo-tor-s3"}) as run:
        run.log_metrics({"reward": 1.0}, step=7)
    assert run.run_id is None
    files = list((tmp_path / tracking.FALLBACK_DIR).glob("train-dapo-tor-s3-*.jsonl"))
    assert files == [run.fallback_path]
    records = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [r["event"] for r in records] == ["start", "metrics", "end"]
    assert records[0]["params"] == {"lr": "0.1"} and records[0]["tags"]["stage"] == "train"
    assert records[1]["metrics"] == {"reward": 1.0} and records[1]["step"] == 7
    assert records[2]["status"] == "FINISHED"
