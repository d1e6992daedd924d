"""The governed request path: consent decides what is read, blocked items never go out, every item is tagged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance.consent.state import ConsentRecord
from governance.policy import load_pack, parse_pack
from governance.serving import ServeRequest, ServingEngine
from recommender.als import ALSRecommender
from recommender.feedback import to_implicit
from recommender.synthetic import SyntheticSpec, generate

T0 = datetime(2025, 1, 1, tzinfo=UTC)
STATUSES = ["granted", "denied", "withdrawn", "opted_out", "objected"]


@pytest.fixture(scope="module")
def world():
    data = generate(SyntheticSpec(n_users=300, n_items=200, n_interactions=15000, seed=9, harmful_share=0.05))
    matrix = to_implicit(data.events)
    model = ALSRecommender(factors=8, iterations=5).fit(matrix)
    return data, matrix, model


def pack_with(*, reranking: dict, blocked: list[str]):
    """The EU pack with another re-ranking and other blocked categories."""
    from ruamel.yaml import YAML
    import io

    yaml = YAML(typ="safe", pure=True)
    doc = yaml.load(open("policies/eu-gdpr-dsa.yaml"))
    doc["reranking"] = reranking
    doc.setdefault("harmful_content", {})["blocked_categories"] = blocked
    out = io.StringIO()
    yaml.dump(doc, out)
    return parse_pack(out.getvalue(), "eu-variant.yaml")


def record(status: str, minutes: int, basis: str = "consent") -> ConsentRecord:
    return ConsentRecord(purpose="personalization", status=status, lawful_basis=basis, source="api", time=T0 + timedelta(minutes=minutes))


def eu_engine(world, **kwargs) -> ServingEngine:
    data, _, model = world
    return ServingEngine(load_pack("policies/eu-gdpr-dsa.yaml"), model, data.items, **kwargs)


def test_a_consenting_user_gets_a_personalized_list_with_exact_tags(world) -> None:
    _, matrix, model = world
    engine = eu_engine(world)
    user = str(matrix.user_ids[4])
    served = engine.serve(ServeRequest(user, k=5, consent=(record("granted", 0),)))
    assert served.mode == "personalized" and len(served.items) == 5
    history = {str(matrix.item_ids[i]) for i in matrix.matrix[4].indices}
    assert not history & set(served.items)
    for tags in served.tags:
        because = [t for t in tags if t["kind"] == "because_you_interacted"]
        assert because and set(because[0]["items"]) <= history
    assert served.pack["pack"] == "eu-gdpr-dsa" and len(served.pack["pack_hash"]) == 64
    assert served.model_version == model.version_id_


def non_profiling_ranking(engine: ServingEngine, k: int, context: dict) -> list[str]:
    return engine.serve(ServeRequest("someone-never-seen", k=k, consent=(), context=context)).items


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    user=st.integers(min_value=0, max_value=299),
    history=st.lists(st.tuples(st.sampled_from(STATUSES), st.integers(0, 10_000)), max_size=6),
    gpc=st.booleans(),
    k=st.integers(1, 20),
    category=st.sampled_from([None, "Drama", "Comedy", "Documentary"]),
)
def test_whoever_may_not_be_profiled_gets_the_non_profiling_ranking(world, user, history, gpc, k, category) -> None:
    """Property (GDPR Art. 6/7, DSA Art. 38): without a lawful basis, the list is the
    non-profiling ranking for the context, whatever the subject's history."""
    _, matrix, _ = world
    engine = eu_engine(world)
    records = tuple(record(status, minute) for status, minute in history)
    context = {"category": category} if category else {}
    request = ServeRequest(str(matrix.user_ids[user]), k=k, consent=records, gpc=gpc, context=context)
    decision = engine.decide_consent(request)
    served = engine.serve(request)
    if decision.allowed:
        assert served.mode == "personalized"
    else:
        assert served.mode == "non_profiling"
        assert served.items == non_profiling_ranking(engine, k, context)
        assert all(any(t["kind"] == "not_personalized" for t in tags) for tags in served.tags)


