"""Served decisions, logged durably with group commit; and failed requests.

Every served list gets a row in ``decisions``: who (pseudonym), how (mode, the
policy pack's name, version and hash, the model version) and what (the slate:
items, scores, tags; and the request context). Writing one transaction per
request would cap serving at the database's commit rate, so
:class:`DecisionLog` queues records and a background thread commits them in
batches: ONE transaction per batch, one multi-row insert, and ONE trail event
``decisions.committed`` whose payload carries the count, the first and last
decision id and a SHA-256 over the canonical JSON of the batch's records
(:func:`batch_digest`). A row changed later no longer matches its batch's
digest; :func:`verify_decisions` finds it.

Fail closed: :meth:`DecisionLog.submit_and_wait` returns only after the batch
holding the record has committed, and raises if it did not; the serving path
must not send a personalized list whose record is not stored (STYLE: write the
audit record before you answer).

What the log is given is one typed record, :class:`~audits.decision_record.Decision`,
built once by the serving path (or a plain dict of its fields); it is validated
and encoded in the caller's thread (:mod:`audits.decision_record`).

A decision may bring trail events of its own (``events``: e.g. the API call that
asked for it, attributed to its key). They are validated when the decision is
submitted and appended right after the batch's ``decisions.committed`` event,
in the same transaction as the decision row: both are stored, or neither.

Example
-------
>>> log = DecisionLog(store)                                           # doctest: +SKIP
>>> receipt = log.submit_and_wait(Decision(
...     subject=who, mode="personalized",
...     pack_name="eu-gdpr-dsa", pack_version="3", pack_hash="sha256:...",
...     model_version="3f2a", slate={"items": ["i1", "i2"], "scores": [0.9, 0.7]},
...     context={"surface": "home"}), timeout=1.0)
>>> log.close()                                                        # flushes
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from audits._common import actor_name, aware, json_object, lookup_subject_secrets, text
from audits.db import EncodedJson, HeldConnection, Store, describe_db_error
from audits.consent_write import ConsentWrite, plan_consent, store_consent
from audits.decision_record import DECISION_FIELDS, Decision, DecisionReceipt, _fast_digest, _Pending, _prepare, batch_digest
from audits.models import DecisionRecord, FailedRequest, TrailEvent
from audits.sealing import file_record_keys, find_record_keys, seal_decision
from audits.subjects import _installation_key, hold_head_for_keys, record_key
from audits.trail import NewEvent, append_event, append_many, format_time
from recommender.errors import ConfigError, DataError, RecgovError

__all__ = [
    "Decision",
    "DecisionLog",
    "DecisionReceipt",
    "batch_digest",
    "verify_decisions",
    "log_failure",
    "DECISION_FIELDS",
    "NOT_RECORDED",
    "LOG_CLOSED",
]

_IDLE_GAP_S = 0.0005
_MAX_FILED = 200_000  # pseudonyms remembered as having their record key filed (then forgotten, and filed again)

NOT_RECORDED = "decision {id} was not recorded: {cause}; fail closed: do not serve it"
LOG_CLOSED = "the decision log is closed; open a new DecisionLog"
LOG_FULL = (
    "the decision log has {n} records waiting: the database is not keeping up; refusing more "
    "(fail closed) rather than holding unrecorded decisions in memory"
)


@dataclass(slots=True)
class _Flush:
    future: Future[None]


_STOP = object()
_INSERT_DECISIONS = insert(DecisionRecord.__table__)  # built once: every batch runs it


class DecisionLog:
    """Durable decision logging with group commit, from any number of threads.

    Parameters
    ----------
    store
        The store to write to.
    max_batch
        At most this many decisions per transaction.
    max_delay_ms
        The longest the writer waits for more decisions after the first of a
        batch arrives. It stops waiting as soon as none arrives for half a
        millisecond: under load, batches grow by themselves while the previous
        one commits, and a lone request pays almost no delay. ``0``: never wait;
        each batch is what queued while the previous one committed (what a
        service wants: see :data:`governance.api.services.engines.SERVING_BATCH_DELAY_MS`).
    max_pending
        Refuse new decisions (fail closed) when this many wait to be written.
    actor
        Named in the trail's ``decisions.committed`` events (default ``RECGOV_ACTOR``).

    Use as a context manager, or call :meth:`close`, which writes what is queued.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = 256,
        max_delay_ms: float = 5,
        max_pending: int = 100_000,
        actor: str | None = None,
    ) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"max_batch must be a positive integer; got {max_batch!r}")
        if (
            isinstance(max_delay_ms, bool)
            or not isinstance(max_delay_ms, (int, float))
            or not 0 <= max_delay_ms <= 10_000
        ):
            raise ConfigError(f"max_delay_ms must be a number from 0 to 10000; got {max_delay_ms!r}")
        self.store = store
        self.max_batch = max_batch
        self.max_delay_ms = max_delay_ms
        self.max_pending = max_pending
        self.actor = actor_name(actor)
        self.batches_committed = 0
        self.decisions_committed = 0
        self.batches_failed = 0
        self._filed: set[str] = set()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._lock = threading.Lock()
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="recgov-decision-log", daemon=True)
        self._writer.start()

    # -- the callers' side -------------------------------------------------------------------

    def submit(
        self, record: Decision | Mapping[str, Any], *, events: tuple[NewEvent, ...] = (), consent: tuple[ConsentWrite, ...] = ()
    ) -> Future[DecisionReceipt]:
        """Queue a decision; the future resolves to a :class:`DecisionReceipt` once its batch committed.

        The record (a :class:`Decision`, or a dict of its fields) is validated
        here, in the caller's thread (a bad record raises at once; see
        :class:`Decision` for what is required). The future fails with
        :class:`~recommender.errors.RecgovError` if the write fails.

        ``events``: trail events that belong to this decision (validated here;
        no raw subject id, a ``subject`` must be a pseudonym). They are appended
        after the batch's ``decisions.committed`` event, in the same
        transaction as the record.

        ``consent``: consent records of the decision's subject (given by raw
        id) that the decision was made on (:mod:`audits.consent_write`),
        checked here and written in the batch's transaction before the record;
        the receipt gives their ids and trail seqs.
        """
        future: Future[DecisionReceipt] = Future()
        self._put(_prepare(record, future, events, consent))
        return future

    def submit_and_wait(
        self,
        record: Decision | Mapping[str, Any],
        timeout: float | None = 5.0,
        *,
        events: tuple[NewEvent, ...] = (),
        consent: tuple[ConsentWrite, ...] = (),
    ) -> DecisionReceipt:
        """Queue a decision (with its ``events`` and ``consent``, see :meth:`submit`); return once it is durably stored.

        Raises
        ------
        ConfigError, DataError
            The record is invalid, or the write failed (the database refused or
            is unreachable). Do not serve the list.
        TimeoutError
            Not committed within ``timeout`` seconds. Do not serve the list (it
            may still be stored later, as a decision never served).
        """
        return self.submit(record, events=events, consent=consent).result(timeout=timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every decision submitted before this call has been written (or has failed)."""
        future: Future[None] = Future()
        self._put(_Flush(future))
        future.result(timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting decisions, write every queued one, and stop the writer."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)  # blocks only while the queue is full, which the writer drains
        self._writer.join(timeout)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _put(self, item: Any) -> None:
        with self._lock:
            if self._closed:
                raise ConfigError(LOG_CLOSED)
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                raise ConfigError(LOG_FULL.format(n=self.max_pending)) from None

    # -- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.max_delay_ms / 1000
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            items = [first]
            pending_count = 0 if isinstance(first, _Flush) else 1
            # Take what is queued; wait for more only while records keep arriving (gaps under
            # half a millisecond), and never longer than max_delay_ms after the first. Under
            # load the batch grows by itself: records queue up while the last batch commits.
            deadline = time.monotonic() + delay
            while pending_count < self.max_batch and not isinstance(items[-1], _Flush):
                wait = min(deadline - time.monotonic(), _IDLE_GAP_S)
                try:
                    item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                items.append(item)
                pending_count += not isinstance(item, _Flush)
            batch = [i for i in items if isinstance(i, _Pending) and i.future.set_running_or_notify_cancel()]
            if batch:
                self._write(batch)
            for item in items:
                if isinstance(item, _Flush):
                    item.future.set_result(None)

    def _write(self, batch: list[_Pending]) -> None:
        try:
            seq = self._commit(batch)
        except IntegrityError as err:
            if len(batch) > 1:  # one bad record (a duplicate id) must not sink the others
                for pending in batch:
                    self._write([pending])
                return
            self._fail(batch, DataError, describe_db_error(err), err)
        except DBAPIError as err:
            self._fail(batch, ConfigError, f"the database {self.store.url} failed: {describe_db_error(err)}", err)
        except RecgovError as err:
            self._fail(batch, type(err), str(err), err)
        except BaseException as err:  # noqa: BLE001 - handed to every waiting caller; the writer lives on
            self._fail(batch, ConfigError, f"the decision log's writer failed: {type(err).__name__}: {err}", err)
        else:
            self.batches_committed += 1
            self.decisions_committed += len(batch)
            for pending in batch:
                pending.future.set_result(DecisionReceipt(pending.decision.decision_id, seq, pending.recorded))

    def _fail(self, batch: list[_Pending], kind: type[RecgovError], cause: str, err: BaseException) -> None:
        """Fail every decision of the batch, each with an error of its own (raised in its caller's thread)."""
        self.batches_failed += 1
        where = self._ids(batch)
        for pending in batch:
            error = kind(NOT_RECORDED.format(id=where, cause=cause))
            error.__cause__ = err
            pending.future.set_exception(error)

    @staticmethod
    def _ids(batch: list[_Pending]) -> str:
        first = batch[0].decision.decision_id
        return first if len(batch) == 1 else f"{first} and {len(batch) - 1} others in its batch"

    _held: HeldConnection | None = None
    """The connection a writer process keeps for its transactions (:mod:`audits.decision_writer`); None: one per batch."""

    def _commit(self, batch: list[_Pending]) -> int:
        """Write one batch (pseudonyms, sealing, the trail events, the rows) in one transaction; return its event's seq."""
        held = self._held
        if held is None:
            with self.store.session() as session:
                seq, filed = self._write_batch(session, batch)
        else:
            seq, filed = self._write_held(held, batch)
        if len(self._filed) > _MAX_FILED:
            self._filed.clear()
        self._filed.update(filed)  # only once committed
        return seq

    def _write_held(self, held: HeldConnection, batch: list[_Pending]) -> tuple[int, list[str]]:
        """:meth:`_write_batch` on the held connection. A connection the server dropped while it was held (found by
        a statement before the commit: nothing was written) is replaced and the batch written again, once, as the
        ping of a pooled connection would have replaced it before the batch."""
        before = [(p.subject, p.slate_json, p.context_json, p.recorded) for p in batch]
        retry = not held.fresh
        reached_commit = False
        try:
            with held.session() as session:
                result = self._write_batch(session, batch)
                reached_commit = True
            return result
        except ConfigError as err:
            cause = err.__cause__
            if not (retry and not reached_commit and isinstance(cause, DBAPIError) and cause.connection_invalidated):
                raise
        for pending, (subject, slate_json, context_json, recorded) in zip(batch, before, strict=True):
            pending.subject, pending.slate_json, pending.context_json, pending.recorded = subject, slate_json, context_json, recorded
        with held.session() as session:
            return self._write_batch(session, batch)

    def _write_batch(self, session: Session, batch: list[_Pending]) -> tuple[int, list[str]]:
        """The batch's statements in the caller's transaction; its event's seq and the pseudonyms whose key it filed.

        The statements go to the session's connection (Core): none of them loads or flushes ORM objects, and the
        ORM's execution layer costs more than the database's work for a small batch. Only the consent rows go
        through the session (:func:`~audits.consent_write.store_consent`).
        """
        connection = session.connection()
        filed, keys = self._seal(connection, batch)
        # The consent records the decisions were made on come first in the trail, under the pseudonyms and
        # record keys just read for the decisions (audits.consent_write).
        writes = [(write, p.decision.subject_id, p.subject, keys[p.subject]) for p in batch if p.consent for write in p.consent]
        planned = plan_consent(writes)  # type: ignore[arg-type]
        ids = sorted(p.decision.decision_id for p in batch)
        committed = NewEvent(
            actor=self.actor,
            action="decisions.committed",
            payload={
                "count": len(batch),
                "first_decision_id": ids[0],
                "last_decision_id": ids[-1],
                "sha256": _fast_digest(batch),
            },
        )
        # The consent records' events, then the batch's event (the rows point at it), then the events the
        # decisions brought.
        first = append_many(connection, [*planned.events, committed, *(event for p in batch for event in p.events)]).first_seq
        seq = first + len(planned.events)
        recorded = iter(store_consent(session, planned, first))
        for pending in batch:
            if pending.consent:
                pending.recorded = tuple(next(recorded) for _ in pending.consent)
        # slate and context go in as the canonical JSON the digest covers, encoded once
        connection.execute(
            _INSERT_DECISIONS,
            [p.row | {"slate": EncodedJson(p.slate_json.decode()), "context": EncodedJson(p.context_json.decode()), "batch_seq": seq} for p in batch],
        )
        return seq, filed

    def _seal(self, session: Session | Connection, batch: list[_Pending]) -> tuple[list[str], dict[str, bytes]]:
        """Name each decision's subject by pseudonym and seal its slate and context under the subject's record key.

        Record keys are derived from the subjects' secrets (read in one query,
        with the pseudonyms) and filed for pseudonym readers the first time
        this writer meets a subject (:mod:`audits.sealing`). A decision given
        by pseudonym opens with the key filed for it; a pseudonym with none
        (erased since, or not one recgov issued) is sealed under a key kept
        nowhere. Anonymous decisions stay as they are. Returns the pseudonyms
        whose key this transaction filed, and each pseudonym's record key.
        """
        raw_ids = [p.decision.subject_id for p in batch if p.decision.subject_id is not None]
        given = {p.subject for p in batch if p.decision.subject_id is None and p.subject is not None}
        if not raw_ids and not given:
            return [], {}
        installation = _installation_key(session)
        hold_head_for_keys(session)
        keys: dict[str, bytes] = {}
        filed: list[str] = []
        if raw_ids:
            found = lookup_subject_secrets(session, raw_ids, create=True, key=installation)
            for pending in batch:
                if pending.decision.subject_id is not None:
                    who, secret = found[pending.decision.subject_id]  # type: ignore[misc]
                    pending.subject = who
                    if who not in keys:
                        keys[who] = record_key(secret)
            unfiled = {who: key for who, key in keys.items() if who not in self._filed}
            if unfiled:
                stored = file_record_keys(session, installation, unfiled)
                keys.update(stored)  # a key filed earlier for the pseudonym wins
                filed = [who for who, key in stored.items() if key == unfiled[who]]
        missing = [who for who in given if who not in keys]
        if missing:
            keys.update(find_record_keys(session, installation, missing))
        ciphers: dict[str, AESGCM] = {}
        for pending in batch:
            who = pending.subject
            if who is None:
                continue
            key = keys.get(who)
            if key is None:
                key = keys[who] = os.urandom(32)
            cipher = ciphers.get(who)
            if cipher is None:
                cipher = ciphers[who] = AESGCM(key)
            pending.slate_json, pending.context_json = seal_decision(
                key, pending.decision.decision_id, who, pending.slate_json, pending.context_json, cipher
            )
        return filed, keys


def verify_decisions(connection: Connection | Session) -> list[dict[str, Any]]:
    """Check every stored decision against its batch's trail event; return the problems (empty: intact).

    Each problem is ``{"batch_seq": ..., "problem": ...}``: a batch whose rows no
    longer match its digest or count (a row changed, deleted or added), or rows
    whose ``batch_seq`` is not a ``decisions.committed`` event. Verify the trail
    itself with :func:`audits.verify_trail`.
    """
    events = {
        seq: orjson.loads(payload)
        for seq, payload in connection.execute(
            select(TrailEvent.seq, TrailEvent.payload).where(TrailEvent.action == "decisions.committed")
        )
    }
    columns = [getattr(DecisionRecord, name) for name in DECISION_FIELDS]
    query = select(DecisionRecord.batch_seq, *columns).order_by(DecisionRecord.batch_seq)
    problems: list[dict[str, Any]] = []

    def check(seq: int, rows: list[dict[str, Any]]) -> None:
        payload = events.pop(seq, None)
        if payload is None:
            problems.append({"batch_seq": seq, "problem": f"{len(rows)} decisions name no decisions.committed event"})
        elif payload["count"] != len(rows):
            problems.append(
                {"batch_seq": seq, "problem": f"the trail says {payload['count']} decisions, {len(rows)} are stored"}
            )
        elif batch_digest(rows) != payload["sha256"]:
            problems.append(
                {"batch_seq": seq, "problem": "the decisions no longer match the batch's SHA-256 (changed)"}
            )

    current: int | None = None
    rows: list[dict[str, Any]] = []
    for batch_seq, *values in connection.execute(query):  # one batch in memory at a time
        if batch_seq != current:
            if current is not None:
                check(current, rows)
            current, rows = batch_seq, []
        rows.append(dict(zip(DECISION_FIELDS, values, strict=True)))
    if current is not None:
        check(current, rows)
    for seq in list(events):  # batches whose every row is gone
        check(seq, [])
    problems.sort(key=lambda p: p["batch_seq"])
    return problems


def log_failure(
    target: Session | Store,
    cause: str,
    detail: Mapping[str, Any] | None = None,
    *,
    at: datetime | None = None,
    actor: str | None = None,
) -> FailedRequest:
    """Record a request that failed (``cause``: e.g. ``policy.unverifiable``), with a trail event ``request.failed``.

    ``target`` is a session (the caller's transaction) or a store (a transaction
    of its own). ``detail`` is a JSON object and must not carry raw ids
    (keys such as ``user_id`` are refused).
    """
    if isinstance(target, Store):
        with target.session() as session:
            return log_failure(session, cause, detail, at=at, actor=actor)
    cause = text(cause, "cause", 100)
    plain = json_object(detail, "detail")
    when = aware(at, "at", not_after_now=True)
    event = append_event(
        target,
        actor=actor_name(actor),
        action="request.failed",
        payload={"cause": cause, "detail": plain, "at": format_time(when)},
    )
    row = FailedRequest(at=when, cause=cause, detail=plain, trail_seq=event.seq)
    target.add(row)
    target.flush()
    return row
