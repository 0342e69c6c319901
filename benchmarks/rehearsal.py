"""A real-width rehearsal on CPU: the 3B model's widths at 2 text layers and 2 vision blocks (issue 21).

Qwen2.5-VL-3B's real widths (hidden 2048, vocabulary 151,936, the vision tower's 1280-wide blocks,
its patch and merge sizes), random weights, depth cut to 2 decoder layers and 2 vision blocks (one
windowed, one full-attention, as the real tower mixes them), the image processor at the 3B params'
min_pixels (200,704) and max_pixels `--pixels` (default 200,704: 256 visual tokens; at the params'
1,003,520 the 1001 x 1001 image becomes 1,225), 2 completions of one prompt, `--tokens` response tokens
(random weights never sample eos, so every response has that length).

Each method trains one step through the pipeline's own trainer (training.build_trainer, TRL's
generation included), in a fresh process, so that its peak resident memory (ru_maxrss) is its own;
then one rollout goes through the pipeline's rollout code (rollouts.generate_rollouts). SGD replaces
AdamW: AdamW's two fp32 states (8 bytes per parameter, 4.1 GB here) would not fit beside the
other jobs on this shared 24 GB machine; they are added to the table from the parameter count.

Run: `python benchmarks/rehearsal.py` (≈ 15 min on the loaded 2-core machine; `--methods` to pick).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIN_PIXELS = 200_704  # 256 * 28 * 28: the 3B params' min_pixels


def build(root: Path, tokens: int, pixels: int):
    """The data, the processor and a factory of the real-width, reduced-depth policy."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from benchmarks.harness import World, Workload, qwen2_5_vl_3b_config
    from tokencredit.params import DataParams, ModelParams
    from tokencredit.synthetic import corpus, write_splits
    from tokencredit.families.qwen2_5_vl import QWEN2_5_VL
    from tokencredit.tiny_vlm import train_tokenizer

    # a square image of `pixels` pixels: the processor resizes it to the largest multiple of 28 within them
    data = DataParams(n_train=8, n_validation=2, n_test=2, n_test_ood=2, image_size=math.isqrt(pixels))
    model_params = ModelParams(min_pixels=min(MIN_PIXELS, pixels), max_pixels=pixels)
    write_splits(data, root / "data")
    processor = QWEN2_5_VL.processor(train_tokenizer(corpus(data), model_params.vocab_size, QWEN2_5_VL), model_params)
    processor.tokenizer.padding_side = "left"
    config = qwen2_5_vl_3b_config(processor.tokenizer)
    config.text_config.num_hidden_layers = 2
    if getattr(config.text_config, "layer_types", None):
        config.text_config.layer_types = config.text_config.layer_types[:2]
    config.vision_config.depth = 2
    config.vision_config.fullatt_block_indexes = [1]

    def new_policy() -> tuple:
        torch.manual_seed(0)
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.float32)
        model.generation_config.eos_token_id = config.text_config.eos_token_id
        model.generation_config.pad_token_id = config.text_config.pad_token_id
        return model.eval(), processor

    workload = Workload(prompts=1, generations=2, completion_length=tokens, image_size=data.image_size)
    return World("qwen2_5_vl_3b_depth2", workload, root / "data", new_policy), model_params


def rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one(method: str, tokens: int, pixels: int) -> dict:
    """One training step of `method` (or `rollout`) in this process: seconds and memory."""
    import torch

    from benchmarks.harness import StepLog, make_trainer

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="tokencredit-rehearsal-") as tmp:
        w, model_params = build(Path(tmp), tokens, pixels)
        policy = w.new_policy()
        parameters = sum(p.numel() for p in policy[0].parameters())
        if method == "rollout":
            return {"parameters": parameters, **_rollout(w, policy, model_params, tokens)}
        steps = StepLog()
        trainer = make_trainer(w, method, steps=1, out=Path(tmp), callbacks=[steps], policy=policy, save_steps=100)
        trainer.args.optim = "sgd"  # see the module docstring: AdamW's states are added from the parameter count
        before = current_rss_bytes()
        trainer.train()
        logged = steps.logs[0] if steps.logs else {}
    return {
        "parameters": parameters,
        "seconds": steps.seconds[0],
        "generation_s": logged.get("time/generation_s"),
        "signals_s": logged.get("time/signals_s"),
        "rss_before_bytes": before,
        "peak_rss_bytes": rss_bytes(),
        "completion_tokens": logged.get("completions/mean_length"),
    }


def _rollout(w, policy, model_params, tokens: int) -> dict:
    from tokencredit.dataset import load_split
    from tokencredit.params import RolloutParams
    from tokencredit.rollouts import generate_rollouts

    model, processor = policy
    prompts = load_split(w.data_dir, "test").iloc[:1]
    params = RolloutParams(num_samples=2, max_new_tokens=tokens, batch_size=1)
    before = current_rss_bytes()
    start = time.perf_counter()
    frame = generate_rollouts(
        model, processor, prompts, w.data_dir, params, {"digest": "rehearsal", "decoding": "sampled"},
        w.data_dir / "rollouts.parquet", w.data_dir / "rollouts-work", desc="rehearsal",
    )  # fmt: skip
    return {
        "seconds": time.perf_counter() - start,
        "rss_before_bytes": before,
        "peak_rss_bytes": rss_bytes(),
        "completion_tokens": float(frame["token_ids"].map(len).mean()),
    }


