"""Consent imports: one key per imported record, so importing the same file twice adds nothing.

``consent_import_keys`` (append-only) holds, for each consent record a bulk
import appended, a digest of what the record says (the subject's pseudonym,
purpose, status, time, source), under a primary key: a row already imported is
found and skipped, and two imports racing on the same rows cannot both append
them. The digest names no one: it is made from the pseudonym, never the raw id.
``trail_seq`` names the ``consent.imported`` event of the batch that appended
the record, the event its consent record points at too. It is no foreign key,
so that the tables it would refer to stay exactly as their own triggers guard
them (PostgreSQL checks a referencing key before an append-only trigger on
TRUNCATE).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE = "consent_import_keys"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("trail_seq", SEQ, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_consent_import_keys")),
    )
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
    else:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_no_{operation.lower()} BEFORE {operation} ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, 'recgov: {operation} on {TABLE} is refused: the table is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE}")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_delete")
    op.drop_table(TABLE)
