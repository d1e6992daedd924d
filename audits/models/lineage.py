"""Lineage: which data trained which model, and which audits judged it.

``dataset_versions`` -> ``training_runs`` -> ``model_versions`` -> ``audit_runs``
(with their ``audit_results``). Each lineage row names the trail event that
recorded it (``trail_seq``), so the trail can vouch for it. Where a model version
is deployed is :mod:`audits.models.deployments`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from audits.models.base import Base, JsonType, UtcDateTime, utc_now

__all__ = [
    "DatasetVersion",
    "TrainingRun",
    "ModelVersion",
    "AuditRun",
    "AuditResult",
    "AUDIT_VERDICTS",
    "RESULT_STATUSES",
]

AUDIT_VERDICTS = ("pass", "fail", "error", "shadow")
"""The verdicts an audit run can end with (``shadow``: evaluated and reported, never blocking)."""

RESULT_STATUSES = ("pass", "warn", "fail", "error", "skipped")
"""The statuses a rule's result can have."""


class DatasetVersion(Base):
    """A version of a data set, identified by the hash of its content."""

    __tablename__ = "dataset_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(Text)
    n_events: Mapped[int] = mapped_column(BigInteger)
    n_users: Mapped[int] = mapped_column(Integer)
    n_items: Mapped[int] = mapped_column(Integer)
    data_schema: Mapped[dict[str, Any]] = mapped_column("schema", JsonType)
    validation: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    trail_seq: Mapped[int | None] = mapped_column(ForeignKey("trail_events.seq"))


class TrainingRun(Base):
    """One training run: its data, parameters, code and library versions, time and carbon."""

    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JsonType)
    code_version: Mapped[str | None] = mapped_column(String(80))
    library_versions: Mapped[dict[str, Any]] = mapped_column(JsonType)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime] = mapped_column(UtcDateTime)
    energy_kwh: Mapped[float | None] = mapped_column(Float)
    emissions_kg: Mapped[float | None] = mapped_column(Float)
    carbon_method: Mapped[str | None] = mapped_column(String(100))
    trail_seq: Mapped[int | None] = mapped_column(ForeignKey("trail_events.seq"))


class ModelVersion(Base):
    """A trained model, identified by a caller-given content hash."""

    __tablename__ = "model_versions"

    version_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    training_run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id"), index=True)
    dataset_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    artifact_hash: Mapped[str] = mapped_column(String(128))
    artifact_location: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    trail_seq: Mapped[int | None] = mapped_column(ForeignKey("trail_events.seq"))


class AuditRun(Base):
    """One run of a policy pack against a model and/or data set."""

    __tablename__ = "audit_runs"
    __table_args__ = (CheckConstraint("verdict IN ('pass', 'fail', 'error', 'shadow')", name="verdict"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy_pack: Mapped[str] = mapped_column(String(200))
    policy_version: Mapped[str] = mapped_column(String(100))
    policy_hash: Mapped[str] = mapped_column(String(128))
    model_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.version_id"), index=True)
    dataset_version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    verdict: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime] = mapped_column(UtcDateTime)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    trail_seq: Mapped[int | None] = mapped_column(ForeignKey("trail_events.seq"))


class AuditResult(Base):
    """The result of one rule in one audit, stamped with what produced it.

    Each row repeats the pack (name, version, content hash), the model version and
    the dataset version, so that a result read on its own still says exactly
    which policy judged which model on which data.
    """

    __tablename__ = "audit_results"
    __table_args__ = (
        CheckConstraint("status IN ('pass', 'warn', 'fail', 'error', 'skipped')", name="status"),
        CheckConstraint("severity IN ('block', 'warn')", name="severity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    audit_run_id: Mapped[int] = mapped_column(ForeignKey("audit_runs.id"), index=True)
    rule_id: Mapped[str] = mapped_column(String(64))
    section: Mapped[str] = mapped_column(String(40))
    check_name: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[Any | None] = mapped_column(JsonType)
    threshold: Mapped[Any | None] = mapped_column(JsonType)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    legal_reference: Mapped[str | None] = mapped_column(String(500))
    pack_name: Mapped[str] = mapped_column(String(200))
    pack_version: Mapped[str] = mapped_column(String(100))
    pack_hash: Mapped[str] = mapped_column(String(128))
    model_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.version_id"))
    dataset_hash: Mapped[str | None] = mapped_column(String(128))
    pack_line: Mapped[int | None] = mapped_column(Integer)
