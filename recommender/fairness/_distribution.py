"""How attention is spread over the catalog, and list quality the fairness papers pair with it.

* :func:`rank_biased_precision` -- RBP (Moffat & Zobel, TOIS 2008), per user:
  ``RBP = (1 - p) * sum_{i=1..k} rel_i * p^(i-1)`` for patience ``p`` (LensKit's
  ``RBP``, default ``p = 0.85``); ``normalize=True`` divides instead by the best
  value the user's test positives allow, ``sum_{i=1..min(|rel|, k)} p^(i-1)``
  (LensKit's ``normalize=True``). NaN for a user without test positives.
* :func:`rank_weighted_exposure_gini` -- the Gini coefficient of each item's
  exposure summed over all lists, where a list gives rank ``i`` the weight of an
  attention model (LensKit's ``ExposureGini``: geometric, ``p^(i-1)``, by default):
  ``G = sum_j (2j - n - 1) e_(j) / (n * sum e)`` over the ``n`` catalog items
  sorted ascending (never-shown items count 0). 0 is equal exposure.
* :func:`exposure_entropy` -- Shannon entropy (natural log) of the items'
  exposure distribution ``q_i = e_i / sum e`` (Holistic AI's
  ``exposure_entropy``; plain counts by default, as there): ``-sum_i q_i ln q_i``.
  Its maximum is ``ln n``.
* :func:`exposure_kl` and :func:`exposure_l1` -- how differently two user
  groups' lists spread exposure over the items (Holistic AI's ``exposure_kl``
  and ``exposure_l1``): ``KL(q_a || q_b) = sum_i q_a,i ln(q_a,i / q_b,i)``
  (infinite when group a sees an item group b never does) and the total
  variation ``TV = (1/2) sum_i |q_a,i - q_b,i|`` in [0, 1] (what Holistic AI
  reports under the name ``exposure_l1``: half the L1 distance).
* :func:`aggregate_diversity` -- the share of the catalog recommended to at
  least one user (Adomavicius & Kwon, TKDE 2012; Holistic AI's
  ``aggregate_diversity``): ``|union_u top_k(u)| / |I|``.
* :func:`serendipity` -- Ge, Delgado-Battenfeld & Jannach (RecSys 2010), per
  user: ``|(top_k(u) - PM(u)) & rel(u)| / |top_k(u)|``, the share of the list
  that is both relevant and unexpected, an item being *expected* when a
  primitive recommender (``PM``, e.g. the most popular items) lists it too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender import metrics as M
from recommender.errors import DataError
from recommender.fairness._common import BAD_LENGTH, _div, _lists, _positives, _rows_match, group_labels
from recommender.fairness._exposure import attention_weights, item_exposure

__all__ = [
    "rank_biased_precision",
    "rank_weighted_exposure_gini",
    "exposure_distribution",
    "exposure_entropy",
    "exposure_kl",
    "exposure_l1",
    "aggregate_diversity",
    "serendipity",
]


def rank_biased_precision(
    recommended: np.ndarray, relevant: sp.spmatrix | sp.sparray, *, patience: float = 0.85, normalize: bool = False
) -> np.ndarray:
    """Per-user RBP (Moffat & Zobel 2008): ``(1 - p) * sum_i rel_i p^(i-1)`` (``(n_users,)``).

    >>> rel = sp.csr_matrix(np.array([[1, 0, 1], [0, 0, 0]]))
    >>> rank_biased_precision(np.array([[0, 1, 2], [0, 1, 2]]), rel, patience=0.5).tolist()
    [0.625, nan]
    """
    rel = _positives(relevant)
    rec = _lists(recommended, "rank_biased_precision", rel.shape[1])
    k = rec.shape[1]
    w = attention_weights(k, "geometric", patience)
    hits = M.hit_matrix(rec, rel)
    gained = (hits * w[None, :]).sum(axis=1)
    n_rel = np.diff(rel.indptr)
    if normalize:
        best = np.concatenate([[0.0], np.cumsum(w)])[np.minimum(n_rel, k)]
        out = _div(gained, best)
    else:
        out = gained * (1.0 - patience)
    return np.where(n_rel > 0, out, np.nan)


def rank_weighted_exposure_gini(
    recommended: np.ndarray, n_items: int, *, attention: str = "geometric", patience: float = 0.85
) -> float:
    """Gini of the items' rank-weighted exposure over the catalog (LensKit's ``ExposureGini``).

    >>> round(rank_weighted_exposure_gini(np.array([[0, 1], [0, 1]]), 4, patience=0.5), 4)
    0.5833
    """
    rec = _lists(recommended, "rank_weighted_exposure_gini", n_items)
    per_item = item_exposure(rec, n_items, attention_weights(rec.shape[1], attention, patience))
    return M.gini_index(per_item)


def exposure_distribution(
    recommended: np.ndarray, n_items: int, *, attention: str = "uniform", patience: float = 0.8
) -> np.ndarray:
    """``(n_items,)`` share of all the lists' attention that falls on each item (sums to 1; NaN if none)."""
    rec = _lists(recommended, "exposure_distribution", n_items)
    e = item_exposure(rec, n_items, attention_weights(rec.shape[1], attention, patience))
    total = e.sum()
    return e / total if total > 0 else np.full(n_items, np.nan)


