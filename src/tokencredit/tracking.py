"""MLflow tracking for pipeline jobs: one run per job, robust to a busy or absent backend.

The backend and experiment come from MLflow's own environment variables, MLFLOW_TRACKING_URI and
MLFLOW_EXPERIMENT_NAME (unset: MLflow's defaults, `sqlite:///mlflow.db` and "Default").

Several Snakemake jobs write one sqlite file at once, so every MLflow call is retried with bounded
exponential backoff while the database reports itself locked or busy, and the first use of a
sqlite file (schema migrations, experiment creation) is serialised across processes by a file
lock. A backend that stays locked, cannot be reached, or whose client cannot be imported never
costs a job its result: the run's records go to `<cwd>/mlflow_fallback/<run_name>-<time>.jsonl`
with a warning, and the job carries on.

A job cancelled with SIGTERM (Snakemake on Ctrl-C, a cluster's time limit) ends its run KILLED.
A job killed outright (SIGKILL, a lost node) cannot; its run stays RUNNING until the same job
starts again, which marks it KILLED: Snakemake never runs one job twice at once.

mlflow is imported lazily: importing it takes seconds, and machines without it still run.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

TRIES_ENV = "TOKENCREDIT_MLFLOW_TRIES"  # tries per MLflow call while the backend is busy
DEFAULT_TRIES = 8
RETRY_BUDGET_S = 30.0  # no new try starts after this long
FALLBACK_DIR = "mlflow_fallback"
MAX_PARAM_VALUE_CHARS = 6000  # MLflow's limit on a param value
PARAMS_PER_BATCH = 100  # MLflow's limit on params in one log_batch call
METRICS_PER_BATCH = 1000  # MLflow's limit on metrics in one log_batch call
INVOCATION_ENV = "TOKENCREDIT_INVOCATION"  # set once per `snakemake` call: every job run carries it as a tag
# MLflow 3's UI opens an experiment of this kind on its runs table (GenAI ones open on traces).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}

T = TypeVar("T")


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def retry(fn: Callable[..., T], *args: Any, tries: int | None = None, **kwargs: Any) -> T:
    """Call `fn`, retrying with exponential backoff while the backend says it is locked/busy."""
    tries = tries or int(os.environ.get(TRIES_ENV, DEFAULT_TRIES))
    start, delay, attempt = time.monotonic(), 0.25, 1
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not _is_busy(exc) or attempt >= tries or time.monotonic() - start > RETRY_BUDGET_S:
                raise
        # Jitter keeps concurrent jobs that collided once from colliding again in lockstep.
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay, attempt = delay * 2, attempt + 1


@contextmanager
def _first_use_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on `<db>.lock` for a sqlite URI; do nothing for other backends.

    MLflow creates a fresh database's tables (alembic migrations) and experiments without any
    cross-process guard; two jobs doing it at once fail.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(uri.removeprefix("sqlite:///").split("?")[0] + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _client_and_experiment() -> tuple[Any, str]:
    """An MlflowClient for the configured backend and the id of the configured experiment."""
    import mlflow
    from mlflow.environment_variables import MLFLOW_EXPERIMENT_NAME
    from mlflow.exceptions import MlflowException

    uri = mlflow.get_tracking_uri()
    name = MLFLOW_EXPERIMENT_NAME.get() or "Default"
    with _first_use_lock(uri):
        client = mlflow.MlflowClient(uri)
        experiment = retry(client.get_experiment_by_name, name)
        if experiment is None:
            try:
                return client, retry(client.create_experiment, name, tags=EXPERIMENT_KIND)
            except MlflowException:
                # Another process (on a server backend) created it between our two calls.
                experiment = retry(client.get_experiment_by_name, name)
                if experiment is None:
                    raise
        for key, value in EXPERIMENT_KIND.items():
            if experiment.tags.get(key) != value:  # an experiment made before, or by MLflow itself
                retry(client.set_experiment_tag, experiment.experiment_id, key, value)
        return client, experiment.experiment_id


def init_backend() -> str | None:
    """Create the backend's tables and the experiment once; return the experiment id.

    Call it from the single process that starts the pipeline so that parallel jobs find the
    database ready. A failing backend only gives a warning (jobs then fall back to files).
    """
    try:
        return _client_and_experiment()[1]
    except Exception as exc:
        log.warning("MLflow backend unavailable (%s); jobs will log to %s/", exc, FALLBACK_DIR)
        return None


# MLflow 3.17's UI opens a view saved as the experiment tag mlflow.sharedViewState.<key> (JSON of its
# search facets and column state) from #/experiments/<id>/runs?viewStateShareKey=<key>; the README links it.
RUNS_VIEW = "methods"
# A grade record's summary numbers, as metrics "{split}/{name}" of the policy's own run.
POLICY_METRICS = {"greedy_accuracy": "greedy_acc", "avg_at_k": "avg_at_k", "pass_at_k": "pass_at_k", "greedy_accuracy_no_image": "no_image_acc"}


def share_runs_view(splits: list[str]) -> None:
    """The policies' runs table with algo, method, seed and every split's accuracies as columns,
    best greedy accuracy on the first split first. A failing backend only gives a warning."""
    columns = [f"params.`{name}`" for name in ("algo", "method", "seed")]
    columns += [f"metrics.`{split}/{name}`" for split in splits for name in POLICY_METRICS.values()]
    state = {"selectedColumns": columns, "orderByKey": f"metrics.`{splits[0]}/greedy_acc`", "orderByAsc": False}
    try:
        client, experiment_id = _client_and_experiment()
        retry(client.set_experiment_tag, experiment_id, f"mlflow.sharedViewState.{RUNS_VIEW}", json.dumps(state))
    except Exception as exc:
        log.warning("MLflow backend unavailable (%s): the runs view %r was not saved", exc, RUNS_VIEW)


@cache
def git_commit() -> str:
    """HEAD of the git repository around the working directory, or "unknown"."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def params_hash(params: dict) -> str:
    """First 12 hex digits of the sha256 of the params' canonical JSON."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def flatten_params(params: dict, prefix: str = "") -> dict[str, str]:
    """{"sft": {"learning_rate": 1e-3}} -> {"sft.learning_rate": "0.001"}; lists become JSON."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_params(value, f"{name}."))
            continue
        text = json.dumps(value, default=str) if isinstance(value, list | tuple) else str(value)
        flat[name] = text[:MAX_PARAM_VALUE_CHARS]
    return flat


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class JobRun:
    """One job's MLflow run. After any backend failure its records go to a JSON-lines file."""

    def __init__(
        self, run_name: str, start_record: dict, client: Any = None, run_id: str | None = None
    ):
        self.run_name = run_name
        self.run_id = run_id  # None when the run could not be created in MLflow
        self.fallback_path: Path | None = None
        self._client = client
        self._start_record = start_record

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        values = {key: float(value) for key, value in metrics.items()}

        def send() -> None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            entities = [Metric(key, value, now, step or 0) for key, value in values.items()]
            for chunk in _chunks(entities, METRICS_PER_BATCH):
                retry(self._client.log_batch, self.run_id, metrics=chunk)

        self._send({"event": "metrics", "step": step, "metrics": values}, send)

    def log_artifact(self, path: str | Path) -> None:
        path = Path(path).resolve()
        self._send(
            {"event": "artifact", "path": str(path)},
            lambda: retry(self._client.log_artifact, self.run_id, str(path)),
        )

    def end(self, status: str) -> None:
        """Mark the run FINISHED or FAILED."""
        self._send(
            {"event": "end", "status": status},
            lambda: retry(self._client.set_terminated, self.run_id, status),
        )

    def fall_back(self, exc: BaseException) -> None:
        """Send this and every later record to a JSON-lines file, starting with the run's start."""
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S%f")
        name = f"{self.run_name}-{stamp}-{os.getpid()}.jsonl"
        self.fallback_path = Path.cwd() / FALLBACK_DIR / name
        log.warning(
            "MLflow logging failed (%s: %s); run %r is written to %s instead",
            type(exc).__name__, exc, self.run_name, self.fallback_path,
        )
        self.fallback_path.parent.mkdir(parents=True, exist_ok=True)
        self._append({**self._start_record, "run_id": self.run_id})

    def _send(self, record: dict, send: Callable[[], Any]) -> None:
        if self.fallback_path is None:
            try:
                send()
                return
            except Exception as exc:
                self.fall_back(exc)
        self._append(record)

    def _append(self, record: dict) -> None:
        with open(self.fallback_path, "a") as handle:
            handle.write(json.dumps({"time": time.time(), **record}, default=str) + "\n")


