"""Is a gap between two user groups beyond a rule's bound, beyond noise? And for many pairs at once?

A consumer-gap rule compares every pair of large-enough groups, so it makes many
comparisons at once: with five groups, ten pairs. Judged one by one at 95%, a
rule with nothing to find would still fail on noise far more often than 5% of
the time. So each bound of each pair is a hypothesis with a p-value, and the
p-values are adjusted for the number of hypotheses before any is rejected:

``holm``
    Holm's (1979) step-down: the family-wise error rate (the chance that any
    pair is failed on noise alone) is at most alpha, whatever the dependence
    between the pairs. The default: a gate blocks on it.
``bh``
    Benjamini and Hochberg's (1995) step-up: the expected share of failed pairs
    that fail on noise is at most alpha (pairs are positively dependent: they
    share groups). More power with many groups; under a rule with nothing to
    find it also fails at most at alpha.

The test of one pair is Welch's two-sample t test on the groups' means, from
each group's size, mean and standard deviation (the facts hold them, so anyone
can redo it):

* a difference bound ``b``: H0 ``|mean_a - mean_b| <= b``; the statistic is
  ``(higher - lower - b) / se`` with ``se = sqrt(se_higher^2 + se_lower^2)``;
* a ratio bound ``r``: H0 ``lower / higher >= r``, i.e. ``lower - r * higher >= 0``
  (Fieller's linear form, which needs no delta method); the statistic is
  ``(r * higher - lower) / sqrt(r^2 se_higher^2 + se_lower^2)``;

with Welch-Satterthwaite degrees of freedom. The p-value is doubled (capped at
1): which group is "higher" is read from the same data, so both directions
count; at ``b = 0`` it is the usual two-sided Welch test, and rejecting at alpha
is the pair's two-sided ``1 - alpha`` interval lying beyond the bound.

Pure, no I/O; the statistics (:mod:`recommender.significance`, which also gives
the facts their Welch and Fieller intervals) are imported when a test runs, so
that loading a pack does not import the numeric stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from governance.facts import GroupFigure, GroupGap

__all__ = [
    "CORRECTIONS",
    "Correction",
    "PairTest",
    "adjust",
    "gap_test",
    "interval_test",
    "standard_error",
    "tested_pairs",
]

Correction = Literal["holm", "bh"]
CORRECTIONS: dict[str, str] = {
    "holm": "Holm step-down (family-wise error rate)",
    "bh": "Benjamini-Hochberg step-up (false discovery rate)",
}


@dataclass(frozen=True)
class PairTest:
    """One bound of one pair, tested."""

    statistic: float
    df: float
    p_value: float


def _z(confidence: float) -> float:
    """The standard normal quantile of ``(1 + confidence) / 2`` (1.96 at 95%)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf((1.0 + confidence) / 2.0)


def standard_error(figure: GroupFigure, confidence: float) -> float | None:
    """The standard error of a group's mean: ``sd / sqrt(n)``, else the half-width of its interval over z.

    None when the facts hold neither (a figure written by hand with a bare value).
    """
    if figure.sd is not None and figure.n >= 2:
        return figure.sd / math.sqrt(figure.n)
    if figure.ci is not None and figure.ci[0] is not None and figure.ci[1] is not None:
        return max(figure.ci[1] - figure.ci[0], 0.0) / (2.0 * _z(confidence))
    return None


def gap_test(
    higher: GroupFigure, lower: GroupFigure, *, bound: float, kind: Literal["difference", "ratio"], confidence: float
) -> PairTest | None:
    """Welch's test that the gap between ``higher`` and ``lower`` is beyond ``bound`` (see the module).

    None when a group has no value or no standard error.
    """
    se_h, se_l = standard_error(higher, confidence), standard_error(lower, confidence)
    if higher.value is None or lower.value is None or se_h is None or se_l is None:
        return None
    from recommender.significance import t_sf, welch

    weight = 1.0 if kind == "difference" else bound
    excess = (higher.value - lower.value - bound) if kind == "difference" else (bound * higher.value - lower.value)
    se, df = welch(se_h, higher.n, se_l, lower.n, weight_a=weight)
    if se == 0.0:  # no spread at all: the gap is what it is
        return PairTest(statistic=math.copysign(math.inf, excess) if excess else 0.0, df=df,
                        p_value=0.0 if excess > 0 else 1.0)  # fmt: skip
    statistic = excess / se
    return PairTest(statistic=statistic, df=df, p_value=min(1.0, 2.0 * t_sf(statistic, df)))


