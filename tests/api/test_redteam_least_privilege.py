"""Least privilege over real HTTP, on both engines: the serving system's key asks for lists and nothing else.

The hole: roles were one ladder, and ``POST /v1/recommendations`` needed
``operator``, so the key a web front end held to ask for lists could also read
every subject's consent history, start audits, verify the trail and list
subject requests. A ``serving`` key now holds the scope ``lists`` only.
"""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from audits.models import TrailEvent
from governance.api import ApiSettings, create_app
from governance.api.access import MATRIX_BEGIN, MATRIX_END, PUBLIC, access_matrix, matrix_markdown
from governance.api.errors import PROBLEM_JSON
from governance.api.keys import API_ROLES, ROLE_SCOPES, create_key, role_allows

# What a serving key may do: serve lists, check it is alive, and report what happened to the lists it served.
LISTS = {("POST", "/v1/recommendations"), ("GET", "/v1/ping"), ("POST", "/v1/feedback")}
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def serving_token(server) -> str:
    """A key of the role ``serving`` (refused by the store before the role existed)."""
    with server.store.session() as session:
        _, token = create_key(session, name="web-frontend", role="serving")
    return token


def _trail_length(server) -> int:
    with server.store.snapshot() as connection:
        return connection.execute(select(func.count()).select_from(TrailEvent)).scalar_one()


def _filled(path: str) -> str:
    """A template with every ``{param}`` filled with a harmless value (a job id must look like a UUID)."""
    return re.sub(r"\{(\w+)\}", lambda m: "00000000-0000-0000-0000-000000000000" if m.group(1) == "job_id" else "x1", path)


def test_a_serving_key_gets_403_on_every_endpoint_but_lists_and_writes_nothing(server, serving_token: str) -> None:
    """Audits, trail, consent histories, subject requests, packs writes...: 403, with the scope named."""
    operations = [(a.method, a.path) for a in access_matrix(server.app) if a.scope is not None]
    before = _trail_length(server)
    refused = {}
    with server.client(Authorization=f"Bearer {serving_token}") as client:
        for method, path in operations:
            if (method, path) in LISTS:
                continue
            response = client.request(method, _filled(path))
            refused[(method, path)] = response.status_code
            assert response.headers["content-type"] == PROBLEM_JSON, (method, path, response.text)
            if response.status_code == 403:
                assert "key" in response.json()["detail"] and "has the role serving" in response.json()["detail"]
    assert refused and set(refused.values()) == {403}, {op: s for op, s in refused.items() if s != 403}
    assert _trail_length(server) == before, "a refused request wrote to the trail"


def test_a_serving_key_asks_for_lists_and_passes_consent_signals(server, serving_token: str) -> None:
    request = {"subject": "u000021", "k": 4, "model_version": server.model_version, "pack": "california-ccpa"}
    with server.client(Authorization=f"Bearer {serving_token}") as client:
        assert client.get("/v1/ping").status_code == 200
        served = client.post("/v1/recommendations", json=request)
        signalled = client.post("/v1/recommendations", json=request, headers={"Sec-GPC": "1"})
        history = client.get(f"/v1/consent/{request['subject']}")
    assert served.status_code == 200, served.text
    assert len(served.json()["items"]) == 4
    assert signalled.status_code == 200, signalled.text
    assert signalled.json()["signals"]["gpc"] is True and signalled.json()["signals"]["recorded"]
    assert signalled.json()["mode"] == "non_profiling"
    assert history.status_code == 403, "a serving key passes consent signals but never reads a consent history"
    with server.client("operator") as client:  # the signal the serving key passed is on record
        records = client.get(f"/v1/consent/{request['subject']}").json()["history"]
    assert {r["status"] for r in records if r["source"] == "gpc"} == {"opted_out"}


def test_the_people_roles_keep_their_ladder() -> None:
    """Existing keys keep working: each ladder role holds what the roles below it hold; serving holds lists only."""
    ladder = ("viewer", "auditor", "operator", "admin")
    for lower, higher in pairwise(ladder):
        assert ROLE_SCOPES[lower] < ROLE_SCOPES[higher]
    assert ROLE_SCOPES["serving"] == {"lists"}
    assert not role_allows("serving", "audit") and not role_allows("unknown-role", "read")


def _app(tmp_path: Path) -> Any:
    return create_app(ApiSettings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'unused.db'}"))


def test_the_readme_matrix_is_the_one_the_code_enforces(tmp_path: Path) -> None:
    """The README's role x endpoint matrix and its endpoint table's scopes are read off the app."""
    readme = README.read_text(encoding="utf-8")
    start, end = readme.index(MATRIX_BEGIN), readme.index(MATRIX_END) + len(MATRIX_END)
    app = _app(tmp_path)
    assert readme[start:end] == matrix_markdown(app), "regenerate it: python -m governance.api.access"
    scopes = {f"{a.method} {a.path}": a.scope for a in access_matrix(app)}
    table = readme[readme.index("| endpoint | scope | what it does |") : start]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented = {}
    for row in rows:
        endpoint_cell, scope_cell = row.split(" | ")[:2]
        for endpoint in re.findall(r"`((?:GET|POST|PUT|DELETE) [^`?]+)", endpoint_cell):
            documented[endpoint.replace("{id}", "{job_id}")] = scope_cell.strip()
    assert documented == {e: scopes.get(e, "no such endpoint") or PUBLIC for e in documented}, "a row names the wrong scope"
    assert {e for e, s in scopes.items() if s is not None} <= set(documented), "an endpoint needing a key has no row"


def test_every_operation_names_one_known_scope(tmp_path: Path) -> None:
    matrix = access_matrix(_app(tmp_path))
    assert {a.scope for a in matrix} <= {None, *ROLE_SCOPES["admin"]}
    assert "GET /health" in [f"{a.method} {a.path}" for a in matrix if a.scope is None]
    assert {(a.method, a.path) for a in matrix if a.allows("serving") and a.scope is not None} == LISTS
    assert set(API_ROLES) == set(ROLE_SCOPES)
