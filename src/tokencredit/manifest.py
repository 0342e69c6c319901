"""Content manifests of model directories.

Snakemake compares a directory input by modification time only, and `dvc pull` restores files
with fresh timestamps, so a fresh clone would look out of date. Rules therefore depend on a small
JSON manifest (the sha256 of every file) beside each model directory: Snakemake checksums small
files, so a restored manifest with the same content is recognised as unchanged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tokencredit.atomic import write_json

SUFFIX = ".manifest.json"
RUN_RECORD = "run.json"  # metadata written after the manifest (tokencredit.run_record), not content


def manifest_path(directory: str | Path) -> Path:
    directory = Path(directory)
    return directory.with_name(directory.name + SUFFIX)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digests(directory: str | Path) -> dict[str, str]:
    """The sha256 of every file under `directory` but its run record, by relative path."""
    directory = Path(directory)
    files = (p for p in sorted(directory.rglob("*")) if p.is_file() and p.relative_to(directory) != Path(RUN_RECORD))
    return {str(p.relative_to(directory)): _sha256(p) for p in files}


def write_manifest(directory: str | Path) -> Path:
    """Write `<directory>.manifest.json` listing every file of `directory` with its sha256."""
    target = manifest_path(directory)
    write_json(target, {"directory": Path(directory).name, "files": file_digests(directory)})
    return target


def policy_hash(policy_dir: str | Path) -> str:
    """sha256 of the policy's files, whatever the directory is called: from its manifest when it has
    one (every model the pipeline writes), else hashed here (a local checkpoint)."""
    path = manifest_path(policy_dir)
    if path.is_file():
        files = json.loads(path.read_text())["files"]
    elif Path(policy_dir).is_dir():
        files = file_digests(policy_dir)
    else:
        raise FileNotFoundError(f"policy {policy_dir} does not exist (no directory, no manifest {path})")
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
