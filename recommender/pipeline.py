"""The two jobs the command line runs: evaluate models on a split, and train a model.

Both take a loaded :class:`~recommender.data.Dataset` and return JSON-ready
results; the command line only loads, calls and prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recommender.als import ALSRecommender
from recommender.base import Recommender
from recommender.baselines import ItemKNNRecommender, PopularityRecommender, RandomRecommender
from recommender.data import Dataset, InteractionMatrix
from recommender.evaluate import Comparison, compare_models
from recommender.feedback import FeedbackConfig, to_implicit
from recommender.split import SplitConfig, SplitMatrices, split, train_test_matrices
from recommender.tuning import FAMILY_GRIDS, TuningResult, tune_als, tune_family, tune_item_knn

__all__ = [
    "EvaluationRun",
    "TrainingResult",
    "run_evaluation",
    "train_als",
    "user_segments",
    "item_categories_for",
    "family_side_inputs",
    "tag_coverage",
    "content_inputs",
]

MAX_SEGMENT_GROUPS = 12


def user_segments(dataset: Dataset, train: InteractionMatrix) -> dict[str, np.ndarray]:
    """User attributes with few distinct values, aligned with the training rows.

    These are the segments every metric is broken down by (gender, age band,
    occupation, ...). Attributes with many values (zip codes) are left out. A
    missing value stays missing (the evaluation reports those users as the group
    ``missing``, which no rule judges), never a name a real value could have.
    """
    users = dataset.users
    if users is None or users.empty:
        return {}
    aligned = users.reindex(pd.Index(train.user_ids.astype(str)))
    out = {}
    for column in aligned.columns:
        values = aligned[column]
        if values.nunique(dropna=True) <= MAX_SEGMENT_GROUPS:
            out[str(column)] = values.astype("string").to_numpy(dtype=object, na_value=None)
    return out


def item_categories_for(dataset: Dataset, train: InteractionMatrix) -> list[str | None] | None:
    """The ``categories`` of every training item column, or None when the data has none."""
    items = dataset.items
    if items is None or items.empty or "categories" not in items.columns:
        return None
    aligned = items["categories"].reindex(pd.Index(train.item_ids.astype(str)))
    return [None if pd.isna(c) else str(c) for c in aligned]


@dataclass(frozen=True)
class EvaluationRun:
    """Everything ``recgov evaluate`` reports."""

    dataset: dict[str, Any]
    split: dict[str, Any]
    feedback: dict[str, Any]
    tuning: dict[str, TuningResult]
    comparison: Comparison
    seconds: float
    models: dict[str, Recommender] = field(default_factory=dict, repr=False)
    """The fitted models (on the training part), for audits that inspect them."""
    matrices: SplitMatrices | None = field(default=None, repr=False)
    """The training and test matrices of the split."""
    families: dict[str, dict[str, Any]] | None = None
    """With ``families``: per family its declarations, parameters, fit seconds, carbon and tag coverage."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready document."""
        doc = {
            "dataset": self.dataset,
            "split": self.split,
            "feedback": self.feedback,
            "tuning": {name: result.to_dict() for name, result in self.tuning.items()},
            **self.comparison.to_dict(),
            "seconds": round(self.seconds, 3),
        }
        if self.families is not None:
            doc["families"] = self.families
        return doc


def content_inputs(model: Any, dataset: Dataset, train: InteractionMatrix) -> dict[str, Any]:
    """``{"items": table}`` for a family that reads item content, else ``{}``: what its ``fit`` takes besides ``train``.

    The table holds the rows of the training items only, so the model ranks the
    same items as every other model of the comparison. A data set whose item
    table lacks the text columns the model reads gives nothing: the model then
    runs without content, and its tags say so (``content_fallback``).
    """
    if "item_text" not in getattr(model, "inputs", ()):
        return {}
    items = dataset.items
    columns = set(getattr(model, "text_columns", ()) or ())
    if items is None or len(items) == 0 or not columns or not columns <= set(items.columns):
        return {}
    ids = pd.Index(np.asarray(train.item_ids, dtype=object).astype(str))
    return {"items": items.loc[np.asarray(items.index.astype(str).isin(ids), dtype=bool)]}


