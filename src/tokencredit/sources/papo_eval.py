"""PAPO-Eval's benchmark copies as PAPO-Galaxy/PAPO_eval publishes them: the data of the PAPO
paper's Table 1, which the awesome-perception-aware-rlvr fork's papo and comparison suites read
(its eval/prepare/papo_eval.py). One split per benchmark, data/<split>-00000-of-00001.parquet, with
`messages` and `images` in ShareGPT form (tokencredit.sources.sharegpt) and `id`
("hiyouga_geometry3k_0"); image paths read "./data/images/<folder>/<file>", so the release's
<split>_images.zip files are unzipped into data/images/ (where PAPO-Eval's own script,
papo_eval/preprocess/prepare_data.py with --output_dir data --auto_unzip, puts them). That script
writes each split as data/papo/<split>.json instead, without `id`: the second layout read.

Splits (rows): hiyouga_geometry3k (601), AI4Math_MathVista (1,000), We_Math (1,740), PAPO_MMK12
(2,000), AI4Math_MathVerse (2,180), AI4Math_MathVerse_vision_dependent (1,308), lscpku_LogicVista
(447), BUAADreamer_clevr_count_70k (200: the paper's "Counting (SuperCLEVR)" column),
MMMU_MMMU_Pro (1,730). Answers are bare; PAPO-Eval grades every split by exact match on the last
\\boxed{} (mathruler), we by answer type (tokencredit.graders).
"""

from __future__ import annotations

from tokencredit.sources import register
from tokencredit.sources.records import RowRef
from tokencredit.sources.schema import Item
from tokencredit.sources.sharegpt import sharegpt_item

SPLITS = (
    "hiyouga_geometry3k", "AI4Math_MathVista", "We_Math", "PAPO_MMK12", "AI4Math_MathVerse",
    "AI4Math_MathVerse_vision_dependent", "lscpku_LogicVista", "BUAADreamer_clevr_count_70k", "MMMU_MMMU_Pro",
)  # fmt: skip


@register(
    "papo_eval",
    splits={split: (f"data/{split}-*.parquet", f"data/papo/{split}.json") for split in SPLITS},
    required=("messages",),
)
def convert(row: dict, ref: RowRef) -> Item:
    return sharegpt_item(row, str(row.get("id") or f"{ref.split}_{ref.position}"), ref.split)
