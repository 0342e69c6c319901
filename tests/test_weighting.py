"""Weighting methods: each pinned on hand-checkable tensors, plus properties shared by all."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tokencredit.params import MethodSpec, _default_methods
from tokencredit.recipe import resolve
from tokencredit.signals import MissingSignalError, TokenSignals
from tokencredit.weighting import (
    Context,
    Layout,
    build_weighting,
    default_counterfactual,
    describe,
    registered,
    required_signals,
    weight_stats,
)
from tokencredit.weighting.vppo import trajectory_scale

T_ = torch.tensor


def signals(mask, **values) -> TokenSignals:
    mask = T_(mask, dtype=torch.bool)
    return TokenSignals(mask=mask, **{k: T_(v, dtype=torch.float32) * mask for k, v in values.items()})


def weigh(name, s, **hparams):
    return build_weighting(name, **hparams)(s, torch.zeros(s.mask.shape[0]))


# Registry and validation


def test_registry_lists_every_method_with_its_needs():
    assert registered() == [
        "atrl", "cgpo", "clip_cov", "entropy_topk", "oracle_first_error", "oracle_roles", "pepo", "pgpo", "random_first_error",
        "random_tokens", "tor", "tor_k3", "tor_top_p", "uniform", "vepo", "vgpo", "vppo",
    ]  # fmt: skip
    assert required_signals("vepo") == {"vis_jsd", "entropy", "entropy_cf"} and default_counterfactual("vepo") == "pixel_value_noise"
    assert required_signals("pepo") == {"hidden_sim", "entropy"} and required_signals("vgpo") == {"hidden_sim_last"}
    assert required_signals("tor") == {"entropy", "vis_absdiff"}
    assert required_signals("vppo") == required_signals("pgpo") == {"vis_k3"}
    assert required_signals("atrl") == {"attn_image"}
    assert required_signals("uniform") == set()
    assert default_counterfactual("tor") == "drop_image"
    assert default_counterfactual("vppo") == "patch_blackening"
    assert default_counterfactual("pgpo") == "mask_visual_attention"
    assert default_counterfactual("atrl") is None and default_counterfactual("entropy_topk") is None


def test_unknown_names_and_bad_hparams_are_named():
    with pytest.raises(ValueError, match=r"unknown weighting 'nope'; registered: \['atrl'"):
        build_weighting("nope")
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['rho'\] for weighting 'tor'"):
        build_weighting("tor", rho=0.3)
    with pytest.raises(ValueError, match=r"rho=1.5 must be in \(0.0, 1.0\]"):
        build_weighting("entropy_topk", rho=1.5)
    with pytest.raises(ValueError, match="gamma_p=-0.5"):
        build_weighting("tor", gamma_p=-0.5)
    with pytest.raises(ValueError, match="normalize='no' must be a bool"):
        build_weighting("pgpo", normalize="no")
    with pytest.raises(ValueError, match="k=True must be a float"):
        build_weighting("vppo", k=True)
    with pytest.raises(ValueError, match="anchor_fraction=0"):
        build_weighting("atrl", anchor_fraction=0)


def test_resolve_names_the_params_entry():
    for name, spec in _default_methods().items():
        resolve(name, spec)
    with pytest.raises(ValueError, match="methods.x.weighting: unknown weighting 'nope'"):
        resolve("x", MethodSpec(weighting="nope"))
    with pytest.raises(ValueError, match="methods.x.hparams: .*beta_min=2"):
        resolve("x", MethodSpec(weighting="vppo", hparams={"beta_min": 2}))
    with pytest.raises(ValueError, match="methods.x.counterfactual: weighting 'uniform' uses no counterfactual"):
        resolve("x", MethodSpec(weighting="uniform", counterfactual="drop_image"))
    resolve("x", MethodSpec(weighting="tor", counterfactual="mask_visual_attention"))


def test_missing_signal_and_bad_advantages_are_clear():
    s = signals([[1, 1]], entropy=[[0.1, 0.2]])
    with pytest.raises(MissingSignalError, match="'vis_absdiff' is missing"):
        weigh("tor", s)
    with pytest.raises(ValueError, match="advantages have shape"):
        build_weighting("uniform")(s, torch.zeros(2))


def test_weight_stats():
    mask = T_([[True, True, True, False]])
    stats = weight_stats(T_([[0.0, 1.0, 2.0, 9.0]]), mask)
    assert stats == pytest.approx({"frac_selected": 2 / 3, "frac_boosted": 1 / 3, "weight_mean": 1.0, "weight_max": 2.0})
    assert weight_stats(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool))["weight_mean"] == 0.0


# Methods on hand-checkable tensors


def test_uniform_is_the_mask():
    s = signals([[1, 1, 0], [1, 0, 0]])
    assert torch.equal(weigh("uniform", s), T_([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))


def test_entropy_topk_keeps_ceil_rho_n_and_rescales():
    # 8 valid tokens; rho 0.25 keeps 2 (entropies 0.9 and 0.8), each weighted 8 / 2
    s = signals([[1, 1, 1, 1, 0], [1, 1, 1, 1, 0]], entropy=[[0.1, 0.9, 0.2, 0.3, 5.0], [0.8, 0.4, 0.5, 0.6, 5.0]])
    expected = T_([[0, 4.0, 0, 0, 0], [4.0, 0, 0, 0, 0]])
    assert torch.equal(weigh("entropy_topk", s, rho=0.25), expected)
    # 0.3 * 10 lands a hair above 3 in floating point: still 3 kept (which 3 of the tied tokens: random)
    s = signals([[1] * 10], entropy=[[1.0] * 10])
    w = weigh("entropy_topk", s, rho=0.3)
    assert (w > 0).sum() == 3 and w.max() == pytest.approx(10 / 3)
    assert weigh("entropy_topk", s, rho=0.2).sum() == pytest.approx(10.0)  # loss mass = #valid


def test_tor_gammas_on_reasoning_and_perception_sets():
    # 10 valid tokens, rho 0.3 -> 3 per set. T_r = {0, 1, 2} by entropy; T_p = {2, 3, 4} by absdiff
    s = signals(
        [[1] * 10 + [0]],
        entropy=[[0.9, 0.8, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 9.0]],
        vis_absdiff=[[0.0, 0.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 9.0]],
    )
    assert torch.equal(weigh("tor", s), T_([[1.0, 1.0, 1.0, 0.5, 0.5, 0, 0, 0, 0, 0, 0]]))
    assert torch.equal(weigh("tor", s, gamma_p=0.0), T_([[1.0, 1.0, 1.0] + [0.0] * 8]))
    # gamma_r = 0 drops the overlap T_p ∩ T_r (token 2); perception-only (rho_r = 0) trains all of T_p
    assert torch.equal(weigh("tor", s, gamma_r=0.0), T_([[0.0, 0.0, 0.0, 0.5, 0.5] + [0.0] * 6]))
    assert torch.equal(weigh("tor", s, rho_r=0.0), T_([[0.0, 0.0, 0.5, 0.5, 0.5] + [0.0] * 6]))
    assert torch.equal(weigh("tor", s, rho_r=0.0, gamma_p=2.0), T_([[0.0, 0.0, 2.0, 2.0, 2.0] + [0.0] * 6]))


def test_tor_thresholds_are_over_the_batch():
    # all of response 0's scores beat response 1's: the batch-wide top 50 % is response 0
    s = signals([[1, 1], [1, 1]], entropy=[[5.0, 6.0], [1.0, 2.0]], vis_absdiff=[[0.0, 0.0], [0.0, 0.0]])
    assert torch.equal(weigh("tor", s, rho_r=0.5, rho_p=0.0), T_([[1.0, 1.0], [0.0, 0.0]]))


def test_vppo_gates_ceil_k_n_per_response_and_alphas_average_one():
    s = signals(
        [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]],
        vis_k3=[[0.5, 0.1, 0.4, 0.2, 0.3], [0.0, 0.3, 0.0, 0, 0], [0.2, 0.2, 0.2, 0.2, 0]],
    )
    w = weigh("vppo", s)  # k 0.4, beta_min 0.9
    kept = w > 0
    assert kept.sum(1).tolist() == [2, 2, 2]  # ceil(0.4*5), ceil(0.4*3), ceil(0.4*4)
    assert kept[0].tolist() == [True, False, True, False, False]
    assert kept[1, 1] and kept[1, :3].sum() == 2  # token 1, and one of the two tied at 0.0
    # mean scores 0.3, 0.1, 0.2 -> n = 1, 0, 0.5; mu = 0.5; beta_max = 0.9 + 0.1 / 0.5 = 1.1
    alpha = w.amax(1)
    assert alpha.tolist() == pytest.approx([1.1, 0.9, 1.0])
    assert alpha.mean().item() == pytest.approx(1.0)
    # equal mean scores: alpha = 1
    flat = signals([[1, 1], [1, 1]], vis_k3=[[0.1, 0.3], [0.2, 0.2]])
    assert torch.equal(weigh("vppo", flat, k=1.0), T_([[1.0, 1.0], [1.0, 1.0]]))


def test_vppo_ignores_empty_responses_in_batch_statistics():
    s = signals([[1, 1], [0, 0], [1, 1]], vis_k3=[[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    w = weigh("vppo", s, k=1.0, beta_min=0.5)
    # n = 0 and 1, mu = 0.5, beta_max = 1.5
    assert torch.allclose(w, T_([[0.5, 0.5], [0.0, 0.0], [1.5, 1.5]]))


def test_pgpo_gate_and_mass_conservation():
    # log1p(e^x - 1) = x: scores 0, 0.2, 0.6, 1.0 normalise to I = 0, 0.2, 0.6, 1
    raw = [math.expm1(x) for x in (0.0, 0.2, 0.6, 1.0)]
    s = signals([[1, 1, 1, 1, 0]], vis_k3=[raw + [7.0]])
    omega = weigh("pgpo", s, normalize=False)
    # tau 0.4, beta 2: 0 / 0.4, 0.2 / 0.4, 1 + 2 * 0.2 / 0.6, 1 + 2 * 0.6 / 0.6
    assert omega[0].tolist() == pytest.approx([0.0, 0.5, 1 + 2 / 3, 3.0, 0.0], abs=1e-6)
    w = weigh("pgpo", s)
    assert w.sum().item() == pytest.approx(4.0)
    assert torch.allclose(w, omega * 4 / omega.sum(), atol=1e-6)
    # suppression-only: nothing above 1 before normalising; boosting-only: nothing below 1
    assert weigh("pgpo", s, tau=1.0, normalize=False).max() <= 1.0 + 1e-6
    assert (weigh("pgpo", s, tau=0.0, normalize=False)[s.mask] >= 1.0).all()


def test_pgpo_sums_to_each_response_length():
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(6, 9, generator=g) > 0.3
    s = TokenSignals(mask=mask, vis_k3=torch.rand(6, 9, generator=g) * 3 * mask)
    w = weigh("pgpo", s)
    assert torch.allclose(w.sum(1), mask.sum(1).float(), atol=1e-4)


def test_pgpo_constant_scores_fall_back_to_uniform():
    # normalized or not: equal scores carry no contrast, every token keeps weight 1
    s = signals([[1, 1, 1], [1, 0, 0]], vis_k3=[[0.2, 0.2, 0.2], [0.4, 0, 0]])
    assert torch.equal(weigh("pgpo", s), s.mask.float())
    assert torch.equal(weigh("pgpo", s, normalize=False), s.mask.float())


def test_atrl_anchor_band_weights_and_ablation():
    # 10 tokens: anchors = ceil(0.15 * 10) = 2 highest attention (tokens 3 and 7)
    attn = [[0.1, 0.2, 0.1, 0.9, 0.1, 0.2, 0.1, 0.8, 0.1, 0.1]]
    s = signals([[1] * 10], attn_image=attn)
    raw = weigh("atrl", s, normalize=False)
    assert raw[0].tolist() == pytest.approx([0.5, 0.5, 0.5, 1.5, 0.5, 0.5, 0.5, 1.5, 0.5, 0.5])
    w = weigh("atrl", s)
    assert w.sum().item() == pytest.approx(10.0)
    assert torch.allclose(w, raw * 10 / raw.sum())
    low = weigh("atrl", s, low_connectivity_only=True)
    assert low[0, 3] == low[0, 7] == 0.0
    assert low[0].tolist() == pytest.approx([1.25, 1.25, 1.25, 0, 1.25, 1.25, 1.25, 0, 1.25, 1.25])


def test_atrl_selects_per_response():
    s = signals([[1, 1, 1, 1], [1, 1, 1, 1]], attn_image=[[0.9, 0.8, 0.7, 0.6], [0.1, 0.2, 0.05, 0.0]])
    anchors = weigh("atrl", s, anchor_fraction=0.25, normalize=False) == 1.5
    assert anchors.tolist() == [[True, False, False, False], [False, True, False, False]]


# Properties shared by every method

VARIANTS = [(name, {}) for name in registered()] + [(spec.weighting, dict(spec.hparams)) for spec in _default_methods().values()]


@st.composite
def batches(draw):
    b, t = draw(st.integers(1, 5)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**16))
    mode = draw(st.sampled_from(["random", "constant", "no_tokens", "empty_rows", "one_token"]))
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(b, t, generator=g) > 0.3
    if mode == "no_tokens":
        mask[:] = False
    elif mode == "empty_rows":
        mask[::2] = False
    elif mode == "one_token":
        mask[:] = False
        mask[:, 0] = True
    values = {}
    for name in ("entropy", "vis_k3", "vis_absdiff", "attn_image", "vis_jsd", "entropy_cf", "logp", "hidden_sim", "hidden_sim_last", "entropy_top_p"):
        v = torch.full((b, t), 0.7) if mode == "constant" else torch.rand(b, t, generator=g) * 5
        if name in ("logp", "hidden_sim", "hidden_sim_last"):  # log-probs and cosines go negative
            v = -v if name == "logp" else v / 2.5 - 1.0
        values[name] = v * mask
    values["role"] = torch.randint(0, 3, (b, t), generator=g).float() * mask
    values["on_target"] = (torch.arange(t).expand(b, t) < torch.randint(0, t + 1, (b, 1), generator=g)).float() * mask  # a correct prefix
    return TokenSignals(mask=mask, **values), torch.randn(b, generator=g)


@settings(max_examples=60, deadline=None)
@given(batch=batches(), variant=st.sampled_from(VARIANTS))
def test_weights_are_finite_nonnegative_and_zero_on_padding(batch, variant):
    s, advantages = batch
    name, hparams = variant
    w = build_weighting(name, **hparams)(s, advantages)
    assert w.shape == s.mask.shape and w.dtype == torch.float32
    assert torch.isfinite(w).all()
    assert (w >= 0).all()
    assert (w[~s.mask] == 0).all()
    stats = weight_stats(w, s.mask)
    assert all(math.isfinite(v) for v in stats.values())


@settings(max_examples=30, deadline=None)
@given(batch=batches())
def test_mass_conserving_methods_sum_to_lengths(batch):
    s, advantages = batch
    lengths = s.mask.sum(1).float()
    for name in ("pgpo", "atrl"):
        w = build_weighting(name)(s, advantages)
        assert torch.allclose(w.sum(1), lengths, atol=1e-3)


def test_atrl_low_connectivity_only_never_weights_anchors():
    # one-token responses: the token is the anchor, so the ablation leaves nothing to train
    s = signals([[1, 0], [1, 1]], attn_image=[[0.3, 0.0], [0.1, 0.2]])
    w = weigh("atrl", s, anchor_fraction=0.5, low_connectivity_only=True)
    assert torch.equal(w, T_([[0.0, 0.0], [2.0, 0.0]]))


@settings(max_examples=40, deadline=None)
@given(batch=batches(), fraction=st.floats(0.01, 1.0))
def test_selection_counts_are_ceilings(batch, fraction):
    s, advantages = batch
    n_valid = int(s.mask.sum())
    kept = build_weighting("entropy_topk", rho=fraction)(s, advantages) > 0
    assert int(kept.sum()) == math.ceil(round(fraction * n_valid, 9))
    gated = build_weighting("vppo", k=fraction)(s, advantages) > 0
    assert gated.sum(1).tolist() == [math.ceil(round(fraction * int(n), 9)) for n in s.mask.sum(1)]


# Method review findings (issue 12)


def test_tor_perception_only_variant_trains_all_of_the_perception_set():
    # Correlated signals: the tokens with most entropy are also the most image-sensitive.
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(8, 40, dtype=torch.bool)
    entropy = torch.rand(8, 40, generator=g)
    s = TokenSignals(mask=mask, entropy=entropy, vis_absdiff=entropy + 0.1 * torch.rand(8, 40, generator=g))
    spec = _default_methods()["tor_perception_only"]
    w = build_weighting(spec.weighting, **spec.hparams)(s, torch.zeros(8))
    perception = weigh("tor", s, rho_r=0.0, gamma_p=1.0) > 0  # T_p alone
    assert perception.sum() == math.ceil(0.3 * 320)
    assert torch.equal(w > 0, perception) and torch.all(w[perception] == 0.5)


def test_ties_are_broken_at_random_and_reproducibly():
    s = signals([[1] * 50] * 4, entropy=[[1.0] * 50] * 4, attn_image=[[1.0] * 50] * 4, vis_k3=[[0.5] * 50] * 4)
    advantages = torch.zeros(4)
    for name in ("entropy_topk", "atrl", "vppo"):
        fn = build_weighting(name)

        def selected(seed):
            w = fn(s, advantages, Context(torch.Generator().manual_seed(seed)))
            return w == w.max()  # entropy_topk's kept tokens, AT-RL's anchors, VPPO's gated tokens

        first, again, other = selected(1), selected(1), selected(2)
        assert torch.equal(first, again) and not torch.equal(first, other), name
        # neither the earliest rows nor the earliest tokens take the tied selection
        positions = first.nonzero()[:, 1].float()
        assert positions.mean() > 10, name
    kept = build_weighting("entropy_topk", rho=0.25)(s, advantages, Context(torch.Generator().manual_seed(3))) > 0
    assert 0 < kept[0].sum() < 50 and kept.sum(1).min() > 0  # spread over the rows, not the first row


def test_pgpo_near_constant_rows_get_weight_one():
    # a row of zeros, and the same row with one token at 1e-9, or with a float-noise spread
    s = signals([[1, 1, 1, 1]] * 3, vis_k3=[[0.0, 0.0, 0.0, 0.0], [0.0, 1e-9, 0.0, 0.0], [2.0, 2.0 + 1e-5, 2.0, 2.0]])
    for hparams in ({}, {"normalize": False}, {"tau_quantile": True, "floor": 0.1, "normalize": False}):
        assert torch.equal(weigh("pgpo", s, **hparams), s.mask.float()), hparams
    # a real contrast is still gated
    s = signals([[1, 1, 1, 1]], vis_k3=[[0.0, 0.5, 0.0, 0.0]])
    assert weigh("pgpo", s)[0, 1] > 1.0


def development_code_weights(k3, mask, tau, beta):
    """PGPO's "vig" form in Yzk1114/EasyR1 at 6259f02, transcribed as the third-party fork
    zsxm1998/awesome-perception-aware-rlvr tests it (tests: _development_code_weights)."""
    scores = torch.log1p(k3) * mask
    low = scores.masked_fill(~mask, math.inf).amin(1, keepdim=True)
    high = scores.masked_fill(~mask, -math.inf).amax(1, keepdim=True)
    spread = torch.where(high - low > 1e-8, high - low, 1.0)
    level = ((scores - low) / spread).clamp(0, 1) * mask
    length = mask.sum(1)
    index = torch.minimum((length.float() * tau).long(), (length - 1).clamp(min=0))
    threshold = level.masked_fill(~mask, math.inf).sort(1).values.gather(1, index[:, None])
    low_mask = (level < threshold) & mask
    w = torch.where(low_mask, (level / (threshold + 1e-8)).clamp(min=0.1), 1 + beta * (level - threshold) / (1 - threshold + 1e-8))
    return w * mask


@pytest.mark.parametrize("tau", [0.2, 0.4, 0.7])
def test_pgpo_authorcode_variant_matches_the_development_code(tau):
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 21, (6,), generator=g)
    mask = torch.arange(20)[None, :] < lengths[:, None]
    d = (torch.randn(6, 20, generator=g) * 2).clamp(-20, 20)
    k3 = (torch.exp(d) - d - 1).clamp(0, 10) * mask
    spec = _default_methods()["pgpo_authorcode"]
    w = build_weighting(spec.weighting, **{**spec.hparams, "tau": tau})(TokenSignals(mask=mask, vis_k3=k3), torch.zeros(6))
    torch.testing.assert_close(w, development_code_weights(k3, mask, tau, 2.0), rtol=1e-5, atol=1e-6)
    assert (w[mask] >= 0.1).all()  # the floor


def test_vppo_trajectory_scale_is_bounded_by_its_micro_batch():
    # 1,024 responses, one image-dependent outlier: over the whole batch, alpha_max is about 100
    mask = torch.ones(1024, 4, dtype=torch.bool)
    scores = torch.full((1024, 4), 0.01)
    scores[3] = 5.0
    assert trajectory_scale(scores, mask, 0.9).max() > 100
    # the authors' scope: min/max per process step (128 rows), mean per micro-batch (8 rows)
    layout = Layout(micro_batch=8, step=128)
    alpha = trajectory_scale(scores, mask, 0.9, layout)
    assert alpha.max() <= 0.9 + 8 * (1 - 0.9) + 1e-5
    # mean 1 in the outlier's micro-batch; beta_min in the rest of its step (all n = 0 there, as in
    # the authors' code); 1 in the other steps, whose scores are all equal
    assert alpha.view(-1, 8).mean(1).tolist() == pytest.approx([1.0] + [0.9] * 15 + [1.0] * 112)
    # the method's default scope reads the layout's step and pools tas_rows (8) rows, whatever the
    # trainer's micro-batch; tas_scope="batch" ignores both
    s = TokenSignals(mask=mask, vis_k3=scores)
    context = Context(layout=layout)
    default = build_weighting("vppo", k=1.0)(s, torch.zeros(1024), context)
    assert default.max() == pytest.approx(1.7, abs=1e-5)
    torch.testing.assert_close(default, build_weighting("vppo", k=1.0)(s, torch.zeros(1024), Context(layout=Layout(micro_batch=4, step=128))))
    assert build_weighting("vppo", k=1.0, tas_rows=4)(s, torch.zeros(1024), context).max() == pytest.approx(1.3, abs=1e-5)
    assert build_weighting("vppo", k=1.0, tas_scope="batch")(s, torch.zeros(1024), context).max() > 100
    # the fork's scope: min/max over every row given, mean per tas_rows rows: beta_min outside the outlier's pool
    fork = build_weighting("vppo", k=1.0, tas_scope="global_range", tas_rows=4)(s, torch.zeros(1024), context)
    assert fork[:, 0].view(-1, 4).mean(1).tolist() == pytest.approx([1.0] + [0.9] * 255)
    assert fork.max() == pytest.approx(1.3, abs=1e-5)
    with pytest.raises(ValueError, match="tas_scope='device'"):
        build_weighting("vppo", tas_scope="device")
    with pytest.raises(ValueError, match="tas_rows=0"):
        build_weighting("vppo", tas_rows=0)


@settings(max_examples=40, deadline=None)
@given(batch=batches(), micro=st.integers(1, 5), beta_min=st.floats(0.0, 1.0))
def test_vppo_alpha_bound_holds_for_any_batch(batch, micro, beta_min):
    s, _ = batch
    alpha = trajectory_scale(s.vis_k3, s.mask, beta_min, Layout(micro_batch=micro, step=2 * micro))
    assert (alpha <= beta_min + micro * (1 - beta_min) + 1e-4).all()


def test_every_method_documents_its_counterfactual_scope_and_ties():
    import importlib

    for name in registered():
        facts = describe(name)
        assert set(facts) == {"counterfactual", "scope", "ties"} and all(facts.values())
        doc = importlib.import_module(f"tokencredit.weighting.{name}").__doc__
        for fact in ("Counterfactual:", "Scope:", "Ties:"):
            assert fact in doc, (name, fact)
    assert describe("pgpo")["counterfactual"] == "mask_visual_attention" and "micro-batch" in describe("vppo")["scope"]
    atrl_doc = importlib.import_module("tokencredit.weighting.atrl").__doc__
    assert "no extra forward" not in atrl_doc.lower() and "one extra forward" in atrl_doc


# Controls (issue 13): random twins and the ground-truth roles' ceiling


def context(seed):
    return Context(torch.Generator().manual_seed(seed))


def test_random_tokens_selects_ratio_of_the_batch_at_the_given_mass():
    s = signals([[1] * 7 + [0] * 3] * 4)  # 28 valid tokens
    w = build_weighting("random_tokens", ratio=0.2, normalize=True)(s, torch.zeros(4), context(0))
    assert int((w > 0).sum()) == math.ceil(0.2 * 28) and (w[~s.mask] == 0).all()
    assert torch.allclose(w[w > 0], torch.full((6,), 28 / 6)) and math.isclose(float(w[s.mask].mean()), 1.0, rel_tol=1e-6)
    again = build_weighting("random_tokens", ratio=0.2, normalize=True)(s, torch.zeros(4), context(0))
    other = build_weighting("random_tokens", ratio=0.2, normalize=True)(s, torch.zeros(4), context(1))
    assert torch.equal(w, again) and not torch.equal(w > 0, other > 0)  # the step's generator decides


def test_random_tokens_per_response_keeps_each_rows_count_and_mass():
    s = signals([[1] * 10, [1] * 5 + [0] * 5, [0] * 10])
    w = build_weighting("random_tokens", ratio=0.4, selected_weight=2.0, other_weight=0.5, per_response=True)(s, torch.zeros(3), context(3))
    assert (w == 2.0).sum(1).tolist() == [4, 2, 0] and (w == 0.5).sum(1).tolist() == [6, 3, 0]
    w = build_weighting("random_tokens", ratio=0.4, selected_weight=2.0, per_response=True, normalize=True)(s, torch.zeros(3), context(3))
    assert torch.allclose(w.sum(1), T_([10.0, 5.0, 0.0]))  # each response's weights sum to its length


@pytest.mark.parametrize(
    ("method", "twin"), [("entropy_topk", "random_entropy_topk"), ("atrl", "random_atrl"), ("vppo", "random_vppo")]
)
def test_random_twins_match_their_methods_sparsity_and_mass(method, twin):
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(16, 24, generator=g) > 0.2
    s = TokenSignals(mask=mask, entropy=torch.rand(16, 24, generator=g) * mask, attn_image=torch.rand(16, 24, generator=g) * mask,
                     vis_k3=torch.rand(16, 24, generator=g) * mask)  # fmt: skip
    spec = _default_methods()[twin]
    ours = build_weighting(method)(s, torch.zeros(16), context(0))
    theirs = build_weighting(spec.weighting, **spec.hparams)(s, torch.zeros(16), context(0))
    assert int((ours > 0).sum()) == int((theirs > 0).sum())
    assert math.isclose(float(ours[mask].mean()), float(theirs[mask].mean()), rel_tol=1e-3)  # VPPO: alpha averages 1 over responses, not tokens
    if method != "vppo":  # VPPO's trajectory scale varies the kept weight around 1; the twin keeps 1
        assert torch.allclose(ours[mask].sort().values, theirs[mask].sort().values, atol=1e-5)
    assert not torch.equal(ours, theirs)  # same amounts, other tokens


def test_oracle_roles_weights_by_ground_truth_role():
    # synthetic.ROLES: 0 perception, 1 reasoning, 2 format, 3 noise
    s = signals([[1, 1, 1, 1, 0]], role=[[0, 0, 1, 2, 0]])
    perception = _default_methods()["oracle_perception"]
    w = build_weighting(perception.weighting, **perception.hparams)(s, torch.zeros(1))
    assert torch.allclose(w, T_([[2.0, 2.0, 1.0, 1.0, 0.0]]) * 4 / 6)  # 2 : 1 : 1, mass-conserving
    reasoning = _default_methods()["oracle_reasoning"]
    w = build_weighting(reasoning.weighting, **reasoning.hparams)(s, torch.zeros(1))
    assert torch.equal(w, T_([[0.0, 0.0, 1.0, 0.0, 0.0]]))
    with pytest.raises(MissingSignalError, match="'role' is missing"):
        weigh("oracle_roles", signals([[1]], entropy=[[0.5]]))
    # 3 noise: weighted as format unless told otherwise (oracle_reasoning drops it with format)
    s = signals([[1, 1, 1, 1]], role=[[0, 1, 2, 3]])
    assert torch.equal(build_weighting(reasoning.weighting, **reasoning.hparams)(s, torch.zeros(1)), T_([[0.0, 1.0, 0.0, 0.0]]))
    denoise = build_weighting("oracle_roles", perception_weight=1.0, noise_weight=0.0, normalize=False)(s, torch.zeros(1))
    assert torch.equal(denoise, T_([[1.0, 1.0, 1.0, 0.0]]))


def test_oracle_first_error_pushes_down_only_errors_and_reinforces_only_correct_prefixes():
    # rows: wrong (A < 0) with its first error at token 2; lucky (A > 0) with an error at token 3; fully right (A > 0); A = 0
    s = signals([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]],
                on_target=[[1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])  # fmt: skip
    w = build_weighting("oracle_first_error")(s, T_([-1.0, 0.5, 0.5, 0.0]), context(0))
    assert torch.equal(w, T_([[0, 0, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]))
    with pytest.raises(MissingSignalError, match="'on_target' is missing"):
        weigh("oracle_first_error", signals([[1]], role=[[0]]))


def test_random_first_error_cuts_wrong_responses_at_random_and_keeps_the_rest():
    g = torch.Generator().manual_seed(0)
    mask = torch.arange(12).expand(64, 12) < torch.randint(4, 13, (64, 1), generator=g)
    advantages = torch.randn(64, generator=g)
    w = build_weighting("random_first_error")(TokenSignals(mask=mask), advantages, context(0))
    kept = w.bool()
    assert torch.equal(kept[advantages >= 0], mask[advantages >= 0])  # non-negative responses keep every token
    wrong, valid = kept[advantages < 0], mask[advantages < 0]
    starts = valid.sum(1) - wrong.sum(1)  # the drawn first error
    assert torch.equal(wrong, valid & (torch.arange(12) >= starts.unsqueeze(1)))  # a kept suffix of the valid tokens
    assert (starts / valid.sum(1)).mean().item() == pytest.approx(0.5, abs=0.15)  # uniform over positions
    again = build_weighting("random_first_error")(TokenSignals(mask=mask), advantages, context(1))
    assert not torch.equal(w, again)  # each step draws anew
