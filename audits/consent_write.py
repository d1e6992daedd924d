"""A consent record to write with a decision, in the decision's own transaction.

A request that carries a consent signal the record does not hold yet (a
browser's first ``Sec-GPC: 1``) is decided on the history with that signal's
record in it. Written in a transaction of its own before the list, the record
costs the request a whole write (a dozen statements, and on PostgreSQL as many
round trips) on the serving thread; given to the decision log with the
decision (:meth:`audits.decisions.DecisionLog.submit`, ``consent=``), it is
written by the log's writer in the batch's transaction, before the decision row:
the record and the decision that relied on it are stored together, or neither
is, and the list is answered only once both are durable. A later request
reads it as it reads any committed record.

:class:`ConsentWrite` holds what :func:`audits.consent.record_consent` takes
besides the session and the subject (the decision's). It is checked where it
is submitted (:meth:`ConsentWrite.checked`: the same checks as
``record_consent``), so a bad record fails its own request, never the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from audits._common import aware, json_object, one_of, text
from audits.models import CONSENT_SOURCES, CONSENT_STATUSES, LAWFUL_BASES

__all__ = ["ConsentWrite"]


@dataclass(frozen=True, slots=True)
class ConsentWrite:
    """One consent record of a decision's subject (the fields of :func:`audits.consent.record_consent`)."""

    purpose: str
    status: str
    lawful_basis: str
    source: str
    evidence: dict[str, Any]
    at: datetime
    """When the signal was received: the record's ``recorded_at`` (the history the list was decided on holds it)."""
    jurisdiction: str | None = None
    actor: str | None = None

    def checked(self, subject_id: str | int) -> ConsentWrite:
        """This record with its fields checked as ``record_consent`` checks them (raise on a bad one)."""
        return ConsentWrite(
            purpose=text(self.purpose, "purpose", 100),
            status=one_of(self.status, CONSENT_STATUSES, "status"),
            lawful_basis=one_of(self.lawful_basis, LAWFUL_BASES, "lawful_basis"),
            source=one_of(self.source, CONSENT_SOURCES, "source"),
            evidence=json_object(self.evidence, "evidence", subject_ids=[subject_id]),
            at=aware(self.at, "at", not_after_now=True),
            jurisdiction=None if self.jurisdiction is None else text(self.jurisdiction, "jurisdiction", 32),
            actor=self.actor,
        )

    def write(self, session: Session, subject_id: str | int) -> tuple[int, int]:
        """Append the record for ``subject_id`` in ``session``'s transaction; its ``(id, trail seq)``."""
        from audits.consent import record_consent  # audits.consent imports the decision log's neighbours

        row = record_consent(
            session, subject_id=subject_id, purpose=self.purpose, status=self.status, lawful_basis=self.lawful_basis,
            source=self.source, evidence=self.evidence, jurisdiction=self.jurisdiction, at=self.at, actor=self.actor,
        )  # fmt: skip
        return row.id, row.trail_seq
