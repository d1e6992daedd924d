"""Calibration: does each list reflect the mix of categories in the user's own history (Steck 2018)?

A per-user measure: the KL divergence of the history's category distribution
from the list's, smoothed so that it stays finite. Computed for all users at
once through two sparse products and dense blocks of bounded size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender import metrics as M
from recommender.errors import ConfigError
from recommender.fairness._common import _div, _lists, _positives, _rows_match

CALIBRATION_ALPHA = 0.01
"""Steck's smoothing weight ``a`` of the history in ``q~ = (1 - a) q + a p``."""

BAD_ALPHA = "The 'alpha' parameter of {func} must be a float in the range (0, 1). Got {got!r} instead."


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
