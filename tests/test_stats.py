"""dprp_lib.engine.stats against scipy's own t-tests, at small and large numbers of seeds."""
import math
import random

import pytest
from scipy import stats as scipy_stats

from dprp_lib.engine import stats as S


@pytest.mark.parametrize("n", [2, 3, 5, 11, 12, 30])
def test_paired_interval_is_scipys_t_interval_at_n_minus_1_degrees_of_freedom(n):
    rng = random.Random(n)
    values = [rng.gauss(0.5, 1.3) for _ in range(n)]
    mean, low, high = S.mean_interval(values)
    ref = scipy_stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    assert mean == pytest.approx(sum(values) / n)
    assert (low, high) == pytest.approx((ref.low, ref.high), rel=1e-12)
    # Above 10 degrees of freedom a normal quantile (1.96) would be too narrow: at 11, t = 2.201.
    if n == 12:
        assert (high - low) / 2 / (scipy_stats.tstd(values) / n ** 0.5) == pytest.approx(2.2010, abs=1e-4)


def test_interval_level_and_degenerate_cases():
    values = [1.0, 2.0, 4.0, 3.0]
    narrow, wide = S.mean_interval(values, level=0.80), S.mean_interval(values, level=0.99)
    assert wide[1] < narrow[1] < narrow[2] < wide[2]  # a higher level gives a wider interval
    assert S.mean_interval([0.5]) is None and S.mean_interval([]) is None
    assert S.mean_interval([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)  # no spread, no width
    with pytest.raises(ValueError, match="level"):
        S.mean_interval(values, level=95)


@pytest.mark.parametrize("sizes", [(3, 3), (3, 12), (15, 4)])
def test_welch_interval_is_scipys_welch_test(sizes):
    rng = random.Random(sum(sizes))
    a = [rng.gauss(1.0, 0.5) for _ in range(sizes[0])]
    b = [rng.gauss(0.2, 2.0) for _ in range(sizes[1])]
    diff, low, high = S.welch_interval(a, b)
    ref = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(sum(a) / len(a) - sum(b) / len(b))
    assert (low, high) == pytest.approx((ref.low, ref.high), rel=1e-10)
    assert S.welch_interval(a, [1.0]) is None


def test_paired_changes_use_only_the_seeds_both_hold():
    row = {"seeds": [0, 1, 2], "test_acc_values": [0.90, 0.91, 0.92]}
    ref = {"seeds": [2, 0], "test_acc_values": [0.93, 0.89]}
    assert S.accuracy_change(row, ref) == pytest.approx([1.0, -1.0])  # seed 0: +1, seed 2: −1, in row's order
    with pytest.raises(ValueError, match="lengths differ"):
        S.paired([1.0, 2.0], [0], [1.0], [0])


def test_training_time_is_divided_by_the_dense_run_of_the_same_seed():
    dense = {"seeds": [0, 1], "time_values": [3000.0, 2000.0]}
    # One seed committed: divided by dense seed 0 alone, not by the mean of both dense runs.
    assert S.time_ratio({"seeds": [0], "time_values": [3300.0]}, dense) == pytest.approx(1.1)
    assert S.time_ratio({"seeds": [1, 0], "time_values": [2400.0, 3300.0]}, dense) == pytest.approx(1.15)
    assert S.time_ratio({"seeds": [2], "time_values": [100.0]}, dense) is None  # no dense run to pair with


def test_binomial_sd_of_a_test_set():
    assert S.binomial_sd(0.9, 1000) == pytest.approx(math.sqrt(0.09 / 1000))
    assert S.binomial_sd(0.9, 10000) < S.binomial_sd(0.9, 1000)
    with pytest.raises(ValueError):
        S.binomial_sd(90.0, 1000)


@pytest.mark.parametrize("sd, difference, level", [(0.43, 1.0, 0.95), (4.9, 2.0, 0.95), (0.18, 1.83, 1 - 0.05 / 3),
                                                   (1.0, -0.5, 0.99)])
def test_seeds_needed_is_the_first_n_whose_interval_is_narrower_than_the_difference(sd, difference, level):
    n = S.seeds_needed(sd, difference, level)
    half = lambda k: scipy_stats.t.ppf((1 + level) / 2, k - 1) * sd / math.sqrt(k)
    assert half(n) < abs(difference)
    assert n == 2 or half(n - 1) >= abs(difference)
    # the same number read off scipy's own interval of n differences with exactly that spread
    d = [difference + sd * z for z in (-1.0, 1.0)] + [difference] * (n - 2)
    d = [difference + (x - difference) * sd / scipy_stats.tstd(d) for x in d]
    ci = scipy_stats.ttest_1samp(d, 0.0).confidence_interval(level)
    assert (ci.high - ci.low) / 2 == pytest.approx(half(n), rel=1e-9)


def test_seeds_needed_degenerate_cases():
    assert S.seeds_needed(0.0, 1.0) == 2
    assert S.seeds_needed(1.0, 0.0) is None
    assert S.seeds_needed(100.0, 0.01, max_seeds=50) is None
    with pytest.raises(ValueError):
        S.seeds_needed(-1.0, 1.0)


@pytest.mark.parametrize("difference, sd, n", [(1.0, 0.43, 3), (0.8, 0.43, 2), (2.0, 4.9, 12), (0.0, 1.0, 5)])
def test_paired_power_is_how_often_scipys_paired_test_decides(difference, sd, n):
    import numpy as np
    power = S.paired_power(difference, sd, n)
    if difference == 0:
        assert power == pytest.approx(0.05, abs=1e-9)  # at no difference: the false-decision rate
    rng = np.random.default_rng(n)
    d = rng.normal(difference, sd, size=(40_000, n))
    decided = (scipy_stats.ttest_1samp(d, 0.0, axis=1).pvalue < 0.05).mean()
    assert decided == pytest.approx(power, abs=0.01)
    assert S.paired_power(-difference, sd, n) == pytest.approx(power)
    with pytest.raises(ValueError):
        S.paired_power(1.0, 1.0, 1)
