"""Extra peak memory and time of scoring each method's signals, against one plain policy forward.

Plain forward: the per-token log-probs of a generated batch as TRL computes them for its loss
(the policy forward over prompt + completion, no grad). Scoring: what the trainer adds for a
method, its counterfactual input and `score_policy` (entropy, attention to the image, the
counterfactual forward), in chunks. Both on the same generated batch, with the same policy, in
one run. Peak memory is the tensor memory an operation adds above what was live before it
(harness.peak_bytes); time is the median of --repeats calls.

    python benchmarks/scoring_memory.py --shape tiny
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from trl import GRPOTrainer

import harness


def plain_forward(trainer, batch) -> torch.Tensor:
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, input_ids, attention_mask, batch["completion_ids"].size(1),
            pixel_values=batch.get("pixel_values"), image_grid_thw=batch.get("image_grid_thw"),
            num_images=batch.get("num_images"), mm_token_type_ids=batch.get("mm_token_type_ids"),
        )  # fmt: skip
    return logps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=harness.METHODS[1:])
    p.add_argument("--repeats", type=int, default=5)
    args = harness.parse_args(p)
    rows = []
    with harness.world(args.shape) as w, tempfile.TemporaryDirectory() as scratch:
        policy = w.new_policy()
        trainers = {m: harness.make_trainer(w, m, 1, Path(scratch), policy=policy) for m in ["uniform", *args.methods]}
        base = trainers["uniform"]
        inputs = base._draw_inputs(w.workload.prompts)
        batch = GRPOTrainer._generate_and_score_completions(base, inputs)  # TRL's batch, before any weighting
        tokens = int(batch["completion_mask"].sum())
        plain = lambda: plain_forward(base, batch)  # noqa: E731
        plain()  # warm-up
        plain_peak, _ = harness.peak_bytes(plain)
        plain_time = harness.median_seconds(plain, args.repeats)
        rows.append(["plain forward (TRL log-probs)", plain_peak / 2**20, "1.00", plain_time, "1.00"])
        for method in args.methods:
            score = lambda t=trainers[method]: t._signals(batch, inputs)  # noqa: E731
            score()
            peak, _ = harness.peak_bytes(score)
            took = harness.median_seconds(score, args.repeats)
            rows.append([method, peak / 2**20, f"{peak / plain_peak:.2f}", took, f"{took / plain_time:.2f}"])
    header = ["operation", "peak extra MiB", "peak vs plain", "time s", "time vs plain"]
    load = w.workload
    settings = (
        f"One generated batch: {load.prompts} prompts x {load.generations} completions ({tokens} completion tokens, "
        f"{load.image_size}x{load.image_size} images); scoring chunk size {harness.ScoringParams().chunk_size}; "
        f"times are medians of {args.repeats} calls. CPU peaks: torch tensor memory from the profiler."
    )
    harness.report("scoring_memory", args.shape, settings, harness.table(header, rows), record=not args.no_record)


if __name__ == "__main__":
    main()
