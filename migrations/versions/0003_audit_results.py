"""Audit results: one row per rule per audit, stamped with pack, model and dataset.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "audit_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("audit_run_id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("section", sa.String(length=40), nullable=False),
        sa.Column("check_name", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("value", _json(), nullable=True),
        sa.Column("threshold", _json(), nullable=True),
        sa.Column("evidence", _json(), nullable=True),
        sa.Column("legal_reference", sa.String(length=500), nullable=True),
        sa.Column("pack_name", sa.String(length=200), nullable=False),
        sa.Column("pack_version", sa.String(length=100), nullable=False),
        sa.Column("pack_hash", sa.String(length=128), nullable=False),
        sa.Column("model_version_id", sa.String(length=128), nullable=True),
        sa.Column("dataset_hash", sa.String(length=128), nullable=True),
        sa.Column("pack_line", sa.Integer(), nullable=True),
        sa.CheckConstraint("status IN ('pass', 'warn', 'fail', 'error', 'skipped')", name=op.f("ck_audit_results_status")),
        sa.CheckConstraint("severity IN ('block', 'warn')", name=op.f("ck_audit_results_severity")),
        sa.ForeignKeyConstraint(["audit_run_id"], ["audit_runs.id"], name=op.f("fk_audit_results_audit_run_id_audit_runs")),
        sa.ForeignKeyConstraint(
            ["model_version_id"], ["model_versions.version_id"], name=op.f("fk_audit_results_model_version_id_model_versions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_results")),
    )
    op.create_index(op.f("ix_audit_results_audit_run_id"), "audit_results", ["audit_run_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_results_audit_run_id"), table_name="audit_results")
    op.drop_table("audit_results")