def test_history_is_not_read_without_a_lawful_basis(world, monkeypatch) -> None:
    _, matrix, model = world
    engine = eu_engine(world)

    def forbidden(*args, **kwargs):
        raise AssertionError("the user's history was read")

    monkeypatch.setattr(model.model_, "recommend", forbidden)
    served = engine.serve(ServeRequest(str(matrix.user_ids[0]), consent=(record("granted", 0), record("withdrawn", 5))))
    assert served.mode == "non_profiling"
    assert "withdraw" in served.consent_reason


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    blocked=st.sets(st.integers(0, 199), max_size=60),
    user=st.integers(0, 299),
    consent=st.booleans(),
    rerank=st.sampled_from(["none", "mmr", "fair", "explore", "calibrate"]),
    category=st.sampled_from([None, "Drama", "Comedy"]),
)
def test_no_blocked_item_is_ever_served(world, blocked, user, consent, rerank, category) -> None:
    """Property: whatever the candidates, the consent state and the re-rankers, a blocked item never goes out."""
    data, matrix, model = world
    steps = {
        "none": [],
        "mmr": [{"name": "mmr", "params": {"tradeoff": 0.5}}],
        "fair": [{"name": "fair_star", "params": {"p": 0.6}}],
        "explore": [{"name": "exploration", "params": {"epsilon": 0.5}}],
        "calibrate": [{"name": "calibration", "params": {"tradeoff": 0.5}}],
    }[rerank]
    engine = ServingEngine(pack_with(reranking={"enabled": bool(steps), "steps": steps}, blocked=["violence", "self-harm"]), model, data.items)
    blocked_ids = {str(matrix.item_ids[i]) for i in blocked}
    engine.set_blocked(blocked_ids)
    flags = data.items["flags"].reindex(pd.Index(matrix.item_ids.astype(str))).fillna("")
    harmful = {i for i, f in flags.items() if "harmful:violence" in f or "harmful:self-harm" in f}
    records = (record("granted", 0),) if consent else ()
    served = engine.serve(ServeRequest(str(matrix.user_ids[user]), k=10, consent=records, context={"category": category} if category else {}))
    assert not set(served.items) & (blocked_ids | harmful)
    assert len(set(served.items)) == len(served.items)


def test_bad_k_and_missing_vendor_are_clear_errors(world) -> None:
    engine = eu_engine(world)
    with pytest.raises(Exception, match=r"The 'k' parameter of serve must be an int in the range \[1, inf\)\. Got 0 instead\."):
        engine.serve(ServeRequest("u", k=0))
    tc = "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA"  # IAB iabtcf-java encoder example
    with pytest.raises(Exception, match="no TCF vendor id is configured"):
        engine.serve(ServeRequest("u", tcf=tc))


def test_every_decision_goes_to_the_sink_before_the_list_is_returned(world) -> None:
    _, matrix, _ = world
    written = []

    class Sink:
        def submit_and_wait(self, record, timeout=5.0):
            written.append(record)

    class Failing:
        def submit_and_wait(self, record, timeout=5.0):
            raise OSError("disk full")

    engine = eu_engine(world, sink=Sink(), pseudonymize=lambda s: "p-" + str(abs(hash(s)) % 1000))
    served = engine.serve(ServeRequest(str(matrix.user_ids[1]), consent=(record("granted", 0),)))
    assert written[0].decision_id == served.decision_id and written[0].slate["items"] == served.items
    assert written[0].pack_hash == served.pack["pack_hash"] and written[0].subject.startswith("p-")
    assert written[0].pack_name == "eu-gdpr-dsa" and written[0].mode == "personalized"
    assert str(matrix.user_ids[1]) not in repr(written[0])
    failing = eu_engine(world, sink=Failing())
    with pytest.raises(OSError, match="disk full"):
        failing.serve(ServeRequest(str(matrix.user_ids[1]), consent=(record("granted", 0),)))


def test_a_list_made_before_new_blocks_is_made_again_with_them(world) -> None:
    """begin() and finish() may be apart (the service makes the model part elsewhere meanwhile): a list
    made with the model part of before a set_blocked is not served; finish makes it with the new blocks."""
    data, matrix, model = world
    engine = ServingEngine(load_pack("policies/eu-gdpr-dsa.yaml"), model, data.items)
    request = ServeRequest(str(matrix.user_ids[2]), k=5, consent=(record("granted", 0),))
    plan = engine.begin(request)
    made = plan.personalizer.personalize(plan.row, 5)
    first = str(matrix.item_ids[int(made[0][0])])
    assert engine.finish(plan, made).items[0] == first  # the same blocks: the list made elsewhere is used
    plan = engine.begin(request)
    made = plan.personalizer.personalize(plan.row, 5)
    engine.set_blocked([first])
    served = engine.finish(plan, made)
    assert first not in served.items and served.items == engine.serve(request).items


