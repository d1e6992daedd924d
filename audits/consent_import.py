"""Bulk consent: many checked consent records appended in one transaction, anchored on the trail once.

:func:`audits.record_consent` appends one record and one ``consent.recorded``
trail event per call: right for a banner click, far too slow for the consent
history of a million subjects. :func:`append_consent_batch` appends a batch of
records (already validated by the caller, see :mod:`governance.consent.imports`)
with a few bulk statements:

1. the subjects' secrets, pseudonyms and record keys, created in bulk where
   missing (the rows :func:`audits.subjects.subject_record_key` files for one
   subject: the secret under its lookup, the record key under its pseudonym's;
   a record key filed earlier wins), after taking the trail head's lock, as
   every writer of record keys does;
2. an import key per record (:func:`import_key`), a digest of the pseudonym,
   purpose, status, time and source: a record whose key is already in
   ``consent_import_keys`` (or earlier in the same batch) is skipped, so
   importing the same file twice adds nothing, and the table's primary key
   keeps two racing imports from both appending a row;
3. ONE trail event, ``consent.imported``, carrying the caller's anchor (the
   file's sha256, the batch's place in it), the counts, a digest of the
   added records' import keys (``import_keys_sha256``) and one of their whole
   content (``records_sha256``, :func:`record_digest`: the import key, lawful
   basis, jurisdiction and sealed evidence of each); it names no subject. Every
   record of the batch points at it (``trail_seq``), as a single record points
   at its own event, and :func:`audits.consent_verify.verify_consent_records`
   recomputes both digests from the stored rows;
4. the records, their evidence sealed under each subject's record key as
   :func:`audits.record_consent` seals it, then their import keys.

All of it happens in the caller's transaction: one batch is all or nothing.

How it stays fast at a million records
--------------------------------------
No ORM object and no per-row SQLAlchemy parameter processing: the keyed hashes
run in tight loops (:func:`audits.subjects.lookups_of` and its siblings), the
evidence is sealed in one pass (:func:`audits.sealing.sealed_evidence_texts`),
long lists of hex digests travel as one parameter, and rows go in through the
driver: SQLite's ``executemany`` in key order, PostgreSQL's ``COPY``. A secret
this batch created needs no read-back, nor its pseudonym an import-key lookup
(a fresh pseudonym has no keys); only when another writer filed the same
subject meanwhile (the insert reports fewer new rows) are they read back.

Why the table ``consent_import_keys`` is declared here
------------------------------------------------------
The table belongs to bulk imports only, so it lives beside the code that writes
it. :mod:`audits` imports this module (through :mod:`audits.consent`), so the
table is on ``Base.metadata`` whenever :mod:`audits.models` is imported, which
is what Alembic and the migration check read.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from audits._common import actor_name, holds_raw_id, refuse_raw_ids
from audits.canonical import canonical_json
from audits.models import Base
from audits.sealing import find_record_keys, sealed_evidence_texts
from audits.subjects import (
    _installation_key,
    _subject_bytes,
    hold_head_for_keys,
    lookups_of,
    pseudonyms_and_record_keys,
    record_key_lookups_of,
)
from audits.online_store import invalidate_subjects_after_commit
from audits.trail import append_event

__all__ = [
    "BATCH_COLUMNS",
    "IMPORT_ACTION",
    "BatchOutcome",
    "ConsentImportKey",
    "append_consent_batch",
    "import_key",
    "import_keys_digest",
    "record_digest",
    "records_digest",
]

IMPORT_ACTION = "consent.imported"
"""The trail action that anchors one batch of imported consent records."""
BATCH_COLUMNS = ("subject", "purpose", "status", "lawful_basis", "source", "jurisdiction", "recorded_at", "evidence")
"""The columns of a batch: ``recorded_at`` aware UTC timestamps, ``evidence`` dicts (or None), ``jurisdiction`` text or None."""
_KEY_DOMAIN = "recgov.consent-import.v1"


class ConsentImportKey(Base):
    """The import key of one consent record a bulk import appended (append-only; see the module docstring)."""

    __tablename__ = "consent_import_keys"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    """SHA-256 of the record's pseudonym, purpose, status, time and source (:func:`import_key`)."""
    trail_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    """The ``consent.imported`` event of the batch that appended the record (its records point at the same event)."""


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one batch appended: the anchoring event, how many records were added and how many were there already."""

    trail_seq: int | None
    """The ``consent.imported`` event (None when the batch added nothing: no event is written)."""
    rows: int
    added: int
    already_recorded: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def import_key(pseudonym: str, purpose: str, status: str, recorded_at: str, source: str) -> str:
    """The import key of a record: SHA-256 over its pseudonym, purpose, status, ISO time and source.

    Made from the pseudonym, never the raw id, so the key names no one; a
    subject erased and imported again gets a new pseudonym, hence new keys.
    """
    text = "\x00".join((_KEY_DOMAIN, pseudonym, purpose, status, recorded_at, source))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def import_keys_digest(keys: list[str]) -> str:
    """The ``import_keys_sha256`` of a batch: SHA-256 of its records' import keys, sorted, one a line."""
    return hashlib.sha256("\n".join(sorted(keys)).encode("ascii")).hexdigest()


