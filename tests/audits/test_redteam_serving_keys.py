"""The ``serving`` role in the store (revision 0011), on SQLite and PostgreSQL, through the command line.

The hole: a serving system could only be given an ``operator`` key (the store's
check constraint knew four roles), and with it the rights of a person. Keys
made before the revision keep their role and token; a downgrade that would
orphan serving keys is refused in one line.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from audits.db import create_store_engine
from audits.migrate import current_revision, downgrade, head_revision, upgrade
from governance.api.keys import create_key, hash_token, live_key
from governance.cli import app
from recommender.errors import ConfigError

SERVING_KEYS_LEFT_START = "revision 0011 cannot be undone: 1 API key(s) have the role 'serving'"


def test_keys_create_makes_a_serving_key(db_url: str) -> None:
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "web-frontend", "--role", "serving", "--database-url", db_url, "--json"])
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["role"] == "serving"
    listed = runner.invoke(app, ["keys", "list", "--database-url", db_url, "--json"])
    assert [k["role"] for k in json.loads(listed.stdout)["keys"]] == ["serving"]


def test_keys_made_before_the_revision_keep_working_and_a_downgrade_never_orphans_serving_keys(db_url: str) -> None:
    engine = create_store_engine(db_url)
    try:
        upgrade(engine, "0010")
        with engine.begin() as connection:  # a key as recgov stored it before serving keys existed
            connection.execute(
                text("INSERT INTO api_keys (name, key_hash, role, created_at) VALUES ('ops', :h, 'operator', :t)"),
                {"h": hash_token("rgk_before"), "t": datetime.now(UTC)},
            )
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            kept = live_key(connection, "rgk_before")
        assert kept is not None and kept.role == "operator"
        with Session(engine) as session, session.begin():
            create_key(session, name="web-frontend", role="serving")
        with pytest.raises(ConfigError) as refused:
            downgrade(engine, "0010")
        assert str(refused.value).startswith(SERVING_KEYS_LEFT_START)
        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            assert live_key(connection, "rgk_before") is not None
    finally:
        engine.dispose()


def test_a_downgrade_without_serving_keys_keeps_the_others(db_url: str) -> None:
    engine = create_store_engine(db_url)
    try:
        upgrade(engine)
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO api_keys (name, key_hash, role, created_at) VALUES ('dpo', :h, 'auditor', :t)"),
                {"h": hash_token("rgk_dpo"), "t": datetime.now(UTC)},
            )
        downgrade(engine, "0010")
        with engine.connect() as connection:
            kept = live_key(connection, "rgk_dpo")
        assert kept is not None and kept.role == "auditor"
        with pytest.raises(IntegrityError), engine.begin() as connection:  # the old constraint refuses the role again
            connection.execute(
                text("INSERT INTO api_keys (name, key_hash, role, created_at) VALUES ('web', :h, 'serving', :t)"),
                {"h": hash_token("rgk_web"), "t": datetime.now(UTC)},
            )
    finally:
        engine.dispose()
