"""``/v1/deployments`` over real HTTP, on both engines: roles, the gate's 409, promotion and rollback."""

from __future__ import annotations

import json

from sqlalchemy import select
from typer.testing import CliRunner

from audits.models import TrailEvent
from governance.api.errors import PROBLEM_JSON
from governance.cli import app as cli
from governance.cli.policy import SHIPPED

DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"
IMPOSSIBLE = (SHIPPED / "baseline.yaml").read_text().replace("name: baseline", "name: impossible").replace("min_ratio: 2.0", "min_ratio: 1000.0")


def test_deployments_through_the_api(server) -> None:
    first = server.model_version
    trained = CliRunner().invoke(cli, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "6", "--iterations", "4", "--database-url", server.db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    second = json.loads(trained.stdout)["model_version"]

    with server.client("operator") as client:
        assert client.post(f"/v1/deployments/{first}/promote", json={"stage": "shadow"}).status_code == 403
    with server.client("viewer") as client:
        assert client.get("/v1/deployments").status_code == 200
    with server.client("admin", **{"Content-Type": "application/yaml"}) as client:
        assert client.post("/v1/packs", content=IMPOSSIBLE).status_code in (200, 201)
    with server.client("admin") as client:
        for mv in (first, second):
            assert client.post(f"/v1/deployments/{mv}/promote", json={"stage": "shadow"}).status_code == 200
        # The installation's deployment policy decides the gate's pack: first an impossible one for canary.
        assert client.put("/v1/deployments/policy/canary", json={"pack": "impossible@1.0.0"}).status_code == 200
        refused = client.post(f"/v1/deployments/{first}/promote", json={"stage": "canary", "data": DATA})
        assert refused.status_code == 409 and refused.headers["content-type"] == PROBLEM_JSON
        assert "quality-beats-random" in refused.json()["detail"]
        assert client.post("/v1/deployments/als-nope/promote", json={"stage": "shadow"}).status_code == 404
        skip = client.post(f"/v1/deployments/{first}/promote", json={"stage": "production", "data": DATA})
        assert skip.status_code == 409 and "promote to canary first" in skip.json()["detail"]
        assert skip.json()["type"].endswith("/deployment-state")
        for stage in ("canary", "production"):
            assert client.put(f"/v1/deployments/policy/{stage}", json={"pack": "baseline"}).status_code == 200
        for mv in (first, second):
            for stage in ("canary", "production"):
                done = client.post(f"/v1/deployments/{mv}/promote", json={"stage": stage, "data": DATA})
                assert done.status_code == 200, done.text
        back = client.post("/v1/deployments/rollback")
        assert back.status_code == 200 and back.json() == {"restored": first, "retired": second, "audit_id": back.json()["audit_id"], "gate": back.json()["gate"]}
        assert back.json()["gate"]["pack"] == "baseline" and back.json()["gate"]["audit_id"] == back.json()["audit_id"]
        listed = client.get("/v1/deployments").json()
    assert [s["model_version"] for s in listed["production"]] == [first]
    assert [s["model_version"] for s in listed["retired"]] == [second]
    with server.store.session() as session:
        actors = set(session.scalars(select(TrailEvent.actor).where(TrailEvent.action == "deployment.promoted")))
    assert actors == {f"key:{server.key_ids['admin']}:test-admin"}


def test_retiring_a_model_version_through_the_api(server) -> None:
    """A recorded version that is not in production is retired (never served again); the one in production, one
    retired already and an unknown one are refused, each with nothing changed; the retirement is on the trail."""
    trained = CliRunner().invoke(cli, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "5", "--iterations", "3", "--database-url", server.db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout)["model_version"]
    with server.client("operator") as client:
        assert client.post(f"/v1/deployments/{version}/retire").status_code == 403
    with server.client("admin") as client:
        before = client.get("/v1/deployments").json()
        assert client.post("/v1/deployments/als-nope/retire").status_code == 404
        done = client.post(f"/v1/deployments/{version}/retire")
        assert done.status_code == 200, done.text
        assert done.json()["retired"] == version and done.json()["previous_stage"] is None
        again = client.post(f"/v1/deployments/{version}/retire")
        assert again.status_code == 409 and again.json()["type"].endswith("/deployment-state") and "retired already" in again.json()["detail"]
        for stage, rows in before.items():
            for row in rows if stage == "production" else []:
                refused = client.post(f"/v1/deployments/{row['model_version']}/retire")
                assert refused.status_code == 409 and "use rollback" in refused.json()["detail"]
        after = client.get("/v1/deployments").json()
    assert after["production"] == before["production"]
    assert version in [s["model_version"] for s in after["retired"]]
    with server.client("operator") as client:  # a retired version profiles nobody, even asked by name
        listed = client.post("/v1/recommendations", json={"subject": "u000003", "k": 5, "model_version": version, "pack": "california-ccpa"})
    assert listed.status_code == 200, listed.text
    assert listed.json()["mode"] == "non_profiling" and "is retired" in listed.json()["consent"]
    with server.store.session() as session:
        events = session.scalars(select(TrailEvent).where(TrailEvent.action == "deployment.changed")).all()
        stages = [_json(e.payload)["stage"] for e in events if _json(e.objects).get("model") == version]
    assert stages == ["retired"]


def _json(value: object) -> dict:
    """A trail event's JSON column as a mapping (stored as JSON text)."""
    return value if isinstance(value, dict) else json.loads(value)


def test_a_model_file_changed_on_disk_is_a_409_artifact_changed(server) -> None:
    """The gate refits the recorded recipe and serving loads the file: a file altered after recording is refused
    before any gate runs, as a 409 of its own kind, and nothing moves."""
    import numpy as np

    from audits.models import ModelVersion

    trained = CliRunner().invoke(cli, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "3", "--database-url", server.db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout)["model_version"]
    with server.store.session() as session:
        path = session.get(ModelVersion, version).artifact_location
    arrays = dict(np.load(path, allow_pickle=False))
    arrays["item_factors"] = np.zeros_like(arrays["item_factors"])
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    with server.client("admin") as client:
        before = client.get("/v1/deployments").json()
        refused = client.post(f"/v1/deployments/{version}/promote", json={"stage": "shadow"})
        assert refused.status_code == 409 and refused.headers["content-type"] == PROBLEM_JSON
        assert refused.json()["type"].endswith("/artifact-changed") and "changed on disk" in refused.json()["detail"]
        assert client.get("/v1/deployments").json() == before
