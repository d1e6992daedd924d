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

One typed record crosses the seam between serving and the store: a
:class:`Decision` (a frozen dataclass) is built once by the serving path and
handed to :meth:`DecisionLog.submit`; the log validates it in the caller's
thread, encodes its slate and context once as canonical JSON, and hands the
validated record to the writer thread, or (without those two objects, whose
bytes travel instead) to :mod:`audits.decision_writer`'s child process.
Callers outside serving (tests, benchmarks, the command line's tools) may
submit the same fields as a plain dict; it becomes a :class:`Decision` first.
A slate's tags carry the values of the serving layer's ``TagKind`` (a
re-ranking move, ``governance.rerank.Reason``, is recorded as its tag):
serving converts at its edge, because the store sits below governance and must
not import its enums, and because the store only encodes what it is given, the
stored and sealed bytes never depend on how an enum prints.

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

import hashlib
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from audits._common import actor_name, aware, canonical_object, json_object, lookup_subject_secrets, one_of, text
from audits.canonical import canonical_json
from audits.db import EncodedJson, Store, describe_db_error
from audits.models import DECISION_MODES, DecisionRecord, FailedRequest, TrailEvent
from audits.sealing import file_record_keys, find_record_keys, seal_decision
from audits.subjects import _installation_key, hold_head_for_keys, record_key
from audits.trail import NewEvent, _encode, append_event, append_many, format_time
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

DECISION_FIELDS = (
    "decision_id",
    "decided_at",
    "subject",
    "mode",
    "pack_name",
    "pack_version",
    "pack_hash",
    "model_version",
    "slate",
    "context",
)
"""The fields of a stored decision, as covered by the batch digest."""
_INPUT_FIELDS = (*DECISION_FIELDS, "subject_id")
_REQUIRED = ("mode", "pack_name", "pack_version", "pack_hash", "slate")
_DIGEST_DOMAIN = b"recgov.decisions.v1\x00"
# The canonical JSON of one record (keys in RFC 8785 order), filled in by the writer from parts
# encoded once, in the caller's thread: the digest then costs one SHA-256 over the batch.
_RECORD_JSON = (
    b'{"context":%b,"decided_at":%b,"decision_id":%b,"mode":%b,"model_version":%b,'
    b'"pack_hash":%b,"pack_name":%b,"pack_version":%b,"slate":%b,"subject":%b}'
)
_IDLE_GAP_S = 0.0005
_MAX_FILED = 200_000  # pseudonyms remembered as having their record key filed (then forgotten, and filed again)
_PSEUDONYM = re.compile(r"[0-9a-f]{64}")

NOT_RECORDED = "decision {id} was not recorded: {cause}; fail closed: do not serve it"
LOG_CLOSED = "the decision log is closed; open a new DecisionLog"
LOG_FULL = (
    "the decision log has {n} records waiting: the database is not keeping up; refusing more "
    "(fail closed) rather than holding unrecorded decisions in memory"
)


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision record, as the serving path hands it to the log (and the log to its writer).

    Required: ``mode`` (one of :data:`~audits.models.DECISION_MODES`), the pack's
    ``pack_name``, ``pack_version`` and ``pack_hash``, and the ``slate``
    (``{"items": [...], "scores": [...], "tags": [[...], ...]}``: item ids in
    order, their scores, and per item its explanation tags as JSON objects whose
    ``kind`` is a tag kind's value). Optional: ``decision_id`` (a UUID; default
    a new one), ``decided_at`` (aware; default now), ``model_version``,
    ``context`` (a JSON object without raw ids), and the subject, either as
    ``subject`` (a pseudonym) or as ``subject_id`` (a raw id, stored only as its
    pseudonym, and never shown by ``repr``).
    """

    mode: str
    pack_name: str
    pack_version: str
    pack_hash: str
    slate: Mapping[str, Any]
    model_version: str | None = None
    context: Mapping[str, Any] | None = None
    decision_id: str | None = None
    decided_at: datetime | None = None
    subject: str | None = None
    subject_id: str | int | None = field(default=None, repr=False)

    @classmethod
    def from_mapping(cls, record: Mapping[str, Any]) -> Decision:
        """The record a plain dict describes (its keys are the field names); unknown keys are refused."""
        if not isinstance(record, Mapping):
            raise DataError(f"a decision record must be a dict, got {type(record).__name__}")
        unknown = set(record) - set(_INPUT_FIELDS)
        if unknown:
            raise DataError(f"unknown decision fields {sorted(unknown)}; expected some of {sorted(_INPUT_FIELDS)}")
        return cls(**{name: record.get(name) for name in _INPUT_FIELDS})

    def __reduce__(self) -> tuple[type[Decision], tuple[Any, ...]]:
        # Pickled as its constructor's arguments: the writer process receives every record of a
        # batch, and this is about half the cost of the slots dataclass's generated state methods.
        return Decision, (
            self.mode, self.pack_name, self.pack_version, self.pack_hash, self.slate, self.model_version,
            self.context, self.decision_id, self.decided_at, self.subject, self.subject_id,
        )  # fmt: skip

    def without_objects(self) -> Decision:
        """This record with an empty slate and context: what the writer needs once their JSON is encoded."""
        return Decision(
            self.mode, self.pack_name, self.pack_version, self.pack_hash, {}, self.model_version,
            {}, self.decision_id, self.decided_at, self.subject, self.subject_id,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class DecisionReceipt:
    """Proof that a decision is stored: its id and the trail event of its batch."""

    decision_id: str
    batch_seq: int


@dataclass(slots=True)
class _Pending:
    decision: Decision
    """The validated record (id and time filled in); its slate and context travel as the JSON below."""
    future: Future[DecisionReceipt] | None
    slate_json: bytes = b"{}"
    context_json: bytes = b"{}"
    events: tuple[NewEvent, ...] = ()
    """Trail events committed with the record (after the batch's ``decisions.committed`` event)."""
    subject: str | None = None
    """The stored pseudonym: the one given, or (set by the writer) the raw id's."""

    @property
    def row(self) -> dict[str, Any]:
        """The stored fields (:data:`DECISION_FIELDS`), slate and context as objects."""
        d = self.decision
        return {
            "decision_id": d.decision_id,
            "decided_at": d.decided_at,
            "subject": self.subject,
            "mode": d.mode,
            "pack_name": d.pack_name,
            "pack_version": d.pack_version,
            "pack_hash": d.pack_hash,
            "model_version": d.model_version,
            "slate": d.slate,
            "context": d.context,
        }

    def canonical(self) -> bytes:
        """The record's canonical JSON, as :func:`batch_digest` encodes it."""
        d, dumps = self.decision, orjson.dumps
        return _RECORD_JSON % (
            self.context_json,
            dumps(format_time(d.decided_at)),
            dumps(d.decision_id),
            dumps(d.mode),
            dumps(d.model_version),
            dumps(d.pack_hash),
            dumps(d.pack_name),
            dumps(d.pack_version),
            self.slate_json,
            dumps(self.subject),
        )


@dataclass(slots=True)
class _Flush:
    future: Future[None]


_STOP = object()


def _canonical_record(row: Mapping[str, Any]) -> dict[str, Any]:
    record = {name: row[name] for name in DECISION_FIELDS}
    record["decided_at"] = format_time(row["decided_at"])
    return record


def batch_digest(rows: list[Mapping[str, Any]]) -> str:
    """SHA-256 (hex) over the canonical JSON of a batch's records, in decision id order, domain separated.

    ``sha256(b"recgov.decisions.v1\\x00" + JCS([record, ...]))``, each record the
    :data:`DECISION_FIELDS` of a row with ``decided_at`` as a trail time string.
    """
    records = sorted((_canonical_record(row) for row in rows), key=lambda r: r["decision_id"])
    return hashlib.sha256(_DIGEST_DOMAIN + canonical_json(records)).hexdigest()


def _fast_digest(batch: list[_Pending]) -> str:
    """:func:`batch_digest` from the parts encoded at submit time (the same bytes)."""
    ordered = sorted(batch, key=lambda p: p.decision.decision_id or "")
    return hashlib.sha256(_DIGEST_DOMAIN + b"[" + b",".join(p.canonical() for p in ordered) + b"]").hexdigest()


def _prepare(
    record: Decision | Mapping[str, Any], future: Future[DecisionReceipt] | None, events: tuple[NewEvent, ...] = ()
) -> _Pending:
    """Validate a decision record (and the trail events it brings) in the caller's thread; encode its JSON parts once."""
    given = record if isinstance(record, Decision) else Decision.from_mapping(record)
    missing = [name for name in _REQUIRED if getattr(given, name) is None]
    if missing:
        raise DataError(f"a decision record needs {', '.join(_REQUIRED)}; missing {', '.join(missing)}")
    raw_id, subject = given.subject_id, given.subject
    if raw_id is not None and subject is not None:
        raise DataError("give a decision's subject either as 'subject' (a pseudonym) or as 'subject_id', not both")
    if subject is not None and not (isinstance(subject, str) and _PSEUDONYM.fullmatch(subject)):
        raise DataError(
            "a decision's 'subject' must be a pseudonym (64 hex digits) from audits.pseudonym; "
            "pass a raw id as 'subject_id' and the log stores its pseudonym"
        )
    mode = one_of(given.mode, DECISION_MODES, "mode")
    if mode == "personalized" and subject is None and raw_id is None:
        raise DataError("a personalized decision needs its subject ('subject' or 'subject_id')")
    given_id = given.decision_id
    try:
        decision_id = str(uuid.UUID(given_id)) if given_id is not None else str(uuid.uuid4())
    except (TypeError, ValueError, AttributeError) as err:
        raise DataError(f"decision_id must be a UUID string, got {given_id!r}") from err
    raw_ids = [raw_id] if raw_id is not None else []
    # A slate's values are item ids by schema; an item id may equal a user id in
    # numeric logs, so only its keys are checked for identifiers.
    slate, slate_json = canonical_object(given.slate, "slate", subject_ids=[])
    if not isinstance(slate.get("items"), list):
        raise DataError("slate must have 'items', a list of the item ids served in order")
    scores = slate.get("scores")
    if scores is not None and (not isinstance(scores, list) or len(scores) != len(slate["items"])):
        raise DataError(f"slate 'scores' must be a list as long as 'items' ({len(slate['items'])})")
    context, context_json = canonical_object(given.context, "context", subject_ids=raw_ids)
    model_version = given.model_version
    decision = Decision(
        decision_id=decision_id,
        decided_at=aware(given.decided_at, "decided_at", not_after_now=True),
        subject=subject,
        subject_id=raw_id,
        mode=mode,
        pack_name=text(given.pack_name, "pack_name", 200),
        pack_version=text(given.pack_version, "pack_version", 100),
        pack_hash=text(given.pack_hash, "pack_hash", 128),
        model_version=None if model_version is None else text(model_version, "model_version", 128),
        slate=slate,
        context=context,
    )
    for event in events:  # a bad event fails its own request here, never the batch it would have joined
        if not isinstance(event, NewEvent):
            raise DataError(f"a decision's events must be NewEvent objects, got {type(event).__name__}")
        _encode(event)
    return _Pending(decision, future, slate_json, context_json, tuple(events), subject)


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
        one commits, and a lone request pays almost no delay.
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

    def submit(self, record: Decision | Mapping[str, Any], *, events: tuple[NewEvent, ...] = ()) -> Future[DecisionReceipt]:
        """Queue a decision; the future resolves to a :class:`DecisionReceipt` once its batch committed.

        The record (a :class:`Decision`, or a dict of its fields) is validated
        here, in the caller's thread (a bad record raises at once; see
        :class:`Decision` for what is required). The future fails with
        :class:`~recommender.errors.RecgovError` if the write fails.

        ``events``: trail events that belong to this decision (validated here;
        no raw subject id, a ``subject`` must be a pseudonym). They are appended
        after the batch's ``decisions.committed`` event, in the same
        transaction as the record.
        """
        future: Future[DecisionReceipt] = Future()
        self._put(_prepare(record, future, events))
        return future

    def submit_and_wait(
        self, record: Decision | Mapping[str, Any], timeout: float | None = 5.0, *, events: tuple[NewEvent, ...] = ()
    ) -> DecisionReceipt:
        """Queue a decision (with its ``events``, see :meth:`submit`) and return only once it is durably stored.

        Raises
        ------
        ConfigError, DataError
            The record is invalid, or the write failed (the database refused or
            is unreachable). Do not serve the list.
        TimeoutError
            Not committed within ``timeout`` seconds. Do not serve the list (it
            may still be stored later, as a decision never served).
        """
        return self.submit(record, events=events).result(timeout=timeout)

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
                pending.future.set_result(DecisionReceipt(pending.decision.decision_id, seq))

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

    def _commit(self, batch: list[_Pending]) -> int:
        """Write one batch (pseudonyms, sealing, the trail events, the rows) in one transaction; return its event's seq."""
        with self.store.session() as session:
            filed = self._seal(session, batch)
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
            # The batch's event first (the rows point at it), then the events the decisions brought.
            seq = append_many(session, [committed, *(event for p in batch for event in p.events)]).first_seq
            # slate and context go in as the canonical JSON the digest covers, encoded once
            session.execute(
                insert(DecisionRecord.__table__),
                [p.row | {"slate": EncodedJson(p.slate_json.decode()), "context": EncodedJson(p.context_json.decode()), "batch_seq": seq} for p in batch],
            )
        if len(self._filed) > _MAX_FILED:
            self._filed.clear()
        self._filed.update(filed)  # only once committed
        return seq

    def _seal(self, session: Session, batch: list[_Pending]) -> list[str]:
        """Name each decision's subject by pseudonym and seal its slate and context under the subject's record key.

        Record keys are derived from the subjects' secrets (read in one query,
        with the pseudonyms) and filed for pseudonym readers the first time
        this writer meets a subject (:mod:`audits.sealing`). A decision given
        by pseudonym opens with the key filed for it; a pseudonym with none
        (erased since, or not one recgov issued) is sealed under a key kept
        nowhere. Anonymous decisions stay as they are. Returns the pseudonyms
        whose key this transaction filed.
        """
        raw_ids = [p.decision.subject_id for p in batch if p.decision.subject_id is not None]
        given = {p.subject for p in batch if p.decision.subject_id is None and p.subject is not None}
        if not raw_ids and not given:
            return []
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
        return filed


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
