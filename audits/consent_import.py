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

The work splits in two: :func:`prepare_consent_batch` reads nothing from the
store (lookups, the secrets offered and nonces drawn, and, as if every subject
were new, the pseudonyms, import keys, sealed evidence, digests and record
rows), so an importer can run it for the next batch in another thread while
:func:`write_prepared_batch` writes this one. The writer uses what was worked
out ahead only when the store filed every secret and record key offered;
otherwise it works the rest out from the store's answers, as
:func:`append_consent_batch` does, and the stored rows are the same.

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
from dataclasses import asdict, dataclass, field
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
from audits.sealing import _NONCE_BYTES, find_record_keys, sealed_evidence_texts
from audits.subjects import (
    _installation_key,
    _serving_installation_key,
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
    "PreparedBatch",
    "append_consent_batch",
    "import_key",
    "import_keys_digest",
    "record_digest",
    "prepare_consent_batch",
    "records_digest",
    "write_prepared_batch",
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


def _copy_rows(
    session: Session, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]], tail: tuple[Any, ...] = ()
) -> None:
    """Append ``rows``, each followed by the values of ``tail``, to ``table`` (no conflict expected: a duplicate key
    fails the whole batch)."""
    if not rows:
        return
    names = ", ".join(f'"{c}"' for c in columns)
    if _postgres(session):
        with _driver(session).cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            write = copy.write_row
            for row in rows:
                write(row + tail)
        return
    cursor = _driver(session).cursor()
    try:
        cursor.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})",
            (row + tail for row in rows) if tail else rows,
        )
    finally:
        cursor.close()


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


def _random_bytes(count: int) -> bytes:
    """``count`` bytes of the system's random source: every secret offered and every nonce of a batch comes from here."""
    return os.urandom(count)


@dataclass(slots=True)
class _Keyed:
    """What the subjects' secrets give a batch: pseudonyms, record keys and import keys (one secret per subject)."""

    unique_pseudonyms: list[str]
    derived_keys: list[bytes]
    pseudonyms: list[str]
    keys: list[str]
    first_of: dict[str, int]
    """Each distinct import key and the first row that has it (a row repeated within the batch counts once)."""


@dataclass(slots=True)
class _Fresh:
    """The rows to append (the import keys not stored yet), in index order, and what filing their record keys needs."""

    rows: list[int]
    plaintexts: list[bytes | None]
    needed: list[int]
    """The subjects (codes) of those rows, each once: the record keys to file."""
    key_lookups: list[str]
    """:func:`audits.subjects.record_key_lookup` of each needed subject's pseudonym."""


@dataclass(slots=True)
class _Sealed:
    """The appended rows' stored evidence, content digests and record tuples (all but the anchoring event's seq)."""

    evidence: list[str]
    records: list[tuple[Any, ...]]
    ordered_keys: list[str]
    payload: dict[str, Any]
    restricted: set[str]
    others: set[str]


@dataclass(slots=True)
class PreparedBatch:
    """A batch's share of the work that reads nothing from the store (:func:`prepare_consent_batch`).

    Besides the per-row values that never depend on the store (the subjects'
    lookups under the installation key, the times, the random secrets offered
    and nonces drawn), it holds what the batch writes if every subject is new
    to the store: the secrets offered are then the ones filed, so the
    pseudonyms, import keys, sealed evidence and digests follow from them.
    :func:`write_prepared_batch` uses that only when the store's answers say
    so (every secret offered and every record key was filed), and otherwise
    works it out again from what the store holds, as a batch that was not
    prepared ahead.
    """

    batch: pd.DataFrame
    vocabulary: frozenset[str]
    installation_key: bytes
    postgres: bool
    codes: list[int] = field(default_factory=list)
    unique_ids: list[Any] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)
    offered: dict[str, str] = field(default_factory=dict)
    """Each distinct lookup and the fresh secret (hex) offered for it."""
    nonces: bytes = b""
    """One evidence nonce per row of the batch, by row (a row's ciphertext is made once whatever the key)."""
    iso: list[str] = field(default_factory=list)
    purposes: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)
    jurisdictions: list[str | None] = field(default_factory=list)
    new_keyed: _Keyed | None = None
    new_fresh: _Fresh | None = None
    new_sealed: _Sealed | None = None


