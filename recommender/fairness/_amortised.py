"""Exposure amortised over many lists and over time: expected exposure and equity of attention.

A user served repeatedly (a feed refreshed through the day) sees many lists; an
item's fair share of attention need not hold in each list, only over them all.
Both measures here take a *log of requests*: ``users`` (``(n_requests,)``, the
user row each request served; the same user may appear many times) and the
lists served (``(n_requests, k)``, ``-1`` padding), with each user's relevant
items (``(n_users, n_items)`` sparse test positives). Attention at rank ``i`` is
an attention model of :func:`recommender.fairness.attention_weights` (geometric
``p^(i-1)``, the browsing model of RBP, by default, as in both papers).

Every figure is reported three ways, each named:

``per_list``
    computed for each request alone and averaged over requests (no amortisation:
    what a list-by-list rule sees);
``per_user``
    amortised over each user's requests, then averaged over users (every user
    counts once, however often served): fairness *to each user's attention*;
``pooled``
    amortised over every request of every user at once: each item's (or provider
    group's) total exposure against its total merit -- the provider's view.

:func:`equity_of_attention` -- Biega, Gummadi & Weikum (SIGIR 2018), amortised
individual fairness: each request gives its items attention ``a_r(i) = w(rank) /
sum(w)`` and relevance ``rho_r(i) = 1/|rel(u)|`` for the user's relevant items
(both sum to 1 per request); unfairness is ``sum_i |sum_r a_r(i) - sum_r rho_r(i)|
/ n_r`` over the requests amortised (0: attention proportional to relevance;
at most 2). With ``item_groups`` the sums are over provider groups instead of
items (group equity of attention).

:func:`expected_exposure` -- Diaz, Mitra, Ekstrand, Biega & Carterette (CIKM
2020). For user ``u``, ``eps_u(i)`` is the mean over the user's requests of the
attention item ``i`` got (the policy's expected exposure); the target ``eps*_u``
gives each of the ``m`` relevant items the mean attention of ranks ``1..m`` and
each other candidate (catalog minus history) the mean of the remaining ranks
(0 beyond ``k``). ``EE-D = ||eps||^2`` (disparity; lower is more equal),
``EE-R = eps . eps*`` (relevance), ``EE-L = ||eps - eps*||^2 = EE-D - 2 EE-R +
||eps*||^2`` (loss; 0 is the ideal stochastic policy). ``per_list`` takes every
request as its own policy; ``pooled`` compares the mean exposure vector over all
requests with the mean target.

Vectorised: one sparse matrix of (request, item) attention, aggregated to users
by a sparse product; no loop over users or requests. Requests of users without
relevant items are left out (relevance is undefined) and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender.errors import DataError
from recommender.fairness._common import BAD_LENGTH, _div, _lists, _positives, group_labels
from recommender.fairness._exposure import attention_key, attention_weights

__all__ = ["AmortisedFigure", "EquityOfAttention", "ExpectedExposure", "equity_of_attention", "expected_exposure"]


@dataclass(frozen=True)
class AmortisedFigure:
    """One figure computed list by list, amortised per user, and pooled over everyone."""

    per_list: float
    per_user: float
    pooled: float


@dataclass(frozen=True)
class EquityOfAttention:
    """Biega et al.'s amortised unfairness ``sum |attention - relevance| / n_requests`` (0 to 2)."""

    unfairness: AmortisedFigure
    level: str
    """``item`` or the name of the item grouping (``provider``)."""
    attention: str
    n_requests: int
    n_users: int
    n_left_out: int
    """Requests of users without any relevant item (left out)."""
    pooled_attention_share: dict[str, float] | None
    """With item groups: each group's share of all attention, pooled over every request."""
    pooled_relevance_share: dict[str, float] | None
    """With item groups: each group's share of all relevance, pooled over every request."""


@dataclass(frozen=True)
class ExpectedExposure:
    """Diaz et al.'s expected exposure: loss, disparity and relevance (see the module docstring)."""

    ee_l: AmortisedFigure
    ee_d: AmortisedFigure
    ee_r: AmortisedFigure
    attention: str
    n_requests: int
    n_users: int
    n_left_out: int


def _requests(
    func: str, users: Any, recommended: np.ndarray, relevant: sp.spmatrix | sp.sparray
) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, int]:
    rel = _positives(relevant)
    n_users, n_items = rel.shape
    rec = _lists(recommended, func, n_items)
    who = np.asarray(users)
    if who.shape != (rec.shape[0],) or not (np.issubdtype(who.dtype, np.integer) or who.size == 0):
        raise DataError(
            f"{func}: 'users' must hold one int user row per request ({rec.shape[0]} requests). "
            f"Got an array of shape {who.shape} and dtype {who.dtype} instead."
        )
    who = who.astype(np.int64)
    if who.size and (who.min() < 0 or who.max() >= n_users):
        bad = int(who.max() if who.max() >= n_users else who.min())
        raise DataError(f"{func}: 'users' holds row {bad}, outside 0..{n_users - 1} of 'relevant'.")
    has_rel = np.diff(rel.indptr) > 0
    keep = has_rel[who]
    return who[keep], rec[keep], rel, int((~keep).sum())


