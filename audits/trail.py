"""The append-only, hash-chained audit trail.

Each event has a sequence number (1, 2, 3, ... without gaps), a UTC time, an
actor, an action, an optional subject pseudonym (see :mod:`audits.subjects`;
never a raw personal id), the ids of the objects it concerns (a JSON object:
``dataset``, ``model``, ``policy``, ``audit``, ``decision``, ...) and a JSON
payload. Its hash is ::

    sha256(b"recgov.trail.v1\\x00" + prev_hash.encode("ascii") + JCS(event))

where ``prev_hash`` is the previous event's hash as 64 hex digits (64 zeros
before the first event) and ``JCS(event)`` is the RFC 8785 canonical JSON of
``{"action", "actor", "objects", "payload", "seq", "subject", "time"}`` (see
:mod:`audits.canonical`). Changing, removing, inserting or reordering any event
breaks the chain from that point on; :mod:`audits.verify` finds where.

Appends are serialized: the writer locks the one-row ``trail_head`` table
(``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite every store transaction
starts with ``BEGIN IMMEDIATE``), numbers and chains its events, inserts them
and moves the head, all in the caller's transaction. If that transaction rolls
back, nothing of it remains.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from itertools import islice
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.orm import Session

from audits.canonical import canonical_json
from audits.models import TrailEvent, TrailHead
from recommender.errors import DataError

__all__ = [
    "GENESIS_HASH",
    "HASH_DOMAIN",
    "TIME_FORMAT",
    "NewEvent",
    "EventRecord",
    "AppendResult",
    "append_event",
    "append_many",
    "read_head",
    "lock_head",
    "event_message",
    "event_hash",
    "hash_event",
    "format_time",
]

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first event."""
HASH_DOMAIN = b"recgov.trail.v1\x00"
"""Prefix of every hashed event: a hash of anything else can never pass for an event's."""
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
"""Event times: UTC, microseconds, fixed width (sorts as text)."""

MAX_JSON_BYTES = 1 << 20
_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*")
_PSEUDONYM = re.compile(r"[0-9a-f]{64}")
_EVENT_FIELDS = frozenset({"actor", "action", "subject", "objects", "payload"})
_MESSAGE = b'{"action":%b,"actor":%b,"objects":%b,"payload":%b,"seq":%d,"subject":%b,"time":%b}'
_HASHED = HASH_DOMAIN + b"%b" + _MESSAGE  # domain, prev_hash, message: what the hash covers
_dumps = orjson.dumps

NOT_A_PSEUDONYM = (
    "subject must be a pseudonym (64 hex digits) from audits.pseudonym(session, subject_id), "
    "never a raw identifier; got {value!r}"
)
HEAD_MISMATCH = (
    "the trail head says seq {seq} with hash {head}... but the stored event {seq} {found}; "
    "the trail may have been tampered with: run `recgov trail verify`"
)


def format_time(moment: datetime) -> str:
    """``moment`` as a trail time string (UTC, microseconds, ``Z``)."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def event_message(
    seq: int, time: str, actor: str, action: str, subject: str | None, objects: str, payload: str
) -> bytes:
    """The canonical JSON of an event whose ``objects`` and ``payload`` are canonical JSON text."""
    return _MESSAGE % (
        _dumps(action),
        _dumps(actor),
        objects.encode(),
        payload.encode(),
        seq,
        _dumps(subject),
        _dumps(time),
    )


def event_hash(prev_hash: str, message: bytes) -> str:
    """The hash of an event (its canonical JSON ``message``) chained to ``prev_hash``."""
    return sha256(HASH_DOMAIN + prev_hash.encode() + message).hexdigest()


def hash_event(
    prev_hash: str, seq: int, time: str, actor: str, action: str, subject: str | None, objects: str, payload: str
) -> str:
    """:func:`event_hash` of :func:`event_message`, in one step (the fast path of appends and checks)."""
    return sha256(
        _HASHED
        % (
            prev_hash.encode(),
            _dumps(action),
            _dumps(actor),
            objects.encode(),
            payload.encode(),
            seq,
            _dumps(subject),
            _dumps(time),
        )
    ).hexdigest()


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. ``subject`` must be a pseudonym, never a raw id."""

    actor: str
    action: str
    subject: str | None = None
    objects: Mapping[str, Any] | None = None
    payload: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event as stored in the trail."""

    seq: int
    time: str
    actor: str
    action: str
    subject: str | None
    objects: dict[str, Any]
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What :func:`append_many` wrote: events ``first_seq`` to ``last_seq``."""

    first_seq: int
    last_seq: int
    head_hash: str
    records: list[EventRecord] = field(default_factory=list, repr=False)

    @property
    def count(self) -> int:
        """How many events were appended."""
        return self.last_seq - self.first_seq + 1


