"""evaluate: grade one policy on one synthetic test split, or (--benchmark) on one local benchmark:
greedy accuracy, avg@k, and greedy accuracy with the image removed."""

from pathlib import Path

from steps.common import policy_parser, policy_run, set_threads
from tokencredit.atomic import write_json
from tokencredit.dataset import load_split
from tokencredit.evaluation import evaluate_policy, generate
from tokencredit.graders import grade_benchmark
from tokencredit.models import load_policy
from tokencredit.params import EvalParams
from tokencredit.sources.benchmark import first_images, load_benchmark


def grade_on_benchmark(model, processor, data_dir: Path, name: str, params: EvalParams, policy: str) -> dict:
    """Greedy, k sampled and (optionally) image-removed completions of every question, graded."""
    frame = load_benchmark(data_dir, name)
    questions, images = list(frame["question"]), first_images(frame, data_dir)
    budget = (params.max_new_tokens, params.batch_size)
    greedy = [c[0] for c in generate(model, processor, questions, images, 1, 0.0, *budget)]
    samples = generate(model, processor, questions, images, params.k, params.temperature, *budget)
    no_image = [c[0] for c in generate(model, processor, questions, None, 1, 0.0, *budget)] if params.without_image else None
    return grade_benchmark(frame, greedy, samples, no_image, policy, name)


def main() -> None:
    p = policy_parser(__doc__, EvalParams)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--split", help="a synthetic test split")
    target.add_argument("--benchmark", help="a benchmark converted under --data")
    args = p.parse_args()
    set_threads(args.threads)
    model, processor = load_policy(args.policy, args.model_params)
    graded = {"split": args.split} if args.split else {"benchmark": args.benchmark}
    with policy_run("evaluate", args, {"eval": args.params.model_dump()}, **graded) as run:
        if args.split:
            frame = load_split(args.data, args.split)
            result = evaluate_policy(model, processor, frame, args.data, args.params, args.policy_name, args.split)
        else:
            result = grade_on_benchmark(model, processor, args.data, args.benchmark, args.params, args.policy_name)
        write_json(args.out, result)
        run.log_metrics({k: v for k, v in result.items() if k in ("greedy_accuracy", "avg_at_k", "greedy_accuracy_no_image") and v is not None})
        for decoding, metrics in result.get("release_metrics", {}).items():
            run.log_metrics({f"{decoding}_{name}": value for name, value in metrics.items()})
        run.log_artifact(args.out)


if __name__ == "__main__":
    main()
