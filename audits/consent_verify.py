"""Consent records and suppressions held against the trail events that recorded them.

``consent_records`` and ``suppressions`` are append-only by triggers only: whoever
can drop a trigger can turn a withdrawal into a grant, or delete an opt-out that
erasure kept, and the hash chain of the trail would still verify. Each row,
though, was written in the same transaction as a trail event that says what it
held:

* a record of :func:`audits.record_consent` (``consent.recorded``, one event a
  record): the event names the subject's pseudonym, the purpose (``objects``)
  and, in its payload, the status, lawful basis, source, jurisdiction, time and
  the sealed evidence token: the row must say the same;
* a record of a bulk import (``consent.imported``, one event a batch,
  :mod:`audits.consent_import`): the event counts the batch's records
  (``added``, ``by_status``) and digests their import keys (pseudonym, purpose,
  status, time and source: ``import_keys_sha256``) and, for batches imported
  since the digest existed, their whole content (``records_sha256``: lawful
  basis, jurisdiction and evidence too): the rows must give the same counts and
  digests;
* a suppression (``subject.suppressed``): the event holds the denied purposes
  (status and basis) and the erasure time: the row must say the same. The row's
  lookup, the keyed hash of the raw id, is deliberately in no event; a row
  written since bindings exist carries one (HMAC of its lookup and event number
  under the installation key, :func:`audits.suppression.suppression_binding`)
  and its event says ``bound: true``: a bound event's row without a binding is a
  finding, and where the installation key is at hand (the installation's own
  ``recgov trail verify``, its API and checkpoints) a row whose lookup no longer
  matches its binding (moved to another subject) is one too. Without the key
  (a copy of the database alone) the bindings cannot be recomputed.

Every row must name such an event, and every such event must keep its rows: a
row changed, added or deleted is a finding. :func:`verify_consent_records` and
:func:`verify_suppressions` run within :func:`audits.verify.verify_store`.

Cost: one pass over ``consent_records`` in pages of its primary key, joined to
each row's event by the trail's primary key, and one scan of the trail's
``consent.recorded`` sequence numbers; per row a few string comparisons and, for
an imported row, two SHA-256; no query per row. Memory: 64 bytes per imported
record (its two digests, kept until its batch is checked) and 8 bytes per
single record (its event's number).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection

from audits.canonical import canonical_json
from audits.consent_import import IMPORT_ACTION, _KEY_DOMAIN, import_keys_digest, record_digest, records_digest
from audits.sealing import is_sealed
from recommender.errors import ConfigError

__all__ = ["MAX_PROBLEMS", "RECORDED_ACTION", "SUPPRESSED_ACTION", "verify_consent_records", "verify_suppressions"]

RECORDED_ACTION = "consent.recorded"
SUPPRESSED_ACTION = "subject.suppressed"
MAX_PROBLEMS = 20
"""Problems reported one by one per table; past them, one more problem counts the rest."""
PAGE = 20_000

# SQL that reads a time column as a trail time string (YYYY-MM-DDTHH:MM:SS.ffffffZ), per dialect: the stored text
# is compared as stored (SQLite keeps naive UTC text with microseconds), so any rewrite of it shows.
_TIME_SQL = {
    "sqlite": "replace({column}, ' ', 'T') || 'Z'",
    "postgresql": "to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
}
_JSON_SQL = {"sqlite": "{column}", "postgresql": "{column}::text"}


class _Problems:
    """At most :data:`MAX_PROBLEMS` problems one by one, then a count of the rest."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.more = 0

    def add(self, problem: dict[str, Any]) -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(problem)
        else:
            self.more += 1

    def done(self, what: str) -> list[dict[str, Any]]:
        if self.more:
            return [*self.items, {"problem": f"and {self.more} more {what} problems like these"}]
        return self.items


@dataclass
class _Batch:
    """One import batch as read back: its records' count, statuses and digests."""

    count: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    keys: bytearray = field(default_factory=bytearray)
    content: bytearray = field(default_factory=bytearray)


