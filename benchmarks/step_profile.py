"""Where one default training step's time goes: cProfile of uniform GRPO steps, by part.

Trains `uniform` at the shape's workload (from `--policy`, e.g. the pipeline's SFT model, whose
completions stop early as in the real runs, or from a fresh one) under cProfile, after warm-up
steps, and charges the profile's cumulative time to the parts of a step: generation (with its
per-token forwards and TRL's per-token Python), the reward, the KL reference forward, the loss
forward and backward, the optimizer, the processor's prompt encoding and image processing, and
the logging. Parts can nest (the processor runs inside generation's input preparation), so the
table gives each part's share of the step, not a partition. A second table lists the functions
with the most own time. The arithmetic floor is what the step's FLOPs would take at the measured
rate of the model's largest matrix product on this machine (torch's FlopCounterMode counts the FLOPs of
the first step: matrix products, convolutions and attention, forward and backward).

    python benchmarks/step_profile.py --shape tiny --policy results/models/sft
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import harness
import torch
from torch.utils.flop_counter import FlopCounterMode

from tokencredit.models import load_policy
from tokencredit.params import ModelParams, Params, merged_params

# part -> (file suffix, function name) of the frames whose cumulative time is the part's.
PARTS = {
    "whole step (training_step)": ("trl/trainer/grpo_trainer.py", "training_step"),
    "generation and scoring (_generate_and_score_completions)": ("tokencredit/trainer.py", "_generate_and_score_completions"),
    "  prompts: chat template and tokenizing": ("trl/trainer/grpo_trainer.py", "_tokenize_prompts"),
    "  processor: image processing (pixels to patches)": ("transformers/image_processing_utils.py", "__call__"),
    "  model.generate": ("transformers/generation/utils.py", "generate"),
    "    prefill (prompt forward, vision tower)": ("transformers/generation/utils.py", "_prefill"),
    "    per-token decoding loop (_sample)": ("transformers/generation/utils.py", "_sample"),
    "  reward (graders)": ("tokencredit/trainer.py", "_calculate_rewards"),
    "log-prob forwards (the reference model's for the KL, no grad, and the loss's)": ("tokencredit/trainer.py", "_get_per_token_logps_and_entropies"),
    "vision tower (all forwards)": ("models/qwen2_5_vl/modeling_qwen2_5_vl.py", "get_image_features"),
    "loss (compute_loss: policy forward with grad)": ("tokencredit/trainer.py", "compute_loss"),
    "backward": ("torch/_tensor.py", "backward"),
    "optimizer step": ("torch/optim/optimizer.py", "wrapper"),
    "logging (Trainer.log)": ("trl/trainer/grpo_trainer.py", "log"),
}


def cumulative(stats: pstats.Stats, suffix: str, name: str) -> tuple[float, int]:
    """Cumulative seconds and calls of the outermost frames matching (file suffix, function name).

    cProfile's cumulative time of a recursive function counts each outermost call once, so summing
    over matching entries is right as long as they do not call each other (true for the parts above)."""
    total, calls = 0.0, 0
    for (file, _, func), (_, ncalls, _, ct, _) in stats.stats.items():
        if func == name and file.endswith(suffix):
            total += ct
            calls += ncalls
    return total, calls


def matmul_gflops() -> float:
    """GFLOP/s of the default model's MLP product over a step's tokens ([64 x 90, 128] @ [128, 256], float32):
    the rate the arithmetic could run at on this machine's threads, an optimistic bound for the smaller products."""
    a, b = torch.randn(64 * 90, 128), torch.randn(128, 256)
    seconds = harness.median_seconds(lambda: a @ b, 20)
    return 2 * a.shape[0] * 128 * 256 / seconds / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--warmup", type=int, default=2, help="steps before the profile starts")
    p.add_argument("--steps", type=int, default=5, help="profiled steps")
    p.add_argument("--policy", type=Path, help="train from this saved policy (e.g. results/models/sft) instead of a fresh one")
    p.add_argument("--gflop", type=float, default=0.3, help="the step's arithmetic in GFLOP (issue 24's estimate at the default shape)")
    p.add_argument("--top", type=int, default=15, help="functions listed by own time")
    p.add_argument("--dump", type=Path, help="also write the raw cProfile stats here (pstats format)")
    args = harness.parse_args(p)
    with harness.world(args.shape) as w, tempfile.TemporaryDirectory() as scratch:
        clock = harness.StepLog()
        start = load_policy(args.policy, ModelParams()) if args.policy else None
        # The default's KL to the SFT model (beta) and learning rate: the reference forward is part of its step.
        default = Params.model_validate(merged_params(harness.ROOT / "params/default.yaml")).train
        trainer = harness.make_trainer(
            w, "uniform", args.warmup + args.steps, Path(scratch), callbacks=[clock], policy=start, beta=default.beta, learning_rate=default.learning_rate
        )
        profiler = cProfile.Profile()

        flops = FlopCounterMode(display=False)

        class Profile(harness.TrainerCallback):
            """FLOPs of the first (warm-up) step, cProfile from the first step after the warm-up."""

            def on_step_begin(self, a, state, control, **kwargs):
                if state.global_step == 0:
                    flops.__enter__()
                if state.global_step == args.warmup:
                    profiler.enable()

            def on_step_end(self, a, state, control, **kwargs):
                if state.global_step == 1:
                    flops.__exit__(None, None, None)

        trainer.add_callback(Profile())
        began = time.perf_counter()
        trainer.train()
        profiler.disable()
        wall = time.perf_counter() - began
    stats = pstats.Stats(profiler)
    if args.dump:
        stats.dump_stats(args.dump)
    step = harness.median(clock.seconds[args.warmup :])
    whole, _ = cumulative(stats, *PARTS["whole step (training_step)"])
    rows = []
    for part, (suffix, name) in PARTS.items():
        seconds, calls = cumulative(stats, suffix, name)
        rows.append([part, seconds / args.steps, f"{100 * seconds / whole:.1f} %" if whole else "-", calls // args.steps])
    gflop = flops.get_total_flops() / 1e9
    rate = matmul_gflops()
    for what, amount in (("arithmetic floor: the step's counted FLOPs", gflop), ("arithmetic floor: issue 24's estimate", args.gflop)):
        rows.append([f"{what} ({amount:.3g} GFLOP at {rate:.3g} GFLOP/s)", amount / rate, f"{100 * amount / rate * args.steps / whole:.1f} %", "-"])
    own = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[: args.top]
    own_rows = [[f"{Path(file).name}:{line} {func}", tt / args.steps, f"{100 * tt / whole:.1f} %", ncalls // args.steps] for (file, line, func), (_, ncalls, tt, _, _) in own]
    load = w.workload
    settings = (
        f"uniform GRPO, {load.prompts} prompts x {load.generations} completions of up to {load.completion_length} tokens, "
        f"{load.image_size}x{load.image_size} images, from {args.policy or 'a fresh policy'}; cProfile over {args.steps} steps after "
        f"{args.warmup} warm-up steps (median step {step:.3f} s under the profiler, {wall:.0f} s for the run). "
        "Shares are of the profiled training_step time; parts nest (indented ones are inside generation)."
    )
    body = harness.table(["part", "s per step", "share of step", "calls per step"], rows)
    body += "\n\nMost own time (s per step):\n\n" + harness.table(["function", "own s per step", "share of step", "calls per step"], own_rows)
    harness.report("step_profile", args.shape, settings, body, record=not args.no_record)


if __name__ == "__main__":
    main()
