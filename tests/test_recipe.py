"""Method recipes (issue 22): the auxiliary losses and the rollout transform against their authors' code,
and the recipe's checks.

tests/golden/aux_losses.json holds fixed inputs and the numbers the authors' own functions give on
them (`_source` names repository, commit, file and function; the scratch runs are not committed).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tokencredit.counterfactual import diffusion_noised_pixel_values, noise_fraction, noise_step, vp_diffusion_noise
from tokencredit.losses import LossInputs, build_loss, registered_losses
from tokencredit.losses.dvrp import dvrp_terms
from tokencredit.params import MethodSpec, _default_methods
from tokencredit.recipe import resolve
from tokencredit.transforms import TransformContext, build_transform, image_parts

GOLDEN = json.loads((Path(__file__).parent / "golden" / "aux_losses.json").read_text())


def _loss_inputs() -> tuple[LossInputs, torch.Tensor]:
    raw = {key: torch.tensor(value) for key, value in GOLDEN["inputs"].items()}
    logps = raw["logps"].clone().requires_grad_(True)
    mask = raw["mask"].float()
    inputs = LossInputs(
        logps=logps, old_logps=raw["old_logps"], advantages=raw["advantages"], mask=mask, tokens=mask.sum(),
        signals={"logp_cf": raw["logp_cf"]},
    )  # fmt: skip
    return inputs, logps


@pytest.mark.parametrize(
    "loss, case",
    [("papo", "default"), ("papo", "double_entropy"), ("kl_cov", "default"), ("kl_cov", "ratio_0.3"), ("cfpo", "default"), ("cfpo", "dapo")],
)
def test_aux_loss_value_and_gradient_match_the_authors_code(loss, case):
    golden = GOLDEN[loss][case]
    inputs, logps = _loss_inputs()
    value = build_loss(loss, **golden["hparams"])(inputs)
    value.backward()
    torch.testing.assert_close(value.detach(), torch.tensor(golden["value"]), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(logps.grad, torch.tensor(golden["grad"]), rtol=1e-5, atol=1e-7)
    assert logps.grad.abs().sum() > 0


def test_papo_kl_is_clamped_as_verl_and_pushes_away_from_the_masked_view():
    """Token (0, 0) has KL far above verl's clamp of 10: no gradient there; elsewhere −γ·KL grows the gap."""
    inputs, logps = _loss_inputs()
    build_loss("papo")(inputs).backward()
    assert logps.grad[0, 0] == 0
    assert (logps.grad[inputs.mask == 0] == 0).all()


def test_noisy_rollout_schedule_and_noise_match_the_fork():
    golden = GOLDEN["noisy_rollout"]
    total = golden["schedule"]["total_steps"]
    for step, noise_t, beta in golden["schedule"]["rows"]:
        t = noise_step(step / total, 450.0, 60.0, 1 / 3, 1000.0)
        assert t == pytest.approx(noise_t, abs=1e-6) and noise_fraction(t) == pytest.approx(beta, abs=1e-9)
    image = torch.tensor(golden["image"], dtype=torch.float32)
    for case in golden["noised"]:
        noise = np.random.default_rng(case["seed"]).standard_normal(size=image.shape, dtype=np.float32)
        ours = vp_diffusion_noise(image, case["beta"], torch.from_numpy(noise), rounding="floor")
        assert torch.equal(ours, torch.tensor(case["noised"], dtype=torch.float32))


def _prompts(n_groups: int, group: int) -> list:
    images = [Image.fromarray(np.full((8, 8, 3), 40 * (g + 1), dtype=np.uint8)) for g in range(n_groups)]
    return [
        [{"role": "user", "content": [{"type": "image", "image": images[g]}, {"type": "text", "text": "how many?"}]}]
        for g in range(n_groups) for _ in range(group)
    ]  # fmt: skip


def test_noisy_rollout_noises_the_second_half_of_each_group_and_keeps_the_clean_prompts():
    prompts = _prompts(2, 4)
    originals = [image_parts(p)[0]["image"] for p in prompts]
    out = build_transform("noisy_rollout")(prompts, TransformContext(torch.Generator().manual_seed(0), progress=0.0, group_size=4))
    changed = [not np.array_equal(np.asarray(image_parts(p)[0]["image"]), np.asarray(o)) for p, o in zip(out, originals)]
    assert changed == [False, False, True, True] * 2
    assert all(image_parts(p)[0]["image"] is o for p, o in zip(prompts, originals))  # the clean prompts are untouched
    late = build_transform("noisy_rollout")(prompts, TransformContext(torch.Generator().manual_seed(0), progress=1.0, group_size=4))
    early_gap = np.abs(np.asarray(image_parts(out[2])[0]["image"], dtype=float) - 40).mean()
    late_gap = np.abs(np.asarray(image_parts(late[2])[0]["image"], dtype=float) - 40).mean()
    assert late_gap < early_gap  # the noise is annealed away


