"""Verification of the audit trail: walk the chain, report the first break.

:func:`verify_trail` checks a store; :func:`audits.export.verify_export` checks an
exported file with nothing but a public key. Both feed rows to the same
:class:`ChainWalker`, which stops at the first event that does not fit and says
why:

================== ===========================================================
reason             meaning
================== ===========================================================
``gap``            an event is missing (deleted) before the next stored one
``hash_mismatch``  the event's content does not match its stored hash (changed)
``reorder``        the event was written under another sequence number (events
                   inserted, removed or swapped before it)
``bad_prev_link``  the event is intact but does not link to the event before it
                   (that one was rewritten and re-hashed)
``malformed``      the event's fields cannot be read
``truncated``      the chain ends before the head (events removed at the end)
``beyond_head``    events after the head (written around the append path)
``head_mismatch``  the head's hash differs from the last event's
``checkpoint_mismatch`` the chain no longer reaches a signed checkpoint's hash
``bad_signature``  a checkpoint's signature does not verify
``no_checkpoint``  (export) no checkpoint signed by the given key
================== ===========================================================
"""

from __future__ import annotations

import queue
import threading
import time as _time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from audits.chain import ROW_COLUMNS, Break, ChainWalker, TrailReport, by_seq, check_signatures, gc_paused, report
from audits.checkpoints import CheckpointRecord, create_checkpoint, list_checkpoints
from audits.trail import GENESIS_HASH, lock_head, read_head
from recommender.errors import DataError

if TYPE_CHECKING:
    from audits.db import Store
    from audits.keys import SigningKey

__all__ = ["TrailReport", "Break", "ChainWalker", "verify_trail", "verify_and_checkpoint", "iter_rows", "ROW_COLUMNS"]

Row = Sequence[Any]
Progress = Callable[[int, int], None]


def iter_rows(
    connection: Connection, *, batch_size: int = 20_000, after: int = 0
) -> Generator[list[tuple[Any, ...]], None, None]:
    """Batches of trail rows in sequence order, read with the driver directly (fast).

    Keyset pagination (``WHERE seq > last ORDER BY seq LIMIT n``) inside the
    caller's transaction; use a snapshot connection for a consistent view. On
    PostgreSQL the next batch is fetched by a helper thread while the caller
    works on the current one (the server and the checker then run in parallel).
    """
    batches = _read_batches(connection, batch_size=batch_size, after=after)
    if connection.dialect.name != "postgresql":
        return batches
    return _prefetched(batches)


def _prefetched(batches: Iterator[list[tuple[Any, ...]]]) -> Iterator[list[tuple[Any, ...]]]:
    slots: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    return
                slots.put(batch)
            slots.put(None)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            slots.put(err)

    worker = threading.Thread(target=produce, name="recgov-trail-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                slots.get_nowait()
            except queue.Empty:
                pass
            worker.join(timeout=0.05)


def _read_batches(connection: Connection, *, batch_size: int, after: int) -> Iterator[list[tuple[Any, ...]]]:
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    sql = f"SELECT {', '.join(ROW_COLUMNS)} FROM trail_events WHERE seq > {marker} ORDER BY seq LIMIT {marker}"
    raw = connection.connection.driver_connection
    assert raw is not None
    driver_error = connection.dialect.loaded_dbapi.Error
    cursor = raw.cursor()
    try:
        last = after
        while True:
            try:
                cursor.execute(sql, (last, batch_size))
                rows = cursor.fetchall()
            except driver_error as err:
                raise DataError(
                    f"cannot read the trail after event {last}: {str(err).strip().splitlines()[0]}"
                ) from err
            if not rows:
                return
            yield rows
            last = rows[-1][0]
            if len(rows) < batch_size:
                return
    finally:
        cursor.close()


def verify_trail(connection: Connection, *, batch_size: int = 20_000, progress: Progress | None = None) -> TrailReport:
    """Verify the whole trail of the store behind ``connection``.

    Checks every checkpoint's signature (with the keys in ``signing_keys``),
    walks the chain from event 1 in batches, compares its end with the head and
    every checkpoint with the event it signed. Run it on
    :meth:`audits.db.Store.snapshot` so that concurrent appends do not interfere.

    Example
    -------
    >>> with store.snapshot() as connection:                 # doctest: +SKIP
    ...     report = verify_trail(connection)
    >>> report.intact, report.first_bad_seq, report.reason    # doctest: +SKIP
    (False, 42, 'hash_mismatch')
    """
    started = _time.perf_counter()
    head_seq, head_hash = read_head(connection)
    valid, signature_failure = check_signatures(list_checkpoints(connection))
    walker = ChainWalker(by_seq(valid))
    batches = iter_rows(connection, batch_size=batch_size)
    try:
        with gc_paused():
            for rows in batches:
                if not walker.feed(rows):
                    break
                if progress is not None:
                    progress(walker.n_events, head_seq)
    finally:
        batches.close()
    walker.finish(head_seq, head_hash)

    def candidates(row: Row) -> Iterator[int]:
        # Most likely: one after the event its prev_hash names; else try every position.
        found = connection.exec_driver_sql(
            "SELECT seq FROM trail_events WHERE hash = " + ("?" if connection.dialect.paramstyle == "qmark" else "%s"),
            (str(row[7]),),
        ).scalar()
        if found is not None:
            yield int(found) + 1
        if row[7] == GENESIS_HASH:
            yield 1
        yield from range(1, max(head_seq, walker.n_events) + 2)

    walker.diagnose(candidates)
    return report(walker, valid, signature_failure, head_seq=head_seq, head_hash=head_hash, started=started)


def verify_and_checkpoint(
    store: Store, key: SigningKey, *, progress: Progress | None = None
) -> tuple[TrailReport, CheckpointRecord | None]:
    """Verify the whole trail, then sign its head; never sign a broken trail.

    Events appended between the verification and the signature are checked
    too, with the head locked, so the checkpoint vouches only for verified
    events. Returns the report and the checkpoint (None when the trail is
    broken: nothing was signed).
    """
    with store.snapshot() as connection:
        report = verify_trail(connection, progress=progress)
    if not report.intact:
        return report, None
    with store.session() as session:
        head_seq, head_hash = lock_head(session)
        if head_seq != report.head_seq:
            walker = ChainWalker(after_seq=report.head_seq, after_hash=report.head_hash)
            batches = iter_rows(session.connection(), after=report.head_seq)
            try:
                for rows in batches:
                    if not walker.feed(rows):
                        break
            finally:
                batches.close()
            walker.finish(head_seq, head_hash)
            if walker.broken is not None:
                broken = walker.broken
                return TrailReport(
                    intact=False,
                    n_events=walker.n_events,
                    head_seq=head_seq,
                    head_hash=head_hash,
                    first_bad_seq=broken.seq,
                    reason=broken.reason,
                    detail=broken.detail,
                ), None
            report = TrailReport(
                **{**asdict(report), "n_events": walker.n_events, "head_seq": head_seq, "head_hash": head_hash}
            )
        return report, create_checkpoint(session, key)
