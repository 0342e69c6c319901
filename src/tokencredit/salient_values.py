"""CFPO's counterfactual `salient_value_mean`: inside every attention layer of the text decoder, the
VALUES of the image tokens a query attends to most are replaced by the image tokens' mean value.
Tokens, positions and pixels stay the real ones; only the attention outputs change.

CFPO (Yu et al., "CFPO: Counterfactual Policy Optimization for Multimodal Reasoning", arXiv 2606.23206).
Follows Raven-July/CFPO at commit 966c6b15c975b78a1581084f0ce566f1c7666ef5,
verl/models/transformers/qwen2_vl_cmve.py: `qwen2_vl_attn_forward` (its apply_cmve branch),
`values_noise_multiply` and `GMM_mask`, in every decoder layer (`qwen2_vl_language_forward_new` hands
apply_cmve to each), with verl/workers/actor/config.py's defaults (thres_mode "high", mean_mode
"image", noise False), which the training scripts keep:
- attention: each layer's own softmax weight a[h, i, j] of query i on key j, per head h (no average
  over heads or layers).
- salient: for each image of a response, the (head, query, image key) entries, over the queries after
  the image, with a > μ + λ·σ, where μ and σ (unbiased) are taken over all those entries above 1e-8
  (their `GMM_mask`). λ = `threshold_std` = 2 (their "low" / "medium" / "high" / "extra" are 0 / 1 /
  2 / 3; the paper's "μ + 2σ outlier criterion"). Not a fixed top fraction: how many entries are
  salient follows the attention's spread. The queries are every position after the image, the
  response included, as their code (the fork reads the paper's App. A as the prompt's text queries).
- mean: one number per head, the mean of the value vectors over every image token of the response AND
  over the head's dimensions (their `values_noise_multiply` sums over dims (2, 3)): a salient value
  becomes the constant vector m_h·1, as theirs.
- output: o_i = Σ_j a_ij v_j + Σ_{salient j} a_ij (m_h − v_j), i.e. the same attention with the salient
  values swapped (their attn_output_ori + attn_output_delta); queries before an image's end and the
  image's own tokens are untouched by it.
One deliberate difference: their default runs padding-free (examples/config.yaml `padding_free: true`,
FlashAttention-2), where the decoder gets no attention mask, so the eager weights of the apply_cmve
branch are softmaxes over every token of the packed micro-batch, later tokens and other responses
included, and the swap reaches other responses' queries. Here the weights are each response's causal
attention (the weights its own forward uses, what the paper describes), statistics per response,
padding left out; on one unpadded response with causal weights the two agree (tests/golden). Weights
and the swap are computed in float32 (theirs in the forward's bf16). The awesome-perception-aware-rlvr
fork (verl/models/transformers/flash_attention_utils.py at 82d24dc
`compute_cross_modal_attention_value_mean_correction`) makes the same choice of causal weights per
response; its queries start one token later than the authors' (after the vision_end token, which
theirs and ours include).

How it runs: while `salient_value_mean(...)` is entered, the attention kernel of the decoder's layers
(sdpa, eager or flash, from transformers' attention interface) is wrapped: the kernel's output plus
`salient_value_delta`, computed from the q, k, v the kernel receives (rotary applied), `chunk_size`
queries at a time; the vision tower and every other model are left alone. No [L, L] matrix is kept:
per response and image, the weights of the queries after it on its tokens ([heads, queries, image
tokens], float32) exist while its layer runs. Families whose decoder attention goes through the
interface work unchanged (Qwen2.5-VL, Qwen3-VL, InternVL3's Qwen2 decoder; Qwen3.5's gate multiplies
the swapped output as it does the real one, its linear-attention layers have no softmax to change).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

THRESHOLD_STD = 2.0  # CFPO's thres_mode "high": salient above μ + 2σ
COUNTED_WEIGHT = 1e-8  # their GMM_mask's statistics count only weights above this

_entered = 0  # how many interventions are active (benchmarks/forward_budget.py sorts forwards by it)


def active() -> bool:
    """Whether a forward running now runs under the intervention."""
    return _entered > 0


def image_spans(image_tokens: Tensor) -> list[tuple[int, int]]:
    """[start, end) of each run of image tokens in one row: one image (Qwen's tokens between vision_start and vision_end)."""
    edges = torch.nn.functional.pad(image_tokens.int(), (1, 1)).diff()
    return list(zip((edges == 1).nonzero().flatten().tolist(), (edges == -1).nonzero().flatten().tolist()))


def salient_value_delta(
    query: Tensor, key: Tensor, value: Tensor, scaling: float, attention_mask: Tensor, image_tokens: Tensor,
    threshold_std: float = THRESHOLD_STD, chunk_size: int = 1024,
) -> Tensor:  # fmt: skip
    """What swapping each query's salient image values for their mean adds to its attention output.

    query [B, H, L, d] and key, value [B, kv, L, d] as the attention kernel gets them (GQA: each key
    head serves its group of query heads, as repeat_kv orders them); attention_mask [B, L] (1: a real
    token); image_tokens [B, L] bool. Returns [B, H, L, d] float32, 0 before each image's end and on
    padded queries. Weights: the causal softmax over the visible keys, in float32.
    """
    batch, kv_heads, length, dim = key.shape
    group = query.shape[1] // kv_heads
    delta = torch.zeros(batch, kv_heads, group, length, dim, dtype=torch.float32, device=query.device)
    positions = torch.arange(length, device=query.device)
    for row in range(batch):
        spans = image_spans(image_tokens[row])
        if not spans:
            continue
        visible = attention_mask[row].bool()
        queries = query[row].float().reshape(kv_heads, group, length, dim)
        keys, values = key[row].float(), value[row].float()
        mean = values[:, image_tokens[row]].mean((1, 2))  # [kv]: over the image tokens and the head's dimensions
        for start, end in spans:
            weights = []
            for first in range(end, length, chunk_size):
                q = queries[:, :, first : first + chunk_size]
                seen = visible & (positions[None, :] <= positions[first : first + q.shape[2], None])  # [chunk, L]
                scores = torch.einsum("kgqd,kld->kgql", q, keys) * scaling
                scores.masked_fill_(~seen, -torch.inf)  # softmax over the visible keys; only the image's columns are kept
                weights.append((scores[..., start:end] - scores.logsumexp(-1, keepdim=True)).exp())
            weights = torch.cat(weights, dim=2)  # [kv, group, queries after the image, image tokens]
            counted = (weights > COUNTED_WEIGHT) & visible[end:].view(1, 1, -1, 1)
            if not counted.any():
                continue
            threshold = weights[counted].mean() + threshold_std * weights[counted].std()
            salient = weights * ((weights > threshold) & counted)
            delta[row, :, :, end:] += torch.einsum("kgqn,knd->kgqd", salient, mean.view(kv_heads, 1, 1) - values[:, start:end])
    return delta.reshape(batch, kv_heads * group, length, dim)


@contextmanager
def salient_value_mean(
    model: Any, input_ids: Tensor, attention_mask: Tensor, threshold_std: float = THRESHOLD_STD, chunk_size: int = 1024
) -> Iterator[None]:
    """The forward of `input_ids` (with `attention_mask` [B, L]) that runs inside does so with the salient
    image values of every decoder attention layer swapped for their mean (module docstring)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from tokencredit.signals import _decoder_layers  # not at the top: signals imports this module through counterfactual

    global _entered
    layers = {layer.self_attn for layer in _decoder_layers(model) if hasattr(layer, "self_attn")}
    image_tokens = input_ids == model.config.image_token_id

    def swapped(kernel: str):
        registered = ALL_ATTENTION_FUNCTIONS[kernel] if kernel in ALL_ATTENTION_FUNCTIONS else None

        def attention(module: Any, query: Tensor, key: Tensor, value: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Any]:
            original = registered or sys.modules[type(module).__module__].eager_attention_forward
            out, weights = original(module, query, key, value, *args, **kwargs)
            if module not in layers:  # the vision tower's blocks share the kernel
                return out, weights
            if query.shape[0] != input_ids.shape[0] or query.shape[2] != input_ids.shape[1]:
                raise ValueError(f"salient_value_mean was entered for inputs {tuple(input_ids.shape)}, a layer got queries {tuple(query.shape)}")
            scaling = kwargs.get("scaling") or module.scaling
            with torch.autocast(query.device.type, enabled=False):
                delta = salient_value_delta(
                    query, key, value, scaling, attention_mask.to(query.device), image_tokens.to(query.device), threshold_std, chunk_size
                )
            return out + delta.transpose(1, 2).to(out.dtype), weights  # kernels return [B, L, H, d]

        return attention

    kernels = {module.config._attn_implementation for module in layers}
    saved = {kernel: ALL_ATTENTION_FUNCTIONS._local_mapping.get(kernel) for kernel in kernels}
    for kernel in kernels:
        ALL_ATTENTION_FUNCTIONS[kernel] = swapped(kernel)
    _entered += 1
    try:
        yield
    finally:
        _entered -= 1
        for kernel, before in saved.items():
            if before is None:
                del ALL_ATTENTION_FUNCTIONS[kernel]
            else:
                ALL_ATTENTION_FUNCTIONS[kernel] = before
