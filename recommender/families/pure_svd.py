"""PureSVD (Cremonesi, Koren and Turrin 2010): a truncated SVD of the interaction matrix.

``X ~ U S V^T`` with the ``factors`` largest singular values (ARPACK through
:func:`scipy.sparse.linalg.svds`, its start vector drawn from ``random_state``
so the same data give the same factors). A user's scores are the projection of
their row onto the item space, ``s_u = x_u V V^T``, so the score of item ``i``
decomposes exactly over the history: ``s_ui = sum_j x_uj (v_j . v_i)``. That is
the tag.

Erasure is exact by refit: forgetting drops the subjects' rows and runs the
truncated SVD again on what is left (the same computation a fit without them
runs, so the same model); it costs one fit, seconds at MovieLens scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from scipy.sparse.linalg import svds

from recommender.data import InteractionMatrix
from recommender.errors import ConfigError
from recommender.families._shared import StateModel, binarised, check_bool, check_int, explain_history_batch, explain_lists, history_tags, score_blocks
from recommender.family import ErasureKind, Family, ForgetOutcome, ModelTag, register_family

__all__ = ["PureSVDModel", "item_space", "NOISE"]

NOISE = 1e-9
"""Scores within this share of a user's largest score are rounding noise: served as 0 (they tie, ranked by index)."""


def item_space(matrix: Any, factors: int, random_state: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(V, s)``: the top ``factors`` right singular vectors ``(n_items, f)`` and values (descending)."""
    n = min(matrix.shape)
    if factors >= n:
        raise ConfigError(f"PureSVD: 'factors' ({factors}) must be smaller than min(users, items) = {n}")
    rng = np.random.default_rng(random_state)
    v0 = rng.uniform(-1.0, 1.0, size=n)
    _, s, vt = svds(matrix.astype(np.float64), k=factors, v0=v0, solver="arpack", random_state=random_state)
    order = np.argsort(-s, kind="stable")
    v, s = np.ascontiguousarray(vt[order].T), s[order]
    # On a matrix of rank below ``factors`` (identical rows, a small catalogue) ARPACK restarts from vectors of its
    # own generator, whose state lives on in the process: the same seed gives other vectors from fit to fit. What
    # the data fix is kept exact instead: a singular value 0 up to rounding has a vector of no meaning (any basis of
    # the null space), and an item no one interacted with has 0 in every vector of a positive singular value (they
    # lie in the row space). Rounding noise there ranked the items the data cannot tell apart, differently in each
    # fit; at exactly 0 they tie and rank by index.
    null = s <= float(s.max(initial=0.0)) * max(matrix.shape) * np.finfo(np.float64).eps
    v[:, null] = 0.0
    v[np.diff(matrix.tocsc().indptr) == 0] = 0.0
    return v, np.where(null, 0.0, s)


def _projected(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b.T`` for rows of the orthonormal ``V``: entries of the projector ``V V^T``, at most 1 in magnitude, so
    those within :data:`NOISE` are rounding noise and are 0 (a tag names no item for noise, as a list ranks none)."""
    out = a @ b.T
    out[np.abs(out) <= NOISE] = 0.0
    return out


class PureSVDModel(StateModel):
    """PureSVD: scores ``x_u V V^T`` from a truncated SVD.

    Parameters
    ----------
    factors:
        Singular vectors kept.
    random_state:
        Seed of ARPACK's start vector.
    binary:
        Factor the 0/1 pattern of the matrix (the default) rather than its summed confidence weights, which a
        few heavy pairs dominate.
    """

    name: ClassVar[str] = "pure_svd"
    family: ClassVar[str] = "pure_svd"
    inputs: ClassVar[frozenset[str]] = frozenset({"interactions"})
    erasure: ClassVar[ErasureKind] = ErasureKind.exact
    FORMAT: ClassVar[str] = "recgov.family.pure_svd.v1"

    def __init__(self, factors: int = 64, random_state: int | None = 0, binary: bool = True) -> None:
        self.factors = factors
        self.binary = binary
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        return {"factors": self.factors, "random_state": self.random_state, "binary": self.binary}

    def _check_params(self) -> None:
        check_int("PureSVDModel", "factors", self.factors, 1)
        check_bool("PureSVDModel", "binary", self.binary)
        seed = self.random_state
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ConfigError(f"The 'random_state' parameter of PureSVDModel must be None or an int in the range [0, inf). Got {seed!r} instead.")

    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        self._check_params()
        self.item_factors_, self.singular_values_ = item_space(binarised(train.matrix, bool(self.binary)), int(self.factors), self.random_state)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"item_factors": self.item_factors_, "singular_values": self.singular_values_}

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.item_factors_ = arrays["item_factors"]
        self.singular_values_ = arrays["singular_values"]

    def _recommend_known(self, user_index: np.ndarray, k: int, *, filter_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        x = binarised(self.train_.matrix, bool(self.binary))
        v = self.item_factors_

        def scores(rows: np.ndarray) -> np.ndarray:
            block = (x[rows] @ v) @ v.T
            # Where the matrix's rank is within ``factors``, V V^T projects onto its whole row space and a user's
            # scores are their own row: every unseen item scores 0, plus rounding noise that differs with the bits
            # of V (ARPACK's are not reproducible on such a matrix). Noise is not a ranking: scores within
            # :data:`NOISE` of the row's largest are 0, and those items tie and rank by index.
            scale = np.abs(block).max(axis=1, keepdims=True)
            block[np.abs(block) <= NOISE * scale] = 0.0
            return block

        return score_blocks(scores, user_index, k, n_items=self.train_.n_items, seen=x if filter_seen else None)

    def explain(self, user_id: str, item_ids: Sequence[str]) -> list[list[ModelTag]]:
        """``because_you_interacted``: the terms ``x_uj (v_j . v_i)`` of the score, exact."""

        def known(row: int, items: np.ndarray) -> list[list[ModelTag]]:
            hist = binarised(self.train_.matrix[row], bool(self.binary))
            v = self.item_factors_
            terms = (_projected(v[hist.indices], v[items]) * hist.data[:, None]).T
            return [[tag] for tag in history_tags(terms, hist.indices, self.train_.item_ids)]

        return explain_lists(self, user_id, item_ids, known)

    def explain_batch(self, user_ids: Sequence[str], item_lists: Sequence[Sequence[str]]) -> list[list[list[ModelTag]]]:
        """``[explain(u, items) for u, items in zip(user_ids, item_lists)]``, vectorised over blocks of users."""
        v = self.item_factors_
        return explain_history_batch(self, user_ids, item_lists, lambda cols: _projected(v, v[cols]), lambda m: binarised(m, bool(self.binary)))

    def forget(self, user_ids: Sequence[str]) -> ForgetOutcome:
        """Exact by refit: the rows go and the truncated SVD runs again on the rest."""
        return self._forget_by_refit(user_ids, "refit")


register_family(
    Family(
        name="pure_svd",
        build=PureSVDModel,
        description="PureSVD (truncated SVD, scores x V V^T): exact tags over history items; exact erasure by refit",
        inputs=PureSVDModel.inputs,
        erasure=PureSVDModel.erasure,
        default_params={"factors": 64, "binary": True},
        small_params={"factors": 8},
        broken_params={"factors": 0},
    )
)
