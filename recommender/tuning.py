"""A small, principled tuning step: pick hyperparameters on data the test set never sees.

The training matrix is split once more: a seeded share of every user's
interactions becomes a validation set (users keep at least one interaction in the
inner training part). Candidates are scored by NDCG@k on that validation set and
the best wins; the final model is then fitted on the whole training matrix. The
test set is never touched, so the reported test figures stay honest.

The ALS candidates are drawn by a seeded random search over log-uniform ranges
(Bergstra and Bengio 2012: random search beats a grid of the same budget when few
parameters matter), always including the library defaults and a few anchor
configurations that are often good on MovieLens-like data.

How the candidates are searched (``search=``):

* ``"halving"`` (the default): successive halving (Jamieson and Talwalkar 2016;
  Li et al.'s Hyperband uses it as its inner loop). Every candidate is trained
  for a few ALS sweeps and scored; the best third continue to more sweeps, and so
  on up to the full 15 (rungs of 3, 8 and 15 sweeps). Poor configurations stop
  at a fifth of the iterations. A survivor is not refitted: ALS's state is its
  two factor matrices, so continuing a fit for more sweeps gives exactly the
  factors of a fit with the total count, and the score recorded at a rung is the
  score of that configuration at that iteration count (a refit with the
  recorded parameters reproduces it). The winner's 8-sweep score is the one its
  rung already computed, and its 30-sweep refinement continues its 15-sweep fit.
  A candidate's factors are released as soon as it falls out of a rung's running
  top third, so at most that many fits plus one are held in memory at once.
* ``"random"``: every candidate fitted for the full 15 sweeps, then the
  winner's iteration count refined with fresh fits at 8 and 30 sweeps.

Halving converts and transposes the inner training matrix once for the whole
search (:class:`recommender.als.ConfidencePair`), where ``implicit``'s ``fit``
would redo both at every rung of every candidate.

Either way every trial is scored by :func:`validation_ndcg`, which ranks a
plain ALS model's users in blocks (:mod:`recommender.scoring`) instead of
through ``implicit``'s per-batch sparse slicing, on at most
:data:`MAX_VALIDATION_USERS` validation users (a seeded sample, the same for
every candidate, on larger data sets). Item-kNN gets the same
validation over its neighbourhood size, so that the baseline comparison is fair.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from recommender.als import ALSRecommender, ConfidencePair, continue_fit, make_als
from recommender.base import Recommender
from recommender.baselines import ItemKNNRecommender
from recommender.data import InteractionMatrix
from recommender.errors import ConfigError
from recommender.metrics import ndcg_at_k
from recommender.scoring import factor_top_k, ranked_lists

if TYPE_CHECKING:
    from implicit.cpu.als import AlternatingLeastSquares

__all__ = [
    "FAMILY_GRIDS",
    "BPR_EPOCHS",
    "TuningResult",
    "carve_validation",
    "tune_als",
    "tune_family",
    "tune_item_knn",
    "tunable_families",
    "user_sample",
    "validation_ndcg",
]

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
FAMILY_GRIDS: dict[str, tuple[dict[str, Any], ...]] = {
    # lambda's scale follows X^T X's diagonal (users per item): hundreds on MovieLens 100K's 0/1 matrix (Steck
    # 2019 reports 200-1000 on ML-20M); one candidate on the summed weights, where it needs tens of thousands.
    "ease": tuple({"regularization": float(lam)} for lam in (50, 200, 500, 1000, 3000))
    + ({"regularization": 20000.0, "binary": False},),
    # PureSVD peaks at few factors on small data and drifts towards popularity-blind noise with many.
    "pure_svd": tuple({"factors": f} for f in (8, 16, 32, 64, 128)) + ({"factors": 16, "binary": False},),
    "user_knn": tuple({"k_neighbours": n} for n in (25, 50, 100, 200, 400)) + ({"k_neighbours": 100, "binary": False},),
    # BPR: each candidate is one run scored at the epoch counts of BPR_EPOCHS (fit_checkpoints). The step stays at
    # 0.05: 0.1 scored lower on a MovieLens-100K-shaped validation split (0.176 against 0.200 at 64 factors).
    "bpr": tuple({"factors": f, "learning_rate": 0.05} for f in (32, 64)),
}
"""Small validation grids for the families ``recgov evaluate --families`` tunes besides ALS and item-kNN
(those have :func:`tune_als` and :func:`tune_item_knn`). Every candidate is the family's default parameters
updated with the grid entry."""
BPR_EPOCHS: tuple[int, ...] = (10, 20, 40)
"""Epoch counts at which a BPR candidate is scored, from one run (:meth:`BPRModel.fit_checkpoints`)."""
HALVING_RUNGS: tuple[int, ...] = (3, 8, 15)
"""ALS sweeps at which successive halving scores its survivors; the last is the full fit."""
HALVING_KEEP = 3
"""One candidate in this many goes on to the next rung (rounded up, at least one)."""
REFINE_ITERATIONS: tuple[int, int] = (8, 30)
"""Iteration counts tried for the winner besides its 15."""
SEARCHES = ("halving", "random")
MAX_TUNING_USERS = 25_000
"""Users whose interactions an ALS search learns from: a seeded sample when there are more.

