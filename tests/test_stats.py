"""Seed confidence intervals and the hierarchical bootstrap, on inputs checkable by hand."""

from __future__ import annotations

import math

import pytest

import numpy as np

from tokencredit.stats import hierarchical_bootstrap, mean_ci

# Textbook two-sided 95 % critical values of Student's t.
T95 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 9: 2.2622, 10: 2.2281, 30: 2.0423}


@pytest.mark.parametrize("df", sorted(T95))
def test_mean_ci_uses_the_t_table(df: int) -> None:
    values = [0.0, 1.0] + [0.5] * (df - 1)  # df + 1 values
    mean, half = mean_ci(values)
    sem = float(np.std(values, ddof=1)) / math.sqrt(len(values))
    assert half == pytest.approx(T95[df] * sem, rel=1e-4)


def test_mean_ci_by_hand() -> None:
    # mean 0.5, sample sd of (0.4, 0.6) = sqrt(0.02), sem = 0.1, t(0.975, 1) = 12.706
    mean, half = mean_ci([0.4, 0.6])
    assert mean == pytest.approx(0.5) and half == pytest.approx(12.7062 * 0.1, rel=1e-4)
    # (1, 2, 3): sd 1, sem 1/sqrt(3), t(0.975, 2) = 4.3027
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.3027 / math.sqrt(3), rel=1e-4)
    assert mean_ci([0.7, 0.7, 0.7]) == (0.7, 0.0)


def test_mean_ci_one_value_and_none() -> None:
    mean, half = mean_ci([0.3])
    assert mean == 0.3 and math.isnan(half)
    with pytest.raises(ValueError, match="no values"):
        mean_ci([])


def test_hierarchical_bootstrap_no_difference() -> None:
    scores = np.array([[0, 1, 1, 0, 1], [1, 1, 0, 0, 1]])
    result = hierarchical_bootstrap(scores, scores[::-1], n_boot=200)
    assert result["diff"] == 0.0 and result["ci_low"] <= 0.0 <= result["ci_high"] and result["p_value"] == 1.0


def test_hierarchical_bootstrap_constant_difference() -> None:
    result = hierarchical_bootstrap(np.ones((3, 4)), np.zeros((2, 4)), n_boot=99)
    assert result["diff"] == 1.0 and result["ci_low"] == 1.0 and result["ci_high"] == 1.0 and result["se"] == 0.0
    assert result["p_value"] == pytest.approx(1 / 100) and result["mdd"] == 0.0  # no resample reaches 0


def test_hierarchical_bootstrap_counts_seed_spread_that_an_example_bootstrap_misses() -> None:
    # Three seeds per method, 400 examples: seed offsets of +-0.15 around a 0.05 true difference.
    rng = np.random.default_rng(0)
    offsets = np.array([-0.15, 0.0, 0.15])[:, None]
    a = np.clip(0.55 + offsets + rng.normal(0, 0.1, (3, 400)), 0, 1)
    b = np.clip(0.50 - offsets + rng.normal(0, 0.1, (3, 400)), 0, 1)
    result = hierarchical_bootstrap(a, b, n_boot=2000, seed=1)
    examples_only = np.std([(a - b).mean(0)[rng.integers(0, 400, 400)].mean() for _ in range(500)])
    assert result["diff"] == pytest.approx(float(a.mean() - b.mean()))
    assert result["se"] > 5 * examples_only  # the seeds dominate
    assert result["ci_low"] < 0 < result["ci_high"] and result["p_value"] > 0.05  # 3 seeds cannot resolve 0.05
    assert result["mdd"] == pytest.approx(2.8016 * result["se"], rel=1e-3)  # z_0.975 + z_0.8
    assert hierarchical_bootstrap(a, b, n_boot=2000, seed=1) == result  # deterministic for a seed


def test_hierarchical_bootstrap_rejects_other_examples() -> None:
    with pytest.raises(ValueError, match="same examples"):
        hierarchical_bootstrap(np.ones((2, 3)), np.ones((2, 4)))
