"""One command for the first GPU: does each GPU job of a params set run, how fast, at what peak (issue 21).

Two halves, so that the GPU machine needs only torch and transformers (it has no trl, pydantic,
snakemake, mlflow nor dvc):

  here:  python benchmarks/gpu_check.py --prepare --params params/qwen2_5_vl_3b.yaml --plan benchmarks/gpu_check_3b.json
         resolves the params (shapes, generation chunk, the grid's methods with their signals and
         counterfactuals, scoring settings) and the model's config into one JSON;
  GPU:   PYTHONPATH=src python benchmarks/gpu_check.py --plan benchmarks/gpu_check_3b.json --out $OUT/gpu_check.json
         builds the model from that config with random weights and runs the checks, writing the
         results JSON after every check (a killed run keeps what it finished).

The GPU half imports from tokencredit only `signals` and `counterfactual` (torch only); a test runs
it with trl and pydantic blocked. Checks, in order (each: seconds, peak bytes, planned bytes):
  generation_prefill, generation_decode   the params' generation chunk of rows at prompt + response length
  scoring/<signals>/<counterfactual>      score_policy on one micro-batch, per distinct method kind
  train_micro_batch/<kernel>              forward/backward of one micro-batch, sdpa and eager (the kernel AT-RL needed
                                          before its attention came from q and k)
  optimizer_step/<precision>              bf16 weights, then fp32 master weights under bf16 autocast, AdamW
  scoring_fsdp_autocast                   FSDP (version 1, one process) of fp32 weights, scoring under bf16 autocast
Peak bytes: the CUDA allocator's peak above what was allocated before the check (None on CPU).
Planned bytes: --prepare adds tokencredit.memory_plan's traced peak of each check's operation (its
rise above the resident weights and states, which differ: one process here); `--memory-plan FILE`
(JSON {check name: bytes}) overrides them.

`--tiny` runs the same checks on the project's tiny model on CPU (the test suite does).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

DEFAULTS = Path(__file__).resolve().parents[1] / "params/default.yaml"
PROMPT_TEXT_TOKENS = 128  # question and chat template around the image; the papers' prompts are about this long
DECODE_TOKENS = 8  # decode steps timed after the prefill, from a KV cache already at full length
# Qwen2.5-VL's tokenizer ids of the special tokens (tokenizer_config.json of Qwen/Qwen2.5-VL-3B-Instruct).
QWEN_TOKEN_IDS = {
    "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|vision_start|>": 151652,
    "<|vision_end|>": 151653, "<|image_pad|>": 151655, "<|video_pad|>": 151656,
}  # fmt: skip


# -- here: the params resolved into a plan -------------------------------------------------------------
class _TokenIds:
    """What config builders read of a tokenizer: special-token ids and the vocabulary size."""

    def __init__(self, ids: dict[str, int], size: int) -> None:
        self.ids, self.size = ids, size

    def convert_tokens_to_ids(self, token: str) -> int:
        return self.ids[token]

    def __len__(self) -> int:
        return self.size

    @property
    def pad_token_id(self) -> int:
        return self.ids["<|endoftext|>"]  # Qwen's pad token

    @property
    def eos_token_id(self) -> int:
        return self.ids["<|im_end|>"]


def prepare(params_file: Path | None, tiny: bool) -> dict[str, Any]:
    """The check's inputs from a params file (tiny: the default params and the tiny model's config)."""
    from tokencredit.params import merged_params, validate
    from tokencredit.families.qwen2_5_vl import QWEN2_5_VL, QWEN_SPECIAL_TOKENS
    from tokencredit.weighting import default_counterfactual, required_signals

    raw = merged_params(DEFAULTS, *([params_file] if params_file else []))  # as snakemake's --configfile merges
    # Data, benchmarks and the checkpoint are local copies this machine may not hold; the check needs none of them.
    raw = {k: v for k, v in raw.items() if k not in ("data", "eval", "benchmarks")} | {"model": {**raw.get("model", {}), "path": None}}
    params = validate(raw, str(params_file))
    train, model = params.train, params.model
    if tiny:
        config = QWEN2_5_VL.tiny_config(_TokenIds({t: i for i, t in enumerate(QWEN_SPECIAL_TOKENS)}, model.vocab_size), model)
        rows, side, text_tokens, completion, micro = 2, 84, 8, 6, 2
    else:
        from benchmarks.harness import qwen2_5_vl_3b_config  # the real 3B architecture

        config = qwen2_5_vl_3b_config(_TokenIds(QWEN_TOKEN_IDS, 151936))
        completion, text_tokens = train.max_completion_length, PROMPT_TEXT_TOKENS
        per_process = train.completions_per_process * train.updates_per_generation
        chunk = model.generation_chunk
        rows = min(chunk or per_process, per_process)
        micro = train.micro_batch_size or train.completions_per_process
        side = math.isqrt(model.max_pixels)  # a square image at max_pixels: the largest the processor makes
    config._attn_implementation = "sdpa"
    unit = config.vision_config.patch_size * config.vision_config.spatial_merge_size
    patches = (side // unit) * (config.vision_config.spatial_merge_size)  # smart_resize of a square image at max_pixels
    kinds: dict[str, dict[str, Any]] = {}
    for name in train.methods:
        spec = params.methods[name]
        needs = sorted(required_signals(spec.weighting) - {"role"})
        cf = spec.counterfactual or default_counterfactual(spec.weighting)
        if needs:
            key = f"scoring/{'+'.join(needs)}/{cf or 'no_counterfactual'}"
            kinds.setdefault(key, {"needs": needs, "counterfactual": cf, "methods": []})["methods"].append(name)
    return {
        "memory_plan": {} if tiny else planned_bytes(params, config, kinds),
        "params": str(params_file) if params_file else "defaults (tiny)",
        "config": config.to_dict(),
        "image_grid_thw": [1, patches, patches],
        "prompt_text_tokens": text_tokens,
        "completion_tokens": completion,
        "generation_rows": rows,
        "micro_batch": micro,
        "temperature": train.temperature,
        "chunk_size": params.scoring.chunk_size,
        "attention_layers": list(params.scoring.attention_layers),
        "scoring": kinds,
    }


def planned_bytes(params: Any, config: Any, kinds: dict[str, Any]) -> dict[str, int]:
    """Each check's planned rise above what is resident (tokencredit.memory_plan's traced peak of its
    operation); the resident weights and states differ (one process here, the params' engine there)."""
    from tokencredit.memory_plan import plan_params

    sections = {name: getattr(params, name) for name in ("train", "rollouts", "scoring", "score", "model")}
    traced = {plan.job: plan.traced for plan in plan_params(sections, config, prompt_text=PROMPT_TEXT_TOKENS)}
    return {
        "generation_prefill": traced["train · generation"],
        "generation_decode": traced["train · generation"],
        **{name: traced["train · scoring"] for name in kinds},
        "train_micro_batch/sdpa": traced["train · update"],
    }


# -- on the GPU: inputs and checks ---------------------------------------------------------------------
def synthetic_batch(plan: dict[str, Any], rows: int, device: torch.device, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A TRL-style batch of `rows`: left-padded prompts holding one image at the plan's grid, random completions."""
    cfg = plan["config"]
    vision = cfg["vision_config"]
    t, h, w = plan["image_grid_thw"]
    image_tokens = t * h * w // vision["spatial_merge_size"] ** 2
    vocab = cfg["text_config"]["vocab_size"]
    # Ordinary tokens: ids below the special ones (the tiny vocabulary numbers its special tokens first).
    low = 0 if vocab > 100_000 else 16
    high = min(QWEN_TOKEN_IDS["<|endoftext|>"], vocab)
    text = torch.randint(low, high, (rows, plan["prompt_text_tokens"]), generator=generator)
    half = plan["prompt_text_tokens"] // 2
    image = torch.full((rows, image_tokens), cfg["image_token_id"])
    start, end = torch.full((rows, 1), cfg["vision_start_token_id"]), torch.full((rows, 1), cfg["vision_end_token_id"])
    prompt = torch.cat([text[:, :half], start, image, end, text[:, half:]], 1)
    patch_dim = 3 * vision["temporal_patch_size"] * vision["patch_size"] ** 2
    completion = torch.randint(low, high, (rows, plan["completion_tokens"]), generator=generator)
    batch = {
        "prompt_ids": prompt,
        "prompt_mask": torch.ones_like(prompt),
        "text_prompt_ids": text,
        "text_prompt_mask": torch.ones_like(text),
        "completion_ids": completion,
        "completion_mask": torch.ones_like(completion),
        "pixel_values": torch.randn(rows * t * h * w, patch_dim, generator=generator),
        "image_grid_thw": torch.tensor([[t, h, w]] * rows),
    }
    return {k: v.to(device) for k, v in batch.items()}


def with_counterfactual(batch: dict[str, torch.Tensor], kind: str | None, generator: torch.Generator) -> dict[str, torch.Tensor]:
    from tokencredit.counterfactual import PIXEL_PERTURBATIONS, perturb_pixel_values
    from tokencredit.families import PatchLayout

    if kind not in PIXEL_PERTURBATIONS:
        return batch  # drop_image reads text_prompt_*, mask_visual_attention nothing more
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]  # Qwen2-VL's processor
    cpu = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    layout = PatchLayout(patch_size=14)  # Qwen2.5-VL's rows: 14-px patches, 2 x 2 merge, 2 frames
    cf = perturb_pixel_values(kind, batch["pixel_values"].cpu(), batch["image_grid_thw"].cpu(), mean, std, cpu, layout)
    return {**batch, "cf_pixel_values": cf.to(batch["pixel_values"].device)}


def completion_logps(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """log π(o_t) with grad, as TRL's loss forward: logits of the completion positions, upcast one row at a time."""
    n = batch["completion_ids"].shape[1]
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    logits = model(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        pixel_values=batch["pixel_values"],
        image_grid_thw=batch["image_grid_thw"],
        logits_to_keep=n + 1,
        use_cache=False,
    ).logits[:, :-1]
    rows = [row.float().log_softmax(-1).gather(-1, ids[:, None]).squeeze(-1) for row, ids in zip(logits, batch["completion_ids"])]
    return torch.stack(rows)


class Checks:
    """Runs checks one by one, writing every result to `out` as soon as it is known."""

    def __init__(self, plan: dict[str, Any], out: Path, memory_plan: dict[str, float]) -> None:
        self.plan, self.out, self.memory_plan = plan, out, memory_plan
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.results: dict[str, Any] = {"device": _device_name(), "torch": torch.__version__, "plan": plan["params"], "checks": {}}
        self.generator = torch.Generator().manual_seed(0)

    def run(self, name: str, fn: Callable[[], dict[str, Any] | None]) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() if self.device.type == "cuda" else 0
        start = time.perf_counter()
        try:
            extra = fn() or {}
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            result = {"status": "ok", "seconds": round(time.perf_counter() - start, 3), **extra}
        except Exception as error:  # an OOM or a failure is the check's finding: record it and go on
            result = {"status": "failed", "error": f"{type(error).__name__}: {str(error)[:500]}", "trace": traceback.format_exc()[-1500:]}
        if self.device.type == "cuda":
            result["peak_bytes"] = torch.cuda.max_memory_allocated() - before
        planned = self.memory_plan.get(name)
        result["planned_bytes"] = planned
        if planned and result.get("peak_bytes") is not None:
            result["peak_over_plan"] = round(result["peak_bytes"] / planned, 3)
        self.results["checks"][name] = result
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=1))
        tmp.replace(self.out)
        print(name, {k: v for k, v in result.items() if k != "trace"}, flush=True)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def batch(self, rows: int) -> dict[str, torch.Tensor]:
        return synthetic_batch(self.plan, rows, self.device, self.generator)


