"""Verification of the audit trail and of every record anchored on it.

:func:`verify_store` is what ``recgov trail verify``, ``GET /v1/trail/verify``,
the console's trail page and every checkpoint (:func:`verify_and_checkpoint`:
``recgov trail checkpoint``, ``POST /v1/trail/checkpoint``) run: the trail's
chain and signed checkpoints (:func:`verify_trail`), then every table and folder
whose records the trail anchors (:data:`RECORD_CHECKS`), each held against the
events that wrote it:

================== ===========================================================
table              held against
================== ===========================================================
``decisions``      each batch's ``decisions.committed`` digest and count
``audit_results``  each audit's results digest and verdict
``consent_records`` each record's ``consent.recorded`` event; each import
                   batch's ``consent.imported`` counts and digests
``suppressions``   each row's ``subject.suppressed`` event
``spark_decisions`` each ``recgov batch`` folder's anchored partitions (chains,
                   counts, heads; nothing else in the folder)
================== ===========================================================

A checkpoint is signed only when all of it holds: a signature vouches for the
records the trail anchors, not for the chain alone.

Which keys a store's checkpoints are checked with (``trusted_keys``): the
public keys the installation holds in its keys folder
(:func:`audits.keys.installation_public_keys`, every key it ever signed with),
and any the caller gives. The ``signing_keys`` table holds the same keys, but
whoever can write the database can add one there, rewrite the trail, recompute
its hashes and sign it: a checkpoint by a key outside the trusted ones breaks the
verification (``untrusted_checkpoint``). Only where the installation holds no
key at all (a host that never signed, and no key given) are the database's
keys used, and the report says so (``trusted_keys: database``).

:func:`verify_trail` checks a store's chain; :func:`audits.export.verify_export`
checks an exported file with nothing but a public key. Both feed rows to the same
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
``untrusted_checkpoint`` (store) a checkpoint signed by a key this installation
                   does not hold (its keys folder) and was not given: anyone who can
                   write the database can add a key and sign a rewritten trail
``no_checkpoint``  (export) no checkpoint signed by the given key
================== ===========================================================
"""

from __future__ import annotations

import queue
import threading
import time as _time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from audits.chain import ROW_COLUMNS, Break, ChainWalker, TrailReport, by_seq, check_signatures, gc_paused, report
from audits.checkpoints import CheckpointRecord, create_checkpoint, list_checkpoints
from audits.keys import installation_public_keys
from audits.trail import GENESIS_HASH, lock_head, read_head
from recommender.errors import DataError

if TYPE_CHECKING:
    from audits.db import Store
    from audits.keys import SigningKey

__all__ = [
    "RECORD_CHECKS",
    "ROW_COLUMNS",
    "Break",
    "ChainWalker",
    "StoreReport",
    "TrailReport",
    "iter_rows",
    "verify_and_checkpoint",
    "verify_records",
    "verify_store",
    "verify_trail",
]

Row = Sequence[Any]
Progress = Callable[[int, int], None]
RecordCheck = Callable[[Connection], list[dict[str, Any]]]


def _decisions(connection: Connection) -> list[dict[str, Any]]:
    from audits.decisions import verify_decisions

    return verify_decisions(connection)


def _audit_results(connection: Connection) -> list[dict[str, Any]]:
    from audits.results import verify_audit_results

    return verify_audit_results(connection)


def _consent_records(connection: Connection) -> list[dict[str, Any]]:
    from audits.consent_verify import verify_consent_records

    return verify_consent_records(connection)


def _suppressions(connection: Connection) -> list[dict[str, Any]]:
    from audits.consent_verify import verify_suppressions

    return verify_suppressions(connection)


def _spark_decisions(connection: Connection) -> list[dict[str, Any]]:
    from audits.batch_folders import verify_spark_batches

    return verify_spark_batches(connection)


RECORD_CHECKS: tuple[tuple[str, RecordCheck], ...] = (
    ("decisions", _decisions),
    ("audit_results", _audit_results),
    ("consent_records", _consent_records),
    ("suppressions", _suppressions),
    ("spark_decisions", _spark_decisions),
)
"""Every table (or folder) of records the trail anchors, and the check that holds it against the trail."""


@dataclass(frozen=True)
class StoreReport:
    """The trail's report and the records anchored on it that no longer match it.

    ``intact`` is true when both hold: the chain and checkpoints (``trail``) and every anchored
    record (``anchored_problems`` empty). Each problem names its ``table`` and where it is
    (``batch_seq``, ``seq``, ``record`` or ``audit``) and says what is wrong.
    """

    trail: TrailReport
    anchored_problems: tuple[dict[str, Any], ...] = field(default=())

    @property
    def intact(self) -> bool:
        """Whether the chain, the checkpoints and every anchored record hold."""
        return self.trail.intact and not self.anchored_problems

    @property
    def anchored_records_intact(self) -> bool:
        """Whether every record the trail anchors still matches it."""
        return not self.anchored_problems

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the trail's report, ``intact`` for all of it, ``trail_intact`` for the chain alone."""
        return {
            **self.trail.to_dict(),
            "intact": self.intact,
            "trail_intact": self.trail.intact,
            "anchored_records_intact": self.anchored_records_intact,
            "anchored_problems": [dict(p) for p in self.anchored_problems],
        }

    def lines(self) -> list[str]:
        """For people: the trail's line, then one line per anchored problem (or one saying they all hold)."""
        lines = [self.trail.summary()]
        if not self.anchored_problems:
            checked = ", ".join(name for name, _ in RECORD_CHECKS)
            lines.append(f"anchored records intact ({checked})")
        for problem in self.anchored_problems:
            lines.append(f"{problem['table']} BROKEN{_where(problem)}: {problem['problem']}")
        return lines


