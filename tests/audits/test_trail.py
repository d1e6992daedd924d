"""Appending to the trail, reading it back, and the database's refusal to change it."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from audits import NewEvent, Store, append_event, append_many, open_store, read_head, verify_trail
from audits.models import TrailEvent
from audits.trail import GENESIS_HASH, NOT_A_PSEUDONYM, TIME_FORMAT, event_hash, event_message
from recommender.errors import DataError


def _verify(store: Store):
    with store.snapshot() as connection:
        return verify_trail(connection)


def test_an_empty_trail_is_intact(store: Store) -> None:
    report = _verify(store)
    assert report.intact and report.n_events == 0 and report.head_seq == 0 and report.head_hash == GENESIS_HASH


def test_appended_events_chain_and_read_back_exactly(store: Store) -> None:
    with store.session() as session:
        first = append_event(
            session,
            actor="svc:serving",
            action="decision.served",
            objects={"model": "m1", "decision": 7},
            payload={"items": [3, 1, 2], "note": 'é \u2028 "quoted"', "score": 0.25, "flag": True, "none": None},
        )
        result = append_many(session, [NewEvent(actor="a", action="x.y", payload={"i": i}) for i in range(5)])
    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    assert (result.first_seq, result.last_seq, result.count) == (2, 6, 5)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first.time)
    assert datetime.strptime(first.time, TIME_FORMAT).replace(tzinfo=UTC) <= datetime.now(UTC)
    with store.session() as session:
        rows = session.scalars(select(TrailEvent).order_by(TrailEvent.seq)).all()
        assert read_head(session) == (6, result.head_hash)
    stored = rows[0]
    assert stored.time == first.time  # the exact string, both engines
    assert stored.objects == '{"decision":7,"model":"m1"}'
    message = event_message(1, stored.time, stored.actor, stored.action, None, stored.objects, stored.payload)
    assert event_hash(GENESIS_HASH, message) == stored.hash == first.hash
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert _verify(store).intact


def test_a_raw_identifier_is_refused_as_subject_and_nothing_is_written(store: Store) -> None:
    with pytest.raises(DataError, match=re.escape(NOT_A_PSEUDONYM.format(value="alice@example.org"))):
        with store.session() as session:
            append_event(session, actor="a", action="x.y")
            append_event(session, actor="a", action="x.y", subject="alice@example.org")
    report = _verify(store)
    assert report.intact and report.n_events == 0


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"actor": "", "action": "x.y"}, "actor must be 1 to 200 printable characters"),
        ({"actor": "a\n", "action": "x.y"}, "actor must be 1 to 200 printable characters"),
        ({"actor": "a", "action": "Model Recorded"}, "action must be dotted lowercase words"),
        ({"actor": "a", "action": "x.y", "payload": {"n": float("nan")}}, "not a finite number"),
        ({"actor": "a", "action": "x.y", "payload": [1]}, "event payload must be a JSON object"),
        ({"actor": "a", "action": "x.y", "colour": "red"}, "unknown event fields ['colour']"),
        ({"action": "x.y"}, "an event needs an actor and an action; got fields ['action']"),
    ],
)
def test_invalid_events_are_refused(store: Store, event: dict, message: str) -> None:
    with pytest.raises(DataError, match=re.escape(message)), store.session() as session:
        append_many(session, [event])


def test_a_rolled_back_transaction_leaves_no_event(store: Store) -> None:
    with pytest.raises(RuntimeError), store.session() as session:
        append_many(session, [NewEvent(actor="a", action="x.y")] * 10)
        raise RuntimeError("the caller failed after appending")
    with store.session() as session:
        assert append_event(session, actor="a", action="x.y").seq == 1


def test_an_empty_batch_appends_nothing(store: Store) -> None:
    with store.session() as session:
        result = append_many(session, [])
    assert result.count == 0 and result.head_hash == GENESIS_HASH


REFUSED = [
    "UPDATE trail_events SET actor = 'mallory' WHERE seq = 2",
    "DELETE FROM trail_events WHERE seq = 3",
    "DELETE FROM trail_events",
    "UPDATE trail_head SET seq = 1",
    "DELETE FROM trail_head",
    "UPDATE signing_keys SET public_key_pem = 'x'",
    "DELETE FROM trail_checkpoints",
]


@pytest.mark.parametrize("statement", REFUSED)
def test_the_database_refuses_to_change_history(store: Store, statement: str) -> None:
    from audits import create_checkpoint, load_signing_key

    with store.session() as session:
        append_many(session, [NewEvent(actor="a", action="x.y", payload={"i": i}) for i in range(5)])
        create_checkpoint(session, load_signing_key())
    with pytest.raises(DBAPIError, match="recgov: .*(append-only|refused|only moves forward)"):
        with store.engine.begin() as connection:
            connection.execute(text(statement))
    assert _verify(store).intact


@pytest.mark.postgres
def test_truncate_is_refused_on_postgresql(postgres_url: str) -> None:
    """SQLite has no TRUNCATE; PostgreSQL's bypasses DELETE triggers unless a TRUNCATE trigger refuses it."""
    store = open_store(postgres_url)
    try:
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as connection:
            connection.execute(text("TRUNCATE trail_events CASCADE"))
    finally:
        store.close()


def test_appends_refuse_a_head_that_does_not_match_the_last_event(store: Store) -> None:
    with store.session() as session:
        append_many(session, [NewEvent(actor="a", action="x.y")] * 3)
    with store.engine.begin() as connection:  # an attacker removes the last event around the triggers
        if store.dialect == "postgresql":
            connection.execute(text("ALTER TABLE trail_events DISABLE TRIGGER USER"))
            connection.execute(text("DELETE FROM trail_events WHERE seq = 3"))
            connection.execute(text("ALTER TABLE trail_events ENABLE TRIGGER USER"))
        else:
            connection.execute(text("DROP TRIGGER trail_events_no_delete"))
            connection.execute(text("DELETE FROM trail_events WHERE seq = 3"))
    with pytest.raises(DataError, match="the trail head says seq 3 .* is missing"), store.session() as session:
        append_event(session, actor="a", action="x.y")
    report = _verify(store)
    assert (report.intact, report.first_bad_seq, report.reason) == (False, 3, "truncated")


def test_a_caller_who_commits_after_a_failed_chunk_still_leaves_a_consistent_chain(store: Store) -> None:
    """Regression: the head used to move only at the end of a batch, so committing after an
    error in a later chunk left events beyond the head."""
    events = [NewEvent(actor="a", action="x.y"), NewEvent(actor="a", action="x.y"), NewEvent(actor="", action="x.y")]
    with store.session() as session:
        with pytest.raises(DataError):
            append_many(session, events, chunk_size=2)
    report = _verify(store)
    assert (report.intact, report.n_events, report.head_seq) == (True, 2, 2)
