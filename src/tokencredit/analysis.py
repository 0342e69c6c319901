"""What the token scores say: how well each signal finds the ground-truth roles, what each method selects.

Input: the score tables of tokencredit.scoring (one row per sampled token, with its role) and the
evaluation records. Every number is per (policy, split); "family" is "all" or one question family
(families get their own rows only when a split has several). Output: a JSON-able dict of record
lists (analysis.json; the HTML report renders it).

- auroc: AUROC of each signal for "token is perception" and "token is reasoning" (1 = the signal
  ranks every such token above every other token, 0.5 = chance, < 0.5 = inversely), with a
  percentile bootstrap interval over responses (tokens of one response are not independent).
- precision: share of perception / reasoning tokens among the top-r tokens of each signal, at each
  method's selection ratio r (the base rate is what a random choice gets); for the reference policy
  only (the SFT model when it is scored), the one the report shows: signals x methods x roles rows
  for every policy made 88 MB of the zoo's analysis.json.
- selection: per method, the share of tokens with w > 0, with w > 1, and its selected set: the
  tokens it weights above its own average weight (entropy top-k's kept tokens, ToR's T_r ∪ T_p,
  VPPO's gated tokens, PGPO's boosted tokens, AT-RL's anchors; every token when all weights are
  equal, as for uniform); with the precision of that set for each role.
- jaccard: overlap |A ∩ B| / |A ∪ B| of the methods' selected sets, on the same tokens.
- shift: mean of each signal per role, and its concentration (share of a response's signal mass
  held by its top `top_fraction` tokens, for non-negative signals: do anchors sharpen?), per
  policy, with the change from the SFT policy on the same split.
- accuracy: accuracy with the image and with it removed (greedy, from the evaluations), and the
  mean accuracy of the scored samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tokencredit.params import AnalysisParams
from tokencredit.score_columns import SIGNAL_PREFIX, WEIGHT_PREFIX
from tokencredit.synthetic import ROLES

TARGET_ROLES = ("perception", "reasoning")
REFERENCE = "sft"
SCORE_KEYS = ("policy", "split", "family", "response", "role", "accuracy_reward")
BOOTSTRAP_BLOCK = 1 << 23  # resampled token weights held at once (x 4 bytes): bounded memory


def load_scores(paths: list[Path]) -> pd.DataFrame:
    frames = []
    for path in paths:
        frame = pd.read_parquet(path)
        missing = [key for key in SCORE_KEYS if key not in frame]
        if missing:
            raise ValueError(f"{path}: score table lacks column(s) {missing}")
        frames.append(frame)
    if not frames:
        raise ValueError("no score tables to analyse")
    return pd.concat(frames, ignore_index=True)


def signal_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(SIGNAL_PREFIX)]


def weight_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(WEIGHT_PREFIX)]


def policy_order(policy: str) -> tuple[bool, str]:
    return (policy != REFERENCE, policy)


def _float(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


# -- rankings: AUROC with a bootstrap over responses, precision at a ratio ------------------------------


@dataclass(frozen=True)
class Ranking:
    """Tokens sorted by one signal, ascending; for each sorted position, the run of equal scores it is in."""

    order: np.ndarray
    run_start: np.ndarray
    run_end: np.ndarray  # exclusive

    @classmethod
    def of(cls, scores: np.ndarray) -> Ranking:
        order = np.argsort(scores, kind="stable")
        ordered = scores[order]
        new_run = np.r_[True, ordered[1:] != ordered[:-1]]
        starts = np.flatnonzero(new_run)
        run = np.cumsum(new_run) - 1
        return cls(order, starts[run], np.r_[starts[1:], len(scores)][run])


def weighted_auroc(ranking: Ranking, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC for bool `positive` [N], once per row of float32 token weights [R, N] in ranking order.

    Mann-Whitney with ties counted one half; a token of weight c counts as c copies of itself, so
    integer weights from resampling give the AUROC of the resample. nan without positives or
    negatives. O(R N) per call: the sort is shared by every resample and role.
    """
    y = positive[ranking.order]
    # Negative weight up to each position; float32 is exact for integer counts below 2**24.
    negatives = np.cumsum(np.where(y, np.float32(0), weights), axis=1)
    p = np.flatnonzero(y)
    before = ranking.run_start[p] - 1
    below = np.where(before >= 0, negatives[:, np.maximum(before, 0)], 0).astype(np.float64)
    tied = negatives[:, ranking.run_end[p] - 1] - below
    w = weights[:, p].astype(np.float64)
    pairs = w.sum(1) * negatives[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (w * (below + 0.5 * tied)).sum(1) / pairs, np.nan)


