"""Signals: TokenSignals, chunked vocabulary math, and score_policy on a tiny Qwen2.5-VL."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from tokencredit.signals import (
    LABEL_SIGNALS,
    MissingSignalError,
    TokenSignals,
    exact_kl,
    k3,
    score_policy,
    token_logp_and_entropy,
)

VOCAB = 96
IMAGE, VIDEO, VISION_START, VISION_END, PAD = 90, 91, 92, 93, 2
IMAGE_TOKENS = 9  # an 84x84 image: 6x6 patches of 14 px, merged 2x2


def tiny_model(attn_implementation: str = "eager") -> Qwen2_5_VLForConditionalGeneration:
    """A 2-layer Qwen2.5-VL built from its config alone (no download, no tokenizer)."""
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=VOCAB,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
            max_position_embeddings=512,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=PAD,
        ),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, fullatt_block_indexes=[0]),
        image_token_id=IMAGE,
        video_token_id=VIDEO,
        vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END,
    )
    config._attn_implementation = attn_implementation
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def make_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Three responses laid out as TRL's GRPOTrainer lays them out: left-padded prompts with one
    image each, right-padded completions; plus the image-free prompts for drop_image."""
    g = torch.Generator().manual_seed(seed)
    texts = [[5, 6], [5], [5, 6, 7]]
    tails = [[7, 8], [7], [7, 8, 9]]
    prompts = [t + [VISION_START] + [IMAGE] * IMAGE_TOKENS + [VISION_END] + tail for t, tail in zip(texts, tails)]
    text_prompts = [t + tail for t, tail in zip(texts, tails)]

    def left_pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(map(len, rows))
        ids = torch.tensor([[PAD] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        return ids, mask

    prompt_ids, prompt_mask = left_pad(prompts)
    text_prompt_ids, text_prompt_mask = left_pad(text_prompts)
    completion_mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 5 + [0]])
    completion_ids = torch.randint(3, 80, completion_mask.shape, generator=g).masked_fill(completion_mask == 0, PAD)
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "pixel_values": torch.randn(36 * len(prompts), 3 * 2 * 14 * 14, generator=g),
        "image_grid_thw": torch.tensor([[1, 6, 6]] * len(prompts)),
        "text_prompt_ids": text_prompt_ids,
        "text_prompt_mask": text_prompt_mask,
    }


@pytest.fixture(scope="module")
def model() -> Qwen2_5_VLForConditionalGeneration:
    return tiny_model()


def full_forward(model, batch, output_attentions=False):
    """Reference: the model's own forward with full logits."""
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    with torch.no_grad():
        return ids, model(
            input_ids=ids,
            attention_mask=mask,
            pixel_values=batch["pixel_values"],
            image_grid_thw=batch["image_grid_thw"],
            mm_token_type_ids=(ids == IMAGE).long(),
            output_attentions=output_attentions,
        )


# TokenSignals and k3


def test_k3_matches_formula_and_clamps():
    logp = torch.tensor([-1.0, -1.0, -1.0, -30.0])
    logp_cf = torch.tensor([-1.0, -2.0, -0.5, 0.0])
    d = torch.tensor([0.0, -1.0, 0.5, 20.0])
    expected = (d.exp() - d - 1).clamp(0, 10)
    assert torch.allclose(k3(logp, logp_cf), expected)
    assert k3(logp, logp_cf)[3] == 10.0 and k3(logp, logp_cf).dtype == torch.float32


@pytest.mark.parametrize("d", [1e-6, 3e-5, 1e-4, 5e-4, 1e-3])
def test_k3_is_precise_for_small_differences(d):
    # e^d - d - 1 = d^2/2 + d^3/6 + ...; in float32 it is 0 below 1e-4 and far off below 1e-3
    logp = torch.tensor([-2.0, -2.0])
    logp_cf = logp + torch.tensor([d, -d])
    exact = torch.tensor([math.expm1(x) - x for x in (logp_cf - logp).double().tolist()], dtype=torch.float64)
    torch.testing.assert_close(k3(logp, logp_cf).double(), exact, rtol=1e-4, atol=0)


