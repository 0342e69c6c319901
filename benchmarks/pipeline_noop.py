"""No-op pipeline rerun: how long Snakemake takes to find nothing to do on a finished run.

Copies the project (git's tracked and unignored files) to a temporary directory, runs the smoke
pipeline there (params/smoke.yaml as the default), then times `snakemake -n` and a real
`snakemake --cores 2` with nothing to do, in one run; the ratio is against the full smoke run.
`--project DIR` reuses a finished copy instead. The figure does not depend on the model shape.

    python benchmarks/pipeline_noop.py
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import harness


def snakemake(project: Path, *args: str) -> float:
    took, out = harness.snakemake(project, *args)
    if args[-1] == "-n" and "Nothing to be done" not in out:
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
        project = args.project or harness.copy_project(Path(scratch) / "project", [harness.ROOT / "params/smoke.yaml"])
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
