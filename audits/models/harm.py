"""Harmful content: flags and reports on items, cases for human review, and blocks.

A reporter is named only by pseudonym. Each row names the trail event that
recorded it, or for rows that change (flags, cases, blocks) the event of their
latest change.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from audits.models.base import HASH_LENGTH, ITEM_ID_LENGTH, Base, UtcDateTime, one_of

__all__ = [
    "ItemFlag",
    "ItemReport",
    "EscalationCase",
    "ItemBlock",
    "FLAG_SOURCES",
    "CASE_SEVERITIES",
    "CASE_STATUSES",
    "CASE_ACTIONS",
]

FLAG_SOURCES = ("metadata", "api", "model", "report")
"""Where a harmful-content flag on an item came from."""

CASE_SEVERITIES = ("low", "medium", "high", "critical")
CASE_STATUSES = ("open", "triaged", "resolved", "dismissed")
"""An escalation case moves open -> triaged -> resolved or dismissed (or straight from open)."""
CASE_ACTIONS = ("block", "unblock")


class ItemFlag(Base):
    """A harmful-content flag on an item (a category with a confidence)."""

    __tablename__ = "item_flags"
    __table_args__ = (
        one_of("source", FLAG_SOURCES),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(ITEM_ID_LENGTH), index=True)
    category: Mapped[str] = mapped_column(String(100))
    confidence: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    active: Mapped[bool] = mapped_column(Boolean)
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))
    """The trail event of the latest change."""


class ItemReport(Base):
    """A user's report of an item (DSA notice), the reporter named only by pseudonym."""

    __tablename__ = "item_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(ITEM_ID_LENGTH), index=True)
    reporter: Mapped[str | None] = mapped_column(String(HASH_LENGTH))
    """The reporter's pseudonym, or NULL for an anonymous report."""
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))


class EscalationCase(Base):
    """A harmful-content case for human review: one per open (item, rule)."""

    __tablename__ = "escalation_cases"
    __table_args__ = (
        one_of("severity", CASE_SEVERITIES),
        one_of("status", CASE_STATUSES),
        one_of("action", CASE_ACTIONS),
        # At most one case per (item, rule) that is still open or triaged.
        Index(
            "uq_escalation_cases_open",
            "item_id",
            "rule_id",
            unique=True,
            sqlite_where=text("status IN ('open', 'triaged')"),
            postgresql_where=text("status IN ('open', 'triaged')"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(ITEM_ID_LENGTH), index=True)
    rule_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10))
    sla_due: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resolution: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str | None] = mapped_column(String(10))
    """The latest action taken on the item through this case: ``block``, ``unblock`` or NULL."""
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))
    """The trail event of the latest change."""


class ItemBlock(Base):
    """The current block state of an item (one row per item ever blocked or unblocked)."""

    __tablename__ = "item_blocks"

    item_id: Mapped[str] = mapped_column(String(ITEM_ID_LENGTH), primary_key=True)
    blocked: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("escalation_cases.id"))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))
