"""Start-up of every pipeline step: `import steps.<step>` against `import torch` alone.

Every Snakemake job starts a fresh Python that imports its step, so the import is paid once per job
(issue 15's goal: at most 2x `import torch`). Each import runs in a fresh subprocess; the
imports are interleaved round by round, so a change in the machine's load hits all of them alike,
and each figure is the median over the rounds. A bare `python -c pass` is the floor.

    python benchmarks/import_time.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import harness

STEPS = sorted(p.stem for p in (harness.ROOT / "steps").glob("*.py") if p.stem not in ("__init__", "common"))


def import_seconds(module: str | None) -> float:
    code = f"import {module}" if module else "pass"
    return harness.median_seconds(lambda: subprocess.run([sys.executable, "-c", code], cwd=harness.ROOT, check=True), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    args = harness.parse_args(p)
    modules = {"python (nothing)": None, "torch": "torch", **{f"steps.{s}": f"steps.{s}" for s in STEPS}}
    times: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(args.repeats):
        for name, module in modules.items():
            times[name].append(import_seconds(module))
    seconds = {name: harness.median(t) for name, t in times.items()}
    rows = [[name, s, f"{s / seconds['torch']:.2f}"] for name, s in seconds.items()]
    settings = f"Fresh `python -c 'import ...'` subprocesses, interleaved, median of {args.repeats} rounds."
    harness.report("import_time", args.shape, settings, harness.table(["import", "seconds", "vs import torch"], rows), record=not args.no_record)


if __name__ == "__main__":
    main()