def test_from_logps_derives_visual_signals_zero_on_padding():
    mask = torch.tensor([[True, True, False]])
    s = TokenSignals.from_logps(mask, torch.tensor([[-1.0, -2.0, -5.0]]), torch.tensor([[-1.5, -1.0, -9.0]]))
    assert torch.allclose(s.vis_absdiff, torch.tensor([[0.5, 1.0, 0.0]]))
    assert torch.allclose(s.vis_k3, k3(s.logp, s.logp_cf) * mask)
    assert s.available() == ["logp", "logp_cf", "vis_k3", "vis_absdiff"]


def test_require_names_the_missing_signal():
    s = TokenSignals(mask=torch.ones(1, 2, dtype=torch.bool), entropy=torch.zeros(1, 2))
    assert s.require("entropy") is s.entropy
    with pytest.raises(MissingSignalError, match="'vis_k3' is missing"):
        s.require("vis_k3")
    with pytest.raises(ValueError, match="unknown signal 'nope'"):
        s.require("nope")


def test_token_signals_validates_shapes():
    with pytest.raises(ValueError, match="bool"):
        TokenSignals(mask=torch.ones(1, 2))
    with pytest.raises(ValueError, match="entropy has shape"):
        TokenSignals(mask=torch.ones(1, 2, dtype=torch.bool), entropy=torch.zeros(2, 2))


# Chunked vocabulary math


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 50])
def test_chunked_logp_entropy_kl_match_unchunked(chunk_size):
    g = torch.Generator().manual_seed(0)
    n, h, v = 7, 8, 11
    hidden, hidden_q = torch.randn(n, h, generator=g), torch.randn(n, h, generator=g)
    weight = torch.randn(v, h, generator=g)
    targets = torch.randint(0, v, (n,), generator=g)
    temperature = 0.7
    lp = torch.log_softmax(hidden @ weight.T / temperature, -1)
    lq = torch.log_softmax(hidden_q @ weight.T / temperature, -1)
    logp, entropy = token_logp_and_entropy(hidden, weight, targets, temperature, chunk_size)
    assert torch.allclose(logp, lp.gather(-1, targets[:, None]).squeeze(-1), atol=1e-5)
    assert torch.allclose(entropy, -(lp.exp() * lp).sum(-1), atol=1e-5)
    kl = exact_kl(hidden, hidden_q, weight, temperature, chunk_size)
    assert torch.allclose(kl, (lp.exp() * (lp - lq)).sum(-1), atol=1e-5)
    assert torch.allclose(exact_kl(hidden, hidden, weight, temperature, chunk_size), torch.zeros(n), atol=1e-6)


def test_chunked_math_on_no_tokens():
    hidden, weight = torch.zeros(0, 4), torch.randn(5, 4)
    logp, entropy = token_logp_and_entropy(hidden, weight, torch.zeros(0, dtype=torch.long))
    assert logp.shape == entropy.shape == exact_kl(hidden, hidden, weight).shape == (0,)


# score_policy on the tiny model


def test_logp_and_entropy_match_the_models_own_forward(model):
    batch = make_batch()
    s = score_policy(model, batch, {"entropy", "logp"}, chunk_size=4, temperature=0.8)
    _, out = full_forward(model, batch)
    n = batch["completion_ids"].shape[1]
    lp = torch.log_softmax(out.logits[:, -n - 1 : -1].float() / 0.8, -1)
    mask = batch["completion_mask"].bool()
    expected_logp = lp.gather(-1, batch["completion_ids"][..., None]).squeeze(-1) * mask
    assert torch.allclose(s.logp, expected_logp, atol=1e-5)
    assert torch.allclose(s.entropy, -(lp.exp() * lp).sum(-1) * mask, atol=1e-5)
    assert s.logp_cf is None and s.attn_image is None


def eager_image_mass(model, batch, layers):
    """Reference: attention mass on the image keys from eager attention's full weights, per layer."""
    ids, out = full_forward(model, batch, output_attentions=True)
    n = batch["completion_ids"].shape[1]
    image_keys = (ids == IMAGE).float()
    return [(out.attentions[i][:, :, -n - 1 : -1, :] * image_keys[:, None, None, :]).sum(-1).mean(1) for i in layers]


