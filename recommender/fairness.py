"""Fairness of ranked lists: per-user quality by group, parity, provider exposure, popularity, calibration.

fairlearn and aif360 measure classifiers, one prediction per row. A recommender
emits a ranked list per user, so this module first reduces the lists to what
those libraries can measure, then adds the ranking measures they lack. Every
function works on a whole batch of users at once (no per-user Python loop); rows
of ``recommended`` (``(n_users, k)`` item columns, best first, ``-1`` padding),
``relevant`` (the users' test positives) and ``history`` (their training
positives) are the same users, as in :class:`recommender.evaluate.ModelEvaluation`.

Consumer side (users grouped by an audit attribute such as gender):

* :func:`compare_groups` -- the mean of per-user NDCG, recall or hit rate at k
  by group, the gap (``max - min``) and the ratio (``min / max``) between groups,
  computed through fairlearn's :class:`~fairlearn.metrics.MetricFrame`, each with
  a bootstrap confidence interval, plus every pair of groups (Welch's interval
  of the difference, Fieller's of the ratio: :mod:`recommender.significance`)
  so that a rule may leave out groups too small to judge;
* :func:`parity` -- disparate impact (``P(hit | unprivileged) / P(hit |
  privileged)``) and statistical parity difference (``P(hit | unprivileged) -
  P(hit | privileged)``) of the binary outcome "a relevant item in the top k",
  through aif360's ``BinaryLabelDatasetMetric``.

Provider side (items grouped by provider, e.g. major vs independent labels):

* :func:`provider_exposure` -- position-weighted exposure share per provider
  group against its share of relevance (disparate exposure after Singh &
  Joachims 2018), exposure Gini and catalog coverage per group;
* :func:`popularity_bias` -- average recommendation popularity against the
  users' own profiles and the catalog, long-tail share, and recall on test
  positives per popularity stratum (head/mid/tail) with the gap between strata;
* :func:`calibration_kl` -- Steck's (2018) miscalibration of each list against
  the user's history: ``KL(p || (1 - a) q + a p)`` over item categories.

Uncertainty: :func:`bootstrap_means` resamples users with replacement, within
each group (the group sizes stay those of the data), 1000 times by default, and
every interval is the percentile interval of the resampled statistic (95% by
default). A batch of resamples is a sparse matrix with one entry per drawn user,
so the resampled sums are one sparse product: 1000 resamples of 100,000 users
take under a second.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recommender import metrics as M
from recommender.errors import ConfigError, DataError

__all__ = [
    "ATTENTION_MODELS",
    "CALIBRATION_ALPHA",
    "CONSUMER_METRICS",
    "POPULARITY_STRATA",
    "Interval",
    "Seed",
    "GroupGap",
    "GroupComparison",
    "ParityReport",
    "ExposureReport",
    "PopularityReport",
    "attention_weights",
    "attention_key",
    "bootstrap_means",
    "percentile_interval",
    "mean_with_interval",
    "mean_of_values",
    "compare_groups",
    "parity",
    "provider_exposure",
    "popularity_strata",
    "popularity_bias",
    "calibration_kl",
    "group_labels",
]

CONSUMER_METRICS: tuple[str, ...] = ("ndcg", "recall", "hit_rate")
"""The per-user accuracy metrics compared across user groups."""

ATTENTION_MODELS: tuple[str, ...] = ("log", "geometric", "uniform")
"""Position-based attention models (see :func:`attention_weights`)."""

CALIBRATION_ALPHA = 0.01
"""Steck's smoothing weight ``a`` of the history in ``q~ = (1 - a) q + a p``."""

POPULARITY_STRATA: tuple[str, ...] = ("head", "mid", "tail")
"""The popularity strata of :func:`popularity_strata`, most popular first."""

MISSING_GROUP = "missing"
"""The group of users (or items) whose attribute is missing."""

BAD_ATTENTION = "The 'attention' parameter of {func} must be one of {known}. Got {got!r} instead."
BAD_PATIENCE = "The 'patience' parameter of {func} must be a float in the range (0, 1). Got {got!r} instead."
BAD_N_BOOT = "The 'n_boot' parameter of {func} must be an int in the range [1, inf). Got {got!r} instead."
BAD_CONFIDENCE = "The 'confidence' parameter of {func} must be a float in the range (0, 1). Got {got!r} instead."
BAD_ALPHA = "The 'alpha' parameter of {func} must be a float in the range (0, 1). Got {got!r} instead."
BAD_CUTS = (
    "The 'cuts' parameter of {func} must be increasing shares in (0, 1), one fewer than the labels "
    "({n_labels}). Got {got!r} instead."
)
BAD_ROWS = "{func}: {name} has {got} rows but 'recommended' has {n_users}; row u of both must be the same user."
BAD_LENGTH = "{func}: {name} has {got} entries but {expected} were expected ({what})."
UNKNOWN_PRIVILEGED = "{func}: privileged group {group!r} is not among the groups ({known})."