# Tags that say how a job ran, not which job it is.
RUN_TAGS = ("git_commit", "params_hash", "invocation")


def _job_identity(run_name: str, tags: dict[str, str]) -> tuple:
    return run_name, sorted((k, v) for k, v in tags.items() if k not in RUN_TAGS and not k.startswith("mlflow."))


def _close_leftovers(client: Any, experiment_id: str, run_name: str, tags: dict[str, str]) -> None:
    """Mark KILLED the runs of this same job still RUNNING: what a killed earlier attempt left."""
    clause = f"attributes.status = 'RUNNING' and tags.stage = '{tags['stage']}'"
    for stale in retry(client.search_runs, [experiment_id], filter_string=clause, max_results=1000):
        if _job_identity(stale.info.run_name, stale.data.tags) == _job_identity(run_name, tags):
            log.warning("MLflow run %s of this job was left RUNNING by a killed attempt; marking it KILLED", stale.info.run_id)
            retry(client.set_terminated, stale.info.run_id, "KILLED")


def _start(run_name: str, tags: dict[str, str], flat_params: dict[str, str]) -> JobRun:
    start_record = {"event": "start", "run_name": run_name, "tags": tags, "params": flat_params}
    client = run_id = None
    try:
        from mlflow.entities import Param

        client, experiment_id = _client_and_experiment()
        _close_leftovers(client, experiment_id, run_name, tags)
        run_id = retry(client.create_run, experiment_id, tags=tags, run_name=run_name).info.run_id
        entities = [Param(key, value) for key, value in flat_params.items()]
        for chunk in _chunks(entities, PARAMS_PER_BATCH):
            retry(client.log_batch, run_id, params=chunk)
    except Exception as exc:
        run = JobRun(run_name, start_record, client, run_id)
        run.fall_back(exc)
        return run
    return JobRun(run_name, start_record, client, run_id)


