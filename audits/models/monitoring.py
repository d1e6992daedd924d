"""Monitoring and the model lifecycle: passes over served decisions, model profiles, retrain tickets.

``monitor_runs`` holds one row per monitoring pass (its window, the pack it ran
under, the figures per model version and the triggers that fired); a pass is
keyed by its window's end and the pack's hash, so a pass retried by cron for the
same time adds nothing. ``model_profiles`` holds what a pass compares a model
against (its training data's item-popularity deciles, its offline scores and hit
rate). ``retrain_tickets`` holds each retrain a trigger opened, naming its
evidence (unique: the same evidence never opens two), and the state of the
pipeline that runs it, so that a crashed run resumes where it stopped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from audits.models.base import HASH_LENGTH, UUID_LENGTH, Base, JsonType, UtcDateTime, one_of

__all__ = ["TICKET_STATES", "TERMINAL_TICKET_STATES", "ModelProfile", "MonitorRun", "RetrainTicket"]

TICKET_STATES = ("open", "trained", "shadow", "canary", "promoted", "rolled_back", "failed")
"""A ticket moves open -> trained -> shadow -> canary -> promoted or rolled_back; failed when a step cannot succeed."""
TERMINAL_TICKET_STATES = ("promoted", "rolled_back", "failed")


class MonitorRun(Base):
    """One monitoring pass: the window it read, the figures per model version, the triggers that fired."""

    __tablename__ = "monitor_runs"
    __table_args__ = (UniqueConstraint("window_end", "pack_hash", name="uq_monitor_runs_window_end_pack_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime)
    window_end: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    pack_name: Mapped[str] = mapped_column(String(200))
    pack_version: Mapped[str] = mapped_column(String(100))
    pack_hash: Mapped[str] = mapped_column(String(128))
    metrics: Mapped[dict[str, Any]] = mapped_column(JsonType)
    """``{"models": {version: {figure: value}}, "overall": {...}}``."""
    fired: Mapped[list[Any]] = mapped_column(JsonType)
    """The triggers that fired, each with its evidence and the ticket it opened (or the open one it joined)."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))


class ModelProfile(Base):
    """What monitoring compares a model version against: its training data and its offline evaluation."""

    __tablename__ = "model_profiles"

    model_version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.version_id"), primary_key=True)
    dataset_hash: Mapped[str] = mapped_column(String(128))
    profile: Mapped[dict[str, Any]] = mapped_column(JsonType)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))


class RetrainTicket(Base):
    """A retrain a trigger opened, its evidence, and the state of the pipeline that runs it."""

    __tablename__ = "retrain_tickets"
    __table_args__ = (one_of("state", TICKET_STATES),)

    id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    evidence_key: Mapped[str] = mapped_column(String(HASH_LENGTH), unique=True)
    """SHA-256 of the trigger, the model and the evidence's window: the same evidence never opens two tickets."""
    trigger_id: Mapped[str] = mapped_column(String(64))
    trigger_kind: Mapped[str] = mapped_column(String(40))
    model_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.version_id"), index=True)
    """The model the evidence is about (the production model when the ticket opened)."""
    evidence: Mapped[dict[str, Any]] = mapped_column(JsonType)
    monitor_run_id: Mapped[int | None] = mapped_column(ForeignKey("monitor_runs.id"), index=True)
    pack_name: Mapped[str] = mapped_column(String(200))
    pack_version: Mapped[str] = mapped_column(String(100))
    pack_hash: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(20), index=True)
    steps: Mapped[list[Any]] = mapped_column(JsonType)
    """Each step done: its name, when, and its report (the trail holds the same as events)."""
    new_model_version: Mapped[str | None] = mapped_column(String(128))
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))
