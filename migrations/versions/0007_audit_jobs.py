"""Audit jobs: audits requested over the REST API, run in the background, their status in SQL.

A job moves queued -> running -> succeeded or failed; a succeeded job names its
recorded audit run and keeps the gate document, a failed one its one-line cause.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "audit_jobs"
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("request", _json(), nullable=False),
        sa.Column("pack_hash", sa.String(length=128), nullable=False),
        sa.Column("model_version_id", sa.String(length=128), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("runner", sa.String(length=200), nullable=True),
        sa.Column("audit_run_id", sa.Integer(), nullable=True),
        sa.Column("gate", _json(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("trail_seq", SEQ, nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed')", name=op.f("ck_audit_jobs_status")
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"], ["model_versions.version_id"], name=op.f("fk_audit_jobs_model_version_id_model_versions")
        ),
        sa.ForeignKeyConstraint(["audit_run_id"], ["audit_runs.id"], name=op.f("fk_audit_jobs_audit_run_id_audit_runs")),
        sa.ForeignKeyConstraint(["trail_seq"], ["trail_events.seq"], name=op.f("fk_audit_jobs_trail_seq_trail_events")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_jobs")),
    )
    op.create_index(op.f("ix_audit_jobs_status"), TABLE, ["status"])
    op.create_index(op.f("ix_audit_jobs_created_at"), TABLE, ["created_at"])
    op.create_index(op.f("ix_audit_jobs_model_version_id"), TABLE, ["model_version_id"])
    op.create_index(op.f("ix_audit_jobs_audit_run_id"), TABLE, ["audit_run_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_jobs_audit_run_id"), table_name=TABLE)
    op.drop_index(op.f("ix_audit_jobs_model_version_id"), table_name=TABLE)
    op.drop_index(op.f("ix_audit_jobs_created_at"), table_name=TABLE)
    op.drop_index(op.f("ix_audit_jobs_status"), table_name=TABLE)
    op.drop_table(TABLE)