Interval = tuple[float, float]
"""A confidence interval ``(low, high)``; ``(nan, nan)`` when undefined."""

Seed = int | Sequence[int] | np.random.Generator | None
"""What :func:`numpy.random.default_rng` accepts: a seed, a sequence of seeds, or a generator."""

_CELLS = 2**22  # resample-by-user cells per batch (bounds memory to ~100 MB)
_COLUMNS = 4  # columns per sparse product (scipy's product slows down on wide blocks)


# -- small helpers ---------------------------------------------------------------------------
def _check_boot(func: str, n_boot: object, confidence: object) -> tuple[int, float]:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ConfigError(BAD_N_BOOT.format(func=func, got=n_boot))
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ConfigError(BAD_CONFIDENCE.format(func=func, got=confidence))
    return int(n_boot), float(confidence)


def _lists(recommended: np.ndarray, func: str, n_items: int) -> np.ndarray:
    """The lists as int64, validated against the catalog (the rules and messages of :mod:`recommender.metrics`)."""
    rec = np.asarray(recommended)
    if rec.ndim != 2 or not (np.issubdtype(rec.dtype, np.integer) or rec.size == 0):
        got = f"an array of shape {rec.shape} and dtype {rec.dtype}"
        raise DataError(M.BAD_RECOMMENDED.format(func=func, got=got))
    rec = rec.astype(np.int64, copy=False)
    if rec.size and (int(rec.max()) >= n_items or int(rec.min()) < -1):
        bad = int(rec.max()) if int(rec.max()) >= n_items else int(rec.min())
        raise DataError(M.BAD_ITEM.format(func=func, item=bad, n_items=n_items, last=n_items - 1))
    return rec


def _rows_match(func: str, name: str, matrix: Any, n_users: int) -> None:
    if matrix.shape[0] != n_users:
        raise DataError(BAD_ROWS.format(func=func, name=name, got=matrix.shape[0], n_users=n_users))


