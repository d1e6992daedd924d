"""Deployment policy: the installation binds each gated stage to a pack; every move names its gate.

* ``deployment_policies``: one row per binding of ``canary`` or ``production``
  to a pack (reference, name, version, pinned content hash) and to what the
  gate's data must cover (minimum events and users, which data set). Rows are
  only added; the latest row of a stage is the binding in force.
* ``deployments`` gains the gate of each move: the pack (name, version, content
  hash), the audit whose gate passed and the binding in force. Rows written
  before this revision have NULL there (their gate is not known).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE = "deployment_policies"
GATE_COLUMNS = (
    ("gate_pack", sa.String(length=200)),
    ("gate_pack_version", sa.String(length=100)),
    ("gate_pack_hash", sa.String(length=128)),
    ("gate_audit_id", sa.Integer()),
    ("gate_policy_id", sa.Integer()),
)


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("pack_ref", sa.String(length=300), nullable=False),
        sa.Column("pack_name", sa.String(length=200), nullable=False),
        sa.Column("pack_version", sa.String(length=100), nullable=False),
        sa.Column("pack_hash", sa.String(length=128), nullable=False),
        sa.Column("min_events", sa.BigInteger(), nullable=False),
        sa.Column("min_users", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(length=128), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("trail_seq", SEQ, nullable=False),
        sa.CheckConstraint("stage IN ('canary', 'production')", name=op.f("ck_deployment_policies_stage")),
        sa.ForeignKeyConstraint(
            ["trail_seq"], ["trail_events.seq"], name=op.f("fk_deployment_policies_trail_seq_trail_events")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_policies")),
    )
    op.create_index("ix_deployment_policies_stage", TABLE, ["stage", "id"])
    # Nullable columns with no default: ALTER TABLE ADD COLUMN on both engines (no table copy on SQLite).
    for name, type_ in GATE_COLUMNS:
        op.add_column("deployments", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    # SQLite (3.35+) drops a plain column in place; batch mode copies the table where it cannot.
    with op.batch_alter_table("deployments") as batch:
        for name, _ in reversed(GATE_COLUMNS):
            batch.drop_column(name)
    op.drop_index("ix_deployment_policies_stage", table_name=TABLE)
    op.drop_table(TABLE)