def _json_object(value: Mapping[str, Any] | None, name: str) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise DataError(f"event {name} must be a JSON object (a dict), got {type(value).__name__}")
    encoded = canonical_json(dict(value))
    if len(encoded) > MAX_JSON_BYTES:
        raise DataError(f"event {name} is {len(encoded)} bytes of JSON; the limit is {MAX_JSON_BYTES}")
    return encoded.decode()


def _encode(event: NewEvent | Mapping[str, Any]) -> tuple[str, str, str | None, str, str]:
    """Validate one event; return (actor, action, subject, objects JSON, payload JSON)."""
    if isinstance(event, Mapping):
        unknown = set(event) - _EVENT_FIELDS
        if unknown:
            raise DataError(f"unknown event fields {sorted(unknown)}; expected some of {sorted(_EVENT_FIELDS)}")
        if "actor" not in event or "action" not in event:
            raise DataError(f"an event needs an actor and an action; got fields {sorted(event)}")
        event = NewEvent(**event)
    elif not isinstance(event, NewEvent):
        raise DataError(f"expected a NewEvent or a dict, got {type(event).__name__}")
    actor, action, subject = event.actor, event.action, event.subject
    if not isinstance(actor, str) or not actor or len(actor) > 200 or not actor.isprintable():
        raise DataError(f"actor must be 1 to 200 printable characters, got {actor!r}")
    if not isinstance(action, str) or len(action) > 100 or not _ACTION.fullmatch(action):
        raise DataError(
            f"action must be dotted lowercase words like 'model.recorded' (at most 100 characters), got {action!r}"
        )
    if subject is not None and not (isinstance(subject, str) and _PSEUDONYM.fullmatch(subject)):
        raise DataError(NOT_A_PSEUDONYM.format(value=subject))
    return actor, action, subject, _json_object(event.objects, "objects"), _json_object(event.payload, "payload")


# Built once: every append runs these, and building a statement (and its cache key) per call costs
# more than the database's work for it.
_HEAD = select(TrailHead.seq, TrailHead.hash).where(TrailHead.id == 1)
_HEAD_LOCKED = _HEAD.with_for_update()
_EVENT_HASH = select(TrailEvent.hash).where(TrailEvent.seq == bindparam("seq"))
_INSERT_EVENTS = insert(TrailEvent.__table__)
_HEAD_TABLE = TrailHead.__table__
_MOVE_HEAD = update(_HEAD_TABLE).where(_HEAD_TABLE.c.id == 1).values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))


def read_head(session: Session | Connection, *, lock: bool = False) -> tuple[int, str]:
    """The trail head: (last sequence number, its hash); ``(0, GENESIS_HASH)`` when empty."""
    row = session.execute(_HEAD_LOCKED if lock else _HEAD).one_or_none()
    if row is None:
        raise DataError("the trail head row is missing; the store is damaged: run `recgov trail verify`")
    return int(row[0]), str(row[1])


