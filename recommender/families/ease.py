"""EASE: the closed-form item-item linear model (Steck 2019, "Embarrassingly Shallow Autoencoders").

With ``G = X^T X`` and ``P = (G + lambda I)^-1`` the weights are
``B = I - P diag(1 / diag(P))``, i.e. ``B_ij = -P_ij / P_jj`` off the diagonal and
``B_jj = 0``: each item is predicted from the other items only. A user's scores
are ``x_u B``, so the score of item ``i`` decomposes exactly over the history:
``s_ui = sum_j x_uj B_ji``. That is the tag.

Erasure is exact: the subject's row ``x_s`` enters only through
``G = sum_u x_u^T x_u``; the model keeps ``G``, subtracts ``x_s^T x_s`` and
solves again, which is the model fitted without the subject (bit for bit on
integer-valued data, where the sums are exact).

Memory: ``G``, ``P`` and ``B`` are dense ``n_items x n_items`` float64 (22 MB
each at 1,682 items; 3.2 GB at 20,000): EASE is for catalogues of up to a few
tens of thousands of items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.linalg

from recommender.data import InteractionMatrix
from recommender.errors import ConfigError
from recommender.families._shared import StateModel, check_number, explain_lists, history_tags, popularity_of, score_blocks
from recommender.family import ErasureKind, Family, ForgetOutcome, ModelTag, register_family, without_users

__all__ = ["EASEModel", "ease_weights"]


def ease_weights(gram: np.ndarray, regularization: float) -> np.ndarray:
    """Steck's closed form: ``B = I - P diag(1/diag(P))`` with ``P = (G + lambda I)^-1``, zero diagonal."""
    a = np.array(gram, dtype=np.float64, copy=True)
    a[np.diag_indices_from(a)] += float(regularization)
    try:
        p = scipy.linalg.cho_solve(scipy.linalg.cho_factor(a, lower=False, check_finite=True), np.eye(len(a)))
    except np.linalg.LinAlgError as err:
        raise ConfigError(f"EASE: X^T X + {regularization} I is not positive definite; raise 'regularization' ({err})") from err
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


class EASEModel(StateModel):
    """EASE (Steck 2019): ``B`` from the item Gram matrix in closed form; scores ``x_u B``.

    Parameters
    ----------
    regularization:
        Steck's ``lambda``, the L2 weight added to the diagonal of ``X^T X`` (> 0).
    """

    name: ClassVar[str] = "ease"
    family: ClassVar[str] = "ease"
    inputs: ClassVar[frozenset[str]] = frozenset({"interactions"})
    erasure: ClassVar[ErasureKind] = ErasureKind.exact
    FORMAT: ClassVar[str] = "recgov.family.ease.v1"

    def __init__(self, regularization: float = 500.0) -> None:
        self.regularization = regularization

    def get_params(self) -> dict[str, Any]:
        return {"regularization": self.regularization}

    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        check_number("EASEModel", "regularization", self.regularization, 0, inclusive=False)
        x = train.matrix.astype(np.float64)
        self.gram_ = np.asarray((x.T @ x).toarray())
        self.weights_ = ease_weights(self.gram_, self.regularization)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"weights": self.weights_}

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.weights_ = arrays["weights"]
        x = self.train_.matrix.astype(np.float64)
        self.gram_ = np.asarray((x.T @ x).toarray())

    def _recommend_known(self, user_index: np.ndarray, k: int, *, filter_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        x = self.train_.matrix
        return score_blocks(
            lambda rows: x[rows] @ self.weights_, user_index, k, n_items=self.train_.n_items, seen=x if filter_seen else None
        )

    def _similar_known(self, col: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        from recommender.base import top_k_from_scores

        sims = self.weights_[col].astype(np.float32).copy()
        sims[col] = -np.inf
        return top_k_from_scores(sims[None, :], k)

    def explain(self, user_id: str, item_ids: Sequence[str]) -> list[list[ModelTag]]:
        """``because_you_interacted``: the terms ``x_uj B_ji`` of the score, exact."""

        def known(row: int, items: np.ndarray) -> list[list[ModelTag]]:
            hist = self.train_.matrix[row]
            terms = (self.weights_[hist.indices][:, items] * hist.data[:, None].astype(np.float64)).T
            return [[tag] for tag in history_tags(terms, hist.indices, self.train_.item_ids)]

        return explain_lists(self, user_id, item_ids, known)

    def forget(self, user_ids: Sequence[str]) -> ForgetOutcome:
        """Exact: subtract the subjects' rows from ``X^T X`` and solve again."""
        self.check_fitted("forget")
        new_train, rows = without_users(self.train_, user_ids)
        removed = self.train_.matrix[rows].astype(np.float64)
        self.gram_ = self.gram_ - np.asarray((removed.T @ removed).toarray())
        self.weights_ = ease_weights(self.gram_, self.regularization)
        ids = tuple(str(u) for u in self.train_.user_ids[rows])
        self.train_ = new_train
        self.popularity_ = popularity_of(new_train)
        self._seal()
        return ForgetOutcome(ErasureKind.exact, ids, 0.0, False, {"method": "gram_downdate", "interactions_removed": int(removed.nnz)})


register_family(
    Family(
        name="ease",
        build=EASEModel,
        description="EASE (Steck 2019): closed-form item-item weights; exact tags over history items; exact erasure by downdating X^T X",
        inputs=EASEModel.inputs,
        erasure=EASEModel.erasure,
        default_params={"regularization": 500.0},
        small_params={"regularization": 10.0},
        broken_params={"regularization": -1.0},
    )
)
