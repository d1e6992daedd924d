"""Subject requests indexed in their listing's order.

``GET /v1/requests`` and the console's requests page list requests oldest
first, by ``(requested_at, id)``, a page at a time after a cursor
(:func:`audits.requests.page_requests`). The index makes each page one range
read, however many requests the store holds; without it every page sorted the
whole table.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_subject_requests_requested_at"


def upgrade() -> None:
    op.create_index(INDEX, "subject_requests", ["requested_at", "id"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="subject_requests")
