"""Governed experiments: the frozen plan and every look at its data.

``experiments`` holds each plan as frozen (normalized JSON, content hash, the
assignment salt) with the trail events that planned, started and stopped it;
``experiment_looks`` every analysis, planned or exploratory, with its result
and its trail event. Looks are only added.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _time(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("plan", JSON, nullable=False),
        sa.Column("plan_hash", sa.String(length=64), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        _time("planned_at", False),
        _time("started_at", True),
        _time("stopped_at", True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("plan_seq", SEQ, nullable=False),
        sa.Column("start_seq", SEQ, nullable=True),
        sa.Column("stop_seq", SEQ, nullable=True),
        sa.CheckConstraint("status IN ('planned', 'running', 'stopped')", name=op.f("ck_experiments_status")),
        sa.ForeignKeyConstraint(["plan_seq"], ["trail_events.seq"], name=op.f("fk_experiments_plan_seq_trail_events")),
        sa.ForeignKeyConstraint(["start_seq"], ["trail_events.seq"], name=op.f("fk_experiments_start_seq_trail_events")),
        sa.ForeignKeyConstraint(["stop_seq"], ["trail_events.seq"], name=op.f("fk_experiments_stop_seq_trail_events")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("name", name=op.f("uq_experiments_name")),
    )
    op.create_table(
        "experiment_looks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("look", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        _time("at", False),
        sa.Column("result", JSON, nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("trail_seq", SEQ, nullable=False),
        sa.CheckConstraint("kind IN ('planned', 'exploratory')", name=op.f("ck_experiment_looks_kind")),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], name=op.f("fk_experiment_looks_experiment_id_experiments")),
        sa.ForeignKeyConstraint(["trail_seq"], ["trail_events.seq"], name=op.f("fk_experiment_looks_trail_seq_trail_events")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment_looks")),
    )
    op.create_index("ix_experiment_looks_experiment", "experiment_looks", ["experiment_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_experiment_looks_experiment", table_name="experiment_looks")
    op.drop_table("experiment_looks")
    op.drop_table("experiments")
