"""Consecutive identical images are encoded once, with the same embeddings and gradients as encoding each."""

from __future__ import annotations

import copy

import pytest
import torch

from test_signals import full_forward, make_batch, tiny_model
from tokencredit.repeated_images import encode_every_image, encode_repeated_images_once, vision_tower

PATCH = 3 * 2 * 14 * 14  # one pixel row: channels x temporal patch x 14 x 14


def images(grids: list[tuple[int, int]], names: str, seed: int = 0, row: int = PATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """pixel_values and image_grid_thw of a batch whose images are named by letters (same letter, same image)."""
    g = torch.Generator().manual_seed(seed)
    pixels = {name: torch.randn(h * w, row, generator=g) for name, (h, w) in zip(names, grids)}
    sizes = dict(zip(names, grids))
    return torch.cat([pixels[n] for n in names]), torch.tensor([[1, *sizes[n]] for n in names])


def vision_features(model, pixel_values, grid) -> torch.Tensor:
    return torch.cat(model.model.get_image_features(pixel_values, grid).pooler_output)


def test_repeated_images_give_the_same_embeddings_and_gradients():
    plain = tiny_model().train()
    hooked = copy.deepcopy(plain)
    encode_repeated_images_once(hooked)
    # GRPO's layout: each prompt's image G times in a row; two sizes; B returns after C, and is encoded again.
    names = "AAABBCCB"
    grids = {"A": (6, 6), "B": (4, 4), "C": (6, 4)}
    pixel_values, grid = images([grids[n] for n in names], names)
    calls = []
    vision_tower(hooked).patch_embed.register_forward_hook(lambda m, args, out: calls.append(out.shape[0]))

    outputs = []
    for model in (plain, hooked):
        features = vision_features(model, pixel_values, grid)
        weights = torch.linspace(-1, 1, features.numel()).view_as(features)
        (features * weights).sum().backward()
        outputs.append((features.detach(), {n: p.grad.clone() for n, p in vision_tower(model).named_parameters()}))

    (want, want_grads), (got, got_grads) = outputs
    assert calls == [36 + 16 + 24 + 16]  # A, B, C, B: the repeats' pixels never reach the tower
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_a_batch_without_repeats_is_left_alone_and_the_hooks_install_once():
    model = tiny_model()
    encode_repeated_images_once(model)
    encode_repeated_images_once(model)
    tower = vision_tower(model)
    assert len(tower._forward_pre_hooks) == len(tower._forward_hooks) == 1
    pixel_values, grid = images([(6, 6)] * 3, "ABC")
    plain = tiny_model()
    with torch.no_grad():
        torch.testing.assert_close(vision_features(model, pixel_values, grid), vision_features(plain, pixel_values, grid), rtol=0, atol=0)
    encode_every_image(model)
    assert not tower._forward_pre_hooks and not tower._forward_hooks


def test_the_whole_model_sees_the_same_images():
    """A TRL batch whose first two responses share their prompt's image: the same logits with and without the hooks."""
    batch = make_batch()
    batch["pixel_values"][36:72] = batch["pixel_values"][:36]
    plain = tiny_model()
    hooked = copy.deepcopy(plain)
    encode_repeated_images_once(hooked)
    _, want = full_forward(plain, batch)
    _, got = full_forward(hooked, batch)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-5, atol=1e-6)


def family_model(name: str):
    """A tiny random model of a family, built in memory (tokenizer on a one-line corpus)."""
    from tokencredit.families import family_named
    from tokencredit.params import ModelParams
    from tokencredit.tiny_vlm import train_tokenizer

    family = family_named(name)
    params = ModelParams(family=name, num_layers=2)
    torch.manual_seed(0)
    return family.tiny_model(family.tiny_config(train_tokenizer(["How many red circles?"] * 4, 300, family), params)).train()


def qwen3_vl_features(model, pixel_values, grid) -> torch.Tensor:
    """The merged tokens and every DeepStack feature (the tapped layers' merged tokens), as one tensor."""
    out = model.model.get_image_features(pixel_values, grid)
    return torch.cat([torch.cat(out.pooler_output), *(torch.cat(f) for f in out.deepstack_features)], dim=1)


def internvl_features(model, tiles, _) -> torch.Tensor:
    return model.model.get_image_features(pixel_values=tiles).pooler_output


@pytest.mark.parametrize(
    "name, features, pixels",
    [
        # Qwen3-VL: 16-px patches (3 x 2 x 16 x 16 per row); A A B A, the last A after B encoded again.
        ("qwen3_vl", qwen3_vl_features, lambda g: images([(4, 4), (4, 4), (2, 4), (4, 4)], "AABA", 1, 3 * 2 * 16 * 16)),
        # InternVL: 84-px tiles, identical ones merged wherever they are (B A B A C).
        ("internvl", internvl_features, lambda g: (torch.randn(3, 3, 84, 84, generator=g)[[1, 0, 1, 0, 2]], None)),
    ],
)
def test_deepstack_and_tile_towers_give_the_same_features_and_gradients(name, features, pixels):
    plain = family_model(name)
    hooked = copy.deepcopy(plain)
    encode_repeated_images_once(hooked)
    pixel_values, grid = pixels(torch.Generator().manual_seed(0))
    outputs = []
    for model in (plain, hooked):
        out = features(model, pixel_values, grid)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outputs.append((out.detach(), {n: p.grad.clone() for n, p in vision_tower(model).named_parameters() if p.grad is not None}))
    (want, want_grads), (got, got_grads) = outputs
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert want_grads.keys() == got_grads.keys() and want_grads
    for n, grad in want_grads.items():
        torch.testing.assert_close(got_grads[n], grad, rtol=1e-4, atol=1e-6, msg=n)
