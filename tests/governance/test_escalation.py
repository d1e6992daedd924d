"""Harmful-content rules: flags block or go to review, reports and over-exposure open cases, blocks take effect at once."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from audits.decisions import DecisionLog
from audits.harm import flag_item, list_cases, report_item, transition_case
from governance.escalation import evaluate_escalations, items_out_of_lists
from governance.policy import load_pack
from governance.serving import ServeRequest, ServingEngine
from recommender.als import ALSRecommender
from recommender.feedback import to_implicit
from recommender.synthetic import SyntheticSpec, generate


def test_rules_fire_and_a_block_takes_effect_at_the_next_request(store) -> None:
    pack = load_pack("policies/eu-gdpr-dsa.yaml").pack  # blocks csam, terrorism, self-harm; 3 reports escalate
    with store.session() as session:
        flag_item(session, item_id="i1", category="self-harm", confidence=0.95, source="model")
        flag_item(session, item_id="i2", category="self-harm", confidence=0.40, source="model")
        flag_item(session, item_id="i3", category="violence", confidence=0.99, source="model")  # not a blocked category
        for _ in range(3):
            report_item(session, item_id="i4", reason="misleading")
        report_item(session, item_id="i5", reason="spam")
        opened = evaluate_escalations(session, pack)
        out = items_out_of_lists(session)
    assert sorted((c["item_id"], c["rule"]) for c in opened) == [("i2", "harm.review"), ("i4", "harm.reports")]
    assert out == {"i1", "i2", "i4"}  # blocked outright, under review, under review
    with store.session() as session:
        assert evaluate_escalations(session, pack) == []  # the same rules do not open the same cases twice
        case = next(c for c in list_cases(session, status="open") if c["item_id"] == "i4")
        transition_case(session, case["id"], status="triaged", actor="reviewer")
        transition_case(session, case["id"], status="dismissed", note="not misleading", actor="reviewer")
        assert "i4" not in items_out_of_lists(session)
    with store.session() as session:  # the dismissal stands until new evidence arrives
        assert evaluate_escalations(session, pack) == []
        assert "i4" not in items_out_of_lists(session)
        for _ in range(3):
            report_item(session, item_id="i4", reason="misleading, again")
        reopened = evaluate_escalations(session, pack)
    assert [(c["item_id"], c["rule"]) for c in reopened] == [("i4", "harm.reports")]
    with store.session() as session:  # a flag of a blocked category keeps an item out even without a case
        flag_item(session, item_id="i9", category="csam", confidence=0.1, source="report")
        assert "i9" in items_out_of_lists(session, pack)


def test_flagged_items_over_their_share_of_served_places_open_cases(store) -> None:
    data = generate(SyntheticSpec(n_users=200, n_items=120, n_interactions=8000, seed=2))
    matrix = to_implicit(data.events)
    model = ALSRecommender(factors=4, iterations=3).fit(matrix)
    loaded = load_pack("policies/california-ccpa.yaml")
    log = DecisionLog(store)
    try:
        engine = ServingEngine(loaded, model, data.items, sink=log)
        served = [engine.serve(ServeRequest(str(u), k=10)) for u in matrix.user_ids[:20]]
    finally:
        log.close()
    counts = Counter(item for s in served for item in s.items)
    total = sum(counts.values())
    flagged, places = [], 0
    for item, n in counts.most_common():  # flag the most served items until they pass the limit
        flagged.append(item)
        places += n
        if places / total > loaded.pack.harmful_content.max_flagged_share:
            break
    with store.session() as session:
        for item in flagged:
            flag_item(session, item_id=item, category="adult", confidence=0.3, source="model")
        opened = evaluate_escalations(session, loaded.pack, since=datetime(2020, 1, 1, tzinfo=UTC))
    assert sorted((c["item_id"], c["rule"]) for c in opened) == sorted((i, "harm.exposure") for i in flagged)
    with store.session() as session:
        engine = ServingEngine(loaded, model, data.items, blocked=items_out_of_lists(session))  # the next request
    user = next(s for s in served if set(s.items) & set(flagged))
    assert not set(flagged) & set(engine.serve(ServeRequest(str(matrix.user_ids[served.index(user)]), k=10)).items)