A hyperparameter search fits every candidate several times: on MovieLens-20M's
shape (138,000 users) that is over a hundred ALS sweeps over 13 million pairs, most
of a 15-minute budget on two cores. Searching on a sample of 25,000 users (all of
their interactions, every item kept) costs what a 4M-event data set costs, and the
final model is still fitted on every user. Data sets up to this many users
(MovieLens 100K, 1M, and the 4M benchmark set) are searched in full, exactly as
before. Above it the choice is the best for the sample's users, an approximation
of the best for everyone (an item is seen by fewer users in the sample than in the
full data); ``bench/bench_scale.py`` reports the test NDCG the choice gives on the
full data."""
MAX_VALIDATION_USERS = 25_000
"""Validation users a search scores each candidate on: a seeded sample when there are more.

Every candidate is scored on the same users, so candidates are compared on paired
figures; the mean NDCG@10 of 25,000 users has a standard error near 0.001 (per-user
NDCG varies by about 0.2), well below the differences the search acts on. Scoring
every user would make each trial's lists cost as much as the data set is large
(138,000 users x 27,000 items per trial on MovieLens-20M's shape); with the sample
it stays bounded. Data sets up to this many users (MovieLens 100K, 1M) are scored in full."""


@dataclass(frozen=True)
class TuningResult:
    """The winning parameters and every trial, best first."""

    model: str
    best_params: dict[str, Any]
    best_score: float
    metric: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    searched_users: int | None = None
    """How many users' interactions the search learned from, when a sample of them
    (:data:`MAX_TUNING_USERS`); None when it used every user."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "model": self.model,
            "metric": self.metric,
            "best_params": self.best_params,
            "best_score": round(self.best_score, 6),
            "n_trials": len(self.trials),
            "seconds": round(self.seconds, 3),
            "searched_users": self.searched_users,
            "trials": self.trials,
        }


def user_sample(train: InteractionMatrix, max_users: int | None, random_state: int = 0) -> InteractionMatrix:
    """``train`` itself with at most ``max_users`` users holding data, else the rows of a seeded sample of that many.

    The sample keeps every item column (and its id), so the sample's models rank
    the same catalogue; users without data are never drawn.
    """
    active = np.flatnonzero(np.diff(train.matrix.indptr) > 0)
    if max_users is None or len(active) <= max_users:
        return train
    rng = np.random.default_rng([random_state, len(active), 7])
    rows = np.sort(rng.choice(active, size=int(max_users), replace=False))
    return InteractionMatrix(train.matrix.tocsr()[rows], np.asarray(train.user_ids)[rows], train.item_ids)


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


def validation_ndcg(
    model: Recommender,
    validation: InteractionMatrix,
    k: int = 10,
    batch_size: int = 4096,
    *,
    max_users: int | None = None,
    random_state: int = 0,
) -> float:
    """Mean NDCG@k of a fitted model over the users with validation pairs.

    The lists filter the model's training items; a plain ALS model is ranked in
    blocks (:func:`recommender.scoring.ranked_lists`), any other model through
    ``recommend_index`` in batches of ``batch_size`` users. With ``max_users``,
    over a seeded sample of that many of them when there are more (see
    :data:`MAX_VALIDATION_USERS`).
    """
    users = _validation_users(validation, random_state, max_users)
    recs, _ = ranked_lists(model, users, k, batch_size=batch_size)
    return _mean_ndcg(recs, validation, users, k)


