"""The interface every recommender in recgov follows, and the result it returns.

Models follow scikit-learn's and ``implicit``'s conventions: parameters are stored
unchanged in ``__init__``, ``fit`` returns ``self``, learned state ends in ``_``
and is set only by ``fit``, seeds are called ``random_state``, and using a model
before ``fit`` raises :class:`~recommender.errors.NotFittedError`.

A user unknown to the model (cold start) gets the popularity ranking of the
training data, and :attr:`RecommendationBatch.fallback` says so.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from recommender.data import InteractionMatrix
from recommender.errors import ConfigError, DataError, NotFittedError

__all__ = ["MAX_LIST_LENGTH", "MODEL_VALUE_BOUND", "BAD_WEIGHTS", "RecommendationBatch", "Recommender", "top_k_from_scores", "NOT_FITTED", "TOO_LONG"]

NOT_FITTED = "{name} is not fitted yet: call fit(train) before {method}()."

MAX_LIST_LENGTH = 1000
"""The longest list recgov evaluates, serves or writes: a pack's ``quality.k``, the command line's ``--k``,
:meth:`Recommender.recommend`'s and :func:`recommender.evaluate.evaluate_model`'s ``k``. (Candidate pools
for re-ranking are not lists a user asks for and may be longer.)"""

TOO_LONG = "The 'k' parameter of {func} must be an int in the range [1, {max}]. Got {got!r} instead."

MODEL_VALUE_BOUND = 1e9
"""The largest magnitude of a number in a model (its weights, factors, similarities and training weights).

Scores are sums of products of up to three of a model's numbers over a history and the factors (PureSVD's
``x V V^T``, EASE's ``x B``), ranked as float32 (largest 3.4e38): within this bound no score overflows, while
one number near the float limits (``1e300``, finite, so a content address recomputed over it still matches)
turns a score into ``inf`` or ``NaN`` and drops items from lists. Fitted numbers are many orders of magnitude
below it; interaction weights (summed event weights) are far below it too."""

BAD_WEIGHTS = (
    "cannot fit {name}: {n} of {nnz} interaction weight(s) are not finite or lie beyond +/-{bound:g} (largest "
    "magnitude {largest:.3g}); check the event weights and the value column"
)
"""The error of a fit on a training matrix with a weight no model can score with (:data:`MODEL_VALUE_BOUND`)."""


@dataclass(frozen=True)
class RecommendationBatch:
    """Ranked lists for several users.

    Attributes
    ----------
    user_ids:
        ``(n,)`` the users, as given.
    item_indices:
        ``(n, k)`` column indices into the training matrix, best first; ``-1``
        pads a list that has fewer than ``k`` items.
    item_ids:
        ``(n, k)`` the item ids (``None`` where padded).
    scores:
        ``(n, k)`` float32 scores (NaN where padded). Comparable within a list only.
    fallback:
        ``(n,)`` True where the user was unknown to the model and got the
        popularity ranking instead.
    model:
        The name of the model that produced the lists.
    """

    user_ids: np.ndarray
    item_indices: np.ndarray
    item_ids: np.ndarray
    scores: np.ndarray
    fallback: np.ndarray
    model: str

    def __len__(self) -> int:
        return len(self.user_ids)

    def as_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per user: ``user_id``, ``items``, ``scores``, ``fallback``."""
        out = []
        for row in range(len(self.user_ids)):
            mask = self.item_indices[row] >= 0
            out.append(
                {
                    "user_id": str(self.user_ids[row]),
                    "items": [str(i) for i in self.item_ids[row][mask]],
                    "scores": [round(float(s), 6) for s in self.scores[row][mask]],
                    "fallback": "popularity" if bool(self.fallback[row]) else None,
                }
            )
        return out


