"""The audit of the configured re-ranking: what it costs in accuracy and what it buys, side by side.

:func:`rerank_evaluation` re-ranks the audited model's lists the way the
serving path does (the model's top ``reranking.candidates`` per user, seen
items filtered, the pack's steps in order, the same side arrays and per-user
seeds) for every evaluated test user of an
:class:`~recommender.pipeline.EvaluationRun`, and evaluates the resulting top-k
lists with :func:`recommender.evaluate.evaluate_model` itself, so the served
and the plain lists are measured by the same code on the same users.

:func:`tradeoff_summary` then puts the two evaluations and their fairness facts
next to each other: accuracy lost, beyond-accuracy figures, provider exposure,
consumer gaps and how often each constraint step's constraint held before and
after.

Exposure gap. For a provider group ``g``, ``exposure_ratio(g)`` is its share of
the lists' attention over its share of the users' test positives (1 is
exposure in proportion to relevance; see :mod:`governance.collect_fairness`).
The *exposure gap* is the largest relative deviation from that over the groups,
``max_g |exposure_ratio(g) - 1|``: it does not depend on which group the pack
protects, and a re-ranking that over-corrects (the favoured group now
under-exposed) shows up in it too.

>>> from governance.policy import parse_pack
>>> pack = parse_pack("apiVersion: recgov/v1\\nmetadata: {name: p, version: 1.0.0, owner: o}\\n").pack
>>> rerank_evaluation(None, None, pack, 10)
Traceback (most recent call last):
...
recommender.errors.ConfigError: rerank_evaluation: the pack does not enable re-ranking; set reranking.enabled: true and give at least one step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from governance.facts import FairnessFacts, GroupMetricFacts
from governance.rerank import (
    Candidates,
    Pipeline,
    Reason,
    Reranker,
    build_pipeline,
    history_category_distribution,
    history_group_distribution,
)
from governance.rerank.groups import provider_codes
from recommender import metrics as M
from recommender.base import Recommender
from recommender.data import Dataset, InteractionMatrix
from recommender.errors import ConfigError, DataError
from recommender.evaluate import BEYOND_METRICS, ModelEvaluation, evaluate_model

__all__ = [
    "NOT_ENABLED",
    "NOT_SIDE_BY_SIDE",
    "NO_MATRICES",
    "RERANK_SUFFIX",
    "UNKNOWN_MODEL",
    "RerankedEvaluation",
    "exposure_gap",
    "rerank_evaluation",
    "rerank_side_arrays",
    "reranking_enabled",
    "tradeoff_summary",
]

RERANK_SUFFIX = "+rerank"
"""The label of the re-ranked lists is the model's label plus this (``als+rerank``)."""

NOT_ENABLED = (
    "rerank_evaluation: the pack does not enable re-ranking; set reranking.enabled: true and give at least one step."
)
NO_MATRICES = "rerank_evaluation: the evaluation run keeps no train/test matrices; run it with recommender.pipeline.run_evaluation."
UNKNOWN_MODEL = "rerank_evaluation: model {model!r} is not in the evaluation run; its models are: {known}."
NOT_SIDE_BY_SIDE = (
    "tradeoff_summary: the plain ({plain}) and re-ranked ({reranked}) evaluations are not of the same users and "
    "split; re-rank the plain model's own evaluation run."
)

_BATCH_CELLS = 2**25
"""Candidate batches score at most this many (user, item) pairs at once (as :func:`evaluate_model` does)."""


