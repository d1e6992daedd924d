"""Server paths in a model's lineage over HTTP: shown per role as ``GET /v1/datasets`` shows a data set's source.

A model file's location and a file data set's source are paths on the server.
The roles that run the service (operator, admin) see them whole; a viewer or an
auditor sees a path under ``$RECGOV_HOME`` relative to it and any other as
``<server path>``: in ``GET /v1/lineage``, the lineage of ``GET /v1/models/{version}``
and the regulator's report. Real uvicorn on SQLite and PostgreSQL.
"""

from __future__ import annotations

import html
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from audits.lineage import record_dataset_version, record_model_version, record_training_run
from governance.api.disclosure import PATH_MASK


@pytest.fixture(scope="module")
def recorded(server, tmp_path_factory) -> dict[str, str]:
    """A model version whose artifact lies under $RECGOV_HOME and whose data set is a file outside it."""
    outside = tmp_path_factory.mktemp("elsewhere") / "private-exports" / "events.csv"
    artifact = server.home.resolve() / "models" / "paths-model.npz"
    version = f"paths-{uuid.uuid4().hex[:8]}"
    started = datetime.now(UTC) - timedelta(hours=1)
    with server.store.session() as session:
        data = record_dataset_version(
            session, content_hash=f"sha256:{uuid.uuid4().hex}", name="paths-data", source=str(outside), n_events=10,
            n_users=3, n_items=4, schema={"user": "int64", "item": "int64"}, validation={"duplicates": 0},
        )  # fmt: skip
        run = record_training_run(
            session, dataset_version=data, params={"factors": 8}, library_versions={"implicit": "0.7.2"},
            started_at=started, ended_at=started + timedelta(seconds=5),
        )  # fmt: skip
        record_model_version(session, version_id=version, kind="als", training_run=run, artifact_hash="sha256:paths", artifact_location=str(artifact))
    return {"version": version, "source": str(outside), "artifact": str(artifact)}


@pytest.mark.parametrize("role", ["viewer", "auditor"])
def test_a_reader_sees_no_server_path_in_a_lineage(server, recorded, role) -> None:
    with server.client(role) as http:
        for url, lineage in ((f"/v1/lineage/{recorded['version']}", lambda d: d), (f"/v1/models/{recorded['version']}", lambda d: d["lineage"])):
            response = http.get(url)
            assert response.status_code == 200, response.text
            document = lineage(response.json())
            assert document["model_version"]["artifact_location"] == "$RECGOV_HOME/models/paths-model.npz", url
            assert document["dataset_version"]["source"] == PATH_MASK, url
            assert recorded["source"] not in response.text and str(server.home.resolve()) not in response.text, url


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_the_roles_running_the_service_see_the_paths_whole(server, recorded, role) -> None:
    with server.client(role) as http:
        document = http.get(f"/v1/lineage/{recorded['version']}").json()
        assert document["model_version"]["artifact_location"] == recorded["artifact"]
        assert document["dataset_version"]["source"] == recorded["source"]
        assert http.get(f"/v1/models/{recorded['version']}").json()["lineage"] == document


def test_the_report_shows_an_auditor_no_server_path_and_an_admin_the_source(server, recorded) -> None:
    with server.client("auditor") as http:
        page = http.get(f"/v1/reports/{recorded['version']}")
        assert page.status_code == 200, page.text
        text = html.unescape(page.text)
        assert recorded["source"] not in text and "private-exports" not in text and PATH_MASK in text
    with server.client("admin") as http:
        assert recorded["source"] in html.unescape(http.get(f"/v1/reports/{recorded['version']}").text)


def test_a_synthetic_source_is_no_path_and_stays(server) -> None:
    with server.client("viewer") as http:
        document = http.get(f"/v1/lineage/{server.model_version}").json()
    assert document["dataset_version"]["source"].startswith("synthetic:")
