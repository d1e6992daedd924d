"""Machine unlearning for ALS: take data subjects out of a fitted model without retraining it.

GDPR Art. 17 asks that a subject's data be erased, also from what was derived
from it. For a matrix factorization that means three things, which
:func:`forget_users` does in milliseconds where a retrain takes the whole fit:

1. the subject's row leaves the training matrix and its id leaves
   ``user_ids``, so neither the model object nor a saved artifact holds it;
2. the subject's user factor is dropped;
3. the factor of every item the subject interacted with is recomputed by one
   exact ALS half-step on the remaining data, so the subject's confidences no
   longer shape it.

The item step is ``implicit``'s own least-squares solve (its
``recalculate_item``: a Cholesky solve per item, not the conjugate-gradient
steps of ``fit``). With ``X`` the remaining user factors, ``c_ui = alpha *
value`` the stored confidence (``implicit`` scales the matrix by ``alpha``;
there is no ``1 +``), ``p_ui = 1`` where ``c_ui > 0`` and ``lambda`` the
regularization, item ``i`` gets::

    y_i = (X^T X + lambda I + sum_{u in N(i)} (|c_ui| - 1) x_u x_u^T)^{-1} sum_{u: c_ui > 0} c_ui x_u

which is Hu, Koren and Volinsky's ``(X^T C_i X + lambda I)^{-1} X^T C_i p_i``
with ``C_i = diag(c_ui)`` on observed pairs and 1 elsewhere. An item nobody
else touched gets ``y_i = 0``, as a retrain on the same items would.

Items the subject never touched are left as they are. For them the subject
only entered through ``X^T X``, a rank-one term among all users': at
MovieLens-100K scale it moves their exact solution by about 0.3 % of its norm,
while re-solving them would also swap ``fit``'s conjugate-gradient factors for
exact ones, a change of about 1.4 % that has nothing to do with the subject.

What one half-step cannot reach is the subject's second-order influence: the
other users' factors were fitted to items the subject had shaped. ``propagate``
re-solves those users; :func:`residual_influence` measures what remains.
Propagation stays in the subject's neighbourhood, and the influence that has
spread beyond it stays too. ``sweeps`` runs full ALS iterations over the
remaining data, warm-started from the unlearned factors (each costs one
iteration of a fit), and reaches further. Neither makes an unlearned model a
retrain: measured by the held-out-half protocol
(:mod:`recommender.unlearning_quality`; figures in BENCHMARKS.md), a model
unlearned this way still predicts an erased subject's held-out items better
than the retrains without them do. An unlearned model is a stopgap until the
full retrain an erasure schedules.

:func:`residual_influence` compares the unlearned model with a model retrained
without the subject, judged against how far the original model was from it,
and says how well each model still fits the subject's own row.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from recommender.als import ALSRecommender, blas_single_thread, library_versions, make_als, model_version_id
from recommender.base import top_k_from_scores
from recommender.data import InteractionMatrix
from recommender.errors import ConfigError, DataError

if TYPE_CHECKING:
    from implicit.cpu.als import AlternatingLeastSquares

__all__ = [
    "ALL_USERS",
    "NO_USERS",
    "UNKNOWN_USERS",
    "EXACT_METHOD",
    "UNLEARNING_METHOD",
    "UnlearningResult",
    "forget_users",
    "refit_without_users",
    "residual_influence",
]

UNLEARNING_METHOD = "recgov.als-unlearning.v1"
"""Name and revision of the update rule; part of the unlearned model's version id."""

EXACT_METHOD = "recgov.als-refit.v1"
"""Name and revision of the exact erasure (:func:`refit_without_users`): ``fit`` on the matrix without the subjects."""

_REWEIGHTED_REFIT = (
    "refit_without_users: model {version} was trained with fairness_reweighting, whose group labels the model "
    "does not keep; retrain it from the events (recgov train --fair-reweight ...), which leaves erased subjects out"
)

