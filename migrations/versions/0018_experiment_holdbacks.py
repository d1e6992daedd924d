"""Experiments: a holdback kept after the stop, and the index that finds an experiment's decisions.

``experiments.holdback_until``: a stopped experiment whose plan declares
``holdback_days`` keeps serving the control to its holdback until then (NULL:
none). Serving reads the experiments in force on every list (running, or
stopped with a holdback still held back), through its index.

``ix_decisions_experiment``: an expression index on the experiment id in a
decision's context, with ``decided_at``, so an analysis reads the experiment's
records and not every list served since its start. The expression differs per
engine and is written exactly as the analysis's query writes it
(``governance.experiments.guardrails.EXPERIMENT_ID_SQL``): a planner uses an
expression index only for an identical expression.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXPERIMENT_ID_SQL = {
    "postgresql": "((context #>> '{experiment,id}'::text[])::integer)",
    "sqlite": "CAST(json_extract(context, '$.experiment.id') AS INTEGER)",
}


def upgrade() -> None:
    # A nullable column with no default: an ALTER TABLE ADD COLUMN on both engines (no table copy on SQLite).
    op.add_column("experiments", sa.Column("holdback_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_experiments_holdback_until"), "experiments", ["holdback_until"])
    expression = EXPERIMENT_ID_SQL[op.get_bind().dialect.name]
    op.execute(f"CREATE INDEX ix_decisions_experiment ON decisions (({expression}), decided_at)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_decisions_experiment")
    op.drop_index(op.f("ix_experiments_holdback_until"), table_name="experiments")
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("holdback_until")