def prepare_consent_batch(
    batch: pd.DataFrame,
    *,
    postgres: bool,
    vocabulary: Collection[str] = (),
    installation_key: bytes | None = None,
    as_if_new: bool = True,
) -> PreparedBatch:
    """The store-independent work of :func:`append_consent_batch` for ``batch`` (for a PostgreSQL store if
    ``postgres``); safe to run in another thread while an earlier batch is written: it reads nothing from the
    store and writes nothing anywhere. ``installation_key``: by default the one this process serves with
    (:func:`write_prepared_batch` checks it against the store's). ``as_if_new``: also work out what the batch
    writes if all its subjects are new to the store (see :class:`PreparedBatch`); without, the writer works
    everything after the secrets out from the store's answers.

    Raises as :func:`append_consent_batch` would for a batch whose purpose or jurisdiction carries a subject id.
    """
    if installation_key is None:
        installation_key = _serving_installation_key()
    prepared = PreparedBatch(batch, frozenset(vocabulary), installation_key, postgres)
    if batch.empty:
        return prepared
    _refuse_ids_in_clear(batch, prepared.vocabulary)
    # Plain lists and integer codes from here on: per-row work through pandas' string arrays costs more than the work.
    codes_array, uniques = pd.factorize(batch["subject"], sort=False)
    prepared.codes = codes_array.tolist()
    prepared.unique_ids = uniques.tolist()
    prepared.raw = [s.encode() if type(s) is str and s else _subject_bytes(s) for s in prepared.unique_ids]  # as _subject_bytes
    prepared.lookups = lookups_of(installation_key, prepared.raw)
    distinct = list(dict.fromkeys(prepared.lookups))  # 7 and "7" are one subject
    fresh = _random_bytes(32 * len(distinct)).hex()
    prepared.offered = {lookup: fresh[64 * n : 64 * (n + 1)] for n, lookup in enumerate(distinct)}
    prepared.nonces = _random_bytes(_NONCE_BYTES * len(batch))
    prepared.iso = np.datetime_as_string(batch["recorded_at"].to_numpy(dtype="datetime64[us]"), unit="us").tolist()
    prepared.purposes, prepared.statuses, prepared.sources = (
        batch["purpose"].tolist(), batch["status"].tolist(), batch["source"].tolist()
    )  # fmt: skip
    prepared.bases = batch["lawful_basis"].tolist()
    prepared.jurisdictions = batch["jurisdiction"].astype(object).where(batch["jurisdiction"].notna(), None).tolist()
    if not as_if_new:
        return prepared
    # Ahead of the store's answers: as if every subject were new (a first import's case).
    keyed = prepared.new_keyed = _keyed(prepared, [prepared.offered[lookup] for lookup in prepared.lookups])
    try:
        fresh_rows = _fresh(prepared, keyed, set())
    except ValueError:
        return prepared  # the guard refuses this batch's evidence; said again where the batch is written
    prepared.new_fresh = fresh_rows
    if fresh_rows.rows:
        filed = {keyed.unique_pseudonyms[c]: keyed.derived_keys[c] for c in fresh_rows.needed}
        prepared.new_sealed = _sealed(prepared, keyed, fresh_rows, filed)
    return prepared


def _keyed(prepared: PreparedBatch, secrets_hex: list[str]) -> _Keyed:
    unique_pseudonyms, derived_keys = pseudonyms_and_record_keys(secrets_hex, prepared.raw)
    pseudonyms = [unique_pseudonyms[c] for c in prepared.codes]
    keys = _import_keys(pseudonyms, prepared.purposes, prepared.statuses, prepared.iso, prepared.sources)
    first_of: dict[str, int] = {}
    for row, key in enumerate(keys):
        first_of.setdefault(key, row)  # a row repeated within the batch counts once
    return _Keyed(unique_pseudonyms, derived_keys, pseudonyms, keys, first_of)


