"""score: every signal of every token of a policy's cached rollouts, and every method's weights."""

import json
from pathlib import Path

from pydantic import TypeAdapter

from steps.common import policy_parser, policy_run, require_gpus, section, set_threads
from tokencredit.params import MethodSpec, ScoreParams, ScoringParams

METHODS = TypeAdapter(dict[str, MethodSpec])


def main() -> None:
    p = policy_parser(__doc__, ScoreParams)
    p.add_argument("--scoring", type=section(ScoringParams), required=True)
    p.add_argument("--methods", type=lambda text: METHODS.validate_python(json.loads(text)), required=True)
    p.add_argument("--rollouts", type=Path, required=True)
    p.add_argument("--split", required=True)
    args = p.parse_args()
    require_gpus(args.gpus, "score")
    from tokencredit.scoring import score_file

    set_threads(args.threads)
    params = {"score": args.params.model_dump(), "scoring": args.scoring.model_dump(), "methods": {k: v.model_dump() for k, v in args.methods.items()}}
    with policy_run("score", args, params, split=args.split) as run:
        table = score_file(
            args.policy, args.rollouts, args.data, args.split, args.policy_name, args.methods,
            args.params, args.scoring, args.model_params, args.out,
        )  # fmt: skip
        run.log_metrics({"tokens": len(table), "responses": table["response"].nunique()})


if __name__ == "__main__":
    main()