def _where(problem: dict[str, Any]) -> str:
    """Where an anchored problem is, as `` (batch at seq 9)``, or nothing when it says it itself."""
    if "batch_seq" in problem:
        return f" (batch at seq {problem['batch_seq']})"
    if "audit" in problem:
        return f" (audit #{problem['audit']})"
    if "record" in problem:
        return f" (record {problem['record']}, event at seq {problem.get('seq')})"
    if "seq" in problem:
        return f" (event at seq {problem['seq']})"
    return ""


def verify_records(connection: Connection, checks: Sequence[tuple[str, RecordCheck]] = RECORD_CHECKS) -> list[dict[str, Any]]:
    """Every anchored record that no longer matches the trail, each problem tagged with its ``table``."""
    return [{"table": name, **problem} for name, check in checks for problem in check(connection)]


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


def verify_trail(
    connection: Connection,
    *,
    trusted_keys: Mapping[str, Any] | None = None,
    batch_size: int = 20_000,
    progress: Progress | None = None,
) -> TrailReport:
    """Verify the whole trail of the store behind ``connection``.

    Checks every checkpoint's signature (with ``trusted_keys``, key id -> Ed25519 public key, where given and
    not empty: a checkpoint by another key is ``untrusted_checkpoint``; else with the keys in ``signing_keys``),
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
    valid, signature_failure, trust = _checked_checkpoints(list_checkpoints(connection), trusted_keys)
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
    return report(walker, valid, signature_failure, head_seq=head_seq, head_hash=head_hash, started=started, trusted_keys=trust)


def _checked_checkpoints(
    checkpoints: list[CheckpointRecord], trusted_keys: Mapping[str, Any] | None
) -> tuple[list[CheckpointRecord], Break | None, str]:
    """The checkpoints whose signatures verify, the first failure, and which keys were trusted (see the module doc)."""
    if not trusted_keys:
        valid, failure = check_signatures(checkpoints)
        return valid, failure, "database"
    valid, failure = check_signatures(checkpoints, public_keys=dict(trusted_keys))
    untrusted = [c for c in checkpoints if c.key_id not in trusted_keys]
    if untrusted:
        first = min(untrusted, key=lambda c: c.seq)
        if failure is None or first.seq < failure.seq:
            failure = Break(
                first.seq,
                "untrusted_checkpoint",
                f"the checkpoint of event {first.seq} signed at {first.time} is by key {first.key_id}, which is not "
                f"one of this installation's keys (its keys folder) nor one given: whoever can write the database can "
                f"add a key and sign a rewritten trail with it. If the key is yours (another host's), put its "
                f"<key_id>.pub.pem in the keys folder or pass it with --public-key",
            )
    return valid, failure, "installation"


def verify_store(
    connection: Connection, *, trusted_keys: Mapping[str, Any] | None = None, progress: Progress | None = None
) -> StoreReport:
    """Verify the trail (:func:`verify_trail`) and every record it anchors (:data:`RECORD_CHECKS`), in one snapshot.

    What ``recgov trail verify``, ``GET /v1/trail/verify``, the console and every checkpoint run.
    Run it on :meth:`audits.db.Store.snapshot`.
    """
    trail = verify_trail(connection, trusted_keys=trusted_keys, progress=progress)
    return StoreReport(trail, tuple(verify_records(connection)))


def verify_and_checkpoint(
    store: Store, key: SigningKey, *, trusted_keys: Mapping[str, Any] | None = None, progress: Progress | None = None
) -> tuple[StoreReport, CheckpointRecord | None]:
    """Verify the whole store (:func:`verify_store`), then sign the trail's head; never sign what does not hold.

    Nothing is signed when the chain is broken or a record the trail anchors
    no longer matches it. Events appended between the verification and the
    signature are checked too, with the head locked, so the checkpoint vouches
    only for verified events (their records, written a moment before, are
    checked by the next verification). Returns the report and the checkpoint
    (None: nothing was signed).
    """
    trusted = {**(trusted_keys or installation_public_keys(store.settings)), key.key_id: key.private_key.public_key()}
    with store.snapshot() as connection:
        checked = verify_store(connection, trusted_keys=trusted, progress=progress)
    if not checked.intact:
        return checked, None
    report = checked.trail
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
                return StoreReport(TrailReport(
                    intact=False,
                    n_events=walker.n_events,
                    head_seq=head_seq,
                    head_hash=head_hash,
                    first_bad_seq=broken.seq,
                    reason=broken.reason,
                    detail=broken.detail,
                )), None  # fmt: skip
            report = TrailReport(
                **{**asdict(report), "n_events": walker.n_events, "head_seq": head_seq, "head_hash": head_hash}
            )
        return StoreReport(report), create_checkpoint(session, key)
