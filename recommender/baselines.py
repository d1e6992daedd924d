"""Baselines behind the same interface as ALS: popularity, random, item-item kNN.

Every model worth deploying must beat the first two; item-kNN (``implicit``'s
nearest-neighbour recommenders) is the classic strong neighbourhood baseline.

The baselines rank every test user of an offline evaluation, so at MovieLens-20M's
shape (138,000 users x 27,000 items) their lists must not cost a dense
user x item score matrix per user or a Python loop per user:

* popularity is one ranking for everyone: each user's list is the first ``k``
  items of the global order that the user has not seen, found among the first
  ``k + (most items seen by a user of the block)`` items of that order only;
* random draws each user's items from the user's own counter-based stream
  (SplitMix64, keyed by the seed and the user's row) and keeps the first ``k``
  distinct unseen ones: a uniformly random ordered sample of the unseen items,
  the same for a user whatever other users are ranked with it, with no
  generator object per user;
* item-kNN scores a block of users with one sparse product (bounded by
  :func:`recommender.scoring.block_rows`), masks seen items by index arithmetic
  and picks the top ``k`` with :func:`recommender.scoring.top_k_rows`.

Ties: within a list, equal scores are ordered by item index (ascending); which of
several items tied at the ``k``-th place enters the list is
:func:`numpy.argpartition`'s choice, as it was before (popularity breaks every tie
by item index).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import (
    BM25Recommender,
    CosineRecommender,
    ItemItemRecommender,
    TFIDFRecommender,
    bm25_weight,
    normalize,
    tfidf_weight,
)

from recommender.base import Recommender, top_k_from_scores
from recommender.data import InteractionMatrix
from recommender.errors import ConfigError
from recommender.scoring import block_rows, mask_seen, top_k_rows

__all__ = ["PopularityRecommender", "RandomRecommender", "ItemKNNRecommender"]


def _seen_codes(seen: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """Sorted ``j * n_items + item`` of every stored cell of ``seen``'s rows ``rows`` (block row ``j``), no loop per user."""
    starts = seen.indptr[rows]
    counts = seen.indptr[rows + 1] - starts
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    block_of = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    cols = seen.indices[np.repeat(starts, counts) + offsets].astype(np.int64)
    return np.sort(block_of * seen.shape[1] + cols)


def _is_seen(codes: np.ndarray, seen_codes: np.ndarray) -> np.ndarray:
    """Whether each of ``codes`` (any shape) is among the sorted ``seen_codes``."""
    if len(seen_codes) == 0:
        return np.zeros(codes.shape, dtype=bool)
    at = np.minimum(np.searchsorted(seen_codes, codes), len(seen_codes) - 1)
    return seen_codes[at] == codes


def _first_k(chosen: np.ndarray, values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first ``k`` entries of ``values`` where ``chosen`` (in column order), and how many there were.

    Returns ``(out, found)``: ``out`` is ``(rows, k)`` padded with ``-1``.
    """
    n_rows = chosen.shape[0]
    rank = np.cumsum(chosen, axis=1)
    keep = chosen & (rank <= k)
    found = np.minimum(rank[:, -1] if chosen.shape[1] else np.zeros(n_rows, dtype=np.int64), k)
    out = np.full((n_rows, k), -1, dtype=np.int64)
    r, c = np.nonzero(keep)
    out[r, rank[r, c] - 1] = values[r, c]
    return out, found


# SplitMix64 (Steele, Lea and Flood 2014): a 64-bit counter pushed through a finalising mix; each output of a
# stream is a function of its key and its position alone, so a block of users draws all their numbers at once.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_FULL_RANKING_STREAM = np.uint64(0x5DEECE66D)
"""Added to a user's key for the draws of the full-catalogue fallback, so they are independent of the first draws."""


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function (uint64 arithmetic wraps modulo 2**64)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _user_keys(seed: int, users: np.ndarray) -> np.ndarray:
    """Each user's stream key: SplitMix64 of the seed's key plus the user's row."""
    with np.errstate(over="ignore"):
        seed_key = _mix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) + _GOLDEN)
        return _mix64(seed_key + (users.astype(np.uint64) + np.uint64(1)) * _GOLDEN)


