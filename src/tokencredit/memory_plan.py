"""Peak GPU memory of every GPU job, planned on CPU before a GPU is paid for.

The activations of each job's forwards are TRACED, not guessed: the real model class is built
from the real config (no download, no weights) under torch's FakeTensorMode, and the job's work
runs on fake tensors, so every intermediate tensor exists with its shape and dtype but no
storage; torch's MemTracker (torch.distributed._tools) replays their lifetimes and reports the
peak. What a trace cannot see is counted from the model's exact parameter count: weights,
gradients and optimizer states as the chosen engine shards them.

Per job and device:
  generation   weights or training states + prefill of one `generation_chunk` of rows (traced)
               + their KV cache at prompt + completion length (from the traced prefill's cache,
               scaled to the full length)
  scoring      the same resident bytes + one no-grad forward of a scoring micro-batch and the
               log-probs/entropy of its completion (traced); a counterfactual forward runs after
               the real one, so it adds time, not peak
  update       training states + one micro-batch forward and backward with gradient
               checkpointing, TRL's log-softmax and entropy on the completion (traced)

Every method's peak is bounded by these operations: what a method adds over uniform is no-grad
forwards of a scoring or training micro-batch, run one after another (the counterfactual, DVRP's
noised view; benchmarks/forward_budget.py counts them), or per-layer reductions of hidden states
(PEPO's similarity keeps no layer's states); no auxiliary loss keeps a second graph alive.
VAPO's claim probes are no-grad forwards of a training micro-batch of rows, each the prompt and a prefix
of its response, with one logit kept: below the scoring forward's peak.
CFPO's counterfactual forward (salient_values.py) adds, one layer, response and image at a time,
float32 weights [heads, queries after the image, image tokens] and one chunk of scores [heads,
chunk_size, sequence]: about 0.2 + 0.2 GB at the 3B params' lengths (16 heads, 2,150 x 1,280 and
1,024 x 3,400), not traced.

Assumptions, each a choice documented here:
- The attention kernel is flash or memory-efficient (sdpa on a GPU without an explicit full mask):
  the trace stands in an attention that allocates its output only, never the [L, L] scores.
  No job reads attention weights through the kernel (AT-RL computes its signal from q and k).
- Gradients are freed as soon as they are accumulated under FSDP and ZeRO (reduce-scattered to
  their shard); DDP and one process keep every gradient (counted in the states).
- Training keeps fp32 master weights and fp32 AdamW moments; forwards compute in bf16. With
  train.lora only the adapter (fp32, as peft creates it) has gradients and moments; the frozen
  base stays in its dtype. With train.beta > 0 and no LoRA, TRL holds a reference model.
- The vision tower's index arithmetic (windows, rope positions, position-embedding interpolation)
  runs on real tensors before the trace: it is data-dependent, and tiny.
- Qwen3-VL's DeepStack: k vision blocks feed k decoder layers. Traces at reduced depth tap the
  first k blocks: where a tap sits changes when its features are made, not how many are alive
  at the peak (the decoder's, or the update's, when all k are).
"""

from __future__ import annotations

import copy
import gc
import json
import math
import types
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

GiB = 2**30
PLANNED_ATTENTION = "flash_memory_plan"  # "flash" in the name: the models take their flash path (no full mask)