def test_recipe_lists_its_components_and_shares_one_counterfactual():
    methods = _default_methods()
    papo = resolve("papo", methods["papo"])
    assert papo.components() == {"weighting": "uniform", "loss": "papo", "counterfactual": "patch_blackening"}
    assert papo.loss_needs == {"logp_cf"} and papo.counterfactual_options == {"black_prob": 0.6}
    cfpo = resolve("cfpo_dapo", methods["cfpo_dapo"])  # an in-model counterfactual, its threshold passed on
    assert cfpo.components() == {"weighting": "uniform", "loss": "cfpo (gamma=0.01, ori_entropy_coef=0.03)", "counterfactual": "salient_value_mean"}
    assert cfpo.counterfactual_options == {"threshold_std": 2.0}
    both = resolve("x", MethodSpec(weighting="vppo", loss={"name": "papo", "hparams": {"gamma": 0.01}}, transform={"name": "noisy_rollout"}))
    assert both.components() == {
        "weighting": "vppo", "loss": "papo (gamma=0.01)", "transform": "noisy_rollout", "counterfactual": "patch_blackening"
    }  # fmt: skip
    assert both.needs == {"vis_k3", "logp_cf"}
    with pytest.raises(ValueError, match=r"methods.x: weighting and loss use different counterfactual inputs"):
        resolve("x", MethodSpec(weighting="tor", loss={"name": "papo"}))
    resolve("x", MethodSpec(weighting="tor", loss={"name": "papo"}, counterfactual="drop_image"))


def test_recipe_errors_name_the_component():
    assert registered_losses() == ["cfpo", "dvrp", "kl_cov", "papo"]
    with pytest.raises(ValueError, match=r"methods.x.loss: unknown loss 'nope'; registered: \['cfpo', 'dvrp', 'kl_cov', 'papo'\]"):
        resolve("x", MethodSpec(loss={"name": "nope"}))
    with pytest.raises(ValueError, match=r"methods.x.loss: .*gamma=-1"):
        resolve("x", MethodSpec(loss={"name": "papo", "hparams": {"gamma": -1}}))
    with pytest.raises(ValueError, match=r"methods.x.transform: unknown hyperparameter\(s\) \['sigma'\]"):
        resolve("x", MethodSpec(transform={"name": "noisy_rollout", "hparams": {"sigma": 1}}))


def test_dvrp_terms_and_noise_schedule_match_the_fork():
    golden = GOLDEN["dvrp"]
    inputs, logps = _loss_inputs()
    value = dvrp_terms(logps, inputs.signals["logp_cf"], inputs.old_logps, inputs, **golden["hparams"])
    value.backward()
    torch.testing.assert_close(value.detach(), torch.tensor(golden["value"]), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(logps.grad, torch.tensor(golden["grad"]), rtol=1e-5, atol=1e-7)
    total = golden["schedule"]["total_steps"]
    for step, noise_t, beta in golden["schedule"]["rows"]:
        t = noise_step(step / total, 500.0, 10.0, 0.5, 1000.0)
        assert t == pytest.approx(noise_t, abs=1e-6) and noise_fraction(t) == pytest.approx(beta, abs=1e-9)


def test_diffusion_noised_pixel_values_noise_each_pixel_once_in_8_bits():
    """Rows of a still image hold the same frame twice (temporal_patch_size 2): both copies get the same noise."""
    mean, std = [0.48, 0.46, 0.41], [0.27, 0.26, 0.28]
    frame = torch.randint(0, 256, (4, 3, 1, 16), generator=torch.Generator().manual_seed(0)).float()
    pixels = ((frame.expand(4, 3, 2, 16) / 255.0 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)).reshape(4, -1)
    noised = diffusion_noised_pixel_values(pixels, mean, std, 0.2, torch.Generator().manual_seed(1))
    values = (noised.reshape(4, 3, 2, 16) * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)) * 255.0
    torch.testing.assert_close(values[:, :, 0], values[:, :, 1])
    torch.testing.assert_close(values, values.round(), atol=1e-3, rtol=0)  # 8-bit values
    assert (values - frame).abs().mean() > 5  # noised


def test_kl_cov_random_twin_selects_as_many_tokens_at_random():
    inputs, _ = _loss_inputs()
    from tokencredit.losses.kl_cov import random_tokens, top_covariance

    by_covariance = top_covariance(inputs.advantages, inputs.logps, inputs.mask, 0.3)
    draws = [random_tokens(inputs.mask, 0.3, torch.Generator().manual_seed(seed)) for seed in range(5)]
    assert all(d.sum() == by_covariance.sum() == 3 and not (d & ~inputs.mask.bool()).any() for d in draws)
    assert len({tuple(d.flatten().tolist()) for d in draws}) > 1
    twin = build_loss("kl_cov", kl_cov_ratio=0.3, random=True)(replace(inputs, generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(twin) and twin >= 0