def _positives(matrix: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    out = sp.csr_matrix(sp.csr_matrix(matrix) > 0)
    out.sort_indices()
    return out


def _div(a: Any, b: Any) -> Any:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.divide(a, b)


def group_labels(values: Any, missing: str = MISSING_GROUP) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes and sorted string names of group labels; missing labels form the group ``missing``.

    >>> group_labels(["M", "F", None, "F"])
    (array([1, 0, 2, 0]), ('F', 'M', 'missing'))
    """
    labels = pd.Series(pd.array(np.asarray(values, dtype=object), dtype="string")).fillna(missing)
    codes, names = pd.factorize(labels, sort=True)
    return codes.astype(np.int64), tuple(str(n) for n in names)


def attention_weights(k: int, attention: str = "log", patience: float = 0.8) -> np.ndarray:
    """The attention a user gives to ranks ``1..k`` (``(k,)`` float64).

    ``log``
        ``1 / log2(rank + 1)``, the NDCG discount (Singh & Joachims 2018).
    ``geometric``
        ``patience ** (rank - 1)``: the user of rank-biased precision (Moffat &
        Zobel 2008), who looks at the next item with probability ``patience``.
    ``uniform``
        1 at every rank (plain counts of appearances).

    >>> attention_weights(3).round(4).tolist(), attention_weights(3, "geometric", 0.5).tolist()
    ([1.0, 0.6309, 0.5], [1.0, 0.5, 0.25])
    """
    func = "attention_weights"
    if attention not in ATTENTION_MODELS:
        raise ConfigError(BAD_ATTENTION.format(func=func, known=", ".join(ATTENTION_MODELS), got=attention))
    ranks = np.arange(1, int(k) + 1, dtype=np.float64)
    if attention == "log":
        return 1.0 / np.log2(ranks + 1.0)
    if attention == "uniform":
        return np.ones_like(ranks)
    if isinstance(patience, bool) or not isinstance(patience, (int, float)) or not 0 < patience < 1:
        raise ConfigError(BAD_PATIENCE.format(func=func, got=patience))
    return float(patience) ** (ranks - 1.0)


def attention_key(attention: str = "log", patience: float = 0.8) -> str:
    """A stable name for an attention model: ``log``, ``uniform`` or ``geometric(0.8)``."""
    return f"geometric({float(patience):g})" if attention == "geometric" else attention


# -- the bootstrap -----------------------------------------------------------------------------
def bootstrap_means(
    values: np.ndarray,
    codes: np.ndarray | None = None,
    n_groups: int | None = None,
    *,
    n_boot: int = 1000,
    random_state: Seed = 0,
) -> np.ndarray:
    """Bootstrap distribution of each group's mean of each column of ``values``.

    Parameters
    ----------
    values:
        ``(n,)`` or ``(n, m)`` per-user values; NaN marks a missing value, left
        out of that column's mean.
    codes:
        ``(n,)`` group of each row in ``[0, n_groups)``; ``-1`` leaves the row
        out. ``None`` puts every row in one group.
    n_groups:
        Number of groups (default ``codes.max() + 1``).
    n_boot:
        Number of resamples.
    random_state:
        Seed (or generator) of the resampling.

    Returns
    -------
    numpy.ndarray
        ``(n_boot, n_groups, m)``: in resample ``b``, each group draws as many
        rows as it has, with replacement, from its own rows (a stratified
        bootstrap), and each column's mean is taken over the drawn rows where it
        is not NaN. NaN where a group has no row (or no defined value).

    Examples
    --------
    >>> draws = bootstrap_means(np.array([1.0, 1.0, 3.0, 3.0]), np.array([0, 0, 1, 1]), n_boot=5)
    >>> draws.shape, draws[:, :, 0].min(axis=0).tolist()
    ((5, 2, 1), [1.0, 3.0])
    """
    func = "bootstrap_means"
    n_boot, _ = _check_boot(func, n_boot, 0.5)
    x = np.asarray(values, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    n, m = x.shape
    codes = np.zeros(n, dtype=np.int64) if codes is None else np.asarray(codes, dtype=np.int64)
    if len(codes) != n:
        raise DataError(BAD_LENGTH.format(func=func, name="'codes'", got=len(codes), expected=n, what="one per row"))
    n_groups = int(codes.max(initial=-1)) + 1 if n_groups is None else int(n_groups)
    rng = random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng(random_state)
    valid = ~np.isnan(x)
    filled = np.where(valid, x, 0.0)
    out = np.full((n_boot, n_groups, m), np.nan)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n_groups + 1))
    for g in range(n_groups):
        rows = order[bounds[g] : bounds[g + 1]]
        size = len(rows)
        if size == 0:
            continue
        gaps = ~valid[rows].all(axis=0)  # columns with missing values also need the count of defined draws
        block = np.concatenate([filled[rows], valid[rows][:, gaps].astype(np.float64)], axis=1)
        step = max(1, _CELLS // size)
        ones = np.ones(step * size)
        index = np.int32 if step * size < 2**31 else np.int64  # scipy's own index type: no conversion
        for start in range(0, n_boot, step):
            b = min(step, n_boot - start)
            # Resample r is row r of a sparse (b, size) matrix holding one 1 per drawn user
            # (duplicates add up), so the resampled sums are one sparse product.
            draws = rng.integers(0, size, size=b * size, dtype=index)
            picks = sp.csr_matrix(
                (ones[: b * size], draws, np.arange(0, b * size + 1, size, dtype=index)), shape=(b, size)
            )
            sums = np.concatenate(
                [picks @ block[:, j : j + _COLUMNS] for j in range(0, block.shape[1], _COLUMNS)], axis=1
            )
            defined = np.full((b, m), float(size))
            defined[:, gaps] = sums[:, m:]
            out[start : start + b, g] = _div(sums[:, :m], defined)
    return out


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval over axis 0 (NaN samples ignored; NaN when all are)."""
    tail = (1.0 - confidence) / 2.0
    samples = np.asarray(samples, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, as documented
        low, high = np.nanquantile(samples, [tail, 1.0 - tail], axis=0)
    return low, high


def _interval(samples: np.ndarray, confidence: float) -> Interval:
    low, high = percentile_interval(np.asarray(samples).reshape(len(samples), -1), confidence)
    return float(low[0]), float(high[0])


def mean_with_interval(
    values: np.ndarray, *, n_boot: int = 1000, confidence: float = 0.95, random_state: Seed = 0
) -> tuple[float, Interval]:
    """The mean of the defined values and its bootstrap percentile interval."""
    mean = M.defined_mean(values)
    draws = bootstrap_means(values, n_boot=n_boot, random_state=random_state)[:, 0, 0]
    return mean, _interval(draws, confidence)


# -- consumer side -------------------------------------------------------------------------------
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

    Point values come from fairlearn's ``MetricFrame`` (``by_group``,
    ``overall``, ``difference()`` and ``ratio()`` between groups); intervals
    from :func:`bootstrap_means`.
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
    """``max - min`` of the group values (fairlearn ``difference(method="between_groups")``)."""
    difference_ci: Interval
    ratio: float
    """``min / max`` of the group values (fairlearn ``ratio(method="between_groups")``)."""
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


def _metric_frame(values: np.ndarray, labels: np.ndarray, name: str) -> Any:
    from fairlearn.metrics import MetricFrame

    return MetricFrame(
        metrics=mean_of_values, y_true=values, y_pred=values, sensitive_features=pd.Series(labels, name=name)
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
        frame = _metric_frame(values[ok], names_arr[codes[ok]], attribute)
        by_group = {str(g): float(v) for g, v in frame.by_group.items()}
        spread_of = pd.Series(values[ok]).groupby(names_arr[codes[ok]]).std(ddof=1)
        idx = [names.index(g) for g in by_group]
        sample = draws[:, idx, j]
        low, high = percentile_interval(sample, confidence)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            spread = np.nanmax(sample, axis=1) - np.nanmin(sample, axis=1)
            ratio = _div(np.nanmin(sample, axis=1), np.nanmax(sample, axis=1))
        pairs = _pairs(by_group, {g: int(present[names.index(g)]) for g in by_group}, spread_of, confidence)
        out[metric] = GroupComparison(
            metric=metric,
            groups=tuple(by_group),
            n_users={g: int(present[names.index(g)]) for g in by_group},
            by_group=by_group,
            by_group_ci={g: (float(low[i]), float(high[i])) for i, g in enumerate(by_group)},
            by_group_sd={g: float(spread_of[g]) for g in by_group},
            overall=float(frame.overall),
            difference=float(frame.difference()),
            difference_ci=_interval(spread, confidence),
            ratio=float(frame.ratio()),
            ratio_ci=_interval(ratio, confidence),
            pairs=tuple(pairs),
            confidence=confidence,
            n_boot=n_boot,
        )
    return out


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


def _aif360() -> tuple[Any, Any]:
    """aif360's dataset and metric classes, imported on first use.

    Importing ``aif360.metrics`` logs a root-logger warning for every optional
    algorithm whose dependency (tensorflow, inFairness) is absent; recgov uses
    none of them, so the warnings are silenced during the import only.
    """
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        from aif360.datasets import BinaryLabelDataset
        from aif360.metrics import BinaryLabelDatasetMetric
    finally:
        logging.disable(previous)
    return BinaryLabelDataset, BinaryLabelDatasetMetric


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
    """DI and SPD of some groups against a privileged one: aif360 for the values, the draws for the intervals."""

    metric_cls: Any
    dataset: Any
    attribute: str
    draws: np.ndarray  # (n_boot, n_groups) resampled positive rates
    n_users: np.ndarray
    confidence: float

    def __call__(self, privileged: int, unprivileged: list[int]) -> dict[str, Any]:
        metric = self.metric_cls(
            self.dataset,
            unprivileged_groups=[{self.attribute: float(g)} for g in unprivileged],
            privileged_groups=[{self.attribute: float(privileged)}],
        )
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a privileged rate of 0 gives an undefined DI
            di, spd = _finite(metric.disparate_impact()), _finite(metric.statistical_parity_difference())
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
        The protected attribute's name in the aif360 dataset.
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
    dataset_cls, metric_cls = _aif360()
    frame = pd.DataFrame({"outcome": y, attribute: codes.astype(np.float64)})
    dataset = dataset_cls(
        df=frame,
        label_names=["outcome"],
        protected_attribute_names=[attribute],
        favorable_label=1.0,
        unfavorable_label=0.0,
    )
    measure = _ParityMeasure(metric_cls, dataset, attribute, draws, n_users, confidence)
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


# -- provider side -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExposureReport:
    """Exposure of provider groups under one attention model.

    Every evaluated user counts equally: a user's *exposure share* of a group is
    the share of the user's attention (over the list) falling on the group's
    items, and the user's *relevance share* the share of the user's test
    positives that are the group's items. The report averages both over the
    users with a non-empty list and at least one positive; the *exposure ratio*
    ``exposure_share / relevance_share`` is 1 for every group exactly when
    exposure is proportional to relevance (Singh & Joachims 2018's disparate
    treatment constraint, amortised over users); above 1 the group is
    over-exposed.
    """

    attention: str
    groups: tuple[str, ...]
    n_items: dict[str, int]
    item_share: dict[str, float]
    exposure_share: dict[str, float]
    exposure_share_ci: dict[str, Interval]
    relevance_share: dict[str, float]
    relevance_share_ci: dict[str, Interval]
    exposure_ratio: dict[str, float]
    exposure_ratio_ci: dict[str, Interval]
    coverage: dict[str, float]
    """Share of the group's items shown to at least one user."""
    gini_by_group: dict[str, float]
    """Gini of item exposure within the group's items."""
    gini: float
    """Gini of item exposure over the whole catalog (never-shown items count 0)."""
    coverage_all: float
    n_users: int
    confidence: float
    n_boot: int


def item_exposure(recommended: np.ndarray, n_items: int, weights: np.ndarray) -> np.ndarray:
    """Attention received by each item, summed over all lists (``(n_items,)``)."""
    rec = _lists(recommended, "item_exposure", n_items)
    valid = rec >= 0
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64)[: rec.shape[1]], rec.shape)
    return np.bincount(rec[valid], weights=w[valid], minlength=n_items).astype(np.float64)


