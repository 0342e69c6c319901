"""train: one weighted GRPO/DAPO run of the {algo} x {method} x {seed} grid."""

import shutil
from contextlib import nullcontext
from pathlib import Path

from transformers.trainer_utils import get_last_checkpoint

from steps.common import parser, section, set_threads
from tokencredit.algorithms import get_algorithm
from tokencredit.dataset import load_split
from tokencredit.manifest import write_manifest
from tokencredit.models import load_policy, save_policy
from tokencredit.params import MethodSpec, ModelParams, ScoringParams, TrainParams
from tokencredit.tracking import job_run
from tokencredit.training import MetricsLogger, build_trainer, is_main_process, require_engines


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--params", type=section(TrainParams), required=True)
    p.add_argument("--method-spec", type=section(MethodSpec), required=True)
    p.add_argument("--scoring", type=section(ScoringParams), required=True)
    p.add_argument("--model-params", type=section(ModelParams), required=True)
    p.add_argument("--algo", required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--init", type=Path, required=True, help="the policy RL starts from (SFT model or checkpoint)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    # Every process of an `accelerate launch` runs this; only the main one tracks and writes outputs.
    main_process = is_main_process()
    require_engines(args.params)
    set_threads(args.threads)
    run_name = args.out.name
    # Checkpoints live outside the rule's output, so an interrupted run resumes instead of restarting.
    checkpoints = Path("results/checkpoints") / run_name
    checkpoints.mkdir(parents=True, exist_ok=True)
    metrics_path = checkpoints / "metrics.jsonl"
    resume = get_last_checkpoint(str(checkpoints))
    if resume is None and main_process:
        metrics_path.unlink(missing_ok=True)

    model, processor = load_policy(args.init, args.model_params)
    train = load_split(args.data, "train")
    tags = {"policy": run_name, "algo": args.algo, "method": args.method, "seed": str(args.seed)}
    params = {"train": args.params.model_dump(), "method": args.method_spec.model_dump(), "scoring": args.scoring.model_dump()}
    tracking = job_run("train", params=params, tags=tags, run_name=run_name) if main_process else nullcontext()
    with tracking as run:
        logger = MetricsLogger(metrics_path, run.log_metrics if main_process else None)  # writes on the main process only
        trainer = build_trainer(
            model, processor, train, args.data, args.params, args.method_spec, args.scoring,
            get_algorithm(args.algo), args.seed, checkpoints, callbacks=[logger],
        )
        trainer.train(resume_from_checkpoint=resume)
        with trainer.gathered_policy() as policy:
            if main_process:
                save_policy(policy, processor, args.out, extra_files={"metrics.jsonl": metrics_path.read_text()})
        if main_process:
            write_manifest(args.out)
            run.log_artifact(args.out / "metrics.jsonl")
    if main_process:
        shutil.rmtree(checkpoints)


if __name__ == "__main__":
    main()
