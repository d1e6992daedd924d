"""`recgov keys create|list|revoke` and the API's settings."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from audits import open_store
from governance.api import ApiSettings
from governance.api.keys import authenticate, hash_token
from governance.cli import app

runner = CliRunner()


def test_keys_create_shows_the_token_once_and_list_and_revoke_work(db_url: str) -> None:
    created = runner.invoke(app, ["keys", "create", "dpo", "--role", "auditor", "--database-url", db_url])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("rgk_") and created.stdout.count(token) == 1
    assert "shown once" in created.stderr
    listed = runner.invoke(app, ["keys", "list", "--database-url", db_url, "--json"])
    assert listed.exit_code == 0 and token not in listed.stdout
    (key,) = json.loads(listed.stdout)["keys"]
    assert key | {"created_at": None} == {"id": 1, "name": "dpo", "role": "auditor", "created_at": None, "revoked_at": None}
    store = open_store(db_url)
    try:
        with store.session() as session:
            assert authenticate(session, token).name == "dpo"
            assert session.execute(__import__("sqlalchemy").text("SELECT key_hash FROM api_keys")).scalar_one() == hash_token(token)
        revoked = runner.invoke(app, ["keys", "revoke", "1", "--database-url", db_url])
        assert revoked.exit_code == 0 and revoked.stdout.startswith("revoked key 1 (dpo) at ")
        with store.session() as session:
            assert authenticate(session, token) is None
    finally:
        store.close()


def test_keys_bad_input_is_one_line_and_exit_2(db_url: str) -> None:
    bad_role = runner.invoke(app, ["keys", "create", "x", "--role", "root", "--database-url", db_url])
    assert bad_role.exit_code == 2
    assert bad_role.stderr.strip() == "error: unknown role 'root'; choose one of: viewer, auditor, operator, admin, serving"
    missing = runner.invoke(app, ["keys", "revoke", "42", "--database-url", db_url])
    assert missing.exit_code == 2 and missing.stderr.strip() == "error: no API key with id 42; see 'recgov keys list'"


def test_production_refuses_insecure_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECGOV_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="RECGOV_DATABASE_URL must be set in production"):
        ApiSettings()
    with pytest.raises(ValidationError, match="RECGOV_API_EXPOSE_ERRORS must be off in production"):
        ApiSettings(database_url="postgresql+psycopg://u@h/db", api_expose_errors=True)
    assert ApiSettings(database_url="postgresql+psycopg://u@h/db").environment == "production"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RECGOV_API_THREADS", "0", "RECGOV_API_THREADS: Input should be greater than or equal to 1 (got '0')"),
        ("RECGOV_API_THREADS", "many", "RECGOV_API_THREADS: Input should be a valid integer"),
        ("RECGOV_CANARY_SHARE", "2", "RECGOV_CANARY_SHARE: Input should be less than or equal to 1 (got '2')"),
        ("RECGOV_API_COMPUTE", "gpu", "RECGOV_API_COMPUTE: Input should be 'process' or 'inline' (got 'gpu')"),
        ("RECGOV_ENVIRONMENT", "production", "RECGOV_DATABASE_URL must be set in production"),
    ],
)
def test_serve_with_bad_settings_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str) -> None:
    monkeypatch.setenv(variable, value)
    result = runner.invoke(app, ["serve", "--port", "1"])  # refused before anything listens
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().startswith("error: invalid settings: ") and message in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1