def new_model(plan: dict[str, Any], dtype: torch.dtype, device: torch.device, attn: str = "sdpa") -> Any:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig.from_dict(plan["config"])
    config._attn_implementation = attn
    torch.manual_seed(0)
    with device:
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    return model


def run_checks(plan: dict[str, Any], out: Path, memory_plan: dict[str, float]) -> dict[str, Any]:
    from tokencredit.signals import score_policy

    c = Checks(plan, out, memory_plan)
    on_gpu = c.device.type == "cuda"
    low = torch.bfloat16 if on_gpu else torch.float32
    model = new_model(plan, low, c.device).eval()
    micro = plan["micro_batch"]

    # Generation: a prefill of the whole chunk at prompt + response length (the KV cache as at the end
    # of generation; only the last position's logits), then decode steps from that cache.
    def generate(new_tokens: int) -> None:
        b = c.batch(plan["generation_rows"])
        ids = torch.cat([b["prompt_ids"], b["completion_ids"]], 1)
        with torch.no_grad():
            model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=b["pixel_values"], image_grid_thw=b["image_grid_thw"],
                max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0,
            )  # fmt: skip

    start = time.perf_counter()
    c.run("generation_prefill", lambda: generate(1))
    prefill = time.perf_counter() - start
    c.run("generation_decode", lambda: {"decode_tokens": DECODE_TOKENS, "prefill_s_included": round(prefill, 3)} | (generate(DECODE_TOKENS + 1) or {}))

    # Scoring: one micro-batch per method kind, as the trainer scores (no grad, micro-batch rows per forward).
    for name, kind in plan["scoring"].items():
        def score(kind=kind) -> dict[str, Any]:
            b = with_counterfactual(c.batch(micro), kind["counterfactual"], c.generator)
            score_policy(
                model, b, needs=set(kind["needs"]), counterfactual=kind["counterfactual"], chunk_size=plan["chunk_size"],
                temperature=plan["temperature"], attention_layers=plan["attention_layers"], batch_size=micro,
            )  # fmt: skip
            return {"methods": kind["methods"], "attention": model.config._attn_implementation}

        c.run(name, score)

    # One micro-batch forward/backward per attention kernel; gradient checkpointing as the pipeline on a GPU.
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for kernel in ("sdpa", "eager"):
        def step(kernel=kernel) -> None:
            model.set_attn_implementation(kernel)
            completion_logps(model, c.batch(micro)).sum().backward()
            model.zero_grad(set_to_none=True)

        c.run(f"train_micro_batch/{kernel}", step)
    model.set_attn_implementation("sdpa")
    c.run("optimizer_step/bf16" if on_gpu else "optimizer_step/fp32", lambda: _optimizer_step(model, c.batch(micro), None))
    del model
    gc.collect()

    if on_gpu:  # fp32 master weights, bf16 compute: gpu20's precision
        master = new_model(plan, torch.float32, c.device)
        master.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        c.run("optimizer_step/fp32_master_bf16_autocast", lambda: _optimizer_step(master.train(), c.batch(micro), torch.bfloat16))
        c.run("scoring_fsdp_autocast", lambda: _fsdp_scoring(master.eval(), c.batch(micro), plan))
    else:
        c.results["checks"]["scoring_fsdp_autocast"] = {"status": "skipped", "why": "needs CUDA (FSDP version 1 with NCCL)"}
        out.write_text(json.dumps(c.results, indent=1))
    return c.results