# The public config.json of each reference checkpoint (Hugging Face Qwen/Qwen2.5-VL-3B-Instruct,
# Qwen/Qwen2.5-VL-7B-Instruct, Qwen/Qwen3-VL-4B-Instruct and Qwen/Qwen3-VL-8B-Instruct, as transformers 5
# reads them): the planner builds the real architecture from them when model.path is not on this machine.
# Each family's sizes share its vision tower's kind and the token ids.
_TOKEN_IDS = {"image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652, "vision_end_token_id": 151653}


def _qwen2_5_vl(tied: bool, vocab: int, hidden: int, mlp: int, layers: int, heads: int, kv_heads: int) -> dict[str, Any]:
    return {
        "model_type": "qwen2_5_vl",
        "tie_word_embeddings": tied,
        **_TOKEN_IDS,
        "text_config": {
            "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": mlp, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv_heads, "max_position_embeddings": 128000, "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
            "tie_word_embeddings": tied,
        },
        "vision_config": {
            "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": hidden,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
        },
    }  # fmt: skip


def _qwen3_vl(tied: bool, hidden: int, mlp: int, vision: tuple[int, int, int], taps: list[int]) -> dict[str, Any]:
    """Qwen3-VL's config.json, read from copies in public code (nothing downloaded): the 4B's whole file
    (transformers_version 4.57.0.dev0) as a DiffSynth Wan text encoder builds its Qwen3VLConfig; the 8B's
    text and vision sizes in the Cosmos-Reason2-8B backbone config (a Qwen3-VL-8B fine-tune, copied from
    huggingface.co/nvidia/Cosmos-Reason2-8B/raw/main/config.json) and in Qwen-Image-2.1's text-encoder
    config; all agree with write-ups citing huggingface.co/Qwen/Qwen3-VL-{4B,8B}-Instruct/blob/main/config.json.
    Both: 36 decoder layers of 32 query and 8 KV heads of 128, a 16-px vision tower of 16 heads."""
    depth, width, vision_mlp = vision
    return {
        "model_type": "qwen3_vl",
        "tie_word_embeddings": tied,
        **_TOKEN_IDS,
        "text_config": {
            "vocab_size": 151936, "hidden_size": hidden, "intermediate_size": mlp, "num_hidden_layers": 36,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 262144,
            "rms_norm_eps": 1e-6, "hidden_act": "silu", "attention_bias": False, "tie_word_embeddings": tied,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [24, 20, 20], "mrope_interleaved": True},
        },
        "vision_config": {
            "depth": depth, "hidden_size": width, "intermediate_size": vision_mlp, "num_heads": 16, "out_hidden_size": hidden,
            "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3, "hidden_act": "gelu_pytorch_tanh",
            "num_position_embeddings": 2304, "deepstack_visual_indexes": taps,
        },
    }  # fmt: skip


ARCHITECTURES: dict[str, dict[str, Any]] = {
    "qwen2_5_vl_3b": _qwen2_5_vl(tied=True, vocab=151936, hidden=2048, mlp=11008, layers=36, heads=16, kv_heads=2),
    "qwen2_5_vl_7b": _qwen2_5_vl(tied=False, vocab=152064, hidden=3584, mlp=18944, layers=28, heads=28, kv_heads=4),
    "qwen3_vl_4b": _qwen3_vl(tied=True, hidden=2560, mlp=9728, vision=(24, 1024, 4096), taps=[5, 11, 17]),
    "qwen3_vl_8b": _qwen3_vl(tied=False, hidden=4096, mlp=12288, vision=(27, 1152, 4304), taps=[8, 16, 24]),
}


def architecture(name_or_dir: str | Path):
    """A model's config: a name in ARCHITECTURES, or a checkpoint directory holding config.json."""
    from transformers import CONFIG_MAPPING

    path = Path(name_or_dir) / "config.json"
    if path.is_file():
        raw = json.loads(path.read_text())
    elif str(name_or_dir) in ARCHITECTURES:
        raw = ARCHITECTURES[str(name_or_dir)]
    else:
        raise FileNotFoundError(f"no config.json in {name_or_dir}, and it names none of {sorted(ARCHITECTURES)}")
    return CONFIG_MAPPING[raw["model_type"]](**{k: v for k, v in raw.items() if k not in ("model_type", "architectures")})


@dataclass(frozen=True)
class Shape:
    """The rows of one forward and their lengths; every row holds `images` images of `pixels` pixels."""

    rows: int
    prompt_text: int  # prompt tokens besides the image tokens
    completion: int
    pixels: int
    images: int = 1


# -- the fake model -------------------------------------------------------------------------------------
def _planned_attention(module, query, key, value, attention_mask=None, **kwargs):
    """What a flash / memory-efficient kernel allocates: its output [B, L, H, D] (and per-row statistics)."""
    batch, heads, length, _ = query.shape
    out = query.new_empty(batch, length, heads, value.shape[-1])
    query.new_empty(batch, heads, length, dtype=torch.float32)  # the kernel's log-sum-exp, freed at once
    return out, None


def _register_planned_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(PLANNED_ATTENTION, _planned_attention)
    AttentionMaskInterface.register(PLANNED_ATTENTION, lambda *args, **kwargs: None)


