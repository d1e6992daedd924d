"""Exposure ledgers keyed by their configuration.

``exposure_ledgers.config_key``: SHA-256 of what gives a saved ledger's debts
their meaning (the amortised step's config and the pack's provider-group codes).
A ledger saved under another key (or, like every row before this revision,
without one) is not read back: the serving engine starts an empty ledger and
records the reset on the trail (``rerank.exposure_state_reset``). Nullable: the
existing rows keep their state until the next engine resets them.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "exposure_ledgers"
COLUMN = "config_key"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column(COLUMN, sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column(COLUMN)
