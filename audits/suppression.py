"""Suppression records: what an erasure must not undo.

Crypto-shredding (:func:`audits.shred_subject`) deletes a subject's pseudonym
secret, so a subject who comes back gets a new pseudonym with an empty consent
history. Two things would then be lost:

* an opt-out (CCPA §1798.120) or objection (GDPR Art. 21) in force at erasure
  (or a refusal or withdrawal): under an ``opt_out`` purpose, no record means
  "allowed", so the subject would be profiled again;
* the erasure itself: the raw event logs recgov trains from still hold the
  subject's old events, and the next training run would learn them again.

A suppression row keeps both, without a raw id and without the shredded
pseudonym: it is found by ::

    lookup = HMAC-SHA256(installation_key, b"recgov.suppression.v1\\x00" + subject_id)   (hex)

a domain of its own, so it matches neither the ``subject_secrets`` lookup nor
any pseudonym. Whoever holds the installation key and a raw id can tell that
the id is suppressed, which is the point; nothing else can. The row and its
trail event name neither the shredded pseudonym nor the erasure request, so
the row does not lead back to the records made before the erasure (its
``request_id`` column, kept by the schema, is always NULL).

What a row means, as read by :func:`suppression_records` (one subject, for
serving) and :func:`suppressions_for` (many, for training). Only a subject's
latest row counts: it was written from the whole state in force at its erasure,
earlier rows included, so a restriction the subject lifted in between (a grant
recorded after an earlier erasure) is not revived.

* ``denied``: purpose -> the status (one of :data:`SUPPRESSED_STATUSES`) and
  basis in force at erasure. It acts as a consent record at ``erased_at``: a later
  grant under the new pseudonym (the subject opting back in) outranks it, as
  any later record would.
* ``erased_at``: the subject's events up to that time are never trained on again.

Rows are append-only (triggers refuse UPDATE and DELETE). A trigger stops no one
who can drop it, so each row is also held against its ``subject.suppressed``
event by verification (:mod:`audits.consent_verify`); the lookup is in no event
(it would tie the trail to a raw id), so each row carries a ``binding``,
HMAC-SHA256 of its lookup and its event's number under the installation key
(:func:`suppression_binding`), and its event says ``bound: true``: a row moved to
another lookup, or stripped of its binding, is a finding to whoever verifies
with the installation key.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audits._common import actor_name, aware, in_values
from audits.models import LAWFUL_BASES, Suppression
from audits.subjects import _installation_key, _subject_bytes, keyed_hexdigests
from audits.trail import append_event, format_time
from recommender.errors import DataError

__all__ = [
    "SUPPRESSED_STATUSES",
    "SuppressionEntry",
    "suppress_subject",
    "suppression_lookup",
    "suppression_as_records",
    "suppression_binding",
    "suppression_records",
    "suppressions_for",
    "subject_erasures",
]

_SUPPRESSION_DOMAIN = b"recgov.suppression.v1\x00"
_BINDING_DOMAIN = b"recgov.suppression-binding.v1\x00"
SUPPRESSED_STATUSES = ("opted_out", "objected", "denied", "withdrawn")
"""The statuses a suppression keeps: restrictions a subject chose, which erasure must not lift
(under an ``opt_out`` purpose, losing any of them would mean profiling the subject again)."""
BAD_DENIED = (
    "denied must map a purpose to {{'status': one of {statuses}, 'lawful_basis': one of {bases}}}; "
    "got {value!r} for {purpose!r}"
)


def _lookup(key: bytes, subject: bytes) -> str:
    return hmac.new(key, _SUPPRESSION_DOMAIN + subject, sha256).hexdigest()


def suppression_binding(key: bytes, lookup: str, trail_seq: int) -> str:
    """HMAC-SHA256 (hex), under the installation ``key``, of a suppression's ``lookup`` and its event's ``trail_seq``:
    written with the row, recomputed by verification. Without the key no binding can be made for another lookup."""
    return hmac.digest(key, _BINDING_DOMAIN + lookup.encode("ascii") + b"\x00" + str(int(trail_seq)).encode("ascii"), "sha256").hex()


def suppression_lookup(session: Session, subject_id: str | int) -> str:
    """The keyed hash a subject's suppression rows are found by (64 hex digits; never the raw id)."""
    return _lookup(_installation_key(session), _subject_bytes(subject_id))


@dataclass(frozen=True)
class SuppressionEntry:
    """One suppression row, as training and serving read it."""

    id: int
    denied: Mapping[str, Mapping[str, str]]
    """Purpose -> ``{"status", "lawful_basis"}``."""
    erased_at: datetime
    request_id: int | None
    trail_seq: int


def _entry(row: Suppression) -> SuppressionEntry:
    return SuppressionEntry(
        id=row.id,
        denied=dict(row.denied or {}),
        erased_at=row.erased_at,
        request_id=row.request_id,
        trail_seq=row.trail_seq,
    )


