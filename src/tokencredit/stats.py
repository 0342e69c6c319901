"""Statistics for the report: mean ± confidence interval over seeds, differences between grids of
runs with the training seed as the unit of replication, the gain ratio (Fieller), Holm's correction.

The model behind a difference (one score y per group g, training seed s and example j, every seed
of every group scored on the same examples):

    y_gsj = mu_g + u_gs + v_j + w_gj + e_gsj

u: the seed's effect (training randomness), v: the example's difficulty (common to all, cancels in
a difference), w: the group's consistent effect on an example (a method that helps on some examples
and hurts on others), e: the rest (evaluation sampling of avg@k, seed x example). The estimand is
the difference of mu over the task's population of examples (the test split is one draw of them)
and of training seeds. Its variance is

    Var(mean_a - mean_b) = s_a^2 / n_a + s_b^2 / n_b + Var_j(w_aj - w_bj) / J

where s_g^2 is the variance of group g's per-seed means (it already holds e's share, e / J) and the
last term is what per-seed means cannot show: the examples are the same for every seed, so their
draw is common to all seeds and both groups. It is estimated from the paired per-example
differences of the seed-averaged scores, less the residual noise they also carry (the two-way
residual mean square of each group, an unbiased estimate of e's mean variance), clipped at 0: the
method of moments for the crossed random-effects model, in closed form (no resampling; the examples
enter jointly for all seeds and both groups, as a paired bootstrap of examples would draw them).

Quantiles are Student's t with Welch-Satterthwaite degrees of freedom over the three terms
(n_a - 1, n_b - 1 and J - 1): Welch's t on per-seed means plus the example term. With 3 + 3 seeds
that is about 4 degrees of freedom (t = 2.78, not the normal 1.96). A group with one seed has no
seed variance: no interval. tests/test_stats.py checks the coverage by simulation (seed spread
dominating, per-example effects with avg@k, heavy-tailed seeds; 3 and 5 seeds).

Every function takes leading batch axes (many simulated grids at once) and returns floats for
a single comparison.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np
from scipy import stats

CONFIDENCE, POWER = 0.95, 0.8


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
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


def _out(x: np.ndarray) -> float | np.ndarray:
    return float(x) if np.ndim(x) == 0 else x


class Contrasts:
    """Means of groups of [..., seeds, examples] scores and the covariance of their contrasts
    (weight vectors over the groups that sum to 0), by the variance decomposition above."""

    def __init__(self, groups: Sequence[np.ndarray]):
        groups = [np.asarray(g, dtype=float) for g in groups]
        n_examples = {g.shape[-1] for g in groups}
        if any(g.ndim < 2 or 0 in g.shape for g in groups) or len(n_examples) != 1:
            shapes = ", ".join(str(g.shape) for g in groups)
            raise ValueError(f"the groups must be [seeds, examples] score arrays over the same examples, got shapes {shapes}")
        self.n_examples = n_examples.pop()
        self.n_seeds = np.array([g.shape[-2] for g in groups], dtype=float)
        self.means = np.stack([g.mean(axis=(-2, -1)) for g in groups], axis=-1)  # [..., G]
        with np.errstate(invalid="ignore", divide="ignore"):
            # s_g^2 / n_g: variance of the group's mean over seeds
            self.seed_var = np.stack([self._per_seed_variance(g) for g in groups], -1) / self.n_seeds
            residual = np.stack([self._residual_mean_square(g) for g in groups], -1) / self.n_seeds
            per_example = np.stack([g.mean(-2) for g in groups], -2)  # [..., G, J], seed-averaged
            centered = per_example - per_example.mean(-1, keepdims=True)
            cov = centered @ np.swapaxes(centered, -1, -2) / (self.n_examples - 1)
        # Var_j of each group's seed-averaged score less the residual noise it carries, over J
        self.example_cov = (cov - residual[..., None] * np.eye(len(groups))) / self.n_examples

    @staticmethod
    def _per_seed_variance(g: np.ndarray) -> np.ndarray:
        """Variance of the per-seed means (nan with one seed)."""
        return g.mean(-1).var(-1, ddof=1) if g.shape[-2] > 1 else np.full(g.shape[:-2], np.nan)

    @staticmethod
    def _residual_mean_square(g: np.ndarray) -> np.ndarray:
        """Two-way (seed x example) residual mean square: unbiased for the mean variance of e."""
        n, j = g.shape[-2:]
        resid = g - g.mean(-1, keepdims=True) - g.mean(-2, keepdims=True) + g.mean((-2, -1), keepdims=True)
        return (resid**2).sum((-2, -1)) / ((n - 1) * (j - 1)) if n > 1 and j > 1 else np.full(g.shape[:-2], np.nan)

    def estimate(self, c: np.ndarray) -> np.ndarray:
        return self.means @ np.asarray(c, dtype=float)

    def seed_cov(self, c: np.ndarray, d: np.ndarray) -> np.ndarray:
        return self.seed_var @ (np.asarray(c, dtype=float) * np.asarray(d, dtype=float))

    def example_term(self, c: np.ndarray, d: np.ndarray) -> np.ndarray:
        return np.einsum("...gh,g,h->...", self.example_cov, np.asarray(c, dtype=float), np.asarray(d, dtype=float))

    def variance_df(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(variance, Welch-Satterthwaite degrees of freedom) of the contrast c, broadcast over c's leading axes."""
        c = np.asarray(c, dtype=float)
        seed_parts = self.seed_var * c**2  # [..., G]
        example = np.maximum(np.einsum("...gh,...g,...h->...", self.example_cov, c, c), 0)
        variance = seed_parts.sum(-1) + example
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = (seed_parts**2 / (self.n_seeds - 1)).sum(-1) + example**2 / (self.n_examples - 1)
            df = np.where(variance > 0, variance**2 / spread, np.where(np.isnan(variance), np.nan, np.inf))
        return variance, df


