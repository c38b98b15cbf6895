"""The statistics the chapters and reports use, in one place, on scipy.stats.

Runs are compared per seed (paired: same seed, same data order and validation images), so the
change of a variant against its dense baseline is a list of per-seed differences, and its
uncertainty is Student's t-interval of their mean at n - 1 degrees of freedom. Groups without
pairing (different seeds, different machines) use Welch's interval.
"""
from __future__ import annotations

import statistics

from scipy import stats as _scipy


def _t_quantile(level: float, df: float) -> float:
    """Student's t quantile for a two-sided interval at `level` with `df` degrees of freedom."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    return _scipy.t.ppf((1 + level) / 2, df)


def mean_interval(values, level: float = 0.95) -> tuple[float, float, float] | None:
    """(mean, low, high): the mean of paired differences and its two-sided t-interval at `level`;
    None with fewer than 2 values (no spread to estimate)."""
    values = [float(v) for v in values]
    n = len(values)
    if n < 2:
        _t_quantile(level, 1)  # a bad level is an error whatever the data
        return None
    mean = statistics.fmean(values)
    half = _t_quantile(level, n - 1) * statistics.stdev(values) / n ** 0.5
    return mean, mean - half, mean + half


def welch_interval(a, b, level: float = 0.95) -> tuple[float, float, float] | None:
    """(mean(a) - mean(b), low, high): Welch's t-interval of a difference of means of two unpaired
    groups (unequal variances, Welch–Satterthwaite degrees of freedom); None if a group has fewer
    than 2 values."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    if len(a) < 2 or len(b) < 2:
        _t_quantile(level, 1)
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    se = (va + vb) ** 0.5
    if se == 0:
        _t_quantile(level, 1)
        return diff, diff, diff
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = _t_quantile(level, df) * se
    return diff, diff - half, diff + half


def paired(values, seeds, reference_values, reference_seeds) -> list[tuple[float, float]]:
    """(value, reference value) for each seed both hold, in the order of `seeds`."""
    if len(values) != len(seeds) or len(reference_values) != len(reference_seeds):
        raise ValueError("each value needs its seed: lengths differ")
    ref = dict(zip(reference_seeds, reference_values))
    return [(v, ref[s]) for s, v in zip(seeds, values) if s in ref]


def accuracy_change(row: dict, reference: dict, key: str = "test_acc") -> list[float]:
    """Per seed, the accuracy change of a collected row against a reference row (its dense
    baseline), in percentage points, over the seeds both hold."""
    pairs = paired(row[f"{key}_values"], row["seeds"], reference[f"{key}_values"], reference["seeds"])
    return [100 * (a - b) for a, b in pairs]


def time_ratio(row: dict, dense: dict) -> float | None:
    """Training time against the dense run of the same seed, averaged over the seeds both hold
    (paired like the accuracy change, so every variant is divided by the same seeds' dense runs)."""
    ratios = [t / d for t, d in paired(row["time_values"], row["seeds"], dense["time_values"], dense["seeds"])]
    return statistics.fmean(ratios) if ratios else None


def binomial_sd(accuracy: float, n: int) -> float:
    """Standard deviation of an accuracy measured on n independent test images, in the same unit
    as `accuracy` (a fraction): the sampling uncertainty of the test set itself."""
    if not 0 <= accuracy <= 1 or n < 1:
        raise ValueError(f"need 0 <= accuracy <= 1 and n >= 1, got {accuracy}, {n}")
    return (accuracy * (1 - accuracy) / n) ** 0.5


def seeds_needed(sd: float, difference: float, level: float = 0.95, max_seeds: int = 10_000) -> int | None:
    """The fewest seeds n (at least 2) whose paired interval at `level` is narrower than the
    difference: t_{n-1} · sd / √n < |difference|, with `sd` the per-seed standard deviation of
    the paired differences (assumed to stay as measured). None if more than `max_seeds` would be
    needed (or the difference is 0). At that n, a true difference of exactly `difference` is
    decided only about half the time: see `paired_power`."""
    if sd < 0:
        raise ValueError(f"sd must be >= 0, got {sd}")
    _t_quantile(level, 1)
    if difference == 0:
        return None
    for n in range(2, max_seeds + 1):
        if _t_quantile(level, n - 1) * sd / n ** 0.5 < abs(difference):
            return n
    return None


def paired_power(difference: float, sd: float, n: int, level: float = 0.95) -> float:
    """The probability that a paired t-interval at `level` over n seeds excludes zero when the true
    mean difference is `difference` and the paired differences are normal with standard deviation
    `sd` (noncentral t: the power of the two-sided paired t-test)."""
    if n < 2 or sd <= 0:
        raise ValueError(f"need n >= 2 and sd > 0, got n={n}, sd={sd}")
    df, crit = n - 1, _t_quantile(level, n - 1)
    shift = difference * n ** 0.5 / sd
    return float(_scipy.nct.sf(crit, df, shift) + _scipy.nct.cdf(-crit, df, shift))