def _per_user_groups(
    rows: np.ndarray, codes: np.ndarray, weights: np.ndarray | None, n_users: int, n_groups: int
) -> np.ndarray:
    """``(n_users, n_groups)`` sums of ``weights`` by (row, group) with one bincount."""
    flat = rows.astype(np.int64) * n_groups + codes
    return (
        np.bincount(flat, weights=weights, minlength=n_users * n_groups).reshape(n_users, n_groups).astype(np.float64)
    )


def provider_exposure(
    recommended: np.ndarray,
    item_groups: Any,
    relevant: sp.spmatrix | sp.sparray,
    *,
    attention: str = "log",
    patience: float = 0.8,
    n_boot: int = 1000,
    confidence: float = 0.95,
    random_state: Seed = 0,
) -> ExposureReport:
    """Exposure share of each provider group against its share of relevance (see :class:`ExposureReport`).

    Parameters
    ----------
    recommended:
        ``(n_users, k)`` item columns, ``-1`` padding.
    item_groups:
        ``(n_items,)`` provider group of every item column (missing -> ``"missing"``).
    relevant:
        ``(n_users, n_items)`` sparse relevance, rows aligned with ``recommended``:
        entries > 0 are relevant (each counts 1). recgov passes the users' test
        positives, so "relevance" is the demand observed in held-out data.
    attention, patience:
        The attention model (:func:`attention_weights`).
    n_boot, confidence, random_state:
        The bootstrap over users behind the intervals.

    Examples
    --------
    >>> rel = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 1, 1]]))
    >>> rep = provider_exposure(np.array([[0, 1], [0, 2]]), ["a", "a", "b", "b"], rel, attention="uniform", n_boot=20)
    >>> rep.exposure_share, rep.relevance_share, rep.exposure_ratio
    ({'a': 0.75, 'b': 0.25}, {'a': 0.5, 'b': 0.5}, {'a': 1.5, 'b': 0.5})
    """
    func = "provider_exposure"
    n_boot, confidence = _check_boot(func, n_boot, confidence)
    item_codes, names = group_labels(item_groups)
    n_items, n_groups = len(item_codes), len(names)
    rec = _lists(recommended, func, n_items)
    n_users, k = rec.shape
    rel = _positives(relevant)
    _rows_match(func, "'relevant'", rel, n_users)
    if rel.shape[1] != n_items:
        raise DataError(
            BAD_LENGTH.format(
                func=func, name="'item_groups'", got=n_items, expected=rel.shape[1], what="one per item column"
            )
        )
    weights = np.broadcast_to(attention_weights(k, attention, patience), rec.shape)
    valid = rec >= 0
    rows = np.broadcast_to(np.arange(n_users)[:, None], rec.shape)
    seen = _per_user_groups(rows[valid], item_codes[rec[valid]], weights[valid], n_users, n_groups)
    rel_rows = np.repeat(np.arange(n_users), np.diff(rel.indptr))
    wanted = _per_user_groups(rel_rows, item_codes[rel.indices], None, n_users, n_groups)
    seen_total, wanted_total = seen.sum(axis=1), wanted.sum(axis=1)
    keep = (seen_total > 0) & (wanted_total > 0)
    shares = np.concatenate([seen[keep] / seen_total[keep, None], wanted[keep] / wanted_total[keep, None]], axis=1)
    exposure_share = shares[:, :n_groups].mean(axis=0) if keep.any() else np.full(n_groups, np.nan)
    relevance_share = shares[:, n_groups:].mean(axis=0) if keep.any() else np.full(n_groups, np.nan)
    draws = bootstrap_means(shares, n_boot=n_boot, random_state=random_state)[:, 0, :]
    e_draws, r_draws = draws[:, :n_groups], draws[:, n_groups:]
    e_low, e_high = percentile_interval(e_draws, confidence)
    r_low, r_high = percentile_interval(r_draws, confidence)
    q_low, q_high = percentile_interval(_div(e_draws, r_draws), confidence)
    ratio = _div(exposure_share, relevance_share)
    per_item = item_exposure(rec, n_items, attention_weights(k, attention, patience))
    n_in = np.bincount(item_codes, minlength=n_groups)
    shown = np.bincount(item_codes, weights=(per_item > 0).astype(np.float64), minlength=n_groups)

    def by(values: np.ndarray) -> dict[str, float]:
        return {g: float(values[i]) for i, g in enumerate(names)}

    def ci(low: np.ndarray, high: np.ndarray) -> dict[str, Interval]:
        return {g: (float(low[i]), float(high[i])) for i, g in enumerate(names)}

    return ExposureReport(
        attention=attention_key(attention, patience),
        groups=names,
        n_items={g: int(n_in[i]) for i, g in enumerate(names)},
        item_share=by(_div(n_in, max(n_items, 1))),
        exposure_share=by(exposure_share),
        exposure_share_ci=ci(e_low, e_high),
        relevance_share=by(relevance_share),
        relevance_share_ci=ci(r_low, r_high),
        exposure_ratio=by(ratio),
        exposure_ratio_ci=ci(q_low, q_high),
        coverage=by(_div(shown, n_in)),
        gini_by_group={g: M.gini_index(per_item[item_codes == i]) for i, g in enumerate(names)},
        gini=M.gini_index(per_item),
        coverage_all=float((per_item > 0).mean()) if n_items else float("nan"),
        n_users=int(keep.sum()),
        confidence=confidence,
        n_boot=n_boot,
    )