def record_digest(key: str, lawful_basis: str, jurisdiction: str | None, evidence_token: str | None) -> bytes:
    """The 32-byte digest of one imported record's content: its import key (pseudonym, purpose, status, time,
    source), lawful basis, jurisdiction and sealed evidence token (None: no evidence)."""
    return hashlib.sha256(orjson.dumps([key, lawful_basis, jurisdiction, evidence_token])).digest()


def records_digest(digests: list[bytes] | bytes) -> str:
    """The ``records_sha256`` of a batch: SHA-256 over its records' :func:`record_digest`, sorted, concatenated.

    ``digests``: a list of 32-byte digests, or their concatenation in any order.
    """
    if isinstance(digests, (bytes, bytearray)):
        digests = [bytes(digests[i : i + 32]) for i in range(0, len(digests), 32)]
    return hashlib.sha256(b"".join(sorted(digests))).hexdigest()


_SEALED_HEAD = '{"sealed": "'


def _evidence_token(stored: str) -> str | None:
    """The token of an evidence as :func:`audits.sealing.sealed_evidence_texts` stores it (None for ``{}``).

    That text is ``{"sealed": "TOKEN"}`` exactly, and a token (a version prefix and base64) needs no escaping:
    the token is cut out of it rather than parsed (a JSON parse a record was a visible part of an import).
    """
    if stored == "{}":
        return None
    if stored.startswith(_SEALED_HEAD) and stored.endswith('"}') and '"' not in stored[len(_SEALED_HEAD) : -2]:
        return stored[len(_SEALED_HEAD) : -2]
    return orjson.loads(stored)["sealed"]


def _known_keys(session: Session, keys: list[str]) -> set[str]:
    """Which of these import keys are in ``consent_import_keys`` (one query)."""
    return {row[0] for row in _hex_in(session, 'SELECT "key" FROM consent_import_keys', '"key"', keys)}


# -- bulk statements: the driver's own executemany (SQLite) or COPY and array parameters (PostgreSQL) ------------
#
# SQLAlchemy's executemany processes every parameter of every row in Python (type decorators, JSON, dates) and
# builds a dict a row; at a million records that is most of the time. These write the same values as the ORM
# would store them (SQLite: naive UTC text "YYYY-MM-DD HH:MM:SS.ffffff" and JSON text; PostgreSQL: timestamptz
# and jsonb from their text forms), in the session's own transaction.

