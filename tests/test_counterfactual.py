"""Counterfactual inputs: image perturbations on pixel_values rows and the counterfactual forwards."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from test_signals import IMAGE, make_batch, tiny_model
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from tokencredit.counterfactual import (
    counterfactual_batch,
    counterfactual_inputs,
    patchify,
    perturb_pixel_values,
    real_inputs,
    unpatchify,
)
from tokencredit.signals import score_policy

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def processed():
    """A blocky 84x84 image through the real Qwen2-VL image processor: 36 rows, grid [1, 6, 6]."""
    blocks = (np.random.default_rng(0).random((6, 6, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(blocks).resize((84, 84), Image.NEAREST)
    out = Qwen2VLImageProcessorPil(min_pixels=84 * 84, max_pixels=84 * 84)(images=[image], return_tensors="pt")
    return image, out["pixel_values"], out["image_grid_thw"]


def to_pixels(frames: torch.Tensor) -> torch.Tensor:
    return frames * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)


def perturb(kind, pixel_values, grid, seed=0):
    return perturb_pixel_values(kind, pixel_values, grid, MEAN, STD, torch.Generator().manual_seed(seed))


def test_unpatchify_recovers_the_processed_image(processed):
    image, pixel_values, grid = processed
    frames = unpatchify(pixel_values, grid[0].tolist())
    expected = torch.tensor(np.array(image)).permute(2, 0, 1).float() / 255
    assert frames.shape == (2, 3, 84, 84)
    assert torch.allclose(to_pixels(frames[0]), expected, atol=1e-5)
    assert torch.equal(patchify(frames, grid[0].tolist()), pixel_values)


def test_patch_blackening_blackens_whole_rows_with_fresh_masks(processed):
    _, pixel_values, grid = processed
    many = pixel_values.repeat(8, 1)  # eight responses with the same image
    grids = grid.repeat(8, 1)
    out = perturb("patch_blackening", many, grids)
    black = ((0 - torch.tensor(MEAN)) / torch.tensor(STD)).repeat_interleave(2 * 14 * 14)
    is_black = torch.isclose(out, black, atol=1e-5).all(1)
    unchanged = torch.isclose(out, many, atol=1e-5).all(1)
    assert (is_black | unchanged).all()
    assert 0.35 < is_black.float().mean() < 0.65
    masks = is_black.view(8, 36)
    assert len({tuple(m.tolist()) for m in masks}) == 8  # a fresh mask per image
    assert torch.equal(out, perturb("patch_blackening", many, grids))  # same generator seed, same bytes
    assert not torch.equal(out, perturb("patch_blackening", many, grids, seed=1))


def test_harmonized_patches_blacken_16_px_squares_with_one_mask_per_prompt(processed):
    """The fork's harmonized counterfactual on Qwen2.5-VL's 14-px rows: the mask follows a 16-px grid
    of the image (84 px: 6 x 6 squares, the last ones 4 px wide), shared by a prompt's responses."""
    _, pixel_values, grid = processed
    other = -pixel_values  # a second prompt's image
    batch = torch.cat([pixel_values, pixel_values, other, other, pixel_values])  # prompts a, a, b, b, then a again
    out = perturb("harmonized_patches", batch, grid.repeat(5, 1)).view(5, 36, -1)
    frames = [to_pixels(unpatchify(rows, grid[0].tolist())) for rows in out]
    clean = [to_pixels(unpatchify(rows, grid[0].tolist())) for rows in batch.view(5, 36, -1)]
    black = [(f.abs() < 1e-5).all(1).all(0) for f in frames]  # [84, 84] per image
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[4]) and torch.equal(out[2], out[3])
    assert not torch.equal(black[0], black[2])  # another prompt, another mask
    for f, c, b in zip(frames, clean, black):
        squares = torch.nn.functional.pad(b.float(), (0, 12, 0, 12)).reshape(6, 16, 6, 16).permute(0, 2, 1, 3)
        whole = [bool(sq[: 16 if i < 5 else 4, : 16 if j < 5 else 4].all() or not sq.any()) for i, row in enumerate(squares) for j, sq in enumerate(row)]
        assert all(whole)  # every 16-px square black or untouched, across 14-px row boundaries
        assert torch.allclose(f[..., ~b], c[..., ~b], atol=1e-5)  # the rest unchanged
        assert 0.3 < b.float().mean() < 0.9  # p = 0.6 over 36 squares
    assert torch.equal(out, perturb("harmonized_patches", batch, grid.repeat(5, 1)).view(5, 36, -1))


