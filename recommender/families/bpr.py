"""BPR: Bayesian personalised ranking (Rendle et al. 2009) with a choice of negative sampling.

Each step takes a training pair ``(u, i)`` and a sampled item ``j`` and raises
``x_uij = p_u . (q_i - q_j) + b_i - b_j`` by SGD on ``ln sigmoid(x_uij)`` with
L2 weight ``regularization``. Negatives come from

* ``uniform``: every item equally (Rendle's original, and ``implicit``'s BPR);
* ``popularity``: items in proportion to ``count ** popularity_exponent``
  (popular items are the informative negatives, Rendle and Freudenthaler 2014).

A sampled ``j`` the user has interacted with gives no step. The SGD is
vectorised: each epoch shuffles the training pairs and takes them ``batch_size``
at a time (one gather, one scatter-add per factor matrix), seeded by
``random_state``; no Python loop per pair or per user.

Tags are ``latent_match`` and say so: a factor model's score is a dot product
of learned vectors, not a sum over the history; the history items named are the
ones whose vectors lie closest to the item's, an approximation (``exact`` is
False). Erasure is ``retrain``: forgetting removes the subject's row and user
vector at once, but the item vectors keep what SGD learned from them until the
owed retrain.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from recommender.data import InteractionMatrix
from recommender.errors import ConfigError
from recommender.families._shared import (
    StateModel,
    check_choice,
    check_int,
    check_number,
    explain_lists,
    popularity_of,
    score_blocks,
)
from recommender.family import ErasureKind, Family, ForgetOutcome, ModelTag, register_family, without_users

__all__ = ["BPRModel", "SAMPLING"]

SAMPLING = ("uniform", "popularity")


class BPRModel(StateModel):
    """Matrix factorisation trained by BPR with uniform or popularity-weighted negatives.

    Parameters
    ----------
    factors:
        Latent dimensions.
    learning_rate, regularization:
        SGD step and L2 weight.
    iterations:
        Epochs (each visits every training pair once).
    sampling:
        ``"uniform"`` or ``"popularity"`` negatives.
    popularity_exponent:
        With ``popularity`` sampling, ``P(j) ~ count_j ** exponent`` (0.75 as in word2vec's negatives).
    batch_size:
        Pairs per vectorised step.
    random_state:
        Seed of the initialisation, the shuffles and the negatives.
    """

    name: ClassVar[str] = "bpr"
    family: ClassVar[str] = "bpr"
    inputs: ClassVar[frozenset[str]] = frozenset({"interactions"})
    erasure: ClassVar[ErasureKind] = ErasureKind.retrain
    FORMAT: ClassVar[str] = "recgov.family.bpr.v1"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.05,
        regularization: float = 0.001,
        iterations: int = 60,
        sampling: str = "uniform",
        popularity_exponent: float = 0.75,
        batch_size: int = 256,
        random_state: int | None = 0,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.sampling = sampling
        self.popularity_exponent = popularity_exponent
        self.batch_size = batch_size
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        return {
            "factors": self.factors,
            "learning_rate": self.learning_rate,
            "regularization": self.regularization,
            "iterations": self.iterations,
            "sampling": self.sampling,
            "popularity_exponent": self.popularity_exponent,
            "batch_size": self.batch_size,
            "random_state": self.random_state,
        }

    def _validate(self) -> None:
        who = "BPRModel"
        check_int(who, "factors", self.factors, 1)
        check_int(who, "iterations", self.iterations, 1)
        check_int(who, "batch_size", self.batch_size, 1)
        check_number(who, "learning_rate", self.learning_rate, 0, inclusive=False)
        check_number(who, "regularization", self.regularization, 0)
        check_number(who, "popularity_exponent", self.popularity_exponent, 0)
        check_choice(who, "sampling", self.sampling, SAMPLING)
        seed = self.random_state
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ConfigError(f"The 'random_state' parameter of {who} must be None or an int in the range [0, inf). Got {seed!r} instead.")

    def _check_params(self) -> None:
        self._validate()

    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        for _ in self._epochs(train):
            pass

    def fit_checkpoints(self, train: InteractionMatrix, epochs: Sequence[int]) -> Iterator[int]:
        """Fit on ``train``, pausing after each epoch count in ``epochs`` (at most ``iterations``): at each pause
        the model is the one a fit with that many ``iterations`` gives (same seed, so the same draws so far),
        with ``iterations`` and ``version_id_`` set to match, so a validation search scores several epoch counts
        from one run. Yields the epoch count; stops after the largest."""
        wanted = sorted({int(e) for e in epochs})
        if not wanted or wanted[0] < 1 or wanted[-1] > int(self.iterations):
            raise ConfigError(f"fit_checkpoints: epochs must lie in [1, {self.iterations}] (the 'iterations'). Got {list(epochs)!r} instead.")
        self.popularity_ = popularity_of(train)
        self.train_ = train
        for done in self._epochs(train):
            if done in wanted:
                self.iterations = done
                self._seal()
                yield done
                if done == wanted[-1]:
                    return

    def _epochs(self, train: InteractionMatrix) -> Iterator[int]:
        """The SGD, one epoch at a time (the factors are the model's own arrays, current after each yield)."""
        self._validate()
        rng = np.random.default_rng(self.random_state)
        n_users, n_items = train.matrix.shape
        f = int(self.factors)
        p = rng.normal(0.0, 0.1, size=(n_users, f))
        q = rng.normal(0.0, 0.1, size=(n_items, f))
        b = np.zeros(n_items)
        coo = train.matrix.tocoo()
        pos = coo.data > 0
        users, items = coo.row[pos].astype(np.int64), coo.col[pos].astype(np.int64)
        seen = np.sort(users * n_items + items)
        cdf = None
        if self.sampling == "popularity":
            counts = np.bincount(items, minlength=n_items).astype(np.float64)
            cdf = np.cumsum(counts ** float(self.popularity_exponent))
        lr, reg, size = float(self.learning_rate), float(self.regularization), int(self.batch_size)
        self.user_factors_, self.item_factors_, self.item_bias_ = p, q, b
        for epoch in range(int(self.iterations)):
            order = rng.permutation(len(users))
            for start in range(0, len(order), size):
                pick = order[start : start + size]
                u, i = users[pick], items[pick]
                if cdf is None:
                    j = rng.integers(0, n_items, size=len(pick))
                else:
                    j = np.minimum(np.searchsorted(cdf, rng.random(len(pick)) * cdf[-1], side="right"), n_items - 1)
                codes = u * n_items + j
                at = np.minimum(np.searchsorted(seen, codes), len(seen) - 1)
                valid = seen[at] != codes
                pu, qi, qj = p[u], q[i], q[j]
                x = np.einsum("nf,nf->n", pu, qi - qj) + b[i] - b[j]
                g = np.where(valid, 0.5 * (1.0 - np.tanh(0.5 * x)), 0.0)  # sigmoid(-x), stable
                np.add.at(p, u, lr * (g[:, None] * (qi - qj) - reg * pu))
                np.add.at(q, i, lr * (g[:, None] * pu - reg * qi))
                np.add.at(q, j, lr * (-g[:, None] * pu - reg * qj))
                np.add.at(b, i, lr * (g - reg * b[i]))
                np.add.at(b, j, lr * (-g - reg * b[j]))
            yield epoch + 1

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return (
            {"retrain_owed": bool(getattr(self, "retrain_owed_", False))},
            {"user_factors": self.user_factors_, "item_factors": self.item_factors_, "item_bias": self.item_bias_},
        )

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.user_factors_ = arrays["user_factors"]
        self.item_factors_ = arrays["item_factors"]
        self.item_bias_ = arrays["item_bias"]
        self.retrain_owed_ = bool(meta.get("retrain_owed", False))

    def _recommend_known(self, user_index: np.ndarray, k: int, *, filter_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        x = self.train_.matrix
        p, q, b = self.user_factors_, self.item_factors_, self.item_bias_
        return score_blocks(lambda rows: p[rows] @ q.T + b[None, :], user_index, k, n_items=self.train_.n_items, seen=x if filter_seen else None)

    def explain(self, user_id: str, item_ids: Sequence[str]) -> list[list[ModelTag]]:
        """``latent_match`` (not exact): the score ``p_u . q_i + b_i`` and the history items whose vectors are
        closest (cosine) to the item's."""

        def known(row: int, items: np.ndarray) -> list[list[ModelTag]]:
            hist = self.train_.matrix[row].indices
            q = self.item_factors_
            qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
            closeness = qn[items] @ qn[hist].T  # (L, |H|)
            scores = q[items] @ self.user_factors_[row] + self.item_bias_[items]
            out = []
            for j in range(len(items)):
                best = np.argsort(-closeness[j], kind="stable")[:3] if len(hist) else np.empty(0, dtype=np.int64)
                names = tuple(str(self.train_.item_ids[hist[t]]) for t in best)
                text = "Matches the taste your history shows" + (f", closest to {', '.join(names)}" if names else "")
                evidence = {
                    "score": round(float(scores[j]), 6),
                    "item_bias": round(float(self.item_bias_[items[j]]), 6),
                    "closeness": [round(float(closeness[j, t]), 6) for t in best],
                }
                out.append([ModelTag("latent_match", text, names, False, evidence)])
            return out

        return explain_lists(self, user_id, item_ids, known)

    def forget(self, user_ids: Sequence[str]) -> ForgetOutcome:
        """Retrain owed: the rows and user vectors go now; the item vectors keep the subjects' influence until a
        retrain (``retrain_required``)."""
        self.check_fitted("forget")
        new_train, rows = without_users(self.train_, user_ids)
        ids = tuple(str(u) for u in self.train_.user_ids[rows])
        keep = np.ones(self.train_.n_users, dtype=bool)
        keep[rows] = False
        self.user_factors_ = self.user_factors_[keep]
        cols = self.train_.item_index(np.asarray(new_train.item_ids, dtype=object))  # the items left in the model
        self.item_factors_, self.item_bias_ = self.item_factors_[cols], self.item_bias_[cols]
        self.train_ = new_train
        self.popularity_ = popularity_of(new_train)
        self.retrain_owed_ = True
        self._seal()
        return ForgetOutcome(
            ErasureKind.retrain, ids, None, True, {"method": "drop_rows", "item_vectors": "still shaped by the subjects until the retrain"}
        )


register_family(
    Family(
        name="bpr",
        build=BPRModel,
        description="BPR matrix factorisation, uniform or popularity-weighted negatives (vectorised SGD); approximate latent_match tags; erasure by retrain",
        inputs=BPRModel.inputs,
        erasure=BPRModel.erasure,
        default_params={"factors": 64, "iterations": 60, "sampling": "uniform"},
        small_params={"factors": 8, "iterations": 10},
        broken_params={"sampling": "hardest"},
    )
)
