"""Privacy, harmful content and serving: consent history, subject requests, flags, reports,
escalation cases, item blocks, served decisions and failed requests.

``consent_records`` is append-only like the trail: triggers refuse UPDATE and
DELETE (and on PostgreSQL TRUNCATE). Erasure does not delete consent rows; it
shreds the subject's pseudonym secret (see ``audits/consent.py``).

``upgrade`` is one long function on purpose: a migration is read and reviewed
as one script that creates these tables in order, and it never changes once
applied, so splitting it would only scatter the schema it states.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY = "consent_records"
OPEN_CASE = "status IN ('open', 'triaged')"


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _one_of(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=op.f(f"ck_{table}_{column}"))


def _trail_seq(table: str, column: str = "trail_seq") -> list[sa.SchemaItem]:
    return [
        sa.Column(column, SEQ, nullable=False),
        sa.ForeignKeyConstraint([column], ["trail_events.seq"], name=op.f(f"fk_{table}_{column}_trail_events")),
    ]


def _create_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # recgov_refuse_change() comes with revision 0001.
        op.execute(
            f"CREATE TRIGGER {APPEND_ONLY}_append_only BEFORE UPDATE OR DELETE ON {APPEND_ONLY} "
            "FOR EACH ROW EXECUTE FUNCTION recgov_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {APPEND_ONLY}_no_truncate BEFORE TRUNCATE ON {APPEND_ONLY} "
            "FOR EACH STATEMENT EXECUTE FUNCTION recgov_refuse_change()"
        )
        return
    for operation in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {APPEND_ONLY}_no_{operation.lower()} BEFORE {operation} ON {APPEND_ONLY} "
            f"BEGIN SELECT RAISE(ABORT, 'recgov: {operation} on {APPEND_ONLY} is refused: "
            "the table is append-only'); END"
        )


def _drop_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {APPEND_ONLY}_append_only ON {APPEND_ONLY}")
        op.execute(f"DROP TRIGGER IF EXISTS {APPEND_ONLY}_no_truncate ON {APPEND_ONLY}")
        return
    op.execute(f"DROP TRIGGER IF EXISTS {APPEND_ONLY}_no_update")
    op.execute(f"DROP TRIGGER IF EXISTS {APPEND_ONLY}_no_delete")


def upgrade() -> None:
    op.create_table(
        "consent_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("jurisdiction", sa.String(length=32), nullable=True),
        sa.Column("purpose", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("lawful_basis", sa.String(length=30), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("evidence", _json(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        *_trail_seq("consent_records"),
        _one_of("consent_records", "status", ("granted", "denied", "withdrawn", "opted_out", "objected")),
        _one_of("consent_records", "lawful_basis", ("consent", "legitimate_interest", "contract")),
        _one_of("consent_records", "source", ("api", "banner", "tcf", "gpc", "import")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_records")),
    )
    op.create_index("ix_consent_records_subject", "consent_records", ["subject", "purpose", "recorded_at"])
    _create_triggers()

    op.create_table(
        "subject_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", _json(), nullable=True),
        *_trail_seq("subject_requests"),
        _one_of("subject_requests", "kind", ("access", "erasure", "objection")),
        _one_of("subject_requests", "status", ("received", "in_progress", "completed", "failed")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_requests")),
    )
    op.create_index(op.f("ix_subject_requests_subject"), "subject_requests", ["subject"])

    op.create_table(
        "item_flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        *_trail_seq("item_flags"),
        _one_of("item_flags", "source", ("metadata", "api", "model", "report")),
        sa.CheckConstraint("confidence >= 0 AND confidence <= 1", name=op.f("ck_item_flags_confidence")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item_flags")),
    )
    op.create_index(op.f("ix_item_flags_item_id"), "item_flags", ["item_id"])

    op.create_table(
        "item_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=200), nullable=False),
        sa.Column("reporter", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *_trail_seq("item_reports"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item_reports")),
    )
    op.create_index(op.f("ix_item_reports_item_id"), "item_reports", ["item_id"])
    op.create_index(op.f("ix_item_reports_created_at"), "item_reports", ["created_at"])

    op.create_table(
        "escalation_cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=200), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("sla_due", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("action", sa.String(length=10), nullable=True),
        *_trail_seq("escalation_cases"),
        _one_of("escalation_cases", "severity", ("low", "medium", "high", "critical")),
        _one_of("escalation_cases", "status", ("open", "triaged", "resolved", "dismissed")),
        _one_of("escalation_cases", "action", ("block", "unblock")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_cases")),
    )
    op.create_index(op.f("ix_escalation_cases_item_id"), "escalation_cases", ["item_id"])
    op.create_index(
        "uq_escalation_cases_open",
        "escalation_cases",
        ["item_id", "rule_id"],
        unique=True,
        sqlite_where=sa.text(OPEN_CASE),
        postgresql_where=sa.text(OPEN_CASE),
    )

    op.create_table(
        "item_blocks",
        sa.Column("item_id", sa.String(length=200), nullable=False),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        *_trail_seq("item_blocks"),
        sa.ForeignKeyConstraint(
            ["case_id"], ["escalation_cases.id"], name=op.f("fk_item_blocks_case_id_escalation_cases")
        ),
        sa.PrimaryKeyConstraint("item_id", name=op.f("pk_item_blocks")),
    )

    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.String(length=36), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=True),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("pack_name", sa.String(length=200), nullable=False),
        sa.Column("pack_version", sa.String(length=100), nullable=False),
        sa.Column("pack_hash", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=True),
        sa.Column("slate", _json(), nullable=False),
        sa.Column("context", _json(), nullable=False),
        *_trail_seq("decisions", "batch_seq"),
        _one_of("decisions", "mode", ("personalized", "fallback", "non_profiling")),
        sa.PrimaryKeyConstraint("decision_id", name=op.f("pk_decisions")),
    )
    op.create_index(op.f("ix_decisions_decided_at"), "decisions", ["decided_at"])
    op.create_index(op.f("ix_decisions_subject"), "decisions", ["subject"])
    op.create_index(op.f("ix_decisions_batch_seq"), "decisions", ["batch_seq"])

    op.create_table(
        "failed_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cause", sa.String(length=100), nullable=False),
        sa.Column("detail", _json(), nullable=False),
        *_trail_seq("failed_requests"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_failed_requests")),
    )
    op.create_index(op.f("ix_failed_requests_at"), "failed_requests", ["at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_failed_requests_at"), table_name="failed_requests")
    op.drop_table("failed_requests")
    op.drop_index(op.f("ix_decisions_batch_seq"), table_name="decisions")
    op.drop_index(op.f("ix_decisions_subject"), table_name="decisions")
    op.drop_index(op.f("ix_decisions_decided_at"), table_name="decisions")
    op.drop_table("decisions")
    op.drop_table("item_blocks")
    op.drop_index("uq_escalation_cases_open", table_name="escalation_cases")
    op.drop_index(op.f("ix_escalation_cases_item_id"), table_name="escalation_cases")
    op.drop_table("escalation_cases")
    op.drop_index(op.f("ix_item_reports_created_at"), table_name="item_reports")
    op.drop_index(op.f("ix_item_reports_item_id"), table_name="item_reports")
    op.drop_table("item_reports")
    op.drop_index(op.f("ix_item_flags_item_id"), table_name="item_flags")
    op.drop_table("item_flags")
    op.drop_index(op.f("ix_subject_requests_subject"), table_name="subject_requests")
    op.drop_table("subject_requests")
    _drop_triggers()
    op.drop_index("ix_consent_records_subject", table_name="consent_records")
    op.drop_table("consent_records")
