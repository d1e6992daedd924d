"""The prepared read-only snapshots of the hot paths (governance.api.reads), on SQLite and PostgreSQL.

They must read exactly what a SQLAlchemy snapshot reads (keys, consent
history with suppressions, the blocks revision), see one committed state, and
never hold a write lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from audits import Store, record_consent
from audits.consent import read_consent_history
from audits.models import StoreMeta
from audits.suppression import suppress_subject
from governance.api.keys import create_key, live_key, revoke_key
from governance.api.reads import MAX_PREPARED, FastReads
from governance.api.services.engines import blocks_revision

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["pooled", "held"])
def reads(store: Store, request: pytest.FixtureRequest) -> Iterator[FastReads]:
    """Snapshots on the pool's connections, and on SQLite also on the one the serving loop holds for itself."""
    reads = FastReads(store.engine)
    if request.param == "held":
        reads.hold_for_this_thread()
    yield reads
    reads.release()


def _grant(store: Store, subject: str, status: str = "granted", at: datetime = T0) -> None:
    with store.session() as session:
        record_consent(session, subject_id=subject, purpose="personalization", status=status, lawful_basis="consent", source="api", at=at)


def test_keys_read_as_through_sqlalchemy_and_a_revoked_key_is_refused_at_once(store: Store, reads: FastReads) -> None:
    with store.session() as session:
        live, live_token = create_key(session, name="ops", role="operator")
        gone, gone_token = create_key(session, name="old", role="admin")
    with reads.snapshot() as read:
        found = live_key(read, live_token)
        assert (found.id, found.name, found.role) == (live.id, "ops", "operator")
        assert live_key(read, gone_token).role == "admin"
        assert live_key(read, "rgk_unknown") is None
    with store.session() as session:
        revoke_key(session, gone.id)
    with reads.snapshot() as read:
        assert live_key(read, gone_token) is None
    with store.snapshot() as connection:
        assert live_key(connection, gone_token) is None and live_key(connection, live_token).id == live.id


def test_consent_history_reads_as_through_sqlalchemy(store: Store, reads: FastReads) -> None:
    with reads.snapshot() as read:  # an unkeyed store: nothing to read, and nothing written
        assert read_consent_history(read, "alice") == []
    with store.snapshot() as connection:
        assert connection.execute(select(StoreMeta.value)).first() is None
    _grant(store, "alice")
    _grant(store, "alice", "withdrawn", T0 + timedelta(minutes=5))
    with store.session() as session:
        suppress_subject(session, "bob", denied={"personalization": {"status": "objected", "lawful_basis": "legitimate_interest"}}, erased_at=T0)
    for subject in ("alice", "bob", "carol"):
        with store.snapshot() as connection:
            expected = read_consent_history(connection, subject)
        with reads.snapshot() as read:
            assert read_consent_history(read, subject) == expected, subject
    with reads.snapshot() as read:
        alice = read_consent_history(read, "alice")
        assert [r["status"] for r in alice] == ["granted", "withdrawn"]
        assert all(r["recorded_at"].tzinfo is not None for r in alice)
        assert read_consent_history(read, "bob")[0]["evidence"]["note"].startswith("kept through erasure")
        assert blocks_revision(read) == (0, 0, 0, 0)


def test_a_snapshot_sees_one_committed_state_and_holds_no_write_lock(store: Store, reads: FastReads) -> None:
    _grant(store, "dora")
    with reads.snapshot() as read:
        before = read_consent_history(read, "dora")
        _grant(store, "dora", "withdrawn", T0 + timedelta(minutes=1))  # another transaction writes and commits meanwhile
        assert read_consent_history(read, "dora") == before, "a snapshot must not see a later commit"
    with reads.snapshot() as read:  # the next snapshot does: a withdrawal holds from the next request on
        assert [r["status"] for r in read_consent_history(read, "dora")] == ["granted", "withdrawn"]


def test_statements_built_per_call_are_not_kept_without_bound(store: Store, reads: FastReads) -> None:
    with reads.snapshot() as read:
        for n in range(MAX_PREPARED + 20):
            read.execute(select(StoreMeta.value).where(StoreMeta.key == f"k{n}")).all()
    assert len(reads._prepared) <= MAX_PREPARED


def _held_reads(store: Store) -> FastReads | None:
    """Reads whose calling thread holds a connection; None on PostgreSQL, where none is held (checked here)."""
    reads = FastReads(store.engine)
    reads.hold_for_this_thread()
    if store.engine.dialect.name != "sqlite":
        assert reads._held is None, "only an embedded store's loop holds a connection"
        return None
    return reads


def test_the_held_connection_is_the_holding_threads_alone_and_never_nested(store: Store) -> None:
    if (reads := _held_reads(store)) is None:
        return
    try:
        _grant(store, "erin")
        seen: list[object] = []

        def elsewhere() -> None:  # another thread reads on a pooled connection, while the holder's snapshot is open
            with reads.snapshot() as read:
                seen.append(read._cursor.connection)
                seen.append([r["status"] for r in read_consent_history(read, "erin")])

        with reads.snapshot() as outer:
            with reads.snapshot() as inner:  # nested on the holding thread: not the held connection (it is in a transaction)
                assert inner._cursor.connection is not outer._cursor.connection
                assert [r["status"] for r in read_consent_history(inner, "erin")] == ["granted"]
            worker = threading.Thread(target=elsewhere)
            worker.start()
            worker.join()
            assert seen[0] is not outer._cursor.connection and seen[1] == ["granted"]
            held = outer._cursor.connection
        with reads.snapshot() as again:
            assert again._cursor.connection is held, "the holding thread's next snapshot reuses its connection"
            assert held.in_transaction
        assert not held.in_transaction, "between snapshots the held connection holds no transaction (no lock, no old state)"
    finally:
        reads.release()


def test_a_held_connection_that_fails_is_dropped_and_the_pool_serves_on(store: Store) -> None:
    if (reads := _held_reads(store)) is None:
        return
    try:
        reads._held.dbapi_connection.close()  # the connection broke (a closed file handle, say)
        with pytest.raises(Exception), reads.snapshot():
            pass
        assert reads._held is None
        _grant(store, "finn")
        with reads.snapshot() as read:
            assert [r["status"] for r in read_consent_history(read, "finn")] == ["granted"]
    finally:
        reads.release()
