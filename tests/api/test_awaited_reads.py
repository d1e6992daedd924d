"""A governed list's reads as one PostgreSQL statement awaited on the event loop (governance.api.awaited_reads).

It reads what a snapshot reads (one committed state, a change committed before it seen), one round trip a list once
its statement is prepared, answers no read it was not given, fails over (Unread) when the server dropped its
connection and opens another for the next read, shares a few connections between concurrent reads, and closes them
when told to.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from collections.abc import Iterator

import pytest
from sqlalchemy import Select

from audits import Store, open_store
from audits.consent import consent_read_cache, read_consent_state, record_consent
from audits.subjects import shred_subject
from audits.suppression import suppress_subject
from governance.api.awaited_reads import STOPPED, AwaitedReads
from governance.api.keys import create_key, live_key
from governance.api.reads import NOT_READ_AHEAD, FastReads, Unread
from tests.api.pg_turns import TurnCounter
from tests.api.test_fast_reads_round_trips import _ahead, _grant, _list_reads, _terminate, keyed_store

pytestmark = pytest.mark.postgres


@pytest.fixture
def keyed(postgres_url: str) -> Iterator[tuple[Store, FastReads, str]]:
    """A store with an operator key and a subject whose consent state the process has cached (its version known)."""
    store, reads, token = keyed_store(postgres_url)
    try:
        consent_read_cache(store.engine).clear()
        with reads.snapshot() as read:  # the installation key checked, the subject's state cached
            _list_reads(read, token, "s1")
        yield store, reads, token
    finally:
        store.close()


def test_one_statement_reads_what_a_snapshot_reads_and_nothing_else(keyed: tuple[Store, FastReads, str]) -> None:
    store, reads, token = keyed
    with reads.snapshot() as read:
        expected = _list_reads(read, token, "s1")

    async def scenario() -> None:
        awaited = AwaitedReads(reads, 2)
        try:
            read = await awaited.read(_ahead(reads, token, "s1"))
            assert _list_reads(read, token, "s1") == expected
            with pytest.raises(Unread):  # each read is answered once; any other is not read at all
                live_key(read, token)
            _grant(store, "s1")  # committed before the next statement: seen by it
            read = await awaited.read(_ahead(reads, token, "s1"))
            live_key(read, token)
            with pytest.raises(Unread):  # the version moved: the history must be read again, which one statement did not
                read_consent_state(read, "s1")
            read = await awaited.read(_ahead(reads, token, "s2"))  # a subject never cached: its history is not read ahead
            assert live_key(read, token) is not None
            with pytest.raises(Unread):
                read_consent_state(read, "s2")
        finally:
            await awaited.aclose()

    asyncio.run(scenario())


def test_a_read_is_one_round_trip(postgres_url: str) -> None:
    open_store(postgres_url).close()  # the schema at head
    relay = TurnCounter(postgres_url)
    store = open_store(relay.url, upgrade=False, pool_size=1)
    try:
        with store.session() as session:
            _, token = create_key(session, name="k", role="operator")
        _grant(store, "s1")
        reads = FastReads(store.engine)
        with reads.snapshot() as read:
            _list_reads(read, token, "s1")

        async def scenario() -> list[int]:
            awaited = AwaitedReads(reads, 1)
            turns = []
            try:
                for _ in range(4):  # the connection opened and the statement prepared by the first
                    before = relay.turns
                    read = await awaited.read(_ahead(reads, token, "s1"))
                    _list_reads(read, token, "s1")
                    turns.append(relay.turns - before)
            finally:
                await awaited.aclose()
            return turns

        assert asyncio.run(scenario())[1:] == [1, 1, 1]  # no BEGIN, no ROLLBACK, no ping
    finally:
        store.close()
        relay.close()


def test_a_dropped_connection_fails_the_read_once_and_the_next_read_opens_another(
    keyed: tuple[Store, FastReads, str], postgres_url: str
) -> None:
    store, reads, token = keyed

    async def scenario() -> None:
        awaited = AwaitedReads(reads, 2)
        try:
            await awaited.read(_ahead(reads, token, "s1"))
            (dropped,) = [connection.info.backend_pid for connection in awaited._idle]
            await asyncio.to_thread(_terminate, postgres_url, dropped)
            with pytest.raises(Unread):
                await awaited.read(_ahead(reads, token, "s1"))
            assert awaited.connections == 0  # closed, not pooled again
            read = await awaited.read(_ahead(reads, token, "s1"))
            assert live_key(read, token) is not None
            assert [connection.info.backend_pid for connection in awaited._idle] != [dropped]
        finally:
            await awaited.aclose()

    asyncio.run(scenario())


def test_concurrent_reads_share_the_connections_and_close_ends_them(keyed: tuple[Store, FastReads, str]) -> None:
    store, reads, token = keyed

    async def scenario() -> None:
        awaited = AwaitedReads(reads, 2)
        snapshots = await asyncio.gather(*(awaited.read(_ahead(reads, token, "s1")) for _ in range(12)))
        assert all(live_key(read, token) is not None for read in snapshots)
        assert awaited.connections == 2  # the others waited for one
        opened = list(awaited._idle)
        await awaited.aclose()
        assert awaited.connections == 0 and all(connection.closed for connection in opened)
        with pytest.raises(Unread, match=re.escape(STOPPED)):
            await awaited.read(_ahead(reads, token, "s1"))

    asyncio.run(scenario())


def test_a_connection_in_use_at_close_is_closed_when_given_back(keyed: tuple[Store, FastReads, str]) -> None:
    store, reads, token = keyed

    async def scenario() -> None:
        awaited = AwaitedReads(reads, 1)
        reading = asyncio.ensure_future(awaited.read(_ahead(reads, token, "s1")))
        while awaited.connections == 0:  # the read has taken its connection
            await asyncio.sleep(0)
        await awaited.aclose()
        assert live_key(await reading, token) is not None  # the read under way finishes
        assert awaited.connections == 0 and not awaited._idle

    asyncio.run(scenario())


def test_a_read_not_given_is_refused_without_rendering_its_statement(
    keyed: tuple[Store, FastReads, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subject whose state changed falls back to a worker thread from here on every such list: rendering the SQL
    of the read refused (for the message) cost more than the statement awaited."""
    store, reads, token = keyed
    _grant(store, "s1")  # the cached state is stale: its history will be asked for

    async def scenario() -> None:
        awaited = AwaitedReads(reads, 1)
        try:
            read = await awaited.read(_ahead(reads, token, "s1"))
        finally:
            await awaited.aclose()
        live_key(read, token)
        monkeypatch.setattr(Select, "__str__", lambda self: pytest.fail("the statement was rendered"))
        with pytest.raises(Unread, match=NOT_READ_AHEAD):
            read_consent_state(read, "s1")

    asyncio.run(scenario())


