"""User-user nearest neighbours: people with similar tastes liked it.

A user's neighbours are the ``k_neighbours`` other users whose rows are most
cosine-similar to theirs (positive similarity only); the score of item ``i`` is
``s_ui = sum_{v in N(u)} cos(u, v) r_vi``. The model learns nothing beyond the
(row-normalised) training matrix: neighbourhoods are found at scoring time, a
block of users at a time (one sparse product, the top neighbours by
``argpartition``, one product with the matrix), so no loop per user.

Tags are exact: the score is the sum over the neighbours who interacted with
the item, and the tag says how many of them did (never who: they are other
data subjects). Erasure is exact by construction: dropping the subject's row
is the model fitted without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recommender.data import InteractionMatrix
from recommender.families._shared import StateModel, binarised, check_bool, check_int, explain_lists, popularity_of, score_blocks
from recommender.family import ErasureKind, Family, ForgetOutcome, ModelTag, register_family, without_users
from recommender.scoring import block_rows

__all__ = ["UserKNNModel"]


def _normalised(matrix: sp.csr_matrix) -> sp.csr_matrix:
    m = matrix.astype(np.float64).tocsr()
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    return sp.diags(1.0 / np.maximum(norms, 1e-12)) @ m


class UserKNNModel(StateModel):
    """User-user kNN with cosine similarity.

    Parameters
    ----------
    k_neighbours:
        Neighbours per user (the most similar users with a positive similarity).
    binary:
        Compare and sum the 0/1 pattern of the rows (the default) rather than their summed confidence weights.
    """

    name: ClassVar[str] = "user_knn"
    family: ClassVar[str] = "user_knn"
    inputs: ClassVar[frozenset[str]] = frozenset({"interactions"})
    erasure: ClassVar[ErasureKind] = ErasureKind.exact
    FORMAT: ClassVar[str] = "recgov.family.user_knn.v1"

    def __init__(self, k_neighbours: int = 50, binary: bool = True) -> None:
        self.k_neighbours = k_neighbours
        self.binary = binary

    def get_params(self) -> dict[str, Any]:
        return {"k_neighbours": self.k_neighbours, "binary": self.binary}

    def _check_params(self) -> None:
        check_int("UserKNNModel", "k_neighbours", self.k_neighbours, 1)
        check_bool("UserKNNModel", "binary", self.binary)

    def _values(self, matrix: sp.spmatrix) -> sp.csr_matrix:
        """The matrix neighbourhoods are found in and scores summed from: 0/1 with ``binary``, else the weights."""
        return binarised(matrix, bool(self.binary))

    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        self._check_params()
        self.normalised_ = _normalised(self._values(train.matrix))

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.normalised_ = _normalised(self._values(self.train_.matrix))

    def neighbour_weights(self, rows: np.ndarray) -> np.ndarray:
        """``(len(rows), n_users)`` dense: ``cos(u, v)`` for each row's top ``k_neighbours`` (positive) users, else 0."""
        rows = np.asarray(rows, dtype=np.int64)
        sims = np.asarray((self.normalised_[rows] @ self.normalised_.T).toarray())
        sims[np.arange(len(rows)), rows] = 0.0  # never one's own neighbour
        n_users = sims.shape[1]
        k = min(int(self.k_neighbours), n_users)
        if k < n_users:
            # Ties at the k-th place are broken by user row (stable sort of -sim), so a model refit on the same
            # rows picks the same neighbours.
            order = np.argsort(-sims, axis=1, kind="stable")[:, k:]
            np.put_along_axis(sims, order, 0.0, axis=1)
        sims[sims < 0] = 0.0
        return sims

    def _recommend_known(self, user_index: np.ndarray, k: int, *, filter_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        x = self._values(self.train_.matrix)
        users = np.asarray(user_index, dtype=np.int64)
        # the block holds both (rows x users) similarities and (rows x items) scores
        width = max(self.train_.n_items, self.train_.n_users)
        out_idx = np.full((len(users), k), -1, dtype=np.int64)
        out_val = np.full((len(users), k), np.nan, dtype=np.float32)
        step = max(1, block_rows(2 * width))
        for start in range(0, len(users), step):
            rows = users[start : start + step]
            out_idx[start : start + len(rows)], out_val[start : start + len(rows)] = score_blocks(
                lambda r: np.asarray((x.T @ self.neighbour_weights(r).T).T),
                rows,
                k,
                n_items=self.train_.n_items,
                seen=x if filter_seen else None,
            )
        return out_idx, out_val

    def explain(self, user_id: str, item_ids: Sequence[str]) -> list[list[ModelTag]]:
        """``similar_users``: how many of the user's neighbours interacted with the item (exact: the score is
        the sum of those neighbours' similarity-weighted interactions)."""

        def known(row: int, items: np.ndarray) -> list[list[ModelTag]]:
            weights = self.neighbour_weights(np.array([row]))[0]
            neighbours = np.flatnonzero(weights > 0)
            sub = self._values(self.train_.matrix[neighbours][:, items]).toarray()  # (|N|, L)
            liked = (sub > 0).sum(axis=0)
            scores = weights[neighbours] @ sub
            tags = []
            for j in range(len(items)):
                n = int(liked[j])
                evidence = {"neighbours": int(len(neighbours)), "neighbours_who_interacted": n, "score": round(float(scores[j]), 6)}
                if n:
                    text = f"{n} of the {len(neighbours)} people with tastes most similar to yours liked it"
                    tags.append([ModelTag("similar_users", text, (), True, evidence)])
                else:
                    text = f"None of the {len(neighbours)} people with tastes most similar to yours interacted with it; it fills the list"
                    tags.append([ModelTag("no_neighbour_signal", text, (), True, evidence)])
            return tags

        return explain_lists(self, user_id, item_ids, known)

    def forget(self, user_ids: Sequence[str]) -> ForgetOutcome:
        """Exact: the subjects' rows leave the matrix the neighbourhoods are found in."""
        self.check_fitted("forget")
        new_train, rows = without_users(self.train_, user_ids)
        ids = tuple(str(u) for u in self.train_.user_ids[rows])
        self.train_ = new_train
        self.popularity_ = popularity_of(new_train)
        self.normalised_ = _normalised(self._values(new_train.matrix))
        self._seal()
        return ForgetOutcome(ErasureKind.exact, ids, 0.0, False, {"method": "drop_rows"})


register_family(
    Family(
        name="user_knn",
        build=UserKNNModel,
        description="User-user kNN (cosine): 'people with similar tastes liked it' naming how many; exact erasure by dropping the row",
        inputs=UserKNNModel.inputs,
        erasure=UserKNNModel.erasure,
        default_params={"k_neighbours": 50, "binary": True},
        small_params={"k_neighbours": 10},
        broken_params={"k_neighbours": 0},
    )
)