UNKNOWN_USERS = (
    "cannot forget {n} of the {total} requested user id(s): not in the training data of model {version} "
    "(positions {positions} of user_ids); nothing of them is in this model, so drop them from the request "
    "or check them against model.train_.user_ids"
)
"""Unknown ids are named by their position in the request, never by value: an
erasure request's ids must not end up in logs through an error message."""

ALL_USERS = (
    "cannot forget all {n} users of model {version}: no training data would remain; "
    "retire the model instead of unlearning it"
)
NO_USERS = "forget_users needs at least one user id; got an empty list"

_REFRESH_ITEMS_TYPE = "The 'refresh_items' parameter of forget_users must be a bool. Got {value!r} instead."
_PROPAGATE_TYPE = (
    "The 'propagate' parameter of forget_users must be an int in the range [0, inf). Got {value!r} instead."
)
_SWEEPS_TYPE = "The 'sweeps' parameter of forget_users must be an int in the range [0, inf). Got {value!r} instead."
_PROPAGATE_NEEDS_REFRESH = (
    "forget_users got propagate={value} with refresh_items=False; propagation re-solves the users around "
    "the refreshed items, so it needs refresh_items=True"
)
_NOT_ALS = "forget_users works on a fitted ALSRecommender. Got {kind} instead."

# Reading package metadata costs ~5 ms a call, half of an unlearning step; the
# versions of the loaded libraries cannot change within a process.
_library_versions = cache(library_versions)


@dataclass(frozen=True)
class UnlearningResult:
    """What :func:`forget_users` produced. It holds no id of a forgotten user.

    Attributes
    ----------
    model:
        The new fitted model, without the users.
    version:
        Its version id (``model.version_id_``).
    previous_version:
        The version id of the model the users were removed from.
    n_users_removed, n_interactions_removed:
        Rows and stored (user, item) pairs taken out.
    n_items_refreshed:
        Items whose factor was recomputed (those the users interacted with).
    n_users_refreshed:
        User factors recomputed by ``propagate`` sweeps (0 without them; every
        remaining user with ``sweeps``).
    sweeps:
        Full warm-started ALS iterations run over the remaining data.
    seconds:
        Wall time of the whole call.
    """

    model: ALSRecommender
    version: str
    previous_version: str
    n_users_removed: int
    n_interactions_removed: int
    n_items_refreshed: int
    n_users_refreshed: int
    refresh_items: bool
    propagate: int
    seconds: float
    sweeps: int = 0
    exact: bool = False
    """Whether the model is the one trained without the users (:func:`refit_without_users`), not an update."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready record of the operation (without the model)."""
        return {
            "method": EXACT_METHOD if self.exact else UNLEARNING_METHOD,
            "exact": self.exact,
            "version": self.version,
            "previous_version": self.previous_version,
            "n_users_removed": self.n_users_removed,
            "n_interactions_removed": self.n_interactions_removed,
            "n_items_refreshed": self.n_items_refreshed,
            "n_users_refreshed": self.n_users_refreshed,
            "refresh_items": self.refresh_items,
            "propagate": self.propagate,
            "sweeps": self.sweeps,
            "seconds": self.seconds,
        }


def _rows_to_forget(model: ALSRecommender, user_ids: Sequence[str]) -> np.ndarray:
    requested = [user_ids] if isinstance(user_ids, str) else list(user_ids)
    if not requested:
        raise ConfigError(NO_USERS)
    rows = model.train_.user_index(requested)
    unknown = np.flatnonzero(rows < 0)
    if unknown.size:
        shown = ", ".join(map(str, unknown[:10])) + (", ..." if unknown.size > 10 else "")
        raise DataError(
            UNKNOWN_USERS.format(n=unknown.size, total=len(requested), version=model.version_id_, positions=shown)
        )
    rows = np.unique(rows)
    if rows.size == model.train_.n_users:
        raise DataError(ALL_USERS.format(n=rows.size, version=model.version_id_))
    return rows


