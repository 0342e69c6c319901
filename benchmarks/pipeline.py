"""The whole pipeline: wall time, the sum of its jobs' times, and how much of that is start-up.

Runs `snakemake --cores 2` from scratch in a fresh copy of the project (params/default.yaml merged
with --params, e.g. params/smoke.yaml). With --before REF it does the same for git commit REF, in
the same invocation, the two alternating when --repeats > 1, so both see the same machine load,
and it checks that both give the same outputs (every eval record, score table and the report's
metrics).

Per run: wall time; each job's time from Snakemake's own record (.snakemake/metadata: start and
end of the job that wrote each output); the time spent inside the jobs' MLflow runs (mlflow.db, the
runs tagged with a stage); and start-up, the rest of the job time: interpreter start, imports,
argument checks, MLflow set-up and whatever a step does before its run begins.

    python benchmarks/pipeline.py --params params/smoke.yaml --before main
"""

from __future__ import annotations

import argparse
import base64
import json
import sqlite3
import tempfile
from collections import defaultdict
from pathlib import Path

import pandas as pd

import harness


def job_times(project: Path) -> dict[str, list[float]]:
    """Rule -> the seconds of each of its jobs, from Snakemake's metadata (one record per output)."""
    jobs: dict[tuple, tuple[float, float]] = {}
    for record_file in (project / ".snakemake/metadata").iterdir():
        record = json.loads(record_file.read_text())
        job = (record["rule"], record["job_hash"])
        start, end = jobs.get(job, (float("inf"), 0.0))
        jobs[job] = (min(start, record["starttime"]), max(end, record["endtime"]))
    times = defaultdict(list)
    for (rule, _), (start, end) in jobs.items():
        times[rule].append(end - start)
    return dict(times)


def run_seconds(project: Path) -> float:
    """Seconds inside the jobs' MLflow runs (those tagged with a stage: one or more per job)."""
    with sqlite3.connect(project / "mlflow.db") as db:
        rows = db.execute(
            "SELECT r.start_time, r.end_time FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid WHERE t.key = 'stage' AND r.end_time IS NOT NULL"
        ).fetchall()
    return sum(end - start for start, end in rows) / 1000


def outputs(project: Path) -> dict[str, object]:
    """What the pipeline computed: eval records, score tables, the report's metrics."""
    found: dict[str, object] = {}
    for path in sorted((project / "results/eval").rglob("*.json")) + [project / "results/report/metrics.json"]:
        found[str(path.relative_to(project))] = json.loads(path.read_text())
    for path in sorted((project / "results/scores").rglob("*.parquet")):
        found[str(path.relative_to(project))] = pd.read_parquet(path)
    return found


def differences(a: dict[str, object], b: dict[str, object]) -> list[str]:
    names = sorted(set(a) | set(b))
    same = lambda x, y: x.equals(y) if isinstance(x, pd.DataFrame) and isinstance(y, pd.DataFrame) else x == y  # noqa: E731
    return [name for name in names if name not in a or name not in b or not same(a[name], b[name])]


def run_once(scratch: Path, name: str, overrides: list[Path], ref: str | None) -> dict:
    project = harness.copy_project(scratch / name, overrides, ref)
    wall, _ = harness.snakemake(project, "--cores", "2")
    jobs = job_times(project)
    job_total = sum(sum(t) for t in jobs.values())
    return {"wall": wall, "jobs": jobs, "job_total": job_total, "in_runs": run_seconds(project), "outputs": outputs(project)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=Path, nargs="*", default=[], help="params files merged over params/default.yaml (e.g. params/smoke.yaml)")
    p.add_argument("--before", help="a git commit to compare with, run in the same invocation")
    p.add_argument("--repeats", type=int, default=1)
    args = harness.parse_args(p)
    versions = {"working tree": None, **({f"before ({args.before})": args.before} if args.before else {})}
    runs: dict[str, list[dict]] = {name: [] for name in versions}
    with tempfile.TemporaryDirectory(prefix="tokencredit-pipeline-") as scratch:
        for i in range(args.repeats):
            for name, ref in reversed(versions.items()):  # the older code first in each round
                runs[name].append(run_once(Path(scratch), f"{len(runs[name])}-{ref or 'tree'}", [p.resolve() for p in args.params], ref))
                print(f"{name}, run {i + 1}: {runs[name][-1]['wall']:.1f} s wall", flush=True)

    rows, per_rule = [], []
    for name, results in runs.items():
        wall = harness.median([r["wall"] for r in results])
        total = harness.median([r["job_total"] for r in results])
        startup = harness.median([r["job_total"] - r["in_runs"] for r in results])
        n_jobs = sum(len(t) for t in results[0]["jobs"].values())
        rows.append([name, wall, n_jobs, total, startup, f"{startup / total:.2f}"])
        for rule, times in sorted(results[0]["jobs"].items()):
            per_rule.append([name, rule, len(times), sum(times)])
    body = harness.table(["code", "wall s", "jobs", "sum of job s", "start-up s", "start-up share"], rows)
    if args.before:
        after, before = (harness.median([r["wall"] for r in runs[name]]) for name in versions)
        diff = differences(runs[list(versions)[1]][0]["outputs"], runs["working tree"][0]["outputs"])
        body += f"\n\nWall time, working tree vs before: {after / before:.3f} ({1 - after / before:.0%} less). "
        body += f"Outputs compared: {len(runs['working tree'][0]['outputs'])} files (eval records, score tables, report metrics); "
        body += "all identical." if not diff else f"differing: {', '.join(diff)}."
    body += "\n\nJob time by rule (first run of each):\n\n" + harness.table(["code", "rule", "jobs", "sum of job s"], per_rule)
    overrides = " + ".join(str(p) for p in args.params) or "none"
    settings = f"`snakemake --cores 2` from scratch in a fresh copy; params/default.yaml + {overrides}; medians of {args.repeats} run(s) per code version."
    harness.report("pipeline", args.shape, settings, body, record=not args.no_record)


if __name__ == "__main__":
    main()