def top_k_from_scores(scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of each row of a dense score matrix.

    ``exclude`` (same shape, sparse) marks entries that must not be returned,
    typically the items a user already has. Rows with fewer than ``k`` eligible
    items are padded with index -1 and score NaN.
    """
    scores = np.array(scores, dtype=np.float32, copy=True)
    n_rows, n_cols = scores.shape
    if exclude is not None and exclude.nnz:
        coo = exclude.tocoo()
        scores[coo.row, coo.col] = -np.inf
    k_eff = min(k, n_cols)
    if k_eff == 0:
        return np.full((n_rows, k), -1, dtype=np.int64), np.full((n_rows, k), np.nan, dtype=np.float32)
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    val = np.take_along_axis(part_scores, order, axis=1)
    invalid = ~np.isfinite(val)
    idx[invalid] = -1
    val[invalid] = np.nan
    if k_eff < k:
        idx = np.hstack([idx, np.full((n_rows, k - k_eff), -1, dtype=np.int64)])
        val = np.hstack([val, np.full((n_rows, k - k_eff), np.nan, dtype=np.float32)])
    return idx, val


class Recommender(ABC):
    """Base class of recgov's recommenders.

    Subclasses implement :meth:`_fit` and :meth:`_recommend_known`; this class
    handles id mapping, cold-start fallback and the not-fitted error.
    """

    name: ClassVar[str] = "recommender"

    train_: InteractionMatrix
    popularity_: np.ndarray

    # -- to implement ---------------------------------------------------------
    @abstractmethod
    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        """Learn from ``train`` (set attributes ending in ``_``)."""

    @abstractmethod
    def _recommend_known(
        self, user_index: np.ndarray, k: int, *, filter_seen: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(indices, scores)`` for users known to the model (row indices)."""

    @abstractmethod
    def get_params(self) -> dict[str, Any]:
        """The constructor parameters, as given."""

    # -- shared ---------------------------------------------------------------
    def fit(self, train: InteractionMatrix, *, show_progress: bool = False) -> Self:
        """Learn from ``train`` and return ``self``."""
        if train.n_users == 0 or train.n_items == 0 or train.nnz == 0:
            raise ConfigError(
                f"cannot fit {self.name} on an empty interaction matrix "
                f"({train.n_users} users, {train.n_items} items, {train.nnz} interactions)"
            )
        data = train.matrix.data
        # min and max first: no temporary the size of the data (tens of millions of weights) when all is well;
        # a NaN makes both NaN and fails the comparisons
        if len(data) and not (-MODEL_VALUE_BOUND <= float(data.min()) and float(data.max()) <= MODEL_VALUE_BOUND):
            weights = np.abs(np.asarray(data, dtype=np.float64))
            bad = ~(weights <= MODEL_VALUE_BOUND)  # NaN compares False: refused with the infinite and the huge
            largest = float(np.nanmax(weights)) if not np.isnan(weights).all() else float("nan")
            raise DataError(BAD_WEIGHTS.format(name=self.name, n=int(bad.sum()), nnz=len(weights), bound=MODEL_VALUE_BOUND, largest=largest))
        self.popularity_ = np.asarray((train.matrix > 0).sum(axis=0)).ravel().astype(np.float64)
        self._fit(train, show_progress=show_progress)
        self.train_ = train
        return self

    def check_fitted(self, method: str = "recommend") -> None:
        """Raise :class:`NotFittedError` unless :meth:`fit` has run."""
        if not hasattr(self, "train_"):
            raise NotFittedError(NOT_FITTED.format(name=type(self).__name__, method=method))

    def recommend_index(
        self, user_index: np.ndarray, k: int = 10, *, filter_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-``k`` lists by row index; ``-1`` marks an unknown user.

        Returns ``(item_indices, scores, fallback)`` with shapes ``(n, k)``,
        ``(n, k)`` and ``(n,)``.
        """
        self.check_fitted()
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"The 'k' parameter of recommend must be an int in the range [1, inf). Got {k!r} instead.")
        user_index = np.asarray(user_index, dtype=np.int64)
        n = len(user_index)
        idx = np.full((n, k), -1, dtype=np.int64)
        scores = np.full((n, k), np.nan, dtype=np.float32)
        fallback = self.fallback_mask(user_index)
        known = ~fallback
        if known.any():
            idx_k, sc_k = self._recommend_known(user_index[known], k, filter_seen=filter_seen)
            idx[known], scores[known] = idx_k, sc_k
        if fallback.any():
            pop_idx, pop_scores = top_k_from_scores(self.popularity_[None, :], k)
            idx[fallback], scores[fallback] = pop_idx[0], pop_scores[0]
        return idx, scores, fallback

    def fallback_mask(self, user_index: np.ndarray) -> np.ndarray:
        """True for the rows served the popularity fallback: users unknown to the model (``-1``) and known users
        with an empty history (all their interactions removed, or a user row without any), for whom a model has
        no personal signal and would otherwise rank arbitrarily."""
        user_index = np.asarray(user_index, dtype=np.int64)
        indptr = self.train_.matrix.tocsr().indptr
        row = np.maximum(user_index, 0)
        return (user_index < 0) | (indptr[row + 1] == indptr[row])

    def recommend(
        self, user_ids: str | Sequence[str] | np.ndarray, k: int = 10, *, filter_seen: bool = True
    ) -> RecommendationBatch:
        """Top-``k`` lists for ``user_ids`` (one id or many).

        Users unknown to the model, and known users with an empty history, get the popularity ranking;
        the batch's ``fallback`` flag says which.
        """
        self.check_fitted()
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= MAX_LIST_LENGTH:
            raise ConfigError(TOO_LONG.format(func="recommend", max=MAX_LIST_LENGTH, got=k))
        ids = np.atleast_1d(np.asarray(user_ids, dtype=object))
        idx, scores, fallback = self.recommend_index(self.train_.user_index(ids), k, filter_seen=filter_seen)
        item_ids = np.where(idx >= 0, self.train_.item_ids[np.maximum(idx, 0)], None)
        return RecommendationBatch(ids, idx, item_ids, scores, fallback, self.name)

    def similar_items(self, item_id: str, k: int = 10) -> RecommendationBatch:
        """Items like ``item_id``; an unknown item gets the most popular items (fallback)."""
        self.check_fitted("similar_items")
        col = int(self.train_.item_index([item_id])[0])
        if col < 0:
            idx, scores = top_k_from_scores(self.popularity_[None, :], k)
            fallback = np.array([True])
        else:
            idx, scores = self._similar_known(col, k)
            fallback = np.array([False])
        item_ids = np.where(idx >= 0, self.train_.item_ids[np.maximum(idx, 0)], None)
        return RecommendationBatch(np.array([item_id], dtype=object), idx, item_ids, scores, fallback, self.name)

    def _similar_known(self, col: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Default item similarity: cosine of the item columns of the training matrix."""
        m = self.train_.matrix.tocsc()
        target = m[:, col]
        dots = np.asarray((m.T @ target).todense()).ravel()
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=0)).ravel())
        sims = dots / np.maximum(norms * max(float(norms[col]), 1e-12), 1e-12)
        sims[col] = -np.inf
        return top_k_from_scores(sims[None, :], k)
