"""``OPTIONS`` on every path says the methods it has, without a key; a 405 says them too (``Allow``)."""

from __future__ import annotations

from governance.api.errors import PROBLEM_JSON


def _allow(response) -> set[str]:
    return {method.strip() for method in response.headers["allow"].split(",")}


def test_options_lists_every_method_of_a_path_without_authentication(server) -> None:
    with server.client() as client:  # no key: OPTIONS says what a path offers, never what it holds
        audits = client.options("/v1/audits")
        health = client.options("/health")
        model = client.options(f"/v1/models/{server.model_version}")
    assert audits.status_code == 204 and _allow(audits) == {"GET", "POST", "OPTIONS"}
    assert audits.content == b""
    assert _allow(health) == {"GET", "OPTIONS"}
    assert model.status_code == 204 and _allow(model) == {"GET", "OPTIONS"}


def test_every_documented_path_answers_options_with_its_documented_methods(server) -> None:
    with server.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
        for path, item in paths.items():
            concrete = path.replace("{", "x").replace("}", "x")
            response = client.options(concrete)
            assert response.status_code == 204, (path, response.text)
            assert {m.upper() for m in item} <= _allow(response), path


def test_options_on_an_unknown_path_is_a_404_problem(server) -> None:
    with server.client() as client:
        response = client.options("/v1/no-such-thing")
    assert response.status_code == 404 and response.headers["content-type"] == PROBLEM_JSON


def test_a_405_names_every_method_of_the_path_not_only_those_of_one_route(server) -> None:
    """GET and POST /v1/audits are two routes: the 405 of a PATCH names both."""
    with server.client("admin") as client:
        response = client.patch("/v1/audits", json={})
    assert response.status_code == 405 and response.headers["content-type"] == PROBLEM_JSON
    assert _allow(response) == {"GET", "POST", "OPTIONS"}