def forget_users(
    model: ALSRecommender,
    user_ids: Sequence[str],
    *,
    refresh_items: bool = True,
    propagate: int = 0,
    sweeps: int = 0,
) -> UnlearningResult:
    """A new fitted model without ``user_ids``: their rows, ids and factors gone, their items re-solved.

    The input model is not modified.

    Parameters
    ----------
    model:
        A fitted :class:`~recommender.als.ALSRecommender`.
    user_ids:
        The subjects to remove (duplicates are ignored).
    refresh_items:
        Recompute, by one exact ALS half-step on the remaining data, the factor
        of every item the subjects interacted with (see the module docstring
        for the formula). Without it only the rows and user factors go, and
        the items keep what they learned from the subjects.
    propagate:
        Extra sweeps, each re-solving the users who share those items (exact
        user half-step against the refreshed items) and then those items again.
        Needs ``refresh_items``.
    sweeps:
        Full ALS iterations (every user, then every item, as ``fit`` does)
        over the remaining data, warm-started from the factors above, run
        last. Each costs one iteration of a fit; they reach the influence that
        spread beyond the subject's neighbourhood, which ``propagate`` leaves
        (see :mod:`recommender.unlearning_quality`).

    Returns
    -------
    UnlearningResult
        The model, its new version id (from the new data hash, the parameters,
        the library versions and the unlearning method with the previous
        version: an unlearned model never shares an id with a model retrained
        on the same data), and counts.

    Raises
    ------
    ConfigError
        An empty request or a bad parameter.
    DataError
        An id unknown to the model, or a request that would remove every user.

    Examples
    --------
    >>> result = forget_users(model, ["u42"])  # doctest: +SKIP
    >>> result.model.recommend(["u7"], k=10)  # doctest: +SKIP
    """
    started = time.perf_counter()
    _check_request(model, refresh_items, propagate, sweeps)
    rows = _rows_to_forget(model, user_ids)
    train = model.train_
    keep = np.ones(train.n_users, dtype=bool)
    keep[rows] = False
    removed = train.matrix[rows]
    matrix = train.matrix[keep]
    matrix.sort_indices()
    touched = np.unique(removed.indices).astype(np.int64)
    new_train = InteractionMatrix(matrix=matrix, user_ids=train.user_ids[keep], item_ids=train.item_ids.copy())
    inner, n_items_refreshed, n_users_refreshed = _unlearned_factors(
        model, keep, matrix, touched, refresh_items=refresh_items, propagate=propagate, sweeps=sweeps
    )
    provenance = {
        "method": UNLEARNING_METHOD,
        "from": model.version_id_,
        "refresh_items": refresh_items,
        "propagate": propagate,
        **({"sweeps": sweeps} if sweeps else {}),  # absent at 0: the ids of models unlearned before stay as they were
    }
    out = _fitted_model(model, inner, new_train, provenance)
    return UnlearningResult(
        model=out,
        version=out.version_id_,
        previous_version=model.version_id_,
        n_users_removed=int(rows.size),
        n_interactions_removed=int(removed.nnz),
        n_items_refreshed=n_items_refreshed,
        n_users_refreshed=n_users_refreshed,
        refresh_items=refresh_items,
        propagate=propagate,
        seconds=time.perf_counter() - started,
        sweeps=sweeps,
    )