def lock_head(session: Session | Connection) -> tuple[int, str]:
    """Lock the trail head until the transaction ends; return it after checking the last event matches.

    Raises
    ------
    DataError
        The head does not match the stored last event (the trail was tampered with).
    """
    seq, head = read_head(session, lock=True)
    if seq > 0:
        # A separate statement: under READ COMMITTED it sees the events committed before we got the lock
        # (a join inside the locking statement would not; PostgreSQL re-checks only the locked row).
        stored = session.execute(_EVENT_HASH, {"seq": seq}).scalar_one_or_none()
        if stored != head:
            found = "is missing" if stored is None else f"has hash {stored[:12]}..."
            raise DataError(HEAD_MISMATCH.format(seq=seq, head=head[:12], found=found))
    return seq, head


def append_many(
    session: Session | Connection,
    events: Iterable[NewEvent | Mapping[str, Any]],
    *,
    chunk_size: int = 1000,
    keep_records: bool = False,
) -> AppendResult:
    """Append ``events`` to the trail in the caller's transaction, in order.

    Events are validated, numbered, chained and inserted ``chunk_size`` at a
    time (one multi-row insert each, then the head moves). Nothing
    is visible to others before the caller commits, and a rollback (or a
    crash) leaves no trace of the batch.

    Parameters
    ----------
    session
        A session (or connection) of a :class:`~audits.db.Store`, inside a transaction.
    events
        :class:`NewEvent` objects or dicts with the same fields; any iterable,
        consumed lazily.
    keep_records
        Also return an :class:`EventRecord` for each appended event.

    Raises
    ------
    DataError
        An event is invalid (nothing of the batch is written if the caller
        rolls back, which ``Store.session()`` does), or the head does not match
        the last event.

    Example
    -------
    >>> with store.session() as session:                     # doctest: +SKIP
    ...     append_many(session, [NewEvent(actor="svc", action="decision.served")] * 100)
    AppendResult(first_seq=1, last_seq=100, ...)
    """
    if chunk_size < 1:
        raise DataError(f"chunk_size must be at least 1, got {chunk_size}")
    iterator = iter(events)
    seq = prev = None
    first_seq = 0
    records: list[EventRecord] = []
    while True:
        encoded = [_encode(event) for event in islice(iterator, chunk_size)]
        if not encoded:
            break
        if seq is None:
            seq, prev = lock_head(session)
            first_seq = seq + 1
        rows = []
        for actor, action, subject, objects, payload in encoded:
            seq += 1
            time = datetime.now(UTC).strftime(TIME_FORMAT)
            digest = hash_event(prev, seq, time, actor, action, subject, objects, payload)
            rows.append(
                {
                    "seq": seq,
                    "time": time,
                    "actor": actor,
                    "action": action,
                    "subject": subject,
                    "objects": objects,
                    "payload": payload,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
        session.execute(_INSERT_EVENTS, rows)
        # Move the head with every chunk: even a caller who catches an error in a later chunk
        # and commits anyway leaves a consistent chain (a prefix of the batch).
        session.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": prev})
        if keep_records:
            records.extend(_record(row) for row in rows)
    if seq is None:
        head_seq, head_hash = read_head(session)
        return AppendResult(first_seq=head_seq + 1, last_seq=head_seq, head_hash=head_hash)
    return AppendResult(first_seq=first_seq, last_seq=seq, head_hash=prev, records=records)


def _record(row: Mapping[str, Any]) -> EventRecord:
    return EventRecord(
        seq=row["seq"],
        time=row["time"],
        actor=row["actor"],
        action=row["action"],
        subject=row["subject"],
        objects=orjson.loads(row["objects"]),
        payload=orjson.loads(row["payload"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def append_event(
    session: Session | Connection,
    *,
    actor: str,
    action: str,
    subject: str | None = None,
    objects: Mapping[str, Any] | None = None,
    payload: Mapping[str, Any] | None = None,
) -> EventRecord:
    """Append one event in the caller's transaction and return it as stored.

    Example
    -------
    >>> with store.session() as session:                     # doctest: +SKIP
    ...     event = append_event(session, actor="gate", action="gate.passed",
    ...                          objects={"model": "3f2a..."}, payload={"checks": 12})
    """
    event = NewEvent(actor=actor, action=action, subject=subject, objects=objects, payload=payload)
    return append_many(session, [event], keep_records=True).records[0]
