"""Guardrail metrics: a non-inferiority test that the treatment is not worse than a margin.

A guardrail (latency, complaints, a fairness gap) is not what the experiment
tries to move, but what it must not harm. "No significant harm" is the wrong
test: a small experiment never finds harm. The non-inferiority test puts the
burden the other way: with ``theta = mean_t - mean_c`` and the margin ``m > 0``
the largest harm that is acceptable,

* ``higher_is_better``: ``H0: theta <= -m`` against ``H1: theta > -m``;
* ``lower_is_better``: ``H0: theta >= m`` against ``H1: theta < m``;

and the guardrail holds only when ``H0`` is rejected at ``alpha``, that is when
the one-sided ``1 - alpha`` confidence bound of ``theta`` clears the margin
(Wellek, *Testing Statistical Hypotheses of Equivalence and Noninferiority*,
2010). The test is Welch's t test from the arms' summaries
(``scipy.stats.ttest_ind_from_stats`` with the margin shifted into the means).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import stats

from recommender.errors import ConfigError, DataError
from recommender.experiments.arms import ArmData
from recommender.significance import welch

__all__ = ["GuardrailResult", "guardrail_check"]

Direction = Literal["higher_is_better", "lower_is_better"]
DIRECTIONS: tuple[str, ...] = ("higher_is_better", "lower_is_better")


@dataclass(frozen=True)
class GuardrailResult:
    """A guardrail metric's non-inferiority test.

    Attributes
    ----------
    estimate:
        ``mean_t - mean_c``.
    ci_low, ci_high:
        The one-sided ``1 - alpha`` confidence bound; the open side is infinite
        (``ci_high = inf`` when higher is better).
    margin, direction, alpha:
        The test asked for.
    statistic, df:
        Welch's t statistic against the margin and its degrees of freedom.
    p_value:
        The one-sided p-value of ``H0``: the treatment is worse than the margin allows.
    non_inferior:
        ``p_value < alpha``: the treatment is shown to be no worse than the margin.
    """

    estimate: float
    ci_low: float
    ci_high: float
    margin: float
    direction: Direction
    alpha: float
    statistic: float
    df: float
    p_value: float
    non_inferior: bool


def _sd(arm: ArmData) -> float:
    return math.sqrt(max(arm.total_sq - arm.total**2 / arm.n, 0.0) / (arm.n - 1))


def guardrail_check(
    control: ArmData, treatment: ArmData, *, margin: float, direction: Direction, alpha: float
) -> GuardrailResult:
    """Whether ``treatment`` is shown to be no worse than ``control`` by more than ``margin``.

    >>> c, t = ArmData(1000, 100.0, 100.0), ArmData(1000, 98.0, 98.0)
    >>> guardrail_check(c, t, margin=0.03, direction="higher_is_better", alpha=0.05).non_inferior
    True
    """
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be one of {', '.join(repr(d) for d in DIRECTIONS)}; got {direction!r}.")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (math.isfinite(margin) and margin > 0):
        raise ConfigError(f"margin must be a positive, finite difference (the largest acceptable harm); got {margin!r}.")
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 0.5):
        raise ConfigError(f"alpha must be in (0, 0.5) for a one-sided test; got {alpha!r}.")
    for label, arm in (("control", control), ("treatment", treatment)):
        if not isinstance(arm, ArmData):
            raise DataError(f"the {label} arm must be an ArmData; got {type(arm).__name__}.")
        if arm.n < 2:
            raise DataError(f"the {label} arm needs at least 2 units for a variance; got n={arm.n}.")
    sd_c, sd_t = _sd(control), _sd(treatment)
    if sd_c == 0 and sd_t == 0:
        raise DataError("the guardrail metric does not vary in either arm: its difference has no standard error.")
    higher = direction == "higher_is_better"
    shift = margin if higher else -margin
    result = stats.ttest_ind_from_stats(
        treatment.mean + shift, sd_t, treatment.n, control.mean, sd_c, control.n,
        equal_var=False, alternative="greater" if higher else "less",
    )  # fmt: skip
    estimate = treatment.mean - control.mean
    se, df = welch(sd_t / math.sqrt(treatment.n), treatment.n, sd_c / math.sqrt(control.n), control.n)
    half = float(stats.t.isf(alpha, df)) * se
    ci_low, ci_high = (estimate - half, math.inf) if higher else (-math.inf, estimate + half)
    p = float(result.pvalue)
    return GuardrailResult(
        estimate=estimate,
        ci_low=ci_low,
        ci_high=ci_high,
        margin=float(margin),
        direction=direction,
        alpha=float(alpha),
        statistic=float(result.statistic),
        df=df,
        p_value=p,
        non_inferior=bool(p < alpha),
    )
