"""Feedback: what happened after a list was served (impressions, clicks, conversions, dwell, ratings).

An outcome event names its subject by pseudonym, never the raw id, and the
decision that served the item where one is found (:mod:`audits.outcomes` joins
them, by the decision id the event carries or by subject, item and an
attribution window). Unlike decisions and consent records, outcome events are
no proof of lawful processing: they are behaviour, so erasure deletes them and
the retention purge deletes them once they are older than the pack's window.
Each row names the trail event of the batch that stored it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from audits.models.base import HASH_LENGTH, ITEM_ID_LENGTH, UUID_LENGTH, Base, SeqType, UtcDateTime, one_of, utc_now

__all__ = ["ATTRIBUTIONS", "ATTRIBUTED", "OUTCOME_KINDS", "OUTCOME_SOURCES", "OutcomeEvent", "UNATTRIBUTED"]

OUTCOME_KINDS = ("impression", "click", "conversion", "dwell", "rating")
"""What an outcome event says happened to a served item (``dwell`` carries seconds, ``rating`` a value)."""
ATTRIBUTED = ("decision_id", "window")
"""How an event was joined to its decision: by the decision id it carried, or by subject, item and window."""
UNATTRIBUTED = ("no_decision_before", "outside_window", "item_not_served")
"""Why an event was joined to no decision: the subject had none at or before it; none within the window;
or none within the window served the item."""
ATTRIBUTIONS = ATTRIBUTED + UNATTRIBUTED
OUTCOME_SOURCES = ("api", "import")
"""Where an event came from: ``POST /v1/feedback`` (a JSON list) or a file (CLI or upload)."""


class OutcomeEvent(Base):
    """One outcome of one item for one subject (pseudonym), joined to the decision that served it where found.

    ``decision_id`` and ``position`` are set exactly when ``attribution`` is one
    of :data:`ATTRIBUTED` (a check constraint holds it). ``event_key`` makes a
    second import of the same event a no-op (see :func:`audits.outcomes.event_key`).
    """

    __tablename__ = "outcome_events"
    __table_args__ = (
        one_of("kind", OUTCOME_KINDS),
        one_of("attribution", ATTRIBUTIONS),
        one_of("source", OUTCOME_SOURCES),
        CheckConstraint(
            "(attribution IN ('decision_id', 'window')) = (decision_id IS NOT NULL AND position IS NOT NULL)",
            name="joined",
        ),
        Index("ix_outcome_events_subject", "subject", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(SeqType, primary_key=True)
    event_key: Mapped[str] = mapped_column(String(HASH_LENGTH), unique=True)
    """SHA-256 of the pseudonym and the caller's event id, or of what the event says (:func:`audits.outcomes.event_key`)."""
    subject: Mapped[str] = mapped_column(String(HASH_LENGTH))
    """The subject's pseudonym."""
    kind: Mapped[str] = mapped_column(String(20))
    item_id: Mapped[str] = mapped_column(String(ITEM_ID_LENGTH))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    value: Mapped[float | None] = mapped_column(Float)
    """Seconds of a ``dwell``, the value of a ``rating`` (and, if given, of a ``conversion``); NULL otherwise."""
    decision_id: Mapped[str | None] = mapped_column(String(UUID_LENGTH), ForeignKey("decisions.decision_id"), index=True)
    position: Mapped[int | None] = mapped_column(Integer)
    """The item's place in the decision's list, from 0."""
    attribution: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(20))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"), index=True)
    """The ``outcomes.recorded`` event of the batch that stored the row."""
