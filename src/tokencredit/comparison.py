"""Differences between groups of training runs, seed-aware: against `uniform`, a method's random
twin and the oracles, and the plain sentences the report states about them.

A group is "{algo}-{method}" with one evaluation per seed. Each difference is a hierarchical
bootstrap (stats.hierarchical_bootstrap) over the groups' [seeds, examples] score arrays.
Controls are found by name: the random twin of method `m` is `random_m`, and every method named
`oracle_*` is an oracle (params.py's built-in entries follow this).
"""

from __future__ import annotations

import numpy as np

from tokencredit.stats import hierarchical_bootstrap

BASELINE_METHOD = "uniform"
TWIN_PREFIX, ORACLE_PREFIX = "random_", "oracle_"
# Summary metric -> the per-example score it averages (bootstrap input).
PAIRED_SCORES = {"greedy_accuracy": "greedy_correct", "avg_at_k": "avg_at_k"}


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


def compare(ours: list[dict], theirs: list[dict]) -> dict[str, dict[str, float]]:
    """Hierarchical bootstrap of ours minus theirs, per summary metric."""
    result = {}
    for metric, score in PAIRED_SCORES.items():
        ids_a, a = seed_scores(ours, score)
        ids_b, b = seed_scores(theirs, score)
        if ids_a != ids_b:
            raise ValueError(f"{ours[0]['policy']} and {theirs[0]['policy']} on {ours[0]['split']}: evaluated on different examples")
        result[metric] = hierarchical_bootstrap(a, b)
    return result


def comparisons(algo: str, method: str, groups: dict[str, list[dict]]) -> dict:
    """vs_uniform, and for a method that is not a control vs_twin and vs_oracle, where those runs exist."""
    if method == BASELINE_METHOD:
        return {}
    evs = groups[f"{algo}-{method}"]
    found: dict = {}
    uniform = groups.get(f"{algo}-{BASELINE_METHOD}")
    if uniform:
        found["vs_uniform"] = compare(evs, uniform)
    if is_control(method):
        return found
    twin = f"{algo}-{TWIN_PREFIX}{method}"
    if twin in groups:
        found["vs_twin"] = {"twin": twin, **compare(evs, groups[twin])}
    oracles = {g: compare(evs, other) for g, other in groups.items() if g.startswith(f"{algo}-{ORACLE_PREFIX}")}
    if oracles:
        found["vs_oracle"] = oracles
    return found


def _points(c: dict[str, float]) -> str:
    return f"{100 * c['diff']:+.1f} [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]"


def _verdict(c: dict[str, float], above: str, below: str, neither: str) -> str:
    if c["ci_low"] > 0:
        return above
    if c["ci_high"] < 0:
        return below
    return neither


def method_sentence(group: str, split: str, summary: dict, metric: str = "avg_at_k") -> str:
    """One sentence of facts: the difference from the random twin and from each oracle, with 95 % CIs."""
    label = "avg@k" if metric == "avg_at_k" else "greedy accuracy"
    parts = [f"`{group}` on {split} ({label}, points, 95 % CI)"]
    twin = summary.get("vs_twin")
    if twin is None:
        parts.append("no random twin in this grid")
    else:
        c = twin[metric]
        verdict = _verdict(c, "beats it", "falls below it", "the CI includes 0: not told apart")
        parts.append(f"vs its random twin `{twin['twin']}` {_points(c)}, {verdict}")
    for oracle, result in summary.get("vs_oracle", {}).items():
        c = result[metric]
        verdict = _verdict(c, "above it", "below it", "not told apart")
        parts.append(f"vs the oracle `{oracle}` {_points(c)}, {verdict}")
    return "; ".join(parts) + "."


def minimal_detectable(metrics: dict, split: str, metric: str = "avg_at_k") -> float | None:
    """Median over the groups compared with uniform on `split` of their minimal detectable difference."""
    values = [m[split]["vs_uniform"][metric]["mdd"] for m in metrics.values() if split in m and "vs_uniform" in m[split]]
    return float(np.median(values)) if values else None