def _driver_rows(connection: Connection, sql: str, *, page: int = PAGE) -> Iterator[list[tuple[Any, ...]]]:
    """Pages of ``sql`` (whose first column is the key it is paged by, ``{after}`` and ``{limit}`` its markers)."""
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    statement = sql.format(after=marker, limit=marker)
    raw = connection.connection.driver_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        last = 0
        while True:
            cursor.execute(statement, (last, page))
            rows = cursor.fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1][0]
            if len(rows) < page:
                return
    finally:
        cursor.close()


def _evidence_token(evidence: Any) -> str | None:
    """What a record's stored evidence digests as: its sealed token, the canonical JSON of evidence kept in the
    clear, or None for none."""
    if is_sealed(evidence):
        return str(evidence["sealed"])
    return canonical_json(evidence).decode() if evidence else None


def _loads(text: Any) -> Any:
    try:
        return orjson.loads(text) if isinstance(text, (str, bytes)) else text
    except orjson.JSONDecodeError:
        return None


def verify_consent_records(connection: Connection) -> list[dict[str, Any]]:
    """Check every consent record against the trail event that recorded it; return the problems (empty: intact).

    A problem is ``{"record": id, "seq": trail seq, "problem": ...}`` for a record that differs from its
    ``consent.recorded`` event (or names no consent event, or repeats another's), ``{"seq": ..., "problem": ...}``
    for an event whose record is gone, and ``{"batch_seq": ..., "problem": ...}`` for an import batch whose
    records no longer give its counts or digests. ``connection``: a snapshot of the store.
    """
    dialect = connection.dialect.name
    time_sql = _TIME_SQL.get(dialect, _TIME_SQL["sqlite"]).format(column="c.recorded_at")
    evidence_sql = _JSON_SQL.get(dialect, "{column}").format(column="c.evidence")
    imported = {
        int(seq): orjson.loads(payload)
        for seq, payload in connection.exec_driver_sql(
            "SELECT seq, payload FROM trail_events WHERE action = " + ("?" if connection.dialect.paramstyle == "qmark" else "%s"),
            (IMPORT_ACTION,),
        )
    }
    sql = (
        f"SELECT c.id, c.trail_seq, c.subject, c.purpose, c.status, c.lawful_basis, c.source, c.jurisdiction, "
        f"{evidence_sql}, {time_sql}, t.action, t.subject, "
        f"CASE WHEN t.action = '{RECORDED_ACTION}' THEN t.objects END, CASE WHEN t.action = '{RECORDED_ACTION}' THEN t.payload END "
        "FROM consent_records c LEFT JOIN trail_events t ON t.seq = c.trail_seq "
        "WHERE c.id > {after} ORDER BY c.id LIMIT {limit}"
    )
    problems = _Problems()
    batches: dict[int, _Batch] = {}
    single = array("q")
    head = _KEY_DOMAIN + "\x00"
    sha256 = hashlib.sha256
    for rows in _driver_rows(connection, sql):
        for row_id, seq, subject, purpose, status, basis, source, jurisdiction, evidence_text, at, action, who, objects, payload in rows:
            if action == RECORDED_ACTION:
                single.append(int(seq))
                event = _loads(payload)
                if not isinstance(event, dict):
                    problems.add({"record": row_id, "seq": seq, "problem": "its consent.recorded event holds no payload that parses"})
                    continue
                differs = [
                    name
                    for name, stored, recorded in (
                        ("subject", subject, who),
                        ("purpose", purpose, (_loads(objects) or {}).get("purpose")),
                        ("status", status, event.get("status")),
                        ("lawful_basis", basis, event.get("lawful_basis")),
                        ("source", source, event.get("source")),
                        ("jurisdiction", jurisdiction, event.get("jurisdiction")),
                        ("recorded_at", at, event.get("recorded_at")),
                        ("evidence", _loads(evidence_text), event.get("evidence")),
                    )
                    if stored != recorded
                ]
                if differs:
                    changed = ", ".join(
                        f"{name} {status!r} (the trail recorded {event.get('status')!r})" if name == "status" else name
                        for name in differs
                    )
                    problems.add({"record": row_id, "seq": seq, "problem": f"the record differs from its consent.recorded event: {changed} (changed)"})
            elif seq is not None and int(seq) in imported:
                batch = batches.get(int(seq))
                if batch is None:
                    batch = batches[int(seq)] = _Batch()
                batch.count += 1
                batch.statuses[status] += 1
                key = sha256(f"{head}{subject}\x00{purpose}\x00{status}\x00{str(at)[:-1]}+00:00\x00{source}".encode()).hexdigest()
                batch.keys += bytes.fromhex(key)
                if "records_sha256" in imported[int(seq)]:
                    batch.content += record_digest(key, basis, jurisdiction, _evidence_token(_loads(evidence_text)))
            else:
                named = "no trail event" if action is None else f"a {action} event, not a consent event"
                problems.add({"record": row_id, "seq": seq, "problem": f"the record names trail event {seq}, {named} (added or changed)"})
    for seq, payload in sorted(imported.items()):
        _check_batch(problems, seq, payload, batches.pop(seq, _Batch()))
    _check_events_kept(connection, problems, single)
    return problems.done("consent record")


