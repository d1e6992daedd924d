"""Deployments: where each model version serves, and which gate let it.

``deployments`` records every change of a model version's stage, with the gate
(pack and audit) that allowed it; ``deployment_policies`` binds each gated stage
to the pack, pinned by content hash, and to what the gate's data must cover. Both
are histories: rows are added, and the latest row is the state.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from audits.models.base import Base, UtcDateTime, one_of, utc_now

__all__ = [
    "Deployment",
    "DeploymentPolicy",
    "DEPLOYMENT_STAGES",
    "GATED_STAGES",
]

DEPLOYMENT_STAGES = ("shadow", "canary", "production", "retired")
"""The stages a model version can be deployed to."""


class Deployment(Base):
    """A change of a model version's deployment stage."""

    __tablename__ = "deployments"
    __table_args__ = (CheckConstraint("stage IN ('shadow', 'canary', 'production', 'retired')", name="stage"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.version_id"), index=True)
    stage: Mapped[str] = mapped_column(String(20))
    previous_stage: Mapped[str | None] = mapped_column(String(20))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    actor: Mapped[str] = mapped_column(String(200))
    trail_seq: Mapped[int | None] = mapped_column(ForeignKey("trail_events.seq"))
    # The gate that allowed the move (revision 0010); NULL for a move no gate allows (into shadow).
    gate_pack: Mapped[str | None] = mapped_column(String(200))
    gate_pack_version: Mapped[str | None] = mapped_column(String(100))
    gate_pack_hash: Mapped[str | None] = mapped_column(String(128))
    gate_audit_id: Mapped[int | None] = mapped_column(Integer)
    """The ``audit_runs.id`` whose gate passed (no foreign key: added to a table SQLite cannot alter)."""
    gate_policy_id: Mapped[int | None] = mapped_column(Integer)
    """The ``deployment_policies.id`` binding in force when the gate ran (NULL before revision 0010)."""


GATED_STAGES = ("canary", "production")
"""The stages a deployment policy binds to a pack: the ones that serve (shadow is never served)."""


class DeploymentPolicy(Base):
    """One binding of a gated stage to a pack and to what the gate's data must cover.

    Rows are only added, never changed: the binding in force for a stage is its
    latest row, and the rows before it are the policy's history. Each row names
    the trail event (``deployment.policy_set``) that recorded it. The pack is
    pinned by content hash: a promotion whose gate would run under any other
    content is refused (see :mod:`governance.deploy_policy`).
    """

    __tablename__ = "deployment_policies"
    __table_args__ = (one_of("stage", GATED_STAGES), Index("ix_deployment_policies_stage", "stage", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[str] = mapped_column(String(20))
    pack_ref: Mapped[str] = mapped_column(String(300))
    """Where the pack is read from: a shipped name, or a stored pack as ``NAME@VERSION``."""
    pack_name: Mapped[str] = mapped_column(String(200))
    pack_version: Mapped[str] = mapped_column(String(100))
    pack_hash: Mapped[str] = mapped_column(String(128))
    """The content hash the installation reviewed: any other content is another pack."""
    min_events: Mapped[int] = mapped_column(BigInteger)
    min_users: Mapped[int] = mapped_column(Integer)
    dataset: Mapped[str] = mapped_column(String(128))
    """``training`` (the model's own training data), ``any``, or a recorded dataset content hash."""
    set_at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))
