"""rollouts: sample a policy on a split and cache the samples (token ids, text, rewards, log-probs)."""

from pathlib import Path

from steps.common import parser, section, set_threads
from tokencredit.params import ModelParams, RolloutParams
from tokencredit.rollouts import ensure_rollouts
from tokencredit.tracking import find_run, job_run


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--params", type=section(RolloutParams), required=True)
    p.add_argument("--model-params", type=section(ModelParams), required=True)
    p.add_argument("--policy-name", required=True)
    p.add_argument("--policy", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True, help="shard directory: an interrupted run resumes from it")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    set_threads(args.threads)
    parent = find_run({"stage": "train", "policy": args.policy_name})
    tags = {"policy": args.policy_name, "split": args.split}
    with job_run("rollouts", params={"rollouts": args.params.model_dump()}, tags=tags, parent_run_id=parent) as run:
        frame = ensure_rollouts(args.policy, args.data, args.split, args.params, args.model_params, args.out, args.work)
        run.log_metrics({
            "sampled_accuracy": frame["accuracy_reward"].mean(),
            "format_rate": frame["format_reward"].mean(),
            "finished_rate": frame["finished"].mean(),
            "mean_tokens": frame["token_ids"].map(len).mean(),
        })  # fmt: skip


if __name__ == "__main__":
    main()