def tag_coverage(model: Any, users: np.ndarray, k: int) -> dict[str, Any]:
    """Serve ``users`` their top-``k`` lists and explain every list: the share of served items with a tag.

    Also counts the tags by kind and how many are exact. A family meets the contract when the share is 1.0.
    A family with ``explain_batch`` (EASE, item-kNN, PureSVD: decompositions over the history) explains every
    list in one vectorised call; the others one call per user, as they serve them.
    """
    batch = model.recommend(users, k=k)
    served = tagged = exact = 0
    kinds: dict[str, int] = {}
    lists = [[str(i) for i in batch.item_ids[row] if i is not None] for row in range(len(batch.user_ids))]
    batched = getattr(model, "explain_batch", None)
    every = batched([str(u) for u in batch.user_ids], lists) if batched is not None else None
    for row, user in enumerate(batch.user_ids):
        items = lists[row]
        if not items:
            continue
        tags = every[row] if every is not None else model.explain(str(user), items)
        served += len(items)
        for per_item in tags:
            if per_item:
                tagged += 1
                exact += int(all(t.exact for t in per_item))
            for tag in per_item:
                kinds[tag.kind] = kinds.get(tag.kind, 0) + 1
    return {
        "served_items": served,
        "tagged_items": tagged,
        "share_tagged": round(tagged / served, 6) if served else None,
        "share_exact": round(exact / served, 6) if served else None,
        "tag_kinds": dict(sorted(kinds.items())),
    }


def _carbon_dict(meter: Any) -> dict[str, Any] | None:
    facts = getattr(meter, "facts", None)
    if facts is None:
        return None
    return facts.model_dump() if hasattr(facts, "model_dump") else dict(facts)


def family_side_inputs(
    model: Recommender, dataset: Dataset, train: InteractionMatrix, train_events: pd.DataFrame | None
) -> dict[str, Any]:
    """The side inputs a family's ``fit`` takes besides the matrix, for the inputs it declares.

    ``item_categories`` (aligned with ``train``'s items) for a family declaring
    ``item_category`` whose ``fit`` takes them; the training ``events`` for one
    declaring ``session_id`` whose ``fit`` takes them. The pack's minimisation
    allow-list has already been checked against the declared inputs, so a
    family gets what it declared and nothing else.
    """
    import inspect

    accepts = inspect.signature(model.fit).parameters
    inputs = getattr(model, "inputs", frozenset())
    side: dict[str, Any] = {}
    if "item_category" in inputs and "item_categories" in accepts:
        side["item_categories"] = item_categories_for(dataset, train)
    if "session_id" in inputs and "events" in accepts and train_events is not None:
        side["events"] = train_events
    return side


def _family_models(
    names: Sequence[str], train: InteractionMatrix, *, k: int, tune: bool, n_trials: int, als_params: dict[str, Any] | None,
    random_state: int, show_progress: bool,
) -> tuple[dict[str, Any], dict[str, TuningResult]]:  # fmt: skip
    """Unfitted models of the chosen families (the baselines added): ALS and item-kNN tuned as without families,
    EASE, PureSVD, user-kNN and BPR over :data:`recommender.tuning.FAMILY_GRIDS` (each on a validation split of
    the training matrix), the others at their defaults."""
    from recommender.family import BASELINE_FAMILIES, families

    registry = families()
    chosen = list(dict.fromkeys([*names, *BASELINE_FAMILIES]))
    tuning: dict[str, TuningResult] = {}
    tuned: dict[str, dict[str, Any]] = {}
    if "als" in chosen:
        if tune and als_params is None:
            tuning["als"] = tune_als(train, n_trials=n_trials, k=k, random_state=random_state, show_progress=show_progress)
            als_params = dict(tuning["als"].best_params)
        tuned["als"] = {key: v for key, v in (als_params or {}).items() if key != "random_state"}
    if "item_knn" in chosen and tune:
        tuning["item_knn"] = tune_item_knn(train, k=k, random_state=random_state, show_progress=show_progress)
        tuned["item_knn"] = dict(tuning["item_knn"].best_params)
    for name in chosen:
        if tune and name in FAMILY_GRIDS:
            tuning[name] = tune_family(name, train, k=k, random_state=random_state, show_progress=show_progress)
            tuned[name] = dict(tuning[name].best_params)
    models = {}
    for name in chosen:
        family = registry[name]
        params = {**family.default_params, **tuned.get(name, {})}
        if "random_state" in (family.parameter_names() or []):
            params["random_state"] = random_state
        models[name] = family.create(**params)
    return models, tuning