def _state_by_two_statements(reads: FastReads, token: str, subject: str) -> object:
    """A governed list's reads as prepare_awaited makes them: one statement, then, for a subject whose state is not
    cached or changed, a second with their records and latest suppression (governance.api.services.lists)."""
    cache = consent_read_cache(reads.engine)

    async def scenario() -> object:
        awaited = AwaitedReads(reads, 1)
        try:
            version = cache.version_read(reads.engine, subject)
            assert version is not None
            read = await awaited.read([*_ahead(reads, token, subject)[:3], version])
            more = cache.refresh_reads(reads.engine, subject, read.peek(*version)[0])
            assert more is not None
            if more[0]:
                read = await awaited.read(more[0], whole=more[1], earlier=read)
            live_key(read, token)
            return read_consent_state(read, subject)
        finally:
            await awaited.aclose()

    return asyncio.run(scenario())


def _uncached_state(store: Store, subject: str) -> object:
    with store.snapshot() as connection:
        return read_consent_state(connection, subject, cached=False)


def test_a_subject_not_cached_or_changed_is_read_whole_by_a_second_statement(keyed: tuple[Store, FastReads, str]) -> None:
    store, reads, token = keyed
    cache = consent_read_cache(reads.engine)
    with store.session() as session:  # several records, with evidence, and a withdrawal: the records read whole
        record_consent(session, subject_id="s1", purpose="analytics", status="granted", lawful_basis="consent", source="banner", evidence={"banner": "v2", "n": 3})
        record_consent(session, subject_id="s1", purpose="personalization", status="withdrawn", lawful_basis="consent", source="api")
    changed = _state_by_two_statements(reads, token, "s1")  # cached, then changed: read again whole
    assert changed == _uncached_state(store, "s1")
    assert len(changed.history()) == 3 and {"banner": "v2", "n": 3} in [r["evidence"] for r in changed.history()]
    misses = cache.misses
    assert _state_by_two_statements(reads, token, "s1") == changed and cache.misses == misses  # unchanged: one statement
    cache.clear()  # not cached at all
    assert _state_by_two_statements(reads, token, "s1") == changed
    assert _state_by_two_statements(reads, token, "never-seen") == _uncached_state(store, "never-seen")  # no secret, no rows
    with store.session() as session:  # erased: the secret shredded, the suppression's erasure seq read with the state
        suppress_subject(session, "s1", denied={"analytics": {"status": "objected", "lawful_basis": "legitimate_interest"}}, erased_at=datetime(2026, 1, 2, tzinfo=UTC))
        shred_subject(session, "s1")
    erased = _state_by_two_statements(reads, token, "s1")
    assert erased == _uncached_state(store, "s1") and erased.erasure_seq is not None


def test_a_secret_shredded_between_the_two_statements_is_not_read_across_them(keyed: tuple[Store, FastReads, str]) -> None:
    """The two statements are two snapshots: a subject erased between them must not be answered with records read
    under their old secret (their evidence opened with its key), nor cached so."""
    store, reads, token = keyed
    cache = consent_read_cache(reads.engine)
    for cached in (True, False):
        _grant(store, "s3")
        if cached:
            with store.snapshot() as connection:
                read_consent_state(connection, "s3")  # cached; the grant below changes it
            _grant(store, "s3")
        else:
            cache.clear()

        async def scenario() -> None:
            awaited = AwaitedReads(reads, 1)
            try:
                version = cache.version_read(reads.engine, "s3")
                read = await awaited.read([version])
                more = cache.refresh_reads(reads.engine, "s3", read.peek(*version)[0])
                assert more is not None and more[0]
                with store.session() as session:
                    shred_subject(session, "s3")  # committed between the two statements
                read = await awaited.read(more[0], whole=more[1], earlier=read)
                misses = cache.misses
                with pytest.raises(Unread):
                    read_consent_state(read, "s3")
                assert cache.misses == misses  # nothing read across the two was kept
            finally:
                await awaited.aclose()

        asyncio.run(scenario())
        assert _uncached_state(store, "s3").history() == []  # what the next list reads, on a worker thread
        with store.snapshot() as connection:
            assert read_consent_state(connection, "s3").history() == []
