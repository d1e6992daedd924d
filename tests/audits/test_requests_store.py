"""Subject requests: deadlines from the pack, a validated workflow, overdue lists, erasure by shredding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from audits import (
    Store,
    count_requests,
    list_requests,
    open_request,
    pseudonym,
    record_consent,
    shred_subject,
    update_request,
    verify_trail,
)
from recommender.errors import ConfigError, DataError
from store_dump import dump_store

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RAW_IDS = ["alice@example.org", "user-8271", "9876543210"]


def _assert_clean(store: Store) -> None:
    with store.snapshot() as connection:
        report = verify_trail(connection)
    assert report.intact, report.summary()
    dump = dump_store(store)
    assert not [raw for raw in RAW_IDS if raw in dump]


def _actions(store: Store) -> list[str]:
    with store.engine.connect() as connection:
        return list(connection.execute(text("SELECT action FROM trail_events ORDER BY seq")).scalars())


def test_a_request_runs_from_received_to_completed_with_its_deadline(store: Store) -> None:
    with store.session() as session:
        request = open_request(
            session, subject_id="alice@example.org", kind="access", deadline_days=30, requested_at=T0, actor="dpo"
        )
        who = pseudonym(session, "alice@example.org")
    assert (request.status, request.subject, request.deadline) == ("received", who, T0 + timedelta(days=30))
    with store.session() as session:
        update_request(session, request.id, status="in_progress", actor="dpo", at=T0 + timedelta(days=1))
        done = update_request(
            session,
            request.id,
            status="completed",
            actor="dpo",
            at=T0 + timedelta(days=2),
            result={"export": "sha256:abc", "logic": "ALS over your interactions (Art. 15(1)(h))"},
        )
    with store.session() as session:
        [listed] = list_requests(session)
    assert listed == {
        "id": request.id,
        "kind": "access",
        "subject": who,
        "status": "completed",
        "requested_at": T0,
        "deadline": T0 + timedelta(days=30),
        "completed_at": T0 + timedelta(days=2),
        "result": {"export": "sha256:abc", "logic": "ALS over your interactions (Art. 15(1)(h))"},
        "trail_seq": done.trail_seq,
    }
    assert _actions(store) == ["subject_request.opened", "subject_request.in_progress", "subject_request.completed"]
    with store.engine.connect() as connection:
        subjects = set(connection.execute(text("SELECT subject FROM trail_events")).scalars())
    assert subjects == {who}
    _assert_clean(store)


REQUEST_REFUSALS = [
    (["completed"], "subject request {id} is 'received'; it can move only to 'in_progress', not to 'completed'"),
    (["failed"], "subject request {id} is 'received'; it can move only to 'in_progress', not to 'failed'"),
    (
        ["in_progress", "received"],
        "subject request {id} is 'in_progress'; it can move only to 'in_progress', 'completed' or 'failed', not to 'received'",
    ),
    (
        ["in_progress", "failed", "completed"],
        "subject request {id} is 'failed'; that is final: it can move nowhere, not to 'completed'",
    ),
    (
        ["in_progress", "completed", "completed"],
        "subject request {id} is 'completed'; that is final: it can move nowhere, not to 'completed'",
    ),
    (["done"], "status must be one of received, in_progress, completed, failed; got 'done'"),
]


def test_the_workflow_refuses_other_transitions(store: Store) -> None:
    for path, message in REQUEST_REFUSALS:
        with store.session() as session:
            request_id = open_request(session, subject_id="alice@example.org", kind="erasure", deadline_days=30).id
        *allowed, refused = path
        with store.session() as session:
            for status in allowed:
                update_request(session, request_id, status=status)
        events = len(_actions(store))
        with pytest.raises(ConfigError) as caught, store.session() as session:
            update_request(session, request_id, status=refused)
        assert str(caught.value) == message.format(id=request_id)
        assert len(_actions(store)) == events  # nothing written
    _assert_clean(store)


BAD_REQUESTS = [
    ({"kind": "rectification"}, ConfigError, "kind must be one of access, erasure, objection, retrain; got 'rectification'"),
    ({"deadline_days": 0}, ConfigError, "deadline_days must be an integer from 1 to 366; got 0"),
    ({"deadline_days": 30.5}, ConfigError, "deadline_days must be an integer from 1 to 366; got 30.5"),
    ({"requested_at": datetime(2026, 3, 1)}, DataError, "requested_at must be a timezone-aware datetime"),
]


def test_bad_requests_are_refused(store: Store) -> None:
    for change, error, message in BAD_REQUESTS:
        arguments = {"subject_id": "alice@example.org", "kind": "access", "deadline_days": 30} | change
        with pytest.raises(error, match=message), store.session() as session:
            open_request(session, **arguments)
    assert _actions(store) == []


def test_updates_refuse_unknown_requests_and_raw_ids_in_results(store: Store) -> None:
    with pytest.raises(ConfigError, match="unknown subject request 99; list them with list_requests"):
        with store.session() as session:
            update_request(session, 99, status="in_progress")
    with store.session() as session:
        request = open_request(session, subject_id="user-8271", kind="access", deadline_days=30)
        update_request(session, request.id, status="in_progress")
    with pytest.raises(DataError, match=r"result must not carry a raw subject id, but the key at \$.user_id does"):
        with store.session() as session:
            update_request(session, request.id, status="completed", result={"user_id": "user-8271"})
    with pytest.raises(DataError, match="is before the request was made"), store.session() as session:
        update_request(session, request.id, status="completed", at=request.requested_at - timedelta(days=1))
    _assert_clean(store)


def test_overdue_lists_only_open_requests_past_their_deadline(store: Store) -> None:
    with store.session() as session:
        late = open_request(session, subject_id="alice@example.org", kind="access", deadline_days=30, requested_at=T0)
        late_working = open_request(
            session, subject_id="user-8271", kind="erasure", deadline_days=30, requested_at=T0 + timedelta(days=1)
        )
        done = open_request(session, subject_id=9876543210, kind="objection", deadline_days=30, requested_at=T0)
        fresh = open_request(
            session,
            subject_id="alice@example.org",
            kind="objection",
            deadline_days=45,
            requested_at=T0 + timedelta(days=20),
        )
        update_request(session, late_working.id, status="in_progress")
        update_request(session, done.id, status="in_progress")
        update_request(session, done.id, status="completed")
    now = T0 + timedelta(days=40)
    with store.session() as session:
        overdue = [r["id"] for r in list_requests(session, overdue_at=now)]
        erasures = [r["id"] for r in list_requests(session, kind="erasure")]
        completed = [r["id"] for r in list_requests(session, status="completed")]
        received = [r["id"] for r in list_requests(session, status="received", overdue_at=now)]
        with pytest.raises(ConfigError, match="kind must be one of access, erasure, objection, retrain; got 'delete'"):
            list_requests(session, kind="delete")
    assert overdue == [late.id, late_working.id]
    assert (erasures, completed, received) == ([late_working.id], [done.id], [late.id])
    assert fresh.id not in overdue
    _assert_clean(store)


def test_an_erasure_request_completes_after_the_subject_is_shredded(store: Store) -> None:
    with store.session() as session:
        record_consent(
            session,
            subject_id="alice@example.org",
            purpose="personalization",
            status="granted",
            lawful_basis="consent",
            source="banner",
        )
        request = open_request(session, subject_id="alice@example.org", kind="erasure", deadline_days=30)
    with store.session() as session:
        update_request(session, request.id, status="in_progress", actor="dpo")
        old = shred_subject(session, "alice@example.org", actor="dpo")
        done = update_request(
            session,
            request.id,
            status="completed",
            actor="dpo",
            result={"models_affected": ["model-abc"], "residual_influence": 0.0, "retrain_scheduled": True},
        )
    assert old == request.subject == done.subject
    with store.engine.connect() as connection:
        events = (
            connection.execute(text("SELECT action FROM trail_events WHERE subject = :s ORDER BY seq"), {"s": old})
            .scalars()
            .all()
        )
    assert events == [
        "consent.recorded",
        "subject_request.opened",
        "subject_request.in_progress",
        "subject.shredded",
        "subject_request.completed",
    ]
    _assert_clean(store)


def test_pages_follow_the_listing_order_and_refuse_an_unknown_cursor_changing_nothing(store: Store) -> None:
    """Oldest first by the time made, ties by id, whatever the id order; every request once; a bad cursor refused."""
    from audits import page_requests
    from audits.requests import UnknownCursor

    now = datetime.now(UTC)
    tie = now - timedelta(days=9)
    with store.session() as session:
        for n, days in enumerate((1, 30, 9, 9, 2, 45)):
            open_request(session, subject_id=f"page-{n}", kind="access", deadline_days=30, requested_at=tie if days == 9 else now - timedelta(days=days))
        expected = [r["id"] for r in list_requests(session)]
    assert expected != sorted(expected)
    with store.session() as session:
        for limit in (1, 2, 4, 6, 7):
            seen, after = [], 0
            while after is not None:
                rows, after = page_requests(session, limit=limit, after=after)
                seen += [r["id"] for r in rows]
            assert seen == expected, limit
    before = dump_store(store)
    with store.session() as session:
        for bad in (max(expected) + 1, -1, 2**31, 2**40):
            with pytest.raises(UnknownCursor, match="no subject request"):
                page_requests(session, limit=2, after=bad)
        with pytest.raises(ConfigError, match="limit"):
            page_requests(session, limit=0)
    assert dump_store(store) == before


def test_listing_chosen_requests_reads_only_those(store: Store) -> None:
    from sqlalchemy import event

    from audits.models import SubjectRequest

    with store.session() as session:
        opened = [
            open_request(session, subject_id=f"subject-{j}", kind="retrain", deadline_days=30,
                         requested_at=T0 + timedelta(hours=j), actor="dpo")  # fmt: skip
            for j in range(6)
        ]
    wanted = [opened[4].id, opened[1].id, 2**40, -3]  # ids no request can have are no error: there is none
    loaded: list[object] = []
    listener = lambda target, context: loaded.append(target)  # noqa: E731
    event.listen(SubjectRequest, "load", listener)
    try:
        with store.session() as session:
            rows = list_requests(session, kind="retrain", ids=wanted)
            none = list_requests(session, ids=[])
    finally:
        event.remove(SubjectRequest, "load", listener)
    assert [r["id"] for r in rows] == [opened[1].id, opened[4].id]  # in the listing's order
    assert none == [] and len(loaded) == 2


def test_a_failed_request_stays_overdue_until_a_later_one_of_its_kind_completes(store: Store) -> None:
    """Regression: a failed request is final, so it left the overdue count at once, and the retry opened a new
    request with a new deadline: an erasure that failed (its subject not erased) vanished from the erasure_deadline
    check and from GET /v1/requests?overdue=true, and the clock started again."""
    with store.session() as session:
        failed = open_request(session, subject_id="alice@example.org", kind="erasure", deadline_days=30, requested_at=T0)
        update_request(session, failed.id, status="in_progress")
        update_request(session, failed.id, status="failed", result={"error": "the artifact could not be written"})
        other = open_request(session, subject_id="user-8271", kind="access", deadline_days=30, requested_at=T0)
        update_request(session, other.id, status="in_progress")
        update_request(session, other.id, status="completed")
    late = T0 + timedelta(days=31)
    with store.session() as session:
        assert [r["id"] for r in list_requests(session, overdue_at=late)] == [failed.id]
        assert count_requests(session, kind="erasure", overdue_at=late) == 1
        assert count_requests(session, overdue_at=T0 + timedelta(days=29)) == 0  # not before its own deadline
        # the retry, later, with its own deadline; another kind completed for the subject answers nothing
        access = open_request(session, subject_id="alice@example.org", kind="access", deadline_days=30, requested_at=T0 + timedelta(days=2))
        update_request(session, access.id, status="in_progress")
        update_request(session, access.id, status="completed")
        retry = open_request(session, subject_id="alice@example.org", kind="erasure", deadline_days=30, requested_at=T0 + timedelta(days=3))
        update_request(session, retry.id, status="in_progress")
    with store.session() as session:
        assert [r["id"] for r in list_requests(session, overdue_at=late)] == [failed.id]
        update_request(session, retry.id, status="completed")
    with store.session() as session:
        assert list_requests(session, overdue_at=T0 + timedelta(days=60)) == []
        assert count_requests(session, overdue_at=T0 + timedelta(days=60)) == 0
    _assert_clean(store)
