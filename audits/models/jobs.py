"""Audit jobs: audits asked for over the REST API and run in the background.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from audits.models.base import UUID_LENGTH, Base, JsonType, UtcDateTime, one_of

__all__ = [
    "AuditJob",
    "AUDIT_JOB_STATUSES",
]

AUDIT_JOB_STATUSES = ("queued", "running", "succeeded", "failed")
"""An audit job moves queued -> running -> succeeded or failed (a queued job may fail before it runs)."""


class AuditJob(Base):
    """An audit requested over the REST API and run in the background (see :mod:`audits.jobs`).

    The status lives here, not in the serving process: a job outlives the
    process that accepted it (a queued job starts again at the next startup).
    ``request`` holds the pack reference, the DATA spec and the options as
    asked; ``pack_hash`` the content hash of the pack when it was asked, so
    that a pack changed in between is refused rather than audited unknowingly.
    Each change of status is a trail event (``trail_seq`` names the latest).
    A running job is held on a lease that its runner renews (``heartbeat_at``).
    """

    __tablename__ = "audit_jobs"
    __table_args__ = (one_of("status", AUDIT_JOB_STATUSES), Index("ix_audit_jobs_created_at", "created_at"))

    id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    """A random UUID: job ids are not guessable from one another."""
    status: Mapped[str] = mapped_column(String(20), index=True)
    request: Mapped[dict[str, Any]] = mapped_column(JsonType)
    """The request as accepted: ``pack``, ``model_version``, ``data``, ``slates``, ``baseline``, ``shadow``."""
    pack_hash: Mapped[str] = mapped_column(String(128))
    model_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.version_id"), index=True)
    requested_by: Mapped[str] = mapped_column(String(200))
    """The trail actor of the key that asked (``key:<id>:<name>``)."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    runner: Mapped[str | None] = mapped_column(String(200))
    """Which process runs or ran the job (``host:pid:token``), to tell a live job from an interrupted one."""
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """The runner's latest renewal of its lease on the running job (revision 0009): set at the claim,
    renewed while the audit runs. A running job whose heartbeat is older than the lease is failed as
    interrupted, whatever host it ran on. NULL for jobs never claimed (or claimed before 0009)."""
    audit_run_id: Mapped[int | None] = mapped_column(ForeignKey("audit_runs.id"), index=True)
    """The recorded audit, once the job has succeeded."""
    gate: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    """The gate document (``recgov.gate/v1``) of the recorded audit, once the job has succeeded."""
    error: Mapped[str | None] = mapped_column(Text)
    """One line: why the job failed."""
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))
    """The trail event of the latest change of status."""
