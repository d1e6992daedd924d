"""Baselines behind the same interface as ALS: popularity, random, item-item kNN.

Every model worth deploying must beat the first two; item-kNN (``implicit``'s
nearest-neighbour recommenders) is the classic strong neighbourhood baseline.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
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

__all__ = ["PopularityRecommender", "RandomRecommender", "ItemKNNRecommender"]


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
        scores = np.broadcast_to(self.popularity_.astype(np.float32), (len(user_index), self.popularity_.shape[0]))
        exclude = self.train_.matrix[user_index] if filter_seen else None
        return top_k_from_scores(scores, k, exclude)

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

    def __init__(self, random_state: int | None = 0) -> None:
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        return {"random_state": self.random_state}

    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        self.rng_ = np.random.default_rng(self.random_state)

    def _recommend_known(self, user_index: np.ndarray, k: int, *, filter_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        # One stream per user (seed, user row) so that a user's list does not
        # depend on which other users are in the batch.
        n_items = self.train_.n_items
        seed = 0 if self.random_state is None else int(self.random_state)
        scores = np.empty((len(user_index), n_items), dtype=np.float32)
        for row, u in enumerate(user_index):
            scores[row] = np.random.default_rng([seed, int(u)]).random(n_items, dtype=np.float32)
        exclude = self.train_.matrix[user_index] if filter_seen else None
        return top_k_from_scores(scores, k, exclude)


_KNN = {"cosine": CosineRecommender, "tfidf": TFIDFRecommender, "bm25": BM25Recommender}


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
        if not isinstance(self.k_neighbours, int) or self.k_neighbours < 1:
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
            weighted = normalize(counts.T).T
        elif self.similarity == "tfidf":
            weighted = normalize(tfidf_weight(counts.T)).T
        else:
            weighted = bm25_weight(counts.T, model.K1, model.B).T
        ItemItemRecommender.fit(model, weighted.tocsr(), show_progress=show_progress)
        self.model_ = model

    def _recommend_known(self, user_index: np.ndarray, k: int, *, filter_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        rows = self.train_.matrix[user_index]
        # implicit's kNN scores = user row x item-item similarity; computing it as one
        # sparse product keeps every user of the batch in a single vectorized step.
        scores = (rows @ self.model_.similarity).toarray()
        exclude = rows if filter_seen else None
        # Items with no similarity to anything in the history score 0; they may
        # still fill a short list, after every item with a positive score.
        return top_k_from_scores(scores, k, exclude)

    def _similar_known(self, col: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims = self.model_.similarity[col].toarray().astype(np.float32)
        sims[0, col] = -np.inf
        return top_k_from_scores(sims, k)
