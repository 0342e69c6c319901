"""Per-token signals of METHODS.md §1, scored with the rollout policy once per generation batch.

Three layers, from the bottom:
- `TokenSignals`: the [B, T] tensors that weighting methods read, one row per response.
- chunked vocabulary math (`token_logp_and_entropy`, `exact_kl`): log-probs, entropy and exact KL
  from final hidden states and the lm_head weight, `chunk_size` token positions at a time, so no
  float32 [B, T, V] tensor ever exists.
- `score_policy`: one forward with the image (logp, entropy, attention to the image, hidden-state
  similarity to the image) and at most one counterfactual forward (logp_cf, and vis_kl, vis_jsd,
  entropy_cf when asked), under no_grad.

Position convention: every signal of token t comes from the position that predicts o_t (the
hidden state of the token before it), as in the policy loss; except hidden_sim and
hidden_sim_last, which read token t's own hidden state, as PEPO's and VGPO's code do.

Signals of the zoo methods (issue 22):
- `vis_jsd`: JSD(p || p_cf) over the vocabulary, VEPO's (log of the midpoint with +1e-8, as its code).
- `entropy_cf`: full-vocabulary entropy under the counterfactual input (VEPO's H_noisy).
- `hidden_sim` (PEPO): cosine of token t's hidden state with each image token's, averaged over the
  image tokens and over every hidden state the model outputs (the embeddings, each decoder layer,
  the final norm: HF's output_hidden_states), read by hooks one layer at a time.
- `hidden_sim_last` (VGPO): cosine of token t's final (normed) hidden state with the mean of the
  image tokens' final hidden states. Both are 0 in a row without image tokens.
- `entropy_top_p` (ToR's Eq. 5 as the fork reads it): the entropy of the top-p set, the fewest most
  probable tokens whose probability reaches `top_p` (what top-p sampling draws from), renormalised
  over the set (`renormalize_top_p`, the fork's choice) or the set's terms -Σ p log p as they are.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tokencredit.counterfactual import COUNTERFACTUALS, counterfactual_inputs, real_inputs
from tokencredit.families import family_of

SIGNALS = (
    "entropy", "logp", "logp_cf", "vis_k3", "vis_kl", "vis_absdiff", "attn_image", "role", "on_target",
    "vis_jsd", "entropy_cf", "hidden_sim", "hidden_sim_last", "entropy_top_p",
)  # fmt: skip
COUNTERFACTUAL_SIGNALS = frozenset({"logp_cf", "vis_k3", "vis_kl", "vis_absdiff", "vis_jsd", "entropy_cf"})
HIDDEN_SIGNALS = frozenset({"hidden_sim", "hidden_sim_last"})
# Read from the data's ground truth, not scored by a policy: `role` is the index in synthetic.ROLES
# of each sampled token's role (the oracle_roles control; only the synthetic task labels roles);
# `on_target` is 1 on the tokens before the response first leaves its example's target text (the
# oracle_first_error control; only the synthetic task has one correct response per example).
LABEL_SIGNALS = frozenset({"role", "on_target"})


class MissingSignalError(ValueError):
    """A weighting method asked for a signal that was not scored."""


@dataclass
class TokenSignals:
    """Signals of one batch of responses: `mask` [B, T] bool plus optional [B, T] float tensors.

    Every present signal is 0 on padding (mask False).
    """

    mask: Tensor
    entropy: Tensor | None = None
    logp: Tensor | None = None
    logp_cf: Tensor | None = None
    vis_k3: Tensor | None = None
    vis_kl: Tensor | None = None
    vis_absdiff: Tensor | None = None
    attn_image: Tensor | None = None
    role: Tensor | None = None
    on_target: Tensor | None = None
    vis_jsd: Tensor | None = None
    entropy_cf: Tensor | None = None
    hidden_sim: Tensor | None = None
    hidden_sim_last: Tensor | None = None
    entropy_top_p: Tensor | None = None

    def __post_init__(self) -> None:
        if self.mask.dtype != torch.bool or self.mask.dim() != 2:
            raise ValueError(f"TokenSignals.mask must be a [B, T] bool tensor, got {self.mask.dtype} {tuple(self.mask.shape)}")
        for name in self.available():
            value = getattr(self, name)
            if value.shape != self.mask.shape:
                raise ValueError(f"TokenSignals.{name} has shape {tuple(value.shape)}, mask has {tuple(self.mask.shape)}")

    def available(self) -> list[str]:
        return [f.name for f in fields(self) if f.name != "mask" and getattr(self, f.name) is not None]

    def require(self, name: str) -> Tensor:
        if name not in SIGNALS:
            raise ValueError(f"unknown signal {name!r}; signals are {list(SIGNALS)}")
        value = getattr(self, name)
        if value is None:
            raise MissingSignalError(
                f"signal {name!r} is missing (scored: {self.available()}); score it with score_policy(needs={{{name!r}, ...}})"
            )
        return value

    @classmethod
    def from_logps(cls, mask: Tensor, logp: Tensor, logp_cf: Tensor | None = None, **signals: Tensor) -> TokenSignals:
        """Build signals, deriving vis_k3 and vis_absdiff from logp and logp_cf when logp_cf is given."""
        if logp_cf is not None:
            signals["vis_k3"] = k3(logp, logp_cf).masked_fill(~mask, 0.0)
            signals["vis_absdiff"] = (logp - logp_cf).abs().masked_fill(~mask, 0.0)
        return cls(mask=mask, logp=logp, logp_cf=logp_cf, **signals)


def k3(logp: Tensor, logp_cf: Tensor) -> Tensor:
    """Sampled-token KL(pi(.|I) || pi(.|I')) estimate, clamped as in VPPO's code (low_var_kl).

    e^d - d - 1 ~ d^2 / 2 cancels catastrophically for small d: in float32 it is exactly 0 for
    |d| < 1e-4 and off by up to 240 % below 1e-3, which would move VPPO's top-k and PGPO's min-max.
    So it is expm1(d) - d in float64 (relative error ~1e-8 down to |d| ~ 1e-8), returned as float32.
    """
    d = (logp_cf.double() - logp.double()).clamp(-20.0, 20.0)
    return (torch.expm1(d) - d).clamp(0.0, 10.0).float()


def _log_probs(hidden: Tensor, weight: Tensor, temperature: float) -> Tensor:
    logits = hidden.to(weight.dtype) @ weight.T
    return torch.log_softmax(logits.float() / temperature, dim=-1)


def token_logp_and_entropy(
    hidden: Tensor, lm_head_weight: Tensor, target_ids: Tensor, temperature: float = 1.0, chunk_size: int = 1024
) -> tuple[Tensor, Tensor]:
    """log pi(target) and full-vocabulary entropy per row of `hidden` [N, H], chunk_size rows at a time."""
    logps, entropies = [hidden.new_zeros(0, dtype=torch.float32)], [hidden.new_zeros(0, dtype=torch.float32)]
    for start in range(0, hidden.shape[0], chunk_size):
        lp = _log_probs(hidden[start : start + chunk_size], lm_head_weight, temperature)
        logps.append(lp.gather(-1, target_ids[start : start + chunk_size, None]).squeeze(-1))
        entropies.append(-(lp.exp() * lp).sum(-1))
    return torch.cat(logps), torch.cat(entropies)


def exact_kl(
    hidden_p: Tensor, hidden_q: Tensor, lm_head_weight: Tensor, temperature: float = 1.0, chunk_size: int = 1024
) -> Tensor:
    """KL(p || q) over the vocabulary per row, p and q given by hidden states [N, H]."""
    kls = [hidden_p.new_zeros(0, dtype=torch.float32)]
    for start in range(0, hidden_p.shape[0], chunk_size):
        lp = _log_probs(hidden_p[start : start + chunk_size], lm_head_weight, temperature)
        lq = _log_probs(hidden_q[start : start + chunk_size], lm_head_weight, temperature)
        kls.append((lp.exp() * (lp - lq)).sum(-1).clamp(min=0.0))  # clamp: rounding can dip below 0
    return torch.cat(kls)


def jsd_and_entropy_cf(
    hidden_p: Tensor, hidden_q: Tensor, lm_head_weight: Tensor, temperature: float = 1.0, chunk_size: int = 1024
) -> tuple[Tensor, Tensor]:
    """JSD(p || q) and the entropy of q per row, p and q given by hidden states [N, H] (VEPO's
    `compute_jsd_and_entropy_from_logits`, Leonnnnnn929/VEPO verl/utils/jsd_masking.py), chunked."""
    jsds, entropies = [hidden_p.new_zeros(0, dtype=torch.float32)], [hidden_p.new_zeros(0, dtype=torch.float32)]
    for start in range(0, hidden_p.shape[0], chunk_size):
        lp = _log_probs(hidden_p[start : start + chunk_size], lm_head_weight, temperature)
        lq = _log_probs(hidden_q[start : start + chunk_size], lm_head_weight, temperature)
        p, q = lp.exp(), lq.exp()
        log_m = torch.log(0.5 * (p + q) + 1e-8)
        jsds.append((0.5 * (p * (lp - log_m)).sum(-1) + 0.5 * (q * (lq - log_m)).sum(-1)).clamp(min=0.0))
        entropies.append(-(q * lq).sum(-1))
    return torch.cat(jsds), torch.cat(entropies)


def top_p_entropy(
    hidden: Tensor, lm_head_weight: Tensor, top_p: float, renormalize: bool = True, temperature: float = 1.0, chunk_size: int = 1024
) -> Tensor:
    """Entropy of each row's top-p set (module docstring), chunk_size rows at a time."""
    entropies = [hidden.new_zeros(0, dtype=torch.float32)]
    for start in range(0, hidden.shape[0], chunk_size):
        lp = _log_probs(hidden[start : start + chunk_size], lm_head_weight, temperature).sort(dim=-1, descending=True).values
        p = lp.exp()
        kept = (p.cumsum(-1) - p) < top_p  # the mass of the more probable tokens is still short of top_p
        if renormalize:
            lp = lp - torch.logsumexp(lp.masked_fill(~kept, -torch.inf), dim=-1, keepdim=True)
        entropies.append(-(lp.exp() * lp * kept).sum(-1))
    return torch.cat(entropies)


def image_similarity(hidden: Tensor, image_tokens: Tensor, n_completion: int) -> tuple[Tensor, Tensor]:
    """For hidden states [B, L, H] and the image-token mask [B, L]: per completion token [B, T], its
    mean cosine with the image tokens (PEPO's score of one layer) and its cosine with the image
    tokens' mean state (VGPO's). 0 in rows without image tokens."""
    h = hidden.float()
    gen = h[:, -n_completion:]
    weights = image_tokens.float() / image_tokens.sum(1, keepdim=True).clamp(min=1)
    mean_unit = torch.einsum("blh,bl->bh", F.normalize(h, dim=-1), weights)
    mean_state = torch.einsum("blh,bl->bh", h, weights)
    mean_cosine = (F.normalize(gen, dim=-1) * mean_unit[:, None]).sum(-1)
    cosine_of_mean = F.cosine_similarity(gen, mean_state[:, None].expand_as(gen), dim=-1)
    return mean_cosine, cosine_of_mean


@contextmanager
def _hidden_similarity(model: Any, image_tokens: Tensor, n_completion: int) -> Iterator[dict[str, Tensor]]:
    """Hooks that reduce every hidden state of the forward run inside (the input of each decoder
    layer, then the final norm's output: HF's output_hidden_states) to image_similarity right away,
    so no layer's states are kept; `found` holds hidden_sim and hidden_sim_last once it has run."""
    backbone = getattr(model.model, "language_model", model.model)
    per_state: list[tuple[Tensor, Tensor]] = []

    def reduce(hidden: Tensor) -> None:
        per_state.append(image_similarity(hidden.detach(), image_tokens, n_completion))

    def before_layer(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        reduce(args[0] if args else kwargs["hidden_states"])

    def after_norm(module: torch.nn.Module, args: tuple, output: Tensor) -> None:
        reduce(output)

    handles = [layer.register_forward_pre_hook(before_layer, with_kwargs=True) for layer in backbone.layers]
    handles.append(backbone.norm.register_forward_hook(after_norm))
    found: dict[str, Tensor] = {}
    try:
        yield found
        found["hidden_sim"] = sum(mean for mean, _ in per_state) / len(per_state)
        found["hidden_sim_last"] = per_state[-1][1]
    finally:
        for handle in handles:
            handle.remove()


def _decoder_layers(model: Any) -> Sequence[torch.nn.Module]:
    backbone = model.model
    return getattr(backbone, "language_model", backbone).layers


def _resolve_layers(model: Any, attention_layers: Iterable[int]) -> list[int]:
    decoder = _decoder_layers(model)
    n = len(decoder)
    layers = []
    for i in attention_layers:
        if not -n <= i < n:
            raise ValueError(f"scoring.attention_layers: layer {i} is out of range for a model with {n} decoder layers")
        if not hasattr(decoder[i], "self_attn"):
            raise ValueError(f"scoring.attention_layers: layer {i} has no softmax attention (a linear-attention layer)")
        if i % n not in layers:
            layers.append(i % n)
    if not layers:
        raise ValueError("scoring.attention_layers is empty; attn_image needs at least one layer")
    return layers


def _queries_and_keys(attention: torch.nn.Module, hidden: Tensor, position_embeddings: tuple[Tensor, Tensor], n_queries: int) -> tuple[Tensor, Tensor]:
    """The layer's queries [B, heads, n, d] at the positions predicting the completion and its keys
    [B, kv_heads, L, d] at every position, as its forward computes them: its own projections, its
    per-head q/k norms if it has them (Qwen3), and its module's rotary embedding."""
    rotary = sys.modules[type(attention).__module__].apply_rotary_pos_emb
    cos, sin = position_embeddings

    def heads(project: torch.nn.Module, norm: torch.nn.Module | None, x: Tensor, width: int) -> Tensor:
        states = project(x).view(*x.shape[:2], -1, width)[..., : attention.head_dim]
        return (states if norm is None else norm(states)).transpose(1, 2)

    # Qwen3.5's gated attention: q_proj gives each head its query, then its output gate.
    gated = attention.q_proj.out_features == 2 * attention.config.num_attention_heads * attention.head_dim
    query_width = attention.head_dim * (2 if gated else 1)
    queries = heads(attention.q_proj, getattr(attention, "q_norm", None), hidden[:, -n_queries - 1 : -1], query_width)
    keys = heads(attention.k_proj, getattr(attention, "k_norm", None), hidden, attention.head_dim)
    span = slice(-n_queries - 1, -1)
    queries = rotary(queries, queries, cos[..., span, :], sin[..., span, :])[0]
    return queries, rotary(keys, keys, cos, sin)[0]


def image_attention_mass(queries: Tensor, keys: Tensor, scaling: float, attention_mask: Tensor, image_keys: Tensor, chunk_size: int) -> Tensor:
    """Softmax attention mass [B, n] on the image keys of the last n queries (those predicting the
    completion), averaged over heads; float32, without any [L, L] matrix.

    The mass of query i is exp(LSE_i(image keys) - LSE_i(all keys)) over the keys it may see
    (causal, not padding), which is what eager attention's softmax row sums to over the image keys.
    Rows one at a time, `chunk_size` queries at a time: at most heads x chunk_size x L scores exist.
    GQA: each key head serves its group of query heads, without repeating the keys.
    """
    batch, kv_heads, length, dim = keys.shape
    n = queries.shape[2]
    queries = queries.reshape(batch, kv_heads, -1, n, dim)  # [B, kv, group, n, d]: heads grouped as repeat_kv does
    positions = torch.arange(length, device=keys.device)
    rows = []
    for row in range(batch):
        visible = attention_mask[row].bool()
        masses = []
        for start in range(0, n, chunk_size):
            q = queries[row, :, :, start : start + chunk_size].float()
            scores = torch.einsum("kgqd,kld->kgql", q, keys[row].float()) * scaling
            query_positions = positions[length - n - 1 + start : length - 1][: q.shape[2]]
            seen = visible & (positions[None, :] <= query_positions[:, None])  # [chunk, L]
            scores.masked_fill_(~seen, -torch.inf)
            image = scores[..., image_keys[row].bool()].logsumexp(-1)  # -inf without image keys: mass 0
            masses.append((image - scores.logsumexp(-1)).exp().mean((0, 1)))
        rows.append(torch.cat(masses))
    return torch.stack(rows)


@contextmanager
def _image_attention(
    model: Any, layers: list[int], input_ids: Tensor, attention_mask: Tensor, n_completion: int, chunk_size: int
) -> Iterator[list[Tensor]]:
    """Pre-hooks on the chosen self-attention modules; once the forward inside has run, one [B, T]
    image mass per layer (rows of forwards run in row chunks are joined in order).

    Any attention kernel: the hook recomputes the layer's q and k from the layer's inputs and
    reduces them right away (image_attention_mass), so no attention matrix is ever returned or kept.
    """
    image_keys = input_ids == model.config.image_token_id
    per_layer: dict[int, list[Tensor]] = {i: [] for i in layers}
    all_layers = _decoder_layers(model)

    def hook_for(index: int):
        def hook(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            done = sum(len(part) for part in per_layer[index])
            rows = slice(done, done + hidden.shape[0])
            with torch.no_grad():
                # Projections as the layer computes them (under its autocast, if any); the softmax in float32.
                queries, keys = _queries_and_keys(module, hidden.detach(), kwargs["position_embeddings"], n_completion)
                scaling = getattr(module, "scaling", module.head_dim**-0.5)
                mask, image = attention_mask[rows].to(hidden.device), image_keys[rows].to(hidden.device)
                with torch.autocast(hidden.device.type, enabled=False):
                    per_layer[index].append(image_attention_mass(queries, keys, scaling, mask, image, chunk_size))

        return hook

    for i in layers:
        if getattr(all_layers[i].self_attn, "sliding_window", None) is not None:
            raise ValueError(f"scoring.attention_layers: layer {i} uses sliding-window attention, which attn_image does not model")
    handles = [all_layers[i].self_attn.register_forward_pre_hook(hook_for(i), with_kwargs=True) for i in layers]
    found: list[Tensor] = []
    try:
        yield found
        found.extend(torch.cat(parts) for parts in per_layer.values())
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def image_attention_of(
    model: Any, input_ids: Tensor, attention_mask: Tensor, n_completion: int, attention_layers: Iterable[int], chunk_size: int = 1024
) -> Iterator[list[Tensor]]:
    """attn_image [B, T] of the forward of `input_ids` (prompt + completion) that runs inside, found[0]
    once it has run: for a forward someone else runs (the training loss), read without a gradient."""
    layers = _resolve_layers(model, attention_layers)
    with _image_attention(model, layers, input_ids, attention_mask, n_completion, chunk_size) as per_layer:
        found: list[Tensor] = []
        yield found
    found.append(sum(per_layer) / len(per_layer))


def _completion_hidden(model: Any, inputs: dict[str, Any], n_completion: int) -> Tensor:
    """Final hidden states [B, T, H] at the positions that predict the completion tokens."""
    out = model.model(**inputs, use_cache=False)
    return out.last_hidden_state[:, -n_completion - 1 : -1]


_ROW_KEYS = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "text_prompt_ids", "text_prompt_mask")
_PIXEL_KEYS = ("pixel_values", "cf_pixel_values")


def _row_batches(model: Any, batch: dict[str, Any], batch_size: int | None) -> Iterator[dict[str, Any]]:
    """Split a batch into groups of rows; pixel rows and grid rows follow the images of each response."""
    n_rows = batch["completion_ids"].shape[0]
    if batch_size is None or batch_size >= n_rows:
        yield batch
        return
    has_images = batch.get("pixel_values") is not None
    if has_images:  # the family knows which pixel rows each response's image tokens read (InternVL: no grid)
        images, pixels = family_of(model.config).image_offsets(model.config, batch)
    for start in range(0, n_rows, batch_size):
        end = min(start + batch_size, n_rows)
        part = {k: batch[k][start:end] for k in _ROW_KEYS if k in batch}
        if has_images:
            if batch.get("image_grid_thw") is not None:
                part["image_grid_thw"] = batch["image_grid_thw"][images[start] : images[end]]
            for k in _PIXEL_KEYS:
                if k in batch:
                    part[k] = batch[k][pixels[start] : pixels[end]]
        yield part


def _score_rows(
    model: Any,
    batch: dict[str, Any],
    needs: set[str],
    counterfactual: str | None,
    chunk_size: int,
    temperature: float,
    layers: list[int] | None,
    top_p: tuple[float, bool],
) -> dict[str, Tensor]:
    completion_ids = batch["completion_ids"]
    mask = batch["completion_mask"].bool()
    n_completion = completion_ids.shape[1]
    weight = model.get_output_embeddings().weight  # the tied embedding when weights are tied

    def scatter(values: Tensor) -> Tensor:
        full = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        full[mask] = values.to(full.device)
        return full

    inputs = real_inputs(model, batch)
    if layers is not None:
        recorder = _image_attention(model, layers, inputs["input_ids"], inputs["attention_mask"], n_completion, chunk_size)
    else:
        recorder = nullcontext([])
    image_tokens = inputs["input_ids"] == model.config.image_token_id
    similarity = _hidden_similarity(model, image_tokens, n_completion) if needs & HIDDEN_SIGNALS else nullcontext({})
    with recorder as found, similarity as similar:
        hidden = _completion_hidden(model, inputs, n_completion)[mask]
    targets = completion_ids[mask].to(hidden.device)
    logp, entropy = token_logp_and_entropy(hidden, weight, targets, temperature, chunk_size)
    out = {"logp": scatter(logp), "entropy": scatter(entropy)}
    if "entropy_top_p" in needs:
        out["entropy_top_p"] = scatter(top_p_entropy(hidden, weight, top_p[0], top_p[1], temperature, chunk_size))
    if layers is not None:
        out["attn_image"] = (sum(found) / len(found)).masked_fill(~mask, 0.0)
    out |= {name: value.masked_fill(~mask, 0.0) for name, value in similar.items()}
    if counterfactual is not None:
        hidden_cf = _completion_hidden(model, counterfactual_inputs(model, batch, counterfactual), n_completion)[mask]
        out["logp_cf"] = scatter(token_logp_and_entropy(hidden_cf, weight, targets, temperature, chunk_size)[0])
        if "vis_kl" in needs:
            out["vis_kl"] = scatter(exact_kl(hidden, hidden_cf, weight, temperature, chunk_size))
        if needs & {"vis_jsd", "entropy_cf"}:
            jsd, entropy_cf = jsd_and_entropy_cf(hidden, hidden_cf, weight, temperature, chunk_size)
            out["vis_jsd"], out["entropy_cf"] = scatter(jsd), scatter(entropy_cf)
    return out


@torch.no_grad()
def score_policy(
    model: Any,
    batch: dict[str, Any],
    needs: Iterable[str],
    counterfactual: str | None = None,
    chunk_size: int = 1024,
    temperature: float = 1.0,
    attention_layers: Iterable[int] = (-1,),
    batch_size: int | None = None,
    entropy_top_p: float = 0.95,
    renormalize_top_p: bool = True,
) -> TokenSignals:
    """Score every completion token of a TRL GRPO batch with `model` (a VLM of any family).

    `batch` holds prompt_ids/prompt_mask [B, P] (left padded), completion_ids/completion_mask
    [B, T], pixel_values and image_grid_thw, plus text_prompt_ids/text_prompt_mask for
    `drop_image` and cf_pixel_values for image perturbations (see tokencredit.counterfactual).
    Always returns logp and entropy; attn_image, hidden_sim and hidden_sim_last when needed;
    logp_cf, vis_k3 and vis_absdiff when any counterfactual signal is needed (one extra forward),
    vis_kl and vis_jsd with entropy_cf only when needed.
    `batch_size` rows go through the model at a time (None: all at once). `entropy_top_p` and
    `renormalize_top_p` define the entropy_top_p signal.
    """
    needs = set(needs)
    unknown = needs - set(SIGNALS)
    if unknown:
        raise ValueError(f"unknown signals {sorted(unknown)}; signals are {list(SIGNALS)}")
    if needs & LABEL_SIGNALS:
        raise ValueError(f"signals {sorted(needs & LABEL_SIGNALS)} come from the data's labels, not from a policy: score_policy cannot score them")
    if needs & COUNTERFACTUAL_SIGNALS:
        if counterfactual not in COUNTERFACTUALS:
            raise ValueError(
                f"signals {sorted(needs & COUNTERFACTUAL_SIGNALS)} need a counterfactual, one of {list(COUNTERFACTUALS)}; got {counterfactual!r}"
            )
    else:
        counterfactual = None
    layers = None
    if "attn_image" in needs:
        layers = _resolve_layers(model, attention_layers)
    parts = [
        _score_rows(model, part, needs, counterfactual, chunk_size, temperature, layers, (entropy_top_p, renormalize_top_p))
        for part in _row_batches(model, batch, batch_size)
    ]
    merged = {name: torch.cat([p[name] for p in parts]) for name in parts[0]}
    return TokenSignals.from_logps(mask=batch["completion_mask"].bool(), **merged)