def refit_without_users(model: ALSRecommender, user_ids: Sequence[str]) -> UnlearningResult:
    """The model trained without ``user_ids``: ``fit`` with the model's parameters and seed on its training
    matrix without their rows and without the items only they interacted with.

    This is exact erasure: nothing of the users is left in the factors (a retrain from the events without them,
    with the same recipe, gets the same matrix), at the cost of one fit. The version id is the one ``fit`` gives
    (data, parameters, library versions), like any trained model's. The input model is not modified.

    Raises
    ------
    ConfigError
        An empty request, or a model trained with ``fairness_reweighting`` (its group labels are not kept).
    DataError
        An id unknown to the model, or a request that would remove every user.

    Examples
    --------
    >>> result = refit_without_users(model, ["u42"])  # doctest: +SKIP
    >>> result.exact  # doctest: +SKIP
    True
    """
    from recommender.family import without_users

    started = time.perf_counter()
    if not isinstance(model, ALSRecommender):
        raise ConfigError(_NOT_ALS.format(kind=type(model).__name__))
    model.check_fitted("refit_without_users")
    if getattr(model, "fairness_reweighting", None) is not None:
        raise ConfigError(_REWEIGHTED_REFIT.format(version=model.version_id_))
    rows = _rows_to_forget(model, user_ids)
    removed = model.train_.matrix[rows]
    new_train, _rows = without_users(model.train_, [str(u) for u in model.train_.user_ids[rows]])
    out = ALSRecommender(**model.get_params(), num_threads=model.num_threads).fit(new_train)
    return UnlearningResult(
        model=out,
        version=out.version_id_,
        previous_version=model.version_id_,
        n_users_removed=int(rows.size),
        n_interactions_removed=int(removed.nnz),
        n_items_refreshed=int(new_train.n_items),
        n_users_refreshed=int(new_train.n_users),
        refresh_items=True,
        propagate=0,
        seconds=time.perf_counter() - started,
        exact=True,
    )


def _check_request(model: ALSRecommender, refresh_items: object, propagate: object, sweeps: object) -> None:
    """Refuse, before anything is computed, a model that cannot be unlearned or a bad parameter."""
    if not isinstance(model, ALSRecommender):
        raise ConfigError(_NOT_ALS.format(kind=type(model).__name__))
    model.check_fitted("forget_users")
    if getattr(model, "fairness_reweighting", None) is not None:
        # Its factors were solved on group-reweighted confidences that the updates here would not reproduce,
        # and the multipliers depend on who is left: retraining is the only exact forgetting.
        raise ConfigError(
            "forget_users: the model was trained with fairness_reweighting; its factors cannot be updated without "
            "the reweighted matrix. Retrain it (recgov train --fair-reweight ...), which leaves erased subjects out."
        )
    if not isinstance(refresh_items, bool):
        raise ConfigError(_REFRESH_ITEMS_TYPE.format(value=refresh_items))
    if not isinstance(propagate, int) or isinstance(propagate, bool) or propagate < 0:
        raise ConfigError(_PROPAGATE_TYPE.format(value=propagate))
    if not isinstance(sweeps, int) or isinstance(sweeps, bool) or sweeps < 0:
        raise ConfigError(_SWEEPS_TYPE.format(value=sweeps))
    if propagate and not refresh_items:
        raise ConfigError(_PROPAGATE_NEEDS_REFRESH.format(value=propagate))


def _unlearned_factors(
    model: ALSRecommender,
    keep: np.ndarray,
    matrix: sp.csr_matrix,
    touched: np.ndarray,
    *,
    refresh_items: bool,
    propagate: int,
    sweeps: int,
) -> tuple[AlternatingLeastSquares, int, int]:
    """The ``implicit`` model of the remaining users, its factors updated; and how many items and users moved.

    Starts from the original factors without the forgotten rows, then runs the
    updates asked for, in this order: the item half-step on the ``touched``
    items, ``propagate`` sweeps over their users and them, ``sweeps`` full
    warm-started iterations. ``matrix`` is the remaining training matrix.
    """
    inner = make_als(model.get_params(), num_threads=model.num_threads)
    n_items_refreshed = n_users_refreshed = 0
    with blas_single_thread():  # implicit oversubscribes the cores when run under threaded BLAS
        inner.user_factors = np.ascontiguousarray(model.user_factors_[keep])
        inner.item_factors = np.array(model.item_factors_, copy=True)
        if refresh_items and touched.size:
            item_users = matrix[:, touched].T.tocsr()
            inner.partial_fit_items(touched, item_users)
            n_items_refreshed = int(touched.size)
            if propagate:
                neighbours = np.unique(item_users.indices).astype(np.int64)
                for _ in range(propagate):
                    inner.partial_fit_users(neighbours, matrix[neighbours])
                    inner.partial_fit_items(touched, item_users)
                n_users_refreshed = int(neighbours.size)
        if sweeps:
            # implicit's fit keeps factors already set (it draws only missing ones): a warm start.
            inner.iterations = sweeps
            inner.fit(matrix, show_progress=False)
            inner.iterations = model.iterations
            n_items_refreshed, n_users_refreshed = matrix.shape[1], matrix.shape[0]
    return inner, n_items_refreshed, n_users_refreshed


