"""Consumer side, accuracy: a per-user metric compared across the groups of one user attribute.

The point values are those of fairlearn's :class:`~fairlearn.metrics.MetricFrame`
over the per-user values: the mean by group, the gap (``max - min``) and the
ratio (``min / max``) between groups (the users whose attribute is missing form
the group ``missing``, reported with its mean but left out of the gap and the
ratio: they are no group of the attribute, so the gap and the ratio are
``MetricFrame``'s over the users with the attribute), computed with one numpy mask per group
(``MetricFrame`` splits the rows in Python, seconds per metric at platform scale;
the tests check the figures against it to the last bit). The bootstrap of
:mod:`recommender.fairness._intervals` adds an interval to each; every pair of
groups also gets Welch's interval of the difference and Fieller's of the ratio
(:mod:`recommender.significance`), which keep their coverage for small, skewed
groups, so that a rule may leave out groups too small to judge.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recommender.errors import DataError
from recommender.fairness._common import BAD_LENGTH, MISSING_GROUP, _div, group_labels
from recommender.fairness._intervals import (
    Interval,
    Seed,
    _check_boot,
    _interval,
    bootstrap_means,
    percentile_interval,
)

CONSUMER_METRICS: tuple[str, ...] = ("ndcg", "recall", "hit_rate")
"""The per-user accuracy metrics compared across user groups."""


@dataclass(frozen=True)
class GroupGap:
    """The gap between two groups: ``higher`` has the larger point value."""

    higher: str
    lower: str
    difference: float
    """``value(higher) - value(lower)`` (>= 0)."""
    difference_ci: Interval
    ratio: float
    """``value(lower) / value(higher)`` (in [0, 1]; NaN when both are 0)."""
    ratio_ci: Interval


@dataclass(frozen=True)
class GroupComparison:
    """One per-user metric across the groups of one attribute.

    Point values are fairlearn ``MetricFrame``'s (``by_group``, ``overall``,
    ``difference()`` and ``ratio()`` between groups, see :func:`_group_point_values`);
    intervals from :func:`bootstrap_means`. A group with one defined value has no
    interval (``(nan, nan)``: a bootstrap of one user always draws that user), and
    then neither have ``difference`` and ``ratio`` (their resamples would hold that
    group's value fixed); its pairs' Welch and Fieller intervals are undefined too.
    The group ``missing`` (users without the attribute) has its own figures and pairs but is left
    out of ``difference`` and ``ratio`` and of their intervals, as the ``consumer_gap`` rule leaves
    it out: they are the gap between groups of the attribute (NaN with none).
    """

    metric: str
    groups: tuple[str, ...]
    n_users: dict[str, int]
    by_group: dict[str, float]
    by_group_ci: dict[str, Interval]
    by_group_sd: dict[str, float]
    """Sample standard deviation (``ddof=1``) of the per-user values in each group (NaN for one user):
    with ``n_users`` and ``by_group``, what a two-sample test between groups needs."""
    overall: float
    difference: float
    """``max - min`` of the group values, the group ``missing`` left out (fairlearn
    ``difference(method="between_groups")`` over the users with the attribute; NaN without any)."""
    difference_ci: Interval
    ratio: float
    """``min / max`` of the group values, the group ``missing`` left out (fairlearn
    ``ratio(method="between_groups")`` over the users with the attribute; NaN without any)."""
    ratio_ci: Interval
    pairs: tuple[GroupGap, ...]
    """Every pair of groups, in group order, with Welch's interval of the difference and Fieller's of
    the ratio (not the bootstrap's: see :mod:`recommender.significance`)."""
    confidence: float
    n_boot: int


def mean_of_values(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The fairlearn metric of a per-user value: the mean of the values passed as ``y_true``.

    A user's NDCG or recall is already the outcome to compare, so the frame gets
    the values as ``y_true`` (and, because ``MetricFrame`` requires it, as
    ``y_pred``, which is ignored).
    """
    return float(np.mean(y_true))


@dataclass(frozen=True)
class _PointValues:
    """The point values of one metric across groups: what fairlearn's ``MetricFrame`` gives, computed here."""

    by_group: dict[str, float]
    overall: float
    difference: float
    ratio: float


def _group_point_values(values: np.ndarray, codes: np.ndarray, names: tuple[str, ...], present: np.ndarray) -> _PointValues:
    """The mean by group, the overall mean, ``max - min`` and ``min / max`` of the group means (the
    group ``missing`` left out of these two: NaN when it is the only one).

    The figures of :func:`_metric_frame` (``by_group``, ``overall``, ``difference()`` and ``ratio()``
    between groups), to the last bit: each mean is ``np.mean`` over the same values in the same
    order, as ``MetricFrame`` calls :func:`mean_of_values` on each group's rows. ``MetricFrame``
    builds its groups row by row in Python, which costs seconds per metric at a platform's
    hundred thousand users; one boolean mask per group costs milliseconds. The tests compare the
    two.
    """
    by_group = {names[c]: float(np.mean(values[codes == c])) for c in range(len(names)) if present[c]}
    means = np.asarray([v for g, v in by_group.items() if g != MISSING_GROUP], dtype=np.float64)
    high, low = (means.max(), means.min()) if len(means) else (np.nan, np.nan)
    return _PointValues(
        by_group=by_group,
        overall=float(np.mean(values)),
        difference=float(high - low),
        ratio=float(_div(low, high)),
    )


def _pairs(
    by_group: dict[str, float], n_users: dict[str, int], sd: Any, confidence: float
) -> tuple[GroupGap, ...]:
    """Every pair of groups with Welch's interval of the difference and Fieller's of the ratio
    (:mod:`recommender.significance`): intervals that keep their coverage for small, skewed groups."""
    from recommender.significance import difference_interval, ratio_interval

    out = []
    for g_a, g_b in itertools.combinations(list(by_group), 2):
        g_hi, g_lo = (g_a, g_b) if by_group[g_a] >= by_group[g_b] else (g_b, g_a)
        args = []
        for g in (g_hi, g_lo):
            n = n_users[g]
            se = float(sd[g]) / np.sqrt(n) if n > 1 and np.isfinite(sd[g]) else np.nan
            args += [by_group[g], se, n]
        out.append(
            GroupGap(
                higher=g_hi,
                lower=g_lo,
                difference=by_group[g_hi] - by_group[g_lo],
                difference_ci=difference_interval(*args, confidence),
                ratio=float(_div(by_group[g_lo], by_group[g_hi])),
                ratio_ci=ratio_interval(*args, confidence),
            )
        )
    return tuple(out)


def compare_groups(
    per_user: Mapping[str, np.ndarray],
    groups: Any,
    *,
    attribute: str = "group",
    n_boot: int = 1000,
    confidence: float = 0.95,
    random_state: Seed = 0,
) -> dict[str, GroupComparison]:
    """Compare each per-user metric across groups, with bootstrap intervals.

    Parameters
    ----------
    per_user:
        Metric name -> ``(n_users,)`` values (e.g. ``ModelEvaluation.per_user``
        restricted to :data:`CONSUMER_METRICS`); NaN values are left out.
    groups:
        ``(n_users,)`` group labels; missing labels form the group ``"missing"``.
    attribute:
        The attribute's name (the ``MetricFrame``'s sensitive feature name).
    n_boot, confidence, random_state:
        The bootstrap: all metrics share the same resamples.

    Returns
    -------
    dict
        Metric name -> :class:`GroupComparison` (always a dict, even for one metric).

    Examples
    --------
    >>> out = compare_groups({"ndcg": np.array([1.0, 0.0, 0.5, 0.5])}, ["a", "a", "b", "b"], n_boot=50)
    >>> out["ndcg"].by_group, out["ndcg"].difference, out["ndcg"].ratio
    ({'a': 0.5, 'b': 0.5}, 0.0, 1.0)
    """
    func = "compare_groups"
    n_boot, confidence = _check_boot(func, n_boot, confidence)
    codes, names = group_labels(groups)
    names_arr = np.asarray(names, dtype=object)
    n = len(codes)
    metrics = list(per_user)
    matrix = np.empty((n, len(metrics)))
    for j, metric in enumerate(metrics):
        values = np.asarray(per_user[metric], dtype=np.float64)
        if values.shape != (n,):
            raise DataError(
                BAD_LENGTH.format(
                    func=func, name=f"metric {metric!r}", got=len(values), expected=n, what="one per user"
                )
            )
        matrix[:, j] = values
    draws = bootstrap_means(matrix, codes, len(names), n_boot=n_boot, random_state=random_state)
    out = {}
    for j, metric in enumerate(metrics):
        values = matrix[:, j]
        ok = ~np.isnan(values)
        present = np.bincount(codes[ok], minlength=len(names))
        if not ok.any():
            continue
        point = _group_point_values(values[ok], codes[ok], names, present)
        by_group = point.by_group
        spread_of = pd.Series(values[ok]).groupby(names_arr[codes[ok]]).std(ddof=1)
        idx = [names.index(g) for g in by_group]
        sample = draws[:, idx, j]
        low, high = percentile_interval(sample, confidence)
        attributed = np.asarray([g != MISSING_GROUP for g in by_group], dtype=bool)
        with warnings.catch_warnings():  # the gap and the ratio between the groups of the attribute: not `missing`
            warnings.simplefilter("ignore", RuntimeWarning)
            between = sample[:, attributed]
            if attributed.any():
                spread = np.nanmax(between, axis=1) - np.nanmin(between, axis=1)
                ratio = _div(np.nanmin(between, axis=1), np.nanmax(between, axis=1))
            else:
                spread = ratio = np.full(len(sample), np.nan)
        sizes = np.asarray([present[names.index(g)] for g in by_group])
        # A group of one defined value resamples to itself: its bootstrap interval would have zero width, a
        # certainty no single user gives. It is undefined (NaN), and so are the gap's and the ratio's across
        # groups, whose resamples would hold that group's value fixed (too narrow an interval, zero with all such).
        single = sizes < 2
        low, high = np.where(single, np.nan, low), np.where(single, np.nan, high)
        undefined = single[attributed].any() or not attributed.any()
        difference_ci = (np.nan, np.nan) if undefined else _interval(spread, confidence)
        ratio_ci = (np.nan, np.nan) if undefined else _interval(ratio, confidence)
        pairs = _pairs(by_group, {g: int(present[names.index(g)]) for g in by_group}, spread_of, confidence)
        out[metric] = GroupComparison(
            metric=metric,
            groups=tuple(by_group),
            n_users={g: int(present[names.index(g)]) for g in by_group},
            by_group=by_group,
            by_group_ci={g: (float(low[i]), float(high[i])) for i, g in enumerate(by_group)},
            by_group_sd={g: float(spread_of[g]) for g in by_group},
            overall=point.overall,
            difference=point.difference,
            difference_ci=difference_ci,
            ratio=point.ratio,
            ratio_ci=ratio_ci,
            pairs=tuple(pairs),
            confidence=confidence,
            n_boot=n_boot,
        )
    return out
