"""Disparity between groups as the literature reports it: user and item MAD, and bias disparity.

* :func:`user_mad` -- the mean absolute difference (MAD) between user groups of
  a per-user quality (Deldjoo, Anelli, Zamani, Bellogin & Di Noia, UMUAI 2021;
  Elliot's ``UserMADranking`` with NDCG, ``UserMADrating`` with a predicted
  score; Zhu, Hu & Caverlee 2018 for two groups):
  ``MAD = mean over pairs (g, h) of |mean_{u in g} q(u) - mean_{u in h} q(u)|``.
* :func:`item_mad` -- the same between item groups, of each item's mean gain
  over the lists that show it (Elliot's ``ItemMADranking``):
  ``q(i) = sum_{u: i in top_k(u)} rel(u, i) / |{u: i in top_k(u)}|`` over the
  items shown at least once, binary relevance (a test positive gains 1).
* :func:`bias_disparity` -- Tsintzou, Pitoura & Tsaparas (RecSys workshop
  2019; Elliot's ``BiasDisparityBS``/``BR``/``BD``). For user group ``G`` and item
  category ``C``, the preference ratio ``PR(G, C)`` is the share of the group's
  interactions that fall on ``C``; the bias ``B(G, C) = PR(G, C) / P(C)`` with
  ``P(C) = |C| / |I|`` (1: the group favours ``C`` as much as its size
  predicts). ``BS`` is the bias in the training data, ``BR`` in the
  recommendations, and ``BD = (BR - BS) / BS`` the relative change the
  recommender brings (0: it neither amplifies nor dampens the group's taste).

All three are one ``bincount`` (or a sparse product) over the whole batch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender import metrics as M
from recommender.errors import DataError
from recommender.fairness._common import BAD_LENGTH, _div, _lists, _positives, _rows_match, group_labels

__all__ = ["GroupMAD", "BiasDisparity", "user_mad", "item_mad", "bias_disparity"]


@dataclass(frozen=True)
class GroupMAD:
    """Mean absolute difference of a quality between groups."""

    value: float
    """Mean over pairs of groups of ``|mean(g) - mean(h)|`` (NaN with fewer than two groups)."""
    by_group: dict[str, float]
    n: dict[str, int]
    """Users (user MAD) or shown items (item MAD) behind each group's mean."""


