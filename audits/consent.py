"""Consent history: an append-only record of every grant, refusal, withdrawal and objection.

Each :func:`record_consent` appends one row to ``consent_records`` and a
``consent.recorded`` trail event naming the subject by pseudonym, in the caller's
transaction. Rows are never changed: a withdrawal is a new row. The state in force
for a purpose is its latest record; records with the same time are ordered so
that the most restrictive wins (``withdrawn`` > ``denied`` > ``objected`` >
``opted_out`` > ``granted``), the rule :func:`governance.consent.state.effective_state`
applies, so the answer never depends on the order rows were read in.

Erasure and the consent history
-------------------------------
The database refuses UPDATE and DELETE on ``consent_records`` (triggers, as on the
trail), with no exception for erasure. Erasing a subject is crypto-shredding
(:func:`audits.shred_subject`): its secret is deleted, so its rows stay under a
pseudonym that nothing links to the person any more, and a later
:func:`audits.pseudonym` call gives a new pseudonym with an empty history. Why:

* the history is the proof that processing had a lawful basis (GDPR Art. 7(1)),
  which a controller may keep for legal claims (Art. 17(3)(e)); deleting it would
  also orphan the ``consent.recorded`` events, which stay in the trail anyway;
* one mechanism erases a subject everywhere (trail, consent, requests, decisions),
  and no code path needs the right to delete from an append-only table;
* the rows carry no raw id (evidence is checked for it), and the evidence, free
  text that may still name the person in a spelling no check recognises (upper
  case, inside a URL), is sealed under the subject's record key
  (:mod:`audits.sealing`), in the row and in its trail event alike: once the
  secret and that key are shredded the rows are unlinkable and the evidence
  unreadable. What stays readable is the ledger itself (purpose, status, lawful
  basis, source, jurisdiction, time), the proof that processing had a basis.

A shredded subject who comes back starts with no records, so an earlier
opt-out or objection would no longer apply to an ``opt_out`` purpose. The
erasure workflow therefore writes a suppression record (:mod:`audits.suppression`),
found by a keyed hash of the raw id rather than by pseudonym, and
:func:`consent_history` returns its restrictions beside the records.

Reading
-------
:func:`consent_history` and :func:`effective_consent` read one subject (and never
create a pseudonym secret); :func:`read_consent_history` is the same history for
a read-only snapshot (the serving path: it never writes, and runs a few
prebuilt core statements instead of ORM queries); :func:`consent_states` reads the state of many
subjects in one query for training-time filtering, and
:func:`lookup_pseudonyms` maps raw ids to pseudonyms in bulk for it.

Importing in bulk
-----------------
:func:`append_consent_batch` (:mod:`audits.consent_import`) appends many
records at once, for a consent history brought from another system: the same
rows, sealed the same way, but one ``consent.imported`` trail event anchors a
whole batch (the records point at it), and an import key per record makes a
second import of the same rows add nothing.
"""

from __future__ import annotations

import pickle
import threading
import weakref
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from audits._common import actor_name, aware, in_values, json_object, lookup_pseudonyms, one_of, subject_text
from audits.consent_import import BatchOutcome, append_consent_batch
from audits.models import (
    CONSENT_RESTRICTIVENESS,
    CONSENT_SOURCES,
    CONSENT_STATUSES,
    LAWFUL_BASES,
    ConsentRecordRow,
    SubjectSecret,
    Suppression,
)
from audits.sealing import find_record_keys, is_sealed, open_evidence, seal_evidence
from audits.subjects import (
    _installation_key,
    _lookup,
    _pseudonym,
    _subject_bytes,
    checked_installation_key,
    reading_installation_key,
    record_key,
    subject_record_key,
)
from audits.suppression import _lookup as _suppression_lookup
from audits.suppression import suppression_as_records, suppression_records
from audits.online_store import invalidate_subjects_after_commit
from audits.trail import NewEvent, append_event, format_time
from recommender.errors import ConfigError, DataError