def suppress_subject(
    session: Session,
    subject_id: str | int,
    *,
    denied: Mapping[str, Mapping[str, str]],
    erased_at: datetime,
    actor: str | None = None,
) -> Suppression:
    """Write a suppression row for ``subject_id`` (stored only as its keyed hash), in the caller's transaction.

    ``denied`` maps each purpose that stays denied to the ``status`` (one of
    :data:`SUPPRESSED_STATUSES`) and ``lawful_basis`` of the record in force.
    Neither the row nor its ``subject.suppressed`` trail event names the
    subject's pseudonym or their erasure request: whoever holds the
    installation key and a raw id finds the row, and from it nothing that leads
    to the records made under the shredded pseudonym (only the erasure time
    is shared with them).
    """
    plain: dict[str, dict[str, str]] = {}
    for purpose, record in denied.items():
        status = record.get("status") if isinstance(record, Mapping) else None
        basis = record.get("lawful_basis") if isinstance(record, Mapping) else None
        if not isinstance(purpose, str) or status not in SUPPRESSED_STATUSES or basis not in LAWFUL_BASES:
            raise DataError(
                BAD_DENIED.format(
                    statuses=", ".join(SUPPRESSED_STATUSES), bases=", ".join(LAWFUL_BASES), value=record, purpose=purpose
                )
            )
        plain[purpose] = {"status": status, "lawful_basis": basis}
    when = aware(erased_at, "erased_at", not_after_now=True)
    key = _installation_key(session)
    lookup = _lookup(key, _subject_bytes(subject_id))
    event = append_event(
        session,
        actor=actor_name(actor),
        action="subject.suppressed",
        payload={"denied": plain, "erased_at": format_time(when), "bound": True},
    )
    row = Suppression(
        lookup=lookup, denied=plain, erased_at=when, request_id=None, trail_seq=event.seq, binding=suppression_binding(key, lookup, event.seq)
    )
    session.add(row)
    session.flush()
    return row


def suppressions_for(session: Session, subject_ids: Iterable[str | int]) -> dict[str, SuppressionEntry]:
    """The suppression in force for many subjects in ONE query: raw id (as a string) -> their latest row.

    Subjects without a row are left out. The raw ids are hashed here and never stored.
    """
    ids = [str(s) for s in dict.fromkeys(subject_ids)]
    if not ids:
        return {}
    key = _installation_key(session)
    by_lookup: dict[str, list[str]] = {}
    domain = _SUPPRESSION_DOMAIN  # the keyed hashes of _lookup, in bulk: an import asks for a million subjects
    hashed = keyed_hexdigests(key, [domain + _subject_bytes(subject) for subject in ids])
    for subject, lookup in zip(ids, hashed, strict=True):
        by_lookup.setdefault(lookup, []).append(subject)
    rows = session.scalars(
        select(Suppression).where(in_values(session, Suppression.lookup, list(by_lookup))).order_by(Suppression.id)
    ).all()
    out: dict[str, SuppressionEntry] = {}
    for row in rows:  # by id: a later row replaces an earlier one
        for subject in by_lookup[row.lookup]:
            out[subject] = _entry(row)
    return out


def suppression_records(session: Session, subject_id: str | int, *, key: bytes | None = None) -> list[dict[str, Any]]:
    """A subject's suppression in force as consent records (the dicts of :func:`audits.consent_history`).

    One record per denied purpose of their latest row, at ``erased_at``, source
    ``import`` (it comes from the suppression list, not from the subject
    today), with ``id`` 0 (it is no consent row) and evidence naming the
    suppression. ``key``: the installation key, when the caller has already
    checked it against the store.
    """
    lookup = _lookup(key if key is not None else _installation_key(session), _subject_bytes(subject_id))
    latest = session.scalars(
        select(Suppression).where(Suppression.lookup == lookup).order_by(Suppression.id.desc()).limit(1)
    ).first()
    if latest is None:
        return []
    return suppression_as_records(latest.id, latest.denied, latest.erased_at, latest.trail_seq)


def suppression_as_records(
    row_id: int, denied: dict[str, Any] | None, erased_at: Any, trail_seq: int | None
) -> list[dict[str, Any]]:
    """One suppression row (its id, denied purposes, erasure time and trail seq) as the consent
    records of :func:`suppression_records`, one per denied purpose in purpose order."""
    return [
        {
            "id": 0,
            "purpose": purpose,
            "status": record["status"],
            "lawful_basis": record["lawful_basis"],
            "source": "import",
            "evidence": {
                "suppression": row_id,
                "note": "kept through erasure: the restriction in force when the subject was erased",
            },
            "jurisdiction": None,
            "recorded_at": erased_at,
            "trail_seq": trail_seq,
        }
        for purpose, record in sorted((denied or {}).items())
    ]


def subject_erasures(session: Session, subject_id: str | int) -> list[SuppressionEntry]:
    """Every erasure of ``subject_id`` the suppression list keeps, oldest first (found by the keyed hash of the id).

    What the store still holds about a person after their erasure, linked to their id: when they were erased and
    the restrictions each erasure kept. An access request answers with it (GDPR Art. 15), restrictions or none.
    """
    lookup = suppression_lookup(session, subject_id)
    rows = session.scalars(select(Suppression).where(Suppression.lookup == lookup).order_by(Suppression.id)).all()
    return [_entry(row) for row in rows]
