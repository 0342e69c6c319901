"""rollouts: sample a policy on a split and cache the samples (token ids, text, rewards, log-probs)."""

from pathlib import Path

from steps.common import policy_parser, policy_run, set_threads
from tokencredit.params import RolloutParams
from tokencredit.rollouts import ensure_rollouts


def main() -> None:
    p = policy_parser(__doc__, RolloutParams)
    p.add_argument("--split", required=True)
    p.add_argument("--work", type=Path, required=True, help="shard directory: an interrupted run resumes from it")
    args = p.parse_args()
    set_threads(args.threads)
    with policy_run("rollouts", args, {"rollouts": args.params.model_dump()}, split=args.split) as run:
        frame = ensure_rollouts(args.policy, args.data, args.split, args.params, args.model_params, args.out, args.work)
        run.log_metrics({
            "sampled_accuracy": frame["accuracy_reward"].mean(),
            "format_rate": frame["format_reward"].mean(),
            "finished_rate": frame["finished"].mean(),
            "mean_tokens": frame["token_ids"].map(len).mean(),
        })  # fmt: skip


if __name__ == "__main__":
    main()
