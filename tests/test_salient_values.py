"""CFPO's in-model counterfactual (salient_value_mean): the authors' numbers, what it changes and what not.

tests/golden/cfpo_attention.json holds fixed q, k, v and the attention output of Raven-July/CFPO's own
functions on them (`_source`: repository, commit, file and functions; the scratch run is not committed).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_signals import IMAGE, make_batch, tiny_model
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from tokencredit import salient_values
from tokencredit.counterfactual import counterfactual_batch, counterfactual_inputs, real_inputs
from tokencredit.salient_values import image_spans, salient_value_delta, salient_value_mean
from tokencredit.signals import score_policy

GOLDEN = json.loads((Path(__file__).parent / "golden" / "cfpo_attention.json").read_text())


def golden_inputs():
    raw = GOLDEN["inputs"]
    query, key, value = (torch.tensor(raw[name]) for name in ("query", "key", "value"))
    mask = torch.tensor(raw["attention_mask"])
    image = torch.zeros(mask.shape, dtype=torch.bool)
    for row, spans in enumerate(raw["image_spans"]):
        for start, end in spans:
            image[row, start:end] = True
    return query, key, value, mask, image


def attention(query, key, value, mask):
    """Causal attention over the visible keys, GQA keys repeated: [B, H, L, d]."""
    group = query.shape[1] // key.shape[1]
    length = query.shape[2]
    seen = torch.ones(length, length).tril().bool()[None, None] & mask.bool()[:, None, None, :]
    return F.scaled_dot_product_attention(query, key.repeat_interleave(group, 1), value.repeat_interleave(group, 1), attn_mask=seen)


@pytest.mark.parametrize(("mode", "threshold_std"), [("high", 2.0), ("medium", 1.0)])
def test_swapped_attention_matches_the_authors_code(mode, threshold_std):
    query, key, value, mask, image = golden_inputs()
    scaling = query.shape[-1] ** -0.5
    assert [image_spans(row) for row in image] == [[tuple(s) for s in spans] for spans in GOLDEN["inputs"]["image_spans"]]
    for chunk in (1024, 3):  # whole and in chunks of queries
        delta = salient_value_delta(query, key, value, scaling, mask, image, threshold_std, chunk_size=chunk)
        out = attention(query, key, value, mask) + delta
        real = mask.bool()  # their padded query (row 1, position 0) attends nowhere: left out
        torch.testing.assert_close(out.transpose(1, 2)[real], torch.tensor(GOLDEN[mode]["output"]).transpose(1, 2)[real], rtol=1e-5, atol=1e-6)
    assert GOLDEN[mode]["salient"] > 0


def test_every_image_value_salient_is_attention_on_the_image_mean_and_queries_before_the_image_are_untouched():
    query, key, value, mask, image = golden_inputs()
    scaling = query.shape[-1] ** -0.5
    real = attention(query, key, value, mask)
    delta = salient_value_delta(query, key, value, scaling, mask, image, threshold_std=-1e9)  # every counted entry salient
    assert (delta[0, :, :6] == 0).all() and (delta[1, :, :4] == 0).all()  # up to each row's first image end
    # Row 0, one image at 2..5: queries after it see the mean m_h (over the image's tokens and dimensions) in its place.
    mean = value[0, :, 2:6].mean((1, 2))
    swapped = value.clone()
    swapped[0, :, 2:6] = mean.view(-1, 1, 1)
    torch.testing.assert_close((real + delta)[0, :, 6:], attention(query, key, swapped, mask)[0, :, 6:], rtol=1e-5, atol=1e-6)
    assert torch.equal(salient_value_delta(query, key, value, scaling, mask, image, threshold_std=math.inf), torch.zeros_like(delta))


def test_padded_queries_count_in_no_statistic():
    query, key, value, mask, image = golden_inputs()
    scaling = query.shape[-1] ** -0.5
    padded = mask.clone()
    padded[0, -1] = 0  # a right-padded completion token
    short = salient_value_delta(query[:1, :, :-1], key[:1, :, :-1], value[:1, :, :-1], scaling, mask[:1, :-1], image[:1, :-1])
    delta = salient_value_delta(query, key, value, scaling, padded, image)
    torch.testing.assert_close(delta[:1, :, :-1], short)
    assert (delta[0, :, -1] == 0).all()


def score(model, batch, **kwargs):
    extra = counterfactual_batch("salient_value_mean", batch, [], None, torch.Generator(), **kwargs)
    return score_policy(model, {**batch, **extra}, {"logp_cf"}, counterfactual="salient_value_mean", chunk_size=2)


def test_the_counterfactual_forward_changes_only_the_attention_and_only_while_entered():
    model, batch = tiny_model("sdpa"), make_batch()
    before = dict(ALL_ATTENTION_FUNCTIONS._local_mapping)
    real = real_inputs(model, batch)
    cf = counterfactual_inputs(model, batch, "salient_value_mean")
    assert all(torch.equal(cf[k], real[k]) for k in real if real[k] is not None)
    with torch.no_grad():
        logits = model(**real).logits
        with salient_value_mean(model, real["input_ids"], real["attention_mask"]):
            assert salient_values.active()
            swapped = model(**real).logits
        after = model(**real).logits
    assert not salient_values.active() and ALL_ATTENTION_FUNCTIONS._local_mapping == before
    assert torch.equal(after, logits)  # the real forward, unchanged once left
    image = real["input_ids"] == IMAGE
    up_to_image_end = (image.flip(1).cumsum(1).flip(1) > 0) & real["attention_mask"].bool()  # real tokens up to the image's last
    assert torch.equal(swapped[up_to_image_end], logits[up_to_image_end])
    assert not torch.allclose(swapped, logits)

    s = score(model, batch)
    assert not torch.allclose(s.logp, s.logp_cf)
    nothing = score(model, batch, threshold_std=math.inf)  # no entry salient: the real forward exactly
    assert torch.equal(nothing.logp_cf, nothing.logp)


def test_scored_the_same_whole_in_row_chunks_and_with_every_kernel():
    batch = make_batch()
    extra = counterfactual_batch("salient_value_mean", batch, [], None, torch.Generator(), threshold_std=1.0)
    sdpa = tiny_model("sdpa")
    whole = score_policy(sdpa, {**batch, **extra}, {"logp_cf"}, counterfactual="salient_value_mean")
    rows = score_policy(sdpa, {**batch, **extra}, {"logp_cf"}, counterfactual="salient_value_mean", batch_size=1, chunk_size=2)
    eager = score_policy(tiny_model("eager"), {**batch, **extra}, {"logp_cf"}, counterfactual="salient_value_mean")
    torch.testing.assert_close(rows.logp_cf, whole.logp_cf, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(eager.logp_cf, whole.logp_cf, rtol=1e-5, atol=1e-6)
    default = score(sdpa, batch)  # threshold_std 2: fewer salient entries, another counterfactual
    assert not torch.allclose(default.logp_cf, whole.logp_cf)
