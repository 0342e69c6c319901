"""train: one weighted GRPO/DAPO run of the {algo} x {method} x {seed} grid.

A run killed at any moment resumes when rerun, from its newest complete checkpoint (every
train.save_steps steps) with optimizer, scheduler, RNG and data position, and ends with the weights
an uninterrupted run would have (tests/test_faults.py). With train.lora, checkpoints and the
output hold the adapter; the output also names the policy it started from (tokencredit.models).
One trainer holds a run at a time (tokencredit.run_lock): a second one stops before touching its
checkpoints, naming the holder.
"""

import logging
import shutil
from contextlib import nullcontext
from pathlib import Path

from steps.common import parser, require_gpus, section, set_threads
from tokencredit.algorithms import ALGORITHMS, get_algorithm
from tokencredit.params import MethodSpec, ModelParams, ScoringParams, TrainParams
from tokencredit.run_record import write_run_record
from tokencredit.tracking import job_run

log = logging.getLogger("steps.train")


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--params", type=section(TrainParams), required=True)
    p.add_argument("--method-spec", type=section(MethodSpec), required=True)
    p.add_argument("--scoring", type=section(ScoringParams), required=True)
    p.add_argument("--model-params", type=section(ModelParams), required=True)
    p.add_argument("--algo", choices=sorted(ALGORITHMS), required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--init", type=Path, required=True, help="the policy RL starts from (SFT model or checkpoint)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--gpus", type=int, default=0, help="GPUs the job's resources ask for (resources.train.gpus)")
    args = p.parse_args()
    from tokencredit.run_lock import hold_run
    from tokencredit.training import check_launch, is_main_process

    # Every process of an `accelerate launch` runs this; only the main one tracks and writes outputs.
    main_process = is_main_process()
    check_launch(args.params)
    require_gpus(args.gpus, "train")
    run_name = args.out.name
    # Checkpoints live outside the rule's output, which Snakemake deletes before a rerun.
    run_dir = Path("results/checkpoints") / run_name
    with hold_run(run_dir) if main_process else nullcontext():
        train(args, run_dir, main_process)


def train(args, run_dir: Path, main_process: bool) -> None:
    from accelerate import PartialState

    from tokencredit.dataset import load_split
    from tokencredit.manifest import write_manifest
    from tokencredit.models import load_policy, save_policy
    from tokencredit.recipe import resolve
    from tokencredit.training import (
        MetricsLogger,
        build_trainer,
        check_checkpoint,
        check_replicas_agree,
        checkpoint_step,
        compute_dtype,
        discard_stale_checkpoints,
        last_checkpoint,
        run_fingerprint,
    )

    set_threads(args.threads)
    # MLflow params: the runs table sorts and filters by algo, method, seed, the method's components and hyperparameters.
    params = {
        "algo": args.algo, "method": args.method, "seed": args.seed, "method_spec": args.method_spec.model_dump(),
        "components": resolve(args.method, args.method_spec).components(),
        "train": args.params.model_dump(), "scoring": args.scoring.model_dump(),
    }  # fmt: skip
    settings = {**params, "model": args.model_params.model_dump()}
    # Under the fingerprint of what they depend on: an interrupted run resumes, a changed one starts afresh.
    checkpoints = run_dir / run_fingerprint(settings, args.init, args.data / "train.parquet")
    if main_process:
        discard_stale_checkpoints(run_dir, checkpoints)
    checkpoints.mkdir(parents=True, exist_ok=True)
    resume = last_checkpoint(checkpoints)
    if resume is not None:
        # DDP and single-process checkpoints hold the optimizer and scheduler as files; without them
        # the Trainer would silently restart both. ZeRO and FSDP keep theirs in their own layouts.
        check_checkpoint(resume, ("optimizer.pt", "scheduler.pt") if args.params.distributed == "ddp" else ())
        log.info("resuming from %s", resume)

    # torch.distributed and each process's device first: the policy loads after, left for accelerate to place.
    PartialState()
    model, processor = load_policy(args.init, args.model_params, for_training=True)
    frame = load_split(args.data, "train")
    run_name = args.out.name
    tags = {"policy": run_name, "algo": args.algo, "method": args.method, "seed": str(args.seed)}
    tracking = job_run("train", params=params, tags=tags, run_name=run_name) if main_process else nullcontext()
    with tracking as run:
        logger = MetricsLogger(checkpoints / "metrics.jsonl", run.log_metrics if main_process else None)
        if main_process:  # the file is written on the main process only
            logger.resume(checkpoint_step(resume) if resume else 0)
        trainer = build_trainer(
            model, processor, frame, args.data, args.params, args.method_spec, args.scoring,
            get_algorithm(args.algo), args.seed, checkpoints, callbacks=[logger], method_name=args.method,
            generation_chunk=args.model_params.generation_chunk,
        )  # fmt: skip
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        with trainer.gathered_policy() as policy:
            check_replicas_agree(policy, trainer.accelerator)
            if main_process:
                save_policy(
                    policy, processor, args.out, extra_files={"metrics.jsonl": logger.path.read_text()},
                    base=args.init, dtype=compute_dtype(args.params),
                )  # fmt: skip
        if main_process:
            write_manifest(args.out)
            write_run_record(args.out, run_name, settings, run.run_id, args.algo, args.method, args.seed)
            run.log_artifact(args.out / "metrics.jsonl")
    if main_process:
        shutil.rmtree(run_dir)


if __name__ == "__main__":
    main()
