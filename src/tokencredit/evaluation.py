"""Grade a policy's cached completions of one split or benchmark: the results/eval/{policy}/{split}.json record.

Greedy accuracy comes from the `greedy` decoding, avg@k and pass@k from the first k `sampled`
completions of each question, visual dependence from `no_image` (see tokencredit.rollouts).
Nothing here generates: a changed grading parameter (eval.k, eval.without_image) or grader
regrades the cached completions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from tokencredit.graders import LLM_JUDGED, RELEASE_METRICS, avg_at_k, score
from tokencredit.rewards import DEFAULT_ANSWER_FORMAT, final_answer

GRADING_RULES = ("precision", "tolerance")  # a row's own number rule, kept in its metadata by its adapter


def completions_by_row(frame: pd.DataFrame, rollouts: pd.DataFrame, k: int | None = None, name: str = "rollouts") -> list[list[str]]:
    """The texts of each row's first `k` (default: all) cached completions, in the frame's row order."""
    if k is not None:
        rollouts = rollouts[rollouts["sample"] < k]
    texts = rollouts.groupby("id", sort=False)["text"].agg(list)
    missing = [row_id for row_id in frame["id"] if row_id not in texts.index]
    if missing:
        raise ValueError(f"{name} has no completions of row id(s) {missing[:5]}: it was cached from other data")
    rows = [texts[row_id] for row_id in frame["id"]]
    counts = {len(r) for r in rows}
    if len(counts) != 1 or (k is not None and counts != {k}):
        raise ValueError(f"{name} holds {sorted(counts)} completions per row, grading wants {k or 'the same number for every row'}")
    return rows


def grade_rollouts(
    frame: pd.DataFrame,
    sampled: pd.DataFrame,
    greedy: pd.DataFrame,
    no_image: pd.DataFrame | None,
    k: int | None,
    policy: str,
    split: str,
) -> dict[str, Any]:
    """The record of the cached decodings of `frame`'s rows (no_image None: not graded)."""
    return grade_completions(
        frame,
        [texts[0] for texts in completions_by_row(frame, greedy, 1, "greedy")],
        completions_by_row(frame, sampled, k, "sampled"),
        [texts[0] for texts in completions_by_row(frame, no_image, 1, "no_image")] if no_image is not None else None,
        policy,
        split,
    )


def grade_completions(
    frame: pd.DataFrame,
    greedy: Sequence[str],
    samples: Sequence[Sequence[str]],
    no_image: Sequence[str] | None,
    policy: str,
    split: str,
) -> dict[str, Any]:
    """The record of one policy's completions of `frame`'s rows.

    `greedy` and `no_image` hold one greedy completion per row (with and without its image),
    `samples` k completions per row. Per example: correctness, the greedy answer (`prediction`);
    per family and overall: greedy accuracy, avg@k; overall also pass@k (some sample correct) and,
    for benchmarks whose official scorer reports more (HallusionBench, We-Math, DynaMath),
    `release_metrics`; `rule_based` when that scorer is an LLM judge our rules only approximate;
    `skipped_rows`, the rows the conversion left out (the frame's attrs), each with its reason.
    """
    if not (len(frame) == len(greedy) == len(samples)) or (no_image is not None and len(no_image) != len(frame)):
        raise ValueError(f"{split}: completions for {len(greedy)}/{len(samples)} rows, the split has {len(frame)}")
    k = len(samples[0])
    if any(len(s) != k for s in samples):
        raise ValueError(f"{split}: rows have different numbers of samples")
    choices = frame["choices"] if "choices" in frame else [()] * len(frame)
    formats = list(frame["answer_format"]) if "answer_format" in frame else [DEFAULT_ANSWER_FORMAT] * len(frame)
    keys = list(zip(frame["answer"], frame["answer_type"], choices, formats))
    metadata = [json.loads(m) for m in frame["metadata"]] if "metadata" in frame else [{}] * len(frame)
    rules = [{name: m[name] for name in GRADING_RULES if m.get(name) is not None} for m in metadata]
    greedy_correct = [score(c, *key, **rule) for c, key, rule in zip(greedy, keys, rules)]
    sample_correct = [[score(c, *key, **rule) for c in row] for row, key, rule in zip(samples, keys, rules)]
    no_image_correct = [score(c, *key, **rule) for c, key, rule in zip(no_image, keys, rules)] if no_image is not None else None
    per_example = [
        {
            "id": str(row_id),
            "family": str(family),
            "greedy_correct": greedy_correct[i],
            "avg_at_k": avg_at_k(sample_correct[i]),
            "greedy_correct_no_image": no_image_correct[i] if no_image_correct is not None else None,
            "prediction": final_answer(greedy[i], formats[i]),
        }
        for i, (row_id, family) in enumerate(zip(frame["id"], frame["family"]))
    ]
    table = pd.DataFrame(per_example)
    source = str(frame["source"].iloc[0]) if "source" in frame else "synthetic"
    record = {
        "policy": policy,
        "split": split,
        "source": source,
        "n": len(frame),
        "k": k,
        "greedy_accuracy": float(table["greedy_correct"].mean()),
        "avg_at_k": float(table["avg_at_k"].mean()),
        "pass_at_k": sum(any(row) for row in sample_correct) / len(frame),
        "greedy_accuracy_no_image": float(table["greedy_correct_no_image"].mean()) if no_image_correct is not None else None,
        "per_family": {
            str(family): {"n": len(g), "greedy_accuracy": float(g["greedy_correct"].mean()), "avg_at_k": float(g["avg_at_k"].mean())}
            for family, g in table.groupby("family", sort=True)
        },
        "per_example": per_example,
        "rule_based": source in LLM_JUDGED,
        "skipped_rows": list(frame.attrs.get("skipped_rows", [])),
    }
    metrics = RELEASE_METRICS.get(source)
    if metrics is not None:
        per_sample = [metrics(metadata, [row[j] for row in sample_correct], [final_answer(row[j], f) for row, f in zip(samples, formats)]) for j in range(k)]
        record["release_metrics"] = {
            "greedy": metrics(metadata, greedy_correct, [final_answer(c, f) for c, f in zip(greedy, formats)]),
            "avg_at_k": {name: sum(m[name] for m in per_sample) / k for name in per_sample[0]},
        }
    return record