def dataset_summary(dataset: Dataset) -> dict[str, Any]:
    """Name, source and sizes of a dataset, for reports."""
    ev = dataset.events
    return {
        "name": dataset.name,
        "source": dataset.source,
        "n_events": int(len(ev)),
        "n_users": int(ev["user_id"].nunique()),
        "n_items": int(ev["item_id"].nunique()),
    }


def run_evaluation(
    dataset: Dataset,
    *,
    split_config: SplitConfig,
    feedback: FeedbackConfig,
    k: int = 10,
    tune: bool = True,
    n_trials: int = 20,
    als_params: dict[str, Any] | None = None,
    random_state: int = 0,
    show_progress: bool = False,
    families: Sequence[str] | None = None,
    measure: Callable[[str], AbstractContextManager[Any]] | None = None,
) -> EvaluationRun:
    """Split, tune on a validation part of the training data, fit and compare.

    ALS and item-kNN are tuned on a validation split carved from the training
    matrix only (never the test set); popularity and random need no tuning. All
    four models are then fitted on the whole training matrix and evaluated on the
    same test positives. Fixed ``als_params`` (an audited model's) skip the ALS
    tuning and are used as given.

    With ``families`` (names from :func:`recommender.family.parse_family_list`)
    the models are those families' (ALS and item-kNN tuned as above; EASE,
    PureSVD, user-kNN and BPR over small grids on the same kind of validation
    split, :func:`recommender.tuning.tune_family`; the rest at their defaults) plus the popularity and random baselines, and the run also
    reports per family its declarations, fit seconds, the carbon of its fit
    (``measure(name)`` is a context manager around each fit whose value's
    ``facts`` hold energy and emissions: the caller's meter, so this core needs
    no governance) and the share of served items its tags cover.
    """
    started = time.perf_counter()
    train_events, test_events = split(dataset.events, split_config)
    mats: SplitMatrices = train_test_matrices(train_events, test_events, feedback)
    train = mats.train
    if families is not None:
        return _evaluate_families(
            dataset, mats, families, split_config=split_config, feedback=feedback, k=k, tune=tune, n_trials=n_trials,
            als_params=als_params, random_state=random_state, show_progress=show_progress, measure=measure, started=started,
            train_events=train_events,
        )  # fmt: skip
    tuning: dict[str, TuningResult] = {}
    knn_params: dict[str, Any] = {}
    if tune and als_params is None:
        tuning["als"] = tune_als(train, n_trials=n_trials, k=k, random_state=random_state, show_progress=show_progress)
        als_params = dict(tuning["als"].best_params)
    if tune:
        tuning["item_knn"] = tune_item_knn(train, k=k, random_state=random_state, show_progress=show_progress)
        knn_params = dict(tuning["item_knn"].best_params)
    als_params = {key: v for key, v in (als_params or {}).items() if key != "random_state"}
    models: dict[str, Recommender] = {
        "als": ALSRecommender(**als_params, random_state=random_state),
        "item_knn": ItemKNNRecommender(**knn_params),
        "popularity": PopularityRecommender(),
        "random": RandomRecommender(random_state=random_state),
    }
    # A fairness-reweighted recipe (an audited model's) needs its group labels, read here to weight, never as input.
    from recommender.fair_training import fairness_groups_for, parse_fair_reweighting

    fair_groups = fairness_groups_for(dataset, train, parse_fair_reweighting(als_params.get("fairness_reweighting")))
    for name, model in models.items():
        if name == "als":
            models["als"].fit(train, fairness_groups=fair_groups)  # type: ignore[call-arg]
        else:
            model.fit(train)
    comparison = compare_models(
        models,
        train,
        mats.test,
        k,
        segments=user_segments(dataset, train),
        item_categories=item_categories_for(dataset, train),
        show_progress=show_progress,
    )
    return EvaluationRun(
        dataset=dataset_summary(dataset),
        split={**split_config.model_dump(), **mats.to_dict()},
        feedback=feedback.model_dump(),
        tuning=tuning,
        comparison=comparison,
        seconds=time.perf_counter() - started,
        models=models,
        matrices=mats,
    )


