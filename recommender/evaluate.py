"""Offline evaluation of fitted recommenders on a held-out test matrix.

:func:`evaluate_model` ranks items for every test user with at least one test
positive (``filter_seen=True``, in batches; a plain ALS model is scored in
blocks by :mod:`recommender.scoring`, the same lists as its ``recommend_index``
without the per-batch sparse slicing), then measures accuracy
(:mod:`recommender.metrics`), beyond-accuracy properties of the lists (coverage,
exposure Gini, novelty, intra-list diversity, popularity, long-tail share) and
accuracy per user segment (training-activity buckets and any user attribute).
:func:`compare_models` does it for several models and adds each model's lift
over the popularity and random baselines.

Both return the records of :mod:`recommender.evaluation_results` (re-exported
here), which keep the per-user arrays (for fairness audits) and offer
``to_dict()`` (JSON-ready: plain floats, ``None`` for undefined values) and
``table_rows()`` (formatted strings for a console table).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from recommender import metrics as M
from recommender.base import MAX_LIST_LENGTH, TOO_LONG, Recommender
from recommender.data import InteractionMatrix
from recommender.errors import ConfigError, DataError
from recommender.fairness._common import MISSING_GROUP, RESERVED_LABEL, reserved_label
from recommender.evaluation_results import BEYOND_METRICS, Comparison, ModelEvaluation
from recommender.scoring import ranked_lists

__all__ = [
    "ModelEvaluation",
    "Comparison",
    "evaluate_model",
    "compare_models",
    "activity_segments",
    "BEYOND_METRICS",
    "BAD_K",
    "UNIVERSE_MISMATCH",
    "MODEL_UNIVERSE_MISMATCH",
    "BAD_SEGMENT",
]

BAD_K = TOO_LONG.replace("{max}", str(MAX_LIST_LENGTH))
BAD_BATCH = "The 'batch_size' parameter of {func} must be an int in the range [1, inf) or None. Got {got!r} instead."
UNIVERSE_MISMATCH = (
    "{func}: the test matrix ({test_shape}) is not on the training matrix's users and items "
    "({train_shape}); build both with recommender.split.train_test_matrices."
)
MODEL_UNIVERSE_MISMATCH = (
    "{func}: model {model!r} was fitted on a different matrix ({model_shape}) than the training "
    "matrix given ({train_shape}); fit it on that matrix first."
)
BAD_SEGMENT = (
    "{func}: segment {name!r} has {got} values but the training matrix has {n_users} users; "
    "give one value per training user row."
)
ACTIVITY_LABELS: tuple[str, ...] = ("light", "medium", "heavy")

_DEFAULT_CELLS = 2**25  # recommendation batch of at most ~32M scores (128 MB of float32)


# -- segments ---------------------------------------------------------------------
def activity_segments(
    train: InteractionMatrix, rows: np.ndarray | None = None, labels: Sequence[str] = ACTIVITY_LABELS
) -> pd.Categorical:
    """Label each training user by activity: quantile buckets of their training positives.

    The bucket edges are the ``1/len(labels)``, ``2/len(labels)``, ... quantiles
    of the number of training positives of the users in ``rows`` (by default all
    users), so the buckets hold about equal numbers of those users when counts
    are not tied; a user exactly on an edge goes to the lower bucket (with heavy
    ties some buckets stay empty). Returns one label per training row, as an
    ordered categorical in the order of ``labels``.
    """
    labels = list(labels)
    if not labels or len(set(labels)) != len(labels):
        raise ConfigError(f"activity_segments needs distinct labels. Got {labels!r} instead.")
    activity = np.diff(sp.csr_matrix(train.matrix > 0).indptr)
    ref = activity if rows is None else activity[rows]
    n = len(labels)
    edges = np.quantile(ref, np.arange(1, n) / n) if len(ref) else np.zeros(n - 1)
    bucket = np.searchsorted(edges, activity, side="left")
    return pd.Categorical.from_codes(bucket, categories=labels, ordered=True)


def _as_segment(values: object) -> pd.Categorical:
    if isinstance(values, pd.Series):
        values = values.array
    if isinstance(values, pd.Categorical):
        return values
    return pd.Categorical(np.asarray(values, dtype=object))


def _segment_means(
    per_user: Mapping[str, np.ndarray], segments: Mapping[str, pd.Categorical], rows: np.ndarray
) -> dict[str, dict[str, dict[str, float]]]:
    frame = pd.DataFrame({name: per_user[name] for name in M.ACCURACY_METRICS})
    out: dict[str, dict[str, dict[str, float]]] = {}
    for seg, values in segments.items():
        labels = values[rows]
        if labels.isna().any():
            labels = labels.add_categories([MISSING_GROUP]).fillna(MISSING_GROUP)
        grouped = frame.groupby(labels, observed=True, sort=True)
        means, counts = grouped.mean(), grouped.size()
        out[seg] = {
            str(group): {"n_users": int(counts[group]), **{m: float(means.loc[group, m]) for m in means.columns}}
            for group in means.index
        }
    return out


# -- evaluation -------------------------------------------------------------------
def _same_universe(a: InteractionMatrix, b: InteractionMatrix) -> bool:
    if a is b:
        return True
    if a.matrix.shape != b.matrix.shape:
        return False
    return (a.user_ids is b.user_ids or np.array_equal(a.user_ids, b.user_ids)) and (
        a.item_ids is b.item_ids or np.array_equal(a.item_ids, b.item_ids)
    )


def _check_k(func: str, k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_LIST_LENGTH:
        raise ConfigError(BAD_K.format(func=func, got=k))
    return int(k)


def _check_inputs(func: str, train: InteractionMatrix, test: InteractionMatrix, k: object, batch_size: object) -> int:
    k = _check_k(func, k)
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1
    ):
        raise ConfigError(BAD_BATCH.format(func=func, got=batch_size))
    if not _same_universe(train, test):
        raise DataError(
            UNIVERSE_MISMATCH.format(func=func, test_shape=test.matrix.shape, train_shape=train.matrix.shape)
        )
    return k


def _check_segments(
    func: str, segments: Mapping[str, Any] | None, n_users: int, user_ids: Any = None
) -> dict[str, pd.Categorical]:
    out = {}
    for name, values in (segments or {}).items():
        if np.ndim(values) != 1 or len(values) != n_users:
            got = len(values) if np.ndim(values) else 1
            raise DataError(BAD_SEGMENT.format(func=func, name=name, got=got, n_users=n_users))
        segment = _as_segment(values)
        if any(isinstance(c, str) and c.strip().casefold() == MISSING_GROUP for c in segment.categories):
            labels = np.asarray(segment, dtype=object)
            row = reserved_label(labels)
            if row is not None:  # its users would be reported with those whose segment is missing, as one group
                where = f"user row {row}" if user_ids is None else f"user {str(user_ids[row])!r}"
                raise DataError(RESERVED_LABEL.format(what=f"{func}: segment {name!r}", where=where, value=labels[row], missing=MISSING_GROUP))
        out[str(name)] = segment
    return out


@dataclass(frozen=True)
class _Shared:
    """What every model's evaluation on one split shares (computed once)."""

    train: InteractionMatrix
    relevant: sp.csr_matrix  # positives of the evaluated users, rows aligned with `rows`
    rows: np.ndarray
    popularity: np.ndarray
    n_active: int
    categories: sp.csr_matrix | None
    segments: dict[str, pd.Categorical]
    hashes: tuple[str, str]


