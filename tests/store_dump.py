"""Every row of every table of a store, as text: what an attacker with a database dump sees.

Tests that promise a raw identifier is stored nowhere search this text for it.
"""

from __future__ import annotations

from sqlalchemy import inspect, text

from audits.db import Store


def dump_store(store: Store) -> str:
    """Every row of every table of ``store``, one ``repr`` of its tuple per line, tables by name and rows in
    sorted order: the same contents always dump to the same text. (PostgreSQL lists its tables in catalogue
    order, which moves when autovacuum rewrites a table's catalogue row, and returns rows in heap order.)"""
    parts = []
    with store.engine.connect() as connection:
        for table in sorted(inspect(store.engine).get_table_names()):
            parts.extend(sorted(repr(tuple(row)) for row in connection.execute(text(f'SELECT * FROM "{table}"'))))
    return "\n".join(parts)
