"""Step time with each repeated image encoded once (tokencredit.repeated_images) against every image encoded.

GRPO repeats each prompt's image for its G completions, in generation, the KL reference forward,
the loss forward and every scoring forward. Both variants train from the same initial policy on
the same workload with the pipeline's trainer, in one run, taking turns round by round (the order
reverses each round); per method, the median step time of each and their ratio.

The saving is the vision tower's share of a step, which depends on how long the completions are:
a fresh policy rambles to the length limit (generation dominates), the default SFT model stops
after about 13 tokens. `--policy` trains from a saved policy instead of a fresh one, e.g. the
pipeline's SFT model on the default's workload:

    python benchmarks/repeated_images.py --shape tiny
    python benchmarks/repeated_images.py --shape tiny --policy results/models/sft
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import harness
from tokencredit.models import load_policy
from tokencredit.params import ModelParams
from tokencredit.repeated_images import encode_every_image

VARIANTS = ("every image", "repeats once")


def measure(w: harness.World, method: str, variant: str, warmup: int, steps: int, scratch: Path, policy: Path | None) -> list[float]:
    clock = harness.StepLog()
    start = load_policy(policy, ModelParams()) if policy else None
    trainer = harness.make_trainer(w, method, warmup + steps, scratch / variant.replace(" ", "-"), callbacks=[clock], policy=start)
    if variant == "every image":
        for model in (trainer.model, trainer.ref_model):
            if model is not None:
                encode_every_image(model)
    trainer.train()
    return clock.seconds[warmup:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["uniform", "tor", "vppo"])
    p.add_argument("--warmup", type=int, default=1, help="steps per trainer left out of the medians")
    p.add_argument("--steps", type=int, default=4, help="measured steps per trainer and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--policy", type=Path, help="train from this saved policy (e.g. results/models/sft) instead of a fresh one")
    args = harness.parse_args(p)
    runs = [(m, v) for m in args.methods for v in VARIANTS]
    seconds: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    with harness.world(args.shape) as w, tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for method, variant in runs if round_ % 2 == 0 else runs[::-1]:
                seconds[method, variant] += measure(w, method, variant, args.warmup, args.steps, Path(scratch), args.policy)
    rows = []
    for method in args.methods:
        every, once = (harness.median(seconds[method, v]) for v in VARIANTS)
        rows.append([method, every, once, f"{once / every:.3f}"])
    load = w.workload
    settings = (
        f"GRPO, {load.prompts} prompts x {load.generations} completions of up to {load.completion_length} tokens, "
        f"{load.image_size}x{load.image_size} images; medians of {args.steps} steps x {args.rounds} rounds "
        f"after {args.warmup} warm-up step(s) per trainer; from {f'the policy {args.policy}' if args.policy else 'a fresh policy'}."
    )
    header = ["method", "every image s/step", "repeats once s/step", "ratio"]
    harness.report("repeated_images", args.shape, settings, harness.table(header, rows), record=not args.no_record)


if __name__ == "__main__":
    main()