__all__ = [
    "MAX_CACHED_SUBJECTS",
    "BatchOutcome",
    "ConsentReadCache",
    "ConsentState",
    "append_consent_batch",
    "consent_entry",
    "consent_history",
    "consent_states",
    "effective_consent",
    "lookup_pseudonyms",
    "read_consent_history",
    "read_consent_state",
    "consent_read_cache",
    "record_consent",
]


def consent_entry(
    who: str,
    key: bytes,
    *,
    purpose: str,
    status: str,
    lawful_basis: str,
    source: str,
    evidence: Mapping[str, Any],
    jurisdiction: str | None,
    recorded_at: datetime,
    actor: str | None,
) -> tuple[NewEvent, dict[str, Any]]:
    """A checked consent record of pseudonym ``who`` as stored: its ``consent.recorded`` trail event and its row's
    fields but ``trail_seq`` (the event's seq), the evidence sealed under ``key`` (the subject's record key).

    The one place both :func:`record_consent` and the decision log's writer (which appends a batch's
    records with its decisions, :mod:`audits.consent_write`) build a record from.
    """
    sealed = seal_evidence(key, who, evidence)  # the same token in the trail event and the row
    event = NewEvent(
        actor=actor_name(actor),
        action="consent.recorded",
        subject=who,
        objects={"purpose": purpose},
        payload={
            "status": status,
            "lawful_basis": lawful_basis,
            "source": source,
            "jurisdiction": jurisdiction,
            "evidence": sealed,
            "recorded_at": format_time(recorded_at),
        },
    )
    fields = {
        "subject": who,
        "jurisdiction": jurisdiction,
        "purpose": purpose,
        "status": status,
        "lawful_basis": lawful_basis,
        "source": source,
        "evidence": sealed,
        "recorded_at": recorded_at,
    }
    return event, fields


def record_consent(
    session: Session,
    *,
    subject_id: str | int,
    purpose: str,
    status: str,
    lawful_basis: str,
    source: str,
    evidence: Mapping[str, Any] | None = None,
    jurisdiction: str | None = None,
    at: datetime | None = None,
    actor: str | None = None,
    vocabulary: Collection[str] = (),
) -> ConsentRecordRow:
    """Append a consent record for ``subject_id`` (stored only as its pseudonym).

    Parameters
    ----------
    purpose, jurisdiction
        Stored in clear (in the row and its trail event), so refused when they carry the subject's raw id,
        unless a word of ``vocabulary`` (the pack's purposes: the pack's word, not the person's, even for a
        subject whose id is ``personalization``).
    status
        ``granted``, ``denied``, ``withdrawn``, ``opted_out`` or ``objected``.
    lawful_basis
        ``consent``, ``legitimate_interest`` or ``contract``: the basis the record was given under.
    source
        ``api``, ``banner``, ``tcf``, ``gpc`` or ``import``.
    evidence
        What proves it (GDPR Art. 7(1)): a TC string, the GPC header, the banner
        version. Refused if it carries the subject's raw id or an identifier key
        such as ``user_id``.
    at
        When it happened (default now); aware, and not in the future (a future
        grant would outrank every later withdrawal).

    Example
    -------
    >>> with store.session() as session:                                 # doctest: +SKIP
    ...     record_consent(session, subject_id="user-42", purpose="personalization",
    ...                    status="granted", lawful_basis="consent", source="banner",
    ...                    evidence={"banner_version": "2024-05"}, jurisdiction="EU")
    """
    vocabulary = frozenset(vocabulary)
    purpose = subject_text(purpose, "purpose", 100, subject_id=subject_id, vocabulary=vocabulary)
    status = one_of(status, CONSENT_STATUSES, "status")
    lawful_basis = one_of(lawful_basis, LAWFUL_BASES, "lawful_basis")
    source = one_of(source, CONSENT_SOURCES, "source")
    if jurisdiction is not None:
        jurisdiction = subject_text(jurisdiction, "jurisdiction", 32, subject_id=subject_id, vocabulary=vocabulary)
    recorded_at = aware(at, "at", not_after_now=True)
    evidence = json_object(evidence, "evidence", subject_ids=[subject_id])
    who, key = subject_record_key(session, subject_id)
    event, fields = consent_entry(
        who, key, purpose=purpose, status=status, lawful_basis=lawful_basis, source=source, evidence=evidence,
        jurisdiction=jurisdiction, recorded_at=recorded_at, actor=actor,
    )  # fmt: skip
    appended = append_event(session, actor=event.actor, action=event.action, subject=event.subject, objects=event.objects, payload=event.payload)
    row = ConsentRecordRow(**fields, trail_seq=appended.seq)
    session.add(row)
    session.flush()
    # The online store's lists were made under the old consent (a withdrawal also holds new ones back a while).
    invalidate_subjects_after_commit(session, [subject_id], hold=status != "granted")
    set_committed_value(row, "evidence", evidence)  # the caller reads what it wrote; the row holds it sealed
    return row


