"""Differences between groups of training runs, seed-aware: against `uniform`, a method's random
twin and the oracles; each method's gain on the oracle's scale; and the plain sentences the report
states about them, with Holm's correction over all the claims it makes.

A group is "{algo}-{method}" with one evaluation per seed. Each difference is
stats.seed_difference over the groups' [seeds, examples] score arrays (Welch's t over seeds plus
the shared examples' draw); the gain ratio is stats.gain_ratio (Fieller). Controls are found by
name: the random twin of method `m` is `random_m`, and every method named `oracle_*` is an oracle
(params.py's built-in entries follow this).
"""

from __future__ import annotations

import math

import numpy as np

from tokencredit.stats import CONFIDENCE, gain_ratio, holm, seed_difference

BASELINE_METHOD = "uniform"
TWIN_PREFIX, ORACLE_PREFIX = "random_", "oracle_"
# Summary metric -> the per-example score it averages.
PAIRED_SCORES = {"greedy_accuracy": "greedy_correct", "avg_at_k": "avg_at_k"}
CLAIM_METRIC = "avg_at_k"  # the metric of the sentences and of the gain ratio
FAMILY_ALPHA = 1 - CONFIDENCE  # family-wise error rate of the sentences' claims (Holm)


def is_control(group: str) -> bool:
    """Whether a group "{algo}-{method}" (or a bare method name) is a random twin or an oracle."""
    return group.split("-", 1)[-1].startswith((TWIN_PREFIX, ORACLE_PREFIX))


def seed_scores(evals: list[dict], score: str) -> tuple[list[str], np.ndarray]:
    """Example ids and a [seeds, examples] array of `score`; every seed must cover the same ids."""
    ids = sorted(row["id"] for row in evals[0]["per_example"])
    rows = []
    for ev in evals:
        by_id = {row["id"]: float(row[score]) for row in ev["per_example"]}
        if sorted(by_id) != ids:
            raise ValueError(f"{ev['policy']} on {ev['split']}: per_example ids differ from its other seeds'")
        rows.append([by_id[i] for i in ids])
    return ids, np.array(rows)


def _scores(groups: list[list[dict]], score: str) -> list[np.ndarray]:
    """[seeds, examples] arrays of several groups, which must be evaluated on the same examples."""
    found = [seed_scores(evs, score) for evs in groups]
    for evs, (ids, _) in zip(groups[1:], found[1:]):
        if ids != found[0][0]:
            raise ValueError(f"{groups[0][0]['policy']} and {evs[0]['policy']} on {evs[0]['split']}: evaluated on different examples")
    return [scores for _, scores in found]


def _json(result: dict) -> dict:
    """nan (no interval: a group with one seed) and inf (df without variance) become None: JSON has neither."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in result.items()}


def compare(ours: list[dict], theirs: list[dict]) -> dict[str, dict]:
    """stats.seed_difference of ours minus theirs, per summary metric."""
    return {metric: _json(seed_difference(*_scores([ours, theirs], score))) for metric, score in PAIRED_SCORES.items()}


def comparisons(algo: str, method: str, groups: dict[str, list[dict]]) -> dict:
    """vs_uniform and gain_fraction (the gain over uniform as a fraction of each oracle's); for a
    method that is not a control, vs_twin and vs_oracle; each where those runs exist."""
    if method == BASELINE_METHOD:
        return {}
    evs = groups[f"{algo}-{method}"]
    found: dict = {}
    uniform = groups.get(f"{algo}-{BASELINE_METHOD}")
    oracles = {g: other for g, other in groups.items() if g.startswith(f"{algo}-{ORACLE_PREFIX}")}
    if uniform:
        found["vs_uniform"] = compare(evs, uniform)
        score = PAIRED_SCORES[CLAIM_METRIC]
        found["gain_fraction"] = {
            g: {**_json(gain_ratio(*_scores([uniform, evs, other], score))), "one_seed": min(map(len, (uniform, evs, other))) == 1}
            for g, other in oracles.items()
        }
    if is_control(method):
        return found
    twin = f"{algo}-{TWIN_PREFIX}{method}"
    if twin in groups:
        found["vs_twin"] = {"twin": twin, **compare(evs, groups[twin])}
    if oracles:
        found["vs_oracle"] = {g: compare(evs, other) for g, other in oracles.items()}
    return found


def claims(metrics: dict) -> list[dict]:
    """The comparisons the sentences state a verdict on: each method that is not a control, on every
    split, against uniform, its random twin and each oracle."""
    found = []
    for group, splits in metrics.items():
        if is_control(group):
            continue
        for summary in splits.values():
            found += [summary[key][CLAIM_METRIC] for key in ("vs_uniform", "vs_twin") if key in summary]
            found += [c[CLAIM_METRIC] for c in summary.get("vs_oracle", {}).values()]
    return found


def correct_claims(metrics: dict) -> None:
    """Holm's correction over all the claims (those with a p-value): p_holm beside each p_value."""
    tested = [c for c in claims(metrics) if c["p_value"] is not None]
    for c, adjusted in zip(tested, holm([c["p_value"] for c in tested])):
        c["p_holm"] = adjusted


def points(c: dict) -> str:
    """"+1.2 [-0.3, +2.7]" in points; without an interval, says so."""
    if c["ci_low"] is None:
        return f"{100 * c['diff']:+.1f} (no interval: a group has one seed)"
    return f"{100 * c['diff']:+.1f} [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]"


def _verdict(c: dict, above: str, below: str) -> str:
    if c["p_value"] is None:
        return "not tested"
    if c.get("p_holm", 1.0) < FAMILY_ALPHA:
        return above if c["diff"] > 0 else below
    if c["p_value"] < FAMILY_ALPHA:
        return f"not told apart after Holm's correction (p {c['p_value']:.3f}, adjusted {c['p_holm']:.3f})"
    return "the CI includes 0: not told apart"


def method_sentence(group: str, split: str, summary: dict) -> str:
    """One sentence of facts: the difference from uniform, the random twin and each oracle, with 95 %
    CIs, and a verdict that holds after Holm's correction over the report's claims."""
    c = summary.get("vs_uniform", {}).get(CLAIM_METRIC)
    parts = [f"`{group}` on {split} (avg@k, points, 95 % CI)"]
    if c is not None:
        parts.append(f"vs uniform {points(c)}, {_verdict(c, 'beats it', 'falls below it')}")
    twin = summary.get("vs_twin")
    if twin is None:
        parts.append("no random twin in this grid")
    else:
        c = twin[CLAIM_METRIC]
        parts.append(f"vs its random twin `{twin['twin']}` {points(c)}, {_verdict(c, 'beats it', 'falls below it')}")
    for oracle, result in summary.get("vs_oracle", {}).items():
        c = result[CLAIM_METRIC]
        parts.append(f"vs the oracle `{oracle}` {points(c)}, {_verdict(c, 'above it', 'below it')}")
    return "; ".join(parts) + "."


def minimal_detectable(metrics: dict, split: str, metric: str = CLAIM_METRIC) -> tuple[float, int] | None:
    """Median over the groups compared with uniform on `split` of their minimal detectable difference,
    and the fewest seeds among those groups (None where no group has an interval)."""
    found = [(m[split]["vs_uniform"][metric]["mdd"], m[split]["n_seeds"]) for m in metrics.values() if "vs_uniform" in m.get(split, {})]
    found = [(mdd, n) for mdd, n in found if mdd is not None]
    return (float(np.median([mdd for mdd, _ in found])), min(n for _, n in found)) if found else None
