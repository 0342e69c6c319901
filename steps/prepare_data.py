"""prepare_data: the synthetic splits with ground-truth token roles, or a local real training set;
with --benchmark, one local benchmark (the prepare_benchmark rule)."""

import tempfile
from pathlib import Path

from steps.common import parser, section
from tokencredit.params import BenchmarkSpec, DataParams, PromptParams
from tokencredit.tracking import JobRun, job_run


def log_skipped(run: JobRun, skipped: list[str]) -> None:
    """The rows left out, counted and each with its reason, in the job's MLflow run (the log has them too)."""
    run.log_metrics({"skipped_rows": len(skipped)})
    if skipped:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "skipped_rows.txt"
            path.write_text("\n".join(skipped) + "\n")
            run.log_artifact(path)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--params", type=section(DataParams), help="the data section (training data)")
    p.add_argument("--benchmark", help="name of the benchmark to convert, with --spec")
    p.add_argument("--spec", type=section(BenchmarkSpec), help="its benchmarks.<name> entry")
    p.add_argument("--prompt", type=section(PromptParams), default=PromptParams(), help="the prompt section (real data)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if (args.params is None) == (args.benchmark is None) or (args.benchmark is None) != (args.spec is None):
        p.error("give either --params, or --benchmark with --spec")
    # Each branch imports only its own kind of data: the synthetic task needs none of the sources' readers.
    if args.benchmark is not None:
        from tokencredit.sources.benchmark import write_benchmark

        params = {"benchmark": args.spec.model_dump(), "prompt": args.prompt.model_dump()}
        with job_run("prepare_benchmark", params=params, tags={"benchmark": args.benchmark}) as run:
            log_skipped(run, write_benchmark(args.benchmark, args.spec, args.prompt, args.out))
    elif args.params.source == "synthetic":
        from tokencredit.synthetic import write_splits

        with job_run("prepare_data", params={"data": args.params.model_dump()}):
            write_splits(args.params, args.out)
    else:
        from tokencredit.sources.training import write_training_splits

        with job_run("prepare_data", params={"data": args.params.model_dump(), "prompt": args.prompt.model_dump()}) as run:
            log_skipped(run, write_training_splits(args.params, args.prompt, args.out))


if __name__ == "__main__":
    main()
