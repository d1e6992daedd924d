"""A gate nobody can pick around, over real HTTP on SQLite and PostgreSQL.

Before the deployment policy, an admin key's ``POST /v1/deployments/{mv}/promote``
with ``"pack": "baseline"`` put in production a model the EU pack refuses.
The tests of this module run in order against one server (one store).
"""

from __future__ import annotations

import json

from sqlalchemy import select
from typer.testing import CliRunner

from audits.models import AuditRun, Deployment, TrailEvent
from governance.api.errors import PROBLEM_JSON
from governance.cli import app as cli
from governance.deploy_policy import NO_BINDING, NOT_A_GATED_STAGE, PACK_NOT_BOUND, ROLLBACK_UNDER_OTHER_PACK

DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"
DEPLOYMENT_POLICY = "deployment-policy"


def _problem(response, status: int) -> dict:
    assert response.status_code == status and response.headers["content-type"] == PROBLEM_JSON, response.text
    return response.json()


def _audits(server) -> int:
    with server.store.session() as session:
        return len(session.scalars(select(AuditRun.id)).all())


def test_without_a_policy_the_api_refuses_every_gated_promotion(server) -> None:
    """Hole: with no policy stored, the caller's pack (the baseline by default) gated production."""
    mv = server.model_version
    with server.client("admin") as client:
        assert client.post(f"/v1/deployments/{mv}/promote", json={"stage": "shadow"}).status_code == 200
        for pack in ({}, {"pack": "baseline"}):
            problem = _problem(
                client.post(f"/v1/deployments/{mv}/promote", json={"stage": "canary", "data": DATA, **pack}), 409
            )
            assert problem["detail"] == NO_BINDING.format(stage="canary") and problem["type"].endswith(
                DEPLOYMENT_POLICY
            )
    with server.client("viewer") as client:
        shown = client.get("/v1/deployments/policy")
    assert shown.status_code == 200 and shown.json() == {"stages": {"canary": None, "production": None}}
    assert _audits(server) == 0


def test_only_an_admin_sets_the_policy_and_each_change_is_on_the_trail(server) -> None:
    """Hole: nothing stored which pack gates a stage, so nothing restricted who decides it."""
    with server.client("operator") as client:
        assert _problem(client.put("/v1/deployments/policy/canary", json={"pack": "eu-gdpr-dsa"}), 403)
    with server.client("admin") as client:
        assert (
            "shadow is never served"
            in _problem(client.put("/v1/deployments/policy/shadow", json={"pack": "baseline"}), 422)["detail"]
        )
        assert _problem(client.put("/v1/deployments/policy/canary", json={"pack": "no-such-pack"}), 404)
        assert _problem(client.put("/v1/deployments/policy/canary", json={"pack": "baseline", "min_events": -1}), 422)
        assert _problem(client.put("/v1/deployments/policy/canary", json={"pack": "baseline", "weakest": True}), 422)
        for stage in ("canary", "production"):
            done = client.put(f"/v1/deployments/policy/{stage}", json={"pack": "eu-gdpr-dsa", "min_users": 100})
            assert done.status_code == 200, done.text
            assert {k: done.json()[k] for k in ("stage", "pack", "pack_version", "min_users", "dataset")} == {
                "stage": stage, "pack": "eu-gdpr-dsa", "pack_version": "1.0.0", "min_users": 100, "dataset": "training",
            }  # fmt: skip
    assert NOT_A_GATED_STAGE.format(stage="shadow").startswith("a deployment policy binds canary or production")
    with server.store.session() as session:
        events = session.scalars(
            select(TrailEvent).where(TrailEvent.action.in_(("deployment.policy_set", "api.deployments.policy_set")))
        ).all()
    assert [e.action for e in events] == ["deployment.policy_set", "api.deployments.policy_set"] * 2
    assert {e.actor for e in events} == {f"key:{server.key_ids['admin']}:test-admin"}
    assert json.loads(events[0].payload)["pack"] == "eu-gdpr-dsa"