@pytest.mark.parametrize("kernel", ["eager", "sdpa"])
def test_attn_image_equals_eager_attention_weights(model, kernel):
    """Recomputed from each layer's own q and k (GQA: 4 heads on 2 key heads), in chunks of 2 queries,
    on any kernel: equal to the eager weights' mass on the image, left padding and causality included."""
    policy = model if kernel == "eager" else tiny_model(kernel)  # same seed: the same weights
    batch = make_batch()
    per_layer = eager_image_mass(model, batch, [0, 1])
    s = score_policy(policy, batch, {"attn_image"}, attention_layers=[0, -1], chunk_size=2)
    assert torch.allclose(s.attn_image, sum(per_layer) / 2 * batch["completion_mask"], atol=1e-6)
    hooks_before = [len(layer.self_attn._forward_pre_hooks) for layer in policy.model.language_model.layers]
    last_only = score_policy(policy, batch, {"attn_image"}, attention_layers=[1])
    assert torch.allclose(last_only.attn_image, per_layer[1] * batch["completion_mask"], atol=1e-6)
    assert [len(layer.self_attn._forward_pre_hooks) for layer in policy.model.language_model.layers] == hooks_before
    assert (s.attn_image > 0).any() and (s.attn_image < 1).all()


def test_attn_image_of_a_forward_run_in_row_chunks(model):
    """The training loss's forward (TRL may run it in row chunks, with grad): rows join in order."""
    from tokencredit.counterfactual import real_inputs
    from tokencredit.signals import image_attention_of

    batch = make_batch()
    inputs = real_inputs(model, batch)
    n = batch["completion_ids"].shape[1]
    sdpa = tiny_model("sdpa")
    with image_attention_of(sdpa, inputs["input_ids"], inputs["attention_mask"], n, [-1], chunk_size=4) as found:
        rows = [slice(0, 2), slice(2, 3)]
        grids = [batch["image_grid_thw"][r] for r in rows]
        pixels = [batch["pixel_values"][:72], batch["pixel_values"][72:]]
        for r, grid, px in zip(rows, grids, pixels):
            sdpa.model(input_ids=inputs["input_ids"][r], attention_mask=inputs["attention_mask"][r],
                       position_ids=inputs["position_ids"][:, r], pixel_values=px, image_grid_thw=grid)
    expected = eager_image_mass(model, batch, [1])[0]
    assert not found[0].requires_grad
    mask = batch["completion_mask"].bool()
    assert torch.allclose(found[0][mask], expected[mask], atol=1e-6)


def test_counterfactual_signals_and_exact_kl(model):
    batch = make_batch()
    s = score_policy(model, batch, {"vis_kl", "vis_k3"}, counterfactual="mask_visual_attention", chunk_size=2)
    mask = batch["completion_mask"].bool()
    assert not torch.allclose(s.logp, s.logp_cf)
    assert torch.allclose(s.vis_k3, k3(s.logp, s.logp_cf) * mask)
    assert torch.allclose(s.vis_absdiff, (s.logp - s.logp_cf).abs() * mask)
    assert (s.vis_kl >= 0).all() and (s.vis_kl[mask] > 0).all() and (s.vis_kl[~mask] == 0).all()
    # vis_kl from full logits of both forwards
    from tokencredit.counterfactual import counterfactual_inputs, real_inputs

    n = batch["completion_ids"].shape[1]
    with torch.no_grad():
        lp = torch.log_softmax(model(**real_inputs(model, batch)).logits[:, -n - 1 : -1], -1)
        lq = torch.log_softmax(model(**counterfactual_inputs(model, batch, "mask_visual_attention")).logits[:, -n - 1 : -1], -1)
    assert torch.allclose(s.vis_kl, (lp.exp() * (lp - lq)).sum(-1) * mask, atol=1e-6)


def test_row_batches_give_the_same_signals(model):
    batch = make_batch()
    batch["cf_pixel_values"] = batch["pixel_values"].flip(0)
    needs = {"entropy", "attn_image", "vis_kl"}
    whole = score_policy(model, batch, needs, counterfactual="patch_blackening")
    for size in (1, 2):
        parts = score_policy(model, batch, needs, counterfactual="patch_blackening", batch_size=size)
        for name in whole.available():
            assert torch.allclose(getattr(whole, name), getattr(parts, name), atol=1e-5), (name, size)


def test_no_gradient_and_padding_zero(model):
    s = score_policy(model, make_batch(), {"entropy", "attn_image", "vis_absdiff"}, counterfactual="drop_image")
    for name in s.available():
        value = getattr(s, name)
        assert not value.requires_grad
        assert (value[~s.mask] == 0).all()
        assert torch.isfinite(value).all()