@contextmanager
def job_run(
    stage: str,
    params: dict | None = None,
    tags: dict | None = None,
    run_name: str | None = None,
    parent_run_id: str | None = None,
) -> Iterator[JobRun]:
    """Run the body of one pipeline job inside one MLflow run.

    Tags: stage, git commit, params hash, the `snakemake` invocation (TOKENCREDIT_INVOCATION), `tags`
    (policy, algo, method, seed, ...) and, with `parent_run_id`, MLflow's parent link, which nests
    the run under it in the UI. Params are
    logged flattened ("sft.learning_rate"). The run ends FAILED if the body raises.
    """
    params = params or {}
    tags = {key: str(value) for key, value in (tags or {}).items()}
    commit = git_commit()
    all_tags = {
        "stage": stage,
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "params_hash": params_hash(params),
        **tags,
    }
    if os.environ.get(INVOCATION_ENV):
        all_tags["invocation"] = os.environ[INVOCATION_ENV]
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run_name = run_name or (f"{stage}-{tags['policy']}" if "policy" in tags else stage)
    run = _start(run_name, all_tags, flatten_params(params))
    with _sigterm_raises():
        try:
            yield run
        except (Terminated, KeyboardInterrupt):
            run.end("KILLED")
            raise
        except BaseException:
            run.end("FAILED")
            raise
    run.end("FINISHED")


class Terminated(SystemExit):
    """SIGTERM arrived: the job was cancelled. Exits with status 143, as the signal would."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises Terminated in the main thread (by default it ends Python without cleanup)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, _frame: Any) -> None:
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def log_to_run(run_id: str, metrics: dict[str, float]) -> None:
    """Add metrics to an existing run (a policy's, from a later job); a failing backend only warns."""
    try:
        from mlflow.entities import Metric

        client, _ = _client_and_experiment()
        now = int(time.time() * 1000)
        entities = [Metric(key, float(value), now, 0) for key, value in metrics.items()]
        for chunk in _chunks(entities, METRICS_PER_BATCH):
            retry(client.log_batch, run_id, metrics=chunk)
    except Exception as exc:
        log.warning("MLflow: could not add %s to run %s (%s)", sorted(metrics), run_id, exc)
