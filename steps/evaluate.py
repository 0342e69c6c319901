"""evaluate: grade one policy on one test split (greedy, avg@k, and with the image removed)."""

from pathlib import Path

from steps.common import parser, section, set_threads
from tokencredit.atomic import write_json
from tokencredit.dataset import load_split
from tokencredit.evaluation import evaluate_policy
from tokencredit.models import load_policy
from tokencredit.params import EvalParams, ModelParams
from tokencredit.tracking import find_run, job_run


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--params", type=section(EvalParams), required=True)
    p.add_argument("--model-params", type=section(ModelParams), required=True)
    p.add_argument("--policy-name", required=True)
    p.add_argument("--policy", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    set_threads(args.threads)
    model, processor = load_policy(args.policy, args.model_params)
    frame = load_split(args.data, args.split)
    parent = find_run({"stage": "train", "policy": args.policy_name})
    tags = {"policy": args.policy_name, "split": args.split}
    with job_run("evaluate", params={"eval": args.params.model_dump()}, tags=tags, parent_run_id=parent) as run:
        result = evaluate_policy(model, processor, frame, args.data, args.params, args.policy_name, args.split)
        write_json(args.out, result)
        run.log_metrics({k: v for k, v in result.items() if k in ("greedy_accuracy", "avg_at_k", "greedy_accuracy_no_image") and v is not None})
        run.log_artifact(args.out)


if __name__ == "__main__":
    main()
