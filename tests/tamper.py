"""What an attacker with the database's credentials does first: switch a table's append-only triggers off.

Inside the caller's transaction: PostgreSQL disables the table's user triggers, SQLite drops them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text


def switch_off_append_only(session: Any, table: str) -> None:
    """Let ``table`` be edited in place within ``session``'s transaction, as a tampering test needs."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
    else:
        for name in session.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"), {"t": table}).scalars().all():
            session.execute(text(f'DROP TRIGGER "{name}"'))
