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
audit and nothing else.

The intervals are closed-form score intervals of binomial proportions, not the
bootstrap the other measures share: each rate gets Wilson's interval, the parity
difference Newcombe's hybrid score interval (his method 10) and the disparate
impact Katz's log interval of a risk ratio (half a count added to each group
when either has no hit). The percentile bootstrap of a rate of 0 or 1 is the
single point 0 or 1, so a group of 30 users with no hit made a disparate impact
of 0 "certain": with a true ratio of 1 and hit rates of 5%, one audit in six
judged the whole interval below the four-fifths rule. These keep their
coverage at small rates and small groups (the tests simulate it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from recommender.errors import ConfigError, DataError
from recommender.fairness._common import BAD_LENGTH, MISSING_GROUP, _div, group_labels, read_label
from recommender.fairness._intervals import Interval, Seed, _check_boot

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


def _wilson(positives: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson's score interval of ``positives / n`` (NaN where ``n`` is 0)."""
    with np.errstate(all="ignore"):
        rate = positives / n
        scale = 1.0 / (1.0 + z * z / n)
        centre = scale * (rate + z * z / (2 * n))
        half = scale * z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


@dataclass(frozen=True)
class _ParityMeasure:
    """DI and SPD of some groups against a privileged one: aif360's arithmetic for the values, score intervals."""

    positives: np.ndarray  # float64 per group: sum of the 0/1 outcomes (aif360's num_positives)
    instances: np.ndarray  # float64 per group: number of users (aif360's num_instances)
    z: float  # the two-sided normal critical value of the confidence

    def _base_rate(self, groups: list[int]) -> np.float64:
        """aif360's ``base_rate`` over ``groups``: positives / instances, both float64 sums of whole numbers."""
        return np.float64(self.positives[groups].sum()) / np.float64(self.instances[groups].sum())

    def _difference_ci(self, x1: float, n1: float, x2: float, n2: float) -> Interval:
        """Newcombe's hybrid score interval of ``x1 / n1 - x2 / n2`` from the two Wilson intervals."""
        (l1, l2), (u1, u2) = _wilson(np.array([x1, x2]), np.array([n1, n2]), self.z)
        p1, p2 = x1 / n1, x2 / n2
        d = p1 - p2
        return float(d - np.hypot(p1 - l1, u2 - p2)), float(d + np.hypot(u1 - p1, p2 - l2))

    def _ratio_ci(self, x1: float, n1: float, x2: float, n2: float) -> Interval:
        """Katz's log interval of ``(x1 / n1) / (x2 / n2)``, half a count added when either group has no hit;
        unbounded above when the reference group has none."""
        unbounded = x2 == 0
        if x1 == 0 or x2 == 0:
            x1, n1, x2, n2 = x1 + 0.5, n1 + 0.5, x2 + 0.5, n2 + 0.5
        ratio = (x1 / n1) / (x2 / n2)
        spread = self.z * np.sqrt(1 / x1 - 1 / n1 + 1 / x2 - 1 / n2)
        return float(ratio * np.exp(-spread)), float("inf") if unbounded else float(ratio * np.exp(spread))

    def __call__(self, privileged: int, unprivileged: list[int]) -> dict[str, Any]:
        with np.errstate(all="ignore"):  # a privileged rate of 0 gives an undefined DI
            unprivileged_rate, privileged_rate = self._base_rate(unprivileged), self._base_rate([privileged])
            di, spd = _finite(unprivileged_rate / privileged_rate), _finite(unprivileged_rate - privileged_rate)
        counts = (
            float(self.positives[unprivileged].sum()),
            float(self.instances[unprivileged].sum()),
            float(self.positives[privileged]),
            float(self.instances[privileged]),
        )
        return dict(zip(_PARITY_KEYS, (di, self._ratio_ci(*counts), spd, self._difference_ci(*counts))))


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
        ``(n_users,)`` group labels (missing -> ``"missing"``). The users of the missing group are never pooled
        with the other groups (the pooled figures compare the privileged group with the groups of the attribute);
        their own figures are in ``by_group``.
    privileged:
        The privileged group(s); ``None`` reports every group in turn.
    attribute:
        The protected attribute's name (for the caller's records; the figures do not depend on it).
    n_boot, confidence, random_state:
        The signature every measure shares; the intervals here are closed-form score
        intervals at ``confidence`` (see the module), so ``n_boot`` and
        ``random_state`` are only checked and recorded.

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
    wanted = [read_label(p) if isinstance(p, str) else p for p in wanted]  # named as group_labels reads a label
    unknown = [p for p in wanted if p not in names]
    if unknown:
        raise ConfigError(UNKNOWN_PRIVILEGED.format(func=func, group=unknown[0], known=", ".join(names)))
    n_users = np.bincount(codes, minlength=len(names))
    positives = np.bincount(codes, weights=y, minlength=len(names))  # whole numbers: exact in float64
    rates = _div(positives, n_users)
    z = float(norm.ppf((1.0 + confidence) / 2.0))
    low, high = _wilson(positives, n_users.astype(np.float64), z)
    measure = _ParityMeasure(positives, n_users.astype(np.float64), z)
    present = [g for g in range(len(names)) if n_users[g] > 0]
    out = {}
    for p_name in wanted:
        p = names.index(p_name)
        others = [g for g in present if g != p] if n_users[p] > 0 else []
        # the users whose label is missing are no group of the attribute: their own figures are reported (by_group),
        # never pooled with the groups the privileged one is compared with
        pooled_over = [g for g in others if names[g] != MISSING_GROUP]
        pooled = measure(p, pooled_over) if pooled_over else _UNDEFINED_PARITY
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
