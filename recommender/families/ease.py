"""EASE: the closed-form item-item linear model (Steck 2019, "Embarrassingly Shallow Autoencoders").

With ``G = X^T X`` and ``P = (G + lambda I)^-1`` the weights are
``B = I - P diag(1 / diag(P))``, i.e. ``B_ij = -P_ij / P_jj`` off the diagonal and
``B_jj = 0``: each item is predicted from the other items only. A user's scores
are ``x_u B``, so the score of item ``i`` decomposes exactly over the history:
``s_ui = sum_j x_uj B_ji``. That is the tag.

Erasure is exact: the subject's row ``x_s`` enters only through
``G = sum_u x_u^T x_u``; forgetting computes ``G`` from the remaining rows and
solves again, which is the model fitted without the subject bit for bit (same
weights, same version id). Subtracting ``x_s^T x_s`` from the kept ``G`` would
be cheaper but is exact only on integer-valued data: on weighted data the
float sums differ in the last bits.

Memory: ``G``, ``P`` and ``B`` are dense ``n_items x n_items`` float64 (22 MB
each at 1,682 items; 3.2 GB at 20,000): EASE is for catalogues of up to a few
tens of thousands of items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import scipy.linalg.lapack

from recommender.data import InteractionMatrix
from recommender.errors import ConfigError
from recommender.families._shared import StateModel, binarised, check_bool, check_number, explain_history_batch, explain_lists, history_tags, popularity_of, score_blocks
from recommender.family import ErasureKind, Family, ForgetOutcome, ModelTag, register_family, without_users

__all__ = ["EASEModel", "ease_weights"]


def ease_weights(gram: np.ndarray, regularization: float) -> np.ndarray:
    """Steck's closed form: ``B = I - P diag(1/diag(P))`` with ``P = (G + lambda I)^-1``, zero diagonal."""
    a = np.array(gram, dtype=np.float64, copy=True)
    a[np.diag_indices_from(a)] += float(regularization)
    if not np.isfinite(a).all():
        raise ConfigError("EASE: X^T X holds a value that is not finite; check the interaction weights")
    # The inverse from the Cholesky factor (LAPACK potrf + potri): half the work of solving against I.
    factor, info = scipy.linalg.lapack.dpotrf(a, lower=False, clean=True)
    if info == 0:
        upper, info = scipy.linalg.lapack.dpotri(factor, lower=False)
    if info != 0:
        raise ConfigError(f"EASE: X^T X + {regularization} I is not positive definite (LAPACK info {info}); raise 'regularization'")
    p = np.triu(upper) + np.triu(upper, 1).T
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


class EASEModel(StateModel):
    """EASE (Steck 2019): ``B`` from the item Gram matrix in closed form; scores ``x_u B``.

    Parameters
    ----------
    regularization:
        Steck's ``lambda``, the L2 weight added to the diagonal of ``X^T X`` (> 0); its scale follows ``X^T X``'s
        (hundreds on MovieLens 100K's 0/1 matrix, thousands and more on summed weights).
    binary:
        Learn from and score the 0/1 pattern of the matrix (Steck's setting; the default) rather than its
        confidence weights.
    """

    name: ClassVar[str] = "ease"
    family: ClassVar[str] = "ease"
    inputs: ClassVar[frozenset[str]] = frozenset({"interactions"})
    erasure: ClassVar[ErasureKind] = ErasureKind.exact
    FORMAT: ClassVar[str] = "recgov.family.ease.v1"

    def __init__(self, regularization: float = 500.0, binary: bool = True) -> None:
        self.regularization = regularization
        self.binary = binary

    def get_params(self) -> dict[str, Any]:
        return {"regularization": self.regularization, "binary": self.binary}

    def _inputs(self, matrix: Any) -> Any:
        """The ``X`` EASE learns from and scores with: 0/1 with ``binary`` (Steck's setting), else the weights.

        Summed confidence weights (a click 2, a purchase 5, repeated events adding up) make ``X^T X`` dominated
        by a few heavy pairs; on MovieLens-shaped data the 0/1 matrix ranks markedly better (recorded by the
        validation search of ``recgov evaluate --families``)."""
        return binarised(matrix, bool(self.binary))

    def _check_params(self) -> None:
        check_number("EASEModel", "regularization", self.regularization, 0, inclusive=False)
        check_bool("EASEModel", "binary", self.binary)

    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        self._check_params()
        x = self._inputs(train.matrix)
        self.gram_ = np.asarray((x.T @ x).toarray())
        self.weights_ = ease_weights(self.gram_, self.regularization)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"weights": self.weights_}

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.weights_ = arrays["weights"]
        x = self._inputs(self.train_.matrix)
        self.gram_ = np.asarray((x.T @ x).toarray())

    def _recommend_known(self, user_index: np.ndarray, k: int, *, filter_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        x = self._inputs(self.train_.matrix)
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
            hist = self._inputs(self.train_.matrix[row])
            terms = (self.weights_[hist.indices][:, items] * hist.data[:, None]).T
            return [[tag] for tag in history_tags(terms, hist.indices, self.train_.item_ids)]

        return explain_lists(self, user_id, item_ids, known)

    def explain_batch(self, user_ids: Sequence[str], item_lists: Sequence[Sequence[str]]) -> list[list[list[ModelTag]]]:
        """``[explain(u, items) for u, items in zip(user_ids, item_lists)]``, vectorised over blocks of users."""
        return explain_history_batch(self, user_ids, item_lists, lambda cols: self.weights_[:, cols], self._inputs)

    def forget(self, user_ids: Sequence[str]) -> ForgetOutcome:
        """Exact: ``X^T X`` of the remaining rows and the closed form again, the very computation of a fit
        without the subjects (a downdate ``G - x_s^T x_s`` would differ from it in the last bits on real-valued
        data, and so would the weights and the version id)."""
        self.check_fitted("forget")
        new_train, rows = without_users(self.train_, user_ids)
        removed = self.train_.matrix[rows]
        x = self._inputs(new_train.matrix)
        self.gram_ = np.asarray((x.T @ x).toarray())
        self.weights_ = ease_weights(self.gram_, self.regularization)
        ids = tuple(str(u) for u in self.train_.user_ids[rows])
        self.train_ = new_train
        self.popularity_ = popularity_of(new_train)
        self._seal()
        return ForgetOutcome(ErasureKind.exact, ids, 0.0, False, {"method": "gram_recomputed", "interactions_removed": int(removed.nnz)})


register_family(
    Family(
        name="ease",
        build=EASEModel,
        description="EASE (Steck 2019): closed-form item-item weights; exact tags over history items; exact erasure by recomputing X^T X without the subjects",
        inputs=EASEModel.inputs,
        erasure=EASEModel.erasure,
        default_params={"regularization": 500.0, "binary": True},
        small_params={"regularization": 10.0},
        broken_params={"regularization": -1.0},
    )
)
