"""Peak GPU memory of every GPU job of a params set, planned on CPU (tokencredit.memory_plan).

    python benchmarks/memory_plan.py --params params/qwen2_5_vl_3b.yaml --architecture qwen2_5_vl_3b
    python benchmarks/memory_plan.py --params params/qwen3_vl_4b.yaml --architecture qwen3_vl_4b
    python benchmarks/memory_plan.py --check      # the planner against measured CPU peaks

The plan traces the params' real shapes on fake tensors: nothing is allocated, no GPU is needed.
`--architecture` names a reference config (tokencredit.memory_plan.ARCHITECTURES) when the params'
model.path is not on this machine. `--check` measures the same operations on real models at three
shapes (the tiny default model, its Qwen3-VL twin, and the 3B's real widths at 2 decoder layers
and 2 vision blocks) in a child process whose every allocation is mapped (MALLOC_MMAP_THRESHOLD_), so that the rise of
its resident memory is the operation's peak; tests/test_memory_plan.py asserts the agreement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import harness
from tokencredit.memory_plan import GiB, PlanModel, Shape, architecture, depth_reduced, forward_work, plan_params, trace

# The shapes --check compares at: (config, shape), fp32 on both sides (CPU bf16 matmuls are slow).
CHECK_SHAPES = {
    "tiny": Shape(rows=4, prompt_text=20, completion=48, pixels=84 * 84),
    "tiny qwen3_vl": Shape(rows=4, prompt_text=20, completion=48, pixels=96 * 96),  # 16-px patches: the same 6 x 6 grid
    "qwen2_5_vl_3b, 2 layers, 2 blocks": Shape(rows=2, prompt_text=30, completion=64, pixels=112 * 112),
}


def check_config(name: str, tiny_dir: Path | None = None):
    if name == "tiny":
        return architecture(tiny_dir)
    if name == "tiny qwen3_vl":  # the tiny model's sizes and tokenizer as Qwen3-VL (DeepStack taps its first block)
        from transformers import AutoTokenizer

        from tokencredit.families import family_named
        from tokencredit.params import ModelParams

        return family_named("qwen3_vl").tiny_config(AutoTokenizer.from_pretrained(tiny_dir), ModelParams())
    return depth_reduced(architecture("qwen2_5_vl_3b"), 2, 2)


def operations(shape: Shape) -> dict[str, dict]:
    return {"scoring": {"grad": False, "chunk": 256}, "update": {"grad": True}}


def measured(name: str, tiny_dir: Path | None) -> dict[str, int]:
    """Resident-memory rise of each operation on a real model (run in a child with every allocation mapped)."""
    config, shape = check_config(name, tiny_dir), CHECK_SHAPES[name]
    peaks = {}
    for op, kwargs in operations(shape).items():
        work = forward_work(PlanModel(config, torch.float32, fake=False), shape, **kwargs)
        work()  # once before: one-time allocations are not the operation's
        peaks[op], _ = harness.peak_rss_bytes(work)
    return peaks


def planned(name: str, tiny_dir: Path | None) -> dict[str, int]:
    config, shape = check_config(name, tiny_dir), CHECK_SHAPES[name]
    peaks = {}
    for op, kwargs in operations(shape).items():
        pm = PlanModel(config, torch.float32)
        peaks[op], _ = trace(pm, forward_work(pm, shape, **kwargs))
    return peaks


def check(tiny_dir: Path) -> list[dict]:
    """Planned and measured peaks of every check shape and operation."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "4096"}  # every allocation its own mapping: RSS follows the tensors
    rows = []
    for name in CHECK_SHAPES:
        child = subprocess.run(
            [sys.executable, __file__, "--measure", name, "--tiny-dir", str(tiny_dir)], env=env, capture_output=True, text=True, check=True
        )
        real = json.loads(child.stdout.strip().splitlines()[-1])
        plan = planned(name, tiny_dir)
        rows += [{"shape": name, "operation": op, "planned": plan[op], "measured": real[op]} for op in plan]
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", nargs="+", help="params files, merged in order over params/default.yaml")
    p.add_argument("--architecture", help="reference config when model.path is not on this machine (e.g. qwen2_5_vl_3b)")
    p.add_argument("--gpu-gb", type=float, default=80.0, help="memory of one GPU, GB (10^9 bytes)")
    p.add_argument("--check", action="store_true", help="compare the planner with measured CPU peaks")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # the child of --check
    p.add_argument("--tiny-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.measure:
        print(json.dumps(measured(args.measure, args.tiny_dir)))
        return
    if args.check:
        with harness.world("tiny") as w:
            rows = [[r["shape"], r["operation"], r["planned"] / 2**20, r["measured"] / 2**20, f"{r['planned'] / r['measured']:.2f}"] for r in check(w.data_dir.parent / "base")]
        body = harness.table(["shape", "operation", "planned MiB", "measured MiB", "planned / measured"], rows)
        settings = "fp32; measured: resident-memory rise of a child process with every allocation mapped; tests/test_memory_plan.py asserts 0.75-1.25"
        harness.report("memory_plan check", "tiny and 3B widths", settings, body, record=not args.no_record)
        return
    from tokencredit import params as P

    raw = P.merged_params(P.DEFAULT, *args.params)
    # Section by section: the plan needs shapes, not the local copies of data the whole set would check.
    sections = {name: model(**{k: v for k, v in raw.get(name, {}).items() if k != "path"}) for name, model in (
        ("train", P.TrainParams), ("rollouts", P.RolloutParams), ("scoring", P.ScoringParams), ("score", P.ScoreParams), ("model", P.ModelParams))}
    model_path = raw.get("model", {}).get("path")
    config = architecture(args.architecture or model_path)
    rows, gpu = [], args.gpu_gb * 1e9
    for job in plan_params(sections, config):
        resident = ", ".join(f"{k} {v / GiB:.1f}" for k, v in job.resident.items())
        cache = f" (KV cache {job.kv_cache / GiB:.1f})" if job.kv_cache else ""
        rows.append([job.job, f"{job.peak / GiB:.1f}", f"{job.peak / gpu:.0%}", resident, f"{job.operation}: {job.traced / GiB:.1f}{cache}"])
    header = ["job", "peak GiB per GPU", f"of {args.gpu_gb:g} GB", "resident (GiB)", "largest operation (GiB)"]
    settings = f"params {' + '.join(args.params)}; architecture {args.architecture or model_path}; traced on fake tensors"
    harness.report("memory_plan", args.architecture or Path(model_path).name, settings, harness.table(header, rows), record=not args.no_record)


if __name__ == "__main__":
    main()