def _validation_users(validation: InteractionMatrix, random_state: int = 0, max_users: int | None = None) -> np.ndarray:
    """The users with validation pairs, ascending; at most ``max_users`` of them, a seeded sample, when given."""
    users = np.flatnonzero(np.diff(validation.matrix.indptr) > 0)
    if len(users) == 0:
        raise ConfigError("the validation split is empty: too little data to tune on")
    if max_users is not None and len(users) > max_users:
        rng = np.random.default_rng([random_state, len(users)])
        users = np.sort(rng.choice(users, size=max_users, replace=False))
    return users


def _mean_ndcg(recs: np.ndarray, validation: InteractionMatrix, users: np.ndarray, k: int) -> float:
    return float(np.sum(ndcg_at_k(recs, validation.matrix[users], k))) / len(users)


def _search(
    name: str,
    candidates: list[dict[str, Any]],
    build: Callable[[dict[str, Any]], Recommender],
    inner: InteractionMatrix,
    valid: InteractionMatrix,
    k: int,
    show_progress: bool,
    random_state: int = 0,
) -> list[dict[str, Any]]:
    trials = []
    for params in tqdm(candidates, desc=f"tuning {name}", disable=not show_progress, leave=False):
        model = build(params).fit(inner)
        ndcg = validation_ndcg(model, valid, k, max_users=MAX_VALIDATION_USERS, random_state=random_state)
        trials.append({"params": params, "ndcg": round(ndcg, 6)})
    return trials


def _als_candidates(n_trials: int, random_state: int) -> list[dict[str, Any]]:
    """The defaults, the anchors, then seeded log-uniform draws up to ``n_trials``, all at 15 sweeps."""
    rng = np.random.default_rng(random_state)
    defaults = ALSRecommender()
    candidates: list[dict[str, Any]] = [
        {"factors": defaults.factors, "regularization": defaults.regularization, "alpha": defaults.alpha, "iterations": 15}
    ]
    candidates += [
        {**anchor, "iterations": 15}
        for anchor in ALS_ANCHORS
        if anchor["factors"] != defaults.factors or anchor["alpha"] != defaults.alpha
    ]
    for _ in range(max(n_trials - len(candidates), 0)):
        params: dict[str, Any] = {"factors": int(rng.choice(ALS_FACTORS)), "iterations": 15}
        for key, (low, high) in ALS_SPACE.items():
            params[key] = float(f"{np.exp(rng.uniform(np.log(low), np.log(high))):.4g}")
        candidates.append(params)
    return candidates


def _random_search(
    candidates: list[dict[str, Any]],
    inner: InteractionMatrix,
    valid: InteractionMatrix,
    k: int,
    random_state: int,
    show_progress: bool,
) -> list[dict[str, Any]]:
    """Every candidate fitted in full, then fresh fits of the winner at the refinement counts."""

    def build(p: dict[str, Any]) -> Recommender:
        return ALSRecommender(**p, random_state=random_state)

    trials = _search("als", candidates, build, inner, valid, k, show_progress, random_state)
    best = max(trials, key=lambda t: t["ndcg"])
    refine = [{**best["params"], "iterations": it} for it in REFINE_ITERATIONS]
    return trials + _search("als", refine, build, inner, valid, k, show_progress, random_state)


class _Continued:
    """One candidate's ``implicit`` model, trained sweep count by sweep count and scored at each rung."""

    def __init__(self, params: dict[str, Any], random_state: int) -> None:
        self.params = params
        self.model: AlternatingLeastSquares | None = make_als({**params, "iterations": 1, "random_state": random_state})
        self.done = 0
        self.scores: dict[int, float] = {}

    def advance(
        self, iterations: int, inner: InteractionMatrix, pair: ConfidencePair, valid: InteractionMatrix, users: np.ndarray, k: int
    ) -> float:
        """Continue the fit up to ``iterations`` sweeps (exactly a fresh fit's factors) and score it.

        ``pair`` is ``inner``'s matrix converted and transposed once for the whole search.
        """
        if self.model is None:
            raise RuntimeError("a candidate dropped by successive halving cannot be advanced")
        if iterations > self.done:
            continue_fit(self.model, pair, iterations - self.done)
            self.done = iterations
        recs, _ = factor_top_k(self.model.user_factors, self.model.item_factors, users, k, seen=inner.matrix)
        self.scores[iterations] = round(_mean_ndcg(recs, valid, users, k), 6)
        return self.scores[iterations]

    def trial(self, iterations: int) -> dict[str, Any]:
        return {"params": {**self.params, "iterations": iterations}, "ndcg": self.scores[iterations]}


