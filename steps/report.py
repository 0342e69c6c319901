"""report: tables of runs x splits with confidence intervals, and training curves."""

from pathlib import Path

from steps.common import parser
from tokencredit.report import build_report
from tokencredit.tracking import job_run


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--evals", type=Path, nargs="+", required=True)
    p.add_argument("--runs", type=Path, nargs="*", default=[])
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    with job_run("report") as run:
        build_report(args.evals, args.runs, args.out)
        for path in sorted(args.out.iterdir()):
            run.log_artifact(path)


if __name__ == "__main__":
    main()
