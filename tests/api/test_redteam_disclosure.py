"""What problem documents disclose, over real HTTP on both engines.

Two holes:

* raw subject ids: a problem's ``instance`` was the request path, so every
  refusal on ``/v1/subjects/{subject_id}/...`` or ``/v1/consent/{subject}``
  (401, 403, 404, 405, 422) sent the subject id back, and a validation error
  naming a body key repeated it;
* server internals: a data file's error reached viewers and auditors with the
  server's absolute paths and the offending cell's value.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from governance.api.disclosure import PATH_MASK
from governance.api.errors import PROBLEM_JSON

SUBJECT = "subj-disclosed-40213"
CELL = "SECRET-CELL-77"
AUDIT_DEADLINE_S = 180


def _problem(response) -> dict:
    assert response.headers["content-type"] == PROBLEM_JSON, response.text
    return response.json()


@pytest.mark.parametrize(
    ("role", "method", "path", "sent", "status"),
    [
        (None, "GET", f"/v1/consent/{SUBJECT}", {}, 401),
        ("viewer", "POST", f"/v1/subjects/{SUBJECT}/export", {}, 403),
        ("serving", "GET", f"/v1/consent/{SUBJECT}", {}, 403),
        ("admin", "POST", f"/v1/subjects/{SUBJECT}/export", {"json": {"unexpected": 1}}, 422),
        ("admin", "POST", f"/v1/subjects/{SUBJECT}/export", {"json": {"pack": "no-such-pack"}}, 404),
        ("admin", "POST", f"/v1/subjects/{SUBJECT}/exports", {}, 404),
        ("admin", "GET", f"/v1/subjects/{SUBJECT}/export", {}, 405),
        ("admin", "POST", f"/v1/subjects/{SUBJECT + 'x' * 200}/erasure", {}, 422),
    ],
    ids=["401", "403-viewer", "403-serving", "422-body", "404-pack", "404-unrouted", "405", "422-path"],
)
def test_a_refusal_on_a_subject_route_never_echoes_the_subject_id(server, role, method, path, sent, status) -> None:
    headers = {}
    if role == "serving":
        from governance.api.keys import create_key

        with server.store.session() as session:
            headers["Authorization"] = "Bearer " + create_key(session, name="web", role="serving")[1]
        role = None
    with server.client(role, **headers) as client:
        response = client.request(method, path, **sent)
    assert response.status_code == status, response.text
    problem = _problem(response)
    assert SUBJECT not in response.text, problem
    assert problem["instance"].startswith(("/v1/consent/{subject}", "/v1/subjects/{subject}")), problem


def test_a_validation_error_never_repeats_the_subject_of_the_body(server) -> None:
    """A body key that repeats the subject id: its location was the id itself."""
    body = {"subject": SUBJECT, "k": 3, "model_version": server.model_version, SUBJECT: 1}
    with server.client("operator") as client:
        response = client.post("/v1/recommendations", json=body)
    assert response.status_code == 422
    problem = _problem(response)
    assert SUBJECT not in response.text and "<subject>" in problem["detail"], problem


def _failed_audit(server, data_dir: Path) -> str:
    """An audit job that failed on a CSV cell, and its id."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "bad-cell.csv").write_text(f"user_id,item_id,timestamp,value\nu1,i1,1700000000,1\nu2,i2,1700000001,{CELL}\n", encoding="utf-8")
    with server.client("auditor") as client:
        started = client.post("/v1/audits", json={"pack": "baseline", "data": "bad-cell.csv"})
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        deadline = time.monotonic() + AUDIT_DEADLINE_S
        while (job := client.get(f"/v1/audits/{job_id}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert job["status"] == "failed", job
    return job_id


def test_data_file_errors_show_paths_and_cells_only_to_the_roles_that_run_the_service(server) -> None:
    home = str(server.home.resolve())
    job_id = _failed_audit(server, server.home / "data")
    seen = {}
    for role in ("viewer", "auditor", "operator", "admin"):
        with server.client(role) as client:
            seen[role] = client.get(f"/v1/audits/{job_id}/gate")
        assert seen[role].status_code == 409
    for role in ("viewer", "auditor"):
        text = seen[role].text
        assert home not in text and CELL not in text, text
        assert "$RECGOV_HOME/data/bad-cell.csv line 3" in text, "the location stays: the caller still learns what to fix"
    for role in ("operator", "admin"):
        assert home in seen[role].text and CELL in seen[role].text
    for role, shown in (("viewer", False), ("auditor", False), ("operator", True)):  # the job itself, and the list
        with server.client(role) as client:
            job = client.get(f"/v1/audits/{job_id}").json()
            listed = next(j for j in client.get("/v1/audits", params={"status": "failed", "limit": 100}).json()["jobs"] if j["id"] == job_id)
        for error in (job["error"], listed["error"]):
            assert (CELL in error and home in error) is shown, (role, error)
            assert "bad-cell.csv line 3" in error


def test_a_missing_file_names_no_server_path_to_an_auditor(server) -> None:
    with server.client("auditor") as client:
        response = client.post("/v1/audits", json={"pack": "baseline", "data": "absent.csv"})
    assert response.status_code == 422
    text = response.text
    assert str(server.home.resolve()) not in text and "/root/" not in text, text
    assert "$RECGOV_HOME/data" in text
    with server.client("admin") as client:
        assert str(server.home.resolve()) in client.post("/v1/audits", json={"pack": "baseline", "data": "absent.csv"}).text


def test_an_absolute_path_outside_home_is_masked(server) -> None:
    with server.client("auditor") as client:
        response = client.post("/v1/audits", json={"pack": "baseline", "data": "/etc/passwd"})
    assert response.status_code == 422
    assert "/etc/passwd" not in response.text and PATH_MASK in response.text, response.text