def test_harmonized_patches_are_whole_rows_with_qwen3_vl_16_px_patches():
    """With Qwen3-VL's layout (16-px patches, merge 2) the harmonized squares are exactly its rows."""
    image = Image.fromarray((np.random.default_rng(1).random((96, 96, 3)) * 255).astype(np.uint8))
    out = Qwen2VLImageProcessorPil(min_pixels=96 * 96, max_pixels=96 * 96, patch_size=16, merge_size=2)(images=[image], return_tensors="pt")
    pixel_values, grid = out["pixel_values"], out["image_grid_thw"]
    perturbed = perturb_pixel_values("harmonized_patches", pixel_values, grid, MEAN, STD, torch.Generator().manual_seed(0), patch_size=16)
    black = ((0 - torch.tensor(MEAN)) / torch.tensor(STD)).repeat_interleave(2 * 16 * 16)
    is_black = torch.isclose(perturbed, black, atol=1e-5).all(1)
    assert (is_black | torch.isclose(perturbed, pixel_values, atol=1e-5).all(1)).all() and 0 < is_black.sum() < len(is_black)


def test_gray_noise_and_blur(processed):
    image, pixel_values, grid = processed
    gray = to_pixels(unpatchify(perturb("gray", pixel_values, grid), grid[0].tolist()))
    assert torch.allclose(gray, torch.full_like(gray, 128 / 255), atol=1e-5)

    noisy = to_pixels(unpatchify(perturb("gaussian_noise", pixel_values, grid), grid[0].tolist()))
    clean = to_pixels(unpatchify(pixel_values, grid[0].tolist()))
    assert noisy.min() >= -1e-5 and noisy.max() <= 1 + 1e-5
    assert (noisy - clean).abs().mean() > 0.2  # sigma 189/255, before clamping

    blurred = to_pixels(unpatchify(perturb("blur", pixel_values, grid), grid[0].tolist()))[0]
    pil = torch.tensor(np.array(image.filter(ImageFilter.GaussianBlur(6)))).permute(2, 0, 1).float() / 255
    assert (blurred - pil).abs().mean() < 0.01  # PIL approximates the same Gaussian with box blurs
    assert blurred.std() < clean.std()


def test_perturbation_keeps_shape_dtype_and_refuses_unknown_kinds(processed):
    _, pixel_values, grid = processed
    for kind in ("patch_blackening", "gaussian_noise", "blur", "gray", "harmonized_patches"):
        out = perturb(kind, pixel_values, grid)
        assert out.shape == pixel_values.shape and out.dtype == pixel_values.dtype
    with pytest.raises(ValueError, match="unknown image perturbation 'drop_image'"):
        perturb("drop_image", pixel_values, grid)


def test_mask_visual_attention_keeps_positions_and_equals_removing_image_keys(model):
    batch = make_batch()
    real = real_inputs(model, batch)
    masked = counterfactual_inputs(model, batch, "mask_visual_attention")
    assert torch.equal(masked["position_ids"], real["position_ids"])
    assert torch.equal(masked["input_ids"], real["input_ids"])
    image = real["input_ids"] == IMAGE
    assert (masked["attention_mask"][image] == 0).all()
    assert torch.equal(masked["attention_mask"][~image], real["attention_mask"][~image])

    n = batch["completion_ids"].shape[1]
    s = score_policy(model, batch, {"logp_cf"}, counterfactual="mask_visual_attention")
    assert not torch.allclose(s.logp, s.logp_cf)
    # Reference: delete the image tokens and the left padding, keep every other token's real position.
    for row in range(len(image)):
        keep = ~image[row] & (real["attention_mask"][row].cumsum(0) > 0)
        with torch.no_grad():
            out = model.model(
                input_ids=real["input_ids"][row][keep][None],
                position_ids=real["position_ids"][:, row][:, keep][:, None],
                attention_mask=torch.ones(1, int(keep.sum()), dtype=torch.long),
            )
            lp = torch.log_softmax(model.lm_head(out.last_hidden_state[0, -n - 1 : -1]), -1)
        valid = batch["completion_mask"][row].bool()
        expected = lp.gather(-1, batch["completion_ids"][row][:, None]).squeeze(-1)[valid]
        assert torch.allclose(s.logp_cf[row][valid], expected, atol=1e-5)


