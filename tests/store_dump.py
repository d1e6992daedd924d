"""Every row of every table of a store, as text: what an attacker with a database dump sees.

Tests that promise a raw identifier is stored nowhere search this text for it.
"""

from __future__ import annotations

from sqlalchemy import inspect, text

from audits.db import Store


def dump_store(store: Store) -> str:
    """Every row of every table of ``store``, one ``repr`` of its tuple per line."""
    parts = []
    with store.engine.connect() as connection:
        for table in inspect(store.engine).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                parts.append(repr(tuple(row)))
    return "\n".join(parts)
