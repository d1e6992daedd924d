"""Uncertainty: the stratified bootstrap over users and its percentile intervals.

:func:`bootstrap_means` resamples users with replacement, within each group
(the group sizes stay those of the data), 1000 times by default, and every
interval of the fairness reports is the percentile interval of the resampled
statistic (95% by default). A batch of resamples is a sparse matrix with one
entry per drawn user, so the resampled sums are one sparse product: 1000
resamples of 100,000 users take under a second. Every measure of the other
modules takes its intervals from here, so that all share one resampling rule.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from recommender import metrics as M
from recommender.errors import ConfigError, DataError
from recommender.fairness._common import BAD_LENGTH, _div

BAD_N_BOOT = "The 'n_boot' parameter of {func} must be an int in the range [1, inf). Got {got!r} instead."
BAD_CONFIDENCE = "The 'confidence' parameter of {func} must be a float in the range (0, 1). Got {got!r} instead."

Interval = tuple[float, float]
"""A confidence interval ``(low, high)``; ``(nan, nan)`` when undefined."""

Seed = int | Sequence[int] | np.random.Generator | None
"""What :func:`numpy.random.default_rng` accepts: a seed, a sequence of seeds, or a generator."""

_CELLS = 2**22  # resample-by-user cells per batch (bounds memory to ~100 MB)
_COLUMNS = 4  # columns per sparse product (scipy's product slows down on wide blocks)


def _check_boot(func: str, n_boot: object, confidence: object) -> tuple[int, float]:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ConfigError(BAD_N_BOOT.format(func=func, got=n_boot))
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ConfigError(BAD_CONFIDENCE.format(func=func, got=confidence))
    return int(n_boot), float(confidence)


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
        is not NaN. NaN where a group has fewer than two defined values: the
        resamples of one value are that value, an interval of zero width that
        would claim a certainty no single user gives.

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
    one_group = codes is None
    codes = np.zeros(n, dtype=np.int64) if codes is None else np.asarray(codes, dtype=np.int64)
    if len(codes) != n:
        raise DataError(BAD_LENGTH.format(func=func, name="'codes'", got=len(codes), expected=n, what="one per row"))
    if n_groups is None:  # without codes one group, even of no row (its means are NaN)
        n_groups = 1 if one_group else int(codes.max(initial=-1)) + 1
    n_groups = int(n_groups)
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
        step = max(1, min(n_boot, _CELLS // size))  # resamples per batch: never more than are drawn
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
        # One defined value resamples to itself: a zero-width interval, a certainty no single user gives.
        out[:, g, valid[rows].sum(axis=0) < 2] = np.nan
    return out


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval over axis 0 (NaN samples ignored; NaN when all are).

    An infinite sample (a ratio whose resampled denominator is 0) stays infinite: an
    end that falls next to such a sample is ``inf`` (or ``-inf``), an unbounded end,
    not the NaN that interpolating with an infinity gives and that reads as "no
    interval" (a rule judging the interval then judged the point value instead).
    """
    tail = (1.0 - confidence) / 2.0
    samples = np.asarray(samples, dtype=np.float64)
    q = [tail, 1.0 - tail]
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, as documented
        ends = np.nanquantile(samples, q, axis=0)
        if np.isinf(samples).any():  # the two samples each end lies between
            below = np.nanquantile(samples, q, axis=0, method="lower")
            above = np.nanquantile(samples, q, axis=0, method="higher")
            ends = np.where((above == np.inf) & (below != -np.inf), np.inf, ends)
            ends = np.where((below == -np.inf) & (above != np.inf), -np.inf, ends)
    return ends[0], ends[1]


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