def main() -> None:
    from benchmarks.harness import METHODS, report, table

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="*", help="default: the default grid's methods (the 3B params' grid too)")
    p.add_argument("--tokens", type=int, default=256, help="response tokens per completion (256-512)")
    p.add_argument("--pixels", type=int, default=MIN_PIXELS, help="the image processor's max_pixels (the 3B params': 1003520)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--report", action="store_true", help="only report the jobs the results file holds (e.g. after a run was stopped)")
    p.add_argument("--parallel", type=int, default=1, help="jobs at a time, one thread each (memory: about 7 GB each at 200,704 pixels, 10 GB at 1,003,520)")
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one(args.one, args.tokens, args.pixels)), flush=True)
        return
    if not args.report:
        methods = args.methods or METHODS
        # uniform and the rollout first, then the costliest kinds: a run stopped early keeps the most telling jobs
        order = ["uniform", "rollout", "vppo", "atrl", "pgpo", "tor"]
        jobs = methods if args.methods else ["rollout", *methods]
        run_jobs(sorted(jobs, key=lambda m: order.index(m) if m in order else len(order)), args.tokens, args.pixels, args.parallel)
    done = json.loads(results_json(args.pixels).read_text())
    results, load = done["jobs"], done["load"]
    rows = []
    for name, r in results.items():
        adam = 8 * r["parameters"] if name != "rollout" else 0
        gib = 2**30
        rows.append([
            name, round(r["seconds"], 1), r.get("generation_s") and round(r["generation_s"], 1), r.get("signals_s") and round(r["signals_s"], 2),
            round(r["peak_rss_bytes"] / gib, 2), round((r["peak_rss_bytes"] - r["rss_before_bytes"]) / gib, 2), round((r["peak_rss_bytes"] + adam) / gib, 2),
        ])  # fmt: skip
    parameters = next(iter(results.values()))["parameters"] if results else 0
    header = ["job", "step s", "generation s", "signals s", "peak RSS GiB", "step's rise GiB", "peak + AdamW states GiB"]
    settings = (
        f"Real 3B widths at 2 text layers / 2 vision blocks ({parameters / 1e6:.0f} M parameters, fp32), "
        f"images resized to {visual_tokens(args.pixels) * 28 * 28} pixels ({visual_tokens(args.pixels)} visual tokens; max_pixels {args.pixels}), 1 prompt x 2 completions of {done['tokens']} tokens, sdpa attention, one step per method "
        f"in its own one-thread process, {done.get('parallel', 1)} at a time (SGD; AdamW's 8 bytes per parameter added in the last column), then one rollout (rollouts.generate_rollouts). "
        f"Load average (1 min) before each job: {load}. Jobs not listed did not run (time)."
    )
    report("rehearsal", "qwen2_5_vl_3b_depth2", settings, table(header, rows), record=not args.no_record)


def results_json(pixels: int) -> Path:
    return ROOT / ("benchmarks/rehearsal.json" if pixels == MIN_PIXELS else f"benchmarks/rehearsal_{pixels}px.json")


def visual_tokens(pixels: int) -> int:
    """Merged visual tokens of the square image `build` makes for `pixels` (the processor's own resize rule)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    side = math.isqrt(pixels)
    height, width = smart_resize(side, side, factor=28, min_pixels=min(MIN_PIXELS, pixels), max_pixels=pixels)
    return height * width // (28 * 28)


def run_jobs(jobs: list[str], tokens: int, pixels: int, parallel: int = 1) -> None:
    """Each job in its own one-thread process, `parallel` at a time; the results file (results_json)
    rewritten after every one. Jobs it already holds at the same response length are kept (a run stopped for
    time goes on with `--methods` the rest)."""
    from concurrent.futures import ThreadPoolExecutor

    path = results_json(pixels)
    done = json.loads(path.read_text()) if path.exists() else {}
    if done.get("tokens") != tokens:
        done = {"tokens": tokens, "jobs": {}, "load": []}
    done["parallel"] = parallel
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}

    def run(name: str) -> tuple[str, subprocess.CompletedProcess, str]:
        load = f"{name} {os.getloadavg()[0]:.1f}"
        return name, subprocess.run([sys.executable, __file__, "--one", name, "--tokens", str(tokens), "--pixels", str(pixels)], capture_output=True, text=True, env=env), load

    with ThreadPoolExecutor(parallel) as pool:
        for name, out, load in pool.map(run, jobs):
            lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
            if out.returncode or not lines:
                print(f"{name} failed:\n{out.stderr[-2000:]}", flush=True)
                continue
            done["load"].append(load)
            done["jobs"][name] = json.loads(lines[0][len("RESULT ") :])
            path.write_text(json.dumps(done, indent=1) + "\n")
            print(name, done["jobs"][name], flush=True)


if __name__ == "__main__":
    main()
