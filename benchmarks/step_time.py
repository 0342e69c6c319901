"""Step time of every method against `uniform`, split into generation, reward, signals and update.

Every method trains from the same initial policy on the same workload with the pipeline's own
trainer, in one run; methods take turns round by round (the order reverses each round), so drift
of the machine's load hits them alike. Per method: the median over measured steps of the step's
wall time and of the parts the trainer logs (`time/generation_s`, `time/reward_s`,
`time/signals_s`: scoring, counterfactual and weighting); update is the rest of the step (policy
forward and backward, optimizer). An untrained policy rarely stops early, so every method
generates about the same number of tokens.

A method named `<method>:loss` runs with train.signals_from_loss (its entropy or attention from
TRL's loss forward, weights per micro-batch; one micro-batch per step here): its signals seconds
are 0, and the recorded attention and the weighting count in update.

    python benchmarks/step_time.py --shape tiny
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import harness

PARTS = ("generation", "reward", "signals")


def measure(w: harness.World, method: str, warmup: int, steps: int, scratch: Path) -> tuple[list[float], list[dict]]:
    clock = harness.StepLog()
    name, _, source = method.partition(":")
    trainer = harness.make_trainer(w, name, warmup + steps, scratch, callbacks=[clock], signals_from_loss=source == "loss")
    trainer.train()
    return clock.seconds[warmup:], clock.logs[warmup:]


def summarize(seconds: list[float], logs: list[dict]) -> dict[str, float]:
    # With train.signals_from_loss no scoring runs: the recorded attention and the weighting are part of update.
    parts = {part: harness.median([log.get(f"time/{part}_s", 0.0) for log in logs]) for part in PARTS}
    step = harness.median(seconds)
    return {"step": step, **parts, "update": step - sum(parts.values())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=[*harness.METHODS, "entropy_topk:loss", "atrl:loss"])
    p.add_argument("--warmup", type=int, default=1, help="steps per trainer left out of the medians")
    p.add_argument("--steps", type=int, default=3, help="measured steps per trainer and round")
    p.add_argument("--rounds", type=int, default=2)
    args = harness.parse_args(p)
    methods = ["uniform", *[m for m in args.methods if m != "uniform"]]
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    logs: dict[str, list[dict]] = {m: [] for m in methods}
    with harness.world(args.shape) as w, tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for method in methods if round_ % 2 == 0 else methods[::-1]:
                s, l = measure(w, method, args.warmup, args.steps, Path(scratch))
                seconds[method] += s
                logs[method] += l
    times = {m: summarize(seconds[m], logs[m]) for m in methods}
    base = times["uniform"]
    rows = [
        [m, t["step"], f"{t['step'] / base['step']:.3f}", f"{100 * (t['step'] / base['step'] - 1):+.1f} %",
         t["generation"], t["reward"], t["signals"], t["update"], f"{100 * t['signals'] / t['step']:.1f} %"]
        for m, t in times.items()
    ]  # fmt: skip
    header = ["method", "step s", "ratio vs uniform", "over uniform", "generation s", "reward s", "signals s", "update s", "signals share"]
    load = w.workload
    settings = (
        f"GRPO, {load.prompts} prompts x {load.generations} completions of up to {load.completion_length} tokens, "
        f"{load.image_size}x{load.image_size} images; medians of {args.steps} steps x {args.rounds} rounds "
        f"after {args.warmup} warm-up step(s) per trainer."
    )
    harness.report("step_time", args.shape, settings, harness.table(header, rows), record=not args.no_record)


if __name__ == "__main__":
    main()
