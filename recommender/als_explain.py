"""The exact ALS score decomposition over a user's history (pure numpy and LAPACK).

With ``W_u = (Y^T C_u Y + lambda I)^-1`` the score of item ``i`` decomposes over
the user's history as ``s_ui = sum_j (y_i^T W_u y_j) c_uj`` (Hu, Koren and
Volinsky 2008, section 5; ``implicit``'s ``explain``), so each past item ``j``
contributes its own term. One Cholesky factorization per user serves a whole
list. :mod:`governance.explain` re-exports these for the served tags; the ALS
model family (:mod:`recommender.families.als`) uses them for its own tags.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.linalg.lapack

__all__ = ["ListExplanation", "explain_als_list", "regularized_gram"]


@dataclass(frozen=True)
class ListExplanation:
    """The exact ALS decomposition for one user's list."""

    scores: np.ndarray
    """(L,) the total score of each list item (sum of the contributions)."""
    contributors: np.ndarray
    """(L, n) history item indices contributing most to each list item (-1 padding)."""
    weights: np.ndarray
    """(L, n) their contributions, best first."""
    solver: str = "cholesky"
    """How the user's system was solved: ``cholesky``, or ``pseudo_inverse`` where it is singular (no
    regularization and fewer independent item factors than factors): then the decomposition is that of the
    minimum-norm least-squares user factor, still exact for it."""


_POTRF, _POTRS = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potrs"), dtype=np.float64)


def regularized_gram(yty: np.ndarray, regularization: float) -> np.ndarray:
    """``Y^T Y + regularization * I`` as float64: the part of every user's system that does not
    depend on the user (computed once per model and passed to :func:`explain_als_list`)."""
    yty = np.asarray(yty, dtype=np.float64)
    return yty + float(regularization) * np.eye(yty.shape[0])


def _pseudo_inverse(a: np.ndarray) -> np.ndarray:
    """``a^+`` of a symmetric positive semi-definite ``a`` (eigenvalues under the rounding cut-off count as 0);
    a clearly negative eigenvalue (a negative regularization) is a ``LinAlgError``: no least-squares problem
    has such a system."""
    values, vectors = scipy.linalg.eigh(a)
    cutoff = max(float(np.abs(values).max(initial=0.0)), np.finfo(np.float64).tiny) * a.shape[0] * np.finfo(np.float64).eps
    if values.min(initial=0.0) < -cutoff:
        raise np.linalg.LinAlgError(
            f"explain_als_list: the user's system is not positive definite nor semi-definite (smallest eigenvalue "
            f"{values.min():.3g}): the regularization or the factors are not those of a fitted ALS model"
        )
    inverse = np.where(values > cutoff, 1.0 / np.where(values > cutoff, values, 1.0), 0.0)
    return (vectors * inverse) @ vectors.T


def explain_als_list(
    item_factors: np.ndarray,
    regularization: float,
    alpha: float,
    history_items: np.ndarray,
    history_values: np.ndarray,
    list_items: np.ndarray,
    n: int = 3,
    yty: np.ndarray | None = None,
    *,
    gram: np.ndarray | None = None,
) -> ListExplanation:
    """Contributions of a user's history to every item of a list, with one factorization.

    Parameters
    ----------
    item_factors:
        ``(n_items, f)`` the model's item factors.
    regularization, alpha:
        The model's parameters (confidence is ``alpha * value``).
    history_items, history_values:
        The user's training row (column indices and stored values).
    list_items:
        The list to explain (item indices; -1 entries are ignored and get no contributors).
    n:
        Contributors kept per item.
    yty:
        ``Y^T Y``, precomputed once per model (computed here when omitted).
    gram:
        ``Y^T Y + regularization * I`` as float64 (:func:`regularized_gram`), precomputed once
        per model; ``yty`` is then not used.

    Returns the same numbers as ``implicit``'s ``explain`` for each list item.
    """
    Y = item_factors
    f = Y.shape[1]
    if gram is None:
        if yty is None:
            yty = Y.T.astype(np.float64) @ Y.astype(np.float64)
        gram = regularized_gram(yty, regularization)
    conf = np.asarray(history_values, dtype=np.float64) * float(alpha)
    keep = conf > 0
    hist = np.asarray(history_items, dtype=np.int64)[keep]
    conf = conf[keep]
    Yh = Y[hist].astype(np.float64)
    # W_u^-1 = Y^T Y + lambda I + Y_h^T (C_h - I) Y_h, factored once with LAPACK directly: this runs
    # for every served list, where scipy's wrappers (argument checks, copies) cost as much as the
    # 64x64 factorization itself.
    A = gram + (Yh.T * (conf - 1.0)) @ Yh
    if A.shape != (f, f) or not np.isfinite(A).all():
        raise ValueError("explain_als_list: the factors, gram matrix or history values are not finite (or not f x f)")
    factor, info = _POTRF(A, lower=False, clean=False, overwrite_a=True)
    items = np.asarray(list_items, dtype=np.int64)
    valid = items >= 0
    L = len(items)
    targets = Y[items[valid]].astype(np.float64).T  # (f, L_valid)
    solver = "cholesky"
    if info == 0:
        weighted, info = _POTRS(factor, targets, lower=False)
    if info != 0:
        # Not positive definite: singular (regularization 0 and fewer independent item factors than factors, or
        # rounding at that edge). ALS's least-squares problem still has a well-defined answer, the minimum-norm
        # user factor A^+ b, and the decomposition of its scores is exact: W_u = A^+ in place of A^-1.
        weighted = _pseudo_inverse(gram + (Yh.T * (conf - 1.0)) @ Yh) @ targets  # potrf overwrote the first A
        solver = "pseudo_inverse"
    contrib = (Yh @ weighted) * conf[:, None]  # (|H|, L_valid)
    scores = np.full(L, np.nan)
    scores[valid] = contrib.sum(axis=0)
    top = min(n, len(hist))
    contributors = np.full((L, n), -1, dtype=np.int64)
    weights = np.full((L, n), np.nan)
    if top > 0 and valid.any():
        by_item = contrib.T  # (L_valid, |H|): each list item's contributions
        rows = np.arange(by_item.shape[0])[:, None]
        part = np.argpartition(-by_item, top - 1, axis=1)[:, :top]
        order = np.argsort(-by_item[rows, part], axis=1, kind="stable")
        best = part[rows, order]  # (L_valid, top), largest contribution first
        contributors[valid, :top] = hist[best]
        weights[valid, :top] = by_item[rows, best]
    return ListExplanation(scores=scores, contributors=contributors, weights=weights, solver=solver)
