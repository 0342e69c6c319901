"""rollouts: cached decodings of one policy (tokencredit.rollouts), one output per split and
decoding, .../{split}/{decoding}.parquet (the rule asks for every decoding of one split). A decoding
whose cache key still matches is kept; the others are generated, with the policy loaded once."""

import shutil
from functools import cache
from pathlib import Path

from steps.common import policy_parser, policy_run, require_gpus, set_threads
from tokencredit.params import DECODINGS, RolloutParams


def main() -> None:
    p = policy_parser(__doc__, RolloutParams, nargs="+")
    p.add_argument("--work", type=Path, required=True, help="shard directory: an interrupted run resumes from {work}/{split}-{decoding}")
    args = p.parse_args()
    require_gpus(args.gpus, "rollouts")
    data = {path.stem: path for path in args.data}  # the split parquets (synthetic splits or converted benchmarks)
    targets = [(out, out.parent.name, out.stem) for out in args.out]
    for out, split, decoding in targets:
        if decoding not in DECODINGS or split not in data:
            p.error(f"--out {out}: expected .../{{split}}/{{decoding}}.parquet with a split of --data and a decoding of {DECODINGS}")

    from tokencredit.rollouts import ensure_rollouts  # torch and transformers come only with the first decoding to generate

    @cache
    def load():
        from tokencredit.models import load_policy

        set_threads(args.threads)
        return load_policy(args.policy, args.model_params)

    for out, split, decoding in targets:
        with policy_run("rollouts", args, {"rollouts": args.params.for_decoding(decoding)}, split=split, decoding=decoding) as run:
            work = args.work / f"{split}-{decoding}"
            frame = ensure_rollouts(args.policy, data[split].parent, split, args.params, decoding, args.model_params, out, work, load)
            run.log_metrics({
                "accuracy": frame["accuracy_reward"].mean(),
                "format_rate": frame["format_reward"].mean(),
                "finished_rate": frame["finished"].mean(),
                "mean_tokens": frame["token_ids"].map(len).mean(),
            })  # fmt: skip
    shutil.rmtree(args.work, ignore_errors=True)  # every decoding is cached: no shard is needed any more


if __name__ == "__main__":
    main()
