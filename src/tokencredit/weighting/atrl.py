"""AT-RL (Jiao et al. 2026): cluster-aware credit for tokens anchored to the image.

The paper (only its abstract is public) finds ~15 % "anchor" tokens by graph clustering of
response-to-image attention and weights each cluster's advantage, A = W(C_k) A_i, larger for
high-connectivity clusters; non-anchor clusters keep a positive weight, and training on the
low-connectivity tokens alone degrades. It names no layers, heads or clustering algorithm, so
these are our choices, each a parameter:

- Connectivity c_t = `attn_image`: attention mass from the position predicting token t to all
  image-token keys, averaged over heads and over `scoring.attention_layers` (last layer by
  default). It comes from the no-grad scoring forward with the real image (the one that gives
  logp and entropy): one extra forward per generated batch besides the loss's, and no
  counterfactual one. It is recomputed from each chosen layer's q and k, for any attention kernel
  (signals.image_attention_mass).
- Clusters: with one scalar feature per token, a graph clustering of a response's tokens
  (e.g. single-linkage on the sorted values, or any similarity graph with a kernel monotone in
  |c_s - c_t|) yields contiguous bands of c_t. We cut the bands per response so the anchor band
  holds exactly the top `anchor_fraction` of its tokens by c_t, rather than at a data-dependent
  gap: the anchor share is then the paper's 15 % by construction. Ties: random among equal c_t,
  from the step's seeded generator. Per response, because attention mass to the image shrinks as a
  response grows longer, which would otherwise hand every anchor to short responses.
- W(C_k): `anchor_weight` on anchors, `base_weight` on the rest; with `normalize` each response's
  weights are rescaled to sum to its length (mean 1, as in PGPO), so only their ratio matters.
- Negative ablation `low_connectivity_only`: anchors get 0, the rest keep `base_weight`.
Counterfactual: none. Scope: per response only; no statistic crosses responses, so the process
split cannot change a weight.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tokencredit.signals import TokenSignals
from tokencredit.weighting import Context, WeightFn, check_range, conserve_mass, register, row_top_fraction


@register("atrl", needs=("attn_image",), scope="per response: top anchor_fraction of each response's tokens")
def atrl(
    anchor_fraction: float = 0.15,
    anchor_weight: float = 1.5,
    base_weight: float = 0.5,
    normalize: bool = True,
    low_connectivity_only: bool = False,
) -> WeightFn:
    check_range("anchor_fraction", anchor_fraction, 0.0, 1.0, low_open=True)
    check_range("anchor_weight", anchor_weight, 0.0)
    check_range("base_weight", base_weight, 0.0, low_open=True)
    on_anchors = 0.0 if low_connectivity_only else anchor_weight

    def weights(signals: TokenSignals, advantages: Tensor, context: Context) -> Tensor:
        mask = signals.mask
        anchors = row_top_fraction(signals.require("attn_image"), mask, anchor_fraction, context.tie_generator())
        w = torch.where(anchors, on_anchors, base_weight) * mask
        return conserve_mass(w, mask) if normalize else w

    return weights