_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def _driver(session: Session) -> Any:
    """The DB-API connection under the session's current transaction."""
    return session.connection().connection.driver_connection


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _insert_new_secrets(session: Session, rows: list[tuple[str, str]], now: datetime) -> int:
    """File ``(lookup, secret)`` rows in ``subject_secrets`` unless filed already; how many were new."""
    if not rows:
        return 0
    if _postgres(session):  # hex digests only: two comma-joined texts, split by the server (see _hex_in)
        with _driver(session).cursor() as cursor:
            cursor.execute(
                "INSERT INTO subject_secrets (lookup, secret, created_at) "
                "SELECT l, s, %s FROM unnest(string_to_array(%s, ','), string_to_array(%s, ',')) AS t(l, s) "
                "ORDER BY l ON CONFLICT DO NOTHING",
                (now, ",".join(r[0] for r in rows), ",".join(r[1] for r in rows)),
            )
            return int(cursor.rowcount)
    stamp = now.astimezone(UTC).strftime(_SQLITE_TIME)
    cursor = _driver(session).cursor()
    try:
        cursor.executemany(  # in key order: each page of the index is visited once, not once per row
            "INSERT INTO subject_secrets (lookup, secret, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [(lookup, secret, stamp) for lookup, secret in sorted(rows)],
        )
        return int(cursor.rowcount)
    finally:
        cursor.close()


