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
  Mobasher, FLAIRS 2019): ``(1/|U|) sum_u |top_k(u) & tail|``, a count of
  long-tail items per list (APLT, its share, is
  :func:`recommender.metrics.long_tail_share`).

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


def _report(metric: str, num: np.ndarray, den: np.ndarray, names: tuple[str, ...], k: int) -> PopularityParity:
    p = _div(num.astype(np.float64), den.astype(np.float64))
    p = np.where(den > 0, p, np.nan)
    return PopularityParity(
        metric=metric,
        value=_cv(p),
        probability={g: float(p[i]) for i, g in enumerate(names)},
        numerator={g: int(num[i]) for i, g in enumerate(names)},
        denominator={g: int(den[i]) for i, g in enumerate(names)},
        k=k,
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
    add nothing to either sum, as in Elliot.

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
    den = np.bincount(codes[fresh.indices], minlength=len(names))
    return _report(func, num, den, names, rec.shape[1])


def pop_rsp(
    recommended: np.ndarray,
    history: sp.spmatrix | sp.sparray,
    *,
    popularity: np.ndarray | None = None,
    item_groups: Any = None,
    head_share: float = 0.8,
) -> PopularityParity:
    """PopRSP (Zhu et al. 2020, as Elliot computes it): ``std / mean`` of each group's chance of being recommended.

    ``P(g) = sum_u |top_k(u) & g| / sum_u |g - train(u)|`` over every user with a list.

    >>> hist = sp.csr_matrix(np.array([[0, 0, 0, 1], [0, 0, 0, 0]]))
    >>> rep = pop_rsp(np.array([[0, 1], [0, 2]]), hist, item_groups=["h", "h", "t", "t"])
    >>> rep.numerator, rep.denominator, round(rep.value, 4)
    ({'h': 3, 't': 1}, {'h': 4, 't': 3}, 0.3846)
    """
    func = "pop_rsp"
    hist = _positives(history)
    n_items = hist.shape[1]
    codes, names = _groups_for(func, item_groups, popularity, head_share, n_items)
    rec = _lists(recommended, func, n_items)
    _rows_match(func, "'history'", hist, rec.shape[0])
    valid = rec >= 0
    num = np.bincount(codes[rec[valid]], minlength=len(names))
    size = np.bincount(codes, minlength=len(names))
    den = rec.shape[0] * size - np.bincount(codes[hist.indices], minlength=len(names))
    return _report(func, num, den, names, rec.shape[1])


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

    The figure the papers report is the mean over users (``aclt(...).mean()``).

    >>> aclt(np.array([[0, 2], [2, 3], [-1, -1]]), np.array([10.0, 5.0, 1.0, 0.0])).tolist()
    [1.0, 2.0, 0.0]
    """
    tail = M.long_tail_items(popularity, head_share)
    rec = _lists(recommended, "aclt", len(tail))
    return (tail[np.maximum(rec, 0)] & (rec >= 0)).sum(axis=1).astype(np.float64)
