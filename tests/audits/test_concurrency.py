"""Concurrent writers never fork the chain or leave a gap; a killed writer leaves no half batch."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from trail_workers import append_worker, stalled_batch_worker

from audits import NewEvent, Store, append_event, append_many, verify_trail

N_WORKERS = 8
EVENTS_PER_WORKER = 1000


@pytest.mark.slow
def test_eight_processes_append_concurrently_without_forks_or_gaps(store: Store, db_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [
        context.Process(target=append_worker, args=(db_url, worker, EVENTS_PER_WORKER, 50, start))
        for worker in range(N_WORKERS)
    ]
    for process in workers:
        process.start()
    start.set()
    for process in workers:
        process.join(timeout=240)
    assert [p.exitcode for p in workers] == [0] * N_WORKERS
    with store.snapshot() as connection:
        report = verify_trail(connection)
        seqs = [row[0] for row in connection.execute(text("SELECT seq FROM trail_events ORDER BY seq"))]
        actors = connection.execute(
            text("SELECT actor, COUNT(*), COUNT(DISTINCT payload) FROM trail_events GROUP BY actor ORDER BY actor")
        ).all()
    total = N_WORKERS * EVENTS_PER_WORKER
    assert report.intact, report.summary()
    assert report.n_events == report.head_seq == total
    assert seqs == list(range(1, total + 1))
    assert [tuple(a) for a in actors] == [
        (f"worker-{w}", EVENTS_PER_WORKER, EVENTS_PER_WORKER) for w in range(N_WORKERS)
    ]


def _head_is_locked(store: Store, db_url: str) -> bool:
    """Whether another transaction holds the trail head (its batch is in flight, uncommitted)."""
    if store.dialect == "postgresql":
        with store.engine.connect() as connection:
            try:
                connection.execute(text("SELECT seq FROM trail_head FOR UPDATE NOWAIT"))
            except OperationalError as err:
                return "could not obtain lock" in str(err)
            finally:
                connection.rollback()
        return False
    probe = sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=0.1, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as err:
        return "locked" in str(err)
    finally:
        probe.close()
    return False


@pytest.mark.slow
def test_a_writer_killed_mid_batch_leaves_the_chain_valid_and_no_half_batch(store: Store, db_url: str) -> None:
    with store.session() as session:
        append_many(session, [NewEvent(actor="before", action="test.kept", payload={"i": i}) for i in range(10)])
    context = multiprocessing.get_context("spawn")
    stalled = context.Event()
    writer = context.Process(target=stalled_batch_worker, args=(db_url, 1600, stalled))
    writer.start()
    try:
        assert stalled.wait(60), "the writer never reached the middle of its batch"
        assert _head_is_locked(store, db_url), "the writer should hold the trail head mid-batch"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(timeout=30)
    assert writer.exitcode == -signal.SIGKILL
    with store.snapshot() as connection:
        report = verify_trail(connection)
        actions = connection.execute(text("SELECT DISTINCT action FROM trail_events")).scalars().all()
    assert report.intact and report.n_events == 10, report.summary()
    assert actions == ["test.kept"]
    with store.session() as session:  # the lock died with the writer: appends go on
        assert append_event(session, actor="after", action="test.kept").seq == 11
    with store.snapshot() as connection:
        assert verify_trail(connection).intact
