"""score: every signal of every token of a policy's cached rollouts, and every method's weights."""

import json
from pathlib import Path

from pydantic import TypeAdapter

from steps.common import parser, section, set_threads
from tokencredit.params import MethodSpec, ModelParams, ScoreParams, ScoringParams
from tokencredit.scoring import score_file
from tokencredit.tracking import find_run, job_run

METHODS = TypeAdapter(dict[str, MethodSpec])


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--params", type=section(ScoreParams), required=True)
    p.add_argument("--scoring", type=section(ScoringParams), required=True)
    p.add_argument("--methods", type=lambda text: METHODS.validate_python(json.loads(text)), required=True)
    p.add_argument("--model-params", type=section(ModelParams), required=True)
    p.add_argument("--policy-name", required=True)
    p.add_argument("--policy", type=Path, required=True)
    p.add_argument("--rollouts", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    set_threads(args.threads)
    parent = find_run({"stage": "train", "policy": args.policy_name})
    tags = {"policy": args.policy_name, "split": args.split}
    params = {"score": args.params.model_dump(), "scoring": args.scoring.model_dump(), "methods": {k: v.model_dump() for k, v in args.methods.items()}}
    with job_run("score", params=params, tags=tags, parent_run_id=parent) as run:
        table = score_file(
            args.policy, args.rollouts, args.data, args.split, args.policy_name, args.methods,
            args.params, args.scoring, args.model_params, args.out,
        )  # fmt: skip
        run.log_metrics({"tokens": len(table), "responses": table["response"].nunique()})


if __name__ == "__main__":
    main()