def _order_key(record: dict[str, Any]) -> tuple[datetime, int, int]:
    return (record["recorded_at"], CONSENT_RESTRICTIVENESS[record["status"]], record["id"])


def consent_history(
    session: Session, subject_id: str | int, *, include_suppressions: bool = True
) -> list[dict[str, Any]]:
    """Every consent record of the subject, oldest first (ties: least restrictive first).

    Each record is a dict: ``id``, ``purpose``, ``status``, ``lawful_basis``,
    ``source``, ``evidence``, ``jurisdiction``, ``recorded_at`` (aware UTC
    datetime) and ``trail_seq``; the fields of
    :class:`governance.consent.state.ConsentRecord` (``time`` is ``recorded_at``).

    With ``include_suppressions`` (default), the restrictions an erasure kept
    (opt-outs, objections, refusals, withdrawals; :mod:`audits.suppression`) come too, as records at the
    erasure time with ``id`` 0 and source ``import``: this is the history
    serving decides on, so a suppressed subject who comes back under a new
    pseudonym is still not profiled for those purposes, until they record a
    later grant. A subject never seen, or shredded, has only those.
    """
    key = _installation_key(session)  # checked against the store once, for both lookups
    raw = _subject_bytes(subject_id)
    suppressed = suppression_records(session, subject_id, key=key) if include_suppressions else []
    return sorted([*_records_of(session, key, raw), *suppressed], key=_order_key)


# Built once: a statement's cache key is then computed once, not on every execution.
_SECRET_OF = select(SubjectSecret.secret).where(SubjectSecret.lookup == bindparam("lookup"))
_RECORDS_OF = select(
    ConsentRecordRow.id,
    ConsentRecordRow.purpose,
    ConsentRecordRow.status,
    ConsentRecordRow.lawful_basis,
    ConsentRecordRow.source,
    ConsentRecordRow.evidence,
    ConsentRecordRow.jurisdiction,
    ConsentRecordRow.recorded_at,
    ConsentRecordRow.trail_seq,
).where(ConsentRecordRow.subject == bindparam("subject"))
_RECORD_FIELDS = ("id", "purpose", "status", "lawful_basis", "source", "evidence", "jurisdiction", "recorded_at", "trail_seq")
_LATEST_SUPPRESSION = (
    select(Suppression.id, Suppression.denied, Suppression.erased_at, Suppression.trail_seq)
    .where(Suppression.lookup == bindparam("suppression"))  # named as in _STATE_VERSION: the two read together
    .order_by(Suppression.id.desc())
    .limit(1)
)


def _records_of(bind: Session | Connection | Any, key: bytes, raw: bytes) -> list[dict[str, Any]]:
    """The subject's consent rows as dicts (none when it has no secret: never seen, or shredded)."""
    secret = bind.execute(_SECRET_OF, {"lookup": _lookup(key, raw)}).scalar_one_or_none()
    if secret is None:
        return []
    who = _pseudonym(secret, raw)
    records = [dict(zip(_RECORD_FIELDS, row, strict=True)) for row in bind.execute(_RECORDS_OF, {"subject": who})]
    _open_evidence(bind, key, who, record_key(secret), records)
    return records


