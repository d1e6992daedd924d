"""Ablation: each component's marginal effect on quality and fairness, against the full configuration.

A *variant* is the full configuration with one component taken out: an event type
dropped from training (its weight 0), a model component switched off (ALS's L2
regularisation to 0; graded confidence off: every positive weighs the same), or a
re-ranking step removed (:mod:`governance.ablation`). Every variant is trained on
the same training matrix universe and ranked for the same test users, with the
items each user saw in the *full* training data filtered, so the lists differ only
by the component.

The effect of a component is ``metric(full) - metric(without it)``: positive when
the component raises the metric. Its interval is a paired percentile bootstrap over
users: each resample draws users with replacement and computes the metric of the
full configuration and of the variant on the same users, so the users' shared
difficulty cancels (the pairing that makes small effects visible).

Metrics (lists of ``k``):

* quality: ``ndcg`` and ``recall`` (means over test users);
* fairness: ``exposure_gini`` (concentration of item exposure over the lists; lower
  is fairer to providers), ``long_tail_share`` (mean share of long-tail items per
  list) and ``activity_ndcg_gap`` (the largest difference in mean ndcg between the
  light, medium and heavy training-activity tertiles of users; lower is fairer to
  consumers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recommender import metrics as M
from recommender.als import ALSRecommender
from recommender.data import InteractionMatrix
from recommender.errors import ConfigError
from recommender.feedback import FeedbackConfig, to_implicit
from recommender.scoring import factor_top_k

__all__ = ["AblationResult", "METRICS", "als_variants", "event_type_variants", "paired_effects", "top_k"]

QUALITY = ("ndcg", "recall")
FAIRNESS = ("exposure_gini", "long_tail_share", "activity_ndcg_gap")
METRICS = QUALITY + FAIRNESS
LOWER_IS_BETTER = frozenset({"exposure_gini", "activity_ndcg_gap"})
"""Metrics where a negative effect (the component lowers them) is the better direction."""


@dataclass(frozen=True)
class AblationResult:
    """The full configuration's metrics and every component's effect with its interval."""

    k: int
    n_users: int
    n_bootstrap: int
    confidence: float
    seed: int
    full: dict[str, float | None]
    components: dict[str, dict[str, Any]]
    """Component -> ``kind``, ``description``, ``without`` (metrics), ``effect`` (metric -> value, ci_low, ci_high, significant)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "k": self.k, "n_users": self.n_users, "n_bootstrap": self.n_bootstrap, "confidence": self.confidence, "seed": self.seed,
            "effect_is": "metric(full) - metric(without the component); interval: paired percentile bootstrap over users",
            "lower_is_better": sorted(LOWER_IS_BETTER), "full": self.full, "components": self.components,
        }  # fmt: skip


def top_k(model: ALSRecommender, rows: np.ndarray, k: int, seen: sp.csr_matrix) -> np.ndarray:
    """``model``'s top ``k`` for ``rows``, with the items ``seen`` (the full training matrix) filtered."""
    idx, _ = factor_top_k(model.user_factors_, model.item_factors_, rows, k, seen=seen)
    return idx


Lister = Callable[[ALSRecommender], np.ndarray]
"""Turns a fitted model into the evaluated users' lists (plain top k, or re-ranked by :mod:`governance.ablation`)."""


def als_variants(train: InteractionMatrix, params: Mapping[str, Any], lister: Lister, random_state: int = 0) -> dict[str, tuple[str, str, np.ndarray]]:
    """The full ALS lists and the model-component variants: ``name -> (kind, description, lists)``."""
    params = {key: v for key, v in params.items() if key != "random_state"}
    full = ALSRecommender(**params, random_state=random_state).fit(train)
    out = {"full": ("full", "the full configuration", lister(full))}
    no_reg = ALSRecommender(**{**params, "regularization": 0.0}, random_state=random_state).fit(train)
    out["als.regularization"] = ("model", "ALS's L2 regularisation (set to 0)", lister(no_reg))
    binary = train.matrix.copy()
    binary.data = np.ones_like(binary.data)
    flat = ALSRecommender(**params, random_state=random_state).fit(InteractionMatrix(binary, train.user_ids, train.item_ids))
    out["als.confidence_weighting"] = (
        "model", "graded confidence (event-type weights and repeat counts; without it every positive weighs 1)", lister(flat)
    )  # fmt: skip
    return out


def event_type_variants(
    train_events: pd.DataFrame, train: InteractionMatrix, feedback: FeedbackConfig, params: Mapping[str, Any], lister: Lister, random_state: int = 0
) -> dict[str, tuple[str, str, np.ndarray]]:
    """One variant per event type that weighs in training: ALS trained without that type's events (same universe)."""
    params = {key: v for key, v in params.items() if key != "random_state"}
    if "event_type" not in train_events.columns:
        return {}
    out = {}
    for event_type in sorted(map(str, train_events["event_type"].dropna().unique())):
        if feedback.weight_of(event_type) == 0:
            continue
        weights = {**feedback.event_weights, event_type: 0.0}
        config = feedback.model_copy(update={"event_weights": weights})
        matrix = to_implicit(train_events, config, user_ids=train.user_ids, item_ids=train.item_ids)
        if matrix.nnz == 0:
            continue  # the only event type: nothing left to train on
        model = ALSRecommender(**params, random_state=random_state).fit(matrix)
        out[f"event_type.{event_type}"] = ("event_type", f"the {event_type!r} events in training", lister(model))
    return out


