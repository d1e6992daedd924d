"""Records anchored in the trail by digest: a decision or an audit result changed behind the database's back is caught."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from audits import open_store
from governance.cli import app

runner = CliRunner()


def test_a_rewritten_audit_result_or_verdict_breaks_trail_verify(db_url: str, tmp_path) -> None:
    result = runner.invoke(app, ["audit", "synthetic:n_users=150,n_items=90,n_interactions=5000", "--pack", "baseline", "--out", str(tmp_path / "o"), "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["trail", "verify", "--database-url", db_url]).exit_code == 0
    store = open_store(db_url)
    statement = text("UPDATE audit_results SET message = 'looks fine' WHERE id = (SELECT MIN(id) FROM audit_results)")
    try:
        with pytest.raises(DBAPIError, match="append-only|refused"):  # the database refuses it
            with store.engine.begin() as connection:
                connection.execute(statement)
        with store.engine.begin() as connection:  # an attacker with database access goes around the triggers
            if store.dialect == "postgresql":
                connection.execute(text("ALTER TABLE audit_results DISABLE TRIGGER USER"))
                connection.execute(statement)
                connection.execute(text("ALTER TABLE audit_results ENABLE TRIGGER USER"))
            else:
                connection.execute(text("DROP TRIGGER audit_results_no_update"))
                connection.execute(statement)
    finally:
        store.close()
    broken = runner.invoke(app, ["trail", "verify", "--database-url", db_url, "--json"])
    assert broken.exit_code == 1
    doc = json.loads(broken.stdout)
    assert doc["trail_intact"] is True and doc["anchored_records_intact"] is False and doc["intact"] is False
    assert doc["anchored_problems"][0]["table"] == "audit_results"