def _check_batch(problems: _Problems, seq: int, payload: dict[str, Any], batch: _Batch) -> None:
    """An import batch's records against its event: count, statuses, import keys, content."""
    expected = int(payload.get("added", 0))
    if batch.count != expected:
        problems.add({"batch_seq": seq, "problem": f"the trail says {expected} imported records, {batch.count} are stored (added or deleted)"})
        return
    if dict(batch.statuses) != {k: int(v) for k, v in (payload.get("by_status") or {}).items()}:
        problems.add({"batch_seq": seq, "problem": f"the records' statuses {dict(sorted(batch.statuses.items()))} are not the trail's {payload.get('by_status')} (changed)"})
        return
    keys = bytes(batch.keys)
    hexes = sorted(keys[i : i + 32].hex() for i in range(0, len(keys), 32))
    if import_keys_digest(hexes) != payload.get("import_keys_sha256"):
        problems.add({"batch_seq": seq, "problem": "the records no longer match the batch's import_keys_sha256 (subject, purpose, status, time or source changed)"})
    elif "records_sha256" in payload and records_digest(bytes(batch.content)) != payload["records_sha256"]:
        problems.add({"batch_seq": seq, "problem": "the records no longer match the batch's records_sha256 (lawful basis, jurisdiction or evidence changed)"})


def _check_events_kept(connection: Connection, problems: _Problems, single: array) -> None:
    """Each ``consent.recorded`` event keeps exactly one record: none deleted, none repeated."""
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    events = np.fromiter(
        (int(seq) for (seq,) in connection.exec_driver_sql(f"SELECT seq FROM trail_events WHERE action = {marker}", (RECORDED_ACTION,))),
        dtype=np.int64,
    )
    seen = np.frombuffer(single, dtype=np.int64) if len(single) else np.empty(0, dtype=np.int64)
    values, counts = np.unique(seen, return_counts=True)
    for seq in values[counts > 1].tolist():
        problems.add({"seq": seq, "problem": f"{int(counts[values == seq][0])} records name this consent.recorded event; it recorded one (added)"})
    for seq in np.setdiff1d(events, values, assume_unique=True).tolist():
        problems.add({"seq": seq, "problem": "the consent.recorded event has no consent record any more (deleted)"})


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _binding_key(connection: Connection) -> tuple[bytes | None, str | None]:
    """The installation key to recompute suppression bindings with, or why there is none.

    ``(key, None)``: this machine holds the key the store was keyed with (read from the store itself, never from a
    process's cache). ``(None, None)``: no key is configured here (a copy of the database verified elsewhere): the
    bindings are not recomputed. ``(None, reason)``: a key is configured but cannot be used (refused, not the store's,
    or the store's key id is gone): a finding, or editing ``store_meta`` would switch the check off. Never creates a key.
    """
    from audits.keys import installation_key
    from audits.settings import get_settings
    from audits.subjects import _KEY_ID_DOMAIN, _META_KEY

    settings = get_settings()
    if settings.installation_key is None and not (settings.keys_dir / "installation.key").is_file():
        return None, None
    try:
        key = installation_key(settings)
    except (ConfigError, OSError) as err:
        return None, f"the installation key here cannot be used ({err})"
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    stored = connection.exec_driver_sql(f"SELECT value FROM store_meta WHERE key = {marker}", (_META_KEY,)).scalar_one_or_none()
    if stored is None:
        return None, "the store holds no installation key id any more"
    if stored != hashlib.sha256(_KEY_ID_DOMAIN + key).hexdigest()[:32]:
        return None, "the store's installation key id is not this installation's key"
    return key, None


