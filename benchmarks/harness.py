"""What the benchmarks share: model shapes, workloads, trainers, timers, peak memory, RESULTS.md.

Shapes (`--shape`):
  tiny           the project's default tiny Qwen2.5-VL (1.3 M parameters), 84x84 images; CPU or GPU.
  qwen2_5_vl_3b  a random-initialised model with the real Qwen2.5-VL-3B-Instruct config (3.75 B
                 parameters, bf16), built locally from that config with no download, 448x448
                 images (256 visual tokens); GPU only.
Both read the synthetic task and a BPE tokenizer trained on it; the 3B shape keeps Qwen's 151,936-
token vocabulary, so the vocabulary-sized work (logits, entropy) is the real one.
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
import transformers
import trl
import yaml
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, TrainerCallback

from tokencredit.algorithms import get_algorithm
from tokencredit.atomic import write_text
from tokencredit.dataset import load_split
from tokencredit.models import load_policy
from tokencredit.params import DataParams, ModelParams, Params, ScoringParams, TrainParams, merged_params
from tokencredit.synthetic import corpus, write_splits
from tokencredit.families.qwen2_5_vl import QWEN2_5_VL, QWEN_SPECIAL_TOKENS
from tokencredit.memory_plan import ARCHITECTURES
from tokencredit.tiny_vlm import build_base, train_tokenizer
from tokencredit.training import build_trainer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/RESULTS.md"
METHODS = ["uniform", "entropy_topk", "tor", "pgpo", "vppo", "atrl"]  # the default grid's methods


@dataclass(frozen=True)
class Workload:
    """One training step's work: prompts x generations completions of up to completion_length tokens."""

    prompts: int
    generations: int
    completion_length: int
    image_size: int


WORKLOADS = {
    "tiny": Workload(prompts=16, generations=4, completion_length=48, image_size=84),  # params/default.yaml
    "qwen2_5_vl_3b": Workload(prompts=4, generations=8, completion_length=256, image_size=448),
}


def parse_args(p: argparse.ArgumentParser) -> argparse.Namespace:
    """The options every benchmark has, then its own; sets torch's CPU threads."""
    p.add_argument("--shape", choices=sorted(WORKLOADS), default="tiny")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: tiny tensors gain nothing from more)")
    p.add_argument("--no-record", action="store_true", help="print only; do not append to benchmarks/RESULTS.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    return args


# -- the model and data of a shape ----------------------------------------------------------------------
def qwen2_5_vl_3b_config(tokenizer) -> Qwen2_5_VLConfig:
    """Qwen2.5-VL-3B-Instruct's architecture (tokencredit.memory_plan.ARCHITECTURES, its config.json),
    with our tokenizer's special-token ids."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    raw = copy.deepcopy(ARCHITECTURES["qwen2_5_vl_3b"])
    raw["text_config"].update(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    raw.update(
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    del raw["model_type"]
    return Qwen2_5_VLConfig(**raw, attn_implementation="sdpa")  # as the params: attn_image needs no eager attention


@dataclass
class World:
    """A shape's data directory and a factory of fresh, identically initialised policies."""

    shape: str
    workload: Workload
    data_dir: Path
    new_policy: Callable[[], tuple]


def build_world(shape: str, root: Path) -> World:
    if shape == "qwen2_5_vl_3b" and not torch.cuda.is_available():
        raise SystemExit("--shape qwen2_5_vl_3b needs a CUDA GPU (3.75 B parameters); use --shape tiny on CPU")
    workload = WORKLOADS[shape]
    side = workload.image_size
    data = DataParams(n_train=64, n_validation=8, n_test=8, n_test_ood=8, image_size=side)
    model_params = ModelParams(min_pixels=side * side, max_pixels=side * side)
    write_splits(data, root / "data")
    if shape == "tiny":
        build_base(model_params, corpus(data), root / "base")
        return World(shape, workload, root / "data", lambda: load_policy(root / "base", model_params))
    processor = QWEN2_5_VL.processor(train_tokenizer(corpus(data), model_params.vocab_size, QWEN2_5_VL), model_params)
    processor.tokenizer.padding_side = "left"
    config = qwen2_5_vl_3b_config(processor.tokenizer)

    def new_policy() -> tuple:
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
        model.generation_config.eos_token_id = config.text_config.eos_token_id
        model.generation_config.pad_token_id = config.text_config.pad_token_id
        return model.eval(), processor

    return World(shape, workload, root / "data", new_policy)


@contextmanager
def world(shape: str) -> Iterator[World]:
    with tempfile.TemporaryDirectory(prefix=f"tokencredit-bench-{shape}-") as root:
        yield build_world(shape, Path(root))


def make_trainer(w: World, method: str, steps: int, out: Path, callbacks=(), policy: tuple | None = None, signals_from_loss: bool = False, **train):
    """The pipeline's trainer (tokencredit.training.build_trainer) for `method` at the shape's workload,
    on `policy` (model, processor) or a fresh one; `signals_from_loss`: train.signals_from_loss;
    `train`: other TrainParams keys."""
    spec = Params().methods[method]
    load = w.workload
    train = TrainParams(
        max_steps=steps,
        prompts_per_step=load.prompts,
        num_generations=load.generations,
        max_completion_length=load.completion_length,
        signals_from_loss=signals_from_loss,
        **{"save_steps": steps + 1, **train},  # by default no checkpoint inside the timed steps
    )
    model, processor = policy or w.new_policy()
    return build_trainer(
        model, processor, load_split(w.data_dir, "train"), w.data_dir, train, spec, ScoringParams(),
        get_algorithm("grpo"), 0, out / f"{method}-{signals_from_loss}", callbacks=list(callbacks), method_name=method,
    )  # fmt: skip


# -- the whole pipeline ---------------------------------------------------------------------------------
def copy_project(dest: Path, overrides: list[Path], ref: str | None = None) -> Path:
    """A fresh copy of the project, the working tree's tracked and unignored files or commit `ref`,
    whose params/default.yaml is its own merged with `overrides` (e.g. params/smoke.yaml)."""
    dest.mkdir(parents=True)
    if ref is not None:
        archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
    else:
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True)
        for name in files.stdout.split():
            src = ROOT / name
            if src.is_file() or src.is_symlink():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                (dest / name).symlink_to(src.readlink()) if src.is_symlink() else shutil.copy2(src, dest / name)
    params = merged_params(dest / "params/default.yaml", *overrides)
    (dest / "params/default.yaml").write_text(yaml.safe_dump(params))
    return dest


