"""No-op pipeline rerun: how long Snakemake takes to find nothing to do on a finished run.

Copies the project (git's tracked and unignored files) to a temporary directory, runs the smoke
pipeline there (params/smoke.yaml as the default), then times `snakemake -n` and a real
`snakemake --cores 2` with nothing to do, in one run; the ratio is against the full smoke run.
`--project DIR` reuses a finished copy instead. The figure does not depend on the model shape.

    python benchmarks/pipeline_noop.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

import harness
from tokencredit.params import merged_params


def copy_project(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=harness.ROOT, capture_output=True, text=True, check=True)
    for name in files.stdout.split():
        src = harness.ROOT / name
        if src.is_file() or src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).symlink_to(src.readlink()) if src.is_symlink() else shutil.copy2(src, dest / name)
    smoke = merged_params(harness.ROOT / "params/default.yaml", harness.ROOT / "params/smoke.yaml")
    (dest / "params/default.yaml").write_text(yaml.safe_dump(smoke))
    return dest


def snakemake(project: Path, *args: str) -> float:
    """Seconds one snakemake call takes; fails loudly with its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    start = time.perf_counter()
    out = subprocess.run(["snakemake", *args], cwd=project, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed in {project}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    if args[-1] == "-n" and "Nothing to be done" not in out.stdout + out.stderr:
        raise SystemExit(f"{project} is not a finished run: `snakemake -n` plans jobs")
    return took


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--project", type=Path, help="a finished smoke run to reuse (default: run one now)")
    p.add_argument("--repeats", type=int, default=5)
    args = harness.parse_args(p)
    if args.shape != "tiny":
        raise SystemExit("the no-op rerun does not depend on the model: use --shape tiny")
    with tempfile.TemporaryDirectory(prefix="tokencredit-noop-") as scratch:
        project = args.project or copy_project(Path(scratch) / "project")
        full = None if args.project else snakemake(project, "--cores", "2")
        dry = harness.median([snakemake(project, "--cores", "2", "-n") for _ in range(args.repeats)])
        noop = harness.median([snakemake(project, "--cores", "2") for _ in range(args.repeats)])
    header = ["run", "seconds", "vs full smoke run"]
    ratio = (lambda s: f"{s / full:.3f}") if full else (lambda s: "n/a")
    rows = [["full smoke run", full if full else "n/a", "1.000" if full else "n/a"], ["snakemake -n", dry, ratio(dry)], ["snakemake (nothing to do)", noop, ratio(noop)]]
    settings = f"params/smoke.yaml pipeline in a fresh copy, --cores 2; medians of {args.repeats} calls."
    harness.report("pipeline_noop", args.shape, settings, harness.table(header, rows), record=not args.no_record)


if __name__ == "__main__":
    main()
