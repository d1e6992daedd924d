"""Exposure ledgers: the carried exposure debt of each amortised re-ranking step.

``exposure_ledgers``: one row per pack and step label, holding the step's
state (per provider group its debt and the attention it received, the
attention served in all, how many lists, optionally per item its debt), the
state's SHA-256, and the trail event that anchored it. Group and item
exposure only: no subject.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "exposure_ledgers",
        sa.Column("pack_name", sa.String(length=200), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=False),
        sa.Column("state", JSON, nullable=False),
        sa.Column("state_hash", sa.String(length=128), nullable=False),
        sa.Column("lists", sa.BigInteger(), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trail_seq", SEQ, nullable=False),
        sa.ForeignKeyConstraint(["trail_seq"], ["trail_events.seq"], name=op.f("fk_exposure_ledgers_trail_seq_trail_events")),
        sa.PrimaryKeyConstraint("pack_name", "step", name=op.f("pk_exposure_ledgers")),
    )


def downgrade() -> None:
    op.drop_table("exposure_ledgers")
