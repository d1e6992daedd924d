"""Suppressions bound to their lookup.

``suppressions.binding``: HMAC-SHA256, under the installation key, of the row's
lookup and its trail event's sequence number (:func:`audits.suppression.suppression_binding`).
The lookup is in no trail event (it would link the trail to a raw id), so
without the binding a row moved to another lookup, an erased subject's
restriction handed to nobody, read as intact. Whoever writes to the database
without the installation key cannot make a binding for another lookup. The
row's ``subject.suppressed`` event says ``bound: true``, so a binding set to
NULL is found too. Nullable: rows written before this revision have none (their
events do not say ``bound``).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "suppressions"
COLUMN = "binding"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column(COLUMN, sa.String(length=64), nullable=True))


def downgrade() -> None:
    # Not a batch operation: on SQLite that would copy the table and lose its append-only triggers.
    # ALTER TABLE ... DROP COLUMN keeps them (SQLite 3.35 and later, and PostgreSQL).
    op.execute(f"ALTER TABLE {TABLE} DROP COLUMN {COLUMN}")
