"""Governed experiments: a frozen plan, its lifecycle, and every look at its data.

``experiments`` holds one row per experiment: the normalized plan (JSON), its
content hash, the per-experiment assignment salt, and the trail events that
froze, started and stopped it. The plan and its hash never change once frozen;
``status`` moves ``planned`` -> ``running`` -> ``stopped``, each move a trail
event. ``experiment_looks`` holds every analysis of the data, planned or
exploratory, with what it found; rows are only added.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from audits.models.base import HASH_LENGTH, Base, JsonType, SeqType, UtcDateTime, one_of, utc_now

__all__ = ["EXPERIMENT_STATUSES", "LOOK_KINDS", "Experiment", "ExperimentLook"]

EXPERIMENT_STATUSES = ("planned", "running", "stopped")
"""``planned``: frozen, nothing exposed yet; ``running``: subjects are assigned and served; ``stopped``: ended."""
LOOK_KINDS = ("planned", "exploratory")
"""``planned``: a look the plan pre-registered (its metric, within its number of looks); ``exploratory``: anything else."""


class Experiment(Base):
    """One governed experiment, frozen at plan time."""

    __tablename__ = "experiments"
    __table_args__ = (one_of("status", EXPERIMENT_STATUSES),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    plan: Mapped[dict[str, Any]] = mapped_column(JsonType)
    """The normalized plan, with the sample size computed at plan time."""
    plan_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    salt: Mapped[str] = mapped_column(String(HASH_LENGTH))
    """Hex; assignment is a keyed hash of the subject under it (never stored)."""
    status: Mapped[str] = mapped_column(String(20))
    planned_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    plan_seq: Mapped[int] = mapped_column(SeqType, ForeignKey("trail_events.seq"))
    start_seq: Mapped[int | None] = mapped_column(SeqType, ForeignKey("trail_events.seq"))
    stop_seq: Mapped[int | None] = mapped_column(SeqType, ForeignKey("trail_events.seq"))
    holdback_until: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    """A stopped experiment keeps serving its holdback the control until then (the plan's ``holdback_days``); NULL: no holdback after the stop."""


class ExperimentLook(Base):
    """One look at an experiment's data: what was asked, what was found, and the trail event that anchors it."""

    __tablename__ = "experiment_looks"
    __table_args__ = (one_of("kind", LOOK_KINDS), Index("ix_experiment_looks_experiment", "experiment_id", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    look: Mapped[int | None] = mapped_column(Integer)
    """The planned look's number (1-based); NULL for an exploratory one."""
    kind: Mapped[str] = mapped_column(String(20))
    metric: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    result: Mapped[dict[str, Any]] = mapped_column(JsonType)
    """Counts per variant, the SRM check, each comparison, each guardrail and the decision."""
    decision: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(200))
    trail_seq: Mapped[int] = mapped_column(SeqType, ForeignKey("trail_events.seq"))
