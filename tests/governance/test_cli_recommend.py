"""`recgov recommend`: a governed list from a recorded model, with its decision record, on both engines."""

from __future__ import annotations

import json

from sqlalchemy import func, select
from typer.testing import CliRunner

from audits import open_store
from audits.consent import record_consent
from audits.decisions import verify_decisions
from audits.models import DecisionRecord
from governance.cli import app

runner = CliRunner()
DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"


def test_recommend_honours_consent_and_gpc_and_records_every_decision(db_url: str) -> None:
    trained = runner.invoke(app, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "8", "--iterations", "4", "--database-url", db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout)["model_version"]
    user = "u000012"

    def recommend(*extra: str) -> dict:
        result = runner.invoke(app, ["recommend", user, "--model", version, "--data", DATA, "--k", "5", "--database-url", db_url, "--json", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert recommend("--pack", "eu-gdpr-dsa")["mode"] == "non_profiling"  # opt-in consent, no record
    store = open_store(db_url)
    try:
        with store.session() as session:
            record_consent(session, subject_id=user, purpose="personalization", status="granted", lawful_basis="consent", source="api")
    finally:
        store.close()
    personalized = recommend("--pack", "eu-gdpr-dsa")
    assert personalized["mode"] == "personalized" and len(personalized["items"]) == 5
    assert all(item["tags"] for item in personalized["items"])
    gpc = recommend("--pack", "california-ccpa", "--gpc")
    assert gpc["mode"] == "non_profiling" and "Sec-GPC" in gpc["consent"]

    store = open_store(db_url)
    try:
        with store.snapshot() as connection:
            rows = connection.execute(select(DecisionRecord)).all()
            assert connection.execute(select(func.count()).select_from(DecisionRecord)).scalar_one() == 3
            assert verify_decisions(connection) == []
            dump = repr([tuple(r) for r in rows])
    finally:
        store.close()
    assert user not in dump, "the raw subject id must not be stored with decisions"
    assert {r.mode for r in rows} == {"non_profiling", "personalized"}
    assert runner.invoke(app, ["trail", "verify", "--database-url", db_url]).exit_code == 0


def test_unknown_model_is_one_line(db_url: str) -> None:
    result = runner.invoke(app, ["recommend", "u1", "--model", "als-missing", "--database-url", db_url])
    assert result.exit_code == 2
    assert "model version 'als-missing' is not in the store" in result.stderr


def test_a_failed_request_is_logged_with_its_cause(db_url: str) -> None:
    from audits.models import FailedRequest

    trained = runner.invoke(app, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--database-url", db_url, "--json"])
    version = json.loads(trained.stdout)["model_version"]
    result = runner.invoke(app, ["recommend", "u000003", "--model", version, "--pack", "eu-gdpr-dsa", "--tcf", "not-a-tc-string!", "--vendor-id", "7", "--database-url", db_url])
    assert result.exit_code == 2 and "TC string" in result.stderr
    store = open_store(db_url)
    try:
        with store.snapshot() as connection:
            rows = connection.execute(select(FailedRequest)).all()
    finally:
        store.close()
    assert len(rows) == 1 and rows[0].cause == "serve.DataError" and "TC string" in rows[0].detail["message"]
    assert "u000003" not in repr(tuple(rows[0]))
