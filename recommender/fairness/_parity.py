"""Consumer side, outcome: disparate impact and statistical parity of "a relevant item in the top k".

A ranked list reduces to the binary outcome aif360 measures: did the user get
at least one relevant item? :func:`parity` gives aif360's
``BinaryLabelDatasetMetric`` figures for that outcome: disparate impact
(``P(hit | unprivileged) / P(hit | privileged)``) and statistical parity
difference (their difference), pooled over every other group and against each
group alone. They are computed here as aif360 computes them (float64 counts of
instances and positives, each base rate one division, then one ratio or one
difference), so the figures are aif360's to the last bit (the tests compare
them); building aif360's dataset and importing the library cost seconds per
audit and nothing else. The intervals come from the stratified bootstrap of a
0/1 mean, which is exactly a binomial draw per group, so they are drawn
directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recommender.errors import ConfigError, DataError
from recommender.fairness._common import BAD_LENGTH, _div, group_labels
from recommender.fairness._intervals import Interval, Seed, _check_boot, _interval, percentile_interval

UNKNOWN_PRIVILEGED = "{func}: privileged group {group!r} is not among the groups ({known})."


@dataclass(frozen=True)
class ParityReport:
    """Disparate impact and statistical parity difference against one privileged group.

    ``disparate_impact = P(y=1 | unprivileged) / P(y=1 | privileged)`` and
    ``statistical_parity_difference = P(y=1 | unprivileged) - P(y=1 | privileged)``,
    from aif360's ``BinaryLabelDatasetMetric``; "pooled" takes every other group
    together as the unprivileged group, ``by_group`` each one alone.
    """

    privileged: str
    positive_rate: dict[str, float]
    positive_rate_ci: dict[str, Interval]
    n_users: dict[str, int]
    disparate_impact: float
    disparate_impact_ci: Interval
    statistical_parity_difference: float
    statistical_parity_difference_ci: Interval
    by_group: dict[str, dict[str, Any]]
    """Unprivileged group -> ``disparate_impact``, ``disparate_impact_ci``,
    ``statistical_parity_difference``, ``statistical_parity_difference_ci``."""
    confidence: float
    n_boot: int


def _finite(value: Any) -> float:
    value = float(value)
    return value if np.isfinite(value) else float("nan")


_PARITY_KEYS = (
    "disparate_impact",
    "disparate_impact_ci",
    "statistical_parity_difference",
    "statistical_parity_difference_ci",
)
_NAN = float("nan")
_UNDEFINED_PARITY = dict(zip(_PARITY_KEYS, (_NAN, (_NAN, _NAN), _NAN, (_NAN, _NAN))))


@dataclass(frozen=True)
class _ParityMeasure:
    """DI and SPD of some groups against a privileged one: aif360's arithmetic for the values, the draws for the intervals."""

    positives: np.ndarray  # float64 per group: sum of the 0/1 outcomes (aif360's num_positives)
    instances: np.ndarray  # float64 per group: number of users (aif360's num_instances)
    draws: np.ndarray  # (n_boot, n_groups) resampled positive rates
    n_users: np.ndarray
    confidence: float

    def _base_rate(self, groups: list[int]) -> np.float64:
        """aif360's ``base_rate`` over ``groups``: positives / instances, both float64 sums of whole numbers."""
        return np.float64(self.positives[groups].sum()) / np.float64(self.instances[groups].sum())

    def __call__(self, privileged: int, unprivileged: list[int]) -> dict[str, Any]:
        with np.errstate(all="ignore"):  # a privileged rate of 0 gives an undefined DI
            unprivileged_rate, privileged_rate = self._base_rate(unprivileged), self._base_rate([privileged])
            di, spd = _finite(unprivileged_rate / privileged_rate), _finite(unprivileged_rate - privileged_rate)
        weights = self.n_users[unprivileged] / self.n_users[unprivileged].sum()
        rate = self.draws[:, unprivileged] @ weights  # the pooled rate of the unprivileged users
        reference = self.draws[:, privileged]
        return dict(
            zip(
                _PARITY_KEYS,
                (
                    di,
                    _interval(_div(rate, reference), self.confidence),
                    spd,
                    _interval(rate - reference, self.confidence),
                ),
            )
        )


def parity(
    outcome: np.ndarray,
    groups: Any,
    *,
    privileged: str | Sequence[str] | None = None,
    attribute: str = "group",
    n_boot: int = 1000,
    confidence: float = 0.95,
    random_state: Seed = 0,
) -> dict[str, ParityReport]:
    """Disparate impact and statistical parity difference of a binary per-user outcome, through aif360.

    Parameters
    ----------
    outcome:
        ``(n_users,)`` the favourable outcome (truthy), e.g. ``hit_rate == 1``:
        at least one relevant item in the top k. NaN rows are left out.
    groups:
        ``(n_users,)`` group labels (missing -> ``"missing"``).
    privileged:
        The privileged group(s); ``None`` reports every group in turn.
    attribute:
        The protected attribute's name (for the caller's records; the figures do not depend on it).
    n_boot, confidence, random_state:
        The stratified bootstrap behind the intervals.

    Returns
    -------
    dict
        Privileged group -> :class:`ParityReport`.

    Examples
    --------
    >>> rep = parity(np.array([1, 1, 1, 0, 1, 0, 0, 0]), list("aaaabbbb"), privileged="a", n_boot=50)["a"]
    >>> rep.disparate_impact, rep.statistical_parity_difference
    (0.3333333333333333, -0.5)
    """
    func = "parity"
    n_boot, confidence = _check_boot(func, n_boot, confidence)
    y = np.asarray(outcome, dtype=np.float64)
    codes, names = group_labels(groups)
    if len(y) != len(codes):
        raise DataError(
            BAD_LENGTH.format(func=func, name="'groups'", got=len(codes), expected=len(y), what="one per user")
        )
    keep = ~np.isnan(y)
    y, codes = (y[keep] > 0).astype(np.float64), codes[keep]
    wanted = list(names) if privileged is None else [privileged] if isinstance(privileged, str) else list(privileged)
    unknown = [p for p in wanted if p not in names]
    if unknown:
        raise ConfigError(UNKNOWN_PRIVILEGED.format(func=func, group=unknown[0], known=", ".join(names)))
    n_users = np.bincount(codes, minlength=len(names))
    rates = _div(np.bincount(codes, weights=y, minlength=len(names)), n_users)
    # The stratified bootstrap of a 0/1 mean is exactly Binomial(n_g, rate_g) / n_g: drawn directly.
    rng = np.random.default_rng(random_state)
    draws = _div(rng.binomial(n_users, np.nan_to_num(rates), size=(n_boot, len(names))), n_users)
    low, high = percentile_interval(draws, confidence)
    positives = np.bincount(codes, weights=y, minlength=len(names))  # whole numbers: exact in float64
    measure = _ParityMeasure(positives, n_users.astype(np.float64), draws, n_users, confidence)
    present = [g for g in range(len(names)) if n_users[g] > 0]
    out = {}
    for p_name in wanted:
        p = names.index(p_name)
        others = [g for g in present if g != p] if n_users[p] > 0 else []
        pooled = measure(p, others) if others else _UNDEFINED_PARITY
        out[p_name] = ParityReport(
            privileged=p_name,
            positive_rate={names[g]: float(rates[g]) for g in present},
            positive_rate_ci={names[g]: (float(low[g]), float(high[g])) for g in present},
            n_users={names[g]: int(n_users[g]) for g in present},
            **pooled,
            by_group={names[g]: measure(p, [g]) for g in others},
            confidence=confidence,
            n_boot=n_boot,
        )
    return out
