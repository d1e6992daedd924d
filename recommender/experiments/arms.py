"""An arm's sufficient statistics, and the difference between two arms with its variance.

An experiment's metric is measured once per unit (a pseudonymous subject), so
an arm is summarised by three numbers: the number of units ``n``, the sum of
their values ``total`` and the sum of their squares ``total_sq``. They add up
across batches, which is what lets an experiment be analysed at every look from
counters alone, with no unit-level data kept. A 0/1 (proportion) metric has
``total_sq == total``, the number of successes. The variance is
``(total_sq - total^2 / n) / (n - 1)``, which loses precision in floating point
when the mean is many orders of magnitude larger than the spread (a mean of
1e8 with a standard deviation of 1): record such a metric centred on a fixed
reference value.

The difference ``treatment mean - control mean`` is estimated with its unpooled
variance (Welch): ``p (1 - p) / n`` per arm for a proportion (the Wald variance,
as ``statsmodels.stats.proportion.test_proportions_2indep(method="wald")``),
``s^2 / n`` with the unbiased sample variance ``s^2`` for a mean. With the
thousands of units an online experiment has, the normal reference is what the
sequential methods need and the Welch t would not differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from recommender.errors import ConfigError, DataError

__all__ = ["ArmData", "Kind", "KINDS", "difference_moments"]

Kind = Literal["proportion", "mean"]
KINDS: tuple[str, ...] = ("proportion", "mean")


@dataclass(frozen=True)
class ArmData:
    """Sufficient statistics of a per-unit metric in one arm.

    Attributes
    ----------
    n:
        Number of units (pseudonymous subjects) in the arm.
    total:
        Sum of the units' values; for a proportion metric, the count of successes.
    total_sq:
        Sum of the squares of the units' values; for a proportion metric, equal to ``total``.

    >>> ArmData(n=4, total=2, total_sq=2).mean
    0.5
    """

    n: int
    total: float
    total_sq: float

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, (int, np.integer)) or self.n < 0:
            raise DataError(f"ArmData.n must be a non-negative integer (a count of units); got {self.n!r}.")
        for name in ("total", "total_sq"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise DataError(f"ArmData.{name} must be a number; got {value!r}.")
            if not math.isfinite(value):
                raise DataError(f"ArmData.{name} must be finite; got {value!r}.")
        if self.total_sq < 0:
            raise DataError(f"ArmData.total_sq is a sum of squares and cannot be negative; got {self.total_sq!r}.")
        if self.n == 0 and (self.total != 0 or self.total_sq != 0):
            raise DataError(f"an arm with n=0 units has total=0 and total_sq=0; got {self.total!r}, {self.total_sq!r}.")
        # Cauchy-Schwarz: total^2 <= n * total_sq (up to rounding).
        if self.n > 0 and self.total**2 > self.n * self.total_sq * (1 + 1e-9) + 1e-9:
            raise DataError(
                f"ArmData is inconsistent: total^2 = {self.total**2:g} exceeds n * total_sq = "
                f"{self.n * self.total_sq:g}, which no set of values allows."
            )

    @property
    def mean(self) -> float:
        """The arm's mean value (a proportion for a 0/1 metric); NaN for an empty arm."""
        return self.total / self.n if self.n else math.nan


def check_proportion(arm: ArmData, label: str) -> None:
    """Refuse an arm that cannot hold a 0/1 metric: successes beyond ``0..n`` or ``total_sq != total``."""
    if not (0 <= arm.total <= arm.n) or arm.total_sq != arm.total or float(arm.total) != int(arm.total):
        raise DataError(
            f"the {label} arm does not hold a proportion metric: it needs a whole count of successes "
            f"0 <= total <= n and total_sq == total; got n={arm.n}, total={arm.total!r}, total_sq={arm.total_sq!r}."
        )


def difference_moments(
    kind: Kind,
    n_c: np.ndarray | float,
    total_c: np.ndarray | float,
    total_sq_c: np.ndarray | float,
    n_t: np.ndarray | float,
    total_t: np.ndarray | float,
    total_sq_t: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """``(estimate, variance)`` of ``mean_t - mean_c``, elementwise over arrays of sufficient statistics.

    Vectorised so that simulations of thousands of experiments use exactly the
    arithmetic that :func:`recommender.experiments.analyze_look` uses for one.

    >>> est, var = difference_moments("proportion", 100, 10, 10, 100, 20, 20)
    >>> round(float(est), 3), round(float(var), 6)
    (0.1, 0.0025)
    """
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}.")
    n_c, n_t = np.asarray(n_c, dtype=float), np.asarray(n_t, dtype=float)
    mean_c, mean_t = np.asarray(total_c) / n_c, np.asarray(total_t) / n_t
    if kind == "proportion":
        var_c, var_t = mean_c * (1.0 - mean_c), mean_t * (1.0 - mean_t)
    else:
        var_c = np.maximum(np.asarray(total_sq_c) - n_c * mean_c**2, 0.0) / (n_c - 1.0)
        var_t = np.maximum(np.asarray(total_sq_t) - n_t * mean_t**2, 0.0) / (n_t - 1.0)
    return mean_t - mean_c, var_c / n_c + var_t / n_t
