"""VAPO's training set, xytian1008/VAPO-Thinker-train36k (the VAPO README; its scripts read it as
`xytian1008/VAPO-Thinker-train36k@train`): the 36,581 single-image problems of ViRL39K as PAPO
processed them (PAPOGalaxy/PAPO_ViRL39K_train, same rows and order, as the awesome-perception-aware-rlvr
fork checked), each with 20 visual claims about its image.

EasyR1's layout, as VAPO's loader reads it (examples/config.yaml: `problem`, `answer`, `images`;
verl/utils/dataset.py passes every other field through): `images` a list of images, `problem`
("<image>..."), `answer`, and the claims as the released probes read them
(verl/workers/rollout/vllm_rollout_spmd.py `generate_anchors`): `claim_1` … `claim_20` (text) and
`label_1` … `label_20`, "CORRECT" or "WRONG". The Hub's default parquet layout, data/train-*.parquet,
is assumed (the dataset card was not at hand); no id (the split and the row's position).
"""

from __future__ import annotations

from dataclasses import replace

from tokencredit.sources import register
from tokencredit.sources.answers import inferred_item, unbox
from tokencredit.sources.questions import strip_image_tokens
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import BadRow, Item

CLAIMS = 20  # claim_1 … claim_20, as the released rollout's _NUM_CLAIMS
LABELS = {"CORRECT": True, "WRONG": False}


@register(
    "vapo_thinker",
    splits={"train": ("data/train-*.parquet",)},
    required=("images", "problem", "answer", *(f"{kind}_{j}" for j in range(1, CLAIMS + 1) for kind in ("claim", "label"))),
    columns=("claims",),
)
def convert(row: dict, ref: RowRef) -> Item:
    claims = []
    for j in range(1, CLAIMS + 1):
        label = str(row[f"label_{j}"])
        if label not in LABELS:
            raise BadRow(f"label_{j} is {label!r}, not CORRECT or WRONG")
        claims.append((str(row[f"claim_{j}"]), LABELS[label]))
    item = inferred_item(f"{ref.split}-{ref.position:05d}", strip_image_tokens(str(row["problem"])), unbox(str(row["answer"])), row["images"])
    return replace(item, claims=tuple(claims))
