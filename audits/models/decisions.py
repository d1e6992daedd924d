"""Serving: the record of every served list, and of every request that could not be served.

A subject is always its pseudonym, never a raw id. Decisions are written in
batches, each covered by the hash of one trail event (``batch_seq``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.type_api import TypeEngine

from audits.models.base import HASH_LENGTH, UUID_LENGTH, Base, JsonType, UtcDateTime, one_of

__all__ = [
    "DecisionRecord",
    "FailedRequest",
    "DECISION_MODES",
    "EXPERIMENT_ID_SQL",
    "ExperimentIdOf",
]

DECISION_MODES = ("personalized", "fallback", "non_profiling")
"""How a served list was made: from the subject's profile, a non-personal fallback, or on request without profiling (DSA Art. 38)."""


class ExperimentIdOf(ColumnElement[int]):
    """A decision's experiment id, ``context -> experiment -> id`` as an integer, written per engine.

    The expression of the index ``ix_decisions_experiment``; a query that filters on it (built from
    :data:`EXPERIMENT_ID_SQL`) uses the index only if it writes the very same expression."""

    inherit_cache = True
    type: TypeEngine[int] = Integer()


EXPERIMENT_ID_SQL = {
    "postgresql": "((context #>> '{experiment,id}'::text[])::integer)",
    "sqlite": "CAST(json_extract(context, '$.experiment.id') AS INTEGER)",
}
"""A decision's experiment id, per engine (migration 0018 creates the index on exactly these)."""


@compiles(ExperimentIdOf, "postgresql")
def _experiment_id_postgresql(element: ExperimentIdOf, compiler: object, **kw: object) -> str:
    return EXPERIMENT_ID_SQL["postgresql"]


@compiles(ExperimentIdOf)
def _experiment_id_default(element: ExperimentIdOf, compiler: object, **kw: object) -> str:
    return EXPERIMENT_ID_SQL["sqlite"]


class DecisionRecord(Base):
    """One served list: who (pseudonym), how (mode, pack, model) and what (slate, context).

    Written in batches by :class:`audits.decisions.DecisionLog`; ``batch_seq`` is the
    trail event (``decisions.committed``) whose SHA-256 covers the batch's rows.
    """

    __tablename__ = "decisions"
    __table_args__ = (one_of("mode", DECISION_MODES), Index("ix_decisions_experiment", ExperimentIdOf(), "decided_at"))

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
