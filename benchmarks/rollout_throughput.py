"""Rollout tokens per second: completion tokens the trainer generates per second of generation.

Generation as training runs it (TRL's generate through the pipeline's trainer, timed by the
trainer's own `time/generation_s`), for a full step's batch (prompts x G) and for one prompt group
(G completions), in one run: the ratio is what batching buys. Medians of --repeats rounds.

    python benchmarks/rollout_throughput.py --shape tiny
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import harness


def tokens_per_second(trainer, prompts: int, repeats: int) -> tuple[float, int]:
    """Median completion tokens per second of generation, and the completions per call."""
    rates = []
    for _ in range(repeats):
        inputs = trainer._draw_inputs(prompts)
        batch = trainer._generate_and_score_completions(inputs)
        seconds = trainer._mode_metrics()["time/generation_s"][-1]
        rates.append(int(batch["completion_mask"].sum()) / seconds)
    return harness.median(rates), len(inputs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    args = harness.parse_args(p)
    with harness.world(args.shape) as w, tempfile.TemporaryDirectory() as scratch:
        trainer = harness.make_trainer(w, "uniform", 1, Path(scratch))
        tokens_per_second(trainer, 1, 1)  # warm-up
        batched, n_batched = tokens_per_second(trainer, w.workload.prompts, args.repeats)
        single, n_single = tokens_per_second(trainer, 1, args.repeats)
    header = ["completions per generate call", "tokens/s", "vs one group"]
    rows = [[n_single, single, "1.00"], [n_batched, batched, f"{batched / single:.2f}"]]
    load = w.workload
    settings = (
        f"Sampling at temperature 1, up to {load.completion_length} tokens, {load.image_size}x{load.image_size} images, "
        f"TRL's transformers generate; medians of {args.repeats} calls."
    )
    harness.report("rollout_throughput", args.shape, settings, harness.table(header, rows), record=not args.no_record)


if __name__ == "__main__":
    main()
