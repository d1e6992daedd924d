"""Item availability: items out of stock, withdrawn or restricted in a region, kept out of every list.

``item_availability`` holds one row per (item, region) ever made unavailable:
``region`` is ``*`` for everywhere, else a region code the request's context
names. ``unavailable`` is false once the item is available there again (rows are
never deleted, so the largest ``trail_seq`` moves with every change and serves
as the revision of what is unavailable). Each row names the trail event of its
latest change.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE = "item_availability"
REASONS = ("out_of_stock", "withdrawn", "geo_restricted")


def upgrade() -> None:
    allowed = ", ".join(f"'{value}'" for value in REASONS)
    op.create_table(
        TABLE,
        sa.Column("item_id", sa.String(length=200), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("unavailable", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trail_seq", SEQ, nullable=False),
        sa.CheckConstraint(f"reason IN ({allowed})", name=op.f(f"ck_{TABLE}_reason")),
        sa.CheckConstraint("reason != 'geo_restricted' OR region != '*'", name=op.f(f"ck_{TABLE}_geo_region")),
        sa.ForeignKeyConstraint(["trail_seq"], ["trail_events.seq"], name=op.f(f"fk_{TABLE}_trail_seq_trail_events")),
        sa.PrimaryKeyConstraint("item_id", "region", name=op.f(f"pk_{TABLE}")),
    )
    op.create_index(op.f("ix_item_availability_trail_seq"), TABLE, ["trail_seq"])


def downgrade() -> None:
    op.drop_index(op.f("ix_item_availability_trail_seq"), table_name=TABLE)
    op.drop_table(TABLE)