def _open_evidence(bind: Any, key: bytes, who: str, derived: bytes, records: list[dict[str, Any]]) -> None:
    """Open each record's sealed evidence in place: with the key derived from the secret, else the one filed
    for the pseudonym (they differ only for a pseudonym whose key was filed before it was derived)."""
    filed: bytes | None = None
    for record in records:
        stored = record["evidence"]
        if not is_sealed(stored):
            continue
        opened = open_evidence(derived, who, stored)
        if opened is stored:
            if filed is None:
                filed = find_record_keys(bind, key, [who]).get(who, b"")
            opened = open_evidence(filed or None, who, stored)
        record["evidence"] = opened


def _suppressed_row(bind: Session | Connection | Any, key: bytes, raw: bytes) -> tuple[list[dict[str, Any]], int | None]:
    """The subject's latest suppression as consent records (:func:`audits.suppression.suppression_records`,
    one core statement; a test holds them equal) and its trail seq, the subject's latest erasure
    (:func:`governance.suppressed.erasure_seq` reads the same row); ``([], None)`` without one."""
    row = bind.execute(_LATEST_SUPPRESSION, {"suppression": _suppression_lookup(key, raw)}).one_or_none()
    if row is None:
        return [], None
    row_id, denied, erased_at, trail_seq = row
    return suppression_as_records(row_id, denied, erased_at, trail_seq), None if trail_seq is None else int(trail_seq)


def _suppressed_records(bind: Session | Connection | Any, key: bytes, raw: bytes) -> list[dict[str, Any]]:
    """:func:`audits.suppression.suppression_records` as one core statement (the same dicts; a test holds them equal)."""
    return _suppressed_row(bind, key, raw)[0]


def read_consent_history(bind: Connection | Session | Any, subject_id: str | int) -> list[dict[str, Any]]:
    """:func:`consent_history` (suppressions included) for a read-only transaction, e.g. ``Store.snapshot()``.

    ``bind``: a session, a connection, or any read-only snapshot answering
    ``execute(statement, params)`` like a connection and naming its ``engine``
    (``governance.api.reads.FastSnapshot``).

    The same records in the same order, read with three prebuilt core
    statements (the subject's secret, its consent rows, its latest suppression)
    and nothing written: a database that holds no installation key id yet is
    not keyed here (see :func:`audits.subjects.reading_installation_key`).
    Everything committed before the snapshot began is seen, so a withdrawal or
    an erasure holds from the next request on.
    """
    key = reading_installation_key(bind)
    raw = _subject_bytes(subject_id)
    return sorted([*_records_of(bind, key, raw), *_suppressed_records(bind, key, raw)], key=_order_key)


# -- the serving path's cached read -------------------------------------------------------------
MAX_CACHED_SUBJECTS = 65_536
"""Subjects whose consent state a serving process keeps (least recently served dropped first): about
a kilobyte each, so tens of megabytes, whatever the number of subjects in the store."""

# The version of one subject's consent state, in ONE statement of three index lookups: its secret
# (gone when shredded, another when it came back), the number of its consent rows, the number of its
# suppression rows. Both tables are append-only (triggers refuse UPDATE and DELETE), so within a
# secret a count names one set of rows: the same count is the same rows, a new record or
# suppression committed by any process (this one, the CLI, another worker) raises it. A count,
# not max(id): PostgreSQL hands out ids before commit, so a smaller id may commit after a larger one.
_STATE_VERSION = select(
    select(SubjectSecret.secret).where(SubjectSecret.lookup == bindparam("lookup")).scalar_subquery(),
    select(func.count()).select_from(ConsentRecordRow).where(ConsentRecordRow.subject == bindparam("subject")).scalar_subquery(),
    select(func.count()).select_from(Suppression).where(Suppression.lookup == bindparam("suppression")).scalar_subquery(),
)


