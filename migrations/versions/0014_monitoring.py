"""Monitoring passes, model profiles and retrain tickets.

``monitor_runs``: one row per monitoring pass, unique by window end and pack
hash (a pass retried for the same time adds nothing). ``model_profiles``: what
a pass compares a model against. ``retrain_tickets``: a retrain a trigger
opened, unique by its evidence, with the state of the pipeline that runs it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TICKET_STATES = ("open", "trained", "shadow", "canary", "promoted", "rolled_back", "failed")


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "monitor_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        _time("window_start"),
        _time("window_end"),
        sa.Column("pack_name", sa.String(length=200), nullable=False),
        sa.Column("pack_version", sa.String(length=100), nullable=False),
        sa.Column("pack_hash", sa.String(length=128), nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("fired", JSON, nullable=False),
        _time("created_at"),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("trail_seq", SEQ, nullable=False),
        sa.ForeignKeyConstraint(["trail_seq"], ["trail_events.seq"], name=op.f("fk_monitor_runs_trail_seq_trail_events")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_runs")),
        sa.UniqueConstraint("window_end", "pack_hash", name="uq_monitor_runs_window_end_pack_hash"),
    )
    op.create_index(op.f("ix_monitor_runs_window_end"), "monitor_runs", ["window_end"])
    op.create_table(
        "model_profiles",
        sa.Column("model_version_id", sa.String(length=128), nullable=False),
        sa.Column("dataset_hash", sa.String(length=128), nullable=False),
        sa.Column("profile", JSON, nullable=False),
        _time("recorded_at"),
        sa.Column("trail_seq", SEQ, nullable=False),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.version_id"], name=op.f("fk_model_profiles_model_version_id_model_versions")),
        sa.ForeignKeyConstraint(["trail_seq"], ["trail_events.seq"], name=op.f("fk_model_profiles_trail_seq_trail_events")),
        sa.PrimaryKeyConstraint("model_version_id", name=op.f("pk_model_profiles")),
    )
    allowed = ", ".join(f"'{s}'" for s in TICKET_STATES)
    op.create_table(
        "retrain_tickets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("evidence_key", sa.String(length=64), nullable=False),
        sa.Column("trigger_id", sa.String(length=64), nullable=False),
        sa.Column("trigger_kind", sa.String(length=40), nullable=False),
        sa.Column("model_version_id", sa.String(length=128), nullable=True),
        sa.Column("evidence", JSON, nullable=False),
        sa.Column("monitor_run_id", sa.Integer(), nullable=True),
        sa.Column("pack_name", sa.String(length=200), nullable=False),
        sa.Column("pack_version", sa.String(length=100), nullable=False),
        sa.Column("pack_hash", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("steps", JSON, nullable=False),
        sa.Column("new_model_version", sa.String(length=128), nullable=True),
        _time("opened_at"),
        _time("updated_at"),
        sa.Column("trail_seq", SEQ, nullable=False),
        sa.CheckConstraint(f"state IN ({allowed})", name=op.f("ck_retrain_tickets_state")),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.version_id"], name=op.f("fk_retrain_tickets_model_version_id_model_versions")),
        sa.ForeignKeyConstraint(["monitor_run_id"], ["monitor_runs.id"], name=op.f("fk_retrain_tickets_monitor_run_id_monitor_runs")),
        sa.ForeignKeyConstraint(["trail_seq"], ["trail_events.seq"], name=op.f("fk_retrain_tickets_trail_seq_trail_events")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retrain_tickets")),
        sa.UniqueConstraint("evidence_key", name=op.f("uq_retrain_tickets_evidence_key")),
    )
    op.create_index(op.f("ix_retrain_tickets_model_version_id"), "retrain_tickets", ["model_version_id"])
    op.create_index(op.f("ix_retrain_tickets_monitor_run_id"), "retrain_tickets", ["monitor_run_id"])
    op.create_index(op.f("ix_retrain_tickets_state"), "retrain_tickets", ["state"])


def downgrade() -> None:
    for name in ("ix_retrain_tickets_state", "ix_retrain_tickets_monitor_run_id", "ix_retrain_tickets_model_version_id"):
        op.drop_index(name, table_name="retrain_tickets")
    op.drop_table("retrain_tickets")
    op.drop_table("model_profiles")
    op.drop_index(op.f("ix_monitor_runs_window_end"), table_name="monitor_runs")
    op.drop_table("monitor_runs")