# -- the re-ranked evaluation ------------------------------------------------------------------
@dataclass(frozen=True)
class RerankedEvaluation(ModelEvaluation):
    """A :class:`~recommender.evaluate.ModelEvaluation` of re-ranked lists, with what the re-ranking did.

    Everything that reads a ``ModelEvaluation`` (fairness facts, reports) reads
    this one too. The extra attributes:

    Attributes
    ----------
    base_model:
        The label of the model whose candidates were re-ranked.
    pipeline:
        The steps as ``{"name", "params"}`` (what the pack says).
    pipeline_hash:
        :attr:`governance.rerank.Pipeline.config_hash` of the steps.
    steps:
        The step labels (``fair_star``, ``mmr``, ``mmr_2``, ...).
    n_candidates:
        How many of the model's best items each list was re-ranked from.
    moves:
        ``(n, k)`` :class:`~governance.rerank.Reason` code of every place, rows
        aligned with ``user_index``.
    constraints_met, constraints_met_plain:
        Step label -> ``(n,)`` whether the final (resp. the plain model's top-k)
        list meets the step's constraint; only steps that state one
        (``fair_star``, ``exposure_cap``).
    """

    base_model: str
    pipeline: list[dict[str, Any]]
    pipeline_hash: str
    steps: tuple[str, ...]
    n_candidates: int
    moves: np.ndarray
    constraints_met: dict[str, np.ndarray]
    constraints_met_plain: dict[str, np.ndarray]

    def reranking_summary(self) -> dict[str, Any]:
        """JSON-ready: the steps, places per reason, and per constraint the share of lists meeting it."""
        filled = self.recommended >= 0
        codes = np.bincount(self.moves[filled].astype(np.int64), minlength=len(Reason))
        return {
            "base_model": self.base_model,
            "steps": self.pipeline,
            "pipeline_hash": self.pipeline_hash,
            "candidates": self.n_candidates,
            "places_by_reason": {r.name: int(codes[r]) for r in Reason},
            "constraints_met": {
                label: {"plain": _share(self.constraints_met_plain[label]), "reranked": _share(met)}
                for label, met in self.constraints_met.items()
            },
        }

    def to_dict(self, *, per_user: bool = False) -> dict[str, Any]:
        """:meth:`ModelEvaluation.to_dict` plus ``reranking`` (:meth:`reranking_summary`)."""
        return {**super().to_dict(per_user=per_user), "reranking": self.reranking_summary()}