def resampled_responses(response: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(counts [n_boot, n_responses]: each row resamples the responses with replacement, token -> response index)."""
    ids, index = np.unique(response, return_inverse=True)
    return rng.multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=n_boot).astype(np.float32), index


def auroc_interval(
    frame: pd.DataFrame, signals: list[str], params: AnalysisParams, rng: np.random.Generator
) -> dict[tuple[str, str], tuple[float, float, float]]:
    """{(signal, role): (auroc, low, high)} on the tokens of `frame`, one bootstrap shared by all."""
    counts, index = resampled_responses(frame["response"].to_numpy(), params.n_bootstrap, rng)
    block = max(1, BOOTSTRAP_BLOCK // len(frame))
    tail = (1 - params.confidence) / 2 * 100
    positives = {role: (frame["role"] == role).to_numpy() for role in TARGET_ROLES}
    out = {}
    for signal in signals:
        ranking = Ranking.of(frame[signal].to_numpy(dtype=np.float64))
        ones = np.ones((1, len(frame)), dtype=np.float32)
        boots = {role: [] for role in TARGET_ROLES}
        for start in range(0, len(counts), block):
            weights = counts[start : start + block][:, index[ranking.order]]  # resampled token weights, ranked
            for role, positive in positives.items():
                boots[role].append(weighted_auroc(ranking, positive, weights))
        for role, positive in positives.items():
            point = weighted_auroc(ranking, positive, ones)[0]
            values = np.concatenate(boots[role])
            if np.isnan(point) or np.isnan(values).all():
                out[signal, role] = (point, math.nan, math.nan)
                continue
            low, high = np.nanpercentile(values, [tail, 100 - tail])
            out[signal, role] = (point, low, high)
    return out


# -- selections --------------------------------------------------------------------------------------


def selected(weights: np.ndarray) -> np.ndarray:
    """A method's selected tokens: those weighted above its average weight (all when weights are equal)."""
    if np.ptp(weights) == 0:
        return np.ones(len(weights), dtype=bool)
    return weights > weights.mean()


def precision_at(scores: np.ndarray, positive: np.ndarray, ratios: list[float]) -> list[float]:
    """Share of positives among the ceil(ratio N) highest-scoring tokens, per ratio (ties: earlier tokens first)."""
    hits = np.cumsum(positive[np.argsort(-scores, kind="stable")])
    out = []
    for ratio in ratios:
        k = math.ceil(ratio * len(scores) - 1e-9)
        out.append(hits[k - 1] / k if k else math.nan)
    return out


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else math.nan


def concentration(frame: pd.DataFrame, signal: str, fraction: float) -> float:
    """Mean over responses of the share of the response's signal mass on its top ceil(fraction n) tokens."""
    values = frame[signal].to_numpy(dtype=np.float64)
    _, response = np.unique(frame["response"].to_numpy(), return_inverse=True)
    order = np.lexsort((-values, response))  # by response, then largest value first
    values, response = values[order], response[order]
    lengths = np.bincount(response)
    rank = np.arange(len(values)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    top = rank < np.ceil(fraction * lengths - 1e-9)[response]
    total = np.bincount(response, weights=values)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.bincount(response, weights=values * top) / total
    return float(np.nanmean(share)) if np.isfinite(share).any() else math.nan


# -- tables ------------------------------------------------------------------------------------------


def _subsets(frame: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """All tokens, then each question family when there are several."""
    yield "all", frame
    if frame["family"].nunique() > 1:
        for family, part in frame.groupby("family", sort=True):
            yield str(family), part


def _groups(frame: pd.DataFrame) -> Iterator[tuple[str, str, pd.DataFrame]]:
    for (policy, split), part in sorted(frame.groupby(["policy", "split"], sort=False), key=lambda kv: (kv[0][1], policy_order(kv[0][0]))):
        yield str(policy), str(split), part.reset_index(drop=True)


def token_roles_table(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for policy, split, part in _groups(frame):
        for family, sub in _subsets(part):
            shares = sub["role"].value_counts(normalize=True)
            rows.append({"policy": policy, "split": split, "family": family, "n_tokens": len(sub), "n_responses": int(sub["response"].nunique()),
                         **{role: float(shares.get(role, 0.0)) for role in ROLES}})  # fmt: skip
    return rows


def auroc_table(frame: pd.DataFrame, params: AnalysisParams) -> list[dict[str, Any]]:
    rng = np.random.default_rng(params.seed)
    rows = []
    signals = signal_columns(frame)
    for policy, split, part in _groups(frame):
        for family, sub in _subsets(part):
            for (signal, role), (auroc, low, high) in auroc_interval(sub, signals, params, rng).items():
                rows.append({"policy": policy, "split": split, "family": family, "signal": signal.removeprefix(SIGNAL_PREFIX),
                             "role": role, "auroc": _float(auroc), "ci_low": _float(low), "ci_high": _float(high)})  # fmt: skip
    return rows


def reference_policy(policies: list[str]) -> str:
    """The policy the report's per-token tables show: the SFT model when it is scored, else the first."""
    return REFERENCE if REFERENCE in policies else policies[0]


def selection_and_precision(frame: pd.DataFrame, reference: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(selection rows per method, precision rows per signal x method ratio, of the `reference` policy)."""
    selection, precision = [], []
    signals, weights = signal_columns(frame), weight_columns(frame)
    for policy, split, part in _groups(frame):
        for family, sub in _subsets(part):
            key = {"policy": policy, "split": split, "family": family}
            positives = {role: (sub["role"] == role).to_numpy() for role in TARGET_ROLES}
            ratios = {}
            for column in weights:
                w = sub[column].to_numpy(dtype=np.float64)
                chosen = selected(w)
                method = column.removeprefix(WEIGHT_PREFIX)
                ratios[method] = float(chosen.mean())
                selection.append({**key, "method": method, "selected": ratios[method], "positive": float((w > 0).mean()), "boosted": float((w > 1).mean()),
                                  **{f"precision_{role}": _float(float(p[chosen].mean())) for role, p in positives.items()}})  # fmt: skip
            if policy != reference:
                continue
            for signal in signals:
                scores = sub[signal].to_numpy(dtype=np.float64)
                for role, p in positives.items():
                    for (method, ratio), value in zip(ratios.items(), precision_at(scores, p, list(ratios.values()))):
                        precision.append({**key, "method": method, "ratio": ratio, "signal": signal.removeprefix(SIGNAL_PREFIX),
                                          "role": role, "precision": _float(value), "base_rate": float(p.mean())})  # fmt: skip
    return selection, precision


def jaccard_table(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    weights = weight_columns(frame)
    for policy, split, part in _groups(frame):
        chosen = [selected(part[c].to_numpy(dtype=np.float64)) for c in weights]
        matrix = [[_float(jaccard(a, b)) for b in chosen] for a in chosen]
        rows.append({"policy": policy, "split": split, "methods": [c.removeprefix(WEIGHT_PREFIX) for c in weights], "matrix": matrix})
    return rows


def shift_table(frame: pd.DataFrame, auroc: list[dict[str, Any]], params: AnalysisParams) -> list[dict[str, Any]]:
    """Per policy and signal: mean per role, concentration, AUROC; and each one's change from SFT."""
    aurocs = {(r["policy"], r["split"], r["signal"], r["role"]): r["auroc"] for r in auroc if r["family"] == "all"}
    rows = []
    for policy, split, part in _groups(frame):
        for column in signal_columns(frame):
            signal = column.removeprefix(SIGNAL_PREFIX)
            values = part[column]
            row = {"policy": policy, "split": split, "signal": signal, "mean": float(values.mean())}
            for role in ROLES:
                row[f"mean_{role}"] = _float(float(values[part["role"] == role].mean()))
            row["concentration"] = _float(concentration(part, column, params.top_fraction)) if values.min() >= 0 else None
            for role in TARGET_ROLES:
                row[f"auroc_{role}"] = aurocs.get((policy, split, signal, role))
            rows.append(row)
    reference = {(r["split"], r["signal"]): r for r in rows if r["policy"] == REFERENCE}
    for row in rows:
        base = reference.get((row["split"], row["signal"]))
        for key in ("mean", "concentration", "auroc_perception", "auroc_reasoning"):
            ok = base is not None and row[key] is not None and base[key] is not None
            row[f"{key}_delta"] = row[key] - base[key] if ok else None
    return rows


def accuracy_table(frame: pd.DataFrame, evals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Greedy accuracy with and without the image per policy and split, and the scored samples' accuracy."""
    sampled = frame.groupby(["policy", "split", "response"])["accuracy_reward"].first().groupby(["policy", "split"]).mean()
    rows = []
    for ev in sorted(evals, key=lambda e: (e["split"], policy_order(e["policy"]))):
        with_image, without = ev["greedy_accuracy"], ev.get("greedy_accuracy_no_image")
        rows.append({"policy": ev["policy"], "split": ev["split"], "greedy_accuracy": with_image, "greedy_accuracy_no_image": without,
                     "image_gain": None if without is None else with_image - without,
                     "sampled_accuracy": _float(sampled.get((ev["policy"], ev["split"]), math.nan))})  # fmt: skip
    return rows


def analyze(frame: pd.DataFrame, evals: list[dict[str, Any]], params: AnalysisParams) -> dict[str, Any]:
    auroc = auroc_table(frame, params)
    policies = sorted(frame["policy"].unique().tolist(), key=policy_order)
    selection, precision = selection_and_precision(frame, reference_policy(policies))
    return {
        "policies": policies,
        "splits": sorted(frame["split"].unique().tolist()),
        "signals": [c.removeprefix(SIGNAL_PREFIX) for c in signal_columns(frame)],
        "methods": [c.removeprefix(WEIGHT_PREFIX) for c in weight_columns(frame)],
        "confidence": params.confidence,
        "top_fraction": params.top_fraction,
        "roles": token_roles_table(frame),
        "auroc": auroc,
        "precision": precision,
        "selection": selection,
        "jaccard": jaccard_table(frame),
        "shift": shift_table(frame, auroc, params),
        "accuracy": accuracy_table(frame, evals),
    }