def test_an_admin_key_cannot_promote_under_a_weaker_pack(server) -> None:
    """Hole: ``"pack": "baseline"`` in the promotion body chose a gate the model passes, instead of the EU pack it fails."""
    mv = server.model_version
    before = _audits(server)
    with server.client("admin") as client:
        weaker = _problem(
            client.post(f"/v1/deployments/{mv}/promote", json={"stage": "canary", "pack": "baseline", "data": DATA}),
            409,
        )
        assert weaker["type"].endswith(DEPLOYMENT_POLICY)
        assert weaker["detail"].startswith(PACK_NOT_BOUND.split("{")[0]) and "eu-gdpr-dsa@1.0.0" in weaker["detail"]
        assert _audits(server) == before, "no gate runs under a pack the policy does not bind"
        bound = _problem(client.post(f"/v1/deployments/{mv}/promote", json={"stage": "canary", "data": DATA}), 409)
        assert bound["type"].endswith("gate-refused") and "eu-gdpr-dsa@1.0.0" in bound["detail"]
        listed = client.get("/v1/deployments").json()
    assert (
        [s["model_version"] for s in listed["shadow"]] == [mv] and listed["canary"] == [] and listed["production"] == []
    )


def test_a_promotion_under_the_bound_pack_records_its_gate(server) -> None:
    """Hole: the deployment row and its event did not say which pack gated the move."""
    mv = server.model_version
    with server.client("admin") as client:
        for stage in ("canary", "production"):
            assert client.put(f"/v1/deployments/policy/{stage}", json={"pack": "baseline"}).status_code == 200
        for stage in ("canary", "production"):
            done = client.post(f"/v1/deployments/{mv}/promote", json={"stage": stage, "data": DATA})
            assert done.status_code == 200, done.text
            gate = done.json()["gate"]
            assert gate["pack"] == "baseline" and gate["audit_id"] == done.json()["audit_id"] and gate["policy_id"]
        hash_ = client.get("/v1/deployments/policy").json()["stages"]["production"]["pack_hash"]
        listed = client.get("/v1/deployments").json()
    assert listed["production"][0]["gate"]["pack_hash"] == hash_
    with server.store.session() as session:
        rows = session.scalars(
            select(Deployment).where(Deployment.model_version_id == mv).order_by(Deployment.id)
        ).all()
        assert [(d.stage, d.gate_pack, d.gate_pack_hash) for d in rows][-2:] == [
            ("canary", "baseline", hash_),
            ("production", "baseline", hash_),
        ]
        payload = json.loads(session.scalar(select(TrailEvent.payload).where(TrailEvent.seq == rows[-1].trail_seq)))
    assert payload["gate"]["pack_hash"] == hash_


def test_a_rollback_cannot_restore_what_the_pack_bound_now_never_gated(server) -> None:
    """Hole: after production was bound to the EU pack, a rollback restored a version only the baseline had passed."""
    first = server.model_version
    trained = CliRunner().invoke(
        cli,
        [
            "train",
            DATA,
            "--no-tune",
            "--no-carbon",
            "--factors",
            "6",
            "--iterations",
            "4",
            "--database-url",
            server.db_url,
            "--json",
        ],
    )
    assert trained.exit_code == 0, trained.output
    second = json.loads(trained.stdout)["model_version"]
    with server.client("admin") as client:
        assert client.post(f"/v1/deployments/{second}/promote", json={"stage": "shadow"}).status_code == 200
        for stage in ("canary", "production"):
            done = client.post(f"/v1/deployments/{second}/promote", json={"stage": stage, "data": DATA})
            assert done.status_code == 200, done.text
        assert client.put("/v1/deployments/policy/production", json={"pack": "eu-gdpr-dsa"}).status_code == 200
        refused = _problem(client.post("/v1/deployments/rollback"), 409)
        listed = client.get("/v1/deployments").json()
    assert refused["type"].endswith(DEPLOYMENT_POLICY)
    assert refused["detail"].startswith(ROLLBACK_UNDER_OTHER_PACK.split("(")[0].format(version=first))
    assert [s["model_version"] for s in listed["production"]] == [second]
