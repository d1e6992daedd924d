"""Lineage: dataset versions, training runs, model versions, audit runs, deployments.

``upgrade`` is one long function on purpose: a migration is read and reviewed
as one script that creates these tables in order, and it never changes once
applied.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _trail_seq(table: str) -> list[sa.SchemaItem]:
    return [
        sa.Column("trail_seq", SEQ, nullable=True),
        sa.ForeignKeyConstraint(["trail_seq"], ["trail_events.seq"], name=op.f(f"fk_{table}_trail_seq_trail_events")),
    ]


def upgrade() -> None:
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("n_events", sa.BigInteger(), nullable=False),
        sa.Column("n_users", sa.Integer(), nullable=False),
        sa.Column("n_items", sa.Integer(), nullable=False),
        sa.Column("schema", _json(), nullable=False),
        sa.Column("validation", _json(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *_trail_seq("dataset_versions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_versions")),
        sa.UniqueConstraint("content_hash", name=op.f("uq_dataset_versions_content_hash")),
    )
    op.create_table(
        "training_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_version_id", sa.Integer(), nullable=False),
        sa.Column("params", _json(), nullable=False),
        sa.Column("code_version", sa.String(length=80), nullable=True),
        sa.Column("library_versions", _json(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("energy_kwh", sa.Float(), nullable=True),
        sa.Column("emissions_kg", sa.Float(), nullable=True),
        sa.Column("carbon_method", sa.String(length=100), nullable=True),
        *_trail_seq("training_runs"),
        sa.ForeignKeyConstraint(
            ["dataset_version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_training_runs_dataset_version_id_dataset_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_runs")),
    )
    op.create_index(op.f("ix_training_runs_dataset_version_id"), "training_runs", ["dataset_version_id"])
    op.create_table(
        "model_versions",
        sa.Column("version_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("training_run_id", sa.Integer(), nullable=False),
        sa.Column("dataset_version_id", sa.Integer(), nullable=False),
        sa.Column("artifact_hash", sa.String(length=128), nullable=False),
        sa.Column("artifact_location", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *_trail_seq("model_versions"),
        sa.ForeignKeyConstraint(
            ["dataset_version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_model_versions_dataset_version_id_dataset_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["training_run_id"], ["training_runs.id"], name=op.f("fk_model_versions_training_run_id_training_runs")
        ),
        sa.PrimaryKeyConstraint("version_id", name=op.f("pk_model_versions")),
    )
    op.create_index(op.f("ix_model_versions_dataset_version_id"), "model_versions", ["dataset_version_id"])
    op.create_index(op.f("ix_model_versions_training_run_id"), "model_versions", ["training_run_id"])
    op.create_table(
        "audit_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("policy_pack", sa.String(length=200), nullable=False),
        sa.Column("policy_version", sa.String(length=100), nullable=False),
        sa.Column("policy_hash", sa.String(length=128), nullable=False),
        sa.Column("model_version_id", sa.String(length=128), nullable=True),
        sa.Column("dataset_version_id", sa.Integer(), nullable=True),
        sa.Column("verdict", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", _json(), nullable=True),
        *_trail_seq("audit_runs"),
        sa.CheckConstraint("verdict IN ('pass', 'fail', 'error', 'shadow')", name=op.f("ck_audit_runs_verdict")),
        sa.ForeignKeyConstraint(
            ["dataset_version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_audit_runs_dataset_version_id_dataset_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.version_id"],
            name=op.f("fk_audit_runs_model_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_runs")),
    )
    op.create_index(op.f("ix_audit_runs_dataset_version_id"), "audit_runs", ["dataset_version_id"])
    op.create_index(op.f("ix_audit_runs_model_version_id"), "audit_runs", ["model_version_id"])
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.String(length=128), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("previous_stage", sa.String(length=20), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        *_trail_seq("deployments"),
        sa.CheckConstraint("stage IN ('shadow', 'canary', 'production', 'retired')", name=op.f("ck_deployments_stage")),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.version_id"],
            name=op.f("fk_deployments_model_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
    )
    op.create_index(op.f("ix_deployments_model_version_id"), "deployments", ["model_version_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_deployments_model_version_id"), table_name="deployments")
    op.drop_table("deployments")
    op.drop_index(op.f("ix_audit_runs_model_version_id"), table_name="audit_runs")
    op.drop_index(op.f("ix_audit_runs_dataset_version_id"), table_name="audit_runs")
    op.drop_table("audit_runs")
    op.drop_index(op.f("ix_model_versions_training_run_id"), table_name="model_versions")
    op.drop_index(op.f("ix_model_versions_dataset_version_id"), table_name="model_versions")
    op.drop_table("model_versions")
    op.drop_index(op.f("ix_training_runs_dataset_version_id"), table_name="training_runs")
    op.drop_table("training_runs")
    op.drop_table("dataset_versions")
