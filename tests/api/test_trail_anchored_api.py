"""GET /v1/trail/verify and both checkpoint paths check what `recgov trail verify` checks: a decision row
rewritten behind the database's back makes the API say `intact: false`, and no head is signed (409 over the API,
exit 1 on the command line) until the row is put back."""

from __future__ import annotations

from sqlalchemy import text
from typer.testing import CliRunner

from governance.cli import app as cli

runner = CliRunner()


def _checkpoints(server) -> int:
    with server.store.engine.connect() as connection:
        return int(connection.execute(text("SELECT COUNT(*) FROM trail_checkpoints")).scalar_one())


def test_a_rewritten_decision_row_breaks_the_apis_verify_and_blocks_both_checkpoints(server) -> None:
    request = {"subject": "u000031", "k": 5, "model_version": server.model_version, "pack": "california-ccpa"}
    with server.client("operator") as client:
        assert client.post("/v1/recommendations", json=request).status_code == 200
    with server.client("auditor") as client:
        clean = client.get("/v1/trail/verify").json()
    assert clean["intact"] is True and clean["anchored_records_intact"] is True
    with server.store.engine.begin() as connection:  # no trigger guards the decision log: the app's rights suffice
        decision_id, model = connection.execute(text("SELECT decision_id, model_version FROM decisions ORDER BY decided_at DESC LIMIT 1")).one()
        connection.execute(text("UPDATE decisions SET model_version = 'tampered' WHERE decision_id = :d"), {"d": decision_id})
    before = _checkpoints(server)
    try:
        with server.client("auditor") as client:
            broken = client.get("/v1/trail/verify").json()
        with server.client("admin") as client:
            refused = client.post("/v1/trail/checkpoint")
        command = runner.invoke(cli, ["trail", "checkpoint", "--database-url", server.db_url])
        after = _checkpoints(server)
    finally:
        with server.store.engine.begin() as connection:
            connection.execute(text("UPDATE decisions SET model_version = :m WHERE decision_id = :d"), {"m": model, "d": decision_id})
    assert broken["intact"] is False and broken["trail_intact"] is True and broken["anchored_records_intact"] is False
    assert broken["anchored_problems"][0]["table"] == "decisions" and "changed" in broken["anchored_problems"][0]["problem"]
    assert refused.status_code == 409 and refused.json()["type"].endswith("anchored-records-broken"), refused.text
    assert refused.json()["errors"][0]["table"] == "decisions"
    assert command.exit_code == 1 and "decisions BROKEN" in command.stdout and "refusing to sign" in command.stderr
    assert after == before  # nothing was signed
    with server.client("admin") as client:
        assert client.post("/v1/trail/checkpoint").status_code == 201  # the row put back, the head is signed again


def test_a_batch_folders_server_path_is_shown_only_to_the_roles_that_run_the_service(server) -> None:
    """Runs last in the module: the anchor it appends stays on the trail, broken for good."""
    from audits.trail import append_event

    with server.store.session() as session:
        append_event(session, actor="test", action="decisions.spark_batch",
                     payload={"path": "/srv/elsewhere/batch-7", "records": 1, "partitions": [{"bucket": 0, "records": 1, "head": "0" * 64}]})  # fmt: skip
    with server.client("auditor") as client:
        auditor = client.get("/v1/trail/verify").json()
    with server.client("admin") as client:
        admin = client.get("/v1/trail/verify").json()
        refused = client.post("/v1/trail/checkpoint")
    (problem,) = [p for p in auditor["anchored_problems"] if p["table"] == "spark_decisions"]
    assert auditor["intact"] is False and "/srv/elsewhere" not in problem["problem"] and "<server path>" in problem["problem"]
    assert any("/srv/elsewhere/batch-7 of the batch's decision records is missing" in p["problem"] for p in admin["anchored_problems"])
    assert refused.status_code == 409 and refused.json()["errors"][0]["table"] == "spark_decisions"
