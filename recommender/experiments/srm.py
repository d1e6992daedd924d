"""Sample ratio mismatch: are the arms' unit counts what the allocation promised?

When the counts of units per arm depart from the configured split by more than
chance allows, the assignment or the logging is broken, and every comparison
of the arms is suspect (Kohavi, Tang & Xu, *Trustworthy Online Controlled
Experiments*, 2020, ch. 21; Fabijan et al., "Diagnosing sample ratio mismatch
in online controlled experiments", KDD 2019). The check is Pearson's
chi-square goodness-of-fit test of the counts against the allocation
(``scipy.stats.chisquare``), at a strict level (0.001 by default) because it is
run on every experiment at every look and a false alarm stops a good experiment.

A planted imbalance ``q`` (the shares the units really follow) is found by the
chi-square test with the power of the non-central chi-square with
``k - 1`` degrees of freedom and non-centrality ``N * sum((q_i - p_i)^2 / p_i)``;
:func:`srm_sample_size` inverts it to say how many units make an imbalance
detectable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import optimize, stats

from recommender.errors import ConfigError, DataError

__all__ = ["SrmResult", "srm_check", "srm_p_values", "srm_sample_size"]


@dataclass(frozen=True)
class SrmResult:
    """The sample ratio check of one experiment.

    Attributes
    ----------
    chi2:
        Pearson's statistic of the observed counts against the expected ones.
    p_value:
        Its upper tail under the chi-square with (arms - 1) degrees of freedom.
    mismatch:
        ``p_value < alpha``: the split is not what was configured; do not trust the comparison.
    expected:
        The expected count per arm (total units times the arm's share).
    """

    chi2: float
    p_value: float
    mismatch: bool
    expected: dict[str, float]


def _shares(allocation: Mapping[str, float]) -> dict[str, float]:
    if len(allocation) < 2:
        raise ConfigError(f"allocation must name at least two arms; got {dict(allocation)!r}.")
    values = np.array([float(v) for v in allocation.values()])
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ConfigError(f"allocation shares must be positive; got {dict(allocation)!r}.")
    if abs(values.sum() - 1.0) > 1e-6:
        raise ConfigError(f"allocation shares must sum to 1; got {dict(allocation)!r} (sum {values.sum():g}).")
    return {arm: float(v) / float(values.sum()) for arm, v in allocation.items()}


def srm_p_values(counts: np.ndarray, shares: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """``(chi2, p_value)`` per row of a ``(experiments, arms)`` array of counts, vectorised.

    The same ``scipy.stats.chisquare`` call :func:`srm_check` makes for one experiment.
    """
    counts = np.asarray(counts, dtype=float)
    p = np.asarray(shares, dtype=float)
    expected = counts.sum(axis=-1, keepdims=True) * p
    result = stats.chisquare(counts, expected, axis=-1)
    return np.asarray(result.statistic), np.asarray(result.pvalue)


def srm_check(observed: Mapping[str, int], allocation: Mapping[str, float], *, alpha: float = 0.001) -> SrmResult:
    """Test the arms' unit counts against the configured allocation.

    >>> r = srm_check({"control": 5050, "treatment": 4950}, {"control": 0.5, "treatment": 0.5})
    >>> round(r.chi2, 3), r.mismatch
    (1.0, False)
    """
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 1.0):
        raise ConfigError(f"alpha must be in (0, 1); got {alpha!r}.")
    shares = _shares(allocation)
    if set(observed) != set(shares):
        raise DataError(
            f"the observed arms {sorted(observed)} are not the allocated arms {sorted(shares)}; "
            "count every allocated arm (0 units included) and nothing else."
        )
    for arm, count in observed.items():
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise DataError(f"the count of units in arm {arm!r} must be a non-negative integer; got {count!r}.")
    arms = list(shares)
    counts = np.array([observed[a] for a in arms], dtype=float)
    total = counts.sum()
    if total == 0:
        raise DataError("no units have been assigned yet: a sample ratio cannot be checked on zero units.")
    chi2, p = srm_p_values(counts, [shares[a] for a in arms])
    return SrmResult(
        chi2=float(chi2),
        p_value=float(p),
        mismatch=bool(p < alpha),
        expected={a: float(total * shares[a]) for a in arms},
    )


def srm_sample_size(
    allocation: Sequence[float], actual: Sequence[float], *, alpha: float = 0.001, power: float = 0.99
) -> int:
    """Units at which the chi-square check at ``alpha`` finds units that follow ``actual`` instead of ``allocation``.

    With 50/50 configured and 50.5/49.5 real (a 1 % relative shortfall in one
    arm), about 315,000 units give 99 % power at alpha 0.001.

    >>> srm_sample_size([0.5, 0.5], [0.505, 0.495], alpha=0.001, power=0.99)
    315493
    """
    p = np.asarray(allocation, dtype=float)
    q = np.asarray(actual, dtype=float)
    if p.shape != q.shape or p.size < 2 or abs(p.sum() - 1) > 1e-6 or abs(q.sum() - 1) > 1e-6:
        raise ConfigError("allocation and actual must be share vectors of the same length, each summing to 1.")
    per_unit = float(np.sum((q - p) ** 2 / p))
    if per_unit == 0:
        raise ConfigError("actual equals allocation: there is no imbalance to detect.")
    df = p.size - 1
    critical = stats.chi2.isf(alpha, df)
    nc = optimize.brentq(lambda lam: stats.ncx2.sf(critical, df, lam) - power, 1e-6, 1e4)
    return int(math.ceil(nc / per_unit))
