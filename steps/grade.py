"""grade: grade a policy's cached decodings of every split and benchmark (greedy accuracy, avg@k,
pass@k, greedy accuracy with the image removed), one record per split; generates nothing."""

from pathlib import Path

from steps.common import parser, policy_run, section
from tokencredit.params import EvalParams
from tokencredit.run_record import read_run_record
from tokencredit.tracking import POLICY_METRICS, log_to_run


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--params", type=section(EvalParams), required=True)
    p.add_argument("--policy-name", required=True)
    p.add_argument("--policy", type=Path, required=True, help="the policy the rollouts must come from")
    p.add_argument("--data", type=Path, nargs="+", required=True, help="the split parquets (synthetic splits or converted benchmarks)")
    p.add_argument("--rollouts", type=Path, required=True, help="the policy's cached decodings, {split}/{decoding}.parquet")
    p.add_argument("--out", type=Path, nargs="+", required=True, help="one record per split, {split}.json")
    args = p.parse_args()
    data = {path.stem: path for path in args.data}
    for out in args.out:
        if out.stem not in data:
            p.error(f"--out {out}: no split {out.stem!r} among --data")

    from tokencredit.atomic import write_json
    from tokencredit.dataset import load_split
    from tokencredit.evaluation import grade_rollouts
    from tokencredit.rollouts import load_rollouts

    policy = read_run_record(args.policy)
    for out in args.out:
        split, data_file = out.stem, data[out.stem]
        frame = load_split(data_file.parent, split)
        cached = {d: load_rollouts(args.rollouts / split / f"{d}.parquet", args.policy, data_file, d)[0] for d in args.params.decodings}
        with policy_run("grade", args, {"eval": args.params.model_dump()}, split=split) as run:
            record = grade_rollouts(frame, cached["sampled"], cached["greedy"], cached.get("no_image"), args.params.k, args.policy_name, split)
            write_json(out, record)
            summary = {k: v for k, v in record.items() if k in POLICY_METRICS and v is not None}
            run.log_metrics(summary)
            if policy is not None and policy.mlflow_run_id is not None:
                log_to_run(policy.mlflow_run_id, {f"{split}/{POLICY_METRICS[k]}": v for k, v in summary.items()})
            for decoding, metrics in record.get("release_metrics", {}).items():
                run.log_metrics({f"{decoding}_{name}": value for name, value in metrics.items()})
            run.log_artifact(out)


if __name__ == "__main__":
    main()