def _copy_rows(session: Session, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Append ``rows`` to ``table`` (no conflict expected: a duplicate key fails the whole batch)."""
    if not rows:
        return
    names = ", ".join(f'"{c}"' for c in columns)
    if _postgres(session):
        with _driver(session).cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    cursor = _driver(session).cursor()
    try:
        cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})", rows)
    finally:
        cursor.close()


def _subject_secrets(session: Session, subjects: list[bytes], key: bytes) -> tuple[list[str], np.ndarray]:
    """Each subject's secret (hex), created where missing, and which of them this call created.

    Insert first: a fresh secret is offered for every subject and the store
    keeps the ones it already has (``ON CONFLICT DO NOTHING``). When every
    offer was taken (a first import), that one statement is all; otherwise the
    secrets are read back in one query, and a subject counts as created only
    where the stored secret is the one offered (a secret filed before, or by
    another writer meanwhile, wins).
    """
    lookups = lookups_of(key, subjects)
    offered = list(dict.fromkeys(lookups))  # 7 and "7" are one subject
    fresh = os.urandom(32 * len(offered)).hex()
    ours = {lookup: fresh[64 * n : 64 * (n + 1)] for n, lookup in enumerate(offered)}
    if _insert_new_secrets(session, list(ours.items()), datetime.now(UTC)) == len(ours):
        return [ours[lookup] for lookup in lookups], np.ones(len(lookups), dtype=bool)
    found = _fetch_secrets(session, offered)
    created = np.fromiter((found[lookup] == ours[lookup] for lookup in lookups), dtype=bool, count=len(lookups))
    return [found[lookup] for lookup in lookups], created


def _fetch_secrets(session: Session, lookups: list[str]) -> dict[str, str]:
    return {lookup: secret for lookup, secret in _hex_in(session, "SELECT lookup, secret FROM subject_secrets", "lookup", lookups)}


def _hex_in(session: Session, query: str, column: str, values: list[str]) -> list[tuple[Any, ...]]:
    """The rows of ``query WHERE column IN values`` for a long list of hex digests, as ONE text parameter.

    Hex needs no quoting, so the list travels as one comma-joined string that
    the database splits (PostgreSQL ``string_to_array``; SQLite a JSON array
    through ``json_each``): a driver adapting fifty thousand values one by one
    costs more than the query.
    """
    if not values:
        return []
    if _postgres(session):
        with _driver(session).cursor() as cursor:
            cursor.execute(f"{query} WHERE {column} = ANY(string_to_array(%s, ','))", (",".join(values),))
            return cursor.fetchall()
    cursor = _driver(session).cursor()
    try:
        cursor.execute(f"{query} WHERE {column} IN (SELECT value FROM json_each(?))", (orjson.dumps(values).decode(),))
        return cursor.fetchall()
    finally:
        cursor.close()


def _filed_record_keys(session: Session, key: bytes, pseudonyms: list[str], derived: list[bytes]) -> dict[str, bytes]:
    """The record key readers find for each pseudonym: filed now from ``derived``, or the one filed before (it wins)."""
    lookups = record_key_lookups_of(key, pseudonyms)
    rows = [(lookup, k.hex()) for lookup, k in zip(lookups, derived, strict=True)]
    if _insert_new_secrets(session, rows, datetime.now(UTC)) == len(rows):
        return dict(zip(pseudonyms, derived, strict=True))
    return find_record_keys(session, key, pseudonyms)


def _import_keys(pseudonyms: list[str], purposes: list[str], statuses: list[str], iso_times: list[str], sources: list[str]) -> list[str]:
    """:func:`import_key` of every row, in one tight loop."""
    digest = hashlib.sha256
    head = _KEY_DOMAIN + "\x00"
    return [
        digest(f"{head}{p}\x00{purpose}\x00{status}\x00{t}+00:00\x00{source}".encode()).hexdigest()
        for p, purpose, status, t, source in zip(pseudonyms, purposes, statuses, iso_times, sources, strict=True)
    ]


def _evidence_plaintexts(subjects: list[Any], evidences: list[Any], rows: list[int]) -> list[bytes | None]:
    """The evidence of each of ``rows`` as canonical JSON (None when empty), after the raw-id guard.

    Rows of one file share evidence objects: each object is encoded once.
    """
    encoded: dict[int, tuple[bytes | None, str]] = {}
    out: list[bytes | None] = []
    for row in rows:
        evidence = evidences[row]
        entry = encoded.get(id(evidence))
        if entry is None:
            plain = dict(evidence) if evidence else {}
            entry = encoded[id(evidence)] = (canonical_json(plain) if plain else None, orjson.dumps(plain).decode().lower())
        if str(subjects[row]).lower() in entry[1]:  # a cheap screen; the guard itself says where, never the id
            refuse_raw_ids(evidences[row] or {}, field="evidence", subject_ids=[subjects[row]])
        out.append(entry[0])
    return out


def _refuse_ids_in_clear(batch: pd.DataFrame, vocabulary: Collection[str]) -> None:
    """Refuse a batch whose purpose or jurisdiction carries its row's subject id: both are stored in clear beside
    the pseudonym, and would outlive the erasure that shreds it (as :func:`audits.consent.record_consent` refuses)."""
    subjects = [str(s) for s in batch["subject"].tolist()]
    for field in ("purpose", "jurisdiction"):
        for subject, value in zip(subjects, batch[field].tolist(), strict=True):
            if type(value) is str and holds_raw_id(value, subject, vocabulary):
                refuse_raw_ids(value, field=field, subject_ids=[subject])


def append_consent_batch(
    session: Session, batch: pd.DataFrame, *, anchor: Mapping[str, Any], actor: str | None = None, vocabulary: Collection[str] = ()
) -> BatchOutcome:
    """Append a batch of validated consent records (columns :data:`BATCH_COLUMNS`), anchored by one trail event.

    ``anchor`` goes into the event's payload beside the counts (the file's
    sha256, the batch's number and lines): never a raw subject id, which the
    trail refuses anyway. Records already imported (same import key) are
    skipped and counted in ``already_recorded``. Runs in the caller's
    transaction.

    Cost: a handful of statements per batch whatever its size (the secrets
    found, those filed, the import keys already known, the record keys, the
    records, their import keys), and per row a few keyed hashes and one
    AES-GCM seal in tight loops; no ORM object. Import keys are looked up only
    for subjects that had a secret before the batch: a subject whose secret
    this batch made has a new pseudonym, so none of its keys can exist.
    """
    if batch.empty:
        return BatchOutcome(trail_seq=None, rows=0, added=0, already_recorded=0)
    _refuse_ids_in_clear(batch, frozenset(vocabulary))
    installation_key = _installation_key(session)
    hold_head_for_keys(session)  # before reading or filing any record key, as erasure expects
    # Plain lists and integer codes from here on: per-row work through pandas' string arrays costs more than the work.
    codes_array, uniques = pd.factorize(batch["subject"], sort=False)
    codes = codes_array.tolist()
    unique_ids = uniques.tolist()
    raw = [s.encode() if type(s) is str and s else _subject_bytes(s) for s in unique_ids]  # as _subject_bytes
    secrets_hex, created = _subject_secrets(session, raw, installation_key)
    unique_pseudonyms, derived_keys = pseudonyms_and_record_keys(secrets_hex, raw)
    pseudonyms = [unique_pseudonyms[c] for c in codes]
    iso = np.datetime_as_string(batch["recorded_at"].to_numpy(dtype="datetime64[us]"), unit="us").tolist()
    purposes, statuses, sources = batch["purpose"].tolist(), batch["status"].tolist(), batch["source"].tolist()
    keys = _import_keys(pseudonyms, purposes, statuses, iso, sources)
    first_of: dict[str, int] = {}
    for row, key in enumerate(keys):
        first_of.setdefault(key, row)  # a row repeated within the batch counts once
    created_codes = created.tolist()
    known = _known_keys(session, [key for key, row in first_of.items() if not created_codes[codes[row]]])
    fresh = [row for key, row in first_of.items() if key not in known]
    already = len(keys) - len(fresh)
    if not fresh:
        return BatchOutcome(trail_seq=None, rows=len(batch), added=0, already_recorded=already)
    fresh.sort(key=pseudonyms.__getitem__)  # in index order; stable, so a subject's rows keep file order
    plaintexts = _evidence_plaintexts(batch["subject"].tolist(), batch["evidence"].tolist(), fresh)  # may refuse all
    needed = list(dict.fromkeys(codes[row] for row in fresh))
    filed = _filed_record_keys(
        session, installation_key, [unique_pseudonyms[c] for c in needed], [derived_keys[c] for c in needed]
    )
    added_keys = [keys[row] for row in fresh]
    row_pseudonyms = [pseudonyms[row] for row in fresh]
    evidence = sealed_evidence_texts([filed[p] for p in row_pseudonyms], row_pseudonyms, plaintexts)
    jurisdictions = batch["jurisdiction"].astype(object).where(batch["jurisdiction"].notna(), None).tolist()
    bases = batch["lawful_basis"].tolist()
    content = [
        record_digest(key, bases[row], jurisdictions[row], _evidence_token(sealed))
        for key, row, sealed in zip(added_keys, fresh, evidence, strict=True)
    ]
    ordered_keys = sorted(added_keys)  # the digest's order, and the key order the index is written in
    event = append_event(
        session,
        actor=actor_name(actor),
        action=IMPORT_ACTION,
        payload={
            **anchor,
            "rows": len(batch),
            "added": len(fresh),
            "already_recorded": already,
            "by_status": dict(sorted(Counter(statuses[row] for row in fresh).items())),
            "import_keys_sha256": import_keys_digest(ordered_keys),  # sorted already: the sort inside is one pass
            "records_sha256": records_digest(content),
        },
    )
    # Their cached lists were made under the old consent; a refusal or withdrawal also holds new ones back a while.
    named = [str(s) for s in unique_ids]  # per row through the pandas Index: about 2 us a row
    restricted = {named[codes[row]] for row in fresh if statuses[row] != "granted"}
    invalidate_subjects_after_commit(session, restricted, hold=True)
    invalidate_subjects_after_commit(session, {named[codes[row]] for row in fresh} - restricted)
    suffix, separator = ("+00", "T") if _postgres(session) else ("", " ")
    seq = event.seq
    records = [
        (pseudonym, jurisdictions[row], purposes[row], statuses[row], bases[row], sources[row], sealed,
         iso[row].replace("T", separator) + suffix, seq)
        for row, pseudonym, sealed in zip(fresh, row_pseudonyms, evidence, strict=True)
    ]  # fmt: skip
    _copy_rows(session, "consent_records", _RECORD_COLUMNS, records)
    _copy_rows(session, "consent_import_keys", ("key", "trail_seq"), [(k, seq) for k in ordered_keys])
    return BatchOutcome(trail_seq=seq, rows=len(batch), added=len(fresh), already_recorded=already)


_RECORD_COLUMNS = ("subject", "jurisdiction", "purpose", "status", "lawful_basis", "source", "evidence", "recorded_at", "trail_seq")
