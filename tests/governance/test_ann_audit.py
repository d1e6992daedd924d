"""The ``ann_recall`` rule: the audited ALS model's ANN lists against its exact lists, measured by the audit."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faiss")

from governance.collect import collect_facts  # noqa: E402
from governance.engine import evaluate  # noqa: E402
from governance.facts import AnnBlocking, AnnFacts, AuditFacts  # noqa: E402
from governance.policy import parse_pack  # noqa: E402
from governance.registry import Status  # noqa: E402
from recommender.ann import ANNRecommender, exact_search, recall_at_k, recall_with_ties  # noqa: E402
from recommender.synthetic import SyntheticSpec, generate  # noqa: E402


def pack(ann: str, min_recall: float = 0.95) -> object:
    text = (
        "apiVersion: recgov/v1\nmetadata: {name: ann, version: 1.0.0, owner: tests}\nquality:\n  tune: false\n  k: 10\n  rules:\n"
        f"    - {{id: ann-recall, check: ann_recall, description: ANN lists as good as exact., params: {{min_recall: {min_recall}, ann: {ann}}}}}\n"
    )
    return parse_pack(text, "ann.yaml")


@pytest.fixture(scope="module")
def dataset():
    return generate(SyntheticSpec(n_users=400, n_items=600, n_interactions=12000, seed=1))


def test_a_good_index_passes_and_the_recall_is_the_exact_lists_share(dataset) -> None:
    loaded = pack("{index: hnsw, ef_search: 64}")
    facts, run = collect_facts(loaded.pack, dataset, als_params={"factors": 16, "iterations": 4})
    assert facts.ann is not None and facts.ann.index == "hnsw" and facts.ann.k == 10
    assert facts.ann.n_items == run.matrices.train.n_items and facts.ann.n_queries > 0
    (result,) = evaluate(loaded, facts).results
    assert result.status == Status.passed, result.message
    # cross-check: recompute the lists with the model's factors and numpy's exact search
    # without a store, a seeded 10% of the items is planted as blocked: "none returned" is measured on them
    assert facts.ann.blocking is not None and facts.ann.blocking.measured_on == "planted_sample"
    assert facts.ann.blocking.n_blocked == round(0.1 * facts.ann.n_items) and facts.ann.blocked_returned == 0
    assert "planted blocked item" in result.message and "none of them returned" in result.message
    model = run.models["als"]
    rows = (run.matrices.test.matrix.getnnz(axis=1) > 0).nonzero()[0]
    blocked = np.random.default_rng(0).choice(model.train_.n_items, facts.ann.blocking.n_blocked, replace=False)
    exact, exact_scores = exact_search(model.item_factors_, model.user_factors_[rows], 10, exclude=model.train_.matrix[rows], blocked=blocked)
    served = ANNRecommender.from_fitted(model, {"index": "hnsw", "ef_search": 64}, blocked_items=list(model.train_.item_ids[blocked]))
    approx, approx_scores = served._recommend_known(rows, 10, filter_seen=True)
    assert not np.isin(approx, blocked).any()
    # a test user with no training history has a zero factor: all items tie at 0, and any 10 of them are right
    assert facts.ann.recall_at_k == pytest.approx(recall_with_ties(approx, approx_scores, exact, exact_scores))
    assert facts.ann.recall_at_k >= recall_at_k(approx, exact)


def test_the_stores_blocked_and_unavailable_items_are_the_ones_measured(dataset, store, recgov_home) -> None:
    from audits.availability import set_availability
    from audits.harm import block_item
    from governance.audit import audit_facts

    loaded = pack("{index: hnsw, ef_search: 64}")
    # the items a list would serve most: blocked, unavailable everywhere, unavailable in one region
    popular = dataset.events["item_id"].astype(str).value_counts().index[:4].tolist()
    with store.session() as session:
        block_item(session, item_id=popular[0], blocked=True, reason="harmful")
        block_item(session, item_id=popular[1], blocked=True, reason="harmful")
        set_availability(session, item_id=popular[2], status="withdrawn")
        set_availability(session, item_id=popular[3], status="geo_restricted", region="DE")
        block_item(session, item_id="never-in-the-data", blocked=True, reason="not a model item: not counted")
    facts, _, _ = audit_facts(
        loaded, dataset, store=store, model_version=None, train=True, baseline=None,
        models_dir=recgov_home / "models", actor=None, show_progress=False,
    )  # fmt: skip
    assert facts.ann.blocking.measured_on == "store" and facts.ann.blocking.n_blocked == 4
    assert facts.ann.blocked_returned == 0 and facts.ann.short_lists == 0
    (result,) = evaluate(loaded, facts).results
    assert "4 blocked or unavailable item(s) from the store" in result.message, result.message


def test_a_measured_leak_fails_and_an_unmeasured_one_is_not_claimed() -> None:
    loaded = pack("{index: flat}")
    measured = AnnFacts(
        recall_at_k=1.0, k=10, index="flat", n_items=100, n_queries=5,
        blocking=AnnBlocking(measured_on="planted_sample", n_blocked=10, share=0.1),
    )  # fmt: skip
    (result,) = evaluate(loaded, AuditFacts(ann=measured)).results
    assert result.status == Status.passed and "10 planted blocked item(s)" in result.message
    (leak,) = evaluate(loaded, AuditFacts(ann=measured.model_copy(update={"blocked_returned": 3}))).results
    assert leak.status == Status.fail and "3 blocked item(s) returned" in leak.message
    (unmeasured,) = evaluate(loaded, AuditFacts(ann=measured.model_copy(update={"blocking": None}))).results
    assert "leaks not measured" in unmeasured.message and "none of them returned" not in unmeasured.message


def test_a_poor_index_fails(dataset) -> None:
    loaded = pack("{index: ivf_flat, nlist: 15, nprobe: 1}")
    facts, _ = collect_facts(loaded.pack, dataset, als_params={"factors": 16, "iterations": 4})
    (result,) = evaluate(loaded, facts).results
    assert facts.ann.recall_at_k < 0.95
    assert result.status == Status.fail and "recall@10" in result.message


def test_leaks_and_short_lists_fail_whatever_the_recall() -> None:
    loaded = pack("{index: flat}")
    base = AnnFacts(recall_at_k=1.0, k=10, index="flat", n_items=100, n_queries=5)
    assert evaluate(loaded, AuditFacts(ann=base)).results[0].status == Status.passed
    for bad in ({"blocked_returned": 1}, {"short_lists": 2}):
        assert evaluate(loaded, AuditFacts(ann=base.model_copy(update=bad))).results[0].status == Status.fail


def test_bad_ann_params_are_refused_with_their_location() -> None:
    with pytest.raises(Exception, match="ef_search"):
        pack("{index: hnsw, ef_search: 0}")
    with pytest.raises(Exception, match="efsearch|extra"):
        pack("{index: hnsw, efsearch: 10}")


def test_lists_exact_search_answered_are_counted_in_the_facts_and_the_message(dataset) -> None:
    """Regression: when the index could not fill a list (filtering left too few candidates after every round),
    exact search answered it silently, and the audit counted that exact list as the index's: recall 0.54 passed a
    0.5 floor while the lists the index answered itself had 0.35. The facts and the message now say how many."""
    ann = "{index: ivf_flat, nlist: 15, nprobe: 1, max_rounds: 1, overfetch: 0}"
    loaded = pack(ann, min_recall=0.5)
    facts, run = collect_facts(loaded.pack, dataset, als_params={"factors": 16, "iterations": 4})
    # the same lists served again, counting the rows the index handed to exact search
    model = run.models["als"]
    rows = (run.matrices.test.matrix.getnnz(axis=1) > 0).nonzero()[0]
    blocked = np.random.default_rng(0).choice(model.train_.n_items, facts.ann.blocking.n_blocked, replace=False)
    served = ANNRecommender.from_fitted(
        model, {"index": "ivf_flat", "nlist": 15, "nprobe": 1, "max_rounds": 1, "overfetch": 0}, blocked_items=list(model.train_.item_ids[blocked])
    )
    approx, approx_scores = served._recommend_known(rows, 10, filter_seen=True)
    fell_back = served.index_.last_exact_queries_
    assert 0 < len(fell_back) < len(rows)
    assert facts.ann.exact_fallbacks == len(fell_back)
    exact, exact_scores = exact_search(model.item_factors_, model.user_factors_[rows], 10, exclude=model.train_.matrix[rows], blocked=blocked)
    own = np.setdiff1d(np.arange(len(rows)), fell_back)
    assert facts.ann.index_recall_at_k == pytest.approx(recall_with_ties(approx[own], approx_scores[own], exact[own], exact_scores[own]))
    assert (approx[fell_back] == exact[fell_back]).all()  # those lists are exact search's
    (result,) = evaluate(loaded, facts).results
    assert f"{len(fell_back)} of {len(rows)} list(s) answered by exact search" in result.message, result.message
    assert f"recall@10 of the index's own lists: {facts.ann.index_recall_at_k:.4f}" in result.message
    assert result.evidence["exact_fallbacks"] == len(fell_back)


def test_a_message_without_exact_fallbacks_does_not_mention_them() -> None:
    loaded = pack("{index: flat}")
    base = AnnFacts(recall_at_k=1.0, k=10, index="flat", n_items=100, n_queries=5)
    (result,) = evaluate(loaded, AuditFacts(ann=base)).results
    assert "exact search" not in result.message
