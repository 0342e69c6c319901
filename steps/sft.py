"""sft: cold-start supervised warm-up, stopped with headroom for RL."""

from pathlib import Path

from steps.common import parser, require_gpus, section, set_threads
from tokencredit.params import ModelParams, SFTParams
from tokencredit.run_record import write_run_record
from tokencredit.tracking import job_run


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--params", type=section(SFTParams), required=True)
    p.add_argument("--model-params", type=section(ModelParams), required=True)
    p.add_argument("--base", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--gpus", type=int, default=0, help="GPUs the job's resources ask for (resources.sft.gpus)")
    args = p.parse_args()
    require_gpus(args.gpus, "sft")
    from tokencredit.dataset import REQUIRED, load_split
    from tokencredit.manifest import write_manifest
    from tokencredit.models import load_policy, save_policy
    from tokencredit.sft import history_jsonl, train_sft

    set_threads(args.threads)
    model, processor = load_policy(args.base, args.model_params)
    model = model.float()  # AdamW steps on fp32 weights: a bf16 checkpoint's would round small updates away
    with_target = (*REQUIRED, "target")  # SFT imitates the target chain of thought
    train, val = load_split(args.data, "train", with_target), load_split(args.data, "validation", with_target)
    params = {"sft": args.params.model_dump()}
    with job_run("sft", params=params, tags={"policy": "sft"}, run_name="sft") as run:
        history = train_sft(model, processor, train, val, args.data, args.params, log_fn=run.log_metrics)
        save_policy(model, processor, args.out, extra_files={"training_log.jsonl": history_jsonl(history)})
        write_manifest(args.out)
        write_run_record(args.out, "sft", {**params, "model": args.model_params.model_dump()}, run.run_id)
        run.log_artifact(args.out / "training_log.jsonl")


if __name__ == "__main__":
    main()
