"""Seed confidence intervals and the paired bootstrap, on inputs checkable by hand."""

from __future__ import annotations

import math

import pytest

from tokencredit.stats import mean_ci, paired_bootstrap, t_quantile_two_sided

# Textbook two-sided 95 % critical values of Student's t.
T95 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 9: 2.2622, 10: 2.2281, 30: 2.0423}


@pytest.mark.parametrize("df", sorted(T95))
def test_t_quantile_matches_table(df: int) -> None:
    assert t_quantile_two_sided(0.95, df) == pytest.approx(T95[df], abs=1e-4)


def test_t_quantile_matches_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 7, 8, 50, 200):
        for confidence in (0.5, 0.9, 0.95, 0.99):
            expected = scipy_stats.t.ppf(0.5 + confidence / 2, df)
            assert t_quantile_two_sided(confidence, df) == pytest.approx(expected, rel=1e-6)


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


def test_paired_bootstrap_no_difference() -> None:
    scores = [0, 1, 1, 0, 1]
    result = paired_bootstrap(scores, scores, n_boot=200)
    assert result == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0}


def test_paired_bootstrap_constant_difference() -> None:
    result = paired_bootstrap([1, 1, 1, 1], [0, 0, 0, 0], n_boot=99)
    assert result["diff"] == 1.0 and result["ci_low"] == 1.0 and result["ci_high"] == 1.0
    assert result["p_value"] == pytest.approx(1 / 100)  # no resample reaches 0


def test_paired_bootstrap_mixed() -> None:
    # a beats b on 6 of 10 examples, loses on 2: diff 0.4; interval inside [-0.2, 1], around 0.4
    a = [1, 1, 1, 1, 1, 1, 0, 0, 1, 0]
    b = [0, 0, 0, 0, 0, 0, 1, 1, 1, 0]
    result = paired_bootstrap(a, b, n_boot=2000, seed=1)
    assert result["diff"] == pytest.approx(0.4)
    assert -0.2 <= result["ci_low"] < 0.4 < result["ci_high"] <= 1.0
    assert 0.0 < result["p_value"] < 0.2
    assert paired_bootstrap(a, b, seed=1) == result  # deterministic for a seed


def test_paired_bootstrap_rejects_unpaired() -> None:
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap([1, 0], [1])