def _per_user(lists: np.ndarray, relevant: sp.csr_matrix, long_tail: np.ndarray) -> dict[str, np.ndarray]:
    valid = lists >= 0
    return {
        "ndcg": np.nan_to_num(M.ndcg_at_k(lists, relevant), nan=0.0),
        "recall": np.nan_to_num(M.recall_at_k(lists, relevant), nan=0.0),
        "long_tail_share": np.where(valid, long_tail[np.maximum(lists, 0)], False).sum(axis=1) / np.maximum(valid.sum(axis=1), 1),
    }


def _gini_rows(lists: np.ndarray, idx: np.ndarray, n_items: int) -> np.ndarray:
    """Exposure Gini of the lists of each resample (rows of ``idx``), vectorised over resamples."""
    k = lists.shape[1]
    out = np.empty(len(idx))
    for b, users in enumerate(idx):  # one bincount and one sort per resample
        picked = lists[users].ravel()
        counts = np.bincount(picked[picked >= 0], minlength=n_items).astype(np.float64)
        out[b] = M.gini_index(counts) if k else np.nan
    return out


def _gap_rows(ndcg: np.ndarray, groups: np.ndarray, n_groups: int, idx: np.ndarray) -> np.ndarray:
    """Largest difference of group means of ``ndcg`` in each resample (groups absent from a resample ignored)."""
    b = np.repeat(np.arange(len(idx)), idx.shape[1])
    cell = b * n_groups + groups[idx].ravel()
    sums = np.bincount(cell, weights=ndcg[idx].ravel(), minlength=len(idx) * n_groups).reshape(len(idx), n_groups)
    counts = np.bincount(cell, minlength=len(idx) * n_groups).reshape(len(idx), n_groups)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return np.nanmax(means, axis=1) - np.nanmin(means, axis=1)


def paired_effects(
    variants: Mapping[str, tuple[str, str, np.ndarray]],
    relevant: sp.csr_matrix,
    train: InteractionMatrix,
    rows: np.ndarray,
    *,
    n_bootstrap: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
    head_share: float = 0.8,
) -> AblationResult:
    """Every variant's effect (full - without) on :data:`METRICS`, with paired bootstrap intervals over users.

    ``variants`` holds ``"full"`` and the variants, each ``(kind, description, lists)`` with lists ``(len(rows), k)``
    for the training rows ``rows``; ``relevant`` is the test positives of those rows (``(len(rows), n_items)``).
    """
    if "full" not in variants:
        raise ConfigError("paired_effects needs the 'full' configuration's lists among the variants")
    if not isinstance(n_bootstrap, int) or n_bootstrap < 1:
        raise ConfigError(f"The 'n_bootstrap' parameter of paired_effects must be an int in the range [1, inf). Got {n_bootstrap!r} instead.")
    if not 0 < confidence < 1:
        raise ConfigError(f"The 'confidence' parameter of paired_effects must be in (0, 1). Got {confidence!r} instead.")
    n = len(rows)
    if n == 0:
        raise ConfigError("no test users to evaluate: the split left no test positives of known users")
    full_lists = variants["full"][2]
    k = full_lists.shape[1]
    popularity = M.item_popularity(train.matrix)
    long_tail = M.long_tail_items(popularity, head_share)
    activity = np.asarray((train.matrix[rows] > 0).sum(axis=1)).ravel()
    ranks = pd.Series(activity).rank(method="first").to_numpy()
    groups = np.minimum((3 * (ranks - 1) / max(n, 1)).astype(np.int64), 2)  # light, medium, heavy tertiles
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_bootstrap, n))
    tail = (1 - confidence) / 2

    def figures(lists: np.ndarray) -> tuple[dict[str, float | None], dict[str, np.ndarray]]:
        per = _per_user(lists, relevant, long_tail)
        point = {m: float(per[m].mean()) for m in ("ndcg", "recall", "long_tail_share")}
        point["exposure_gini"] = float(M.exposure_gini(lists, train.n_items))
        point["activity_ndcg_gap"] = float(_gap_rows(per["ndcg"], groups, 3, np.arange(n)[None, :])[0])
        boot = {m: per[m][idx].mean(axis=1) for m in ("ndcg", "recall", "long_tail_share")}
        boot["exposure_gini"] = _gini_rows(lists, idx, train.n_items)
        boot["activity_ndcg_gap"] = _gap_rows(per["ndcg"], groups, 3, idx)
        return point, boot

    full_point, full_boot = figures(full_lists)
    components: dict[str, dict[str, Any]] = {}
    for name, (kind, description, lists) in variants.items():
        if name == "full":
            continue
        if lists.shape != full_lists.shape:
            raise ConfigError(f"variant {name!r} has lists of shape {lists.shape}, the full configuration {full_lists.shape}")
        point, boot = figures(lists)
        effect = {}
        for m in METRICS:
            diff = full_boot[m] - boot[m]
            low, high = (float(v) for v in np.nanquantile(diff, [tail, 1 - tail]))
            effect[m] = {"value": full_point[m] - point[m], "ci_low": low, "ci_high": high, "significant": bool(low > 0 or high < 0)}
        components[name] = {"kind": kind, "description": description, "without": point, "effect": effect}
    return AblationResult(k=k, n_users=n, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed, full=full_point, components=components)