def snakemake(project: Path, *args: str) -> tuple[float, str]:
    """Seconds one snakemake call takes in `project`, running that copy's own code, and its output; fails loudly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = f"{project / 'src'}{os.pathsep}{project}"
    start = time.perf_counter()
    out = subprocess.run(["snakemake", *args], cwd=project, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed in {project}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return took, out.stdout + out.stderr


# -- measuring ------------------------------------------------------------------------------------------
def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepLog(TrainerCallback):
    """Wall time of every optimizer step and the metrics the trainer logged for it."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.logs: list[dict[str, float]] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs) -> None:
        synchronize()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs) -> None:
        synchronize()
        self.seconds.append(time.perf_counter() - self._start)

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if logs and "loss" in logs:
            self.logs.append(dict(logs))


def peak_bytes(fn: Callable[[], object]) -> tuple[float, object]:
    """Peak bytes of tensor memory that `fn` adds above what was live before it, and its result.

    GPU: the CUDA allocator's own peak. CPU: allocations and frees that torch's profiler records,
    replayed in time order (tracemalloc cannot see torch's allocator, and the process RSS mixes in
    the C allocator's caching).
    """
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        result = fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before, result
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    changes = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    live = peak = 0
    for _, change in changes:
        live += change
        peak = max(peak, live)
    return peak, result


def peak_rss_bytes(fn: Callable[[], object]) -> tuple[int, object]:
    """CPU only: how far the process's resident memory rises above its level before `fn`, at its peak.

    Linux resets the peak (VmHWM) on a write of 5 to /proc/self/clear_refs. Unlike peak_bytes it
    also sees what the profiler attributes to no operator, such as autograd's gradient buffers
    (a tied 151,936 x 2048 embedding's three fp32 gradient buffers: 3.5 GiB seen, 1.3 GiB replayed).
    Large tensors are mmap-ed and unmapped on free, so the rise is theirs; run `fn` once before to
    leave out one-time allocations.
    """

    def status(field: str) -> int:
        return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024

    Path("/proc/self/clear_refs").write_text("5")
    before = status("VmRSS")
    result = fn()
    return status("VmHWM") - before, result


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls of `fn`, the GPU synchronised around each."""
    times = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return median(times)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# -- reporting ------------------------------------------------------------------------------------------
def machine() -> str:
    """CPU model, cores, GPU, and the versions that matter for speed."""
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores (load average {load} at the end), {gpu}; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), transformers {transformers.__version__}, trl {trl.__version__}"
    )


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return (out.stdout.strip() or "unknown") + ("+changes" if dirty else "")


def table(header: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def report(name: str, shape: str, settings: str, body: str, record: bool) -> None:
    """Print one benchmark's result and append it, with the machine, to benchmarks/RESULTS.md."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = f"## {name} · {shape} · {stamp}\n\nMachine: {machine()}. Commit {git_commit()}.\n{settings}\n\n{body}\n"
    print(section)
    if record:
        existing = RESULTS.read_text() if RESULTS.is_file() else "# Benchmark results\n"
        write_text(RESULTS, existing.rstrip("\n") + "\n\n" + section)
