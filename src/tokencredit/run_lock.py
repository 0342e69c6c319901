"""One trainer per run: a run's checkpoint directory is held by one train job at a time.

A train job killed from outside can leave its trainer running (Snakemake SIGKILLed while its jobs
live on; SLURM jobs that outlive the Snakemake process on a login node, which a rerun submits
again). Two trainers resuming one run write the same checkpoints, and the first to finish removes
them under the other. So the trainer holds `<run>.lock` beside the run's directory for its whole
life; a second one stops before touching the run, naming the holder, and the holder's checkpoints
stay for the next rerun to resume from.

Two mechanisms, because `flock` (filelock's lock on POSIX) is only as good as the file system:
- the flock on `<run>.lock`: exact on one host, released by the kernel when the holder dies however
  it dies. On NFS it maps to NFS locks (v4, or v3 with lockd), and on Lustre it holds across
  clients only when mounted with `-o flock`; mounted with `localflock` or `noflock` it does not.
- the record `<run>.holder` (pid@host, written by the holder and refreshed every HEARTBEAT_S): a
  trainer refuses a run whose record names a live process on this host, or another host's process
  whose record was refreshed within STALE_AFTER_S, even when it got the flock. A holder killed
  outright leaves its record: on this host a dead pid frees the run at once; from another host the
  run is free once the record is STALE_AFTER_S old (the comparison uses this host's clock against
  the file system's mtime: keep the cluster's clocks in sync).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0


class RunHeld(RuntimeError):
    """Another trainer holds the run."""


def _record(path: Path) -> dict | None:
    try:
        return {**json.loads(path.read_text()), "age_s": time.time() - path.stat().st_mtime}
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _live_holder(record: dict | None) -> bool:
    if record is None or (record["host"] == socket.gethostname() and record["pid"] == os.getpid()):
        return False
    if record["host"] == socket.gethostname():
        return _alive(record["pid"])
    return record["age_s"] < STALE_AFTER_S


def _describe(record: dict | None) -> str:
    if record is None:
        return "another trainer (its pid@host record is not written yet or unreadable)"
    return f"trainer pid {record['pid']} on host {record['host']} (since {record['since']}, record refreshed {record['age_s']:.0f} s ago)"


@contextmanager
def hold_run(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir` (a run's checkpoint directory) for the block, or raise RunHeld naming its holder."""
    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_file, record_file = run_dir.with_name(run_dir.name + ".lock"), run_dir.with_name(run_dir.name + ".holder")
    advice = f"stop it, or wait for it to finish; its checkpoints in {run_dir} are kept, and a rerun resumes from them"
    lock = FileLock(lock_file, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunHeld(f"run {run_dir} is held by {_describe(_record(record_file))} (lock {lock_file}): {advice}") from None
    try:
        record = _record(record_file)
        if _live_holder(record):  # the flock did not see it: another host on a file system without shared flocks
            raise RunHeld(f"run {run_dir} is held by {_describe(record)} (record {record_file}): {advice}")
        since = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        record_file.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}) + "\n")
        stop = threading.Event()
        heartbeat = threading.Thread(target=_refresh, args=(record_file, stop), daemon=True)
        heartbeat.start()
        try:
            yield
        finally:
            stop.set()
            heartbeat.join()
            record_file.unlink(missing_ok=True)
    finally:
        lock.release()


def _refresh(record_file: Path, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            os.utime(record_file)
        except OSError:  # the record is advisory; a failed refresh only lets it go stale
            pass