class PlanModel:
    """A model of the config's class in `dtype`: fake (parameters without memory) to plan, real to measure.

    With `lora` (params.LoraParams) peft wraps it as training does: the base frozen in `dtype`, the
    adapter trainable (in fp32: peft's autocast_adapter_dtype).
    """

    def __init__(self, config, dtype: torch.dtype = torch.bfloat16, fake: bool = True, seed: int = 0, lora=None) -> None:
        from torch._subclasses.fake_tensor import FakeTensorMode
        from transformers import AutoModelForImageTextToText

        from tokencredit.families import family_of

        self.family = family_of(config).name
        if self.family not in FAMILY_INPUTS:
            raise ValueError(f"the memory plan knows the inputs of {sorted(FAMILY_INPUTS)}, not of model family {self.family!r}")
        config = copy.deepcopy(config)  # the planned attention is set on the model's config, not the caller's
        self.mode = FakeTensorMode(allow_non_fake_inputs=True) if fake else nullcontext()
        torch.manual_seed(seed)
        # Fake: built on the meta device, then each tensor made fake (peft's module.to() cannot swap fake parameters).
        with torch.device("meta") if fake else nullcontext():
            self.model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
            if lora is not None:
                from peft import get_peft_model

                from tokencredit.training import lora_config

                get_peft_model(self.model, lora_config(lora))  # adapters in place, in self.model's modules
        if fake:  # a real model on CPU runs its own sdpa kernel
            with self.mode:
                _fake_from_meta(self.model)
            FAMILY_INPUTS[self.family].make_fake(self.model)
            _register_planned_attention()
            for module in self.model.modules():
                if getattr(module, "config", None) is not None:
                    module.config._attn_implementation = PLANNED_ATTENTION
        self.config = self.model.config

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def frozen_bytes(self) -> int:
        """Bytes of the parameters no optimizer steps (LoRA's base), in their dtype."""
        return sum(p.numel() * p.element_size() for p in self.model.parameters() if not p.requires_grad)

    def _units(self) -> list[torch.nn.Module]:
        return [*self.model.model.language_model.layers, *self.model.model.visual.blocks]

    def largest_unit(self) -> int:
        """Parameters of the largest FSDP / ZeRO-3 unit gathered whole: a decoder layer, a vision block, or
        the root (embeddings, lm_head, vision patch embedding and mergers)."""
        layers = [sum(p.numel() for p in unit.parameters()) for unit in self._units()]
        return max(*layers, self.num_parameters() - sum(layers))


def _fake_from_meta(model: torch.nn.Module) -> None:
    """Every parameter and buffer of `model` (on the meta device) as a fake CPU tensor of its shape and dtype,
    tied parameters kept tied. Run under the fake mode."""
    made: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for store in (module._parameters, module._buffers):
            for name, t in store.items():
                if t is not None and id(t) not in made:
                    fake = torch.empty(t.shape, dtype=t.dtype)
                    made[id(t)] = torch.nn.Parameter(fake, requires_grad=t.requires_grad) if isinstance(t, torch.nn.Parameter) else fake
                if t is not None:
                    store[name] = made[id(t)]


def _Tracker():
    """torch's MemTracker, which would hook the gradients of frozen parameters too (LoRA's base), and fail:
    their modules' gradients are then counted as the other tensors of the backward are."""
    from torch.distributed._tools.mem_tracker import MemTracker

    class Tracker(MemTracker):
        def _track_module_params_and_buffers(self, module, install_grad_hooks=True):
            frozen = any(not p.requires_grad for p in module.parameters())
            return super()._track_module_params_and_buffers(module, install_grad_hooks and not frozen)

    return Tracker()


def trace(pm: PlanModel, work: Callable[[], Any]) -> tuple[int, Any]:
    """Peak bytes of the tensors `work` creates (the model's parameters and buffers excluded), and its result."""
    tracker = _Tracker()
    tracker.track_external(pm.model)
    # Python's cycle collector frees at moments of its own choosing: collect before, and not during.
    gc.collect()
    gc.disable()
    try:
        with pm.mode, tracker, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracker warns on every None it meets in autograd's outputs
            result = work()
    finally:
        gc.enable()
    snapshot = next(iter(tracker.get_tracker_snapshot("peak").values()))
    resident = sum(v for k, v in snapshot.items() if getattr(k, "name", None) in ("PARAM", "BUFFER"))
    return snapshot["Total"] - resident, result