def seed_difference(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE, power: float = POWER) -> dict:
    """Mean of a minus mean of b, where a [..., seeds_a, examples] and b [..., seeds_b, examples]
    hold one score per training seed and example (the same examples, in the same order, in both).

    Returns diff; se and df (the module's variance and Welch-Satterthwaite degrees of freedom); the
    Student-t interval (ci_low, ci_high); the two-sided p-value for "no difference"; and mdd, the
    minimal detectable difference: the true difference that a two-sided test at per-comparison
    level alpha = 1 - confidence detects with probability `power`, (t_{1-alpha/2, df} + t_{power, df}) se
    (3.72 se at 3 + 3 seeds, 0.95 and 0.8; by the noncentral t this gives 79 % power at 4 degrees of
    freedom, 77 % at 2). nan where a group has one seed (no interval).
    """
    return _difference(Contrasts([a, b]), np.array([1.0, -1.0]), confidence, power)


def _difference(groups: Contrasts, contrast: np.ndarray, confidence: float, power: float, seeds_df: bool = False) -> dict:
    """Estimate, Student-t interval, p-value and MDD of one contrast (seed_difference's return); with
    `seeds_df` the degrees of freedom are the seeds' alone (n - 1), not Welch-Satterthwaite's."""
    diff = groups.estimate(contrast)
    variance, df = groups.variance_df(contrast)
    if seeds_df:
        df = np.where(np.isnan(df), np.nan, groups.n_seeds[0] - 1)
    se = np.sqrt(variance)
    alpha = 1 - confidence
    t_crit = stats.t.ppf(1 - alpha / 2, df)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(se > 0, np.abs(diff) / se, np.where(diff == 0, 0.0, np.inf))
    return {
        "diff": _out(diff),
        "se": _out(se),
        "df": _out(df),
        "ci_low": _out(diff - t_crit * se),
        "ci_high": _out(diff + t_crit * se),
        "p_value": _out(np.where(np.isnan(se), np.nan, 2 * stats.t.sf(t, df))),
        "mdd": _out((t_crit + stats.t.ppf(power, df)) * se),
    }


