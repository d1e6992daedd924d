"""Welch's two-sample t statistics for the gap between two groups' means, and their intervals.

The gap between two user groups on a per-user metric is judged from each
group's size ``n``, mean and standard error ``se = sd / sqrt(n)``:

* the difference ``mean_h - mean_l`` has standard error ``sqrt(se_h^2 + se_l^2)``
  and Welch-Satterthwaite degrees of freedom; its interval is the Welch t
  interval;
* the ratio ``mean_l / mean_h`` is judged through the linear form
  ``mean_l - r * mean_h`` (Fieller 1954): the interval is every ``r`` the
  test does not reject, the roots of a quadratic; it is unbounded (NaN ends)
  when ``mean_h`` is not itself distinguishable from 0.

These intervals keep their coverage when the groups are small and the values
skewed (a zero-inflated NDCG, a 0/1 hit), where the percentile bootstrap of a
difference falls a point or two short; and they are the same statistics the
consumer-gap rules test, so an interval and a verdict never disagree.
"""

from __future__ import annotations

import math

__all__ = ["difference_interval", "ratio_interval", "t_quantile", "t_sf", "welch"]


def welch(se_a: float, n_a: int, se_b: float, n_b: int, weight_a: float = 1.0) -> tuple[float, float]:
    """``(se, df)`` of ``weight_a * mean_a - mean_b``: its standard error and Welch-Satterthwaite degrees of freedom.

    >>> se, df = welch(0.1, 10, 0.1, 10)
    >>> round(se, 4), round(df, 6)
    (0.1414, 18.0)
    """
    var_a, var_b = (weight_a * se_a) ** 2, se_b**2
    parts = [v**2 / (n - 1) for v, n in ((var_a, n_a), (var_b, n_b)) if n > 1 and v > 0]
    df = (var_a + var_b) ** 2 / sum(parts) if parts else math.inf
    return math.sqrt(var_a + var_b), df


def t_sf(statistic: float, df: float) -> float:
    """``P(T > statistic)`` for Student's t with ``df`` degrees of freedom (normal when ``df`` is infinite)."""
    from scipy.stats import norm, t

    return float(norm.sf(statistic) if not math.isfinite(df) else t.sf(statistic, df))


def t_quantile(confidence: float, df: float) -> float:
    """The two-sided critical value: the ``(1 + confidence) / 2`` quantile of Student's t."""
    from scipy.stats import norm, t

    q = (1.0 + confidence) / 2.0
    return float(norm.ppf(q) if not math.isfinite(df) else t.ppf(q, df))


def difference_interval(
    mean_h: float, se_h: float, n_h: int, mean_l: float, se_l: float, n_l: int, confidence: float
) -> tuple[float, float]:
    """Welch's ``confidence`` interval of ``mean_h - mean_l``."""
    se, df = welch(se_h, n_h, se_l, n_l)
    if not math.isfinite(se):
        return math.nan, math.nan
    half = t_quantile(confidence, df) * se
    return mean_h - mean_l - half, mean_h - mean_l + half


def ratio_interval(
    mean_h: float, se_h: float, n_h: int, mean_l: float, se_l: float, n_l: int, confidence: float
) -> tuple[float, float]:
    """Fieller's ``confidence`` interval of ``mean_l / mean_h`` (NaN ends when it is unbounded).

    Every ``r`` with ``(mean_l - r mean_h)^2 <= t^2 (se_l^2 + r^2 se_h^2)``, ``t`` the Welch
    critical value at the point ratio.
    """
    if mean_h == 0:
        return math.nan, math.nan
    _, df = welch(se_h, n_h, se_l, n_l, weight_a=mean_l / mean_h)
    t2 = t_quantile(confidence, df) ** 2
    a = mean_h**2 - t2 * se_h**2
    b = mean_l * mean_h
    c = mean_l**2 - t2 * se_l**2
    disc = b * b - a * c
    if a <= 0 or disc < 0:
        return math.nan, math.nan
    root = math.sqrt(disc)
    return (b - root) / a, (b + root) / a
