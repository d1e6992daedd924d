"""``recgov evaluate --ablate``: each re-ranker's, each event type's and each model component's marginal effect.

:func:`run_ablation` splits the data as ``recgov evaluate`` does, fits ALS with the
given (or tuned) parameters, and makes the lists of the full configuration and of
every variant with one component taken out (:mod:`recommender.ablation`): each
event type that weighs in training, ALS's regularisation, graded confidence, and,
with a pack whose re-ranking is enabled, each re-ranking step (the pipeline without
it). With re-ranking, every model variant's lists are re-ranked by the whole
pipeline, so a model component's effect is measured on what would be served.
Effects are ``full - without`` with paired bootstrap intervals over the test users.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recommender.ablation import METRICS, als_variants, event_type_variants, paired_effects, top_k
from recommender.als import ALSRecommender
from recommender.data import Dataset
from recommender.errors import ConfigError
from recommender.feedback import FeedbackConfig
from recommender.scoring import factor_top_k
from recommender.split import SplitConfig, split, train_test_matrices

__all__ = ["run_ablation", "table_rows"]

DEFAULT_ALS = {"factors": 64, "regularization": 0.05, "alpha": 2.0, "iterations": 15}
"""The ALS parameters without tuning (``recgov train``'s defaults)."""


def _rerank_lister(pack: Any, dataset: Dataset, train: Any, rows: np.ndarray, k: int, steps: list[dict[str, Any]]) -> Any:
    from governance.rerank import Candidates, build_pipeline, history_category_distribution, history_group_distribution
    from governance.tradeoff import rerank_side_arrays

    pipeline = build_pipeline(steps)
    side = rerank_side_arrays(dataset, pack, train)
    n_candidates = min(max(k, pack.reranking.candidates), train.n_items)
    history = train.matrix[rows]
    dist = history_category_distribution(history, side["item_categories"]) if "user_category_dist" in pipeline.needs() else None
    mix = history_group_distribution(history, side["item_group"]) if "user_group_dist" in pipeline.needs() else None

    def lister(model: ALSRecommender) -> np.ndarray:
        items, scores = factor_top_k(model.user_factors_, model.item_factors_, rows, n_candidates, seen=train.matrix)
        cands = Candidates(items=items, scores=scores.astype(np.float64), seeds=rows, user_category_dist=dist, user_group_dist=mix, **side)
        return pipeline(cands, k).items

    return lister


def run_ablation(
    dataset: Dataset,
    *,
    split_config: SplitConfig,
    feedback: FeedbackConfig,
    k: int = 10,
    als_params: dict[str, Any] | None = None,
    pack: Any = None,
    n_bootstrap: int = 500,
    confidence: float = 0.95,
    random_state: int = 0,
) -> dict[str, Any]:
    """The ablation report (JSON-ready; see the module docstring)."""
    pack = getattr(pack, "pack", pack)
    params = {**DEFAULT_ALS, **(als_params or {})}
    train_events, test_events = split(dataset.events, split_config)
    mats = train_test_matrices(train_events, test_events, feedback)
    train, test = mats.train, mats.test
    rows = np.flatnonzero(np.diff(test.matrix.indptr) > 0)
    if len(rows) == 0:
        raise ConfigError("the split left no test positives of users known to training: nothing to evaluate")
    relevant = test.matrix[rows]
    steps = [] if pack is None or not (pack.reranking.enabled and pack.reranking.steps) else [
        {"name": s.name, "params": s.params.model_dump(mode="json")} for s in pack.reranking.steps
    ]  # fmt: skip
    if steps:
        lister = _rerank_lister(pack, dataset, train, rows, k, steps)
    else:
        def lister(model: ALSRecommender) -> np.ndarray:
            return top_k(model, rows, k, train.matrix)

    variants = als_variants(train, params, lister, random_state)
    variants.update(event_type_variants(train_events, train, feedback, params, lister, random_state))
    if steps:
        full_model = ALSRecommender(**params, random_state=random_state).fit(train)
        for i, step in enumerate(steps):
            rest = steps[:i] + steps[i + 1 :]
            lists = _rerank_lister(pack, dataset, train, rows, k, rest)(full_model) if rest else top_k(full_model, rows, k, train.matrix)
            variants[f"reranker.{i + 1}.{step['name']}"] = ("reranker", f"re-ranking step {i + 1} ({step['name']})", lists)
    result = paired_effects(variants, relevant, train, rows, n_bootstrap=n_bootstrap, confidence=confidence, seed=random_state)
    return {
        "dataset": {"name": dataset.name, "n_events": int(len(dataset.events))},
        "split": split_config.model_dump(),
        "als_params": params,
        "reranking": [s["name"] for s in steps],
        "pack": None if pack is None else {"pack": pack.metadata.name, "pack_version": pack.metadata.version},
        **result.to_dict(),
    }


def table_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """One row per component: each metric's effect with its interval (``*``: the interval excludes 0)."""
    rows = [{"component": "full (value)", **{m: _num(report["full"][m]) for m in METRICS}}]
    for name, comp in report["components"].items():
        row = {"component": name}
        for m in METRICS:
            e = comp["effect"][m]
            row[m] = f"{e['value']:+.4f} [{e['ci_low']:+.4f}, {e['ci_high']:+.4f}]{'*' if e['significant'] else ''}"
        rows.append(row)
    return rows


def _num(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.4f}"