def test_a_served_list_records_its_serving_latency_from_the_start_of_its_work(world) -> None:
    """The record's context gives ``latency_ms``: from begin (or the caller's own start) to the record, in ms, to the microsecond."""
    import time

    _, matrix, _ = world
    written = []

    class Sink:
        def submit_and_wait(self, record, timeout=5.0):
            written.append(record)

    engine = eu_engine(world, sink=Sink(), pseudonymize=lambda s: "p-" + str(abs(hash(s)) % 1000))
    request = ServeRequest(str(matrix.user_ids[1]), consent=(record("granted", 0),))
    before = time.perf_counter()
    engine.serve(request)
    elapsed_ms = (time.perf_counter() - before) * 1000.0
    latency = written[-1].context["latency_ms"]
    assert isinstance(latency, float) and 0 < latency <= elapsed_ms and latency == round(latency, 3)
    # A caller that began the work earlier (the API reads the request first) is timed from there.
    plan = engine.begin(request, started=time.perf_counter() - 0.25)
    engine.finish(plan)
    assert written[-1].context["latency_ms"] >= 250.0
    # Non-profiling lists are timed too.
    engine.serve(ServeRequest(str(matrix.user_ids[1]), consent=(record("withdrawn", 0),)))
    assert written[-1].mode == "non_profiling" and written[-1].context["latency_ms"] > 0


def test_a_known_subject_with_no_interaction_left_gets_the_fallback_recorded_as_such() -> None:
    """A row the model still has but whose every interaction was removed is no history to personalize from."""
    import numpy as np
    import scipy.sparse as sp

    from recommender.data import InteractionMatrix

    data = generate(SyntheticSpec(n_users=120, n_items=80, n_interactions=5000, seed=3))
    full = to_implicit(data.events)
    emptied = full.matrix.tolil()
    emptied[7, :] = 0
    emptied = sp.csr_matrix(emptied)
    emptied.eliminate_zeros()
    matrix = InteractionMatrix(emptied, full.user_ids, full.item_ids)
    model = ALSRecommender(factors=8, iterations=5).fit(matrix)
    engine = ServingEngine(load_pack("policies/eu-gdpr-dsa.yaml"), model, data.items)
    granted = (record("granted", 0),)
    empty = engine.serve(ServeRequest(str(full.user_ids[7]), k=5, consent=granted))
    assert empty.mode == "fallback"
    assert all(any(t["kind"] == "popular_in_context" for t in tags) for tags in empty.tags)
    other = engine.serve(ServeRequest(str(full.user_ids[8]), k=5, consent=granted))
    assert other.mode == "personalized" and np.asarray(emptied[8].indices).size > 0


class _FailingSink:
    """A decision log whose write fails: the list is made, its record cannot be stored."""

    def submit_and_wait(self, record) -> None:  # noqa: ANN001
        raise RuntimeError("the store is down")


def test_a_failed_request_records_its_mode_and_assignment_never_its_subject(world) -> None:
    """A failure's record carries how its list was being made (an experiment's error rate within a segment counts the
    segment's requests), its assignment, and whether it was a shadow's copy; never the subject. A request that fails
    before the engine can tell how its list would be made records no mode."""
    _, matrix, _ = world
    reported: list[tuple[str, dict]] = []
    engine = eu_engine(world, sink=_FailingSink(), on_failure=lambda cause, detail: reported.append((cause, detail)))
    known, assignment = str(matrix.user_ids[4]), {"id": 7, "variant": "treatment", "reason": "randomised"}
    cases = {
        "known": ServeRequest(known, k=5, consent=(record("granted", 0),), experiment=assignment),
        "new": ServeRequest("someone-never-seen", k=5, consent=(record("granted", 0),), experiment=assignment),
        "shadow": ServeRequest(known, k=5, consent=(record("granted", 0),), experiment=assignment),
        "undecidable": ServeRequest(known, k=5, consent=(record("granted", 0),), tcf="not a TC string", experiment=assignment),
    }
    for name, request in cases.items():
        with pytest.raises(Exception):
            engine.serve(request, shadow_of="a-served-decision" if name == "shadow" else None)
    details = {name: detail for name, (_, detail) in zip(cases, reported, strict=True)}
    assert details["known"]["mode"] == "personalized" and details["new"]["mode"] == "fallback"
    assert details["shadow"]["shadow"] is True and "shadow" not in details["known"]
    assert "mode" not in details["undecidable"]
    for detail in details.values():
        assert detail["experiment"] == assignment and known not in repr(detail) and "someone-never-seen" not in repr(detail)
