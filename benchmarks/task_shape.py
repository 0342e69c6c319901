"""The synthetic task's shape: target lengths in tokens and the share of each token role.

Tokenizes the targets of a split with the BPE the pipeline's build_base trains on the same params
(tokencredit.tiny_vlm.train_tokenizer on synthetic.corpus) and labels each token by the task's rule
(synthetic.token_roles). These are the numbers the embedded testbed is set against the papers'
rollouts (docs/experiment.md, issue 24): how long a response is, and what share of it is perception.

    python benchmarks/task_shape.py                       # params/default.yaml
    python benchmarks/task_shape.py --params params/default.yaml extra.yaml --split test_ood
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import harness
from tokencredit.families import family_named
from tokencredit.params import Params, merged_params
from tokencredit.synthetic import ROLES, corpus, make_examples, token_roles
from tokencredit.tiny_vlm import train_tokenizer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", nargs="+", type=Path, default=[harness.ROOT / "params/default.yaml"], help="params files, merged in order")
    p.add_argument("--split", default="train")
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args()
    params = Params.model_validate(merged_params(*args.params))
    tokenizer = train_tokenizer(corpus(params.data), params.model.vocab_size, family_named(params.model.family))
    lengths, counts = [], Counter()
    for e in make_examples(params.data, args.split):
        offsets = tokenizer(e.target, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        roles = token_roles(offsets, e.role_spans)
        lengths.append(len(roles))
        counts.update(roles)
    total = sum(lengths)
    ordered = sorted(lengths)
    rows = [[role, counts[role] / len(lengths), f"{100 * counts[role] / total:.1f} %"] for role in ROLES]
    rows.append(["all (tokens per target)", total / len(lengths), "100 %"])
    settings = (
        f"params {' + '.join(str(f) for f in args.params)}, split {args.split} ({len(lengths)} targets); target length in "
        f"tokens: min {ordered[0]}, median {harness.median(ordered)}, max {ordered[-1]} (+1 end-of-turn token when generated)."
    )
    body = harness.table(["role", "tokens per target", "share of tokens"], rows)
    harness.report("task_shape", "tiny", settings, body, record=not args.no_record)


if __name__ == "__main__":
    main()