def _prepare(
    func: str,
    train: InteractionMatrix,
    test: InteractionMatrix,
    segments: Mapping[str, Any] | None,
    item_categories: Any,
    head_share: object,
) -> _Shared:
    if isinstance(head_share, bool) or not isinstance(head_share, (int, float)) or not 0 < head_share <= 1:
        raise ConfigError(M.BAD_HEAD_SHARE.format(func=func, got=head_share))
    extra = _check_segments(func, segments, train.n_users, train.user_ids)
    relevant = sp.csr_matrix(test.matrix > 0)
    relevant.sort_indices()
    rows = np.flatnonzero(np.diff(relevant.indptr) > 0)
    all_segments = {} if "activity" in extra else {"activity": activity_segments(train, rows)}
    all_segments.update(extra)
    cats = None if item_categories is None else M.item_category_matrix(item_categories, n_items=train.n_items)
    return _Shared(
        train=train,
        relevant=relevant[rows],
        rows=rows,
        popularity=M.item_popularity(train.matrix),
        n_active=int((np.diff(train.matrix.indptr) > 0).sum()),
        categories=cats,
        segments=all_segments,
        hashes=(train.content_hash(), test.content_hash()),
    )


def _evaluate(
    func: str,
    model: Recommender,
    shared: _Shared,
    k: int,
    *,
    label: str | None,
    batch_size: int | None,
    head_share: float,
    show_progress: bool,
) -> ModelEvaluation:
    started = time.perf_counter()
    model.check_fitted(func)
    label = label or str(getattr(model, "name", type(model).__name__))
    train, rows = shared.train, shared.rows
    if not _same_universe(model.train_, train):
        raise DataError(
            MODEL_UNIVERSE_MISMATCH.format(
                func=func, model=label, model_shape=model.train_.matrix.shape, train_shape=train.matrix.shape
            )
        )
    n_items = train.n_items
    if batch_size is None:
        batch_size = int(np.clip(_DEFAULT_CELLS // max(n_items, 1), 64, 8192))

    recommended = np.full((len(rows), k), -1, dtype=np.int64)
    fallback = np.zeros(len(rows), dtype=bool)
    with tqdm(total=len(rows), disable=not show_progress, desc=f"evaluate {label}", unit="user") as bar:
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            idx, fb = ranked_lists(model, batch, k, batch_size=len(batch))
            recommended[start : start + len(batch)] = idx
            fallback[start : start + len(batch)] = fb
            bar.update(len(batch))

    ranking = M.ranking_metrics(recommended, shared.relevant, k)
    per_user = dict(ranking.per_user)
    per_user["novelty"] = M.novelty(recommended, shared.popularity, shared.n_active)
    per_user["average_popularity"] = M.average_popularity(recommended, shared.popularity)
    per_user["long_tail_share"] = M.long_tail_share(recommended, shared.popularity, head_share)
    if shared.categories is not None:
        per_user["intra_list_diversity"] = M.intra_list_diversity(recommended, shared.categories)
    beyond: dict[str, float | None] = {
        "coverage": M.catalog_coverage(recommended, n_items),
        "exposure_gini": M.exposure_gini(recommended, n_items),
        "exposure_gini_weighted": M.exposure_gini(recommended, n_items, position_weighted=True),
        "novelty": M.defined_mean(per_user["novelty"]),
        "intra_list_diversity": (
            M.defined_mean(per_user["intra_list_diversity"]) if shared.categories is not None else None
        ),
        "average_popularity": M.defined_mean(per_user["average_popularity"]),
        "long_tail_share": M.defined_mean(per_user["long_tail_share"]),
    }
    return ModelEvaluation(
        model=label,
        params=dict(model.get_params()),
        k=k,
        user_index=rows,
        recommended=recommended,
        per_user=per_user,
        metrics=ranking.mean(),
        beyond=beyond,
        segments=_segment_means(per_user, shared.segments, rows),
        n_test_users=len(rows),
        n_fallback=int(fallback.sum()),
        seconds=time.perf_counter() - started,
        train_hash=shared.hashes[0],
        test_hash=shared.hashes[1],
    )


def evaluate_model(
    model: Recommender,
    train: InteractionMatrix,
    test: InteractionMatrix,
    k: int = 10,
    *,
    segments: Mapping[str, Any] | None = None,
    item_categories: Sequence[Iterable[object] | str | None] | sp.spmatrix | sp.sparray | None = None,
    batch_size: int | None = None,
    head_share: float = 0.8,
    label: str | None = None,
    show_progress: bool = False,
) -> ModelEvaluation:
    """Evaluate a fitted model on the test positives.

    Every user with at least one test positive gets a top-``k`` list
    (``recommend_index(..., filter_seen=True)``, in batches to bound memory);
    users without one are not evaluated (see :mod:`recommender.metrics`).

    Parameters
    ----------
    model:
        A :class:`~recommender.base.Recommender` fitted on ``train``.
    train, test:
        Matrices on the same users and items (see
        :func:`recommender.split.train_test_matrices`).
    k:
        List length.
    segments:
        Extra user segments: name -> labels with one entry per training user row
        (array, Series or Categorical; a categorical keeps its category order),
        e.g. a demographic attribute. Missing labels form the group ``"missing"``.
        An ``activity`` segment (:func:`activity_segments`: tertiles
        light/medium/heavy of training positives among the evaluated users) is
        always added unless a segment of that name is given.
    item_categories:
        Categories per item column (sparse indicator, or one set or
        ``"|"``-separated string per item) for intra-list diversity; without it
        diversity is None.
    batch_size:
        Users per ``recommend_index`` call; by default ``2**25 // n_items``
        clipped to [64, 8192], so one batch's dense scores stay near 128 MB.
    head_share:
        Share of training interactions that defines the popular head for the
        long-tail share (see :func:`recommender.metrics.long_tail_items`).
    label:
        The name to report (default: the model's ``name``).
    show_progress:
        Show a tqdm progress bar over the users.

    Raises
    ------
    ConfigError
        For a bad ``k`` or ``batch_size``.
    DataError
        When ``test`` is not on ``train``'s universes, the model was fitted on
        other data, or a segment has the wrong length.
    NotFittedError
        When the model is not fitted.
    """
    func = "evaluate_model"
    k = _check_inputs(func, train, test, k, batch_size)
    shared = _prepare(func, train, test, segments, item_categories, head_share)
    return _evaluate(
        func, model, shared, k, label=label, batch_size=batch_size, head_share=head_share, show_progress=show_progress
    )


_BASELINE_CLASSES = {"PopularityRecommender": "popularity", "RandomRecommender": "random"}


def _find_baselines(models: Mapping[str, Recommender]) -> dict[str, str]:
    found: dict[str, str] = {}
    for label, model in models.items():
        kind = _BASELINE_CLASSES.get(type(model).__name__) or (
            getattr(model, "name", None) if getattr(model, "name", None) in ("popularity", "random") else None
        )
        if kind and kind not in found:
            found[kind] = label
    return found


def _ratio(value: float, base: float) -> float | None:
    if not (np.isfinite(value) and np.isfinite(base)) or base == 0:
        return None
    return float(value / base)


def compare_models(
    models: Mapping[str, Recommender],
    train: InteractionMatrix,
    test: InteractionMatrix,
    k: int = 10,
    *,
    baselines: Mapping[str, str] | None = None,
    segments: Mapping[str, Any] | None = None,
    item_categories: Sequence[Iterable[object] | str | None] | sp.spmatrix | sp.sparray | None = None,
    batch_size: int | None = None,
    head_share: float = 0.8,
    show_progress: bool = False,
) -> Comparison:
    """Evaluate several fitted models on one split and compare them with the baselines.

    Parameters
    ----------
    models:
        Label -> fitted model (all fitted on ``train``).
    baselines:
        Baseline kind -> label in ``models``, e.g. ``{"popularity": "pop"}``. By
        default a :class:`PopularityRecommender` / :class:`RandomRecommender` (or a
        model whose ``name`` is ``"popularity"`` / ``"random"``) is found
        automatically; a kind without a model is simply not reported.
    train, test, k, segments, item_categories, batch_size, head_share, show_progress:
        As for :func:`evaluate_model`.

    Returns
    -------
    Comparison
        The evaluations and, for every model (baselines included, where it is 1),
        the lift of each accuracy metric over each baseline present:
        ``mean(model) / mean(baseline)``.
    """
    func = "compare_models"
    k = _check_inputs(func, train, test, k, batch_size)
    if not models:
        raise ConfigError("compare_models needs at least one model.")
    if baselines is None:
        baselines = _find_baselines(models)
    else:
        unknown = [label for label in baselines.values() if label not in models]
        if unknown:
            raise ConfigError(
                f"compare_models: baseline model(s) {', '.join(map(repr, unknown))} are not among the models "
                f"({', '.join(map(repr, models))})."
            )
    shared = _prepare(func, train, test, segments, item_categories, head_share)
    evaluations = {
        label: _evaluate(
            func, model, shared, k, label=label, batch_size=batch_size, head_share=head_share, show_progress=show_progress
        )
        for label, model in models.items()
    }
    lift = {
        label: {
            kind: {m: _ratio(ev.metrics[m], evaluations[base].metrics[m]) for m in M.ACCURACY_METRICS}
            for kind, base in baselines.items()
        }
        for label, ev in evaluations.items()
    }
    return Comparison(k=k, evaluations=evaluations, baselines=dict(baselines), lift=lift)
