"""Statistics for the report: mean ± confidence interval over seeds, paired bootstrap.

Pure Python + numpy (scipy is not a dependency): Student's t quantile comes from the closed-form
CDF for integer degrees of freedom.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np


def t_cdf_two_sided(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with `df` degrees of freedom (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(abs(t) / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    total = 0.0
    if df % 2:  # odd: (2/π)(θ + sinθ(cosθ + 2/3 cos³θ + ...)), (df - 1)/2 terms
        term = math.cos(theta)
        for j in range(1, (df - 1) // 2 + 1):
            total += term
            term *= cos2 * (2 * j) / (2 * j + 1)
        return 2 / math.pi * (theta + math.sin(theta) * total)
    term = 1.0  # even: sinθ(1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + ...), df/2 terms
    for j in range(1, df // 2 + 1):
        total += term
        term *= cos2 * (2 * j - 1) / (2 * j)
    return math.sin(theta) * total


def t_quantile_two_sided(confidence: float, df: int) -> float:
    """The t with P(|T| <= t) = confidence, by bisection (e.g. 0.95, df=1 -> 12.706)."""
    if not 0 < confidence < 1 or df < 1:
        raise ValueError(f"t quantile needs 0 < confidence < 1 and df >= 1, got {confidence}, {df}")
    low, high = 0.0, 1.0
    while t_cdf_two_sided(high, df) < confidence:
        low, high = high, high * 2
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if t_cdf_two_sided(mid, df) < confidence else (low, mid)
    return (low + high) / 2


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
    return mean, t_quantile_two_sided(confidence, len(values) - 1) * sem


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float]:
    """Mean of a - b over paired examples, its percentile bootstrap interval and p-value.

    a[i] and b[i] score the same example (e.g. a method and `uniform`, each averaged over its
    seeds). p_value is two-sided for "no difference": the share of resampled differences at least
    as far from the observed one as the observed one is from 0, (1 + count) / (1 + n_boot).
    """
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_arr.shape != b_arr.shape or a_arr.ndim != 1 or len(a_arr) == 0:
        raise ValueError(
            f"paired_bootstrap needs two equal-length 1-D score lists,"
            f" got shapes {a_arr.shape} and {b_arr.shape}"
        )
    d = a_arr - b_arr
    diff = float(d.mean())
    rng = np.random.default_rng(seed)
    boots = np.array([d[rng.integers(0, len(d), len(d))].mean() for _ in range(n_boot)])
    tail = (1 - confidence) / 2 * 100
    ci_low, ci_high = np.percentile(boots, [tail, 100 - tail])
    extreme = int(np.sum(np.abs(boots - diff) >= abs(diff)))
    return {
        "diff": diff,
        "ci_low": float(ci_low),
        "ci_high": float(ci_high),
        "p_value": (1 + extreme) / (1 + n_boot),
    }