def _fitted_model(
    model: ALSRecommender, inner: AlternatingLeastSquares, new_train: InteractionMatrix, provenance: dict[str, Any]
) -> ALSRecommender:
    """The unlearned :class:`ALSRecommender`, fitted state set as ``fit`` would, with its own version id.

    The version id hashes the new data, the parameters, the library versions
    and ``provenance`` (the method and the version unlearned from): an
    unlearned model never shares an id with a model retrained on the same data.
    """
    params = model.get_params()
    matrix = new_train.matrix
    out = ALSRecommender(**params, num_threads=model.num_threads)
    out.popularity_ = np.asarray((matrix > 0).sum(axis=0)).ravel().astype(np.float64)
    out.model_ = inner
    out.user_factors_ = inner.user_factors
    out.item_factors_ = inner.item_factors
    out.data_hash_ = new_train.content_hash()
    out.library_versions_ = dict(_library_versions())
    out.version_id_ = model_version_id(
        out.name, out.data_hash_, {**params, "unlearning": provenance}, out.library_versions_
    )
    out.fairness_weights_ = None  # a reweighted model is refused before this (_check_request)
    out.fairness_unweighted_ = None
    out.train_ = new_train
    return out


# -- measuring what remains ---------------------------------------------------------


def _positions(universe: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return np.asarray(
        pd.Index(np.asarray(universe, dtype=object).astype(str)).get_indexer(ids.astype(str)), dtype=np.int64
    )


def _common(first: np.ndarray, *others: np.ndarray) -> np.ndarray:
    """Ids of ``first`` (in its order) present in every one of ``others``."""
    mask = np.ones(len(first), dtype=bool)
    for other in others:
        mask &= _positions(other, np.asarray(first, dtype=object)) >= 0
    return np.asarray(first, dtype=object)[mask].astype(str)


def _factors(model: ALSRecommender, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(model.user_factors_, dtype=np.float64)[_positions(model.train_.user_ids, users)]
    v = np.asarray(model.item_factors_, dtype=np.float64)[_positions(model.train_.item_ids, items)]
    return u, v


def _relative_frobenius(ua: np.ndarray, va: np.ndarray, ub: np.ndarray, vb: np.ndarray) -> float:
    """``||Ua Va^T - Ub Vb^T||_F / ||Ub Vb^T||_F`` through the factors' Gram matrices (no dense scores)."""
    aa = np.sum((ua.T @ ua) * (va.T @ va))
    bb = np.sum((ub.T @ ub) * (vb.T @ vb))
    ab = np.sum((ua.T @ ub) * (va.T @ vb))
    return float(np.sqrt(max(aa - 2.0 * ab + bb, 0.0) / bb)) if bb > 0 else float("nan")


def _compare(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], seen: sp.csr_matrix, sample: np.ndarray, k: int
) -> dict[str, float]:
    (ua, va), (ub, vb) = a, b
    jaccard = np.empty(len(ua))
    for start in range(0, len(ua), 1024):
        stop = min(start + 1024, len(ua))
        top_a, _ = top_k_from_scores(ua[start:stop] @ va.T, k, exclude=seen[start:stop])
        top_b, _ = top_k_from_scores(ub[start:stop] @ vb.T, k, exclude=seen[start:stop])
        for row in range(stop - start):
            sa, sb = set(top_a[row][top_a[row] >= 0].tolist()), set(top_b[row][top_b[row] >= 0].tolist())
            jaccard[start + row] = len(sa & sb) / len(sa | sb) if sa | sb else 1.0
    scores_a, scores_b = ua[sample] @ va.T, ub[sample] @ vb.T
    ranks_a, ranks_b = stats.rankdata(scores_a, axis=1), stats.rankdata(scores_b, axis=1)
    spearman = [float(np.corrcoef(x, y)[0, 1]) for x, y in zip(ranks_a, ranks_b)]
    kendall = [float(stats.kendalltau(x, y).statistic) for x, y in zip(scores_a, scores_b)]
    return {
        "topk_jaccard_mean": float(jaccard.mean()),
        "topk_jaccard_p10": float(np.percentile(jaccard, 10)),
        "spearman_mean": float(np.nanmean(spearman)) if spearman else float("nan"),
        "kendall_mean": float(np.nanmean(kendall)) if kendall else float("nan"),
        "relative_frobenius": _relative_frobenius(ua, va, ub, vb),
    }


def _fold_in(row: sp.csr_matrix, v: np.ndarray, model: ALSRecommender) -> np.ndarray:
    """The exact least-squares user factor of ``row`` against item factors ``v`` (implicit's formula)."""
    conf = float(model.alpha) * row.data.astype(np.float64)
    y = v[row.indices]
    a = v.T @ v + float(model.regularization) * np.eye(v.shape[1]) + (y.T * (np.abs(conf) - 1.0)) @ y
    b = y.T @ np.where(conf > 0, conf, 0.0)
    return np.linalg.solve(a, b)


def _subject_fit(
    models: dict[str, ALSRecommender], original: ALSRecommender, forgotten: Sequence[str], items: np.ndarray, k: int
) -> dict[str, Any]:
    rows = original.train_.user_index(list(forgotten))
    if (rows < 0).any():
        raise DataError(
            f"residual_influence: {int((rows < 0).sum())} forgotten user id(s) are not in the original model"
        )
    cols = _positions(original.train_.item_ids, items)
    subject_rows = original.train_.matrix[rows][:, cols].tocsr()
    usable = [r for r in range(subject_rows.shape[0]) if 0 < subject_rows[r].nnz < len(items)]
    per_model: dict[str, dict[str, float]] = {}
    for name, m in models.items():
        v = np.asarray(m.item_factors_, dtype=np.float64)[_positions(m.train_.item_ids, items)]
        recalls, aucs = [], []
        for r in usable:
            row = subject_rows[r]
            scores = v @ _fold_in(row, v, m)
            own = np.zeros(len(items), dtype=bool)
            own[row.indices] = True
            top = np.argsort(-scores, kind="stable")[:k]
            recalls.append(own[top].sum() / min(k, int(own.sum())))
            ranks = stats.rankdata(scores)
            n_own = int(own.sum())
            aucs.append((ranks[own].sum() - n_own * (n_own + 1) / 2) / (n_own * (len(items) - n_own)))
        per_model[name] = {
            "own_items_recall_at_k": float(np.mean(recalls)) if recalls else float("nan"),
            "own_items_auc": float(np.mean(aucs)) if aucs else float("nan"),
        }
    return {"n_subjects": len(usable), **per_model}


def residual_influence(
    unlearned: ALSRecommender,
    retrained: ALSRecommender,
    *,
    original: ALSRecommender | None = None,
    forgotten: Sequence[str] | None = None,
    users: Sequence[str] | None = None,
    k: int = 10,
    n_sample: int = 200,
    random_state: int = 0,
) -> dict[str, Any]:
    """How far a fast-unlearned model is from one retrained from scratch without the subjects.

    Users and items are matched by id; the comparison runs over ``users``
    (default: every user the models share) and the items they share. Figures,
    for a pair of models ``(a, b)``:

    ``topk_jaccard_mean``, ``topk_jaccard_p10``
        Per user, ``|A & B| / |A | B|`` of the two top-``k`` lists (seen items
        excluded, as served); the mean and the 10th percentile over users. 1 is
        identical lists.
    ``spearman_mean``, ``kendall_mean``
        Per user, Spearman's rho and Kendall's tau-b between the two models'
        scores of every shared item, averaged over ``n_sample`` users drawn with
        ``random_state``. Ranking agreement over the whole catalogue, not only
        the head.
    ``relative_frobenius``
        ``||S_a - S_b||_F / ||S_b||_F`` with ``S = U V^T`` the score matrix over
        the users and items compared (exact, computed from the factors' Gram
        matrices). 0 is identical scores.

    With ``original``, the same figures between the original model and the
    retrained one come as the reference (``original_vs_retrained``): how much
    removing the subjects and retraining changed anything at all (the retrain
    also starts from a different random draw, since implicit draws the user
    factors first). ``residual_share`` then divides the unlearned model's
    distance by the original's (``1 - jaccard`` and the Frobenius figure):
    below 1, unlearning brought the model closer to the retrain than it was.
    For one subject among many these population figures sit at the noise floor
    of ALS itself (two retrains that differ only by their seed): compare with
    it before reading anything into them.

    With ``original`` and ``forgotten`` (evaluation only: these are the erased
    ids), ``subject`` says how well each model still fits the forgotten users'
    own rows: each row is folded in by an exact least-squares step against the
    model's item factors, and ``own_items_recall_at_k`` / ``own_items_auc`` say
    how high the user's own items then rank. A model that memorized the subject
    ranks them higher than one that never saw it.
    """
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ConfigError(
            f"The 'k' parameter of residual_influence must be an int in the range [1, inf). Got {k!r} instead."
        )
    if forgotten is not None and original is None:
        raise ConfigError("residual_influence: 'forgotten' needs 'original', the model that still holds their rows")
    for m in (unlearned, retrained, original):
        if m is not None:
            m.check_fitted("residual_influence")
    models = {
        "unlearned": unlearned,
        "retrained": retrained,
        **({"original": original} if original is not None else {}),
    }
    id_sets = [m.train_.user_ids for m in models.values()]
    if users is None:
        user_ids = _common(retrained.train_.user_ids, *id_sets)
    else:
        user_ids = np.atleast_1d(np.asarray(users, dtype=object)).astype(str)
        missing = [name for name, m in models.items() if (_positions(m.train_.user_ids, user_ids) < 0).any()]
        if missing:
            raise DataError(
                f"residual_influence: some of the given users are unknown to the {', '.join(missing)} model(s)"
            )
    item_ids = _common(retrained.train_.item_ids, *[m.train_.item_ids for m in models.values()])
    if len(user_ids) == 0 or len(item_ids) == 0:
        raise DataError(
            f"residual_influence: the models share {len(user_ids)} users and {len(item_ids)} items; nothing to compare"
        )
    seen = retrained.train_.matrix[_positions(retrained.train_.user_ids, user_ids)][
        :, _positions(retrained.train_.item_ids, item_ids)
    ].tocsr()
    rng = np.random.default_rng(random_state)
    sample = np.sort(rng.choice(len(user_ids), size=min(n_sample, len(user_ids)), replace=False))
    ref = _factors(retrained, user_ids, item_ids)
    report: dict[str, Any] = {"k": int(k), "n_users": len(user_ids), "n_items": len(item_ids), "n_sampled": len(sample)}
    report["unlearned_vs_retrained"] = _compare(_factors(unlearned, user_ids, item_ids), ref, seen, sample, k)
    if original is not None:
        report["original_vs_retrained"] = _compare(_factors(original, user_ids, item_ids), ref, seen, sample, k)
        un, orig = report["unlearned_vs_retrained"], report["original_vs_retrained"]
        report["residual_share"] = {
            "topk_jaccard": _ratio(1.0 - un["topk_jaccard_mean"], 1.0 - orig["topk_jaccard_mean"]),
            "relative_frobenius": _ratio(un["relative_frobenius"], orig["relative_frobenius"]),
        }
        if forgotten is not None:
            report["subject"] = _subject_fit(models, original, forgotten, item_ids, k)
    return report


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")
