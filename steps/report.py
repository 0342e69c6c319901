"""report: tables of runs x splits with confidence intervals, training curves, token analysis, index.html."""

from pathlib import Path

from steps.common import parser, section
from tokencredit.params import AnalysisParams
from tokencredit.tracking import job_run, share_runs_view


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--evals", type=Path, nargs="+", required=True)
    p.add_argument("--runs", type=Path, nargs="*", default=[])
    p.add_argument("--scores", type=Path, nargs="*", default=[], help="token score tables (results/scores/...) to analyse")
    p.add_argument("--analysis", type=section(AnalysisParams), default=AnalysisParams())
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    from tokencredit.report import build_report

    with job_run("report", params={"analysis": args.analysis.model_dump()}) as run:
        build_report(args.evals, args.runs, args.out, args.scores, args.analysis)
        for path in sorted(args.out.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                run.log_artifact(path)
    share_runs_view(list(dict.fromkeys(path.stem for path in args.evals)))  # the splits, in order


if __name__ == "__main__":
    main()
