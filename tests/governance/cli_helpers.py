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


def import_consent(data: object, folder: object, *, database_url: str | None = None, pack: str = "eu-gdpr-dsa", without: set[str] = frozenset(), **shares: float) -> set[str]:
    """Import DATA's users' consent into the store, as a consent-management platform's export would bring it.

    Writes the synthetic export of ``recgov consent synth-export`` under ``folder`` (its purposes from ``pack``;
    ``shares``: ``refusals``, ``withdrawals``, ``gpc``), drops the rows of the subjects in ``without`` (who are then
    left with no record), and imports the rest with ``recgov consent import``. Returns the subjects whose records were
    imported.
    """
    import pandas as pd
    from pathlib import Path

    target = Path(str(folder)) / "consent.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    options = [f"--{name}={value}" for name, value in shares.items()]
    ok("consent", "synth-export", data, "--out", target, "--pack", pack, *options)
    export = pd.read_csv(target, dtype={"subject": str}, keep_default_na=False)
    if without:
        export = export[~export["subject"].isin(without)]
        export.to_csv(target, index=False)
    store = ("--database-url", database_url) if database_url else ()
    ok("consent", "import", target, "--pack", pack, *store)
    return set(export["subject"])


def recent_events_csv(path: object, victim: str, *, n_users: int, n_items: int, n_interactions: int, seed: int) -> object:
    """A small synthetic event log ending two days ago (inside every pack's retention) whose busiest user is
    ``victim``, written as CSV to ``path`` (returned)."""
    from datetime import UTC, datetime, timedelta

    import pandas as pd

    from recommender.synthetic import SyntheticSpec, generate

    data = generate(SyntheticSpec(n_users=n_users, n_items=n_items, n_interactions=n_interactions, seed=seed, event_mix={"rating": 1.0}))
    events = data.events.drop(columns=["session_id", "context"]).copy()
    events["user_id"] = events["user_id"].astype(str)
    busiest = events["user_id"].value_counts().index[0]
    events.loc[events["user_id"] == busiest, "user_id"] = victim
    stamps = pd.to_datetime(events["timestamp"], utc=True)
    events["timestamp"] = stamps + (pd.Timestamp(datetime.now(UTC) - timedelta(days=2)) - stamps.max())
    events.to_csv(path, index=False)
    return path