def _entropy(q: np.ndarray) -> float:
    if not np.isfinite(q).all():  # no attention at all: undefined, not 0
        return float("nan")
    nz = q > 0
    return float(-(q[nz] * np.log(q[nz])).sum())


def exposure_entropy(
    recommended: np.ndarray, n_items: int, *, attention: str = "uniform", patience: float = 0.8
) -> float:
    """Entropy (nats) of the items' exposure distribution (Holistic AI's ``exposure_entropy``).

    >>> round(exposure_entropy(np.array([[0, 1], [2, 3]]), 4), 6) == round(float(np.log(4)), 6)
    True
    """
    return _entropy(exposure_distribution(recommended, n_items, attention=attention, patience=patience))


def _two_groups(
    func: str,
    recommended: np.ndarray,
    n_items: int,
    user_groups: Any,
    group_a: str,
    group_b: str,
    attention: str,
    patience: float,
) -> tuple[np.ndarray, np.ndarray]:
    rec = _lists(recommended, func, n_items)
    codes, names = group_labels(user_groups)
    if len(codes) != rec.shape[0]:
        raise DataError(
            BAD_LENGTH.format(
                func=func, name="'user_groups'", got=len(codes), expected=rec.shape[0], what="one per user"
            )
        )
    out = []
    for g in (group_a, group_b):
        if g not in names:
            raise DataError(f"{func}: no user is in group {g!r}; the groups are: {', '.join(names)}.")
        out.append(exposure_distribution(rec[codes == names.index(g)], n_items, attention=attention, patience=patience))
    return out[0], out[1]


def exposure_kl(
    recommended: np.ndarray,
    n_items: int,
    user_groups: Any,
    group_a: str,
    group_b: str,
    *,
    attention: str = "uniform",
    patience: float = 0.8,
) -> float:
    """``KL(q_a || q_b)`` between two user groups' item exposure distributions (Holistic AI's ``exposure_kl``).

    >>> exposure_kl(np.array([[0, 1], [0, 2]]), 3, ["a", "b"], "a", "b")
    inf
    >>> round(exposure_kl(np.array([[0, 1], [1, 0]]), 3, ["a", "b"], "a", "b"), 6)
    0.0
    """
    qa, qb = _two_groups("exposure_kl", recommended, n_items, user_groups, group_a, group_b, attention, patience)
    if not (np.isfinite(qa).all() and np.isfinite(qb).all()):  # a group's lists hold no attention
        return float("nan")
    nz = qa > 0
    with np.errstate(divide="ignore"):
        return float((qa[nz] * np.log(qa[nz] / qb[nz])).sum())


def exposure_l1(
    recommended: np.ndarray,
    n_items: int,
    user_groups: Any,
    group_a: str,
    group_b: str,
    *,
    attention: str = "uniform",
    patience: float = 0.8,
) -> float:
    """Total variation ``(1/2) sum_i |q_a,i - q_b,i|`` of two user groups' exposure (Holistic AI's ``exposure_l1``).

    >>> exposure_l1(np.array([[0, 1], [0, 2]]), 3, ["a", "b"], "a", "b")
    0.5
    """
    qa, qb = _two_groups("exposure_l1", recommended, n_items, user_groups, group_a, group_b, attention, patience)
    return float(0.5 * np.abs(qa - qb).sum())


def aggregate_diversity(recommended: np.ndarray, n_items: int) -> float:
    """Share of the catalog listed for at least one user (Adomavicius & Kwon 2012).

    >>> aggregate_diversity(np.array([[0, 1], [1, -1]]), 4)
    0.5
    """
    rec = _lists(recommended, "aggregate_diversity", n_items)
    return float(np.unique(rec[rec >= 0]).size / n_items) if n_items else float("nan")


def serendipity(
    recommended: np.ndarray, relevant: sp.spmatrix | sp.sparray, expected: np.ndarray
) -> np.ndarray:
    """Per-user serendipity (Ge et al. 2010): share of the list that is relevant and not ``expected``.

    ``expected`` is a primitive recommender's lists: ``(n_users, m)`` (``-1``
    padding) or one ``(m,)`` list for everyone (e.g. the most popular items).
    NaN for an empty list.

    >>> rel = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 1, 0]]))
    >>> serendipity(np.array([[0, 1], [2, 3]]), rel, np.array([0])).tolist()
    [0.5, 0.5]
    """
    func = "serendipity"
    rel = _positives(relevant)
    n_users, n_items = rel.shape
    rec = _lists(recommended, func, n_items)
    _rows_match(func, "'relevant'", rel, rec.shape[0])
    exp = np.asarray(expected)
    if exp.ndim == 1:
        exp = np.broadcast_to(exp[None, :], (n_users, exp.shape[0]))
    exp = _lists(exp, func, n_items)
    _rows_match(func, "'expected'", exp, rec.shape[0])
    ok = exp >= 0
    rows = np.broadcast_to(np.arange(n_users)[:, None], exp.shape)[ok]
    expected_m = sp.csr_matrix((np.ones(int(ok.sum())), (rows, exp[ok])), shape=(n_users, n_items))
    surprising = M.hit_matrix(rec, rel) & ~M.hit_matrix(rec, expected_m)
    length = (rec >= 0).sum(axis=1)
    return np.where(length > 0, _div(surprising.sum(axis=1), length), np.nan)