def test_drop_image_equals_the_unpadded_text_only_forward(model):
    batch = make_batch()
    s = score_policy(model, batch, {"logp_cf"}, counterfactual="drop_image")
    for row in range(len(batch["completion_ids"])):
        prompt = batch["text_prompt_ids"][row][batch["text_prompt_mask"][row].bool()]
        valid = batch["completion_mask"][row].bool()
        completion = batch["completion_ids"][row][valid]
        with torch.no_grad():
            logits = model(input_ids=torch.cat([prompt, completion])[None]).logits[0]
        lp = torch.log_softmax(logits[len(prompt) - 1 : -1], -1).gather(-1, completion[:, None]).squeeze(-1)
        assert torch.allclose(s.logp_cf[row][valid], lp, atol=1e-5)


def test_pixel_counterfactual_uses_cf_pixel_values(model):
    batch = make_batch()
    batch["cf_pixel_values"] = batch["pixel_values"].clone()
    same = score_policy(model, batch, {"vis_k3"}, counterfactual="gray")
    assert torch.allclose(same.logp, same.logp_cf) and (same.vis_k3 < 1e-6).all()
    batch["cf_pixel_values"] = perturb("patch_blackening", batch["pixel_values"], batch["image_grid_thw"])
    changed = score_policy(model, batch, {"vis_k3"}, counterfactual="patch_blackening")
    assert not torch.allclose(changed.logp, changed.logp_cf)


def test_missing_counterfactual_inputs_are_named(model):
    batch = make_batch()
    del batch["text_prompt_ids"]
    with pytest.raises(ValueError, match="text_prompt_ids"):
        counterfactual_inputs(model, batch, "drop_image")
    with pytest.raises(ValueError, match="cf_pixel_values"):
        counterfactual_inputs(model, batch, "blur")
    with pytest.raises(ValueError, match="unknown counterfactual 'none'"):
        counterfactual_inputs(model, batch, "none")


def word_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer with Qwen's special tokens and a chat template that renders image parts."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]
    vocab = {w: i for i, w in enumerate(specials + ["[UNK]", "user", "assistant", "How", "many", "red", "?"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="<|endoftext|>", additional_special_tokens=specials)
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }} {% for p in m['content'] %}"
        "{% if p['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ p['text'] }}{% endif %}"
        "{% endfor %}<|im_end|> {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
    )
    return tokenizer


def test_counterfactual_batch_drops_image_parts_and_left_pads():
    tokenizer = word_tokenizer()
    prompts = [
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many red ?"}]}],
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many ?"}]}],
    ]
    extra = counterfactual_batch("drop_image", {"prompt_ids": torch.zeros(2, 1)}, [{"prompt": p} for p in prompts], tokenizer, torch.Generator())
    with_image = tokenizer.apply_chat_template(conversation=prompts, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    span = [tokenizer.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>")]
    for row, ids in enumerate(with_image):
        start = ids.index(span[0])
        expected = ids[:start] + ids[start + len(span) :]
        mask = extra["text_prompt_mask"][row].bool()
        assert extra["text_prompt_ids"][row][mask].tolist() == expected
        assert mask.tolist() == sorted(mask.tolist())  # left padded
    assert extra["text_prompt_ids"][1, 0] == tokenizer.pad_token_id


def test_counterfactual_batch_perturbs_pixels_with_the_processors_layout(processed):
    _, pixel_values, grid = processed
    processor = SimpleNamespace(image_processor=Qwen2VLImageProcessorPil())
    batch = {"pixel_values": pixel_values, "image_grid_thw": grid}
    extra = counterfactual_batch("gray", batch, [], processor, torch.Generator())
    assert torch.allclose(extra["cf_pixel_values"], perturb("gray", pixel_values, grid))
    assert counterfactual_batch("mask_visual_attention", batch, [], processor, torch.Generator()) == {}
    with pytest.raises(ValueError, match="unknown counterfactual 'sepia'"):
        counterfactual_batch("sepia", batch, [], processor, torch.Generator())
