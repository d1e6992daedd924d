"""The ANN facts of an audit: the audited factor model's ANN lists against its exact lists.

When a pack judges ANN candidates (an ``ann_recall`` rule), the audit indexes
the evaluated ALS model's item factors as the rule's ``ann`` says, takes the
test users (a seeded sample of ``n_queries``), and compares their filtered ANN
lists (seen items removed, blocked items left out, as served) with the exact
filtered lists: :func:`recommender.ann.recall_against_exact`.

The blocked items are the store's (blocked, under review, unavailable:
``out_of_lists``) when the audit has a store and the model knows any of them;
otherwise a seeded sample of :data:`PLANTED_SHARE` of the model's items is
planted as blocked, so that "no blocked item returned" is always measured on
some blocked items. The facts say which (:class:`~governance.facts.AnnBlocking`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

from governance.facts import AnnBlocking, AnnFacts

__all__ = ["PLANTED_SHARE", "ann_facts", "ann_rule_params", "planted_blocks"]

PLANTED_SHARE = 0.1
"""Share of the model's items planted as blocked when the store gives none."""


def ann_rule_params(pack: Any) -> Any:
    """The params of the pack's (first) ``ann_recall`` rule, or None."""
    for _, rule in pack.rules():
        if rule.check == "ann_recall":
            return rule.params
    return None


def planted_blocks(n_items: int, *, random_state: int = 0) -> np.ndarray:
    """Sorted item positions of a seeded sample of ``PLANTED_SHARE`` of ``n_items`` (at least one item)."""
    n = max(1, int(round(PLANTED_SHARE * n_items)))
    return np.sort(np.random.default_rng(random_state).choice(n_items, min(n, n_items), replace=False))


def ann_facts(
    pack: Any, run: Any, *, random_state: int = 0, out_of_lists: Collection[str] | None = None
) -> AnnFacts | None:
    """Recall@k of the ANN lists of the evaluated ALS model's test users; None when there is nothing to index.

    ``out_of_lists`` are the item ids the store keeps out of every list (None: the audit has no store);
    without any the model knows, a seeded sample of its items is planted as blocked instead.
    """
    from recommender.ann import ANNRecommender

    params = ann_rule_params(pack)
    model = (run.models or {}).get("als") if run is not None else None
    if params is None or model is None or run.matrices is None:
        return None
    k = params.k if params.k is not None else pack.quality.k
    rows = np.flatnonzero(np.diff(run.matrices.test.matrix.indptr) > 0)
    if len(rows) > params.n_queries:
        rows = np.sort(np.random.default_rng(random_state).choice(rows, params.n_queries, replace=False))
    item_ids = model.train_.item_ids
    stored = np.flatnonzero(np.isin(item_ids.astype(str), np.asarray(sorted(out_of_lists or ()), dtype=str)))
    measured_on = "store" if len(stored) else "planted_sample"
    blocked = stored if len(stored) else planted_blocks(len(item_ids), random_state=random_state)
    ann = ANNRecommender.from_fitted(model, params.ann, blocked_items=list(item_ids[blocked]))
    report = ann.recall(rows, k, filter_seen=True)
    blocking = AnnBlocking(measured_on=measured_on, n_blocked=len(blocked), share=len(blocked) / max(len(item_ids), 1))
    return AnnFacts(
        recall_at_k=report.recall_at_k, k=k, index=report.index, n_items=report.n_items, n_queries=report.n_queries,
        params=report.params, speedup=report.speedup, short_lists=report.short_lists, blocked_returned=report.blocked_returned,
        exact_fallbacks=report.exact_fallbacks, index_recall_at_k=report.index_recall_at_k, blocking=blocking,
    )  # fmt: skip
