"""Popularity bias as the literature reports it: PopREO, PopRSP and ACLT.

These are the figures of Elliot (Anelli et al., SIGIR 2021) and the papers it
cites, computed on the same inputs as the rest of the package (lists as
``(n_users, k)`` item columns with ``-1`` padding, sparse matrices whose rows are
the same users). Items are split into a short head and a long tail by
:func:`recommender.metrics.long_tail_items` (the head is the smallest set of most
popular items holding ``head_share`` of the training interactions; Elliot's
``pop_ratio`` 0.8), or by any item groups the caller gives.

* :func:`pop_reo` -- Popularity-based Ranking-based Equal Opportunity (Zhu,
  Wang & Caverlee, SIGIR 2020; Elliot's ``PopREO``): for each item group ``g``,
  ``P(R@k | g, y=1) = sum_u |top_k(u) & test(u) & g| / sum_u |(test(u) & g) - train(u)|``,
  the chance that a test positive of the group reaches the top k; then
  ``REO = std(P) / mean(P)`` over the groups (population std, ``ddof=0``).
* :func:`pop_rsp` -- Ranking-based Statistical Parity (same paper; ``PopRSP``):
  ``P(R@k | g) = sum_u |top_k(u) & g| / sum_u |g - train(u)|``, the chance that
  any item of the group the user has not seen is recommended; ``RSP = std / mean``.
* :func:`aclt` -- Average Coverage of the Long Tail (Abdollahpouri, Burke &
  Mobasher, FLAIRS 2019): ``(1/|U|) sum_u |top_k(u) & tail|`` over the users
  with a list, a count of long-tail items per list (NaN for a user served
  nothing, so that :func:`recommender.metrics.defined_mean` gives the paper's
  figure; APLT, its share, is :func:`recommender.metrics.long_tail_share`).

Only users with a list count: a row of ``-1`` padding alone (a user who was
served nothing) adds nothing to any sum, as Elliot iterates over the users it
has recommendations for. Counting such a user would add every item they have
not seen to RSP's denominators and every test positive to REO's, and pull both
probabilities (and ACLT's mean) toward 0 by however many users were not served.

0 is parity for REO and RSP; an item group with no test positive (REO) or no
unseen item (RSP) is left out, and the value is NaN when fewer than two groups
remain. Everything is a ``bincount`` over item codes, no per-user loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender import metrics as M
from recommender.errors import DataError
from recommender.fairness._common import BAD_LENGTH, _div, _lists, _positives, _rows_match, group_labels

__all__ = ["PopularityParity", "pop_reo", "pop_rsp", "aclt", "head_tail_groups"]


@dataclass(frozen=True)
class PopularityParity:
    """REO or RSP: the per-group probabilities and their coefficient of variation."""

    metric: str
    """``pop_reo`` or ``pop_rsp``."""
    value: float
    """``std(P) / mean(P)`` over the groups with a defined ``P`` (population std); 0 is parity."""
    probability: dict[str, float]
    """``P(R@k | g[, y=1])`` of every group (NaN where the denominator is 0)."""
    numerator: dict[str, int]
    denominator: dict[str, int]
    k: int
    users: int = 0
    """How many users had a list (at least one item) and so entered the sums; users served nothing do not."""


def head_tail_groups(popularity: np.ndarray, head_share: float = 0.8) -> np.ndarray:
    """``(n_items,)`` labels ``"short_head"`` / ``"long_tail"`` (:func:`recommender.metrics.long_tail_items`)."""
    tail = M.long_tail_items(popularity, head_share)
    return np.where(tail, "long_tail", "short_head").astype(object)


def _item_codes(func: str, item_groups: Any, n_items: int) -> tuple[np.ndarray, tuple[str, ...]]:
    codes, names = group_labels(item_groups)
    if len(codes) != n_items:
        raise DataError(
            BAD_LENGTH.format(
                func=func, name="'item_groups'", got=len(codes), expected=n_items, what="one per item column"
            )
        )
    return codes, names


def _cv(p: np.ndarray) -> float:
    ok = np.isfinite(p)
    if ok.sum() < 2:
        return float("nan")
    return float(_div(np.std(p[ok]), np.mean(p[ok])))


def _served(rec: np.ndarray) -> np.ndarray:
    """``(n_users,)`` booleans: does the user's list hold at least one item (not only ``-1`` padding)?"""
    return (rec >= 0).any(axis=1)


def _of_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """The column indices of ``matrix`` in the rows where ``rows`` is true (one mask over the stored entries)."""
    return matrix.indices[np.repeat(rows, np.diff(matrix.indptr))]


def _report(
    metric: str, num: np.ndarray, den: np.ndarray, names: tuple[str, ...], k: int, users: int
) -> PopularityParity:
    p = _div(num.astype(np.float64), den.astype(np.float64))
    p = np.where(den > 0, p, np.nan)
    return PopularityParity(
        metric=metric,
        value=_cv(p),
        probability={g: float(p[i]) for i, g in enumerate(names)},
        numerator={g: int(num[i]) for i, g in enumerate(names)},
        denominator={g: int(den[i]) for i, g in enumerate(names)},
        k=k,
        users=users,
    )


