"""The zoo's signals (issue 22): vis_jsd, entropy_cf, hidden_sim, hidden_sim_last on the tiny
Qwen2.5-VL of test_signals, against a naive computation from the model's own full outputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.test_signals import IMAGE, make_batch, tiny_model
from tokencredit.counterfactual import counterfactual_inputs, real_inputs
from tokencredit.signals import score_policy

ZOO = {"vis_jsd", "entropy_cf", "hidden_sim", "hidden_sim_last"}


def test_jsd_and_counterfactual_entropy_match_full_logits():
    model, batch = tiny_model(), make_batch()
    s = score_policy(model, batch, {"vis_jsd", "entropy_cf"}, counterfactual="mask_visual_attention", chunk_size=2, temperature=0.7)
    n, mask = batch["completion_ids"].shape[1], batch["completion_mask"].bool()
    with torch.no_grad():
        lp = torch.log_softmax(model(**real_inputs(model, batch)).logits[:, -n - 1 : -1] / 0.7, -1)
        lq = torch.log_softmax(model(**counterfactual_inputs(model, batch, "mask_visual_attention")).logits[:, -n - 1 : -1] / 0.7, -1)
    m = 0.5 * (lp.exp() + lq.exp())
    jsd = 0.5 * (lp.exp() * (lp - m.log())).sum(-1) + 0.5 * (lq.exp() * (lq - m.log())).sum(-1)
    assert torch.allclose(s.vis_jsd, jsd * mask, atol=1e-6)
    assert (s.vis_jsd[mask] > 0).all() and (s.vis_jsd <= torch.log(torch.tensor(2.0)) + 1e-6).all()
    assert torch.allclose(s.entropy_cf, -(lq.exp() * lq).sum(-1) * mask, atol=1e-5)
    assert s.hidden_sim is None  # scored only when asked


def test_hidden_similarity_matches_output_hidden_states():
    model, batch = tiny_model(), make_batch()
    s = score_policy(model, batch, {"hidden_sim", "hidden_sim_last"}, batch_size=2)
    inputs = real_inputs(model, batch)
    with torch.no_grad():
        states = model(**inputs, output_hidden_states=True).hidden_states
    assert len(states) == model.config.text_config.num_hidden_layers + 1
    n, mask = batch["completion_ids"].shape[1], batch["completion_mask"].bool()
    image = inputs["input_ids"] == IMAGE
    pepo, vgpo = torch.zeros(mask.shape), torch.zeros(mask.shape)
    for row in range(len(mask)):  # PEPO's and VGPO's loops, one row at a time
        for h in states:
            sims = F.normalize(h[row, -n:], dim=-1) @ F.normalize(h[row, image[row]], dim=-1).T
            pepo[row] += sims.mean(1) / len(states)
        last = states[-1][row]
        vgpo[row] = F.cosine_similarity(last[-n:], last[image[row]].mean(0, keepdim=True), dim=-1)
    assert torch.allclose(s.hidden_sim, pepo * mask, atol=1e-5)
    assert torch.allclose(s.hidden_sim_last, vgpo * mask, atol=1e-5)
    hooks = [len(layer._forward_pre_hooks) for layer in model.model.language_model.layers]
    assert hooks == [0] * len(hooks) and not model.model.language_model.norm._forward_hooks


def test_zoo_signals_are_chunk_and_row_batch_invariant():
    model, batch = tiny_model(), make_batch()
    whole = score_policy(model, batch, ZOO, counterfactual="drop_image")
    parts = score_policy(model, batch, ZOO, counterfactual="drop_image", batch_size=1, chunk_size=3)
    for name in ZOO:
        assert torch.allclose(getattr(whole, name), getattr(parts, name), atol=1e-5), name
        assert (getattr(whole, name)[~whole.mask] == 0).all(), name


def test_top_p_entropy_is_the_entropy_of_the_sampled_set():
    from tokencredit.signals import token_logp_and_entropy, top_p_entropy

    g = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(7, 5, generator=g) * 3, torch.randn(13, 5, generator=g)
    for top_p in (0.5, 0.95):
        renormalised = top_p_entropy(hidden, weight, top_p, chunk_size=3)
        raw = top_p_entropy(hidden, weight, top_p, renormalize=False)
        for row in range(7):  # naive: sort, keep tokens until the mass reaches top_p
            p = torch.softmax(hidden[row] @ weight.T, -1).sort(descending=True).values
            n = int((torch.cumsum(p, 0) < top_p).sum()) + 1
            q = p[:n] / p[:n].sum()
            assert renormalised[row] == pytest.approx(float(-(q * q.log()).sum()), abs=1e-5)
            assert raw[row] == pytest.approx(float(-(p[:n] * p[:n].log()).sum()), abs=1e-5)
    full = token_logp_and_entropy(hidden, weight, torch.zeros(7, dtype=torch.long))[1]
    torch.testing.assert_close(top_p_entropy(hidden, weight, 1.0), full)


def test_tor_top_p_ranks_reasoning_by_the_top_p_entropy():
    from tokencredit.weighting import build_weighting

    model, batch = tiny_model(), make_batch()
    s = score_policy(model, batch, {"entropy_top_p", "vis_absdiff"}, counterfactual="drop_image", entropy_top_p=0.5)
    assert (s.entropy_top_p <= s.entropy + 1e-5).all() and not torch.allclose(s.entropy_top_p, s.entropy)
    swapped = type(s)(**{**{k: getattr(s, k) for k in ("mask", "vis_absdiff")}, "entropy": s.entropy_top_p})
    advantages = torch.zeros(len(s.mask))
    torch.testing.assert_close(build_weighting("tor_top_p")(s, advantages), build_weighting("tor")(swapped, advantages))