def adjust(p_values: Sequence[float], method: Correction) -> list[float]:
    """Adjusted p-values (same order): reject hypothesis ``i`` at level alpha when ``adjusted[i] <= alpha``.

    >>> [round(p, 4) for p in adjust([0.01, 0.04, 0.03, 0.005], "holm")]
    [0.03, 0.06, 0.06, 0.02]
    >>> [round(p, 4) for p in adjust([0.01, 0.04, 0.03, 0.005], "bh")]
    [0.02, 0.04, 0.04, 0.02]
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    out = [0.0] * m
    if method == "holm":
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (m - rank) * p_values[i]))
            out[i] = running
        return out
    if method == "bh":
        running = 1.0
        for rank in range(m - 1, -1, -1):
            i = order[rank]
            running = min(running, min(1.0, m / (rank + 1) * p_values[i]))
            out[i] = running
        return out
    raise ValueError(f"unknown correction {method!r}; known: {', '.join(CORRECTIONS)}")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def interval_test(
    pair: GroupGap, *, bound: float, kind: Literal["difference", "ratio"], confidence: float
) -> PairTest | None:
    """The same test from the pair's own interval, for facts written by hand whose groups have no spread:
    the standard error is the half-width over z, the reference distribution the normal."""
    value, ci = (pair.difference, pair.difference_ci) if kind == "difference" else (pair.ratio, pair.ratio_ci)
    if value is None or ci is None or ci[0] is None or ci[1] is None:
        return None
    se = max(ci[1] - ci[0], 0.0) / (2.0 * _z(confidence))
    excess = value - bound if kind == "difference" else bound - value
    if se == 0.0:
        return PairTest(statistic=math.copysign(math.inf, excess) if excess else 0.0, df=math.inf,
                        p_value=0.0 if excess > 0 else 1.0)  # fmt: skip
    from statistics import NormalDist

    statistic = excess / se
    return PairTest(statistic=statistic, df=math.inf, p_value=min(1.0, 2.0 * (1.0 - NormalDist().cdf(statistic))))


def tested_pairs(
    groups: dict[str, GroupFigure],
    pairs: Sequence[GroupGap],
    bounds: Sequence[tuple[str, Literal["difference", "ratio"], float]],
    *,
    correction: Correction,
    confidence: float,
) -> list[dict[str, object]]:
    """Every bound of every pair tested, then adjusted together.

    ``bounds`` holds ``(field, kind, value)``, e.g. ``("max_difference", "difference", 0.05)``.
    Each row has the pair, the bound, the test (``welch`` from the groups, or ``interval``
    from the pair's own interval when its groups have no spread), the statistic, its degrees
    of freedom, the raw p-value and the adjusted one; a pair with neither has no test
    (``p_value`` None) and is not part of the family.
    """
    rows: list[dict[str, object]] = []
    for pair in pairs:
        for field, kind, value in bounds:
            found = gap_test(groups[pair.higher], groups[pair.lower], bound=value, kind=kind, confidence=confidence)
            how = "welch"
            if found is None:
                found, how = interval_test(pair, bound=value, kind=kind, confidence=confidence), "interval"
            rows.append(
                {
                    "higher": pair.higher,
                    "lower": pair.lower,
                    "bound": field,
                    "bound_value": value,
                    "test": None if found is None else how,
                    "statistic": None if found is None else _finite(found.statistic),
                    "df": None if found is None else _finite(found.df),
                    "p_value": None if found is None else found.p_value,
                    "p_adjusted": None,
                }
            )
    tested = [row for row in rows if row["p_value"] is not None]
    for row, adjusted in zip(tested, adjust([float(r["p_value"]) for r in tested], correction)):  # type: ignore[arg-type]
        row["p_adjusted"] = adjusted
    return rows