@dataclass(frozen=True, slots=True)
class ConsentState:
    """A subject's consent as a served list needs it: the history (:func:`read_consent_history`) and their latest erasure."""

    records: bytes
    """The consent records and suppression restrictions, oldest first, pickled: the cache holds tens of thousands of
    states, and as bytes they are one object each that the garbage collector never walks (a collection's pause is
    a served list's latency). Read them with :meth:`history`."""
    erasure_seq: int | None
    """The trail seq of the subject's latest erasure (:func:`governance.suppressed.erasure_seq`), None if never erased."""

    @classmethod
    def of(cls, history: list[dict[str, Any]], erasure_seq: int | None) -> ConsentState:
        """The state of a history read from the store (this process's own data: pickled, never from outside)."""
        return cls(pickle.dumps(history, protocol=pickle.HIGHEST_PROTOCOL), erasure_seq)

    def history(self) -> list[dict[str, Any]]:
        """The records as :func:`read_consent_history` returns them: fresh dicts the caller may change."""
        return pickle.loads(self.records)  # noqa: S301 - bytes this process pickled itself


class ConsentReadCache:
    """Consent states of recently served subjects, each checked against the store by one query per read.

    A hit costs the version statement (:data:`_STATE_VERSION`: three index lookups in one round
    trip) instead of three reads, the opening of sealed evidence and the records' decoding; a miss
    costs the version statement more than an uncached read. Nothing is trusted across requests
    without that check, so every change committed before the request's snapshot began (a grant, a
    withdrawal, a GPC opt-out, a suppression, an erasure's shredding), by whatever process, is seen
    by it. Only read-only snapshots may use it (a write transaction's own uncommitted rows would be
    counted, then rolled back). Thread-safe.
    """

    def __init__(self, max_subjects: int = MAX_CACHED_SUBJECTS) -> None:
        if isinstance(max_subjects, bool) or not isinstance(max_subjects, int) or max_subjects < 1:
            raise ConfigError(f"max_subjects must be a positive integer; got {max_subjects!r}")
        self.max_subjects = max_subjects
        self._entries: OrderedDict[tuple[bytes, bytes], tuple[tuple[Any, int, int], str, ConsentState]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def version_read(self, engine: Any, subject_id: str | int) -> tuple[Any, dict[str, str]] | None:
        """The statement and parameters :meth:`read` will begin with for ``subject_id`` as the cache stands now,
        for a snapshot to send ahead (:mod:`governance.api.reads`); None when they cannot be told without reading
        the store (the installation key not yet checked against it), or when :meth:`read` would refuse (an
        unreadable key, a subject id that is not one): it raises that in its turn, after whatever the caller
        checks first."""
        found = self._entry_of(engine, subject_id)
        if found is None:
            return None
        key, raw, entry = found
        return _STATE_VERSION, _version_parameters(key, raw, entry[1] if entry is not None else "")

    def refresh_reads(self, engine: Any, subject_id: str | int, version: Sequence[Any]) -> tuple[list[tuple[Any, dict[str, str]]], tuple[Any, ...]] | None:
        """The reads :meth:`read` makes beyond :meth:`version_read`'s when that read found ``version``, for a second
        statement to read together (:mod:`governance.api.awaited_reads`), and the statements among them to read
        whole (several rows); ``([], ())`` when the state is cached and unchanged; None when it cannot be told.

        They are the version counted under the pseudonym of the secret ``version`` names (again: the state kept is
        counted as of the statement that reads it), the subject's consent records and latest suppression. The two
        statements are two snapshots: :meth:`read` given both keeps nothing read across them but the secret, and
        checks it (a secret changed between them is read again, which a second statement did not answer)."""
        found = self._entry_of(engine, subject_id)
        if found is None:
            return None
        key, raw, entry = found
        if entry is not None and entry[0] == tuple(version):
            return [], ()
        secret = version[0]
        who = _pseudonym(secret, raw) if secret is not None else ""
        reads: list[tuple[Any, dict[str, str]]] = [(_STATE_VERSION, _version_parameters(key, raw, who))]
        if secret is not None:
            reads.append((_RECORDS_OF, {"subject": who}))
        reads.append((_LATEST_SUPPRESSION, {"suppression": _suppression_lookup(key, raw)}))
        return reads, (_RECORDS_OF,)

    def _entry_of(self, engine: Any, subject_id: str | int) -> tuple[bytes, bytes, Any] | None:
        """The installation key, the subject's bytes and their entry (None: not cached), reading no database;
        None when the key is not yet checked or the key or the subject id cannot be read."""
        try:
            key = checked_installation_key(engine)
            raw = _subject_bytes(subject_id)
        except (ConfigError, DataError):
            return None
        if key is None:
            return None
        with self._lock:
            return key, raw, self._entries.get((key, raw))

    def read(self, bind: Connection | Any, subject_id: str | int) -> ConsentState:
        """The subject's consent state as of ``bind``'s read-only snapshot (cached when unchanged)."""
        key = reading_installation_key(bind)
        raw = _subject_bytes(subject_id)
        entry_key = (key, raw)
        with self._lock:
            entry = self._entries.get(entry_key)
        pseudonym = entry[1] if entry is not None else ""
        parameters = _version_parameters(key, raw, pseudonym)
        version = tuple(bind.execute(_STATE_VERSION, parameters).one())
        if entry is not None and entry[0] == version:
            with self._lock:
                self.hits += 1
                if entry_key in self._entries:
                    self._entries.move_to_end(entry_key)
            return entry[2]
        secret = version[0]
        state, who = _read_state(bind, key, raw, secret)
        while who != pseudonym:  # the counted rows were another pseudonym's: count this one's (same snapshot)
            version = tuple(bind.execute(_STATE_VERSION, {**parameters, "subject": who}).one())
            if version[0] == secret:
                break
            # Another secret: never within one snapshot, but a snapshot answered by two statements read apart
            # (refresh_reads) may see a shredding between them. The state is read again under the new secret, so
            # what is kept is one state and its own version.
            secret, pseudonym = version[0], who
            state, who = _read_state(bind, key, raw, secret)
        with self._lock:
            self.misses += 1
            self._entries[entry_key] = (version, who, state)
            self._entries.move_to_end(entry_key)
            while len(self._entries) > self.max_subjects:
                self._entries.popitem(last=False)
        return state

    def forget(self, engine: Any, subject_id: str | int) -> None:
        """Forget one subject whose state this process has just changed (its next read goes to the store at once,
        without a version read that could only show the change)."""
        found = self._entry_of(engine, subject_id)
        if found is not None and found[2] is not None:
            with self._lock:
                self._entries.pop((found[0], found[1]), None)

    def clear(self) -> None:
        """Forget every subject (the next read of each goes to the store)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def _version_parameters(key: bytes, raw: bytes, pseudonym: str) -> dict[str, str]:
    """:data:`_STATE_VERSION`'s parameters for the subject ``raw`` (``pseudonym``: theirs as cached, "" without one)."""
    return {"lookup": _lookup(key, raw), "subject": pseudonym, "suppression": _suppression_lookup(key, raw)}


def _read_state(bind: Any, key: bytes, raw: bytes, secret: str | None) -> tuple[ConsentState, str]:
    """The subject's state read uncached (``secret``: theirs, as read in the same snapshot), and their pseudonym ("" without one)."""
    records: list[dict[str, Any]] = []
    who = ""
    if secret is not None:
        who = _pseudonym(secret, raw)
        records = [dict(zip(_RECORD_FIELDS, row, strict=True)) for row in bind.execute(_RECORDS_OF, {"subject": who})]
        _open_evidence(bind, key, who, record_key(secret), records)
    suppressed, erased = _suppressed_row(bind, key, raw)
    history = sorted([*records, *suppressed], key=_order_key)
    return ConsentState.of(history, erased), who


_CACHES: weakref.WeakKeyDictionary[Any, ConsentReadCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def consent_read_cache(engine: Any) -> ConsentReadCache:
    """The serving process's consent cache for one store's engine (made at the first use)."""
    with _CACHES_LOCK:
        cache = _CACHES.get(engine)
        if cache is None:
            cache = _CACHES[engine] = ConsentReadCache()
        return cache


def read_consent_state(bind: Connection | Any, subject_id: str | int, *, cached: bool = True) -> ConsentState:
    """A subject's consent history and latest erasure for a served list, from a READ-ONLY snapshot.

    The same history as :func:`read_consent_history` and the same erasure as
    :func:`governance.suppressed.erasure_seq` (one read of the suppression row
    for both). ``cached``: through the engine's :class:`ConsentReadCache`, which
    checks each subject's version in the same snapshot (see there); False
    reads everything.
    """
    if cached:
        return consent_read_cache(bind.engine).read(bind, subject_id)
    key = reading_installation_key(bind)
    raw = _subject_bytes(subject_id)
    secret = bind.execute(_SECRET_OF, {"lookup": _lookup(key, raw)}).scalar_one_or_none()
    return _read_state(bind, key, raw, secret)[0]


def effective_consent(session: Session, subject_id: str | int) -> dict[str, dict[str, Any]]:
    """The record in force per purpose (sorted by purpose): the latest; at equal times the most restrictive."""
    latest: dict[str, dict[str, Any]] = {}
    for record in consent_history(session, subject_id):  # oldest first: later ones replace
        latest[record["purpose"]] = record
    return dict(sorted(latest.items()))


def _ranked_records() -> Any:
    """Every consent record with its rank among its subject's records of its purpose (1: the one in force)."""
    table = ConsentRecordRow
    restrictiveness = case(
        {status: rank for status, rank in CONSENT_RESTRICTIVENESS.items()}, value=table.status, else_=-1
    )
    rank = (
        func.row_number()
        .over(
            partition_by=(table.subject, table.purpose),
            order_by=(table.recorded_at.desc(), restrictiveness.desc(), table.id.desc()),
        )
        .label("rank")
    )
    return select(table.subject, table.purpose, table.status, rank)


def consent_state_counts(session: Session, left_out: Any) -> tuple[dict[str, dict[str, int]], int]:
    """What :func:`consent_states` would give, counted in the database: subjects per purpose and status in force,
    leaving out the subjects ``left_out`` (a subquery of pseudonyms, no NULL among them) selects; and how many of
    those left out have records. No subject is read into the process."""
    ranked = _ranked_records().subquery()
    in_force = ranked.c.rank == 1
    per_status = session.execute(
        select(ranked.c.purpose, ranked.c.status, func.count())
        .where(in_force, ranked.c.subject.not_in(left_out))
        .group_by(ranked.c.purpose, ranked.c.status)
        .order_by(ranked.c.purpose, ranked.c.status)
    ).all()
    out: dict[str, dict[str, int]] = {}
    for purpose, status, n in per_status:
        out.setdefault(purpose, {})[status] = int(n)
    with_records = session.scalar(
        select(func.count(func.distinct(ranked.c.subject))).where(in_force, ranked.c.subject.in_(left_out))
    )
    return out, int(with_records or 0)


def consent_states(session: Session, pseudonyms: list[str] | None = None) -> dict[str, dict[str, str]]:
    """The status in force per purpose for many subjects, in ONE query.

    For training-time filtering: ``{pseudonym: {purpose: status}}`` for every
    subject in ``pseudonyms`` that has records (all subjects when None). The
    database picks the latest record per (subject, purpose) with a window
    function; the list of pseudonyms goes in as one parameter, however long.
    Map raw ids to pseudonyms first with :func:`lookup_pseudonyms`.

    Example
    -------
    >>> with store.session() as session:                                 # doctest: +SKIP
    ...     who = lookup_pseudonyms(session, user_ids)
    ...     states = consent_states(session, [p for p in who.values() if p])
    ...     allowed = {u for u, p in who.items() if states.get(p, {}).get("personalization") == "granted"}
    """
    inner = _ranked_records()
    if pseudonyms is not None:
        if not pseudonyms:
            return {}
        inner = inner.where(in_values(session, ConsentRecordRow.subject, list(pseudonyms)))
    ranked = inner.subquery()
    query = select(ranked.c.subject, ranked.c.purpose, ranked.c.status).where(ranked.c.rank == 1)
    states: dict[str, dict[str, str]] = {}
    for subject, purpose, status in session.execute(query):
        per_subject = states.get(subject)
        if per_subject is None:
            states[subject] = {purpose: status}
        else:
            per_subject[purpose] = status
    return states
