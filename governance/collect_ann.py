"""The ANN facts of an audit: the audited factor model's ANN lists against its exact lists.

When a pack judges ANN candidates (an ``ann_recall`` rule), the audit indexes
the evaluated ALS model's item factors as the rule's ``ann`` says, takes the
test users (a seeded sample of ``n_queries``), and compares their filtered ANN
lists (seen items removed, as served) with the exact filtered lists:
:func:`recommender.ann.recall_against_exact`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from governance.facts import AnnFacts

__all__ = ["ann_facts", "ann_rule_params"]


def ann_rule_params(pack: Any) -> Any:
    """The params of the pack's (first) ``ann_recall`` rule, or None."""
    for _, rule in pack.rules():
        if rule.check == "ann_recall":
            return rule.params
    return None


def ann_facts(pack: Any, run: Any, *, random_state: int = 0) -> AnnFacts | None:
    """Recall@k of the ANN lists of the evaluated ALS model's test users; None when there is nothing to index."""
    from recommender.ann import ANNRecommender

    params = ann_rule_params(pack)
    model = (run.models or {}).get("als") if run is not None else None
    if params is None or model is None or run.matrices is None:
        return None
    k = params.k if params.k is not None else pack.quality.k
    rows = np.flatnonzero(np.diff(run.matrices.test.matrix.indptr) > 0)
    if len(rows) > params.n_queries:
        rows = np.sort(np.random.default_rng(random_state).choice(rows, params.n_queries, replace=False))
    ann = ANNRecommender.from_fitted(model, params.ann)
    report = ann.recall(rows, k, filter_seen=True)
    return AnnFacts(
        recall_at_k=report.recall_at_k, k=k, index=report.index, n_items=report.n_items, n_queries=report.n_queries,
        params=report.params, speedup=report.speedup, short_lists=report.short_lists, blocked_returned=report.blocked_returned,
    )  # fmt: skip
