"""The online store's outbox: invalidations of Redis recorded with the change they follow.

``online_store_outbox``: one row per key whose invalidation Redis has not been
told yet (a subject's keyed hash as the online store names it, or ``*`` for a
global one), written in the transaction of the consent change, erasure, block,
availability change or harm flag/case it follows and deleted once applied.
Pseudonymous keys only: no raw subject id.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "online_store_outbox",
        sa.Column("id", SEQ, autoincrement=True, nullable=False),
        sa.Column("subject_key", sa.String(length=64), nullable=False),
        sa.Column("hold", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_online_store_outbox")),
        sa.UniqueConstraint("subject_key", name=op.f("uq_online_store_outbox_subject_key")),
    )


def downgrade() -> None:
    op.drop_table("online_store_outbox")
