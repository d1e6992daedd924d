"""The read-only snapshot's round trips on PostgreSQL (governance.api.reads): no ping per checkout, the reads named
ahead read by one statement after the BEGIN (a governed list's snapshot: three round trips), and a connection the server dropped while
it sat in the pool replaced without failing the request. Reads named ahead answer exactly what they answer when
read in turn, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import literal_column, select, text

from audits import Store, open_store, record_consent
from audits.consent import consent_read_cache, read_consent_state
from audits.db import create_store_engine
from audits.models import StoreMeta
from governance.api.keys import create_key, live_key, live_key_read
from governance.api.reads import FastReads
from governance.api.services.engines import BLOCKS_READ, artifact_location, artifact_read, blocks_revision
from tests.api.pg_turns import TurnCounter


def _grant(store: Store, subject: str) -> None:
    with store.session() as session:
        record_consent(session, subject_id=subject, purpose="personalization", status="granted", lawful_basis="consent", source="api")


def keyed_store(url: str) -> tuple[Store, FastReads, str]:
    """A store (two pooled connections) with an operator key and a subject "s1" who granted consent; its reads."""
    store = open_store(url, pool_size=2)
    with store.session() as session:
        _, token = create_key(session, name="k", role="operator")
    _grant(store, "s1")
    return store, FastReads(store.engine), token


def _list_reads(read: object, token: str, subject: str) -> tuple[object, ...]:
    """The reads of a governed list's snapshot, in its order (governance.api.services.lists)."""
    key = live_key(read, token)
    return (None if key is None else (key.id, key.name, key.role)), artifact_location(read, "v-none"), blocks_revision(read), read_consent_state(read, subject)


def _ahead(reads: FastReads, token: str, subject: str) -> list[object]:
    ahead = [live_key_read(token), artifact_read("v-none"), BLOCKS_READ]
    version = consent_read_cache(reads.engine).version_read(reads.engine, subject)
    if version is not None:
        ahead.append(version)
    return ahead


def test_reads_named_ahead_answer_what_they_answer_read_in_turn(store: Store) -> None:
    with store.session() as session:
        _, token = create_key(session, name="k", role="operator")
    _grant(store, "s1")
    reads = FastReads(store.engine)
    consent_read_cache(store.engine).clear()
    with reads.snapshot() as read:
        in_turn = _list_reads(read, token, "s1")
    for _ in range(2):  # the subject's version named ahead once cached (and the key checked)
        with reads.snapshot(_ahead(reads, token, "s1")) as read:
            assert _list_reads(read, token, "s1") == in_turn
    with reads.snapshot(_ahead(reads, "rgk_wrong", "s1")) as read:  # an unknown key: read as None all the same
        assert _list_reads(read, "rgk_wrong", "s1")[0] is None
    _grant(store, "s1")  # a change committed before the next snapshot is seen by it, named ahead or not
    with reads.snapshot(_ahead(reads, token, "s1")) as read:
        assert len(_list_reads(read, token, "s1")[3].history()) == 2


@pytest.fixture
def counted(postgres_url: str) -> Iterator[tuple[Store, FastReads, TurnCounter]]:
    open_store(postgres_url).close()  # the schema at head
    relay = TurnCounter(postgres_url)
    store = open_store(relay.url, upgrade=False, pool_size=1)
    try:
        yield store, FastReads(store.engine), relay
    finally:
        store.close()
        relay.close()


@pytest.mark.postgres
def test_a_governed_lists_snapshot_is_three_round_trips_and_a_key_check_three(counted: tuple[Store, FastReads, TurnCounter]) -> None:
    store, reads, relay = counted
    with store.session() as session:
        _, token = create_key(session, name="k", role="operator")
    _grant(store, "s1")
    for _ in range(3):  # connection opened, installation key checked, subject cached; statements prepared
        with reads.snapshot(_ahead(reads, token, "s1")) as read:
            _list_reads(read, token, "s1")
    before = relay.turns
    with reads.snapshot(_ahead(reads, token, "s1")) as read:
        _list_reads(read, token, "s1")
    assert relay.turns - before == 3  # BEGIN, the 4 reads as one statement, ROLLBACK; no ping
    for _ in range(8):  # psycopg prepares a statement at its 6th use: one round trip more, once per connection
        before = relay.turns
        with reads.snapshot() as read:  # the same reads in turn: each its own round trip
            _list_reads(read, token, "s1")
    assert relay.turns - before == 6
    for _ in range(8):
        before = relay.turns
        with reads.snapshot() as read:  # a key check (GET /v1/ping): BEGIN, the key, ROLLBACK
            live_key(read, token)
    assert relay.turns - before == 3
    before = relay.turns
    with store.engine.connect() as connection:  # any other checkout is still pinged first
        pass
    assert relay.turns - before == 1


def _backend_pid(reads: FastReads) -> int:
    with reads.snapshot() as read:
        read._cursor.execute("SELECT pg_backend_pid()")
        return read._cursor.fetchone()[0]


def _terminate(postgres_url: str, *pids: int) -> None:
    admin = create_store_engine(postgres_url)
    try:
        with admin.connect() as connection:
            for pid in pids:
                assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    finally:
        admin.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("ahead", [False, True])
def test_a_connection_dropped_in_the_pool_is_replaced_and_the_snapshot_reads(postgres_url: str, ahead: bool) -> None:
    store, reads, token = keyed_store(postgres_url)
    try:
        first = _backend_pid(reads)
        _terminate(postgres_url, first)
        with reads.snapshot(_ahead(reads, token, "s1") if ahead else ()) as read:  # the next request still succeeds
            assert live_key(read, token) is not None
            assert read_consent_state(read, "s1").history()
        assert _backend_pid(reads) != first
        # Every pooled connection dropped (a restarted server): the pinged checkout of the retry replaces them all.
        with store.engine.connect() as c1, store.engine.connect() as c2:
            pids = [c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() for c in (c1, c2)]
        _terminate(postgres_url, *pids)
        for _ in range(3):
            with reads.snapshot() as read:
                assert live_key(read, token) is not None
        with store.engine.connect() as c1, store.engine.connect() as c2:
            pids = [c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() for c in (c1, c2)]
        _terminate(postgres_url, *pids)
        with store.session() as session:  # a write's checkout: pinged, and reconnected, as before
            create_key(session, name="k2", role="operator")
    finally:
        store.close()


@pytest.mark.postgres
def test_an_error_that_is_not_a_dropped_connection_is_not_retried(postgres_url: str) -> None:
    store = open_store(postgres_url, pool_size=1)
    try:
        reads = FastReads(store.engine)
        bad = select(literal_column("1/0").label("x"))  # fails in the server, on a live connection
        with pytest.raises(psycopg.errors.DivisionByZero), reads.snapshot([(bad, None)]):
            pass
        with reads.snapshot() as read:  # the connection went back to the pool usable, as it came
            assert read.execute(select(StoreMeta.value)).all() is not None
            read._cursor.execute("SHOW transaction_read_only")
            assert read._cursor.fetchone()[0] == "on"
        raw = store.engine.raw_connection()
        try:
            assert raw.dbapi_connection.autocommit is False
        finally:
            raw.close()
    finally:
        store.close()
