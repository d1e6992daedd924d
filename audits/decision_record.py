"""One decision record: its fields, its validation, its canonical encoding and the batch digest.

One typed record crosses the seam between serving and the store: a
:class:`Decision` (a frozen dataclass) is built once by the serving path and
handed to :meth:`audits.decisions.DecisionLog.submit`; the log validates it in the caller's
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

Validation (:func:`_prepare`) runs in the caller's thread: a bad record raises
there, before it can join a batch; the slate and context are encoded once, as
the canonical JSON (RFC 8785) that is both stored and covered by the batch
digest (:func:`batch_digest`; the writer's :func:`_fast_digest` gives the same
bytes from the parts encoded here).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from audits._common import aware, canonical_object, one_of, text
from audits.canonical import canonical_json
from audits.consent_write import ConsentWrite
from audits.models import DECISION_MODES
from audits.trail import NewEvent, _encode, format_time
from recommender.errors import DataError

__all__ = ["DECISION_FIELDS", "Decision", "DecisionReceipt", "batch_digest"]

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
_PSEUDONYM = re.compile(r"[0-9a-f]{64}")


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
    consent_records: tuple[tuple[int, int], ...] = ()
    """The consent records committed with the decision (``consent`` of :meth:`DecisionLog.submit
    <audits.decisions.DecisionLog.submit>`), in order, as ``(record id, trail seq)``."""


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
    consent: tuple[ConsentWrite, ...] = ()
    """Consent records of the decision's subject, written in the same transaction before the record."""
    recorded: tuple[tuple[int, int], ...] = ()
    """``(record id, trail seq)`` of each of ``consent`` once written (set by the writer)."""

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
    record: Decision | Mapping[str, Any],
    future: Future[DecisionReceipt] | None,
    events: tuple[NewEvent, ...] = (),
    consent: tuple[ConsentWrite, ...] = (),
) -> _Pending:
    """Validate a decision record (and the trail events and consent records it brings) in the caller's thread;
    encode its JSON parts once."""
    given = record if isinstance(record, Decision) else Decision.from_mapping(record)
    if consent:
        if given.subject_id is None:
            raise DataError("consent records go with a decision only when it names its subject by raw id ('subject_id')")
        consent = tuple(write.checked(given.subject_id) for write in consent)  # a bad record fails here, not its batch
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
    logging = slate.get("logging")
    if logging is not None:
        kind = logging.get("policy", {}).get("kind") if isinstance(logging, dict) and isinstance(logging.get("policy"), dict) else None
        probability = logging.get("slate_probability") if isinstance(logging, dict) else None
        if not isinstance(kind, str) or not isinstance(probability, int | float) or not 0 < probability <= 1:
            raise DataError("slate 'logging' must say the logging policy ('policy': {'kind': ...}) and the slate's probability in (0, 1]")
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
    return _Pending(decision, future, slate_json, context_json, tuple(events), subject, consent)
