"""`recgov recommend`: a governed list from a recorded model, with its decision record, on both engines."""

from __future__ import annotations

import json

from sqlalchemy import func, select
from typer.testing import CliRunner

from audits import open_store
from audits.consent import consent_history, record_consent
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
    # the signal is recorded first, as the API does: the opt-out in force decides
    assert gpc["mode"] == "non_profiling" and "opted_out via gpc" in gpc["consent"]

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


def _ledger(db_url: str, user: str) -> list[tuple[str, str, str]]:
    store = open_store(db_url)
    try:
        with store.session() as session:
            return [(r["purpose"], r["status"], r["source"]) for r in consent_history(session, user)]
    finally:
        store.close()


def test_gpc_from_the_command_line_is_recorded_in_the_ledger_like_the_api(db_url: str, tmp_path) -> None:
    """Regression: `recgov recommend --gpc` marked the decision but wrote no consent record, so the
    opt-out was forgotten by the next request and by training."""
    trained = runner.invoke(app, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--database-url", db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout)["model_version"]
    user = "u000021"

    def recommend(pack: str, *extra: str) -> dict:
        result = runner.invoke(app, ["recommend", user, "--model", version, "--pack", pack, "--k", "3", "--database-url", db_url, "--json", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert recommend("california-ccpa")["mode"] == "personalized"  # opt-out purpose, nothing recorded
    assert _ledger(db_url, user) == []
    assert recommend("california-ccpa", "--gpc")["mode"] == "non_profiling"
    expected = [("personalization", "opted_out", "gpc"), ("sale_sharing", "opted_out", "gpc")]
    assert sorted(_ledger(db_url, user)) == expected
    assert recommend("california-ccpa", "--gpc")["mode"] == "non_profiling"
    assert sorted(_ledger(db_url, user)) == expected  # a repeated signal is not recorded twice
    later = recommend("california-ccpa")  # no signal this time: the recorded opt-out still holds
    assert later["mode"] == "non_profiling" and "opted_out via gpc" in later["consent"]

    # Under a pack that does not honour GPC nothing is recorded.
    pack = tmp_path / "no-gpc.yaml"
    from pathlib import Path

    source = (Path(__file__).resolve().parents[2] / "policies" / "california-ccpa.yaml").read_text()
    pack.write_text(source.replace("honour_gpc: true", "honour_gpc: false").replace("name: california-ccpa", "name: no-gpc"))
    other = "u000022"
    result = runner.invoke(app, ["recommend", other, "--model", version, "--pack", str(pack), "--k", "3", "--gpc", "--database-url", db_url, "--json"])
    assert result.exit_code == 0, result.output
    assert _ledger(db_url, other) == []
    assert user not in result.output and runner.invoke(app, ["trail", "verify", "--database-url", db_url]).exit_code == 0


def test_tags_of_an_unregularized_model_on_a_small_catalogue_are_served(db_url: str) -> None:
    """Regression: ALS trained with regularization 0 on fewer items than factors has a singular system per user;
    every personalized list's tags raised LinAlgError and ``recgov recommend`` ended in a traceback."""
    data = "synthetic:n_users=60,n_items=6,n_interactions=200,seed=4"
    trained = runner.invoke(app, ["train", data, "--no-tune", "--no-carbon", "--factors", "16", "--iterations", "4", "--regularization", "0", "--database-url", db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout)["model_version"]
    store = open_store(db_url)
    try:
        with store.session() as session:
            record_consent(session, subject_id="u000012", purpose="personalization", status="granted", lawful_basis="consent", source="api")
    finally:
        store.close()
    result = runner.invoke(app, ["recommend", "u000012", "--model", version, "--data", data, "--k", "3", "--pack", "eu-gdpr-dsa", "--database-url", db_url, "--json"])
    assert result.exit_code == 0, result.output
    served = json.loads(result.stdout)
    assert served["mode"] == "personalized" and served["items"]
    assert all(item["tags"] for item in served["items"])
