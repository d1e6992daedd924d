"""Serving: the record of every served list, and of every request that could not be served.

A subject is always its pseudonym, never a raw id. Decisions are written in
batches, each covered by the hash of one trail event (``batch_seq``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from audits.models.base import HASH_LENGTH, UUID_LENGTH, Base, JsonType, UtcDateTime, one_of

__all__ = [
    "DecisionRecord",
    "FailedRequest",
    "DECISION_MODES",
]

DECISION_MODES = ("personalized", "fallback", "non_profiling")
"""How a served list was made: from the subject's profile, a non-personal fallback, or on request without profiling (DSA Art. 38)."""


class DecisionRecord(Base):
    """One served list: who (pseudonym), how (mode, pack, model) and what (slate, context).

    Written in batches by :class:`audits.decisions.DecisionLog`; ``batch_seq`` is the
    trail event (``decisions.committed``) whose SHA-256 covers the batch's rows.
    """

    __tablename__ = "decisions"
    __table_args__ = (one_of("mode", DECISION_MODES),)

    decision_id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    subject: Mapped[str | None] = mapped_column(String(HASH_LENGTH), index=True)
    """The subject's pseudonym, or NULL for an anonymous request."""
    mode: Mapped[str] = mapped_column(String(20))
    pack_name: Mapped[str] = mapped_column(String(200))
    pack_version: Mapped[str] = mapped_column(String(100))
    pack_hash: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str | None] = mapped_column(String(128))
    slate: Mapped[dict[str, Any]] = mapped_column(JsonType)
    """``{"items": [...], "scores": [...], "tags": ...}``."""
    context: Mapped[dict[str, Any]] = mapped_column(JsonType)
    batch_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"), index=True)


class FailedRequest(Base):
    """A request that could not be served as asked (EU AI Act Art. 12 logging); never a raw id."""

    __tablename__ = "failed_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    cause: Mapped[str] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]] = mapped_column(JsonType)
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))