# -- inputs ---------------------------------------------------------------------------------------------
def image_grid(config, pixels: int) -> list[int]:
    """[t, h, w] patch grid of a square image of about `pixels` pixels after Qwen's resize (multiples of 28)."""
    vision = config.vision_config
    factor = vision.patch_size * vision.spatial_merge_size
    side = max(factor, round(math.sqrt(pixels) / factor) * factor)
    return [1, side // vision.patch_size, side // vision.patch_size]


def prompt_length(config, shape: Shape) -> int:
    """Tokens of one prompt: per image its merged patches between vision start and end, then the text."""
    t, h, w = image_grid(config, shape.pixels)
    return shape.images * (t * h * w // config.vision_config.spatial_merge_size**2 + 2) + shape.prompt_text


def inputs_of(pm: PlanModel, shape: Shape) -> dict[str, Any]:
    """Token ids, attention mask, 3-D rope positions and the vision tower's index tensors, computed for real."""
    config, vision = pm.config, pm.config.vision_config
    grid = torch.tensor([image_grid(config, shape.pixels)] * (shape.rows * shape.images))
    merged = int(grid[0].prod()) // vision.spatial_merge_size**2
    image = [config.vision_start_token_id, *[config.image_token_id] * merged, config.vision_end_token_id]
    ids = torch.tensor([image * shape.images + [0] * shape.prompt_text + [1] * shape.completion] * shape.rows)
    mask, image_mask = torch.ones_like(ids), ids == config.image_token_id
    positions, _ = pm.model.model.get_rope_index(ids, image_grid_thw=grid, attention_mask=mask, mm_token_type_ids=image_mask.long())
    tower = FAMILY_INPUTS[pm.family].tower(pm.model.model.visual, grid)
    patches = (int(grid.prod(-1).sum()), vision.in_channels * vision.temporal_patch_size * vision.patch_size**2)
    return {"ids": ids, "mask": mask, "image_mask": image_mask, "positions": positions, "grid": grid, "tower": tower, "patches": patches}


def decoder_inputs(pm: PlanModel, inputs: dict[str, Any]) -> dict[str, Any]:
    """The language model's inputs besides mask and positions: token embeddings with the image embeddings in
    the placeholders' places, and what else the family's decoder takes from the tower, as its forward does."""
    model = pm.model.model
    pixels = torch.zeros(inputs["patches"], dtype=model.visual.dtype)
    tower = model.visual(pixels, grid_thw=inputs["grid"], **dict(inputs["tower"]))
    embeds = model.language_model.embed_tokens(inputs["ids"])
    image_mask = inputs["image_mask"]
    embeds = embeds.masked_scatter(image_mask.unsqueeze(-1).expand_as(embeds), tower.pooler_output.to(embeds.dtype))
    return {"inputs_embeds": embeds, **FAMILY_INPUTS[pm.family].decoder(tower, image_mask)}


def completion_scores(pm: PlanModel, hidden: torch.Tensor, ids: torch.Tensor, completion: int, chunk: int | None) -> torch.Tensor:
    """Per-token log-probs and entropies of the completion. Without `chunk`, as TRL's loss computes them:
    the logits of the whole micro-batch (trl.trainer.utils). With it, as the scoring code does:
    `chunk` token positions at a time through lm_head's weight (tokencredit.signals)."""
    from trl.trainer.utils import entropy_from_logits, selective_log_softmax

    from tokencredit.signals import token_logp_and_entropy

    hidden, targets = hidden[:, -completion - 1 : -1], ids[:, -completion:]
    if chunk is None:
        logits = pm.model.lm_head(hidden)
        return selective_log_softmax(logits, targets) + entropy_from_logits(logits)
    logp, entropy = token_logp_and_entropy(hidden.flatten(0, 1), pm.model.lm_head.weight, targets.flatten(), 1.0, chunk)
    return logp + entropy


# -- what differs between families -----------------------------------------------------------------------
# A table here rather than methods of tokencredit.families.Family: these methods exist only so that a
# model runs on fake tensors (its data-dependent index arithmetic computed beforehand on real tensors),
# which only the planner needs; on Family, InternVL and Qwen3.5 would carry methods they cannot fill.
# Which family a config is stays the adapter's answer (families.family_of).
class FamilyInputs:
    """Qwen2.5-VL's: the windowed vision tower's precomputed arguments; the decoder takes the embeddings alone."""

    def tower(self, visual, grid: torch.Tensor) -> dict[str, Any]:
        """The vision tower's index tensors for `grid`, as the keyword arguments its forward takes precomputed
        (transformers.vision_utils): sequence bounds, 2-D rope positions, attention windows."""
        from transformers.vision_utils import get_vision_cu_seqlens, get_vision_position_ids, get_vision_window_index

        vision = visual.config
        cu = get_vision_cu_seqlens(grid)
        window_index, cu_window = get_vision_window_index(
            grid, spatial_merge_size=vision.spatial_merge_size, window_size=vision.window_size, patch_size=vision.patch_size
        )
        return {
            "cu_seqlens": cu, "position_ids": get_vision_position_ids(grid, vision.spatial_merge_size),
            "window_index": window_index, "cu_window_seqlens": cu_window,
            "max_seqlen": int((cu[1:] - cu[:-1]).max()), "max_window_seqlen": int((cu_window[1:] - cu_window[:-1]).max()),
        }  # fmt: skip

    def decoder(self, tower, image_mask: torch.Tensor) -> dict[str, Any]:
        """The language model's arguments besides the embeddings, mask and positions, from the tower's output."""
        return {}

    def make_fake(self, model) -> None:
        """Whatever the model needs to run on fake tensors, done to the fake model only."""


class Qwen3VLInputs(FamilyInputs):
    """Qwen3-VL: a tower with a learned position grid, and DeepStack."""

    def tower(self, visual, grid: torch.Tensor) -> dict[str, Any]:
        """Sequence bounds, 2-D rope positions, and the taps and weights that resample the learned position
        grid to each image's."""
        from transformers.vision_utils import get_vision_cu_seqlens, get_vision_interpolation_indices_and_weights, get_vision_position_ids

        cu = get_vision_cu_seqlens(grid)
        indices, weights = get_vision_interpolation_indices_and_weights(
            grid, num_grid_per_side=visual.num_grid_per_side, mode=visual.interpolation_mode,
            align_corners=visual.interpolation_align_corners, spatial_merge_size=visual.spatial_merge_size,
        )  # fmt: skip
        return {
            "cu_seqlens": cu, "max_seqlen": int((cu[1:] - cu[:-1]).max()),
            "position_ids": get_vision_position_ids(grid, visual.spatial_merge_size), "interp_indices": indices, "interp_weights": weights,
        }  # fmt: skip

    def decoder(self, tower, image_mask: torch.Tensor) -> dict[str, Any]:
        """DeepStack: the tapped blocks' merged features, added to the first decoder layers at the image positions."""
        return {"visual_pos_masks": image_mask, "deepstack_visual_embeds": tower.deepstack_features}

    def make_fake(self, model) -> None:
        model.model.language_model._deepstack_process = types.MethodType(_indexed_deepstack, model.model.language_model)


def _indexed_deepstack(self, hidden_states: torch.Tensor, visual_pos_masks: torch.Tensor, visual_embeds: torch.Tensor) -> torch.Tensor:
    """Qwen3VLTextModel._deepstack_process on fake tensors: the same tensors in the same order, the image
    positions read from the real mask (a mask's positions are data-dependent: fake tensors have none)."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    with unset_fake_temporarily():
        positions = visual_pos_masks.nonzero(as_tuple=True)
    hidden_states = hidden_states.clone()
    hidden_states[positions] = hidden_states[positions] + visual_embeds.to(hidden_states.device, hidden_states.dtype)
    return hidden_states


FAMILY_INPUTS: dict[str, FamilyInputs] = {"qwen2_5_vl": FamilyInputs(), "qwen3_vl": Qwen3VLInputs()}


# -- the operations ---------------------------------------------------------------------------------------
def forward_work(pm: PlanModel, shape: Shape, grad: bool, checkpointing: bool = True, chunk: int | None = None) -> Callable[[], Any]:
    """A policy forward over prompt + completion with the completion's log-probs and entropies, and with
    `grad` its backward: what TRL's loss (grad) or a scoring forward (no grad) computes."""
    inputs, model = inputs_of(pm, shape), pm.model

    def work() -> None:
        model.train(grad)
        if grad and checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # FSDP and ZeRO reduce-scatter each gradient to its shard once it is complete: the full one goes.
        hooks = [p.register_post_accumulate_grad_hook(_drop_grad) for p in model.parameters() if p.requires_grad] if grad else []
        try:
            with torch.set_grad_enabled(grad):
                hidden = model.model.language_model(
                    **decoder_inputs(pm, inputs), attention_mask=inputs["mask"], position_ids=inputs["positions"], use_cache=False
                ).last_hidden_state
                logps = completion_scores(pm, hidden, inputs["ids"], shape.completion, chunk)
                if grad:
                    logps.float().sum().backward()
        finally:
            for hook in hooks:
                hook.remove()
            if grad and checkpointing:
                model.gradient_checkpointing_disable()

    return work


def _drop_grad(param: torch.Tensor) -> None:
    param.grad = None


def prefill_work(pm: PlanModel, shape: Shape) -> Callable[[], Any]:
    """generate()'s prefill: the prompt forward with a KV cache, logits of the last position only; returns the cache."""
    inputs, model = inputs_of(pm, replace(shape, completion=0)), pm.model

    def work():
        model.eval()
        with torch.no_grad():
            out = model.model.language_model(
                **decoder_inputs(pm, inputs), attention_mask=inputs["mask"], position_ids=inputs["positions"], use_cache=True
            )
            model.lm_head(out.last_hidden_state[:, -1:]).float().softmax(-1)
            return out.past_key_values

    return work


def cache_bytes(cache: Any) -> int:
    return sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))