class _ServedLists(Recommender):
    """Lists computed beforehand, served by training row: how :func:`evaluate_model` reads the re-ranked lists."""

    name = "reranked"

    def __init__(self, base: Recommender, rows: np.ndarray, lists: np.ndarray, params: dict[str, Any]) -> None:
        self.train_ = base.train_
        self.popularity_ = base.popularity_
        self._rows, self._lists, self._params = rows, lists, params

    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        raise ConfigError("re-ranked lists are computed by rerank_evaluation, not fitted")

    def _recommend_known(self, user_index: np.ndarray, k: int, *, filter_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        pos = np.minimum(np.searchsorted(self._rows, user_index), len(self._rows) - 1)
        if len(self._rows) == 0 or not np.array_equal(self._rows[pos], user_index):
            raise DataError("re-ranked lists were asked for users that were not re-ranked")
        lists = np.full((len(user_index), k), -1, dtype=np.int64)
        width = min(k, self._lists.shape[1])
        lists[:, :width] = self._lists[pos, :width]
        scores = np.where(lists >= 0, -np.arange(k, dtype=np.float32)[None, :], np.nan).astype(np.float32)
        return lists, scores

    def get_params(self) -> dict[str, Any]:
        return dict(self._params)


def reranking_enabled(pack: Any) -> bool:
    """Whether the pack re-ranks served lists (``reranking.enabled`` with at least one step)."""
    pack = getattr(pack, "pack", pack)
    return bool(pack.reranking.enabled and pack.reranking.steps)


def rerank_side_arrays(dataset: Dataset, pack: Any, train: InteractionMatrix) -> dict[str, Any]:
    """The re-rankers' side arrays for the training matrix's item columns, as the serving path builds them.

    ``item_group``: 1 for the pack's ``fairness.protected_provider_group``, 0 for
    another known group, -1 where the items table gives none (the provider
    column is ``fairness.provider_attribute``, default ``provider_group``), or
    the pack's ``fairness.provider_group_codes`` when it gives them
    (:func:`governance.rerank.groups.provider_codes`);
    ``item_popularity``: training users per item; ``item_categories``: the
    indicator of the items table's ``categories`` (no column: no category).
    """
    pack = getattr(pack, "pack", pack)
    ids = pd.Index(np.asarray(train.item_ids).astype(str))
    items = dataset.items if dataset.items is not None else pd.DataFrame()
    meta = items.reindex(ids) if len(items) else pd.DataFrame(index=ids)
    provider = pack.fairness.provider_attribute or "provider_group"
    groups = meta[provider].astype("string") if provider in meta else pd.Series(pd.NA, index=ids, dtype="string")
    categories = meta["categories"] if "categories" in meta else pd.Series(None, index=ids, dtype=object)
    return {
        "item_group": provider_codes(groups, pack.fairness.protected_provider_group, pack.fairness.provider_group_codes),
        "item_popularity": M.item_popularity(train.matrix),
        "item_categories": M.item_category_matrix(
            [None if pd.isna(c) else str(c) for c in categories], n_items=train.n_items
        ),
    }


def _run_parts(run: Any, model: str) -> tuple[Recommender, ModelEvaluation, InteractionMatrix, InteractionMatrix]:
    mats = getattr(run, "matrices", None)
    if mats is None:
        raise ConfigError(NO_MATRICES)
    known = ", ".join(map(repr, run.models))
    if model not in run.models or model not in run.comparison.evaluations:
        raise ConfigError(UNKNOWN_MODEL.format(model=model, known=known or "none"))
    return run.models[model], run.comparison.evaluations[model], mats.train, mats.test


def _rerank_rows(
    base: Recommender,
    pipeline: Pipeline,
    rows: np.ndarray,
    side: Mapping[str, Any],
    history: sp.csr_matrix,
    n_candidates: int,
    k: int,
    show_progress: bool,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Re-rank the candidates of ``rows`` in batches: ``(lists, moves, constraints_met, constraints_met_plain)``."""
    n = len(rows)
    lists = np.full((n, k), -1, dtype=np.int64)
    moves = np.zeros((n, k), dtype=np.int8)
    constraint_steps = {
        label: step for label, step in zip(pipeline.labels, pipeline.steps) if type(step).check is not Reranker.check
    }
    met = {label: np.ones(n, dtype=bool) for label in constraint_steps}
    met_plain = {label: np.ones(n, dtype=bool) for label in constraint_steps}
    wants_dist = "user_category_dist" in pipeline.needs()
    wants_groups = "user_group_dist" in pipeline.needs()
    batch = int(np.clip(_BATCH_CELLS // max(base.train_.n_items, 1), 64, 4096))
    for start in tqdm(range(0, n, batch), disable=not show_progress, desc="re-rank", unit="batch"):
        stop = min(start + batch, n)
        chunk = rows[start:stop]
        items, scores, _ = base.recommend_index(chunk, n_candidates, filter_seen=True)
        dist = history_category_distribution(history[chunk], side["item_categories"]) if wants_dist else None
        mix = history_group_distribution(history[chunk], side["item_group"]) if wants_groups else None
        cands = Candidates(
            items=items, scores=scores, seeds=chunk, user_category_dist=dist, user_group_dist=mix, **side
        )
        out = pipeline(cands, k)
        lists[start:stop], moves[start:stop] = out.items, out.moves
        checked = cands.validate()
        for label, step in constraint_steps.items():
            met[label][start:stop] = out.constraints_met[label]
            met_plain[label][start:stop] = step.check(items[:, :k], checked)
    return lists, moves, met, met_plain


def rerank_evaluation(
    run: Any,
    dataset: Dataset,
    pack: Any,
    k: int | None = None,
    *,
    model: str = "als",
    label: str | None = None,
    show_progress: bool = False,
) -> RerankedEvaluation:
    """Evaluate the pack's re-ranking of ``model``'s lists on the run's test users.

    Parameters
    ----------
    run:
        An :class:`~recommender.pipeline.EvaluationRun` (its fitted models and matrices).
    dataset:
        The evaluated data: its items table gives the provider groups and
        categories, its users table the segments.
    pack:
        A :class:`~governance.policy.PolicyPack` or loaded pack with
        ``reranking.enabled`` and steps.
    k:
        List length (default: the run's).
    model:
        The label of the re-ranked model in the run.
    label:
        The label of the result (default ``model + "+rerank"``).
    show_progress:
        Show progress bars (re-ranking, then evaluation).

    Returns
    -------
    RerankedEvaluation
        The lists and metrics of the re-ranked lists, on exactly the users of
        ``model``'s own evaluation, with the same segments and categories.

    Raises
    ------
    ConfigError
        When the pack does not enable re-ranking, the run has no matrices or
        no model ``model``, or ``k`` is invalid.
    DataError
        When the candidates or side arrays are malformed (from the re-rankers).
    """
    from recommender.pipeline import item_categories_for, user_segments

    pack = getattr(pack, "pack", pack)
    if not reranking_enabled(pack):
        raise ConfigError(NOT_ENABLED)
    base, plain, train, test = _run_parts(run, model)
    k = run.comparison.k if k is None else k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(
            f"The 'k' parameter of rerank_evaluation must be an int in the range [1, inf). Got {k!r} instead."
        )
    k = int(k)
    steps = [{"name": s.name, "params": s.params.model_dump(mode="json")} for s in pack.reranking.steps]
    pipeline = build_pipeline(steps)
    n_candidates = min(max(k, pack.reranking.candidates), train.n_items)
    rows = np.asarray(plain.user_index, dtype=np.int64)
    side = rerank_side_arrays(dataset, pack, train)
    lists, moves, met, met_plain = _rerank_rows(
        base, pipeline, rows, side, train.matrix, n_candidates, k, show_progress
    )
    label = label or f"{model}{RERANK_SUFFIX}"
    params = {"model": model, **base.get_params(), "reranking": pipeline.describe(), "candidates": n_candidates}
    evaluation = evaluate_model(
        _ServedLists(base, rows, lists, params),
        train,
        test,
        k,
        segments=user_segments(dataset, train),
        item_categories=item_categories_for(dataset, train),
        label=label,
        show_progress=show_progress,
    )
    return RerankedEvaluation(
        **{f.name: getattr(evaluation, f.name) for f in fields(ModelEvaluation)},
        base_model=model,
        pipeline=pipeline.describe(),
        pipeline_hash=pipeline.config_hash,
        steps=pipeline.labels,
        n_candidates=n_candidates,
        moves=moves,
        constraints_met=met,
        constraints_met_plain=met_plain,
    )


# -- the side-by-side summary ------------------------------------------------------------------
def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _share(values: np.ndarray) -> float | None:
    return _num(values.mean()) if values.size else None


def _change(before: Any, after: Any) -> dict[str, float | None]:
    """``{"plain", "reranked", "change", "relative_change"}``; None where undefined."""
    b, a = _num(before), _num(after)
    change = None if a is None or b is None else a - b
    relative = None if change is None or b == 0 else change / abs(b)
    return {"plain": b, "reranked": a, "change": change, "relative_change": relative}


def _interval(ci: Any) -> list[float | None] | None:
    """A confidence interval as a JSON list (None when absent)."""
    return None if ci is None else [_num(v) for v in ci]


def exposure_gap(fairness: FairnessFacts | None, attention: str = "log") -> float | None:
    """``max_g |exposure_ratio(g) - 1|`` over the provider groups (None without provider figures)."""
    figures = fairness.exposure.get(attention) if fairness is not None else None
    if figures is None:
        return None
    ratios = [g.exposure_ratio for g in figures.groups.values() if g.exposure_ratio is not None]
    return max(abs(r - 1.0) for r in ratios) if ratios else None


def _provider(plain: FairnessFacts | None, served: FairnessFacts | None, attention: str) -> dict[str, Any] | None:
    before = plain.exposure.get(attention) if plain is not None else None
    after = served.exposure.get(attention) if served is not None else None
    if before is None or after is None or not (before.groups or after.groups):
        return None
    groups = {}
    for g in sorted(set(before.groups) | set(after.groups)):
        b, a = before.groups.get(g), after.groups.get(g)

        def both(field: str, b: Any = b, a: Any = a) -> tuple[Any, Any]:
            return (getattr(b, field) if b else None), (getattr(a, field) if a else None)

        ci_plain, ci_reranked = both("exposure_ratio_ci")
        groups[g] = {
            "exposure_ratio": _change(*both("exposure_ratio")),
            "exposure_ratio_ci": {"plain": _interval(ci_plain), "reranked": _interval(ci_reranked)},
            "exposure_share": _change(*both("exposure_share")),
            "relevance_share": _num((a or b).relevance_share),
            "coverage": _change(*both("coverage")),
        }
    gap = _change(exposure_gap(plain, attention), exposure_gap(served, attention))
    gap["reduction"] = None if gap["relative_change"] is None else -gap["relative_change"]
    return {"attention": attention, "groups": groups, "gap": gap, "gini": _change(before.gini, after.gini)}


def _consumer_gap(figures: GroupMetricFacts) -> tuple[float | None, list[float | None] | None]:
    return _num(figures.difference), _interval(figures.difference_ci)


def _consumer(plain: FairnessFacts | None, served: FairnessFacts | None) -> dict[str, Any]:
    if plain is None or served is None:
        return {}
    out: dict[str, Any] = {}
    for attribute in sorted(set(plain.consumer) & set(served.consumer)):
        out[attribute] = {}
        for metric in sorted(set(plain.consumer[attribute]) & set(served.consumer[attribute])):
            (b, b_ci), (a, a_ci) = (_consumer_gap(f.consumer[attribute][metric]) for f in (plain, served))
            out[attribute][metric] = {**_change(b, a), "plain_ci": b_ci, "reranked_ci": a_ci}
    return out


def tradeoff_summary(
    plain: ModelEvaluation,
    reranked: RerankedEvaluation,
    fairness_plain: FairnessFacts | None = None,
    fairness_reranked: FairnessFacts | None = None,
    *,
    attention: str = "log",
) -> dict[str, Any]:
    """The trade-off of the re-ranking, side by side with the plain lists (JSON-ready).

    Every figure is ``{"plain", "reranked", "change", "relative_change"}``
    (``change = reranked - plain``, ``relative_change = change / |plain|``).

    Returns
    -------
    dict
        ``accuracy`` (every accuracy metric at k), ``beyond`` (every
        beyond-accuracy figure: coverage, exposure Gini, novelty, intra-list
        diversity, average popularity, long-tail share), ``provider_exposure``
        (per provider group the exposure ratio with its intervals and share,
        the exposure ``gap`` with its ``reduction`` = ``1 - gap_after /
        gap_before``, and the item-exposure Gini under ``attention``; None
        without provider figures),
        ``consumer_gap`` (audit attribute -> metric -> the largest gap between
        two groups of the attribute, ``max - min``, with intervals; the users
        without the attribute, group ``missing``, are no such group), ``constraints_met`` (step ->
        share of the plain and of the re-ranked lists meeting its constraint)
        and ``reranking`` (steps, candidates, places moved per reason).

    Raises
    ------
    DataError
        When the two evaluations are not of the same users on the same split.
    """
    if not (
        np.array_equal(plain.user_index, reranked.user_index)
        and plain.k == reranked.k
        and (plain.train_hash, plain.test_hash) == (reranked.train_hash, reranked.test_hash)
    ):
        raise DataError(NOT_SIDE_BY_SIDE.format(plain=plain.model, reranked=reranked.model))
    summary = reranked.reranking_summary()
    return {
        "k": plain.k,
        "n_users": plain.n_test_users,
        "plain": plain.model,
        "reranked": reranked.model,
        "accuracy": {m: _change(plain.metrics.get(m), reranked.metrics.get(m)) for m in M.ACCURACY_METRICS},
        "beyond": {m: _change(plain.beyond.get(m), reranked.beyond.get(m)) for m in BEYOND_METRICS},
        "provider_exposure": _provider(fairness_plain, fairness_reranked, attention),
        "consumer_gap": _consumer(fairness_plain, fairness_reranked),
        "constraints_met": summary.pop("constraints_met"),
        "reranking": summary,
    }
