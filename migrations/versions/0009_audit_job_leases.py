"""Audit job leases: a running job's heartbeat, so that a job left running by a vanished host is failed.

``audit_jobs.heartbeat_at`` is when the runner holding a running job last
renewed its lease (set when the job is claimed, renewed every few seconds while
the audit runs). A running job whose heartbeat is older than the lease is failed
as interrupted by any runner, on any host. Rows claimed before this revision
have no heartbeat (NULL): their ``started_at`` stands for it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "audit_jobs"
COLUMN = "heartbeat_at"


def upgrade() -> None:
    # A nullable column with no default: an ALTER TABLE ADD COLUMN on both engines (no table copy on SQLite).
    op.add_column(TABLE, sa.Column(COLUMN, sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # SQLite (3.35+) drops a plain column in place; batch mode copies the table where it cannot.
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column(COLUMN)
