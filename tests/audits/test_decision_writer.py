"""The decision log with its commits in a child process, on SQLite and PostgreSQL: the same records,
receipts, digests and failures as the thread log; fail closed when the child is gone."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from audits import Store
from audits.decision_writer import ProcessDecisionLog
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