def paired_seed_difference(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE, power: float = POWER) -> dict:
    """seed_difference for paired seeds: a and b [..., seeds, examples] hold the same training seeds in
    the same order, and a seed fixes what the two runs share (the data order and the first sampling
    stream; params train.seeds). The unit is then the seed's difference a_s - b_s: the model above
    with the seed effect u_s common to both groups (it cancels) plus each group's own, and

        Var(mean_a - mean_b) = s_d^2 / n + Var_j(w_aj - w_bj) / J

    with s_d^2 the variance of the per-seed differences, and n - 1 degrees of freedom: Welch-Satterthwaite
    over n - 1 and J - 1 covered 92-93 % at 3 seeds in tests/test_stats.py's simulations (the seeds' own
    df is conservative: the example term can only add degrees of freedom).
    It gains over seed_difference when the runs of one seed correlate (s_d^2 < s_a^2 + s_b^2) and
    loses degrees of freedom (n - 1 instead of about 2n - 2) when they do not: which to use is a
    design decision, made before the results (docs/experiment.md measures the correlation).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired seeds need the same seeds and examples in both groups, got shapes {a.shape} and {b.shape}")
    return _difference(Contrasts([a - b]), np.array([1.0]), confidence, power, seeds_df=True)


def gain_ratio(baseline: np.ndarray, method: np.ndarray, oracle: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """(method - baseline) / (oracle - baseline), each [..., seeds, examples] over the same examples,
    with Fieller's interval: every ratio r for which the contrast (method - baseline) - r (oracle -
    baseline) is not rejected by the module's t test. Fieller's set is exact for a ratio of normal
    estimates (the delta method is not, when the denominator is noisy), and it is bounded only when
    the denominator, the oracle's gain, is told apart from 0: otherwise ci_low, ci_high are nan and
    `defined` is False (the gain has no scale). With a group of one seed: no interval, not defined. Degrees of freedom: Welch-Satterthwaite of the
    contrast at the estimated ratio. tests/test_stats.py checks its coverage by simulation.
    """
    groups = Contrasts([baseline, method, oracle])
    num, den = np.array([-1.0, 1.0, 0.0]), np.array([-1.0, 0.0, 1.0])
    n, d = groups.estimate(num), groups.estimate(den)
    # 2 x 2 covariance of (n, d); its example part projected to the positive semidefinite cone
    example = np.stack([np.stack([groups.example_term(x, y) for y in (num, den)], -1) for x in (num, den)], -2)
    values, vectors = np.linalg.eigh(np.nan_to_num(example))
    example = (vectors * np.maximum(values, 0)[..., None, :]) @ np.swapaxes(vectors, -1, -2)
    v_nn = groups.seed_cov(num, num) + example[..., 0, 0]
    v_nd = groups.seed_cov(num, den) + example[..., 0, 1]
    v_dd = groups.seed_cov(den, den) + example[..., 1, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = n / d
        _, df = groups.variance_df(num - ratio[..., None] * den)
        q = stats.t.ppf((1 + confidence) / 2, df) ** 2
        # {r: (n - r d)^2 <= q Var(n - r d)} = {r: A r^2 - 2 B r + C <= 0}
        A, B, C = d**2 - q * v_dd, n * d - q * v_nd, n**2 - q * v_nn
        root = np.sqrt(np.maximum(B**2 - A * C, 0))
        defined = A > 0
        low, high = (B - root) / A, (B + root) / A
    nan = np.full(np.shape(n), np.nan)
    return {
        "ratio": _out(ratio),
        "ci_low": _out(np.where(defined, low, nan)),
        "ci_high": _out(np.where(defined, high, nan)),
        "defined": bool(defined) if np.ndim(defined) == 0 else defined,
    }


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: the family-wise error rate over all of them stays at the
    level a claim compares its adjusted p with, whatever their dependence."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted.tolist()
