"""The audit trail: events, head, checkpoints, signing keys, subject secrets.

The trail tables are append-only: triggers refuse UPDATE, DELETE (and on
PostgreSQL TRUNCATE) of ``trail_events``, ``trail_checkpoints`` and
``signing_keys``; the one-row ``trail_head`` may only move forward.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY_TABLES = ("trail_events", "trail_checkpoints", "signing_keys")


def _create_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION recgov_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'recgov: % on % is refused: the table is append-only',
                    TG_OP, TG_TABLE_NAME;
            END $$
            """
        )
        op.execute(
            """
            CREATE FUNCTION recgov_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP <> 'UPDATE' THEN
                    RAISE EXCEPTION 'recgov: % on trail_head is refused', TG_OP;
                END IF;
                IF NEW.seq <= OLD.seq THEN
                    RAISE EXCEPTION 'recgov: the trail head only moves forward (from % to %)',
                        OLD.seq, NEW.seq;
                END IF;
                RETURN NEW;
            END $$
            """
        )
        for table in APPEND_ONLY_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION recgov_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION recgov_refuse_change()"
            )
        op.execute(
            "CREATE TRIGGER trail_head_forward_only BEFORE UPDATE OR DELETE ON trail_head "
            "FOR EACH ROW EXECUTE FUNCTION recgov_head_forward_only()"
        )
        op.execute(
            "CREATE TRIGGER trail_head_no_truncate BEFORE TRUNCATE ON trail_head "
            "FOR EACH STATEMENT EXECUTE FUNCTION recgov_refuse_change()"
        )
        return
    for table in APPEND_ONLY_TABLES:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'recgov: {operation} on {table} is refused: "
                "the table is append-only'); END"
            )
    op.execute(
        "CREATE TRIGGER trail_head_no_delete BEFORE DELETE ON trail_head "
        "BEGIN SELECT RAISE(ABORT, 'recgov: DELETE on trail_head is refused'); END"
    )
    op.execute(
        "CREATE TRIGGER trail_head_forward_only BEFORE UPDATE ON trail_head WHEN NEW.seq <= OLD.seq "
        "BEGIN SELECT RAISE(ABORT, 'recgov: the trail head only moves forward'); END"
    )


def _drop_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP TRIGGER IF EXISTS trail_head_forward_only ON trail_head")
        op.execute("DROP TRIGGER IF EXISTS trail_head_no_truncate ON trail_head")
        op.execute("DROP FUNCTION IF EXISTS recgov_refuse_change()")
        op.execute("DROP FUNCTION IF EXISTS recgov_head_forward_only()")
        return
    for table in APPEND_ONLY_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    op.execute("DROP TRIGGER IF EXISTS trail_head_no_delete")
    op.execute("DROP TRIGGER IF EXISTS trail_head_forward_only")


def upgrade() -> None:
    op.create_table(
        "trail_events",
        sa.Column("seq", SEQ, autoincrement=False, nullable=False),
        sa.Column("time", sa.String(length=27), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=True),
        sa.Column("objects", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_trail_events")),
    )
    op.create_index(op.f("ix_trail_events_subject"), "trail_events", ["subject"], unique=False)
    head = op.create_table(
        "trail_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_trail_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trail_head")),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])
    op.create_table(
        "signing_keys",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("algorithm", sa.String(length=20), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_signing_keys")),
    )
    op.create_table(
        "trail_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("time", sa.String(length=27), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["signing_keys.key_id"], name=op.f("fk_trail_checkpoints_key_id_signing_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trail_checkpoints")),
    )
    op.create_index(op.f("ix_trail_checkpoints_key_id"), "trail_checkpoints", ["key_id"], unique=False)
    op.create_table(
        "subject_secrets",
        sa.Column("lookup", sa.String(length=64), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("lookup", name=op.f("pk_subject_secrets")),
    )
    op.create_table(
        "store_meta",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_store_meta")),
    )
    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    op.drop_table("store_meta")
    op.drop_table("subject_secrets")
    op.drop_index(op.f("ix_trail_checkpoints_key_id"), table_name="trail_checkpoints")
    op.drop_table("trail_checkpoints")
    op.drop_table("signing_keys")
    op.drop_table("trail_head")
    op.drop_index(op.f("ix_trail_events_subject"), table_name="trail_events")
    op.drop_table("trail_events")
