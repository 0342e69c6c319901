"""rollouts: one decoding of a policy on a split or benchmark, cached (token ids, text, rewards, log-probs)."""

from pathlib import Path

from steps.common import policy_parser, policy_run, set_threads
from tokencredit.params import DECODINGS, RolloutParams
from tokencredit.rollouts import ensure_rollouts


def main() -> None:
    p = policy_parser(__doc__, RolloutParams)
    p.add_argument("--split", required=True, help="a split under --data (a synthetic split or a converted benchmark)")
    p.add_argument("--decoding", choices=DECODINGS, required=True)
    p.add_argument("--work", type=Path, required=True, help="shard directory: an interrupted run resumes from it")
    args = p.parse_args()
    set_threads(args.threads)
    params = {"rollouts": args.params.for_decoding(args.decoding)}
    with policy_run("rollouts", args, params, split=args.split, decoding=args.decoding) as run:
        frame = ensure_rollouts(args.policy, args.data, args.split, args.params, args.decoding, args.model_params, args.out, args.work)
        run.log_metrics({
            "accuracy": frame["accuracy_reward"].mean(),
            "format_rate": frame["format_reward"].mean(),
            "finished_rate": frame["finished"].mean(),
            "mean_tokens": frame["token_ids"].map(len).mean(),
        })  # fmt: skip


if __name__ == "__main__":
    main()
