"""The decision log with its commits in a child process, on SQLite and PostgreSQL: the same records,
receipts, digests and failures as the thread log; fail closed when the child is gone."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine, select

from audits import Store
from audits.decision_writer import ProcessDecisionLog
from audits import decisions as decisions_module
from audits.decisions import DecisionLog, verify_decisions
from audits.models import DecisionRecord
from audits.verify import verify_trail
from recommender.errors import ConfigError, DataError


def _record(n: int, **extra: object) -> dict:
    return {
        "subject_id": f"writer-subject-{n:05d}", "mode": "personalized", "pack_name": "eu", "pack_version": "1",
        "pack_hash": "sha256:abc", "model_version": "als-1",
        "slate": {"items": [f"i{n}", "i2"], "scores": [0.912345, 0.5], "tags": [[{"kind": "diversity", "text": "x"}], []]},
        "context": {"consent": "granted", "gpc": False},
        **extra,
    }  # fmt: skip


@pytest.fixture
def log(store: Store):
    with ProcessDecisionLog(store) as log:
        yield log


def test_records_are_committed_with_pseudonyms_and_verifiable_digests(store: Store, log: ProcessDecisionLog) -> None:
    receipts = [f.result(timeout=60) for f in [log.submit(_record(n)) for n in range(40)]]
    assert len({r.decision_id for r in receipts}) == 40 and all(r.batch_seq > 0 for r in receipts)
    with store.session() as session:
        rows = list(session.scalars(select(DecisionRecord)))
    assert len(rows) == 40
    assert all(len(r.subject) == 64 and not r.subject.startswith("writer-") for r in rows)
    assert {r.slate["scores"][0] for r in rows} == {0.912345}
    with store.engine.connect() as connection:
        assert verify_decisions(connection) == []
        assert verify_trail(connection).intact


def test_the_same_subject_gets_the_same_pseudonym_as_with_the_thread_log(store: Store, log: ProcessDecisionLog) -> None:
    log.submit_and_wait(_record(7), timeout=60)
    with DecisionLog(store) as thread_log:
        thread_log.submit_and_wait(_record(7))
    with store.session() as session:
        subjects = list(session.scalars(select(DecisionRecord.subject)))
    assert len(subjects) == 2 and subjects[0] == subjects[1]


def test_a_duplicate_id_fails_alone_and_a_bad_record_fails_in_the_caller(store: Store, log: ProcessDecisionLog) -> None:
    decision_id = str(uuid.uuid4())
    first, second = log.submit(_record(1, decision_id=decision_id)), log.submit(_record(2, decision_id=decision_id))
    others = [log.submit(_record(n)) for n in range(3, 8)]
    outcomes = []
    for future in (first, second):
        try:
            outcomes.append(future.result(timeout=60).decision_id)
        except DataError as err:
            outcomes.append(str(err))
    assert outcomes.count(decision_id) == 1 and any("was not recorded" in o for o in outcomes)
    assert all(f.result(timeout=60) for f in others)  # the rest of the batch is recorded
    with pytest.raises(DataError, match="unknown decision fields"):
        log.submit({**_record(9), "user_email": "x"})


def test_when_the_writer_process_is_gone_every_decision_fails_closed(store: Store) -> None:
    log = ProcessDecisionLog(store)
    try:
        log.submit_and_wait(_record(1), timeout=60)
        log._process.kill()
        log._process.join(10)
        with pytest.raises(ConfigError, match="writer process is gone"):
            log.submit_and_wait(_record(2), timeout=60)
        with pytest.raises(ConfigError, match="writer process is gone"):
            log.submit_and_wait(_record(3), timeout=60)
    finally:
        log.close()
    with store.session() as session:
        assert len(list(session.scalars(select(DecisionRecord)))) == 1


def test_a_decisions_own_events_go_through_the_child_in_the_same_transaction(store: Store, log: ProcessDecisionLog) -> None:
    from audits.models import TrailEvent
    from audits.trail import NewEvent

    receipt = log.submit_and_wait(
        _record(3), timeout=60, events=(NewEvent(actor="key:7:ops", action="api.recommendations.create", objects={"model": "als-1"}, payload={"gpc": False}),)
    )
    with store.snapshot() as connection:
        events = {seq: (actor, action) for seq, actor, action in connection.execute(select(TrailEvent.seq, TrailEvent.actor, TrailEvent.action))}
        batch_seq = connection.execute(select(DecisionRecord.batch_seq).where(DecisionRecord.decision_id == receipt.decision_id)).scalar_one()
        assert verify_trail(connection).intact and verify_decisions(connection) == []
    assert batch_seq == receipt.batch_seq and events[batch_seq][1] == "decisions.committed"
    assert events[batch_seq + 1] == ("key:7:ops", "api.recommendations.create")


def test_consent_records_a_decision_was_made_on_are_written_by_the_child_in_its_transaction(store: Store, log: ProcessDecisionLog) -> None:
    """A first GPC opt-out goes with the decision made on it: written before the batch event, in the same
    transaction, read back as the subject's record in force, its id and trail seq in the receipt."""
    from datetime import UTC, datetime

    from audits import effective_consent
    from audits.consent_write import ConsentWrite
    from audits.models import ConsentRecordRow, TrailEvent

    write = ConsentWrite("personalization", "opted_out", "legitimate_interest", "gpc", {"signal": "Sec-GPC: 1"}, datetime.now(UTC), actor="key:7:ops")
    receipt = log.submit_and_wait(_record(11), timeout=60, consent=(write,))
    assert len(receipt.consent_records) == 1
    record_id, trail_seq = receipt.consent_records[0]
    with store.session() as session:
        row = session.get(ConsentRecordRow, record_id)
        assert row is not None and row.trail_seq == trail_seq and row.source == "gpc"
        assert effective_consent(session, "writer-subject-00011")["personalization"]["status"] == "opted_out"
        event = session.get(TrailEvent, trail_seq)
        assert event is not None and event.action == "consent.recorded" and event.actor == "key:7:ops"
    assert trail_seq < receipt.batch_seq  # the record the decision relied on comes first in the trail
    with store.engine.connect() as connection:
        assert verify_trail(connection).intact and verify_decisions(connection) == []


