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

from audits._common import aware, json_object, one_of, subject_text
from audits.models import CONSENT_SOURCES, CONSENT_STATUSES, LAWFUL_BASES

__all__ = ["ConsentWrite", "PlannedConsent", "plan_consent", "store_consent"]


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
    vocabulary: frozenset[str] = frozenset()
    """The pack's purposes: words of the pack, kept in clear even for a subject whose id is one of them."""

    def checked(self, subject_id: str | int) -> ConsentWrite:
        """This record with its fields checked as ``record_consent`` checks them (raise on a bad one)."""
        return ConsentWrite(
            purpose=subject_text(self.purpose, "purpose", 100, subject_id=subject_id, vocabulary=self.vocabulary),
            status=one_of(self.status, CONSENT_STATUSES, "status"),
            lawful_basis=one_of(self.lawful_basis, LAWFUL_BASES, "lawful_basis"),
            source=one_of(self.source, CONSENT_SOURCES, "source"),
            evidence=json_object(self.evidence, "evidence", subject_ids=[subject_id]),
            at=aware(self.at, "at", not_after_now=True),
            jurisdiction=self._jurisdiction(subject_id),
            actor=self.actor,
            vocabulary=self.vocabulary,
        )

    def _jurisdiction(self, subject_id: str | int) -> str | None:
        if self.jurisdiction is None:
            return None
        return subject_text(self.jurisdiction, "jurisdiction", 32, subject_id=subject_id, vocabulary=self.vocabulary)

    def entry(self, who: str, key: bytes) -> tuple[Any, dict[str, Any]]:
        """This record for pseudonym ``who`` (record key ``key``) as stored: its trail event and row fields
        but ``trail_seq`` (:func:`audits.consent.consent_entry`)."""
        from audits.consent import consent_entry

        return consent_entry(
            who, key, purpose=self.purpose, status=self.status, lawful_basis=self.lawful_basis, source=self.source,
            evidence=self.evidence, jurisdiction=self.jurisdiction, recorded_at=self.at, actor=self.actor,
        )  # fmt: skip

    def write(self, session: Session, subject_id: str | int) -> tuple[int, int]:
        """Append the record for ``subject_id`` in ``session``'s transaction; its ``(id, trail seq)``."""
        from audits.consent import record_consent  # audits.consent imports the decision log's neighbours

        row = record_consent(
            session, subject_id=subject_id, purpose=self.purpose, status=self.status, lawful_basis=self.lawful_basis,
            source=self.source, evidence=self.evidence, jurisdiction=self.jurisdiction, at=self.at, actor=self.actor,
            vocabulary=self.vocabulary,
        )  # fmt: skip
        return row.id, row.trail_seq


@dataclass(frozen=True, slots=True)
class PlannedConsent:
    """A batch's consent records, made before its trail events are appended (see :func:`plan_consent`)."""

    events: list[Any]
    """Their ``consent.recorded`` events, in order: appended first in the batch's trail events."""
    rows: list[dict[str, Any]]
    """Their rows' fields but ``trail_seq``, in the same order."""
    subjects: list[tuple[str | int, bool]]
    """Each record's subject (raw id) and whether it holds profiling back (its online-store invalidation holds)."""


def plan_consent(writes: list[tuple[ConsentWrite, str | int, str, bytes]]) -> PlannedConsent:
    """The trail events and rows of ``writes``: ``(record, subject raw id, its pseudonym, its record key)`` each.

    The decision log's writer makes a batch's records this way (:meth:`audits.decisions.DecisionLog._commit`): the
    pseudonyms and record keys are the ones it reads (or creates) once for the batch's decisions, and the events go
    first in the batch's one append, so each record costs no statement of its own but its row. What is stored is
    what :func:`audits.consent.record_consent` stores for each, in the same order.
    """
    events: list[Any] = []
    rows: list[dict[str, Any]] = []
    subjects: list[tuple[str | int, bool]] = []
    for write, subject_id, who, key in writes:
        event, fields = write.entry(who, key)
        events.append(event)
        rows.append(fields)
        subjects.append((subject_id, write.status != "granted"))
    return PlannedConsent(events, rows, subjects)


def store_consent(session: Session, planned: PlannedConsent, first_seq: int) -> list[tuple[int, int]]:
    """Insert ``planned``'s rows, their events appended from trail seq ``first_seq`` on; each record's ``(id, trail seq)``.

    The subjects' online-store lists are invalidated in the same transaction (a withdrawal or an opt-out also
    holds new ones back a while), as :func:`audits.consent.record_consent` does for one record.
    """
    from audits.models import ConsentRecordRow
    from audits.online_store import invalidate_subjects_after_commit

    if not planned.rows:
        return []
    rows = [ConsentRecordRow(**fields, trail_seq=first_seq + n) for n, fields in enumerate(planned.rows)]
    session.add_all(rows)
    session.flush()
    for hold in (True, False):
        ids = [subject for subject, holds in planned.subjects if holds is hold]
        if ids:
            invalidate_subjects_after_commit(session, ids, hold=hold)
    return [(row.id, row.trail_seq) for row in rows]
