"""The ``ann_recall`` rule: the audited ALS model's ANN lists against its exact lists, measured by the audit."""

from __future__ import annotations

import pytest

pytest.importorskip("faiss")

from governance.collect import collect_facts  # noqa: E402
from governance.engine import evaluate  # noqa: E402
from governance.facts import AnnFacts, AuditFacts  # noqa: E402
from governance.policy import parse_pack  # noqa: E402
from governance.registry import Status  # noqa: E402
from recommender.ann import ANNRecommender, exact_search, recall_at_k  # noqa: E402
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
    model = run.models["als"]
    rows = (run.matrices.test.matrix.getnnz(axis=1) > 0).nonzero()[0]
    exact, _ = exact_search(model.item_factors_, model.user_factors_[rows], 10, exclude=model.train_.matrix[rows])
    approx, _ = ANNRecommender.from_fitted(model, {"index": "hnsw", "ef_search": 64})._recommend_known(rows, 10, filter_seen=True)
    assert facts.ann.recall_at_k == pytest.approx(recall_at_k(approx, exact))


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
