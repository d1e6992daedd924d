"""Availability on the serving path: an unavailable item is never served, and lists stay full when they can."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audits.availability import Unavailable
from governance.consent.state import ConsentRecord
from governance.policy import load_pack
from governance.serving import ServeRequest, ServingEngine
from recommender.als import ALSRecommender
from recommender.feedback import to_implicit
from recommender.synthetic import SyntheticSpec, generate

GRANTED = (ConsentRecord(purpose="personalization", status="granted", lawful_basis="consent", source="api", time=datetime(2025, 1, 1, tzinfo=UTC)),)


@pytest.fixture(scope="module")
def world():
    data = generate(SyntheticSpec(n_users=200, n_items=120, n_interactions=8000, seed=4))
    matrix = to_implicit(data.events)
    model = ALSRecommender(factors=8, iterations=4).fit(matrix)
    return data, matrix, model


def _unavailable(ids: list[str], everywhere: int, regional: int) -> Unavailable:
    return Unavailable(frozenset(ids[:everywhere]), {"DE": frozenset(ids[everywhere : everywhere + regional])})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    user=st.integers(0, 199),
    k=st.integers(1, 30),
    everywhere=st.integers(0, 80),
    regional=st.integers(0, 30),
    region=st.sampled_from([None, "DE", "FR"]),
    known=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_no_unavailable_item_and_no_short_list(world, user, k, everywhere, regional, region, known, seed) -> None:
    data, matrix, model = world
    ids = [str(i) for i in np.random.default_rng(seed).permutation(matrix.item_ids.astype(str))]
    unavailable = _unavailable(ids, everywhere, regional)
    engine = ServingEngine(load_pack("policies/baseline.yaml"), model, data.items, unavailable=unavailable)
    subject = str(matrix.user_ids[user % len(matrix.user_ids)]) if known else "never-seen"  # the data may hold fewer users
    context = {"region": region} if region else {}
    served = engine.serve(ServeRequest(subject, k=k, consent=GRANTED, context=context))
    out = unavailable.for_region(region)
    assert not out & set(served.items)
    # Full whenever enough items are left: everything not kept out, less what the subject has seen (personalized).
    seen = {str(matrix.item_ids[i]) for i in matrix.matrix[user].indices} if served.mode == "personalized" else set()
    left = set(map(str, matrix.item_ids)) - out - seen - {str(i) for i in np.asarray(model.train_.item_ids)[engine.personalizer.blocked_items]}
    assert len(served.items) == min(k, len(left)), (served.mode, len(served.items), k, len(left))


def test_a_region_names_its_restrictions_in_the_record_context_and_set_availability_takes_effect(world) -> None:
    data, matrix, model = world
    engine = ServingEngine(load_pack("policies/baseline.yaml"), model, data.items)
    user = str(matrix.user_ids[3])
    first = engine.serve(ServeRequest(user, k=5, consent=GRANTED, context={"region": "DE"}))
    engine.set_availability(Unavailable(frozenset(), {"DE": frozenset(first.items[:2])}))
    again = engine.serve(ServeRequest(user, k=5, consent=GRANTED, context={"region": "DE"}))
    elsewhere = engine.serve(ServeRequest(user, k=5, consent=GRANTED, context={"region": "FR"}))
    assert not set(first.items[:2]) & set(again.items) and len(again.items) == 5
    assert elsewhere.items == first.items  # restricted in DE only


def test_batch_lists_leave_out_what_is_unavailable_everywhere_and_in_their_region(store, tmp_path) -> None:
    """``recgov batch`` (in-process; Spark filters the same ``blocked`` list): full lists, none unavailable."""
    import json as json_

    import pyarrow.parquet as pq

    from audits import record_consent
    from audits.availability import set_availability
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
    with store.session() as session:
        set_availability(session, item_id=popular[0], status="withdrawn")
        set_availability(session, item_id=popular[1], status="geo_restricted", region="DE")
    dataset = Dataset(events=events, items=data.items, name="batch", source="synthetic:batch")
    eu = load_pack("policies/eu-gdpr-dsa.yaml")
    for region, out in ((None, {popular[0]}), ("DE", {popular[0], popular[1]})):
        path = tmp_path / f"lists-{region}"
        batch_lists(dataset, eu, store, out=str(path), engine="inprocess", k=6, models_dir=tmp_path / "models",
                    params={"factors": 8, "iterations": 3}, now=datetime(2024, 7, 2, tzinfo=UTC), buckets=2, region=region)  # fmt: skip
        stored = pq.read_table(path).to_pandas()
        # a batch record's seal binds the fields it keeps in the clear: they open it with the rest
        rows = [(r["decision_id"], r["subject"], json_.loads(r["slate"]), json_.loads(r["context"]), sealed_clear_fields(r)) for r in stored.to_dict("records")]
        with store.session() as session:
            slates = [o[0] for o in open_decisions(session, rows)]
        assert slates and all(len(slate["items"]) == 6 and not out & set(slate["items"]) for slate in slates), region


def test_a_region_matches_whatever_its_case() -> None:
    from governance.availability import AvailabilityMasks

    masks = AvailabilityMasks(np.array(["a", "b", "c"]), ["c"], {"de": ["a"], "DE": ["b"]})
    for region in ("DE", "de", "De"):
        assert masks.allowed({"region": region}).tolist() == [False, False, False]
    assert masks.allowed({"region": "fr"}).tolist() == [True, True, False]
