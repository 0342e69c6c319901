"""Every model family through the library path: tiny build, image-only processor, scoring, one train step.

Per family: a batch of four responses to two images (each twice, as GRPO repeats a prompt), one of
them non-square, so that InternVL cuts it into several tiles; every signal under every
counterfactual is the same whole and in chunks of one response, changing the pixels changes the
scores in chunks too, a counterfactual changes nothing but the image, and the repeated-image hook
changes no score.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tokencredit.algorithms import get_algorithm
from tokencredit.counterfactual import COUNTERFACTUALS, PIXEL_PERTURBATIONS, counterfactual_batch, counterfactual_inputs, real_inputs
from tokencredit.dataset import load_split
from tokencredit.families import FAMILIES, family_named, family_of
from tokencredit.models import load_policy
from tokencredit.params import MethodSpec, ModelParams, ScoringParams, TrainParams
from tokencredit.repeated_images import encode_every_image, encode_repeated_images_once
from tokencredit.signals import LABEL_SIGNALS, SIGNALS, score_policy
from tokencredit.tiny_vlm import build_base
from tokencredit.training import build_trainer
from tokencredit.weighting import build_weighting, default_counterfactual, registered, required_signals

SCORED = set(SIGNALS) - LABEL_SIGNALS
# Up to three 84-px tiles or tokens' worth of pixels: InternVL cuts the 168 x 84 image into two tiles and a thumbnail.
PARAMS = {"num_layers": 4, "min_pixels": 84 * 84, "max_pixels": 3 * 84 * 84}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_world(request, tiny_world, tmp_path_factory):
    """(family, model params, data dir, tiny base dir) for each family."""
    data_dir, _ = tiny_world
    model_params = ModelParams(family=request.param, **PARAMS)
    train = load_split(data_dir, "train")
    base = tmp_path_factory.mktemp(request.param) / "base"
    build_base(model_params, [*train["question"], *train["target"]], base)
    return family_named(request.param), model_params, data_dir, base


def picture(width: int, height: int, seed: int) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8))


PROMPT = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many red circles are there?"}]}]


def make_batch(model, processor, layout) -> tuple[dict, list[dict]]:
    """TRL's batch layout: left-padded prompts with images A, A, B, B (B non-square), random completions."""
    images = [picture(84, 84, 0), picture(84, 84, 0), picture(168, 84, 1), picture(168, 84, 1)]
    text = processor.apply_chat_template([PROMPT] * 4, add_generation_prompt=True, tokenize=False)
    enc = processor(text=text, images=[[im] for im in images], padding=True, return_tensors="pt")
    g = torch.Generator().manual_seed(0)
    completion_ids = torch.randint(20, model.config.get_text_config().vocab_size - 8, (4, 6), generator=g)
    completion_mask = torch.ones_like(completion_ids)
    completion_mask[1, 4:] = completion_mask[3, 5:] = 0
    batch = {
        "prompt_ids": enc["input_ids"],
        "prompt_mask": enc["attention_mask"],
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "pixel_values": enc["pixel_values"],
    }
    if layout.grid_key:
        batch[layout.grid_key] = enc[layout.grid_key]
    return batch, [{"prompt": PROMPT}] * 4


def with_counterfactual(batch, inputs, processor, layout, kind):
    return {**batch, **counterfactual_batch(kind, batch, inputs, processor, torch.Generator().manual_seed(0), layout)}