def test_a_bad_consent_record_fails_its_own_decision_at_submit(store: Store, log: ProcessDecisionLog) -> None:
    from datetime import UTC, datetime

    from audits.consent_write import ConsentWrite

    bad = ConsentWrite("personalization", "maybe", "consent", "gpc", {}, datetime.now(UTC))
    with pytest.raises(ConfigError, match="status"):
        log.submit(_record(12), consent=(bad,))
    leaky = ConsentWrite("personalization", "opted_out", "consent", "gpc", {"who": "writer-subject-00013"}, datetime.now(UTC))
    with pytest.raises(DataError):
        log.submit(_record(13), consent=(leaky,))  # the raw id in the evidence
    by_pseudonym = {**_record(14), "subject": "a" * 64}
    del by_pseudonym["subject_id"]
    with pytest.raises(DataError, match="subject_id"):
        log.submit(by_pseudonym, consent=(ConsentWrite("personalization", "opted_out", "consent", "gpc", {}, datetime.now(UTC)),))
    assert log.submit_and_wait(_record(15), timeout=60).batch_seq > 0  # the log lives on


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_a_batch_of_first_signals_is_stored_as_record_consent_stores_each(store: Store, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several decisions' consent records written in one batch (two of one subject, a grant among them) are the
    records record_consent makes: their events first in the trail, in order, each row pointing at its own event,
    under the subject's pseudonym, the evidence sealed and opening, the online store's outbox told."""
    from datetime import UTC, datetime

    from audits import effective_consent
    from audits.consent import record_consent
    from audits.consent_write import ConsentWrite
    from audits.models import ConsentRecordRow, TrailEvent
    from audits.models.online_store import OnlineStoreOutbox
    from audits.subjects import pseudonym

    now = datetime.now(UTC)

    def opt_out(n: int) -> ConsentWrite:
        return ConsentWrite("personalization", "opted_out", "legitimate_interest", "gpc", {"signal": f"Sec-GPC: {n}"}, now, actor="key:7:ops")

    grant = ConsentWrite("marketing", "granted", "consent", "banner", {"banner_version": "b-1"}, now, jurisdiction="EU", actor="key:7:ops")
    # The three submissions below go in one batch however busy the machine: the writer waits up to 200 ms for
    # each next record (not half a millisecond), within the batch's 200 ms.
    monkeypatch.setattr(decisions_module, "_IDLE_GAP_S", 0.2)
    with (DecisionLog(store, max_delay_ms=200) if kind == "thread" else ProcessDecisionLog(store, max_delay_ms=200)) as log:
        log.submit_and_wait(_record(99), timeout=60)  # the child is up: the next three go in one batch
        futures = [
            log.submit(_record(21), consent=(opt_out(1), grant)),
            log.submit(_record(22), consent=(opt_out(2),)),
            log.submit(_record(23)),
        ]
        receipts = [f.result(timeout=60) for f in futures]
    with store.session() as session:  # the same records, one at a time, for another subject
        expected = record_consent(session, subject_id="writer-subject-00024", purpose="personalization", status="opted_out",
                                  lawful_basis="legitimate_interest", source="gpc", evidence={"signal": "Sec-GPC: 1"}, at=now, actor="key:7:ops")  # fmt: skip
        expected_event = session.get(TrailEvent, expected.trail_seq)
    assert [len(r.consent_records) for r in receipts] == [2, 1, 0]
    with store.session() as session:
        for receipt, subject, writes in ((receipts[0], 21, (opt_out(1), grant)), (receipts[1], 22, (opt_out(2),))):
            who = pseudonym(session, f"writer-subject-{subject:05d}")
            for (record_id, trail_seq), write in zip(receipt.consent_records, writes, strict=True):
                row = session.get(ConsentRecordRow, record_id)
                event = session.get(TrailEvent, trail_seq)
                assert row is not None and event is not None and row.trail_seq == trail_seq < receipt.batch_seq
                assert (row.subject, row.purpose, row.status, row.source, row.jurisdiction) == (who, write.purpose, write.status, write.source, write.jurisdiction)
                assert row.evidence == write.evidence  # sealed as stored, opened as loaded
                payload = json.loads(event.payload)
                assert (event.action, event.actor, event.subject, json.loads(event.objects)) == ("consent.recorded", "key:7:ops", who, {"purpose": write.purpose})
                assert payload.keys() == json.loads(expected_event.payload).keys() and set(payload["evidence"]) == {"sealed"}
                assert (payload["status"], payload["source"], payload["jurisdiction"]) == (write.status, write.source, write.jurisdiction)
        seqs = [seq for r in receipts[:2] for _, seq in r.consent_records]
        assert seqs == sorted(seqs) and seqs[-1] < min(r.batch_seq for r in receipts)
        assert effective_consent(session, "writer-subject-00021")["personalization"]["status"] == "opted_out"
        assert effective_consent(session, "writer-subject-00021")["marketing"]["status"] == "granted"
        assert effective_consent(session, "writer-subject-00022")["personalization"]["status"] == "opted_out"
        outbox = {row.subject_key: row.hold for row in session.scalars(select(OnlineStoreOutbox))}
        assert len(outbox) == 3 and sum(outbox.values()) == 3  # three subjects told; an opt-out holds
    with store.engine.connect() as connection:
        assert verify_trail(connection).intact and verify_decisions(connection) == []
    from audits.verify import verify_store

    with store.snapshot() as connection:  # the consent records written in the batch hold against their events
        report = verify_store(connection)
        assert report.intact, report


def test_a_store_the_writer_cannot_open_is_refused_at_once_saying_why(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store's folder should be", encoding="utf-8")
    broken = SimpleNamespace(engine=create_engine(f"sqlite:///{blocked}/trail.db"))  # all the log reads of a store
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="writer process did not start: .*not-a-folder"):
        ProcessDecisionLog(broken)  # type: ignore[arg-type]
    assert time.perf_counter() - started < 60  # answered, not timed out


def _writer_of(store: Store, held: bool) -> DecisionLog:
    """A log's writer as the writer process sets it up, on one held connection or on one per batch."""
    from audits.db import HeldConnection

    writer = DecisionLog.__new__(DecisionLog)
    writer.store, writer.actor, writer._filed = store, "writer-test", set()
    if held:
        writer._held = HeldConnection(store)
    return writer


def _stored(store: Store) -> dict[str, list[tuple]]:
    from audits.models import SubjectSecret, TrailEvent, TrailHead

    with store.snapshot() as connection:
        return {
            "decisions": [tuple(r) for r in connection.execute(select(DecisionRecord.__table__).order_by(DecisionRecord.decision_id))],
            "trail": [tuple(r) for r in connection.execute(select(TrailEvent.__table__).order_by(TrailEvent.seq))],
            "head": [tuple(r) for r in connection.execute(select(TrailHead.__table__))],
            "secrets": sorted(connection.execute(select(SubjectSecret.lookup, SubjectSecret.secret)).all()),
        }


@pytest.fixture
def twin_store(request: pytest.FixtureRequest, db_url: str, tmp_path: Path):
    """A second empty store of the same kind as ``store``."""
    from audits import open_store
    from tests.conftest import _postgres_schema_url

    if db_url.startswith("sqlite"):
        opened = open_store(f"sqlite:///{tmp_path / 'twin.db'}")
        yield opened
        opened.close()
        return
    for url in _postgres_schema_url(request.getfixturevalue("postgres_admin_url")):
        opened = open_store(url)
        yield opened
        opened.close()


def test_the_writer_process_stores_the_same_bytes_as_a_transaction_per_batch(store: Store, twin_store: Store, monkeypatch) -> None:
    """The writer process's batches (one held connection, Core statements) store rows, trail and secrets identical to
    those of a session per batch, given the same decisions, secrets, nonces and clock."""
    from datetime import UTC, datetime
    import hashlib
    import itertools

    from audits import _common, sealing, trail
    from audits.decision_record import _prepare
    from audits.trail import NewEvent

    def deterministic() -> None:
        counter = itertools.count()
        stream = lambda n: hashlib.shake_256(str(next(counter)).encode()).digest(n)  # noqa: E731
        monkeypatch.setattr(sealing, "os", SimpleNamespace(urandom=stream))
        monkeypatch.setattr(_common, "secrets", SimpleNamespace(token_hex=lambda n: stream(n).hex()))
        class clock(datetime):
            @classmethod
            def now(cls, tz=None):  # type: ignore[override]
                return datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

        for module in (trail, _common, sealing):
            monkeypatch.setattr(module, "datetime", clock)

    def batches() -> list[list]:
        decided = datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
        event = NewEvent(actor="key:7:ops", action="api.recommendations.create", objects={"model": "als-1"}, payload={"gpc": False})
        return [
            [_prepare({**_record(n), "decision_id": str(uuid.UUID(int=1000 * b + n)), "decided_at": decided}, None, (event,)) for n in range(start, start + size)]
            for b, (start, size) in enumerate(((0, 1), (1, 5), (3, 20)))  # subjects met again in later batches
        ]

    stored = []
    prepared = {False: batches(), True: batches()}  # validated before the clock is fixed
    for target, held in ((store, False), (twin_store, True)):
        deterministic()
        writer = _writer_of(target, held)
        for batch in prepared[held]:
            DecisionLog._commit(writer, batch)
        if held:
            writer._held.close()
        stored.append(_stored(target))
        with target.snapshot() as connection:
            assert verify_trail(connection).intact and verify_decisions(connection) == []
    assert len(stored[0]["decisions"]) == 26 and len(stored[0]["trail"]) == 29
    assert stored[0] == stored[1]


def test_a_held_connection_the_server_dropped_is_replaced_and_the_batch_written(postgres_url: str) -> None:
    """A held connection dropped between batches (a server restart, an idle timeout) costs the next batch nothing:
    it is written on a new connection, as a pooled connection's ping would have found the drop."""
    from audits import open_store
    from audits.decision_record import _prepare

    store = open_store(postgres_url)
    try:
        writer = _writer_of(store, held=True)
        DecisionLog._commit(writer, [_prepare(_record(1), None)])
        pid = writer._held._connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        writer._held._connection.rollback()
        with store.engine.begin() as admin:
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        time.sleep(0.2)
        seq = DecisionLog._commit(writer, [_prepare(_record(2), None), _prepare(_record(3), None)])
        assert seq > 0
        writer._held.close()
        with store.snapshot() as connection:
            assert len(connection.execute(select(DecisionRecord.decision_id)).all()) == 3
            assert verify_trail(connection).intact and verify_decisions(connection) == []
    finally:
        store.close()


def test_two_writer_processes_on_one_store_keep_one_chain(store: Store) -> None:
    """Two writer processes, each holding its connection across batches, append to one trail: every batch reads the
    head under the lock in its own transaction, so the chain stays one and every batch verifies."""
    import threading

    with ProcessDecisionLog(store) as first, ProcessDecisionLog(store) as second:
        futures: list = []

        def feed(log: ProcessDecisionLog, offset: int) -> None:
            for n in range(offset, offset + 60):
                futures.append(log.submit(_record(n % 25)))
                if n % 7 == 0:
                    time.sleep(0.002)

        feeders = [threading.Thread(target=feed, args=(log, offset)) for log, offset in ((first, 0), (second, 1000))]
        for feeder in feeders:
            feeder.start()
        for feeder in feeders:
            feeder.join()
        receipts = [f.result(timeout=120) for f in futures]
        assert first.batches_committed > 1 and second.batches_committed > 1
    assert len({r.batch_seq for r in receipts}) == first.batches_committed + second.batches_committed
    with store.snapshot() as connection:
        assert len(connection.execute(select(DecisionRecord.decision_id)).all()) == 120
        assert verify_trail(connection).intact and verify_decisions(connection) == []
