"""Explanation tags tell the truth and name nothing a list may not hold.

A ``because you interacted`` tag names history items of the subject whose contributions raised the
item's score (one that lowered it is no reason), and never an item kept out of lists (blocked by an
escalation, under review, of a blocked category): naming it would show the subject what no list may show.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from governance.consent.state import ConsentRecord
from governance.policy import load_pack
from governance.serving import ServeRequest, ServingEngine
from recommender.als import ALSRecommender
from recommender.feedback import to_implicit
from recommender.synthetic import SyntheticSpec, generate

GRANTED = (ConsentRecord(purpose="personalization", status="granted", lawful_basis="consent", source="api", time=datetime(2025, 1, 1, tzinfo=UTC)),)


@pytest.fixture(scope="module")
def world():
    data = generate(SyntheticSpec(n_users=300, n_items=200, n_interactions=15000, seed=9))
    matrix = to_implicit(data.events)
    model = ALSRecommender(factors=8, iterations=5).fit(matrix)
    return data, matrix, model


def _because(served) -> list[dict]:
    return [t for tags in served.tags for t in tags if t["kind"] == "because_you_interacted"]


def test_a_tag_names_only_history_items_that_raised_the_score(world) -> None:
    data, matrix, model = world
    engine = ServingEngine(load_pack("policies/eu-gdpr-dsa.yaml"), model, data.items)
    named = 0
    for row in range(len(matrix.user_ids)):
        served = engine.serve(ServeRequest(str(matrix.user_ids[row]), k=10, consent=GRANTED))
        history = {str(matrix.item_ids[i]) for i in matrix.matrix[row].indices}
        for tag in _because(served):
            items, weights = tag.get("items", []), tag.get("weights", [])
            assert set(items) <= history and len(items) == len(weights) <= 3
            assert all(w > 0 for w in weights), (row, tag)
            named += len(items)
    assert named > 1000  # the tags still name items


def test_a_tag_never_names_an_item_kept_out_of_lists(world) -> None:
    data, matrix, model = world
    engine = ServingEngine(load_pack("policies/eu-gdpr-dsa.yaml"), model, data.items)
    request = ServeRequest(str(matrix.user_ids[3]), k=10, consent=GRANTED)
    before = _because(engine.serve(request))
    blocked = {before[0]["items"][0], before[1]["items"][-1]}
    engine.set_blocked(blocked)
    after = engine.serve(request)
    assert not blocked & set(after.items)
    tags = _because(after)
    assert not any(blocked & set(t.get("items", [])) for t in tags)
    assert not any(b in t["text"] for t in tags for b in blocked)
    # the next contributors take the blocked ones' places: tags still name up to three items
    assert max(len(t.get("items", [])) for t in tags) == 3
    # every subject: no tag names a blocked item
    for row in range(0, len(matrix.user_ids), 7):
        served = engine.serve(ServeRequest(str(matrix.user_ids[row]), k=10, consent=GRANTED))
        assert not any(blocked & set(t.get("items", [])) for t in _because(served))


@pytest.mark.parametrize("family", ["item_knn", "ease", "bpr", "pure_svd"])
def test_a_family_tag_never_names_an_item_kept_out_of_lists(world, family) -> None:
    """A model family's own tags (``recgov recommend --model`` of a family version, the service) name no blocked item."""
    from governance.family_serving import FamilyServingEngine
    from recommender.family import families

    data, matrix, _ = world
    spec = families()[family]
    model = spec.create(**spec.small_params).fit(matrix)
    engine = FamilyServingEngine(load_pack("policies/eu-gdpr-dsa.yaml"), model, data.items)
    request = ServeRequest(str(matrix.user_ids[3]), k=10, consent=GRANTED)
    named = [i for tags in engine.serve(request).tags for t in tags for i in t.get("items", [])]
    blocked = named[0]
    engine.set_blocked([blocked])
    served = engine.serve(request)
    tags = [t for item_tags in served.tags for t in item_tags]
    assert blocked not in served.items
    assert not [t for t in tags if blocked in t.get("items", []) or blocked in t["text"] or blocked in repr(t.get("evidence"))]
    assert any(t.get("items") for t in tags)


def test_batch_lists_name_no_blocked_item_in_their_tags(store, tmp_path) -> None:
    """``recgov batch`` (in-process; Spark governs with the same personalizer): a blocked item that many
    subjects interacted with is neither in a list nor named in a tag, and the records say so (both engines)."""
    import json as json_

    import pyarrow.parquet as pq

    from audits import block_item, record_consent
    from audits.batch_folders import sealed_clear_fields
    from audits.sealing import open_decisions
    from governance.spark.batch import batch_lists
    from recommender.data import Dataset

    data = generate(SyntheticSpec(n_users=40, n_items=50, n_interactions=1500, seed=3))
    events = data.events.copy()
    events["user_id"] = events["user_id"].astype(str)
    subjects = sorted(events["user_id"].unique())
    with store.session() as session:
        for s in subjects:
            record_consent(session, subject_id=s, purpose="personalization", status="granted", lawful_basis="consent", source="banner", at=datetime(2024, 1, 1, tzinfo=UTC))
    popular = events["item_id"].astype(str).value_counts().index.tolist()
    blocked = set(popular[:2])
    with store.session() as session:
        for item in blocked:
            block_item(session, item_id=item, blocked=True, reason="self-harm, confirmed by a reviewer")
    dataset = Dataset(events=events, items=data.items, name="batch", source="synthetic:batch")
    path = tmp_path / "lists"
    batch_lists(dataset, load_pack("policies/eu-gdpr-dsa.yaml"), store, out=str(path), engine="inprocess", k=6,
                models_dir=tmp_path / "models", params={"factors": 8, "iterations": 3}, now=datetime(2024, 7, 2, tzinfo=UTC), buckets=2)  # fmt: skip
    stored = pq.read_table(path).to_pandas()
    rows = [(r["decision_id"], r["subject"], json_.loads(r["slate"]), json_.loads(r["context"]), sealed_clear_fields(r)) for r in stored.to_dict("records")]
    with store.session() as session:
        slates = [o[0] for o in open_decisions(session, rows)]
    assert slates
    named = [i for slate in slates for tags in slate["tags"] for t in tags for i in t.get("items", [])]
    assert named and not blocked & set(named)
    assert all(len(slate["items"]) == 6 and not blocked & set(slate["items"]) for slate in slates)
    assert np.all([w > 0 for slate in slates for tags in slate["tags"] for t in tags for w in t.get("weights", [])])
