"""A governed list's exchanges with PostgreSQL over real HTTP (governance.api.awaited_reads): one per list once its
subject's consent state is cached (the key, the model's artifact, the blocks and the consent version read by one
statement, awaited on the event loop), none on a worker thread, with or without Sec-GPC: 1 on record; and a list still
answered when the server dropped the pooled connections, or the awaited reads' own. SQLite lists answer the same, with
no exchange at all.

Exchanges are counted in the serving process's psycopg calls (the decision writer is a process of its own): on the
threads that prepare the lists, a statement outside a pipeline, a pipeline, a commit or rollback of an open
transaction, one each; on the event loop, each statement awaited. ``tests/api/test_fast_reads_round_trips.py`` and
``tests/api/test_awaited_reads.py`` count the same reads on the wire.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from audits import record_consent
from audits.consent import consent_read_cache
from audits.db import create_store_engine

EU = "eu-gdpr-dsa"
CCPA = "california-ccpa"


class Exchanges:
    """psycopg exchanges made on worker threads (the lists' preparation), and statements awaited, while installed."""

    def __init__(self) -> None:
        self.count = 0
        self.awaited = 0
        self._lock = threading.Lock()

    def _counts(self) -> bool:
        return threading.current_thread().name.startswith("AnyIO worker thread")

    def add(self) -> None:
        if self._counts():
            with self._lock:
                self.count += 1

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        execute, pipeline = psycopg.Cursor.execute, psycopg.Connection.pipeline
        commit, rollback = psycopg.Connection.commit, psycopg.Connection.rollback
        counter = self

        def counted_execute(cursor: Any, *args: Any, **kwargs: Any) -> Any:
            if cursor.connection._pipeline is None:
                counter.add()
            return execute(cursor, *args, **kwargs)

        def counted_pipeline(connection: Any) -> Any:
            outermost = connection._pipeline is None
            manager = pipeline(connection)

            class Counted:
                def __enter__(self) -> Any:
                    return manager.__enter__()

                def __exit__(self, *exc: Any) -> Any:
                    if outermost:
                        counter.add()
                    return manager.__exit__(*exc)

            return Counted()

        def ending(original: Any) -> Any:
            def end(connection: Any) -> Any:
                if connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    counter.add()
                return original(connection)

            return end

        awaited_execute = psycopg.AsyncCursor.execute

        async def counted_awaited_execute(cursor: Any, *args: Any, **kwargs: Any) -> Any:
            with counter._lock:
                counter.awaited += 1
            return await awaited_execute(cursor, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", counted_execute)
        monkeypatch.setattr(psycopg.AsyncCursor, "execute", counted_awaited_execute)
        monkeypatch.setattr(psycopg.Connection, "pipeline", counted_pipeline)
        monkeypatch.setattr(psycopg.Connection, "commit", ending(commit))
        monkeypatch.setattr(psycopg.Connection, "rollback", ending(rollback))


@pytest.fixture
def exchanges(monkeypatch: pytest.MonkeyPatch) -> Iterator[Exchanges]:
    counter = Exchanges()
    counter.install(monkeypatch)
    yield counter


def _list(client: Any, subject: str, pack: str, model_version: str, **headers: str) -> dict[str, Any]:
    response = client.post("/v1/recommendations", json={"subject": subject, "k": 5, "model_version": model_version, "pack": pack}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _grant(server: Any, subject: str) -> None:
    with server.store.session() as session:
        record_consent(session, subject_id=subject, purpose="personalization", status="granted", lawful_basis="consent", source="api")


@pytest.mark.parametrize(("pack", "headers"), [(EU, {}), (CCPA, {"Sec-GPC": "1"})])
def test_a_cached_subjects_list_is_one_statement_awaited_on_the_loop(server: Any, exchanges: Exchanges, pack: str, headers: dict[str, str]) -> None:
    subject = "u000051" if pack == EU else "u000052"
    _grant(server, subject)
    postgres = server.store.dialect == "postgresql"
    engines = server.app.state.engines
    with server.client("operator") as client:
        for _ in range(3):  # the engine built, the subject's state cached, the opt-out on record
            _list(client, subject, pack, server.model_version, **headers)
        before, awaited, on_threads = exchanges.count, exchanges.awaited, engines.decided_on_threads
        lists = [_list(client, subject, pack, server.model_version, **headers) for _ in range(5)]
    assert lists[-1]["mode"] == ("personalized" if pack == EU else "non_profiling")
    assert exchanges.count == before  # no worker thread reads (the snapshot's three exchanges before)
    assert engines.decided_on_threads == on_threads
    assert (exchanges.awaited - awaited) / len(lists) == (1 if postgres else 0)



def _terminate(db_url: str, pids: list[int]) -> None:
    """Drop these server connections from outside, as a restart or an idle timeout on the server would."""
    admin = create_store_engine(db_url)
    try:
        with admin.connect() as connection:
            for pid in pids:
                connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        admin.dispose()


def test_a_list_is_answered_after_the_server_dropped_the_pooled_connections(server: Any) -> None:
    subject = "u000053"
    _grant(server, subject)
    with server.client("operator") as client:
        _list(client, subject, EU, server.model_version)
        if server.store.dialect != "postgresql":
            return
        engine = server.app.state.store.engine
        held = [engine.raw_connection() for _ in range(3)]  # the pool's idle connections, and what it opens beyond them
        pids = []
        for connection in held:
            cursor = connection.cursor()
            cursor.execute("SELECT pg_backend_pid()")
            pids.append(cursor.fetchone()[0])
            cursor.close()
        for connection in held:
            connection.close()  # back to the pool, where the server now drops them
        _terminate(server.db_url, pids)
        for _ in range(4):
            assert _list(client, subject, EU, server.model_version)["mode"] == "personalized"


def test_a_list_is_answered_after_the_server_dropped_the_awaited_reads_connections(server: Any) -> None:
    subject = "u000054"
    _grant(server, subject)
    with server.client("operator") as client:
        for _ in range(2):  # the subject's state cached
            _list(client, subject, EU, server.model_version)
        if server.store.dialect != "postgresql":
            return
        awaited = server.app.state.awaited_reads
        pids = [connection.info.backend_pid for connection in awaited._idle]
        assert pids
        _terminate(server.db_url, pids)
        engines = server.app.state.engines
        inline, on_threads = engines.decided_inline, engines.decided_on_threads
        for _ in range(len(pids) + 2):
            assert _list(client, subject, EU, server.model_version)["mode"] == "personalized"
    assert engines.decided_on_threads - on_threads == len(pids)  # each dropped connection failed one read over to a thread
    assert engines.decided_inline - inline == 2  # then a new connection, awaited on the loop again


def test_a_subject_not_cached_or_changed_elsewhere_is_read_by_two_statements_awaited_on_the_loop(server: Any, exchanges: Exchanges) -> None:
    """A subject the process does not hold, or whose state another process changed (a withdrawal recorded by the
    CLI), is read on the event loop too: a second statement with their records, no worker thread; and the list
    honours what it read."""
    subject = "u000055"
    _grant(server, subject)
    engines = server.app.state.engines
    with server.client("operator") as client:
        _list(client, subject, EU, server.model_version)  # the installation key checked, the engine built
        consent_read_cache(server.app.state.store.engine).clear()
        before, awaited, on_threads = exchanges.count, exchanges.awaited, engines.decided_on_threads
        assert _list(client, subject, EU, server.model_version)["mode"] == "personalized"  # not cached: two statements
        _list(client, subject, EU, server.model_version)  # then cached: one
        with server.store.session() as session:  # changed by another process
            record_consent(session, subject_id=subject, purpose="personalization", status="withdrawn", lawful_basis="consent", source="api")
        assert _list(client, subject, EU, server.model_version)["mode"] == "non_profiling"  # two statements
        assert _list(client, subject, EU, server.model_version)["mode"] == "non_profiling"  # then cached: one
    if server.store.dialect == "postgresql":
        assert (exchanges.awaited - awaited, engines.decided_on_threads - on_threads) == (6, 0)
        assert exchanges.count == before  # no worker thread read anything


def test_an_unknown_key_is_refused_before_a_subjects_records_are_read(server: Any, exchanges: Exchanges) -> None:
    """401 comes first: a list with a key that is not live reads no consent records of the subject it names."""
    subject = "u000058"
    _grant(server, subject)
    with server.client("operator") as client:
        _list(client, subject, EU, server.model_version)  # the installation key checked, the engine built
        consent_read_cache(server.app.state.store.engine).clear()
        awaited = exchanges.awaited
        body = {"subject": subject, "k": 5, "model_version": server.model_version, "pack": EU}
        answer = client.post("/v1/recommendations", json=body, headers={"Authorization": "Bearer rgk_" + "x" * 43})
        assert answer.status_code == 401, answer.text
    if server.store.dialect == "postgresql":
        assert exchanges.awaited - awaited == 1  # the key's statement only


def test_the_awaited_reads_connections_are_closed_when_the_service_stops(server: Any) -> None:
    from starlette.testclient import TestClient

    from governance.api import ApiSettings, create_app

    subject = "u000056"
    _grant(server, subject)
    app = create_app(ApiSettings(home=server.home, database_url=server.db_url))
    body = {"subject": subject, "k": 5, "model_version": server.model_version, "pack": EU}
    with TestClient(app, headers={"Authorization": f"Bearer {server.tokens['operator']}"}) as client:
        for _ in range(3):  # the engine built, the subject's state cached: then awaited
            assert client.post("/v1/recommendations", json=body).status_code == 200
        awaited = app.state.awaited_reads
        if server.store.dialect != "postgresql":
            assert awaited is None
            return
        opened = list(awaited._idle)
        assert opened
    assert awaited.connections == 0 and all(connection.closed for connection in opened)


def test_after_a_list_that_wrote_an_opt_out_the_next_reads_the_changed_state_whole_on_the_loop(
    server: Any, exchanges: Exchanges
) -> None:
    subject = "u000057"
    _grant(server, subject)
    engines = server.app.state.engines
    with server.client("operator") as client:
        for _ in range(2):  # the subject's secret made (with the first decision), then their state cached
            _list(client, subject, EU, server.model_version)
        awaited, on_threads = exchanges.awaited, engines.decided_on_threads
        first = _list(client, subject, EU, server.model_version, **{"Sec-GPC": "1"})
        assert [r["status"] for r in first["signals"]["recorded"]] == ["opted_out"]  # written with its decision
        _list(client, subject, EU, server.model_version, **{"Sec-GPC": "1"})  # the state dropped: read whole, two statements
        _list(client, subject, EU, server.model_version, **{"Sec-GPC": "1"})  # cached again: one
    if server.store.dialect == "postgresql":
        assert (exchanges.awaited - awaited, engines.decided_on_threads - on_threads) == (4, 0)