# -- planning at full depth from reduced depths ---------------------------------------------------------
def depth_reduced(config, text_layers: int, vision_blocks: int):
    """The config at reduced depth, every width kept. Qwen2.5-VL's full-attention blocks past the depth go
    (the planned attention costs the same windowed or not); Qwen3-VL's DeepStack taps the first blocks, as
    many as at full depth, so that as many features feed as many decoder layers."""
    config = copy.deepcopy(config)
    text, vision = config.text_config, config.vision_config
    text.num_hidden_layers = text_layers
    if getattr(text, "layer_types", None):
        text.layer_types = text.layer_types[:text_layers]
    vision.depth = vision_blocks
    if getattr(vision, "fullatt_block_indexes", None) is not None:
        vision.fullatt_block_indexes = [i for i in vision.fullatt_block_indexes if i < vision_blocks]
    if taps := _taps(config):
        if min(text_layers, vision_blocks) < taps:
            raise ValueError(f"DeepStack feeds {taps} vision blocks to as many decoder layers: {text_layers} layers, {vision_blocks} blocks are too few")
        vision.deepstack_visual_indexes = list(range(taps))
    return config


def _taps(config) -> int:
    return len(getattr(config.vision_config, "deepstack_visual_indexes", None) or ())


def extrapolated(config, measure: Callable[[PlanModel], float], lora=None) -> float:
    """`measure` at the config's full depth, from traces at k and k + 1 decoder layers and vision blocks
    (k = 1, or Qwen3-VL's DeepStack taps), of PlanModel(config at that depth, lora=lora).

    Every layer of a kind has the same widths, so what a trace adds per layer is the same at any
    depth: memory = base + a * text layers + b * vision blocks (tests/test_memory_plan.py checks it
    against a trace at full depth).
    """
    k = max(1, _taps(config))
    at = {(t, v): measure(PlanModel(depth_reduced(config, t, v), lora=lora)) for t, v in ((k, k), (k + 1, k), (k, k + 1))}
    per_text, per_vision = at[k + 1, k] - at[k, k], at[k, k + 1] - at[k, k]
    base = at[k, k] - k * (per_text + per_vision)
    return base + per_text * config.text_config.num_hidden_layers + per_vision * config.vision_config.depth