def test_clear_errors(model):
    batch = make_batch()
    with pytest.raises(ValueError, match="need a counterfactual"):
        score_policy(model, batch, {"vis_k3"})
    with pytest.raises(ValueError, match="unknown signals"):
        score_policy(model, batch, {"entropy", "saliency"})
    with pytest.raises(ValueError, match="attention_layers: layer 2 is out of range"):
        score_policy(model, batch, {"attn_image"}, attention_layers=[2])


def test_every_method_weights_scored_signals(model):
    """The trainer's path: score what a method needs with its default counterfactual, then weigh."""
    from tokencredit.counterfactual import perturb_pixel_values
    from tokencredit.families import PatchLayout
    from tokencredit.weighting import build_weighting, default_counterfactual, registered, required_signals

    batch = make_batch()
    batch["cf_pixel_values"] = perturb_pixel_values(
        "patch_blackening", batch["pixel_values"], batch["image_grid_thw"], (0.5,) * 3, (0.25,) * 3, torch.Generator().manual_seed(0),
        PatchLayout(patch_size=14),
    )
    for name in registered():
        needs = required_signals(name)
        s = score_policy(model, batch, needs - LABEL_SIGNALS, counterfactual=default_counterfactual(name))
        if "role" in needs:  # labelled from the completion text, not scored (scoring.label_signals)
            s = replace(s, role=torch.randint(0, 3, s.mask.shape).float() * s.mask)
        if "on_target" in needs:  # labelled against the example's target: a correct prefix
            cut = torch.randint(0, s.mask.shape[1] + 1, (len(s.mask), 1))
            s = replace(s, on_target=(torch.arange(s.mask.shape[1]) < cut).float() * s.mask)
        w = build_weighting(name)(s, torch.randn(len(s.mask)))
        assert torch.isfinite(w).all() and (w >= 0).all() and (w[~s.mask] == 0).all(), name


def test_score_policy_refuses_label_signals():
    with pytest.raises(ValueError, match=r"signals \['role'\] come from the data's labels"):
        score_policy(None, {}, {"role"})


def test_attn_image_of_a_forward_under_bf16_autocast(model):
    """Mixed precision (float32 weights, bf16 compute, as FSDP's upcast parameters under autocast):
    the layer's q and k are recomputed as the layer computes them, the softmax in float32."""
    from tokencredit.counterfactual import real_inputs
    from tokencredit.signals import image_attention_of

    batch = make_batch()
    sdpa = tiny_model("sdpa")
    inputs = real_inputs(sdpa, batch)
    n = batch["completion_ids"].shape[1]
    with torch.autocast("cpu", dtype=torch.bfloat16), image_attention_of(sdpa, inputs["input_ids"], inputs["attention_mask"], n, [-1]) as found:
        sdpa.model(**inputs)
    assert found[0].dtype == torch.float32
    mask = batch["completion_mask"].bool()
    assert torch.allclose(found[0][mask], eager_image_mass(model, batch, [1])[0][mask], atol=2e-2)


def test_attn_image_of_qwen3_vl_with_its_q_and_k_norms():
    """Qwen3-VL normalises each head's q and k (q_norm, k_norm) and interleaves its 3-D rope: the
    recomputation does what the layer does, equal to its eager weights (image keys as tokens, no pixels)."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from tokencredit.signals import image_attention_of

    rope = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0, "mrope_interleaved": True}
    config = Qwen3VLConfig(
        text_config=dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, rope_parameters=rope, max_position_embeddings=512, pad_token_id=PAD),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, deepstack_visual_indexes=[]),
        image_token_id=IMAGE, video_token_id=VIDEO, vision_start_token_id=VISION_START, vision_end_token_id=VISION_END,
    )  # fmt: skip
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    qwen3 = Qwen3VLForConditionalGeneration(config).eval()
    assert qwen3.model.language_model.layers[0].self_attn.q_norm is not None
    batch = make_batch()
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    n = batch["completion_ids"].shape[1]
    with torch.no_grad(), image_attention_of(qwen3, ids, mask, n, [-1], chunk_size=2) as found:
        weights = qwen3(input_ids=ids, attention_mask=mask, output_attentions=True).attentions[-1]
    expected = (weights[:, :, -n - 1 : -1, :] * (ids == IMAGE)[:, None, None, :]).sum(-1).mean(1)
    completion = batch["completion_mask"].bool()
    assert torch.allclose(found[0][completion], expected[completion], atol=1e-6) and (expected[completion] > 0).all()