def test_family_scores_every_signal_whole_and_in_chunks(family_world):
    family, model_params, _, base = family_world
    model, processor = load_policy(base, model_params, device="cpu")
    assert family_of(model.config) is family
    layout = family.patch_layout(processor)
    batch, inputs = make_batch(model, processor, layout)
    if layout.grid_key is None:  # InternVL: the non-square image is several tiles, and no grid says so
        assert len(batch["pixel_values"]) > 4
    names = {type(m).__name__ for m in model.modules()}
    assert set(family.decoder_layers + family.vision_blocks) <= names  # what FSDP wraps exists

    for kind in COUNTERFACTUALS:
        full_batch = with_counterfactual(batch, inputs, processor, layout, kind)
        needs = SCORED
        whole = score_policy(model, full_batch, needs, counterfactual=kind)
        chunked = score_policy(model, full_batch, needs, counterfactual=kind, batch_size=1)
        for name in needs:
            torch.testing.assert_close(getattr(chunked, name), getattr(whole, name), rtol=1e-4, atol=1e-5, msg=f"{kind} {name}")
        assert not torch.allclose(whole.logp, whole.logp_cf), kind  # the counterfactual image matters

        # The counterfactual changes only the image: same tokens, mask and positions, other pixels.
        real, cf = real_inputs(model, full_batch), counterfactual_inputs(model, full_batch, kind)
        if kind in PIXEL_PERTURBATIONS:
            for key in ("input_ids", "attention_mask", "position_ids"):
                assert torch.equal(cf[key], real[key]), (kind, key)
            assert cf["pixel_values"].shape == real["pixel_values"].shape and not torch.equal(cf["pixel_values"], real["pixel_values"])
        elif kind == "mask_visual_attention":
            image = real["input_ids"] == family.image_token_id(model.config)
            assert torch.equal(real["attention_mask"] - cf["attention_mask"], image.long())
        elif kind == "salient_value_mean":  # the real inputs: the change is inside the attention layers
            assert all(torch.equal(cf[key], real[key]) for key in real if real[key] is not None), kind
        else:  # drop_image: the same prompt text without the image's tokens
            decode = processor.tokenizer.batch_decode
            assert decode(full_batch["text_prompt_ids"], skip_special_tokens=True) == decode(batch["prompt_ids"], skip_special_tokens=True)

        # Every method's weights from these signals, with the method's own counterfactual.
        for method in registered():
            if default_counterfactual(method) in (kind, None) and not required_signals(method) & LABEL_SIGNALS:
                w = build_weighting(method)(whole, torch.randn(4, generator=torch.Generator().manual_seed(1)))
                assert torch.isfinite(w).all() and (w >= 0).all() and (w[~whole.mask] == 0).all(), (kind, method)

    # Other pixels, other scores, also when each response is scored alone (its pixels sliced, never dropped).
    other = {**batch, "pixel_values": batch["pixel_values"].flip(0) if layout.grid_key is None else -batch["pixel_values"]}
    for size in (None, 1):
        a, b = (score_policy(model, x, {"entropy"}, batch_size=size).logp for x in (batch, other))
        assert ((a - b).abs().amax(1) > 1e-4).all(), size

    # attn_image, recomputed from each layer's q and k, is eager attention's mass on the image keys
    # (Qwen3.5: its gated q_proj and partial rotary; InternVL: 1-D positions).
    attn = score_policy(model, batch, {"attn_image"}, attention_layers=[-1]).attn_image
    model.set_attn_implementation("eager")
    inputs, n = real_inputs(model, batch), batch["completion_ids"].shape[1]
    with torch.no_grad():
        weights = model.model(**inputs, output_attentions=True, use_cache=False).attentions[-1][:, :, -n - 1 : -1]
    image = (inputs["input_ids"] == family.image_token_id(model.config)).float()
    eager = torch.einsum("bhqk,bk->bq", weights.float(), image) / weights.shape[1]
    torch.testing.assert_close(attn[whole.mask], eager[whole.mask], rtol=1e-4, atol=1e-5)

    # Repeated images are encoded once (load_policy hooks the tower): same scores as encoding each.
    seen = []  # pixel rows (tiles) reaching the tower, after the hook merged the repeats

    def count(module, args, kwargs):
        seen.append(len(args[0] if args else kwargs.get("pixel_values", kwargs.get("hidden_states"))))

    handle = family.vision_tower(model).register_forward_pre_hook(count, with_kwargs=True)
    hooked = score_policy(model, batch, {"entropy"}).logp
    handle.remove()
    assert 2 * seen[0] == len(batch["pixel_values"])  # A and B once each
    encode_every_image(model)
    torch.testing.assert_close(score_policy(model, batch, {"entropy"}).logp, hooked, rtol=1e-5, atol=1e-6)
    encode_repeated_images_once(model)


def alternating_reward(completion_ids, **_):
    return [float(i % 2) for i in range(len(completion_ids))]  # mixed in every group of 4


def test_family_trains_one_step(family_world, tmp_path):
    """build tiny -> generate -> score (VPPO: patch-blackened counterfactual, scored in chunks) -> one update."""
    _, model_params, data_dir, base = family_world
    model, processor = load_policy(base, model_params, device="cpu")
    train = TrainParams(max_steps=1, prompts_per_step=2, num_generations=4, max_completion_length=8, micro_batch_size=4, save_steps=100)
    trainer = build_trainer(
        model, processor, load_split(data_dir, "train"), data_dir, train, MethodSpec(weighting="vppo"), ScoringParams(),
        get_algorithm("grpo"), 0, tmp_path,
    )  # fmt: skip
    # A random policy earns no reward: a reward with variance in every group gives the update advantages.
    trainer.reward_funcs = [alternating_reward] * len(trainer.reward_funcs)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters())
    logged = trainer.state.log_history[0]
    assert np.isfinite(logged["loss"]) and "weights/weight_mean" in logged


def test_family_is_detected_and_a_real_checkpoints_processor_loads(family_world, tmp_path):
    """A real checkpoint names the full processor (its video half needs torchvision): the family loads it image-only."""
    family, _, _, base = family_world
    real = tmp_path / "real"
    real.mkdir()
    for file in base.iterdir():
        data = file.read_bytes()
        if file.name in ("processor_config.json", "tokenizer_config.json"):
            data = data.replace(b"ImageOnly", b"")  # e.g. ImageOnlyInternVLProcessor -> InternVLProcessor
        (real / file.name).write_bytes(data)
    assert b"ImageOnly" not in (real / "processor_config.json").read_bytes()
    model, processor = load_policy(real, device="cpu")  # model.family: auto
    assert family_of(model.config) is family and processor.image_processor is not None
    assert family_named("auto", model.config) is family
    wrong = next(name for name in FAMILIES if name != family.name)
    with pytest.raises(ValueError, match="model.family is"):
        family_named(wrong, model.config)
    with pytest.raises(ValueError, match="model.family: unknown family 'llava'"):
        family_named("llava")


def test_a_family_the_installed_transformers_lacks_is_left_out_and_says_so_when_named():
    # As on a GPU machine with an older transformers: the other families still load.
    code = r"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.startswith("transformers.models.qwen3_5"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Block())
from tokencredit.families import FAMILIES, family_named
assert sorted(FAMILIES) == ["internvl", "qwen2_5_vl", "qwen3_vl"], sorted(FAMILIES)
try:
    family_named("qwen3_5")
except ValueError as err:
    print(err)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "model.family: 'qwen3_5' needs what the installed transformers lacks" in out