def _fresh(prepared: PreparedBatch, keyed: _Keyed, known: set[str]) -> _Fresh:
    fresh = [row for key, row in keyed.first_of.items() if key not in known]
    if not fresh:
        return _Fresh([], [], [], [])
    fresh.sort(key=keyed.pseudonyms.__getitem__)  # in index order; stable, so a subject's rows keep file order
    plaintexts = _evidence_plaintexts(prepared.batch["subject"].tolist(), prepared.batch["evidence"].tolist(), fresh)  # may refuse all
    codes = prepared.codes
    needed = list(dict.fromkeys(codes[row] for row in fresh))
    key_lookups = record_key_lookups_of(prepared.installation_key, [keyed.unique_pseudonyms[c] for c in needed])
    return _Fresh(fresh, plaintexts, needed, key_lookups)


def _sealed(prepared: PreparedBatch, keyed: _Keyed, fresh: _Fresh, filed: Mapping[str, bytes]) -> _Sealed:
    rows = fresh.rows
    pseudonyms, keys, nonces, size = keyed.pseudonyms, keyed.keys, prepared.nonces, _NONCE_BYTES
    added_keys = [keys[row] for row in rows]
    row_pseudonyms = [pseudonyms[row] for row in rows]
    evidence = sealed_evidence_texts(
        [filed[p] for p in row_pseudonyms], row_pseudonyms, fresh.plaintexts,
        nonces=b"".join([nonces[row * size : (row + 1) * size] for row in rows]),
    )  # fmt: skip
    jurisdictions, bases, purposes, statuses, sources = (
        prepared.jurisdictions, prepared.bases, prepared.purposes, prepared.statuses, prepared.sources
    )  # fmt: skip
    content = [
        record_digest(key, bases[row], jurisdictions[row], _evidence_token(sealed))
        for key, row, sealed in zip(added_keys, rows, evidence, strict=True)
    ]
    ordered_keys = sorted(added_keys)  # the digest's order, and the key order the index is written in
    payload = {
        "rows": len(prepared.batch),
        "added": len(rows),
        "by_status": dict(sorted(Counter(statuses[row] for row in rows).items())),
        "import_keys_sha256": import_keys_digest(ordered_keys),  # sorted already: the sort inside is one pass
        "records_sha256": records_digest(content),
    }
    named = [str(s) for s in prepared.unique_ids]  # per row through the pandas Index: about 2 us a row
    codes = prepared.codes
    restricted = {named[codes[row]] for row in rows if statuses[row] != "granted"}
    others = {named[codes[row]] for row in rows} - restricted
    suffix, separator = ("+00", "T") if prepared.postgres else ("", " ")
    iso = prepared.iso
    records = [
        (pseudonym, jurisdictions[row], purposes[row], statuses[row], bases[row], sources[row], sealed,
         iso[row].replace("T", separator) + suffix)
        for row, pseudonym, sealed in zip(rows, row_pseudonyms, evidence, strict=True)
    ]  # fmt: skip
    return _Sealed(evidence, records, ordered_keys, payload, restricted, others)


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

    The same as :func:`prepare_consent_batch` then :func:`write_prepared_batch`.
    """
    if batch.empty:
        return BatchOutcome(trail_seq=None, rows=0, added=0, already_recorded=0)
    prepared = prepare_consent_batch(
        batch, installation_key=_installation_key(session), postgres=_postgres(session), vocabulary=vocabulary, as_if_new=False
    )
    return write_prepared_batch(session, prepared, anchor=anchor, actor=actor)


def write_prepared_batch(
    session: Session, prepared: PreparedBatch, *, anchor: Mapping[str, Any], actor: str | None = None
) -> BatchOutcome:
    """Write a batch prepared by :func:`prepare_consent_batch` in the caller's transaction (see :func:`append_consent_batch`).

    What was worked out ahead is used only where the store agrees with it: the
    secrets offered were all filed (every subject new), and so were the record
    keys; otherwise the rest follows from what the store holds, as it would
    have without preparing ahead. The stored rows and the trail event are the
    same either way.
    """
    batch = prepared.batch
    if batch.empty:
        return BatchOutcome(trail_seq=None, rows=0, added=0, already_recorded=0)
    installation_key = _installation_key(session)
    if installation_key != prepared.installation_key or _postgres(session) != prepared.postgres:
        prepared = prepare_consent_batch(  # the key changed since (or another store): nothing ahead is of use
            batch, installation_key=installation_key, postgres=_postgres(session), vocabulary=prepared.vocabulary, as_if_new=False
        )
    hold_head_for_keys(session)  # before reading or filing any record key, as erasure expects
    offered, lookups = prepared.offered, prepared.lookups
    if _insert_new_secrets(session, list(offered.items()), datetime.now(UTC)) == len(offered):
        # Every subject new: the secrets offered are theirs, and no import key of theirs can exist yet.
        keyed = prepared.new_keyed or _keyed(prepared, [offered[lookup] for lookup in lookups])
        fresh = prepared.new_fresh if keyed is prepared.new_keyed else None
        known: set[str] = set()
    else:  # some subject had a secret (filed before, or by another writer meanwhile): it wins
        found = _fetch_secrets(session, list(offered))
        codes = prepared.codes
        created = [found[lookup] == offered[lookup] for lookup in lookups]
        keyed = _keyed(prepared, [found[lookup] for lookup in lookups])
        known = _known_keys(session, [key for key, row in keyed.first_of.items() if not created[codes[row]]])
        fresh = None
    if fresh is None:
        fresh = _fresh(prepared, keyed, known)  # may refuse all (the guard)
    already = len(keyed.keys) - len(fresh.rows)
    if not fresh.rows:
        return BatchOutcome(trail_seq=None, rows=len(batch), added=0, already_recorded=already)
    derived = [keyed.derived_keys[c] for c in fresh.needed]
    pseudonyms = [keyed.unique_pseudonyms[c] for c in fresh.needed]
    rows = [(lookup, k.hex()) for lookup, k in zip(fresh.key_lookups, derived, strict=True)]
    sealed = prepared.new_sealed if keyed is prepared.new_keyed and fresh is prepared.new_fresh else None
    if _insert_new_secrets(session, rows, datetime.now(UTC)) != len(rows):
        sealed = None  # a record key filed before wins over the derived one
        filed = find_record_keys(session, installation_key, pseudonyms)
    else:
        filed = dict(zip(pseudonyms, derived, strict=True))
    if sealed is None:
        sealed = _sealed(prepared, keyed, fresh, filed)
    payload = dict(sealed.payload)
    event = append_event(
        session,
        actor=actor_name(actor),
        action=IMPORT_ACTION,
        payload={
            **anchor,
            "rows": payload.pop("rows"),
            "added": payload.pop("added"),
            "already_recorded": already,
            **payload,
        },
    )
    # Their cached lists were made under the old consent; a refusal or withdrawal also holds new ones back a while.
    invalidate_subjects_after_commit(session, sealed.restricted, hold=True)
    invalidate_subjects_after_commit(session, sealed.others)
    seq = event.seq
    _copy_rows(session, "consent_records", _RECORD_COLUMNS, sealed.records, tail=(seq,))
    _copy_rows(session, "consent_import_keys", ("key", "trail_seq"), [(k, seq) for k in sealed.ordered_keys])
    return BatchOutcome(trail_seq=seq, rows=len(batch), added=len(fresh.rows), already_recorded=already)


_RECORD_COLUMNS = ("subject", "jurisdiction", "purpose", "status", "lawful_basis", "source", "evidence", "recorded_at", "trail_seq")
