"""Over real HTTP, on SQLite and PostgreSQL: an erasure replaces the ALS version that held the subject.

Regression: after an erasure the ALS version the subject was unlearned from kept its stage and its file (which lists
the erased subject's raw id) until a full retrain, and the service went on serving it. Now the version refit without
the subject takes its stage, the old one is retired and its file deleted, and naming it is a 409 ``model-replaced``
that names the new version.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from audits.lineage import record_deployment
from audits.models import TrailEvent
from governance.cli import app as cli
from governance.deploy import deployed_versions
from recommender.family import model_user_ids

# its own subjects: u000320 and above are in no model the module's server trained
DATA = "synthetic:n_users=360,n_items=120,n_interactions=9000,seed=6"
SUBJECT = "u000341"


def _ask(client, subject: str, version: str):
    return client.post("/v1/recommendations", json={"subject": subject, "k": 5, "model_version": version, "pack": "california-ccpa"})


def test_an_erasure_replaces_the_als_version_and_the_old_one_answers_model_replaced(server) -> None:
    trained = CliRunner().invoke(cli, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "8", "--iterations", "4",
                                       "--database-url", server.db_url, "--json", "--pack", "baseline"])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    doc = json.loads(trained.stdout)
    old, folder = doc["model_version"], Path(doc["artifact"]).parent
    with server.store.session() as session:
        record_deployment(session, model_version=old, stage="shadow")
    with server.client("operator") as client:
        assert _ask(client, SUBJECT, old).json()["mode"] == "personalized"  # the engine holds the old model loaded
    with server.client("admin") as client:
        erased = client.post("/v1/requests/erasure", json={"subject": SUBJECT, "pack": "baseline"})
    assert erased.status_code == 200, erased.text
    (step,) = [s for s in erased.json()["unlearning"] if s.get("previous_version") == old]
    new = step["version"]
    with server.client("operator") as client:
        replaced = _ask(client, "u000342", old)
        served = _ask(client, "u000342", new)
    assert replaced.status_code == 409 and replaced.json()["type"].endswith("/model-replaced"), replaced.text
    assert new in replaced.json()["detail"]
    assert served.status_code == 200 and served.json()["mode"] == "personalized", served.text
    assert served.json()["model_standing"] == "trained"
    with server.store.session() as session:
        stages = deployed_versions(session)
        events = session.execute(select(TrailEvent.payload).where(TrailEvent.action == "model.replaced_by_erasure")).scalars().all()
    assert new in stages["shadow"] and old in stages["retired"]
    assert any(old in str(p) and new in str(p) for p in events)
    for path in folder.glob("*.npz"):  # no model file on disk lists the erased subject
        ids = model_user_ids(io.BytesIO(path.read_bytes()))
        assert ids is None or not (ids.astype(str) == SUBJECT).any(), path
    assert SUBJECT not in erased.text


def test_approximate_is_a_json_boolean_or_the_erasure_is_refused_untouched(server) -> None:
    """Regression: ``"approximate": 0`` (or ``"no"``) was read as a choice and the erasure carried out; a body whose
    option is not a JSON boolean is a 422 naming the field, and nothing is erased."""
    subject = "u000343"

    def erasures(client) -> int:  # noqa: ANN001
        listed = client.get("/v1/requests", params={"kind": "erasure", "limit": 1000})
        assert listed.status_code == 200, listed.text
        return len(listed.json()["requests"])

    with server.client("admin") as client:
        before = erasures(client)
        for bad in (0, 1, "no", "true", None):
            for path, body in (("/v1/requests/erasure", {"subject": subject}), (f"/v1/subjects/{subject}/erasure", {})):
                answer = client.post(path, json={**body, "pack": "baseline", "approximate": bad})
                assert answer.status_code == 422, (path, bad, answer.text)
                assert [e["field"] for e in answer.json()["errors"]] == ["approximate"], answer.text
        assert erasures(client) == before  # no request was opened, none carried out
