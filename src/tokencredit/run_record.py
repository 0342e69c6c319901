"""run.json: what a model directory holds (sft, the pipeline's base, each training run).

Written after the directory's content manifest (which leaves it out: it is metadata, not
content): policy name, algo, method and seed (None for the reference policies), the resolved
params it was built with, its MLflow run id (None when tracking fell back to files) and the
sha256 of its manifest. The report and the jobs that work on a policy read it instead of parsing
directory names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tokencredit.atomic import write_json
from tokencredit.manifest import RUN_RECORD, manifest_path


@dataclass(frozen=True)
class RunRecord:
    policy: str
    algo: str | None
    method: str | None
    seed: int | None
    params: dict[str, Any]
    mlflow_run_id: str | None
    manifest_sha256: str

    @property
    def tags(self) -> dict[str, str]:
        """The tags that identify the policy on every MLflow run of it."""
        tags = {"policy": self.policy, "algo": self.algo, "method": self.method, "seed": self.seed}
        return {key: str(value) for key, value in tags.items() if value is not None}


def write_run_record(
    directory: Path,
    policy: str,
    params: dict[str, Any],
    mlflow_run_id: str | None,
    algo: str | None = None,
    method: str | None = None,
    seed: int | None = None,
) -> RunRecord:
    """Write `directory`/run.json; its manifest must be written first."""
    digest = hashlib.sha256(manifest_path(directory).read_bytes()).hexdigest()
    record = RunRecord(policy, algo, method, seed, params, mlflow_run_id, digest)
    write_json(Path(directory) / RUN_RECORD, asdict(record))
    return record


def read_run_record(directory: Path) -> RunRecord | None:
    """The directory's run.json; None when it has none (a checkpoint the pipeline did not build)."""
    path = Path(directory) / RUN_RECORD
    if not path.is_file():
        return None
    try:
        return RunRecord(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"{path}: not a run record ({exc})") from exc
