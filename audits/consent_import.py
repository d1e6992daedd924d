"""Bulk consent: many checked consent records appended in one transaction, anchored on the trail once.

:func:`audits.record_consent` appends one record and one ``consent.recorded``
trail event per call: right for a banner click, far too slow for the consent
history of a million subjects. :func:`append_consent_batch` appends a batch of
records (already validated by the caller, see :mod:`governance.consent.imports`)
with a few bulk statements:

1. the subjects' pseudonyms and record keys, created in bulk where missing
   (:func:`audits._common.lookup_subject_secrets`, :func:`audits.sealing.file_record_keys`),
   after taking the trail head's lock, as every writer of record keys does;
2. an import key per record (:func:`import_key`), a digest of the pseudonym,
   purpose, status, time and source: a record whose key is already in
   ``consent_import_keys`` (or earlier in the same batch) is skipped, so
   importing the same file twice adds nothing, and the table's primary key
   keeps two racing imports from both appending a row;
3. ONE trail event, ``consent.imported``, carrying the caller's anchor (the
   file's sha256, the batch's place in it), the counts, and a digest of the
   added records' import keys; it names no subject. Every record of the batch
   points at it (``trail_seq``), as a single record points at its own event;
4. the records, their evidence sealed under each subject's record key as
   :func:`audits.record_consent` seals it, then their import keys.

All of it happens in the caller's transaction: one batch is all or nothing.

Why the table ``consent_import_keys`` is declared here
------------------------------------------------------
The table belongs to bulk imports only, so it lives beside the code that writes
it. :mod:`audits` imports this module (through :mod:`audits.consent`), so the
table is on ``Base.metadata`` whenever :mod:`audits.models` is imported, which
is what Alembic and the migration check read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import pandas as pd
from sqlalchemy import BigInteger, Integer, String, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from audits._common import actor_name, in_values, lookup_subject_secrets, refuse_raw_ids
from audits.models import Base, ConsentRecordRow
from audits.sealing import file_record_keys, seal_evidence
from audits.subjects import _installation_key, hold_head_for_keys, record_key
from audits.trail import append_event

__all__ = ["BATCH_COLUMNS", "IMPORT_ACTION", "BatchOutcome", "ConsentImportKey", "append_consent_batch", "import_key"]

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


def _known_keys(session: Session, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    query = select(ConsentImportKey.key).where(in_values(session, ConsentImportKey.key, keys))
    return set(session.scalars(query))


def _with_keys(session: Session, batch: pd.DataFrame, installation_key: bytes) -> tuple[pd.DataFrame, dict[str, str]]:
    """The batch with each row's pseudonym and import key; and each subject's secret, by pseudonym."""
    found = lookup_subject_secrets(session, batch["subject"].unique().tolist(), create=True, key=installation_key)
    subjects = batch["subject"].to_numpy(dtype=object)
    pseudonyms = [found[s][0] for s in subjects]  # type: ignore[index]
    times = batch["recorded_at"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00").tolist()
    keys = [
        import_key(p, purpose, status, t, source)
        for p, purpose, status, t, source in zip(
            pseudonyms, batch["purpose"].tolist(), batch["status"].tolist(), times, batch["source"].tolist(), strict=True
        )
    ]
    secrets = {pair[0]: pair[1] for pair in found.values() if pair is not None}
    return batch.assign(pseudonym=pseudonyms, import_key=keys), secrets


def _record_rows(fresh: pd.DataFrame, record_keys: Mapping[str, bytes], trail_seq: int) -> list[dict[str, Any]]:
    """The ``consent_records`` rows of the fresh records, evidence sealed under each subject's record key."""
    rows = []
    encoded: dict[int, str] = {}  # rows of one file share evidence objects: each is encoded once
    for row in fresh.itertuples(index=False):
        evidence = row.evidence or {}
        text = encoded.get(id(evidence))
        if text is None:
            text = encoded[id(evidence)] = orjson.dumps(evidence).decode().lower()
        if str(row.subject).lower() in text:  # a cheap screen; the guard itself says where, never the id
            refuse_raw_ids(evidence, field="evidence", subject_ids=[row.subject])
        rows.append(
            {
                "subject": row.pseudonym,
                "jurisdiction": row.jurisdiction,
                "purpose": row.purpose,
                "status": row.status,
                "lawful_basis": row.lawful_basis,
                "source": row.source,
                "evidence": seal_evidence(record_keys[row.pseudonym], row.pseudonym, evidence),
                "recorded_at": row.recorded_at.to_pydatetime(),
                "trail_seq": trail_seq,
            }
        )
    return rows


def append_consent_batch(
    session: Session, batch: pd.DataFrame, *, anchor: Mapping[str, Any], actor: str | None = None
) -> BatchOutcome:
    """Append a batch of validated consent records (columns :data:`BATCH_COLUMNS`), anchored by one trail event.

    ``anchor`` goes into the event's payload beside the counts (the file's
    sha256, the batch's number and lines): never a raw subject id, which the
    trail refuses anyway. Records already imported (same import key) are
    skipped and counted in ``already_recorded``. Runs in the caller's
    transaction.
    """
    if batch.empty:
        return BatchOutcome(trail_seq=None, rows=0, added=0, already_recorded=0)
    installation_key = _installation_key(session)
    hold_head_for_keys(session)  # before reading or filing any record key, as erasure expects
    keyed, secrets = _with_keys(session, batch, installation_key)
    unique = keyed.drop_duplicates("import_key")
    known = _known_keys(session, unique["import_key"].tolist())
    fresh = unique[~unique["import_key"].isin(known)]
    already = len(keyed) - len(fresh)
    if fresh.empty:
        return BatchOutcome(trail_seq=None, rows=len(batch), added=0, already_recorded=already)
    needed = fresh["pseudonym"].unique().tolist()
    record_keys = file_record_keys(session, installation_key, {p: record_key(secrets[p]) for p in needed})
    added_keys = sorted(fresh["import_key"].tolist())
    event = append_event(
        session,
        actor=actor_name(actor),
        action=IMPORT_ACTION,
        payload={
            **anchor,
            "rows": len(batch),
            "added": len(fresh),
            "already_recorded": already,
            "by_status": {k: int(v) for k, v in sorted(fresh["status"].value_counts().items())},
            "import_keys_sha256": hashlib.sha256("\n".join(added_keys).encode("ascii")).hexdigest(),
        },
    )
    rows = _record_rows(fresh, record_keys, event.seq)
    # Core statements without RETURNING: the ORM's per-row bookkeeping, and ordered RETURNING (one statement
    # a row on SQLite), are what make a bulk insert slow.
    session.execute(insert(ConsentRecordRow.__table__), rows)
    session.execute(insert(ConsentImportKey.__table__), [{"key": k, "trail_seq": event.seq} for k in fresh["import_key"].tolist()])
    return BatchOutcome(trail_seq=event.seq, rows=len(batch), added=len(fresh), already_recorded=already)