@dataclass(frozen=True)
class BiasDisparity:
    """Bias of each user group towards each item category, in the data and in the lists (Tsintzou et al. 2019)."""

    user_groups: tuple[str, ...]
    categories: tuple[str, ...]
    bs: np.ndarray
    """``(n_user_groups, n_categories)`` bias in the training data, ``PR_S(G, C) / P(C)``."""
    br: np.ndarray
    """The same in the recommendations, ``PR_R(G, C) / P(C)``."""
    bd: np.ndarray
    """``(BR - BS) / BS``: relative bias disparity (NaN where BS is 0)."""
    category_share: dict[str, float]
    """``P(C) = |C| / |I|``."""

    def as_dict(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{"bs"|"br"|"bd": {user_group: {category: value}}}`` for reports."""
        return {
            name: {
                g: {c: float(m[i, j]) for j, c in enumerate(self.categories)} for i, g in enumerate(self.user_groups)
            }
            for name, m in (("bs", self.bs), ("br", self.br), ("bd", self.bd))
        }


def _mad(means: np.ndarray, counts: np.ndarray, names: tuple[str, ...]) -> GroupMAD:
    present = [i for i in range(len(names)) if counts[i] > 0]
    diffs = [abs(means[i] - means[j]) for i, j in itertools.combinations(present, 2)]
    return GroupMAD(
        value=float(np.mean(diffs)) if diffs else float("nan"),
        by_group={names[i]: float(means[i]) for i in present},
        n={names[i]: int(counts[i]) for i in present},
    )


def user_mad(per_user: np.ndarray, user_groups: Any) -> GroupMAD:
    """User MAD (Deldjoo et al. 2021): mean over pairs of user groups of the absolute gap in mean ``per_user``.

    ``per_user`` is ``(n_users,)`` (e.g. NDCG@k per user); NaN values are left out.

    >>> round(user_mad(np.array([1.0, 0.5, 0.0, 0.2, np.nan]), ["a", "a", "b", "c", "c"]).value, 6)
    0.5
    """
    values = np.asarray(per_user, dtype=np.float64)
    codes, names = group_labels(user_groups)
    if values.shape != codes.shape:
        raise DataError(
            BAD_LENGTH.format(
                func="user_mad", name="'user_groups'", got=len(codes), expected=len(values), what="one per user"
            )
        )
    ok = ~np.isnan(values)
    counts = np.bincount(codes[ok], minlength=len(names))
    sums = np.bincount(codes[ok], weights=values[ok], minlength=len(names))
    return _mad(_div(sums, counts), counts, names)


def item_mad(recommended: np.ndarray, relevant: sp.spmatrix | sp.sparray, item_groups: Any) -> GroupMAD:
    """Item MAD (Deldjoo et al. 2021, Elliot's ``ItemMADranking``): item groups' gap in mean gain per showing.

    Each item shown at least once gets ``hits / showings``; each group the mean
    over its shown items; MAD the mean absolute difference over pairs of groups.

    >>> rel = sp.csr_matrix(np.array([[1, 0, 0, 0], [1, 0, 1, 0]]))
    >>> item_mad(np.array([[0, 2], [0, 2]]), rel, ["a", "a", "b", "b"]).by_group
    {'a': 1.0, 'b': 0.5}
    """
    func = "item_mad"
    rel = _positives(relevant)
    n_items = rel.shape[1]
    codes, names = group_labels(item_groups)
    if len(codes) != n_items:
        raise DataError(
            BAD_LENGTH.format(
                func=func, name="'item_groups'", got=len(codes), expected=n_items, what="one per item column"
            )
        )
    rec = _lists(recommended, func, n_items)
    _rows_match(func, "'relevant'", rel, rec.shape[0])
    valid = rec >= 0
    shown = np.bincount(rec[valid], minlength=n_items).astype(np.float64)
    hits = M.hit_matrix(rec, rel)
    gained = np.bincount(rec[hits], minlength=n_items).astype(np.float64)
    seen = shown > 0
    q = _div(gained, shown)
    counts = np.bincount(codes[seen], minlength=len(names))
    sums = np.bincount(codes[seen], weights=q[seen], minlength=len(names))
    return _mad(_div(sums, counts), counts, names)


def bias_disparity(
    recommended: np.ndarray,
    history: sp.spmatrix | sp.sparray,
    user_groups: Any,
    item_categories: Any,
) -> BiasDisparity:
    """Bias disparity BS, BR and BD of every (user group, item category) (Tsintzou et al. 2019).

    ``history`` is the training data (``(n_users, n_items)``, entries > 0 count
    1 each); the lists are those users' recommendations. ``P(C)`` counts the
    items of each category over the catalog.

    >>> hist = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 1, 0]]))
    >>> out = bias_disparity(np.array([[0, 1], [1, 2]]), hist, ["m", "f"], ["x", "x", "y", "y"])
    >>> out.as_dict()["bs"]["f"], out.as_dict()["br"]["f"], out.as_dict()["bd"]["f"]
    ({'x': 1.0, 'y': 1.0}, {'x': 1.0, 'y': 1.0}, {'x': 0.0, 'y': 0.0})
    """
    func = "bias_disparity"
    hist = _positives(history)
    n_users, n_items = hist.shape
    u_codes, u_names = group_labels(user_groups)
    c_codes, c_names = group_labels(item_categories)
    if len(u_codes) != n_users:
        raise DataError(
            BAD_LENGTH.format(
                func=func, name="'user_groups'", got=len(u_codes), expected=n_users, what="one per user"
            )
        )
    if len(c_codes) != n_items:
        raise DataError(
            BAD_LENGTH.format(
                func=func, name="'item_categories'", got=len(c_codes), expected=n_items, what="one per item column"
            )
        )
    rec = _lists(recommended, func, n_items)
    _rows_match(func, "'recommended'", rec, n_users)
    n_g, n_c = len(u_names), len(c_names)

    def preference(rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        counts = np.bincount(u_codes[rows] * n_c + c_codes[items], minlength=n_g * n_c).reshape(n_g, n_c)
        return _div(counts.astype(np.float64), counts.sum(axis=1, keepdims=True))

    p_c = np.bincount(c_codes, minlength=n_c) / max(n_items, 1)
    hist_rows = np.repeat(np.arange(n_users), np.diff(hist.indptr))
    bs = _div(preference(hist_rows, hist.indices), p_c[None, :])
    valid = rec >= 0
    rec_rows = np.broadcast_to(np.arange(n_users)[:, None], rec.shape)[valid]
    br = _div(preference(rec_rows, rec[valid]), p_c[None, :])
    bd = np.where(bs > 0, _div(br - bs, bs), np.nan)
    return BiasDisparity(
        user_groups=u_names,
        categories=c_names,
        bs=bs,
        br=br,
        bd=bd,
        category_share={c: float(p_c[j]) for j, c in enumerate(c_names)},
    )
