"""Feedback: outcome events (impressions, clicks, conversions, dwell, ratings) joined to their decisions.

``outcome_events`` holds one row per event, under the subject's pseudonym, with
the decision that served the item (by the decision id the event carried, or by
subject, item and attribution window) or why none was found. ``event_key`` is
unique, so importing the same events twice adds nothing. Unlike decisions and
consent records the table is not append-only: outcome events are no proof of
lawful processing, so erasure deletes a subject's rows and the retention purge
deletes rows older than the pack's window.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE = "outcome_events"
KINDS = ("impression", "click", "conversion", "dwell", "rating")
ATTRIBUTIONS = ("decision_id", "window", "no_decision_before", "outside_window", "item_not_served")
SOURCES = ("api", "import")


def _one_of(column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=op.f(f"ck_{TABLE}_{column}"))


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", SEQ, nullable=False),
        sa.Column("event_key", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("item_id", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("decision_id", sa.String(length=36), nullable=True),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("attribution", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trail_seq", SEQ, nullable=False),
        _one_of("kind", KINDS),
        _one_of("attribution", ATTRIBUTIONS),
        _one_of("source", SOURCES),
        sa.CheckConstraint(
            "(attribution IN ('decision_id', 'window')) = (decision_id IS NOT NULL AND position IS NOT NULL)",
            name=op.f(f"ck_{TABLE}_joined"),
        ),
        sa.ForeignKeyConstraint(["decision_id"], ["decisions.decision_id"], name=op.f(f"fk_{TABLE}_decision_id_decisions")),
        sa.ForeignKeyConstraint(["trail_seq"], ["trail_events.seq"], name=op.f(f"fk_{TABLE}_trail_seq_trail_events")),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{TABLE}")),
        sa.UniqueConstraint("event_key", name=op.f(f"uq_{TABLE}_event_key")),
    )
    op.create_index("ix_outcome_events_subject", TABLE, ["subject", "occurred_at"])
    op.create_index(op.f("ix_outcome_events_occurred_at"), TABLE, ["occurred_at"])
    op.create_index(op.f("ix_outcome_events_decision_id"), TABLE, ["decision_id"])
    op.create_index(op.f("ix_outcome_events_trail_seq"), TABLE, ["trail_seq"])


def downgrade() -> None:
    for name in ("ix_outcome_events_trail_seq", "ix_outcome_events_decision_id", "ix_outcome_events_occurred_at", "ix_outcome_events_subject"):
        op.drop_index(name, table_name=TABLE)
    op.drop_table(TABLE)