def traced_bytes(config, shape: Shape, operation: str, chunk: int | None = None, lora=None) -> dict[str, int]:
    """Peak bytes of `operation` ("update", "scoring", "generation") at `shape`, planned at full depth, of
    the model under LoRA adapters where `lora` (params.LoraParams) is given.

    "generation" also gives the KV cache at prompt + completion tokens: decoding holds it and one
    step's fp32 logits per row; its peak is the larger of that and the prefill's.
    """
    if operation == "generation":
        prefill = extrapolated(config, lambda pm: trace(pm, prefill_work(pm, shape))[0], lora)
        prompt = prompt_length(config, shape)
        cache = extrapolated(config, lambda pm: cache_bytes(trace(pm, prefill_work(pm, shape))[1]), lora)
        cache *= (prompt + shape.completion) / prompt
        decode = cache + shape.rows * config.text_config.vocab_size * 4
        return {"peak": int(max(prefill, decode)), "KV cache": int(cache)}
    grad = operation == "update"
    work = lambda pm: trace(pm, forward_work(pm, shape, grad=grad, chunk=None if grad else chunk))[0]  # noqa: E731
    return {"peak": int(extrapolated(config, work, lora))}


# -- resident bytes -------------------------------------------------------------------------------------
def training_states(pm: PlanModel, train) -> dict[str, int]:
    """Per-device bytes of weights, gradients and AdamW states under train.distributed: fp32 masters, bf16
    compute. Only the trainable parameters (all, or LoRA's adapter: `pm` built with train.lora) have
    masters, gradients and moments; LoRA's frozen base is held in its dtype, sharded as the weights are.
    With train.beta > 0 and no LoRA (whose reference is the base, adapter off), TRL's reference model too."""
    engine, processes = train.distributed, train.num_processes
    n, frozen = pm.trainable_parameters(), pm.frozen_bytes()
    unit = 2 * pm.largest_unit()  # one unit gathered in bf16 for compute, and the next one prefetched
    if engine == "ddp":  # every process holds everything; autocast keeps bf16 copies of the weights per forward
        states = {"weights": 4 * n + frozen, "gradients": 4 * n, "optimizer": 8 * n, "bf16 copies": 2 * n}
    elif engine == "deepspeed_zero2":  # bf16 weights whole; fp32 masters, moments and gradients sharded
        states = {"weights": 2 * n + frozen, "gradients": 4 * n // processes, "optimizer": 12 * n // processes}
    elif engine == "deepspeed_zero3":
        states = {"weights": (2 * n + frozen) // processes, "gradients": 4 * n // processes, "optimizer": 12 * n // processes, "gathered units": 2 * unit}
    else:  # FSDP as accelerate runs it: sharded fp32 parameters (the masters), gradients and moments.
        states = {"weights": (4 * n + frozen) // processes, "gradients": 4 * n // processes, "optimizer": 8 * n // processes, "gathered units": 2 * unit}
    if train.beta > 0 and train.lora is None:
        # TRL builds it in the policy's dtype when the trainer starts (fp32 under DDP, whose weights
        # fp32_master_weights has upcast; bf16 otherwise) and shards it as the engine shards the policy.
        states["reference"] = {"ddp": 4 * n, "deepspeed_zero2": 2 * n}.get(engine, 2 * n // processes)
    return states


# -- the plan of a params set ---------------------------------------------------------------------------
@dataclass
class JobPlan:
    """One job's peak per device: what stays resident, plus its largest traced operation."""

    job: str  # "train · update", "rollouts · generation", ...
    resident: dict[str, int]  # weights, gradients, optimizer states, ... by kind
    operation: str  # "update, 8 rows"
    traced: int  # the operation's peak above the resident bytes
    kv_cache: int = 0  # generation: the part of `traced` that is the KV cache at full length

    @property
    def peak(self) -> int:
        return sum(self.resident.values()) + self.traced


def plan_params(sections: dict[str, Any], config, prompt_text: int = 150) -> list[JobPlan]:
    """Every GPU job of a params set, per device, at its real shapes.

    `sections`: the validated params sections "train", "rollouts", "scoring", "score" and "model"
    (tokencredit.params models). `config`: the architecture. `prompt_text`: question tokens
    besides the image (the papers' prompts hold about 100-200).
    """
    train, rollouts, pixels = sections["train"], sections["rollouts"], sections["model"].max_pixels
    per_process = train.prompts_per_step * train.num_generations * train.updates_per_generation // train.num_processes
    micro = Shape(train.micro_batch_size or per_process, prompt_text, train.max_completion_length, pixels)
    base = PlanModel(config)
    states = training_states(PlanModel(config, lora=train.lora) if train.lora else base, train)
    weights = {"weights": 2 * base.num_parameters()}  # rollouts and scoring load a LoRA adapter merged into its base
    chunk = sections["scoring"].chunk_size
    jobs = {
        "train · generation": (states, Shape(_generation_rows(sections["model"], per_process), prompt_text, train.max_completion_length, pixels), "generation"),
        "train · scoring": (states, micro, "scoring"),
        "train · update": (states, micro, "update"),
        "rollouts · generation": (weights, Shape(_generation_rows(sections["model"], rollouts.batch_size * rollouts.num_samples), prompt_text, rollouts.max_new_tokens, pixels), "generation"),
        "score · scoring": (weights, Shape(sections["score"].batch_size, prompt_text, rollouts.max_new_tokens, pixels), "scoring"),
    }  # fmt: skip
    plans = []
    for job, (resident, shape, operation) in jobs.items():
        lora = train.lora if job.startswith("train") else None  # training runs the adapter unmerged
        traced = traced_bytes(config, shape, operation, chunk, lora)
        plans.append(JobPlan(job, resident, f"{operation}, {shape.rows} rows", traced["peak"], traced.get("KV cache", 0)))
    return plans


def _generation_rows(model, default: int) -> int:
    """Rows per generate() call: model.generation_chunk (training and rollouts alike) where it is set."""
    return min(model.generation_chunk or default, default)


# -- the check before any job ---------------------------------------------------------------------------
MARGIN = 0.10  # a plan is an estimate: a job must fit its GPU with this share to spare
GPU_RULES = ("train", "rollouts", "score")


def check_memory(params, config=None) -> None:
    """Stop before any job when a GPU job's planned peak exceeds resources.<rule>.gpu_memory_gb less MARGIN.

    Only rules that name their GPU memory are planned, and resources.<rule>.allow_over_plan runs
    them anyway. The plan of a params set is cached (~/.cache/tokencredit) by its inputs' digest.
    """
    checked = {rule: getattr(params.resources, rule) for rule in GPU_RULES}
    checked = {rule: r for rule, r in checked.items() if r.gpu_memory_gb and not r.allow_over_plan}
    if not checked:
        return
    config = config if config is not None else architecture(params.model.path)
    sections = {"train": params.train, "rollouts": params.rollouts, "scoring": params.scoring, "score": params.score, "model": params.model}
    over = []
    for job in cached_plan(sections, config):
        rule = job.job.split(" · ")[0]
        if rule in checked and job.peak > (1 - MARGIN) * checked[rule].gpu_memory_gb * 1e9:
            gb = checked[rule].gpu_memory_gb
            over.append(
                f"resources.{rule}.gpu_memory_gb: {job.job} plans {job.peak / 1e9:.1f} GB per GPU ({job.operation}), over "
                f"{gb:g} GB less a {MARGIN:.0%} margin; {_REMEDY[job.job]}, or set resources.{rule}.allow_over_plan: true"
            )
    if over:
        raise ValueError("the memory plan (benchmarks/memory_plan.py) says these jobs do not fit:\n  " + "\n  ".join(over))


_REMEDY = {
    "train · generation": "lower model.generation_chunk",
    "train · scoring": "lower train.micro_batch_size (scoring forwards are that size)",
    "train · update": "lower train.micro_batch_size",
    "rollouts · generation": "lower model.generation_chunk",
    "score · scoring": "lower score.batch_size",
}


def cached_plan(sections: dict[str, Any], config) -> list[JobPlan]:
    """plan_params, read from the cache when the same config and sections were planned before."""
    import hashlib

    from tokencredit.atomic import write_text

    inputs = json.dumps([config.to_dict(), {k: v.model_dump() for k, v in sorted(sections.items())}], sort_keys=True, default=str)
    path = Path.home() / ".cache/tokencredit/memory_plan" / f"{hashlib.sha256(inputs.encode()).hexdigest()[:24]}.json"
    if path.is_file():
        return [JobPlan(**job) for job in json.loads(path.read_text())]
    plans = plan_params(sections, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps([asdict(job) for job in plans]))
    return plans
