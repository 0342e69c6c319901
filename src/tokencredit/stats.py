"""Statistics for the report: mean ± confidence interval over seeds, and differences between
grids of runs by a hierarchical bootstrap that treats the training seed as the unit of replication.

Student's t and the normal quantiles come from scipy.stats; scipy.stats.bootstrap resamples one
level only, so the two-level resample (seeds, then examples within each seed) is numpy's.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np
from scipy import stats


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half-width of the Student-t confidence interval) of independent values (seeds).

    One value gives half-width nan: one seed says nothing about the spread between seeds.
    """
    if len(values) == 0:
        raise ValueError("mean_ci: no values")
    mean = float(statistics.mean(values))
    if len(values) == 1:
        return mean, math.nan
    sem = statistics.stdev(values) / math.sqrt(len(values))
    return mean, float(stats.t.ppf((1 + confidence) / 2, len(values) - 1)) * sem


def hierarchical_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    power: float = 0.8,
) -> dict[str, float]:
    """Mean of a minus mean of b, where a [seeds_a, examples] and b [seeds_b, examples] hold one
    score per training seed and example (the same examples, in the same order, in both).

    Each resample draws seeds with replacement (independently for a and b: their seeds are separate
    runs), then, within each drawn seed, examples with replacement. The i-th drawn seed of a and of b
    share their example draw, so the comparison stays paired over examples while seeds vary freely.
    Returns diff, the percentile interval (ci_low, ci_high), the two-sided p-value for "no
    difference" ((1 + #resamples at least as far from diff as diff is from 0) / (1 + n_boot)), the
    bootstrap standard error `se`, and `mdd`, the minimal detectable difference: the true difference
    that a two-sided test at level 1 - confidence detects with probability `power`,
    (z_{1 - alpha/2} + z_power) * se (normal approximation; 2.80 se at 0.95 and 0.8).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or 0 in a.shape + b.shape:
        raise ValueError(
            f"hierarchical_bootstrap needs two [seeds, examples] score arrays over the same examples, got shapes {a.shape} and {b.shape}"
        )
    rng = np.random.default_rng(seed)
    n_examples, slots = a.shape[1], max(len(a), len(b))
    boots = np.empty(n_boot)
    for start in range(0, n_boot, 256):  # chunks bound the index array to 256 x seeds x examples
        size = min(256, n_boot - start)
        examples = rng.integers(0, n_examples, (size, slots, n_examples))

        def resampled_mean(x: np.ndarray) -> np.ndarray:
            seeds = rng.integers(0, len(x), (size, len(x), 1))
            return x[seeds, examples[:, : len(x)]].mean(axis=(1, 2))

        boots[start : start + size] = resampled_mean(a) - resampled_mean(b)
    diff = float(a.mean() - b.mean())
    alpha = 1 - confidence
    ci_low, ci_high = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    se = float(boots.std(ddof=1))
    return {
        "diff": diff,
        "ci_low": float(ci_low),
        "ci_high": float(ci_high),
        "p_value": (1 + int(np.sum(np.abs(boots - diff) >= abs(diff)))) / (1 + n_boot),
        "se": se,
        "mdd": float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * se,
    }
