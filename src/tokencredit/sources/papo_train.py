"""The training and validation sets as PAPO processed them (PAPOGalaxy on the Hub), which PAPO, VPPO,
PGPO and the awesome-perception-aware-rlvr fork's controlled comparison train and validate on (the
fork's scripts/data/prepare_train_data.py merges their shards unchanged). EasyR1's layout: `images`
(a list of images), `problem` ("<image>..."), `answer`; no id (the split and the row's position).

- `papo_virl39k`: PAPOGalaxy/PAPO_ViRL39K_train, data/train-*.parquet: ViRL39K, 38,870 problems.
- `papo_mmk12`: PAPOGalaxy/PAPO_MMK12_test, MMK12's 2,000 test problems, published as the Hub
  split "train" (data/train-*.parquet): read here as split `test`.
"""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.answers import inferred_item, unbox
from tokencredit.sources.questions import strip_image_tokens
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import Item

REQUIRED = ("images", "problem", "answer")


def convert(row: dict, ref: RowRef) -> Item:
    question = strip_image_tokens(str(row["problem"]))
    return inferred_item(f"{ref.split}-{ref.position:05d}", question, unbox(str(row["answer"])), row["images"])


register("papo_virl39k", splits={"train": ("data/train-*.parquet",)}, required=REQUIRED)(convert)
register("papo_mmk12", splits={"test": ("data/train-*.parquet",)}, required=REQUIRED)(convert)
