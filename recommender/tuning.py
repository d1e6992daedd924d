"""A small, principled tuning step: pick hyperparameters on data the test set never sees.

The training matrix is split once more: a seeded share of every user's
interactions becomes a validation set (users keep at least one interaction in the
inner training part). Candidates are scored by NDCG@k on that validation set and
the best wins; the final model is then fitted on the whole training matrix. The
test set is never touched, so the reported test figures stay honest.

The ALS search is a seeded random search over log-uniform ranges (Bergstra and
Bengio 2012: random search beats a grid of the same budget when few parameters
matter), always including the library defaults, followed by a short refinement of
the iteration count for the winner. A few anchor configurations that are often
good on MovieLens-like data are always among the candidates. Item-kNN gets the same treatment over its
neighbourhood size, so that the baseline comparison is fair.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from recommender.als import ALSRecommender
from recommender.base import Recommender
from recommender.baselines import ItemKNNRecommender
from recommender.data import InteractionMatrix
from recommender.errors import ConfigError
from recommender.metrics import ndcg_at_k

__all__ = ["TuningResult", "carve_validation", "tune_als", "tune_item_knn", "validation_ndcg"]

ALS_SPACE: dict[str, tuple[float, float]] = {
    "regularization": (1e-3, 10.0),
    "alpha": (0.5, 50.0),
}
ALS_FACTORS: tuple[int, ...] = (16, 32, 64, 128)
ALS_ANCHORS: tuple[dict[str, float], ...] = (
    {"factors": 64, "regularization": 0.05, "alpha": 2.0},
    {"factors": 128, "regularization": 0.1, "alpha": 10.0},
    {"factors": 32, "regularization": 0.01, "alpha": 1.0},
    {"factors": 64, "regularization": 1.0, "alpha": 20.0},
)
"""Configurations that are often good on MovieLens-like data; always tried, so a
small random budget never leaves the search without a reasonable candidate."""
KNN_NEIGHBOURS: tuple[int, ...] = (10, 25, 50, 100, 200, 400)


@dataclass(frozen=True)
class TuningResult:
    """The winning parameters and every trial, best first."""

    model: str
    best_params: dict[str, Any]
    best_score: float
    metric: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "model": self.model,
            "metric": self.metric,
            "best_params": self.best_params,
            "best_score": round(self.best_score, 6),
            "n_trials": len(self.trials),
            "seconds": round(self.seconds, 3),
            "trials": self.trials,
        }


def carve_validation(
    train: InteractionMatrix, fraction: float = 0.2, random_state: int = 0
) -> tuple[InteractionMatrix, InteractionMatrix]:
    """Split ``train`` into (inner train, validation) with the same ids.

    Each stored pair goes to validation with probability ``fraction``; a user's
    last remaining pair never does, so every user stays known to the model.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"The 'fraction' parameter of carve_validation must be a float in the range (0, 1). Got {fraction!r} instead.")
    m = train.matrix.tocsr()
    rng = np.random.default_rng(random_state)
    to_valid = rng.random(m.nnz) < fraction
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    # Keep at least one pair per user in the inner training part: the first stored
    # pair of each row stays when every pair of that row was drawn for validation.
    kept_per_row = np.bincount(rows[~to_valid], minlength=m.shape[0])
    starts = m.indptr[:-1][(kept_per_row == 0) & (np.diff(m.indptr) > 0)]
    to_valid[starts] = False
    # Copies of indices and indptr: eliminate_zeros works in place and must not
    # touch the caller's matrix through shared arrays.
    inner = sp.csr_matrix((np.where(to_valid, 0, m.data), m.indices.copy(), m.indptr.copy()), shape=m.shape)
    valid = sp.csr_matrix((np.where(to_valid, m.data, 0), m.indices.copy(), m.indptr.copy()), shape=m.shape)
    inner.eliminate_zeros()
    valid.eliminate_zeros()
    return (
        InteractionMatrix(inner, train.user_ids, train.item_ids),
        InteractionMatrix(valid, train.user_ids, train.item_ids),
    )