def popularity_strata(
    popularity: np.ndarray, cuts: Sequence[float] = (1 / 3, 2 / 3), labels: Sequence[str] = POPULARITY_STRATA
) -> np.ndarray:
    """Stratum code of every item (0 = ``labels[0]``, the most popular) by its training popularity.

    Items are ranked from the most to the least popular and cut where the
    cumulative share of training interactions *before* an item reaches each of
    ``cuts``: with the default thirds, head, mid and tail items each account for
    about a third of all training interactions (the head holds few items, the
    tail many). Items tied in popularity share the stratum of the first of
    them; items nobody interacted with are in the last stratum.

    >>> popularity_strata(np.array([6.0, 3.0, 2.0, 1.0, 0.0]), cuts=(0.5,), labels=("head", "tail")).tolist()
    [0, 1, 1, 1, 1]
    """
    func = "popularity_strata"
    cuts_arr = np.asarray(cuts, dtype=np.float64)
    if len(cuts_arr) != len(labels) - 1 or np.any((cuts_arr <= 0) | (cuts_arr >= 1)) or np.any(np.diff(cuts_arr) <= 0):
        raise ConfigError(BAD_CUTS.format(func=func, n_labels=len(labels), got=tuple(cuts)))
    pop = np.asarray(popularity, dtype=np.float64)
    last = len(labels) - 1
    total = pop.sum()
    if total <= 0:
        return np.full(len(pop), last, dtype=np.int64)
    order = np.argsort(-pop, kind="stable")
    ranked = pop[order]
    before = (np.cumsum(ranked) - ranked) / total
    stratum = np.searchsorted(cuts_arr, before, side="right")
    # ties: the first (most popular position) of each run of equal popularity decides
    first = np.r_[0, np.flatnonzero(np.diff(ranked) != 0) + 1]
    stratum = np.repeat(stratum[first], np.diff(np.r_[first, len(ranked)]))
    stratum[ranked <= 0] = last
    out = np.empty(len(pop), dtype=np.int64)
    out[order] = stratum
    return out


