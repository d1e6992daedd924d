"""Privacy: consent, data subject requests, and what outlives an erasure.

No table here holds a raw subject id: a subject is always its pseudonym (see
:mod:`audits.subjects`), or for ``suppressions`` a keyed hash of its id. Each row
names the trail event that recorded it, or for subject requests, which change,
the event of their latest change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from audits.models.base import HASH_LENGTH, Base, JsonType, UtcDateTime, one_of, utc_now

__all__ = [
    "ConsentRecordRow",
    "SubjectRequest",
    "Suppression",
    "CONSENT_STATUSES",
    "CONSENT_RESTRICTIVENESS",
    "LAWFUL_BASES",
    "CONSENT_SOURCES",
    "REQUEST_KINDS",
    "REQUEST_STATUSES",
]

CONSENT_STATUSES = ("granted", "denied", "withdrawn", "opted_out", "objected")
"""The statuses of a consent record (as in :mod:`governance.consent.state`)."""

CONSENT_RESTRICTIVENESS = {"granted": 0, "opted_out": 1, "objected": 2, "denied": 3, "withdrawn": 4}
"""Among records of one purpose with the same time, the most restrictive status wins."""

LAWFUL_BASES = ("consent", "legitimate_interest", "contract")
"""The lawful bases a consent record can be given under (GDPR Art. 6(1)(a), (f), (b))."""

CONSENT_SOURCES = ("api", "banner", "tcf", "gpc", "import")
"""Where a consent record came from."""

REQUEST_KINDS = ("access", "erasure", "objection", "retrain")
"""Data subject requests (GDPR Art. 15, 17, 21), and the full retrain an erasure calls for (revision 0008)."""

REQUEST_STATUSES = ("received", "in_progress", "completed", "failed")
"""A subject request's statuses; it moves received -> in_progress -> completed or failed."""


class ConsentRecordRow(Base):
    """One consent event of one subject (pseudonym) for one purpose: an append-only history.

    Triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL). Erasing a
    subject does not delete its rows: crypto-shredding (:func:`audits.shred_subject`)
    makes their pseudonym unlinkable (see :mod:`audits.consent`).
    """

    __tablename__ = "consent_records"
    # On SQLite, revision 0023 spells these three checks as comparisons joined by OR (the same values admitted):
    # an IN list there is a lookup table built for every row inserted, most of the cost of a bulk import's append.
    __table_args__ = (
        one_of("status", CONSENT_STATUSES),
        one_of("lawful_basis", LAWFUL_BASES),
        one_of("source", CONSENT_SOURCES),
        Index("ix_consent_records_subject", "subject", "purpose", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(HASH_LENGTH))
    """The subject's pseudonym."""
    jurisdiction: Mapped[str | None] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    lawful_basis: Mapped[str] = mapped_column(String(30))
    source: Mapped[str] = mapped_column(String(20))
    evidence: Mapped[dict[str, Any]] = mapped_column(JsonType)
    """What proves the record (GDPR Art. 7(1)): TCF string, GPC header, UI version; never a raw id."""
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))


class SubjectRequest(Base):
    """A data subject's access, erasure or objection request and where it stands."""

    __tablename__ = "subject_requests"
    __table_args__ = (
        one_of("kind", REQUEST_KINDS),
        one_of("status", REQUEST_STATUSES),
        Index("ix_subject_requests_requested_at", "requested_at", "id"),  # the listing's order: a page is one range read
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(HASH_LENGTH), index=True)
    """The subject's pseudonym when the request was opened."""
    status: Mapped[str] = mapped_column(String(20))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    deadline: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """When it reached ``completed`` or ``failed``."""
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    """What was done (models affected, residual influence, ...); never a raw id."""
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))
    """The trail event of the latest change."""


class Suppression(Base):
    """What must stay true of a subject after erasure, keyed so that it survives crypto-shredding.

    Shredding makes a new pseudonym for a returning subject, with no consent
    history: an opt-out or objection would be forgotten, and the raw logs
    recgov trains from would teach the subject to the next model again. A row
    here is found by ``lookup``, a keyed hash of the raw subject id under the
    installation key (a domain of its own, see :mod:`audits.suppression`), and
    says which purposes stay denied and that events up to ``erased_at`` are
    never learned again. Append-only (triggers refuse UPDATE and DELETE).
    """

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lookup: Mapped[str] = mapped_column(String(HASH_LENGTH), index=True)
    """HMAC-SHA256 of the subject id under the installation key (never the id itself)."""
    denied: Mapped[dict[str, Any]] = mapped_column(JsonType)
    """Purpose -> ``{"status", "lawful_basis"}``: the opt-outs and objections in force at erasure, which stay."""
    erased_at: Mapped[datetime] = mapped_column(UtcDateTime)
    """The subject's events up to this time are excluded from every later training run."""
    request_id: Mapped[int | None] = mapped_column(ForeignKey("subject_requests.id"))
    """The erasure request that wrote the row."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))
    binding: Mapped[str | None] = mapped_column(String(HASH_LENGTH), nullable=True)
    """HMAC-SHA256 of ``lookup`` and ``trail_seq`` under the installation key (:func:`audits.suppression.suppression_binding`):
    a row moved to another lookup no longer matches it. NULL only on rows written before it existed."""