def validation_ndcg(model: Recommender, validation: InteractionMatrix, k: int = 10, batch_size: int = 4096) -> float:
    """Mean NDCG@k of a fitted model over the users with validation pairs."""
    users = np.flatnonzero(np.diff(validation.matrix.indptr) > 0)
    if len(users) == 0:
        raise ConfigError("the validation split is empty: too little data to tune on")
    total = 0.0
    for start in range(0, len(users), batch_size):
        chunk = users[start : start + batch_size]
        recs, _, _ = model.recommend_index(chunk, k)
        total += float(np.sum(ndcg_at_k(recs, validation.matrix[chunk], k)))
    return total / len(users)


def _search(
    name: str,
    candidates: list[dict[str, Any]],
    build: Callable[[dict[str, Any]], Recommender],
    inner: InteractionMatrix,
    valid: InteractionMatrix,
    k: int,
    show_progress: bool,
) -> list[dict[str, Any]]:
    trials = []
    for params in tqdm(candidates, desc=f"tuning {name}", disable=not show_progress, leave=False):
        model = build(params).fit(inner)
        trials.append({"params": params, "ndcg": round(validation_ndcg(model, valid, k), 6)})
    return trials


def tune_als(
    train: InteractionMatrix,
    *,
    n_trials: int = 20,
    k: int = 10,
    validation_fraction: float = 0.2,
    random_state: int = 0,
    show_progress: bool = False,
) -> TuningResult:
    """Choose ALS hyperparameters by NDCG@k on a validation split of ``train``."""
    started = time.perf_counter()
    inner, valid = carve_validation(train, validation_fraction, random_state)
    rng = np.random.default_rng(random_state)
    defaults = ALSRecommender()
    candidates: list[dict[str, Any]] = [
        {"factors": defaults.factors, "regularization": defaults.regularization, "alpha": defaults.alpha, "iterations": 15}
    ]
    candidates += [{**anchor, "iterations": 15} for anchor in ALS_ANCHORS if anchor["factors"] != defaults.factors or anchor["alpha"] != defaults.alpha]
    for _ in range(max(n_trials - len(candidates), 0)):
        params: dict[str, Any] = {"factors": int(rng.choice(ALS_FACTORS)), "iterations": 15}
        for key, (low, high) in ALS_SPACE.items():
            params[key] = float(f"{np.exp(rng.uniform(np.log(low), np.log(high))):.4g}")
        candidates.append(params)

    def build(p: dict[str, Any]) -> Recommender:
        return ALSRecommender(**p, random_state=random_state)

    trials = _search("als", candidates, build, inner, valid, k, show_progress)
    best = max(trials, key=lambda t: t["ndcg"])
    refine = [{**best["params"], "iterations": it} for it in (8, 30) ]
    trials += _search("als", refine, build, inner, valid, k, show_progress)
    trials.sort(key=lambda t: -t["ndcg"])
    return TuningResult("als", trials[0]["params"], trials[0]["ndcg"], f"ndcg@{k}", trials, time.perf_counter() - started)


def tune_item_knn(
    train: InteractionMatrix,
    *,
    k: int = 10,
    validation_fraction: float = 0.2,
    random_state: int = 0,
    show_progress: bool = False,
) -> TuningResult:
    """Choose item-kNN's neighbourhood size and similarity on the same kind of validation split."""
    started = time.perf_counter()
    inner, valid = carve_validation(train, validation_fraction, random_state)
    candidates = [{"k_neighbours": n, "similarity": s} for s in ("cosine", "bm25") for n in KNN_NEIGHBOURS]
    trials = _search("item_knn", candidates, lambda p: ItemKNNRecommender(**p), inner, valid, k, show_progress)
    trials.sort(key=lambda t: -t["ndcg"])
    return TuningResult("item_knn", trials[0]["params"], trials[0]["ndcg"], f"ndcg@{k}", trials, time.perf_counter() - started)