@dataclass(frozen=True)
class PopularityReport:
    """How much the lists lean to popular items.

    ``arp``: mean over users of the mean training popularity (users per item)
    of the listed items (Abdollahpouri et al.'s average recommendation
    popularity). ``profile_popularity``: the same over each user's training
    positives. ``arp_ratio = arp / profile_popularity`` (1: the lists are as
    popular as what the users chose themselves; above 1: the model amplifies
    popularity; Abdollahpouri et al. 2019's popularity lift is ``arp_ratio - 1``).
    ``arp_catalog_ratio = arp / catalog_popularity`` compares with the mean
    item of the catalog instead. Stratified recall is pooled per stratum:
    ``hits on the stratum's test positives / the stratum's test positives``.
    """

    arp: float
    profile_popularity: float
    catalog_popularity: float
    arp_ratio: float
    arp_ratio_ci: Interval
    arp_catalog_ratio: float
    long_tail_share: float
    long_tail_share_ci: Interval
    profile_long_tail_share: float
    strata: dict[str, dict[str, float]]
    """Stratum -> ``n_items``, ``n_positives``, ``n_hits``, ``recall``, ``recall_low``, ``recall_high``."""
    recall_gap: float
    """``max - min`` stratified recall over the strata with test positives."""
    recall_gap_ci: Interval
    head_share: float
    n_users: int
    confidence: float
    n_boot: int


