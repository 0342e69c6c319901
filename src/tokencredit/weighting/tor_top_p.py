"""ToR with its reasoning set ranked by the entropy of the top-p set (Eq. 5 as the fork reads it).

Same weights as `tor` (weighting/tor.py), T_r ranked by the `entropy_top_p` signal instead of the
full-vocabulary entropy: the fork's ToR reproduction (zsxm1998/awesome-perception-aware-rlvr,
examples/reproduction/tor/README.md: `algorithm.entropy_top_p=0.95`, "the entropy of the top-p
0.95 set is that of the renormalized distribution top-p sampling draws from; the paper does not
say whether it renormalizes"). p and the renormalisation: scoring.entropy_top_p (0.95) and
scoring.renormalize_top_p (True, the fork's choice).
Counterfactual: `drop_image`. Scope: global batch, both top-ρ sets, as tor.
Ties: random among equal scores (many zero entropies where the top-p set is one token), from the
step's seeded generator.
"""

from __future__ import annotations

from tokencredit.weighting import register
from tokencredit.weighting.tor import SCOPE, token_reweighting

tor_top_p = register("tor_top_p", needs=("entropy_top_p", "vis_absdiff"), counterfactual="drop_image", scope=SCOPE)(
    token_reweighting("entropy_top_p")
)
