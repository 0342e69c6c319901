"""Start-up of every pipeline step: `import steps.<step>` against `import torch` alone.

Every Snakemake job starts a fresh Python that imports its step, so the import is paid once per job
(issue 15's goal: at most 2x `import torch`). Each import runs in a fresh subprocess; the
imports are interleaved round by round, so a change in the machine's load hits all of them alike,
and each figure is the median over the rounds. A bare `python -c pass` is the floor. With
--before REF, the steps of git commit REF are timed in the same rounds.

    python benchmarks/import_time.py [--repeats 5] [--before main]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import harness

STEPS = sorted(p.stem for p in (harness.ROOT / "steps").glob("*.py") if p.stem not in ("__init__", "common"))


def import_seconds(module: str | None, root: Path) -> float:
    """One fresh interpreter importing `module` (None: nothing) from the checkout at `root`."""
    code = f"import {module}" if module else "pass"
    env = {**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"}
    return harness.median_seconds(lambda: subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=True), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--before", help="a git commit whose steps are timed alongside")
    args = harness.parse_args(p)
    with tempfile.TemporaryDirectory(prefix="tokencredit-imports-") as scratch:
        roots = {"now": harness.ROOT}
        if args.before:
            roots["before"] = harness.copy_project(Path(scratch) / "before", [], args.before)
        imports = {"python (nothing)": None, "torch": "torch", **{f"steps.{s}": f"steps.{s}" for s in STEPS}}
        times: dict[tuple[str, str], list[float]] = {(v, name): [] for v in roots for name in imports}
        for _ in range(args.repeats):
            for (version, name), values in times.items():
                values.append(import_seconds(imports[name], roots[version]))
    seconds = {key: harness.median(values) for key, values in times.items()}
    header, rows = ["import"], []
    for version in roots:
        header += [f"{version} s", f"{version} vs import torch"]
    for name in imports:
        row: list[object] = [name]
        for version in roots:
            row += [seconds[version, name], f"{seconds[version, name] / seconds[version, 'torch']:.2f}"]
        rows.append(row)
    before = f"; before: commit {args.before}" if args.before else ""
    settings = f"Fresh `python -c 'import ...'` subprocesses, interleaved, median of {args.repeats} rounds{before}."
    harness.report("import_time", args.shape, settings, harness.table(header, rows), record=not args.no_record)


if __name__ == "__main__":
    main()