def _row_means(matrix: sp.csr_matrix, per_item: np.ndarray) -> np.ndarray:
    counts = np.diff(matrix.indptr).astype(np.float64)
    return _div(matrix @ per_item, counts)


def popularity_bias(
    recommended: np.ndarray,
    history: sp.spmatrix | sp.sparray,
    relevant: sp.spmatrix | sp.sparray,
    popularity: np.ndarray,
    *,
    head_share: float = 0.8,
    cuts: Sequence[float] = (1 / 3, 2 / 3),
    labels: Sequence[str] = POPULARITY_STRATA,
    n_boot: int = 1000,
    confidence: float = 0.95,
    random_state: Seed = 0,
) -> PopularityReport:
    """Popularity bias of the lists (see :class:`PopularityReport`).

    Parameters
    ----------
    recommended:
        ``(n_users, k)`` item columns, ``-1`` padding.
    history:
        ``(n_users, n_items)`` the users' training positives (entries > 0).
    relevant:
        ``(n_users, n_items)`` their test positives (entries > 0).
    popularity:
        ``(n_items,)`` training popularity (:func:`recommender.metrics.item_popularity`).
    head_share:
        Defines the long tail (:func:`recommender.metrics.long_tail_items`).
    cuts, labels:
        The popularity strata (:func:`popularity_strata`).
    """
    func = "popularity_bias"
    n_boot, confidence = _check_boot(func, n_boot, confidence)
    pop = np.asarray(popularity, dtype=np.float64)
    n_items = len(pop)
    rec = _lists(recommended, func, n_items)
    n_users = rec.shape[0]
    hist, rel = _positives(history), _positives(relevant)
    for name, matrix in (("'history'", hist), ("'relevant'", rel)):
        _rows_match(func, name, matrix, n_users)
    arp_u = M.average_popularity(rec, pop)
    profile_u = _row_means(hist, pop)
    tail = M.long_tail_items(pop, head_share)
    lts_u = M.long_tail_share(rec, pop, head_share)
    strata = popularity_strata(pop, cuts, labels)
    n_strata = len(labels)
    hits = M.hit_matrix(rec, rel)
    hit_rows = np.broadcast_to(np.arange(n_users)[:, None], rec.shape)[hits]
    hits_u = _per_user_groups(hit_rows, strata[rec[hits]], None, n_users, n_strata)
    pos_u = _per_user_groups(
        np.repeat(np.arange(n_users), np.diff(rel.indptr)), strata[rel.indices], None, n_users, n_strata
    )
    both = ~np.isnan(arp_u) & ~np.isnan(profile_u)
    columns = np.column_stack([np.where(both, arp_u, np.nan), np.where(both, profile_u, np.nan), lts_u, hits_u, pos_u])
    draws = bootstrap_means(columns, n_boot=n_boot, random_state=random_state)[:, 0, :]
    recall_draws = _div(draws[:, 3 : 3 + n_strata], draws[:, 3 + n_strata :])
    r_low, r_high = percentile_interval(recall_draws, confidence)
    n_hits, n_pos = hits_u.sum(axis=0), pos_u.sum(axis=0)
    recall = _div(n_hits, n_pos)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        defined = n_pos > 0
        gap = float(recall[defined].max() - recall[defined].min()) if defined.sum() >= 2 else float("nan")
        gap_draws = (
            np.nanmax(recall_draws[:, defined], axis=1) - np.nanmin(recall_draws[:, defined], axis=1)
            if defined.sum() >= 2
            else np.full(n_boot, np.nan)
        )
    arp, profile = M.defined_mean(arp_u[both]), M.defined_mean(profile_u[both])
    catalog = float(pop.mean()) if n_items else float("nan")
    return PopularityReport(
        arp=M.defined_mean(arp_u),
        profile_popularity=M.defined_mean(profile_u),
        catalog_popularity=catalog,
        arp_ratio=float(_div(arp, profile)),
        arp_ratio_ci=_interval(_div(draws[:, 0], draws[:, 1]), confidence),
        arp_catalog_ratio=float(_div(M.defined_mean(arp_u), catalog)),
        long_tail_share=M.defined_mean(lts_u),
        long_tail_share_ci=_interval(draws[:, 2], confidence),
        profile_long_tail_share=M.defined_mean(_row_means(hist, tail.astype(np.float64))),
        strata={
            str(label): {
                "n_items": int((strata == s).sum()),
                "n_positives": int(n_pos[s]),
                "n_hits": int(n_hits[s]),
                "recall": float(recall[s]),
                "recall_low": float(r_low[s]),
                "recall_high": float(r_high[s]),
            }
            for s, label in enumerate(labels)
        },
        recall_gap=gap,
        recall_gap_ci=_interval(gap_draws, confidence),
        head_share=float(head_share),
        n_users=n_users,
        confidence=confidence,
        n_boot=n_boot,
    )