def _evaluate_families(
    dataset: Dataset, mats: SplitMatrices, names: Sequence[str], *, split_config: SplitConfig, feedback: FeedbackConfig,
    k: int, tune: bool, n_trials: int, als_params: dict[str, Any] | None, random_state: int, show_progress: bool,
    measure: Callable[[str], AbstractContextManager[Any]] | None, started: float, train_events: pd.DataFrame | None = None,
) -> EvaluationRun:  # fmt: skip
    """:func:`run_evaluation` over model families (see there)."""
    train = mats.train
    models, tuning = _family_models(
        names, train, k=k, tune=tune, n_trials=n_trials, als_params=als_params, random_state=random_state, show_progress=show_progress
    )
    report: dict[str, dict[str, Any]] = {}
    for name, model in models.items():
        began = time.perf_counter()
        side = family_side_inputs(model, dataset, train, train_events)
        with measure(name) if measure is not None else nullcontext() as meter:
            model.fit(train, **content_inputs(model, dataset, train), **side)
        seconds = time.perf_counter() - began
        report[name] = {
            "inputs": sorted(model.inputs),
            "erasure": model.erasure.value,
            "params": model.get_params(),
            "version_id": getattr(model, "version_id_", None),
            "fit_seconds": round(seconds, 3),
            "carbon": _carbon_dict(meter),
        }
    comparison = compare_models(
        models,
        train,
        mats.test,
        k,
        segments=user_segments(dataset, train),
        item_categories=item_categories_for(dataset, train),
        show_progress=show_progress,
    )
    test_users = np.asarray(mats.test.user_ids, dtype=object)
    for name, model in models.items():
        report[name]["tags"] = tag_coverage(model, test_users, k)
        ndcg = comparison.evaluations[name].metrics.get("ndcg")
        report[name]["ndcg"] = None if ndcg is None else float(ndcg)
    return EvaluationRun(
        dataset=dataset_summary(dataset),
        split={**split_config.model_dump(), **mats.to_dict()},
        feedback=feedback.model_dump(),
        tuning=tuning,
        comparison=comparison,
        seconds=time.perf_counter() - started,
        models=models,
        matrices=mats,
        families=report,
    )


@dataclass(frozen=True)
class TrainingResult:
    """A fitted ALS model with what it was trained on."""

    model: ALSRecommender
    matrix: InteractionMatrix
    tuning: TuningResult | None
    started_at: float
    ended_at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "model_version": self.model.version_id_,
            "params": self.model.get_params(),
            "data_hash": self.model.data_hash_,
            "library_versions": self.model.library_versions_,
            "matrix": {"users": self.matrix.n_users, "items": self.matrix.n_items, "interactions": self.matrix.nnz},
            "tuning": self.tuning.to_dict() if self.tuning else None,
            "seconds": round(self.ended_at - self.started_at, 3),
        }


def train_als(
    dataset: Dataset,
    *,
    feedback: FeedbackConfig,
    params: dict[str, Any] | None = None,
    tune: bool = False,
    n_trials: int = 20,
    random_state: int = 0,
    show_progress: bool = False,
) -> TrainingResult:
    """Convert the events and fit ALS on all of them (tuning first when asked).

    Explicit ``params`` override the tuned or default values.
    """
    started = time.time()
    matrix = to_implicit(dataset.events, feedback)
    tuning = tune_als(matrix, n_trials=n_trials, random_state=random_state, show_progress=show_progress) if tune else None
    chosen: dict[str, Any] = dict(tuning.best_params) if tuning else {}
    chosen.update(params or {})
    # Fairness reweighting reads the group labels here, once, to scale the confidence values: never a model input.
    from recommender.fair_training import fairness_groups_for, parse_fair_reweighting

    groups = fairness_groups_for(dataset, matrix, parse_fair_reweighting(chosen.get("fairness_reweighting")))
    model = ALSRecommender(**chosen, random_state=random_state).fit(
        matrix, show_progress=show_progress, fairness_groups=groups
    )
    return TrainingResult(model=model, matrix=matrix, tuning=tuning, started_at=started, ended_at=time.time())