def pop_reo(
    recommended: np.ndarray,
    relevant: sp.spmatrix | sp.sparray,
    history: sp.spmatrix | sp.sparray,
    *,
    popularity: np.ndarray | None = None,
    item_groups: Any = None,
    head_share: float = 0.8,
) -> PopularityParity:
    """PopREO (Zhu et al. 2020, as Elliot computes it): ``std / mean`` of each group's recall of its test positives.

    ``P(g) = sum_u |top_k(u) & test(u) & g| / sum_u |(test(u) & g) - train(u)|``.
    Give ``item_groups`` (any labels, one per item column) or ``popularity``
    (short head vs long tail by ``head_share``). Users without test positives
    add nothing to either sum, as in Elliot, and neither do users without a
    list (a row of ``-1``): their test positives are not in the denominator.

    >>> rel = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 0, 1]]))
    >>> hist = sp.csr_matrix((2, 4))
    >>> rep = pop_reo(np.array([[0, 1], [1, 0]]), rel, hist, item_groups=["h", "h", "t", "t"])
    >>> rep.probability, rep.value
    ({'h': 1.0, 't': 0.0}, 1.0)
    """
    func = "pop_reo"
    rel, hist = _positives(relevant), _positives(history)
    n_items = rel.shape[1]
    codes, names = _groups_for(func, item_groups, popularity, head_share, n_items)
    rec = _lists(recommended, func, n_items)
    for name, matrix in (("'relevant'", rel), ("'history'", hist)):
        _rows_match(func, name, matrix, rec.shape[0])
    hits = M.hit_matrix(rec, rel)
    num = np.bincount(codes[rec[hits]], minlength=len(names))
    fresh = _positives(rel - rel.multiply(hist))  # test positives not in training
    served = _served(rec)
    den = np.bincount(codes[_of_rows(fresh, served)], minlength=len(names))
    return _report(func, num, den, names, rec.shape[1], int(served.sum()))


def pop_rsp(
    recommended: np.ndarray,
    history: sp.spmatrix | sp.sparray,
    *,
    popularity: np.ndarray | None = None,
    item_groups: Any = None,
    head_share: float = 0.8,
) -> PopularityParity:
    """PopRSP (Zhu et al. 2020, as Elliot computes it): ``std / mean`` of each group's chance of being recommended.

    ``P(g) = sum_u |top_k(u) & g| / sum_u |g - train(u)|`` over every user with a list
    (at least one item); a row of ``-1`` padding alone adds nothing to either sum.

    >>> hist = sp.csr_matrix(np.array([[0, 0, 0, 1], [0, 0, 0, 0]]))
    >>> rep = pop_rsp(np.array([[0, 1], [0, 2]]), hist, item_groups=["h", "h", "t", "t"])
    >>> rep.numerator, rep.denominator, round(rep.value, 4)
    ({'h': 3, 't': 1}, {'h': 4, 't': 3}, 0.3846)
    >>> served_nothing = pop_rsp(np.array([[0, 1], [0, 2], [-1, -1]]), sp.vstack([hist, sp.csr_matrix((1, 4))]),
    ...                          item_groups=["h", "h", "t", "t"])
    >>> served_nothing.denominator == rep.denominator, served_nothing.users
    (True, 2)
    """
    func = "pop_rsp"
    hist = _positives(history)
    n_items = hist.shape[1]
    codes, names = _groups_for(func, item_groups, popularity, head_share, n_items)
    rec = _lists(recommended, func, n_items)
    _rows_match(func, "'history'", hist, rec.shape[0])
    valid = rec >= 0
    num = np.bincount(codes[rec[valid]], minlength=len(names))
    served = _served(rec)
    size = np.bincount(codes, minlength=len(names))
    seen = np.bincount(codes[_of_rows(hist, served)], minlength=len(names))
    den = int(served.sum()) * size - seen
    return _report(func, num, den, names, rec.shape[1], int(served.sum()))


def _groups_for(
    func: str, item_groups: Any, popularity: np.ndarray | None, head_share: float, n_items: int
) -> tuple[np.ndarray, tuple[str, ...]]:
    if item_groups is None:
        if popularity is None:
            raise DataError(f"{func}: give either 'item_groups' or 'popularity' (to split short head and long tail).")
        pop = np.asarray(popularity, dtype=np.float64)
        if len(pop) != n_items:
            raise DataError(
                BAD_LENGTH.format(
                    func=func, name="'popularity'", got=len(pop), expected=n_items, what="one per item column"
                )
            )
        item_groups = head_tail_groups(pop, head_share)
    return _item_codes(func, item_groups, n_items)


def aclt(recommended: np.ndarray, popularity: np.ndarray, head_share: float = 0.8) -> np.ndarray:
    """ACLT (Abdollahpouri et al. 2019): per user, the number of long-tail items in the list (``(n_users,)``).

    NaN for a user with no list (a row of ``-1`` padding alone), as
    :func:`recommender.metrics.long_tail_share` does: such a user was shown
    nothing, which is not a list without long-tail items. The figure the papers
    report is the mean over the users with a list
    (:func:`recommender.metrics.defined_mean` of this, or ``np.nanmean``).

    >>> aclt(np.array([[0, 2], [2, 3], [-1, -1]]), np.array([10.0, 5.0, 1.0, 0.0])).tolist()
    [1.0, 2.0, nan]
    """
    tail = M.long_tail_items(popularity, head_share)
    rec = _lists(recommended, "aclt", len(tail))
    count = (tail[np.maximum(rec, 0)] & (rec >= 0)).sum(axis=1).astype(np.float64)
    return np.where(_served(rec), count, np.nan)
