"""API keys: the role ``serving``, outside the ladder, for the key of a serving system.

``api_keys.role`` also allows ``serving``. Keys of the other roles are not
touched and keep their rights. A downgrade is refused while a serving key
exists (revoked ones included: the trail names them): revoke and keep them, or
stay at this revision.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from recommender.errors import ConfigError

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES_BEFORE = ("viewer", "auditor", "operator", "admin")
ROLES_AFTER = (*ROLES_BEFORE, "serving")
SERVING_KEYS_LEFT = (
    "revision 0011 cannot be undone: {n} API key(s) have the role 'serving', which earlier revisions do not know; "
    "they stay listed for the trail, so stay at revision 0011"
)


def _in(values: tuple[str, ...]) -> str:
    return f"role IN ({', '.join(repr(v) for v in values)})"


def _api_keys(roles: tuple[str, ...]) -> sa.Table:
    """``api_keys`` as revision 0005 made it, with ``roles`` allowed (for SQLite's table copy)."""
    return sa.Table(
        "api_keys",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(_in(roles), name="ck_api_keys_role"),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )


def _roles(roles: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f("ck_api_keys_role"), "api_keys", type_="check")
        op.create_check_constraint(op.f("ck_api_keys_role"), "api_keys", _in(roles))
        return
    # SQLite cannot alter a constraint: copy the table with the new one (rows, ids and keys kept).
    with op.batch_alter_table("api_keys", copy_from=_api_keys(roles), recreate="always"):
        pass


def upgrade() -> None:
    _roles(ROLES_AFTER)


def downgrade() -> None:
    n = op.get_bind().execute(sa.text("SELECT count(*) FROM api_keys WHERE role = 'serving'")).scalar_one()
    if n:
        raise ConfigError(SERVING_KEYS_LEFT.format(n=n))
    _roles(ROLES_BEFORE)
