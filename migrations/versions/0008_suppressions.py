"""Suppressions, and retrain requests: what an erasure leaves behind on purpose.

* ``suppressions`` (append-only): after crypto-shredding, a returning subject
  gets a new pseudonym with no consent history. A suppression row, found by a
  keyed hash of the raw id under the installation key, keeps the opt-outs and
  objections that were in force at erasure, and the erasure time before which
  the subject's events are never trained on again.
* ``subject_requests.kind`` also allows ``retrain``: the full retrain an
  erasure calls for, with its deadline from the policy pack.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE = "suppressions"
KINDS_BEFORE = ("access", "erasure", "objection")
KINDS_AFTER = ("access", "erasure", "objection", "retrain")
STATUSES = ("received", "in_progress", "completed", "failed")


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _subject_requests(kinds: tuple[str, ...]) -> sa.Table:
    """``subject_requests`` as revision 0004 made it, with ``kinds`` allowed (for SQLite's table copy)."""
    return sa.Table(
        "subject_requests",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", _json(), nullable=True),
        sa.Column("trail_seq", SEQ, nullable=False),
        sa.ForeignKeyConstraint(["trail_seq"], ["trail_events.seq"], name="fk_subject_requests_trail_seq_trail_events"),
        sa.CheckConstraint(_in("kind", kinds), name="ck_subject_requests_kind"),
        sa.CheckConstraint(_in("status", STATUSES), name="ck_subject_requests_status"),
        sa.PrimaryKeyConstraint("id", name="pk_subject_requests"),
        sa.Index("ix_subject_requests_subject", "subject"),
    )


def _request_kinds(kinds: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f("ck_subject_requests_kind"), "subject_requests", type_="check")
        op.create_check_constraint(op.f("ck_subject_requests_kind"), "subject_requests", _in("kind", kinds))
        return
    # SQLite cannot alter a constraint: copy the table with the new one (rows, index and key kept).
    with op.batch_alter_table("subject_requests", copy_from=_subject_requests(kinds), recreate="always"):
        pass


def upgrade() -> None:
    _request_kinds(KINDS_AFTER)
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lookup", sa.String(length=64), nullable=False),
        sa.Column("denied", _json(), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trail_seq", SEQ, nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["subject_requests.id"], name=op.f("fk_suppressions_request_id_subject_requests")
        ),
        sa.ForeignKeyConstraint(["trail_seq"], ["trail_events.seq"], name=op.f("fk_suppressions_trail_seq_trail_events")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
    )
    op.create_index(op.f("ix_suppressions_lookup"), TABLE, ["lookup"])
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
    op.drop_index(op.f("ix_suppressions_lookup"), table_name=TABLE)
    op.drop_table(TABLE)
    # Fails, as it should, while a retrain request is stored: downgrading would lose it.
    _request_kinds(KINDS_BEFORE)
