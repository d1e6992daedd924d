"""Served decisions with group commit: durable before the answer, one transaction and one event per batch."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from audits import (
    DecisionLog,
    Store,
    log_failure,
    lookup_pseudonyms,
    pseudonym,
    verify_decisions,
    verify_trail,
)
from audits.consent_write import ConsentWrite
from audits.db import create_store_engine
from audits.decision_record import Decision, _fast_digest, _prepare, batch_digest
from audits.settings import get_settings
from recommender.errors import ConfigError, DataError, RecgovError
from store_dump import dump_store

N_THREADS = 8
PER_THREAD = 250
READERS = [f"reader-{i:03d}@example.org" for i in range(40)]


def _assert_clean(store: Store, raw_ids: list[str] = READERS) -> None:
    with store.snapshot() as connection:
        report = verify_trail(connection)
        problems = verify_decisions(connection)
    assert report.intact, report.summary()
    assert problems == []
    dump = dump_store(store)
    assert not [raw for raw in raw_ids if raw in dump]


def _scalar(store: Store, sql: str) -> int:
    with store.engine.connect() as connection:
        return connection.execute(text(sql)).scalar_one()


def _record(n: int, **fields) -> dict:
    record = {
        "mode": "personalized",
        "pack_name": "eu-gdpr-dsa",
        "pack_version": "3",
        "pack_hash": "sha256:" + "ab" * 32,
        "model_version": "als-3f2a",
        "slate": {
            "items": [f"item-{(n * 7 + k) % 500}" for k in range(10)],
            "scores": [round(1 / (k + 1.5), 6) for k in range(10)],
            "tags": {"item-1": ["because you watched item-9"]},
        },
        "context": {"surface": "home", "locale": "de-DE", "latency_ms": 12.5},
    }
    return record | fields


def test_eight_threads_log_2000_decisions_durably_in_few_batches(store: Store) -> None:
    with store.session() as session:
        known = {raw: pseudonym(session, raw) for raw in READERS[:20]}  # the serving path has these already
    receipts: list = []
    errors: list = []
    start = threading.Barrier(N_THREADS + 1)

    def serve(log: DecisionLog, worker: int) -> None:
        start.wait()
        try:
            for n in range(PER_THREAD):
                k = worker * PER_THREAD + n
                if k % 10 == 0:
                    record = _record(k, mode="non_profiling", model_version=None)  # anonymous, DSA Art. 38
                elif k % 2:
                    record = _record(k, subject=known[READERS[k % 20]])
                else:
                    record = _record(k, subject_id=READERS[20 + k % 20])  # a raw id: stored as its pseudonym
                receipts.append(log.submit_and_wait(record, timeout=30))
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    log = DecisionLog(store, max_batch=256, max_delay_ms=5)
    threads = [threading.Thread(target=serve, args=(log, w)) for w in range(N_THREADS)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    log.close()
    assert errors == []
    total = N_THREADS * PER_THREAD
    batches = _scalar(store, "SELECT COUNT(*) FROM trail_events WHERE action = 'decisions.committed'")
    print(
        f"\nDecisionLog on {store.dialect}: {total} decisions from {N_THREADS} threads (each waiting for "
        f"durability) in {elapsed:.2f} s = {total / elapsed:,.0f} decisions/s, {batches} batches "
        f"(mean {total / batches:.1f} per commit)"
    )
    assert len(receipts) == total and len({r.decision_id for r in receipts}) == total
    assert _scalar(store, "SELECT COUNT(*) FROM decisions") == total
    assert batches == log.batches_committed and batches <= total / 3  # far fewer commits than decisions
    assert log.decisions_committed == total and log.batches_failed == 0
    assert _scalar(store, "SELECT COUNT(*) FROM decisions WHERE subject IS NULL") == total // 10
    with store.session() as session:
        mapped = lookup_pseudonyms(session, READERS[20:])
    expected = {known[READERS[k % 20]] for k in range(1, total, 2)}
    expected |= {mapped[READERS[20 + k % 20]] for k in range(0, total, 2) if k % 10}
    with store.engine.connect() as connection:
        stored = set(connection.execute(text("SELECT DISTINCT subject FROM decisions")).scalars()) - {None}
    assert stored == expected and None not in expected
    _assert_clean(store)


def test_a_batch_event_carries_count_ids_and_digest(store: Store) -> None:
    ids = sorted(str(uuid.uuid4()) for _ in range(3))
    with DecisionLog(store, max_delay_ms=200) as log:
        futures = [log.submit(_record(n, decision_id=i, subject=f"{n:064x}")) for n, i in enumerate(ids)]
        log.flush(timeout=10)
        assert {f.result().batch_seq for f in futures} == {1}
    with store.engine.connect() as connection:
        event = connection.execute(text("SELECT action, payload FROM trail_events WHERE seq = 1")).one()
        rows = connection.execute(text("SELECT decision_id, batch_seq FROM decisions ORDER BY decision_id")).all()
    payload = json.loads(event.payload)
    assert event.action == "decisions.committed"
    assert payload | {"sha256": None} == {
        "count": 3,
        "first_decision_id": ids[0],
        "last_decision_id": ids[-1],
        "sha256": None,
    }
    assert [tuple(r) for r in rows] == [(i, 1) for i in ids]
    assert len(payload["sha256"]) == 64
    _assert_clean(store)


def test_a_changed_or_deleted_decision_no_longer_matches_its_batch(store: Store) -> None:
    with DecisionLog(store) as log:
        first = log.submit_and_wait(_record(1, subject="ab" * 32))
        second = log.submit_and_wait(_record(2, subject="cd" * 32))
    assert first.batch_seq != second.batch_seq
    with store.engine.begin() as connection:
        connection.execute(
            text("UPDATE decisions SET pack_version = '2' WHERE decision_id = :d"), {"d": first.decision_id}
        )
        connection.execute(text("DELETE FROM decisions WHERE decision_id = :d"), {"d": second.decision_id})
    with store.snapshot() as connection:
        problems = verify_decisions(connection)
    assert problems == [
        {"batch_seq": first.batch_seq, "problem": "the decisions no longer match the batch's SHA-256 (changed)"},
        {"batch_seq": second.batch_seq, "problem": "the trail says 1 decisions, 0 are stored"},
    ]


def test_a_failing_database_makes_submit_and_wait_raise_and_leaves_nothing(store: Store) -> None:
    if store.dialect == "postgresql":
        refuse = [
            (
                "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'disk full (simulated)'; END $$"
            ),
            "CREATE TRIGGER test_refuse BEFORE INSERT ON decisions FOR EACH ROW EXECUTE FUNCTION test_refuse()",
        ]
        allow = ["DROP TRIGGER test_refuse ON decisions", "DROP FUNCTION test_refuse()"]
    else:
        refuse = [
            (
                "CREATE TRIGGER test_refuse BEFORE INSERT ON decisions BEGIN "
                "SELECT RAISE(ABORT, 'disk full (simulated)'); END"
            )
        ]
        allow = ["DROP TRIGGER test_refuse"]
    with DecisionLog(store) as log:
        log.submit_and_wait(_record(0, subject="ab" * 32))
        with store.engine.begin() as connection:
            for statement in refuse:
                connection.exec_driver_sql(statement)
        record = _record(1, subject_id=READERS[0])
        opt_out = ConsentWrite("personalization", "opted_out", "consent", "gpc", {"signal": "Sec-GPC: 1"}, datetime.now(UTC))
        with pytest.raises(RecgovError) as caught:  # the consent record the decision was made on fails with it
            log.submit_and_wait(record, timeout=10, consent=(opt_out,))
        message = str(caught.value)
        assert "was not recorded" in message and "disk full (simulated)" in message
        assert message.endswith("fail closed: do not serve it")
        assert READERS[0] not in message
        assert log.batches_failed >= 1
        with store.engine.begin() as connection:
            for statement in allow:
                connection.exec_driver_sql(statement)
        log.submit_and_wait(_record(2, subject="cd" * 32))  # the writer lives on
    assert _scalar(store, "SELECT COUNT(*) FROM decisions") == 2
    assert _scalar(store, "SELECT COUNT(*) FROM trail_events WHERE action = 'decisions.committed'") == 2
    assert _scalar(store, "SELECT COUNT(*) FROM consent_records") == 0
    assert _scalar(store, "SELECT COUNT(*) FROM trail_events WHERE action = 'consent.recorded'") == 0
    _assert_clean(store)


def test_an_unreachable_database_fails_closed_quickly() -> None:
    engine = create_store_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    dead = Store(engine, get_settings())
    try:
        with DecisionLog(dead) as log:
            with pytest.raises(ConfigError, match="was not recorded: the database .* failed: .*fail closed"):
                log.submit_and_wait(_record(1, subject="ab" * 32), timeout=10)
    finally:
        dead.close()


def test_a_duplicate_decision_id_fails_alone(store: Store) -> None:
    taken = str(uuid.uuid4())
    with DecisionLog(store, max_delay_ms=100) as log:
        log.submit_and_wait(_record(0, decision_id=taken, subject="ab" * 32))
        futures = [log.submit(_record(n, subject="ab" * 32)) for n in range(1, 4)]
        duplicate = log.submit(_record(9, decision_id=taken, subject="ab" * 32))
        futures += [log.submit(_record(n, subject="ab" * 32)) for n in range(4, 6)]
        log.flush(timeout=10)
        with pytest.raises(DataError, match=f"decision {taken} was not recorded"):
            duplicate.result()
        assert all(f.result().batch_seq > 0 for f in futures)
    assert _scalar(store, "SELECT COUNT(*) FROM decisions") == 6
    _assert_clean(store)


def test_close_writes_everything_queued_and_then_refuses(store: Store) -> None:
    log = DecisionLog(store, max_batch=64, max_delay_ms=1)
    futures = [log.submit(_record(n, subject_id=READERS[n % 5])) for n in range(300)]
    log.close()
    assert all(f.done() for f in futures) and log.decisions_committed == 300
    assert log.batches_committed >= 300 / 64
    with pytest.raises(ConfigError, match="the decision log is closed; open a new DecisionLog"):
        log.submit(_record(1, subject="ab" * 32))
    log.close()  # twice is fine
    _assert_clean(store)


BAD_RECORDS = [
    (
        _record(1) | {"mode": "random"},
        ConfigError,
        "mode must be one of personalized, fallback, non_profiling; got 'random'",
    ),
    (_record(1), DataError, "a personalized decision needs its subject"),
    (
        {k: v for k, v in _record(1, subject="ab" * 32).items() if k != "pack_hash"},
        DataError,
        "a decision record needs mode, pack_name, pack_version, pack_hash, slate; missing pack_hash",
    ),
    (_record(1, subject="reader-000@example.org"), DataError, "a decision's 'subject' must be a pseudonym"),
    (_record(1, subject="ab" * 32, subject_id="x"), DataError, "either as 'subject' .* or as 'subject_id'"),
    (
        _record(1, subject_id=READERS[1], context={"note": f"asked by {READERS[1]}"}),
        DataError,
        r"context must not carry a raw subject id, but the value at \$.note does",
    ),
    (
        _record(1, subject="ab" * 32, context={"user_id": 7}),
        DataError,
        r"context must not carry a raw subject id, but the key at \$.user_id does",
    ),
    (_record(1, subject="ab" * 32, decision_id="42"), DataError, "decision_id must be a UUID string, got '42'"),
    (
        _record(1, subject="ab" * 32, slate={"items": ["a"], "scores": [1, 2]}),
        DataError,
        r"slate 'scores' must be a list as long as 'items' \(1\)",
    ),
    (_record(1, subject="ab" * 32, slate={"top": ["a"]}), DataError, "slate must have 'items'"),
    (
        _record(1, subject="ab" * 32, decided_at=datetime(2026, 1, 1)),
        DataError,
        "decided_at must be a timezone-aware datetime",
    ),
    (_record(1, subject="ab" * 32, decided_at=datetime.now(UTC) + timedelta(hours=1)), DataError, "in the future"),
    (_record(1, subject="ab" * 32, score=3), DataError, r"unknown decision fields \['score'\]"),
    (_record(1, subject="ab" * 32, slate={"items": [float("inf")]}), DataError, "not a finite number"),
]


def test_bad_records_are_refused_at_submit_in_the_callers_thread(store: Store) -> None:
    with DecisionLog(store) as log:
        for record, error, message in BAD_RECORDS:
            with pytest.raises(error, match=message):
                log.submit(record)
    assert _scalar(store, "SELECT COUNT(*) FROM trail_events") == 0
    with pytest.raises(ConfigError, match="max_batch must be a positive integer; got 0"):
        DecisionLog(store, max_batch=0)


def test_failed_requests_are_logged_with_a_trail_event(store: Store) -> None:
    row = log_failure(store, "policy.unverifiable", {"pack": "eu-gdpr-dsa", "error": "bad signature"})
    with store.session() as session:
        log_failure(session, "model.timeout", {"model_version": "als-3f2a", "after_ms": 80})
    with pytest.raises(DataError, match=r"detail must not carry a raw subject id, but the key at \$.user_id"):
        log_failure(store, "model.timeout", {"user_id": READERS[0]})
    with pytest.raises(DataError, match="cause must be a non-empty string of at most 100 characters"):
        log_failure(store, "", {})
    with store.engine.connect() as connection:
        actions = connection.execute(text("SELECT action FROM trail_events ORDER BY seq")).scalars().all()
        causes = connection.execute(text("SELECT cause FROM failed_requests ORDER BY id")).scalars().all()
    assert row.trail_seq == 1 and row.detail == {"pack": "eu-gdpr-dsa", "error": "bad signature"}
    assert actions == ["request.failed", "request.failed"]
    assert causes == ["policy.unverifiable", "model.timeout"]
    _assert_clean(store)


def test_the_digest_is_over_canonical_json_in_decision_id_order() -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    rows = [
        {
            "decision_id": i,
            "decided_at": at,
            "subject": None,
            "mode": "fallback",
            "pack_name": "p",
            "pack_version": "1",
            "pack_hash": "h",
            "model_version": None,
            "slate": {"items": [1]},
            "context": {},
        }
        for i in ("b", "a")
    ]
    assert batch_digest(rows) == batch_digest(rows[::-1])
    assert batch_digest(rows) != batch_digest([rows[0] | {"slate": {"items": [2]}}, rows[1]])


def test_the_writers_fast_digest_is_the_canonical_one_for_awkward_text_and_numbers() -> None:
    from concurrent.futures import Future

    records = [
        _record(
            1,
            subject="ab" * 32,
            pack_name='paquet-é \u2028 \x01 "q" \\ 😀',
            model_version=None,
            slate={
                "items": ["ß", "\ud7ff", "\U0001f600"],
                "scores": [1.0, 1e-7, 1e21],
                "tags": {"\ue000": [], "a": {"b": None}},
            },
            context={"n": 2**53 - 1, "f": -0.0, "z": 0.1 + 0.2},
        ),
        _record(2, mode="fallback", model_version=None, context=None, decided_at=datetime(2026, 1, 2, tzinfo=UTC)),
    ]
    pending = [_prepare(r, Future()) for r in records]
    assert _fast_digest(pending) == batch_digest([p.row for p in pending])


def test_a_decision_and_the_dict_of_its_fields_are_the_same_record_and_it_pickles_whole() -> None:
    """The serving path hands the log a Decision, other callers a dict: the same fields give the same
    stored bytes; the writer process receives the validated Decision pickled, and it arrives whole."""
    import pickle
    from concurrent.futures import Future

    at = datetime(2026, 1, 2, tzinfo=UTC)
    fields = _record(3, decision_id=str(uuid.uuid4()), decided_at=at, subject_id="raw-subject-3")
    from_dict, typed = _prepare(fields, Future()), _prepare(Decision(**fields), Future())
    assert from_dict.canonical() == typed.canonical() and from_dict.decision == typed.decision
    assert "raw-subject-3" not in repr(typed.decision)  # a raw id is never shown
    assert pickle.loads(pickle.dumps(typed.decision)) == typed.decision
    light = typed.decision.without_objects()
    assert (light.slate, light.context) == ({}, {}) and light.decision_id == typed.decision.decision_id
    with pytest.raises(DataError, match="unknown decision fields"):
        Decision.from_mapping({**fields, "user_email": "x"})


def test_a_decisions_own_events_are_committed_after_its_batch_event_in_the_same_transaction(store: Store) -> None:
    from sqlalchemy import select

    from audits.models import DecisionRecord, TrailEvent
    from audits.trail import NewEvent

    with DecisionLog(store) as log:
        futures = [
            log.submit(_record(n, subject_id=READERS[n]), events=(NewEvent(actor=f"key:{n}:caller", action="api.test.call", objects={"n": n}),))
            for n in range(6)
        ]
        receipts = [f.result(timeout=30) for f in futures]
        log.submit_and_wait(_record(99, subject_id=READERS[9]))  # a decision without events
    with store.snapshot() as connection:
        rows = {d: b for d, b in connection.execute(select(DecisionRecord.decision_id, DecisionRecord.batch_seq))}
        events = list(connection.execute(select(TrailEvent.seq, TrailEvent.actor, TrailEvent.action, TrailEvent.objects)))
    by_seq = {seq: (actor, action) for seq, actor, action, _ in events}
    calls = [(seq, actor, json.loads(objects) if isinstance(objects, str) else objects) for seq, actor, action, objects in events if action == "api.test.call"]
    assert sorted(c[2]["n"] for c in calls) == list(range(6)) and len(calls) == 6
    for receipt in receipts:  # each decision's batch event is followed by the events its decisions brought
        assert by_seq[rows[receipt.decision_id]][1] == "decisions.committed"
    for seq, actor, objects in calls:
        batch_seq = max(s for s, (_, action) in by_seq.items() if action == "decisions.committed" and s < seq)
        assert rows[receipts[objects["n"]].decision_id] == batch_seq, "an event went into another batch than its decision"
        assert actor == f"key:{objects['n']}:caller"
    _assert_clean(store)


def test_a_bad_event_fails_its_own_decision_at_submit_and_never_its_batch(store: Store) -> None:
    from audits.trail import NewEvent

    with DecisionLog(store) as log:
        with pytest.raises(DataError, match="action must be dotted lowercase"):
            log.submit(_record(1, subject_id=READERS[1]), events=(NewEvent(actor="key:1:x", action="Not An Action"),))
        with pytest.raises(DataError, match="must be a pseudonym"):
            log.submit(_record(2, subject_id=READERS[2]), events=(NewEvent(actor="key:1:x", action="api.call", subject="alice@example.org"),))
        with pytest.raises(DataError, match="NewEvent"):
            log.submit(_record(3, subject_id=READERS[3]), events=({"actor": "key:1:x", "action": "api.call"},))  # type: ignore[arg-type]
        good = log.submit_and_wait(_record(4, subject_id=READERS[4]), events=(NewEvent(actor="key:1:x", action="api.call"),))
    assert good.batch_seq > 0
    assert _scalar(store, "SELECT COUNT(*) FROM decisions") == 1
    assert _scalar(store, "SELECT COUNT(*) FROM trail_events WHERE action = 'api.call'") == 1


def test_with_no_delay_a_batch_is_what_queued_while_the_last_one_committed(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """``max_delay_ms=0`` (the service's log): the writer takes the first decision at once, without waiting for the
    next, and the decisions that queue meanwhile go together in the next batch (group commit, with no wait)."""
    import audits.decisions as decisions_module

    monkeypatch.setattr(decisions_module, "_IDLE_GAP_S", 0.5)  # a waiting log would hold the first batch open for them
    batches: list[list[str]] = []
    writing, release = threading.Event(), threading.Event()
    log = DecisionLog(store, max_delay_ms=0)
    write = log._write

    def held_write(batch):  # noqa: ANN001, ANN202 - the first batch stays in its commit until released
        batches.append([p.decision.decision_id for p in batch])
        writing.set()
        if len(batches) == 1:
            release.wait(30)
        return write(batch)

    monkeypatch.setattr(log, "_write", held_write)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    try:
        first = log.submit(_record(0, decision_id=ids[0], subject=f"{1:064x}"))
        assert writing.wait(30)
        time.sleep(0.05)  # well within the half second a waiting log would wait for the next
        later = [log.submit(_record(n, decision_id=ids[n], subject=f"{n + 1:064x}")) for n in (1, 2)]
        release.set()
        receipts = [f.result(timeout=30) for f in (first, *later)]
    finally:
        release.set()
        log.close()
    assert batches == [[ids[0]], [ids[1], ids[2]]]
    assert receipts[1].batch_seq == receipts[2].batch_seq != receipts[0].batch_seq
