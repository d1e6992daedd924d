"""Audit results become append-only: triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL).

An audit's results are evidence. Each audit's trail event already holds a
SHA-256 over its results, so a change made around the database is caught by
``recgov trail verify``; with these triggers the database also refuses one made
through it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "audit_results"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # recgov_refuse_change() comes with revision 0001.
        op.execute(
            f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION recgov_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION recgov_refuse_change()"
        )
        return
    for operation in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_{operation.lower()} BEFORE {operation} ON {TABLE} "
            f"BEGIN SELECT RAISE(ABORT, 'recgov: {operation} on {TABLE} is refused: the table is append-only'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE}")
        return
    op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_update")
    op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_delete")