# -- calibration -----------------------------------------------------------------------------------
def calibration_kl(
    recommended: np.ndarray,
    history: sp.spmatrix | sp.sparray,
    item_categories: Any,
    *,
    alpha: float = CALIBRATION_ALPHA,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Per-user miscalibration of the list against the history (Steck 2018).

    ``p(c|u)`` is the category distribution of the user's training positives
    and ``q(c|u)`` that of the list, each item spreading a weight of 1 equally
    over its categories (``p(c|i) = 1 / |categories(i)|``) and every item of the
    history and of the list weighing the same. The value is
    ``KL(p || q~) = sum_c p(c) log(p(c) / q~(c))`` with ``q~ = (1 - alpha) q +
    alpha p``, so it is finite and at most ``log(1 / alpha)`` (reached when the
    list has none of the history's categories). 0 means perfectly calibrated.
    NaN for a user whose history or list holds no categorised item.

    Parameters
    ----------
    recommended:
        ``(n_users, k)`` item columns, ``-1`` padding.
    history:
        ``(n_users, n_items)`` training positives, rows aligned with ``recommended``.
    item_categories:
        Per item column, anything :func:`recommender.metrics.item_category_matrix` reads.
    alpha:
        The smoothing weight ``a`` in (0, 1).
    chunk_size:
        Users per dense block (default: blocks of about 4M cells).

    Examples
    --------
    >>> hist = sp.csr_matrix(np.array([[1, 1, 0, 0]]))
    >>> round(float(calibration_kl(np.array([[2, 3]]), hist, ["a", "b", "a", "b"])[0]), 6)  # p = q = (1/2, 1/2)
    0.0
    """
    func = "calibration_kl"
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ConfigError(BAD_ALPHA.format(func=func, got=alpha))
    hist = _positives(history)
    n_items = hist.shape[1]
    cats = M.item_category_matrix(item_categories, n_items=n_items).astype(np.float64)
    rec = _lists(recommended, func, n_items)
    n_users = rec.shape[0]
    _rows_match(func, "'history'", hist, n_users)
    per_item = np.diff(cats.indptr).astype(np.float64)
    inverse = np.zeros(n_items)
    inverse[per_item > 0] = 1.0 / per_item[per_item > 0]
    spread = sp.csr_matrix(sp.diags(inverse) @ cats)  # row i: p(c | i)
    valid = rec >= 0
    listed = sp.csr_matrix(
        (np.ones(int(valid.sum())), (np.broadcast_to(np.arange(n_users)[:, None], rec.shape)[valid], rec[valid])),
        shape=(n_users, n_items),
    )
    p_all = sp.csr_matrix(hist.astype(np.float64) @ spread)
    q_all = sp.csr_matrix(listed @ spread)
    n_cats = cats.shape[1]
    out = np.full(n_users, np.nan)
    step = chunk_size or max(1, 2**22 // max(n_cats, 1))
    for start in range(0, n_users, step):
        p = p_all[start : start + step].toarray()
        q = q_all[start : start + step].toarray()
        p_tot, q_tot = p.sum(axis=1, keepdims=True), q.sum(axis=1, keepdims=True)
        p, q = _div(p, p_tot), _div(q, q_tot)
        smooth = (1.0 - alpha) * q + alpha * p
        with np.errstate(invalid="ignore", divide="ignore"):
            terms = np.where(p > 0, p * (np.log(p) - np.log(smooth)), 0.0)
        kl = terms.sum(axis=1)
        ok = (p_tot[:, 0] > 0) & (q_tot[:, 0] > 0)
        out[start : start + step] = np.where(ok, kl, np.nan)
    return out
