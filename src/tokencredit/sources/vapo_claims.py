"""VAPO's visual claims with their problems: its own release, and the fork's ViRL39K with claims.

`vapo_thinker`: xytian1008/VAPO-Thinker-train36k (the VAPO README; its scripts read it as
`xytian1008/VAPO-Thinker-train36k@train`): the 36,581 single-image problems of ViRL39K as PAPO
processed them (PAPOGalaxy/PAPO_ViRL39K_train, same rows and order, as the awesome-perception-aware-rlvr
fork checked), each with 20 visual claims about its image.

EasyR1's layout, as VAPO's loader reads it (examples/config.yaml: `problem`, `answer`, `images`;
verl/utils/dataset.py passes every other field through): `images` a list of images, `problem`
("<image>..."), `answer`, and the claims as the released probes read them
(verl/workers/rollout/vllm_rollout_spmd.py `generate_anchors`): `claim_1` … `claim_20` (text) and
`label_1` … `label_20`, "CORRECT" or "WRONG". The Hub's default parquet layout, data/train-*.parquet,
is assumed (the dataset card was not at hand); no id (the split and the row's position).

`virl39k_claims`: the awesome-perception-aware-rlvr fork's controlled comparison data for VAPO
(examples/comparison/qwen3_vl_4b/vapo.sh: `$DATA_ROOT/virl39k_claims/train.parquet`, built by its
`scripts/prepare_data.sh comparison`): PAPO's ViRL39K row for row (`images`, `problem`, `answer`) with
the claims as one column, `visual_claims`, "a JSON list of {"claim", "correct"}; [] for rows without
claims" (its docs/algorithm_parameters.md, "Visual-Claim Probes"): the 2,289 multi-image problems,
which VAPO's probes skip.
"""

from __future__ import annotations

import json
from dataclasses import replace

from tokencredit.sources import papo_train, register
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import BadRow, Item

CLAIMS = 20  # claim_1 … claim_20, as the released rollout's _NUM_CLAIMS
LABELS = {"CORRECT": True, "WRONG": False}


def problem(row: dict, ref: RowRef, claims: list[tuple[str, bool]]) -> Item:
    """A row in PAPO's ViRL39K layout (papo_train), with its claims."""
    return replace(papo_train.convert(row, ref), claims=tuple(claims))


@register(
    "vapo_thinker",
    splits={"train": ("data/train-*.parquet",)},
    required=("images", "problem", "answer", *(f"{kind}_{j}" for j in range(1, CLAIMS + 1) for kind in ("claim", "label"))),
    columns=("claims",),
)
def vapo_thinker(row: dict, ref: RowRef) -> Item:
    claims = []
    for j in range(1, CLAIMS + 1):
        label = str(row[f"label_{j}"])
        if label not in LABELS:
            raise BadRow(f"label_{j} is {label!r}, not CORRECT or WRONG")
        claims.append((str(row[f"claim_{j}"]), LABELS[label]))
    return problem(row, ref, claims)


@register("virl39k_claims", splits={"train": ("train.parquet",)}, required=("images", "problem", "answer", "visual_claims"), columns=("claims",))
def virl39k_claims(row: dict, ref: RowRef) -> Item:
    try:
        claims = [(str(c["claim"]), c["correct"]) for c in json.loads(str(row["visual_claims"]))]
    except (ValueError, TypeError, KeyError) as err:
        raise BadRow(f"visual_claims is not a JSON list of {{claim, correct}} objects ({err})") from None
    if any(not isinstance(correct, bool) for _, correct in claims):
        raise BadRow("visual_claims has a `correct` that is not true or false")
    return problem(row, ref, claims)
