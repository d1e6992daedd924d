"""Explanation tags: why each served item is there.

For ALS the reason is exact (Hu, Koren and Volinsky 2008, section 5, and
``implicit``'s ``explain``): with ``W_u = (Y^T C_u Y + lambda I)^-1`` the score of
item ``i`` decomposes over the user's history as
``s_ui = sum_j (y_i^T W_u y_j) c_uj``, so each past item ``j`` contributes its
own term. ``implicit`` computes it one item at a time; here one Cholesky
factorization per user serves the whole list: ``W_u Y_L^T`` is solved for all
list items at once and the contributions of every history item to every list
item come out of a single matrix product.

Other reasons are tags too: the popularity fallback ("popular in your context",
"not personalized"), re-ranking moves ("shown for diversity", "from an
under-exposed provider") and exploration.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import scipy.linalg
import scipy.linalg.lapack

__all__ = ["TagKind", "Tag", "ListExplanation", "explain_als_list", "regularized_gram", "because_tags", "fallback_tags", "TAG_TEXT"]


class TagKind(str, Enum):
    """Why an item is in a list."""

    because_you_interacted = "because_you_interacted"
    popular_in_context = "popular_in_context"
    not_personalized = "not_personalized"
    diversity = "diversity"
    under_exposed_provider = "under_exposed_provider"
    calibration = "calibration"
    long_tail = "long_tail"
    exposure_cap = "exposure_cap"
    exploration = "exploration"
    provider_calibration = "provider_calibration"


TAG_TEXT: dict[TagKind, str] = {
    TagKind.because_you_interacted: "Because you interacted with {items}",
    TagKind.popular_in_context: "Popular in your context",
    TagKind.not_personalized: "Not personalized: chosen without your history",
    TagKind.diversity: "Shown for diversity",
    TagKind.under_exposed_provider: "From an under-exposed provider",
    TagKind.calibration: "Shown to match the mix of your interests",
    TagKind.provider_calibration: "Shown to match the mix of providers you engage with",
    TagKind.long_tail: "A less popular item you may not have seen",
    TagKind.exposure_cap: "Shown to keep exposure balanced across providers",
    TagKind.exploration: "Exploratory: shown to learn what you like",
}
"""Plain-language text of each tag (``{items}`` is filled with item ids)."""


@dataclass(frozen=True)
class Tag:
    """One reason for one served item."""

    kind: TagKind
    text: str
    items: tuple[str, ...] = ()
    """For ``because_you_interacted``: the history items that contributed most."""
    weights: tuple[float, ...] = ()
    """Their contributions to the score (same order as ``items``)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "text": self.text}
        if self.items:
            out["items"] = list(self.items)
            out["weights"] = [round(w, 6) for w in self.weights]
        return out


@dataclass(frozen=True)
class ListExplanation:
    """The exact ALS decomposition for one user's list."""

    scores: np.ndarray
    """(L,) the total score of each list item (sum of the contributions)."""
    contributors: np.ndarray
    """(L, n) history item indices contributing most to each list item (-1 padding)."""
    weights: np.ndarray
    """(L, n) their contributions, best first."""


_POTRF, _POTRS = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potrs"), dtype=np.float64)


def regularized_gram(yty: np.ndarray, regularization: float) -> np.ndarray:
    """``Y^T Y + regularization * I`` as float64: the part of every user's system that does not
    depend on the user (computed once per model and passed to :func:`explain_als_list`)."""
    yty = np.asarray(yty, dtype=np.float64)
    return yty + float(regularization) * np.eye(yty.shape[0])


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
    if info != 0:
        raise np.linalg.LinAlgError(f"explain_als_list: the user's system is not positive definite (LAPACK potrf info {info})")
    items = np.asarray(list_items, dtype=np.int64)
    valid = items >= 0
    L = len(items)
    weighted, info = _POTRS(factor, Y[items[valid]].astype(np.float64).T, lower=False)  # (f, L_valid)
    if info != 0:
        raise np.linalg.LinAlgError(f"explain_als_list: the solve failed (LAPACK potrs info {info})")
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
    return ListExplanation(scores=scores, contributors=contributors, weights=weights)


def because_tags(explanation: ListExplanation, item_ids: np.ndarray) -> list[Tag]:
    """One ``because_you_interacted`` tag per list item, naming its top contributors."""
    tags = []
    for row in range(len(explanation.scores)):
        mask = explanation.contributors[row] >= 0
        ids = tuple(str(item_ids[i]) for i in explanation.contributors[row][mask])
        weights = tuple(float(w) for w in explanation.weights[row][mask])
        text = TAG_TEXT[TagKind.because_you_interacted].format(items=", ".join(ids) or "your history")
        tags.append(Tag(TagKind.because_you_interacted, text, ids, weights))
    return tags


def fallback_tags(n: int, *, profiling_allowed: bool) -> list[Tag]:
    """Tags for a non-personalized list: popular in context, and why it is not personalized."""
    if profiling_allowed:
        return [Tag(TagKind.popular_in_context, TAG_TEXT[TagKind.popular_in_context]) for _ in range(n)]
    return [Tag(TagKind.not_personalized, TAG_TEXT[TagKind.not_personalized]) for _ in range(n)]
