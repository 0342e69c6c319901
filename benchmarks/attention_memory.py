"""Peak memory and time of AT-RL's attn_image: recomputed from q and k on sdpa, against eager's weights.

Three scoring forwards of the same batch with the same weights, in one run:
  sdpa                      `score_policy(needs={"entropy"})` on the sdpa kernel: the forward alone;
  sdpa + attn_image (new)   `score_policy(needs={"attn_image"})` on sdpa: each chosen layer's q and k
                            recomputed by a pre-hook, response queries against all keys, chunked;
  eager + weights (old)     the eager kernel, whose [B, heads, L, L] weights a forward hook reduced to
                            the image mass (signals.py before issue 20), which is what attn_image needed.
The attention geometry is Qwen2.5-VL-3B's (hidden 2048, 16 heads on 2 key heads, head dim 128);
`--layers` decoder layers (peaks are per layer, so 2 show them), a small vocabulary and no vision
tower: the image keys are `--image-tokens` image-placeholder tokens embedded as text, which changes
no attention arithmetic. The old and new attn_image are compared (max absolute difference).
Peak memory is the tensor memory a call adds above what was live before it (harness.peak_bytes).

    python benchmarks/attention_memory.py                                   # CPU: 2 rows, 1430 + 512 tokens
    python benchmarks/attention_memory.py --rows 8 --prompt 1430 --completion 2048   # GPU: the 3B params' lengths
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager

import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

import harness
from tokencredit.signals import score_policy

VOCAB, IMAGE, VIDEO, VISION_START, VISION_END, PAD = 1024, 1000, 1001, 1002, 1003, 0


def model_3b_attention(kernel: str, layers: int, dtype: torch.dtype, device: str) -> Qwen2_5_VLForConditionalGeneration:
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=VOCAB, hidden_size=2048, intermediate_size=2048, num_hidden_layers=layers, num_attention_heads=16,
            num_key_value_heads=2, max_position_embeddings=32768, pad_token_id=PAD,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        ),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=2048),
        image_token_id=IMAGE, video_token_id=VIDEO, vision_start_token_id=VISION_START, vision_end_token_id=VISION_END,
    )  # fmt: skip
    config._attn_implementation = kernel
    torch.manual_seed(0)
    with torch.device(device):
        return Qwen2_5_VLForConditionalGeneration(config).to(dtype).eval()


def make_batch(rows: int, prompt: int, completion: int, image_tokens: int, device: str) -> dict[str, torch.Tensor]:
    """Left-padded prompts (row i shorter by 8·i tokens), each with one image block; full completions."""
    g = torch.Generator().manual_seed(0)
    prompt_ids = torch.full((rows, prompt), PAD)
    prompt_mask = torch.zeros(rows, prompt, dtype=torch.long)
    for i in range(rows):
        length = prompt - 8 * i
        text = torch.randint(3, IMAGE, (length,), generator=g)
        text[16 : 18 + image_tokens] = torch.tensor([VISION_START] + [IMAGE] * image_tokens + [VISION_END])
        prompt_ids[i, prompt - length :], prompt_mask[i, prompt - length :] = text, 1
    completion_ids = torch.randint(3, IMAGE, (rows, completion), generator=g)
    batch = {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids, "completion_mask": torch.ones_like(completion_ids)}
    return {k: v.to(device) for k, v in batch.items()}


@contextmanager
def eager_weights_reduced(model, batch):
    """The removed path: a forward hook on the last layer reducing eager's returned weights right away."""
    found = []
    n = batch["completion_ids"].shape[1]
    image_keys = (torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1) == IMAGE).float()

    def hook(module, args, output):
        queries = output[1].detach()[:, :, -n - 1 : -1, :]
        found.append(torch.einsum("bhqk,bk->bq", queries.float(), image_keys) / queries.shape[1])

    handle = model.model.language_model.layers[-1].self_attn.register_forward_hook(hook)
    try:
        yield found
    finally:
        handle.remove()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2)
    p.add_argument("--prompt", type=int, default=1430, help="prompt tokens (the 3B params: ~1430 with a 1 MP image)")
    p.add_argument("--completion", type=int, default=512, help="completion tokens (the 3B params: 2048)")
    p.add_argument("--image-tokens", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--no-record", action="store_true", help="print only; do not append to benchmarks/RESULTS.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    batch = make_batch(args.rows, args.prompt, args.completion, args.image_tokens, device)
    sdpa = model_3b_attention("sdpa", args.layers, dtype, device)
    eager = model_3b_attention("eager", args.layers, dtype, device)
    chunk = harness.ScoringParams().chunk_size

    def new():
        return score_policy(sdpa, batch, {"attn_image"}, attention_layers=[-1], chunk_size=chunk).attn_image

    def old():
        with eager_weights_reduced(eager, batch) as found:
            score_policy(eager, batch, {"entropy"}, chunk_size=chunk)
        return found[0]

    runs = {
        "sdpa (forward only)": lambda: score_policy(sdpa, batch, {"entropy"}, chunk_size=chunk),
        "sdpa + attn_image from q, k (new)": new,
        "eager + weights hook (old)": old,
    }
    rows, results = [], {}
    for name, fn in runs.items():
        fn()  # warm-up
        peak, results[name] = harness.peak_bytes(fn)
        rows.append([name, peak / 2**20, harness.median_seconds(fn, args.repeats)])
    new_peak, old_peak = rows[1][1], rows[2][1]
    difference = (results["sdpa + attn_image from q, k (new)"] - results["eager + weights hook (old)"]).abs().max().item()
    length = args.prompt + args.completion
    settings = (
        f"{args.rows} rows x ({args.prompt} prompt + {args.completion} completion) tokens, {args.image_tokens} image tokens, "
        f"{args.layers} layers of Qwen2.5-VL-3B's attention (16 heads, 2 key heads, head dim 128), {dtype}, "
        f"attn_image of the last layer, query chunk {chunk}; times are medians of {args.repeats} calls. "
        f"Eager's score matrix alone: {args.rows * 16 * length**2 * torch.finfo(dtype).bits / 8 / 2**20:.0f} MiB per layer. "
        f"Peak old / new: {old_peak / new_peak:.2f}; max |new - old| attn_image: {difference:.2e}."
    )
    body = harness.table(["scoring forward", "peak extra MiB", "time s"], rows)
    harness.report("attention_memory", device, settings, body, record=not args.no_record)


if __name__ == "__main__":
    main()