def verify_suppressions(connection: Connection) -> list[dict[str, Any]]:
    """Check every suppression against its ``subject.suppressed`` event; return the problems (empty: intact).

    A problem is ``{"record": id, "seq": ..., "problem": ...}`` for a row that differs from its event or names
    none, and ``{"seq": ..., "problem": ...}`` for an event whose row is gone.
    """
    from audits.suppression import suppression_binding

    time_sql = _TIME_SQL.get(connection.dialect.name, _TIME_SQL["sqlite"]).format(column="s.erased_at")
    denied_sql = _JSON_SQL.get(connection.dialect.name, "{column}").format(column="s.denied")
    rows = connection.exec_driver_sql(
        f"SELECT s.id, s.trail_seq, {denied_sql}, {time_sql}, t.action, t.payload, s.lookup, s.binding "
        "FROM suppressions s LEFT JOIN trail_events t ON t.seq = s.trail_seq ORDER BY s.id"
    ).all()
    key, no_key = _binding_key(connection) if rows else (None, None)
    unchecked = 0
    problems = _Problems()
    kept: Counter[int] = Counter()
    for row_id, seq, denied, erased_at, action, payload, lookup, binding in rows:
        if action != SUPPRESSED_ACTION:
            named = "no trail event" if action is None else f"a {action} event, not a subject.suppressed event"
            problems.add({"record": row_id, "seq": seq, "problem": f"the suppression names trail event {seq}, {named} (added or changed)"})
            continue
        kept[int(seq)] += 1
        event = _loads(payload) or {}
        differs = [
            name
            for name, stored, recorded in (("denied", _loads(denied), event.get("denied")), ("erased_at", erased_at, event.get("erased_at")))
            if stored != recorded
        ]
        if differs:
            problems.add({"record": row_id, "seq": seq, "problem": f"the suppression differs from its subject.suppressed event: {', '.join(differs)} (changed)"})
        if event.get("bound") is True:
            if not binding:
                problems.add({"record": row_id, "seq": seq, "problem": "the suppression has lost the binding its subject.suppressed event says it was written with (changed)"})
            elif not (isinstance(binding, str) and _HEX64.fullmatch(binding) and isinstance(lookup, str) and _HEX64.fullmatch(lookup)):
                problems.add({"record": row_id, "seq": seq, "problem": "the suppression's lookup or binding is not 64 hex digits (changed)"})
            elif no_key is not None:
                unchecked += 1
            elif key is not None and not hmac.compare_digest(binding, suppression_binding(key, lookup, int(seq))):
                problems.add({"record": row_id, "seq": seq, "problem": "the suppression's lookup does not match its binding (moved to another subject, or the binding changed)"})
    if unchecked:
        problems.add({"problem": f"{unchecked} bound suppressions could not be held to their bindings: {no_key}"})
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    for (seq,) in connection.exec_driver_sql(f"SELECT seq FROM trail_events WHERE action = {marker} ORDER BY seq", (SUPPRESSED_ACTION,)):
        if kept[int(seq)] == 0:
            problems.add({"seq": int(seq), "problem": "the subject.suppressed event has no suppression any more (deleted: a restriction erasure kept is lost)"})
        elif kept[int(seq)] > 1:
            problems.add({"seq": int(seq), "problem": f"{kept[int(seq)]} suppressions name this subject.suppressed event; it recorded one (added)"})
    return problems.done("suppression")