def _halving_search(
    candidates: list[dict[str, Any]],
    inner: InteractionMatrix,
    valid: InteractionMatrix,
    k: int,
    random_state: int,
    show_progress: bool,
) -> list[dict[str, Any]]:
    """Successive halving over ``candidates`` (see the module docstring).

    Returns one trial per candidate, at the last rung it reached, plus the
    winner's refinements.
    """
    users = _validation_users(valid, random_state, MAX_VALIDATION_USERS)
    pair = ConfidencePair(inner.matrix)
    alive = [_Continued(params, random_state) for params in candidates]
    finished: list[_Continued] = []
    with tqdm(total=len(candidates), desc="tuning als", disable=not show_progress, leave=False) as bar:
        for depth, iterations in enumerate(HALVING_RUNGS):
            last = depth == len(HALVING_RUNGS) - 1
            keep = len(alive) if last else max(1, -(-len(alive) // HALVING_KEEP))
            ranked: list[_Continued] = []
            for run in alive:
                run.advance(iterations, inner, pair, valid, users, k)
                # Stable sort: among equal scores the earlier candidate (defaults, anchors first) stays ahead.
                ranked.append(run)
                ranked.sort(key=lambda r: -r.scores[iterations])
                for dropped in ranked[keep:]:
                    dropped.model = None  # out of the running: at most keep + 1 fits held at once
            finished += ranked[keep:]
            bar.update(len(ranked) if last else len(ranked) - keep)
            alive = ranked[:keep]
    trials = [run.trial(max(run.scores)) for run in finished + alive]
    winner = alive[0]
    for iterations in REFINE_ITERATIONS:
        if iterations > winner.done:
            winner.advance(iterations, inner, pair, valid, users, k)
        elif iterations not in winner.scores:
            _refit_score(winner, iterations, inner, pair, valid, users, k, random_state)
        trials.append(winner.trial(iterations))
    return trials


def _refit_score(
    run: _Continued,
    iterations: int,
    inner: InteractionMatrix,
    pair: ConfidencePair,
    valid: InteractionMatrix,
    users: np.ndarray,
    k: int,
    random_state: int,
) -> None:
    """Score ``run``'s parameters at fewer sweeps than it has done: a fresh fit (its rungs did not pass there)."""
    fresh = _Continued(run.params, random_state)
    run.scores[iterations] = fresh.advance(iterations, inner, pair, valid, users, k)


def tune_als(
    train: InteractionMatrix,
    *,
    n_trials: int = 20,
    k: int = 10,
    validation_fraction: float = 0.2,
    random_state: int = 0,
    show_progress: bool = False,
    search: str = "halving",
    max_users: int | None = MAX_TUNING_USERS,
) -> TuningResult:
    """Choose ALS hyperparameters by NDCG@k on a validation split of ``train``.

    ``n_trials`` candidates (the defaults and anchors among them) are searched by
    successive halving (``search="halving"``, the default) or each fitted in full
    (``search="random"``); see the module docstring. The trials hold one entry per
    candidate (at the sweep count it reached) and the winner's refinements, best
    first; every entry's score is what a fresh fit with its parameters gets.
    With more than ``max_users`` users (None: no limit), the search runs on the
    rows of a seeded sample of that many (:data:`MAX_TUNING_USERS`).
    """
    if search not in SEARCHES:
        choices = ", ".join(map(repr, SEARCHES))
        raise ConfigError(f"The 'search' parameter of tune_als must be one of {choices}. Got {search!r} instead.")
    if max_users is not None and (isinstance(max_users, bool) or not isinstance(max_users, (int, np.integer)) or max_users < 1):
        raise ConfigError(
            f"The 'max_users' parameter of tune_als must be an int in the range [1, inf) or None. Got {max_users!r} instead."
        )
    started = time.perf_counter()
    sampled = user_sample(train, max_users, random_state)
    searched_users = sampled.n_users if sampled is not train else None
    train = sampled
    inner, valid = carve_validation(train, validation_fraction, random_state)
    candidates = _als_candidates(n_trials, random_state)
    run = _halving_search if search == "halving" else _random_search
    trials = run(candidates, inner, valid, k, random_state, show_progress)
    trials.sort(key=lambda t: -t["ndcg"])
    return TuningResult(
        "als", trials[0]["params"], trials[0]["ndcg"], f"ndcg@{k}", trials, time.perf_counter() - started, searched_users
    )


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
    trials = _search(
        "item_knn", candidates, lambda p: ItemKNNRecommender(**p), inner, valid, k, show_progress, random_state
    )
    trials.sort(key=lambda t: -t["ndcg"])
    return TuningResult("item_knn", trials[0]["params"], trials[0]["ndcg"], f"ndcg@{k}", trials, time.perf_counter() - started)


def tunable_families() -> tuple[str, ...]:
    """The families :func:`tune_family` searches."""
    return tuple(FAMILY_GRIDS)


def tune_family(
    name: str,
    train: InteractionMatrix,
    *,
    k: int = 10,
    validation_fraction: float = 0.2,
    random_state: int = 0,
    show_progress: bool = False,
    candidates: Sequence[dict[str, Any]] | None = None,
) -> TuningResult:
    """Choose a family's parameters by NDCG@k on a validation split carved from ``train`` (never the test set).

    ``candidates`` default to :data:`FAMILY_GRIDS` ``[name]``; each is fitted on the inner training part with
    the family's default parameters updated by it (and ``random_state`` where the family takes one) and scored
    on the validation pairs. BPR candidates are each one run paused at :data:`BPR_EPOCHS`, every pause a trial
    with its epoch count. The trials come back best first; a tie keeps the earlier candidate. A candidate the
    data cannot take (more factors than the matrix has) is kept as a trial with ``ndcg`` None and why.
    """
    from recommender.family import get_family

    family = get_family(name)
    grid = list(FAMILY_GRIDS.get(name, ()) if candidates is None else candidates)
    if not grid:
        raise ConfigError(f"tune_family: no candidates for model family {name!r}; tunable: {', '.join(FAMILY_GRIDS)}")
    started = time.perf_counter()
    inner, valid = carve_validation(train, validation_fraction, random_state)
    users = _validation_users(valid, random_state, MAX_VALIDATION_USERS)
    seeded = "random_state" in (family.parameter_names() or [])
    trials: list[dict[str, Any]] = []
    for candidate in tqdm(grid, desc=f"tuning {name}", disable=not show_progress, leave=False):
        params = {**family.default_params, **candidate, **({"random_state": random_state} if seeded else {})}
        if name == "bpr":
            model = family.create(**{**params, "iterations": max(BPR_EPOCHS)})
            for epochs in model.fit_checkpoints(inner, BPR_EPOCHS):  # type: ignore[attr-defined]
                recs, _ = ranked_lists(model, users, k)
                trials.append({"params": {**candidate, "iterations": epochs}, "ndcg": round(_mean_ndcg(recs, valid, users, k), 6)})
            continue
        try:
            model = family.create(**params).fit(inner)
        except ConfigError as err:  # e.g. more PureSVD factors than a small matrix has: recorded, not fatal
            trials.append({"params": dict(candidate), "ndcg": None, "skipped": str(err)})
            continue
        recs, _ = ranked_lists(model, users, k)
        trials.append({"params": dict(candidate), "ndcg": round(_mean_ndcg(recs, valid, users, k), 6)})
    if all(t["ndcg"] is None for t in trials):
        raise ConfigError(f"tune_family: no candidate of {name!r} could be fitted: {trials[0]['skipped']}")
    trials.sort(key=lambda t: np.inf if t["ndcg"] is None else -t["ndcg"])  # unfitted candidates last
    return TuningResult(name, trials[0]["params"], trials[0]["ndcg"], f"ndcg@{k}", trials, time.perf_counter() - started)
