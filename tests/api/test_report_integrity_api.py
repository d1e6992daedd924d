"""``GET /v1/reports/{model}`` over real HTTP says when a record it shows no longer matches its trail event; on
SQLite and PostgreSQL.

Regression: the report read the model's data set, run and audits from their tables; a row edited in place left the
trail and its checkpoint intact, and the page showed the edited figures as the trail's.
"""

from __future__ import annotations

from sqlalchemy import update

from audits.models import DatasetVersion, ModelVersion
from tests.tamper import switch_off_append_only


def test_a_data_set_edited_in_place_is_reported_over_http(server) -> None:
    with server.client("auditor") as http:
        before = http.get(f"/v1/reports/{server.model_version}")
        assert before.status_code == 200 and 'data-integrity="sound"' in before.text
        with server.store.session() as session:
            data_id = session.get(ModelVersion, server.model_version).dataset_version_id
            stored = session.get(DatasetVersion, data_id).n_users
            switch_off_append_only(session, "dataset_versions")
            session.execute(update(DatasetVersion).where(DatasetVersion.id == data_id).values(n_users=stored - 1))
        after = http.get(f"/v1/reports/{server.model_version}")
        assert after.status_code == 200
        banner = after.text[: after.text.index('id="system"')]
        assert 'data-integrity="broken"' in banner
        assert f"n_users is {stored - 1} in the store but the trail recorded {stored}" in banner


def test_the_disclosure_of_an_ease_model_describes_ease_over_http(server) -> None:
    """Regression: ``GET /v1/records/disclosure?model_version=`` described every model as ALS."""
    import json

    from typer.testing import CliRunner

    from governance.cli import app as cli

    trained = CliRunner().invoke(cli, ["train", "synthetic:n_users=80,n_items=60,n_interactions=2000,seed=5", "--no-tune", "--no-carbon",
                                       "--family", "ease", "--database-url", server.db_url, "--json"])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    ease = json.loads(trained.stdout)["model_version"]
    with server.client("auditor") as http:
        said = http.get("/v1/records/disclosure", params={"pack": "baseline", "model_version": ease})
        assert said.status_code == 200, said.text
        assert said.json()["model"]["kind"].startswith("the ease model family (EASE (Steck 2019)")
        als = http.get("/v1/records/disclosure", params={"pack": "baseline", "model_version": server.model_version}).json()
        assert als["model"]["kind"] == "matrix factorization by alternating least squares (implicit feedback)"
