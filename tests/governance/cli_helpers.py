"""Calling recgov's CLI from tests, and reading a whole store as a dump would show it.

Not a test module: the privacy and retrain CLI tests import it.
"""

from __future__ import annotations

import json

from sqlalchemy import inspect, text
from typer.testing import CliRunner

from audits import open_store
from governance.cli import app

runner = CliRunner()


def invoke(*args: object):  # noqa: ANN201
    """Run ``recgov ARGS`` (exceptions propagate: a traceback is a test failure, not an exit code)."""
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def ok(*args: object) -> dict:
    """Run ``recgov ARGS --json``; assert exit 0; return the JSON document."""
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def dump(url: str) -> str:
    """Every row of every table, as text: what a database dump shows."""
    store = open_store(url)
    try:
        parts = []
        with store.engine.connect() as connection:
            for table in inspect(store.engine).get_table_names():
                parts.extend(repr(tuple(row)) for row in connection.execute(text(f'SELECT * FROM "{table}"')))
        return "\n".join(parts)
    finally:
        store.close()


def count(url: str, table: str) -> int:
    """Rows of ``table`` in the store at ``url``."""
    store = open_store(url)
    try:
        with store.engine.connect() as connection:
            return connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
    finally:
        store.close()
