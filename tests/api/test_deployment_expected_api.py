"""``expected_production`` of ``POST /v1/deployments/rollback`` and ``.../promote`` over real HTTP, on both engines:
a move decided on one production version is a 409 ``production-changed`` once another one is in production."""

from __future__ import annotations

from governance.api.errors import PROBLEM_JSON
from tests.governance.test_deploy_expected import _state, three_in_a_row


def test_two_rollbacks_from_the_same_version_go_back_one_version(server) -> None:
    first, second, third = three_in_a_row(server.db_url)
    with server.client("admin") as client:
        done = client.post("/v1/deployments/rollback", json={"expected_production": third})
        assert done.status_code == 200, done.text
        assert done.json()["restored"] == second
        before = _state(server.db_url)
        again = client.post("/v1/deployments/rollback", json={"expected_production": third})
        assert again.status_code == 409 and again.headers["content-type"] == PROBLEM_JSON
        assert again.json()["type"].endswith("/production-changed")
        assert f"production is not {third!r}: {second!r} is in production now" in again.json()["detail"]
        assert _state(server.db_url) == before
        stale = client.post(f"/v1/deployments/{first}/promote", json={"stage": "canary", "data": "synthetic:seed=1", "expected_production": third})
        assert stale.status_code == 409 and stale.json()["type"].endswith("/production-changed")
        assert _state(server.db_url) == before
        bad = client.post("/v1/deployments/rollback", json={"expected_production": "", "other": 1})
        assert bad.status_code == 422
        assert _state(server.db_url) == before
        document = client.get("/openapi.json").json()
        # The precondition is optional: a JSON null body (the document allows it) rolls back as no body does.
        plain = client.post("/v1/deployments/rollback", content="null", headers={"Content-Type": "application/json"})
        assert plain.status_code == 200 and plain.json()["restored"] == first, plain.text
    operation = document["paths"]["/v1/deployments/rollback"]["post"]
    assert "422" in operation["responses"] and "requestBody" in operation
    assert not operation["requestBody"].get("required", False)
