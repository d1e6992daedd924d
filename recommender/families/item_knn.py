"""Item-item kNN (:class:`recommender.baselines.ItemKNNRecommender`, ``implicit``) as a model family.

The score of item ``i`` is ``s_ui = sum_j r_uj S_ji`` over the user's history,
``S`` the (pruned) item-item similarity: each history item's term is exact,
and that is the tag. Erasure is exact: the similarity is recomputed from the
matrix without the subjects' rows, which is the model fitted without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recommender.baselines import ItemKNNRecommender
from recommender.families._shared import StateModel, check_choice, check_int, explain_history_batch, explain_lists, history_tags
from recommender.family import ErasureKind, Family, ForgetOutcome, ModelTag, csr_from_arrays, register_family

__all__ = ["ItemKNNModel"]


class ItemKNNModel(ItemKNNRecommender, StateModel):
    """:class:`~recommender.baselines.ItemKNNRecommender` with the family declarations."""

    family: ClassVar[str] = "item_knn"
    inputs: ClassVar[frozenset[str]] = frozenset({"interactions"})
    erasure: ClassVar[ErasureKind] = ErasureKind.exact
    FORMAT: ClassVar[str] = "recgov.family.item_knn.v1"

    def _check_params(self) -> None:
        check_choice("ItemKNNRecommender", "similarity", self.similarity, ("cosine", "tfidf", "bm25"))
        check_int("ItemKNNRecommender", "k_neighbours", self.k_neighbours, 1)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        s = sp.csr_matrix(self.model_.similarity)
        s.sort_indices()
        return {"n_items": int(s.shape[0])}, {"sim_indptr": s.indptr, "sim_indices": s.indices, "sim_data": s.data}

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        n = int(meta["n_items"])
        if n != self.train_.n_items:
            raise ValueError(f"a similarity matrix over {n} items for {self.train_.n_items} items")
        similarity = csr_from_arrays(arrays["sim_data"], arrays["sim_indices"], arrays["sim_indptr"], (n, n), name="the similarity matrix (sim_*)")
        self.model_ = SimpleNamespace(similarity=similarity)

    def explain(self, user_id: str, item_ids: Sequence[str]) -> list[list[ModelTag]]:
        """``because_you_interacted``: the terms ``r_uj S_ji`` of the score, exact."""

        def known(row: int, items: np.ndarray) -> list[list[ModelTag]]:
            hist = self.train_.matrix[row]
            sim = sp.csr_matrix(self.model_.similarity)[hist.indices][:, items].toarray()
            terms = (sim * hist.data[:, None].astype(np.float64)).T
            return [[tag] for tag in history_tags(terms, hist.indices, self.train_.item_ids)]

        return explain_lists(self, user_id, item_ids, known)

    def explain_batch(self, user_ids: Sequence[str], item_lists: Sequence[Sequence[str]]) -> list[list[list[ModelTag]]]:
        """``[explain(u, items) for u, items in zip(user_ids, item_lists)]``, vectorised over blocks of users."""
        similarity = sp.csc_matrix(self.model_.similarity)
        return explain_history_batch(
            self, user_ids, item_lists, lambda cols: similarity[:, cols].toarray(), lambda m: sp.csr_matrix(m, dtype=np.float64)
        )

    def forget(self, user_ids: Sequence[str]) -> ForgetOutcome:
        """Exact: the similarity is computed again without the subjects' rows."""
        return self._forget_by_refit(user_ids, "refit_similarity")


register_family(
    Family(
        name="item_knn",
        build=ItemKNNModel,
        description="Item-item kNN (implicit; cosine, tfidf or bm25): exact tags over history items; exact erasure by recomputing the similarity",
        inputs=ItemKNNModel.inputs,
        erasure=ItemKNNModel.erasure,
        default_params={"k_neighbours": 100, "similarity": "cosine"},
        small_params={"k_neighbours": 20},
        broken_params={"similarity": "jaccard"},
    )
)