def _uniform(keys: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``(len(keys), len(positions))`` uniforms in [0, 1): output ``positions`` of each key's SplitMix64 stream (53 bits)."""
    with np.errstate(over="ignore"):
        z = keys[:, None] + (positions.astype(np.uint64)[None, :] + np.uint64(1)) * _GOLDEN
        return (_mix64(z) >> np.uint64(11)).astype(np.float64) * 2.0**-53


class PopularityRecommender(Recommender):
    """Ranks items by the number of training users who interacted with them.

    This is also the non-personalized ranking every other model falls back to
    for cold-start users.
    """

    name: ClassVar[str] = "popularity"

    def get_params(self) -> dict[str, Any]:
        return {}

    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        return None

    def _recommend_known(self, user_index: np.ndarray, k: int, *, filter_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        """The first ``k`` unseen items of the popularity order (count descending, then item index ascending).

        Only the first ``k + s`` items of the order can hold a user's list, ``s``
        the most items a user of the batch has seen: the seen ones among them are
        found by rank (no dense user x item matrix).
        """
        popularity = self.popularity_.astype(np.float32)
        order = np.argsort(-popularity, kind="stable")
        n_items = len(order)
        users = np.asarray(user_index, dtype=np.int64)
        k_eff = min(k, n_items)
        idx = np.full((len(users), k), -1, dtype=np.int64)
        val = np.full((len(users), k), np.nan, dtype=np.float32)
        if len(users) == 0 or k_eff == 0:
            return idx, val
        if not filter_seen:
            idx[:, :k_eff] = order[:k_eff]
            val[:, :k_eff] = popularity[order[:k_eff]]
            return idx, val
        seen = self.train_.matrix
        rank_of = np.empty(n_items, dtype=np.int64)
        rank_of[order] = np.arange(n_items)
        counts = np.diff(seen.indptr)[users]
        step = max(1, block_rows(n_items))
        for start in range(0, len(users), step):
            rows = users[start : start + step]
            width = int(min(n_items, k_eff + counts[start : start + step].max(initial=0)))
            codes = _seen_codes(seen, rows)
            block, ranks = np.divmod(codes, n_items)
            ranks = rank_of[ranks]
            blocked = np.zeros((len(rows), width), dtype=bool)
            near = ranks < width
            blocked[block[near], ranks[near]] = True
            picked, _ = _first_k(~blocked, np.broadcast_to(order[:width], blocked.shape), k_eff)
            idx[start : start + len(rows), :k_eff] = picked
        valid = idx >= 0
        val[valid] = popularity[idx[valid]]
        return idx, val

    def _similar_known(self, col: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self.popularity_.astype(np.float32).copy()
        scores[col] = -np.inf
        return top_k_from_scores(scores[None, :], k)


class RandomRecommender(Recommender):
    """Ranks items uniformly at random (seeded): the floor any model must clear.

    Parameters
    ----------
    random_state:
        Seed of the generator; the same seed gives the same lists.
    """

    name: ClassVar[str] = "random"
    DRAWS_PER_ITEM: ClassVar[int] = 4
    """Draws per list place before a user falls back to a score per item (enough unless most items are seen)."""

    def __init__(self, random_state: int | None = 0) -> None:
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        return {"random_state": self.random_state}

    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        self.rng_ = np.random.default_rng(self.random_state)

    def _recommend_known(self, user_index: np.ndarray, k: int, *, filter_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        """A uniformly random ordered sample of ``k`` unseen items per user, from the user's own stream.

        User ``u``'s stream is SplitMix64 keyed by ``(random_state, u)``: its
        ``j``-th draw is a function of those and ``j`` alone, so a user's list
        does not depend on which other users are ranked with it, and a block of
        users draws all its numbers in one vectorised step. Each user takes
        :data:`DRAWS_PER_ITEM` ``* k + 16`` items uniformly with replacement and
        keeps the first ``k`` distinct unseen ones (sequential rejection: each
        new item is uniform over the unseen items not yet in the list). A user
        whose draws hold fewer (one who has seen most of the catalogue, or has
        fewer than ``k`` unseen items) is ranked instead by a uniform score per
        item from a second, independent part of the stream, seen items masked.
        Either way the list is uniform over ordered samples of the unseen items.

        Scores are ``1 - position / k`` (1.0 first): a random list's order is all it says.
        """
        users = np.asarray(user_index, dtype=np.int64)
        n_items = self.train_.n_items
        k_eff = min(k, n_items)
        idx = np.full((len(users), k), -1, dtype=np.int64)
        val = np.full((len(users), k), np.nan, dtype=np.float32)
        if len(users) == 0 or k_eff == 0:
            return idx, val
        seed = 0 if self.random_state is None else int(self.random_state)
        keys = _user_keys(seed, users)
        seen = self.train_.matrix if filter_seen else None
        n_draws = self.DRAWS_PER_ITEM * k_eff + 16
        positions = np.arange(n_draws)
        step = max(1, min(len(users), (1 << 22) // n_draws))
        short: list[np.ndarray] = []
        for start in range(0, len(users), step):
            rows = users[start : start + step]
            draws = np.minimum((_uniform(keys[start : start + step], positions) * n_items).astype(np.int64), n_items - 1)
            codes = np.arange(len(rows), dtype=np.int64)[:, None] * n_items + draws
            first = np.zeros(codes.size, dtype=bool)
            first[np.unique(codes.ravel(), return_index=True)[1]] = True  # first draw of each item, per user
            usable = first.reshape(codes.shape)
            if seen is not None:
                usable &= ~_is_seen(codes, _seen_codes(seen, rows))
            picked, found = _first_k(usable, draws, k_eff)
            idx[start : start + len(rows), :k_eff] = picked
            short.append(start + np.flatnonzero(found < k_eff))
        redo = np.concatenate(short)
        if len(redo):
            full_keys = keys[redo] + _FULL_RANKING_STREAM
            all_items = np.arange(n_items)
            chunk = max(1, block_rows(2 * n_items))  # float64 scores
            for start in range(0, len(redo), chunk):
                part = redo[start : start + chunk]
                scores = _uniform(full_keys[start : start + chunk], all_items)
                if seen is not None:
                    mask_seen(scores, seen, users[part])
                idx[part, :k_eff] = top_k_rows(scores, k_eff)[0]
        valid = idx >= 0
        val[valid] = np.broadcast_to(1.0 - np.arange(k, dtype=np.float32) / k_eff, idx.shape)[valid]
        return idx, val


_KNN = {"cosine": CosineRecommender, "tfidf": TFIDFRecommender, "bm25": BM25Recommender}


def _power_of_two_scaled_rows(matrix: sp.spmatrix) -> sp.csr_matrix:
    """``matrix`` with each row times the power of two that brings its largest magnitude into [0.5, 1).

    Cosine ignores a row's scale, and a power of two changes no bit of a normalised row; but the squares of weights
    under about 1e-23 vanish in float32 (implicit's ``normalize`` squares before it sums in float64), the item's
    norm is 0, its similarities NaN, and every list came back empty on such weights."""
    x = sp.csr_matrix(matrix, copy=True)
    peak = np.zeros(x.shape[0], dtype=np.float64)
    counts = np.diff(x.indptr)
    rows = np.flatnonzero(counts)
    peak[rows] = np.maximum.reduceat(np.abs(x.data.astype(np.float64)), x.indptr[rows]) if len(rows) else peak[rows]
    _, exponent = np.frexp(peak)
    x.data = np.ldexp(x.data, -np.repeat(exponent, counts).astype(np.int32)).astype(x.dtype, copy=False)
    return x


class ItemKNNRecommender(Recommender):
    """Item-item nearest neighbours from ``implicit.nearest_neighbours``.

    Parameters
    ----------
    k_neighbours:
        How many neighbours each item keeps (implicit's ``K``).
    similarity:
        ``"cosine"``, ``"tfidf"`` or ``"bm25"``.
    """

    name: ClassVar[str] = "item_knn"

    def __init__(self, k_neighbours: int = 100, similarity: Literal["cosine", "tfidf", "bm25"] = "cosine") -> None:
        self.k_neighbours = k_neighbours
        self.similarity = similarity

    def get_params(self) -> dict[str, Any]:
        return {"k_neighbours": self.k_neighbours, "similarity": self.similarity}

    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        if self.similarity not in _KNN:
            raise ConfigError(
                f"The 'similarity' parameter of ItemKNNRecommender must be one of "
                f"{sorted(_KNN)}. Got {self.similarity!r} instead."
            )
        if isinstance(self.k_neighbours, bool) or not isinstance(self.k_neighbours, int) or self.k_neighbours < 1:
            raise ConfigError(
                f"The 'k_neighbours' parameter of ItemKNNRecommender must be an int in the range [1, inf). "
                f"Got {self.k_neighbours!r} instead."
            )
        model = _KNN[self.similarity](K=self.k_neighbours)
        counts = train.matrix
        # The same weighting implicit's subclasses apply in their fit, handed to
        # ItemItemRecommender.fit as CSR: implicit's own subclasses pass COO and
        # then warn about the conversion on every fit.
        if self.similarity == "cosine":
            weighted = normalize(_power_of_two_scaled_rows(counts.T)).T
        elif self.similarity == "tfidf":
            weighted = normalize(tfidf_weight(counts.T)).T
        else:
            weighted = bm25_weight(counts.T, model.K1, model.B).T
        ItemItemRecommender.fit(model, weighted.tocsr(), show_progress=show_progress)
        self.model_ = model

    def _recommend_known(self, user_index: np.ndarray, k: int, *, filter_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        """implicit's kNN scores (user row x item-item similarity), top ``k``, block by block.

        One sparse product per block of users (at most
        :func:`recommender.scoring.block_rows` users, so the block's dense scores
        stay within its memory budget), seen items masked by index arithmetic,
        the top ``k`` picked among each row's best column groups.
        """
        users = np.asarray(user_index, dtype=np.int64)
        matrix = self.train_.matrix
        similarity = self.model_.similarity
        n_items = matrix.shape[1]
        idx = np.full((len(users), k), -1, dtype=np.int64)
        val = np.full((len(users), k), np.nan, dtype=np.float32)
        # The product is float64 (implicit's similarity is), ranked as it is: a float32 copy of
        # every block would cost more than the product itself. The block holds 64 MB of float64.
        step = max(1, block_rows(2 * n_items))
        for start in range(0, len(users), step):
            rows = users[start : start + step]
            scores = (matrix[rows] @ similarity).toarray()
            if filter_seen:
                mask_seen(scores, matrix, rows)
            # Items with no similarity to anything in the history score 0; they may
            # still fill a short list, after every item with a positive score.
            idx[start : start + len(rows)], val[start : start + len(rows)] = top_k_rows(scores, k)
        return idx, val

    def _similar_known(self, col: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims = self.model_.similarity[col].toarray().astype(np.float32)
        sims[0, col] = -np.inf
        return top_k_from_scores(sims, k)