def _attention_matrix(rec: np.ndarray, n_cols: int, columns: np.ndarray, w: np.ndarray) -> sp.csr_matrix:
    """``(n_requests, n_cols)`` attention of each request on each column (item or group), rows summing to 1."""
    valid = rec >= 0
    ww = np.where(valid, w[None, : rec.shape[1]], 0.0)
    total = ww.sum(axis=1, keepdims=True)
    ww = _div(ww, total)
    rows = np.broadcast_to(np.arange(rec.shape[0])[:, None], rec.shape)[valid]
    return sp.csr_matrix((ww[valid], (rows, columns[rec[valid]])), shape=(rec.shape[0], n_cols))


def _user_means(per_request: sp.csr_matrix, who: np.ndarray, n_users: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """Rows of ``per_request`` averaged by user (``(n_users, n_cols)``) and each user's request count."""
    n_r = per_request.shape[0]
    count = np.bincount(who, minlength=n_users).astype(np.float64)
    if not n_r:
        return sp.csr_matrix((n_users, per_request.shape[1])), count
    agg = sp.csr_matrix((1.0 / count[who], (who, np.arange(n_r))), shape=(n_users, n_r))
    return sp.csr_matrix(agg @ per_request), count


def equity_of_attention(
    users: Any,
    recommended: np.ndarray,
    relevant: sp.spmatrix | sp.sparray,
    *,
    item_groups: Any = None,
    level: str = "provider",
    attention: str = "geometric",
    patience: float = 0.5,
) -> EquityOfAttention:
    """Amortised equity of attention (Biega et al. 2018) of a log of requests.

    >>> rel = sp.csr_matrix(np.array([[1, 1, 0]]))
    >>> out = equity_of_attention(np.array([0, 0]), np.array([[0, 1], [1, 0]]), rel, attention="uniform")
    >>> out.unfairness.per_list, out.unfairness.pooled
    (0.0, 0.0)
    >>> out = equity_of_attention(np.array([0, 0]), np.array([[0, 1], [1, 0]]), rel, patience=0.5)
    >>> round(out.unfairness.per_list, 4), round(out.unfairness.pooled, 4)
    (0.3333, 0.0)
    """
    func = "equity_of_attention"
    who, rec, rel, left_out = _requests(func, users, recommended, relevant)
    n_users, n_items = rel.shape
    if item_groups is None:
        columns, names, lvl = np.arange(n_items), None, "item"
    else:
        columns, names = group_labels(item_groups)
        if len(columns) != n_items:
            raise DataError(
                BAD_LENGTH.format(
                    func=func, name="'item_groups'", got=len(columns), expected=n_items, what="one per item column"
                )
            )
        lvl = level
    n_cols = n_items if names is None else len(names)
    w = attention_weights(rec.shape[1], attention, patience)
    att = _attention_matrix(rec, n_cols, columns, w)
    # relevance of each request: 1/|rel(u)| on the user's relevant items, summed into columns
    rel_share = sp.csr_matrix(sp.diags(1.0 / np.maximum(np.diff(rel.indptr), 1)) @ rel)
    to_cols = sp.csr_matrix((np.ones(n_items), (np.arange(n_items), columns)), shape=(n_items, n_cols))
    user_rel = sp.csr_matrix(rel_share @ to_cols)  # (n_users, n_cols)
    req_rel = user_rel[who]
    diff = att - req_rel
    n_r = rec.shape[0]
    per_list = float(np.asarray(abs(diff).sum(axis=1)).ravel().mean()) if n_r else float("nan")
    user_att, count = _user_means(att, who, n_users)
    served = count > 0
    user_gap = np.asarray(abs(user_att - sp.diags(served.astype(np.float64)) @ user_rel).sum(axis=1)).ravel()
    per_user = float(user_gap[served].mean()) if served.any() else float("nan")
    pooled_att = np.asarray(att.sum(axis=0)).ravel()
    pooled_rel = np.asarray(req_rel.sum(axis=0)).ravel()
    pooled = float(np.abs(pooled_att - pooled_rel).sum() / n_r) if n_r else float("nan")
    shares = (None, None)
    if names is not None and n_r:
        shares = (
            {g: float(pooled_att[i] / n_r) for i, g in enumerate(names)},
            {g: float(pooled_rel[i] / n_r) for i, g in enumerate(names)},
        )
    return EquityOfAttention(
        unfairness=AmortisedFigure(per_list=per_list, per_user=per_user, pooled=pooled),
        level=lvl,
        attention=attention_key(attention, patience),
        n_requests=n_r,
        n_users=int(served.sum()),
        n_left_out=left_out,
        pooled_attention_share=shares[0],
        pooled_relevance_share=shares[1],
    )


def expected_exposure(
    users: Any,
    recommended: np.ndarray,
    relevant: sp.spmatrix | sp.sparray,
    history: sp.spmatrix | sp.sparray | None = None,
    *,
    attention: str = "geometric",
    patience: float = 0.5,
) -> ExpectedExposure:
    """Expected exposure EE-L, EE-D and EE-R (Diaz et al. 2020) of a log of requests.

    A user whose two requests show their two relevant items in both orders gets
    the ideal expected exposure: EE-L is 0 per user and pooled, but not per list.

    >>> rel = sp.csr_matrix(np.array([[1, 1, 0, 0]]))
    >>> out = expected_exposure(np.array([0, 0]), np.array([[0, 1], [1, 0]]), rel)
    >>> out.ee_l.per_user, out.ee_l.pooled, out.ee_l.per_list
    (0.0, 0.0, 0.125)
    """
    func = "expected_exposure"
    who, rec, rel, left_out = _requests(func, users, recommended, relevant)
    n_users, n_items = rel.shape
    hist = _positives(history) if history is not None else sp.csr_matrix((n_users, n_items), dtype=bool)
    if hist.shape != rel.shape:
        raise DataError(
            f"{func}: 'history' has shape {hist.shape} but 'relevant' has {rel.shape}; rows are users, columns items."
        )
    rel = _positives(rel - rel.multiply(hist))  # a relevant item already in the history is no candidate
    k = rec.shape[1]
    w = attention_weights(k, attention, patience)
    cum = np.concatenate([[0.0], np.cumsum(w)])
    m = np.diff(rel.indptr).astype(np.int64)
    n_cand = n_items - np.diff(hist.indptr)
    a = _div(cum[np.minimum(m, k)], m)  # target of each relevant item
    b = np.where(n_cand > m, _div(cum[k] - cum[np.minimum(m, k)], n_cand - m), 0.0)  # each other candidate
    a = np.nan_to_num(a)
    target_sq = m * a**2 + (n_cand - m) * b**2  # ||eps*_u||^2
    valid = rec >= 0
    rows = np.broadcast_to(np.arange(rec.shape[0])[:, None], rec.shape)[valid]
    exp_r = sp.csr_matrix((np.broadcast_to(w, rec.shape)[valid], (rows, rec[valid])), shape=(rec.shape[0], n_items))
    in_hist = hist.astype(np.float64)

    def figures(eps: sp.csr_matrix, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """EE-D, EE-R, EE-L of each row of ``eps`` against the target of user ``owner[row]``."""
        ee_d = np.asarray(eps.multiply(eps).sum(axis=1)).ravel()
        on_rel = np.asarray(eps.multiply(rel[owner]).sum(axis=1)).ravel()
        on_hist = np.asarray(eps.multiply(in_hist[owner]).sum(axis=1)).ravel()
        total = np.asarray(eps.sum(axis=1)).ravel()
        ee_r = a[owner] * on_rel + b[owner] * (total - on_rel - on_hist)
        return ee_d, ee_r, ee_d - 2 * ee_r + target_sq[owner]

    n_r = rec.shape[0]
    list_d, list_r, list_l = figures(exp_r, who)
    user_eps, count = _user_means(exp_r, who, n_users)
    served = np.flatnonzero(count > 0)
    user_d, user_r, user_l = figures(sp.csr_matrix(user_eps[served]), served)
    # pooled: the mean exposure vector over all requests against the mean target over all requests
    weight = count / max(n_r, 1)
    pooled_eps = np.asarray(exp_r.sum(axis=0)).ravel() / max(n_r, 1)
    wb = weight * b
    target = np.full(n_items, wb.sum())
    target -= np.asarray(in_hist.T @ wb).ravel()
    target += np.asarray(rel.astype(np.float64).T @ (weight * (a - b))).ravel()
    pooled_d = float(pooled_eps @ pooled_eps)
    pooled_r = float(pooled_eps @ target)
    pooled_l = float(((pooled_eps - target) ** 2).sum())

    def fig(per_list: np.ndarray, per_user: np.ndarray, pooled: float) -> AmortisedFigure:
        return AmortisedFigure(
            per_list=float(per_list.mean()) if n_r else float("nan"),
            per_user=float(per_user.mean()) if len(served) else float("nan"),
            pooled=pooled if n_r else float("nan"),
        )

    return ExpectedExposure(
        ee_l=fig(list_l, user_l, pooled_l),
        ee_d=fig(list_d, user_d, pooled_d),
        ee_r=fig(list_r, user_r, pooled_r),
        attention=attention_key(attention, patience),
        n_requests=n_r,
        n_users=len(served),
        n_left_out=left_out,
    )