def _optimizer_step(model: Any, batch: dict[str, torch.Tensor], autocast: torch.dtype | None) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    with torch.autocast(batch["prompt_ids"].device.type, dtype=autocast, enabled=autocast is not None):
        loss = completion_logps(model, batch).sum()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    del optimizer


def _fsdp_scoring(model: Any, batch: dict[str, torch.Tensor], plan: dict[str, Any]) -> dict[str, Any]:
    """Score as the trainer does under FSDP: root parameters summoned, each wrapped layer gathering its own."""
    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLDecoderLayer, Qwen2_5_VLVisionBlock

    from tokencredit.signals import score_policy

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29511")
        dist.init_process_group("nccl", rank=0, world_size=1)
    wrapped = FSDP(model, auto_wrap_policy=ModuleWrapPolicy({Qwen2_5_VLDecoderLayer, Qwen2_5_VLVisionBlock}), use_orig_params=True, device_id=torch.cuda.current_device())
    with FSDP.summon_full_params(wrapped, recurse=False), torch.autocast("cuda", dtype=torch.bfloat16):
        score_policy(wrapped.module, batch, needs={"entropy"}, chunk_size=plan["chunk_size"], temperature=plan["temperature"], batch_size=plan["micro_batch"])
    return {"processes": 1}


def _device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prepare", action="store_true", help="resolve --params into --plan (here, where the whole project is installed)")
    p.add_argument("--params", type=Path, help="params file for --prepare (default: the default params)")
    p.add_argument("--plan", type=Path, help="the plan JSON --prepare writes and the checks read")
    p.add_argument("--tiny", action="store_true", help="the tiny model on CPU: prepare and check in one go")
    p.add_argument("--memory-plan", type=Path, help="JSON {check name: planned peak bytes per device} (benchmarks/memory_plan.py)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "gpu_check.json", help="results JSON, rewritten after every check")
    args = p.parse_args()
    if args.prepare or args.tiny:
        plan = prepare(args.params, args.tiny)
        if args.plan:
            args.plan.write_text(json.dumps(plan, indent=1) + "\n")
        if args.prepare:
            return
    else:
        if args.plan is None:
            raise SystemExit("give --plan FILE (written by --prepare) or --tiny")
        plan = json.loads(args.plan.read_text())
    memory_plan = {**plan.get("memory_plan", {}), **(json.loads(args.memory_plan.read_text()) if args.memory_plan else {})}
    if not memory_plan:
        print("no memory plan: peaks are measured but not compared with a plan (--prepare adds tokencredit.memory_plan's)")
    if not torch.cuda.is_available():
        torch.set_num_threads(1)  # tiny tensors gain nothing from more threads
    results = run_checks(plan, args.out, memory_plan)
    failed = [n for n, r in results["checks"].items() if r["status"] == "failed"]
    print(f"{len(results['checks'])} checks, {len(failed)} failed {failed}; results in {args.out}")


if __name__ == "__main__":
    main()
