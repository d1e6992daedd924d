"""Harmful content, subject requests and /metrics over real HTTP, on both engines."""

from __future__ import annotations

import logging

import pytest

from governance.api.errors import PROBLEM_JSON

ROLES = ("viewer", "auditor", "operator", "admin")
SUBJECT = "subj-harm-7731"  # a subject id distinctive enough to search for
ERASED_BASE = "subj-erase-5528"


def _endpoints() -> list[tuple[str, str, str, dict, str, int]]:
    """(name, method, path, request kwargs, minimum role, status when allowed)."""
    return [
        ("items.report", "POST", "/v1/items/auth-item/reports", {"json": {"reason": "spam"}}, "operator", 201),
        (
            "items.flag",
            "POST",
            "/v1/items/auth-item/flags",
            {"json": {"category": "spam", "confidence": 0.2, "source": "api"}},
            "operator",
            201,
        ),
        ("escalations.evaluate", "POST", "/v1/escalations/evaluate", {"json": {"pack": "baseline"}}, "admin", 200),
        ("escalations.list", "GET", "/v1/escalations", {"params": {"status": "open"}}, "auditor", 200),
        ("escalations.transition", "POST", "/v1/escalations/999999", {"json": {"status": "triaged"}}, "admin", 404),
        ("subjects.export", "POST", "/v1/subjects/auth-subject/export", {}, "admin", 200),
        ("subjects.erasure", "POST", "/v1/subjects/auth-subject/erasure", {"json": {"pack": "baseline"}}, "admin", 200),
        ("requests.access", "POST", "/v1/requests/access", {"json": {"subject": "auth-subject"}}, "admin", 200),
        ("requests.erasure", "POST", "/v1/requests/erasure", {"json": {"subject": "auth-subject", "pack": "baseline"}}, "admin", 200),
        ("requests.list", "GET", "/v1/requests", {"params": {"kind": "access"}}, "auditor", 200),
        ("metrics", "GET", "/metrics", {}, "viewer", 200),
    ]


@pytest.mark.parametrize("endpoint", [e[0] for e in _endpoints()])
def test_authorization_matrix(server, endpoint: str) -> None:
    _, method, path, kwargs, minimum, ok = next(e for e in _endpoints() if e[0] == endpoint)
    expected = {None: 401, "revoked": 401} | {
        role: ok if ROLES.index(role) >= ROLES.index(minimum) else 403 for role in ROLES
    }
    got = {}
    for role in expected:
        with server.client(role) as client:
            response = client.request(method, path, **kwargs)
        got[role] = response.status_code
        if response.status_code >= 400:
            assert response.headers["content-type"] == PROBLEM_JSON, response.text
    assert got == expected


def test_report_flow_opens_a_case_and_the_workflow_refuses_illegal_moves(server) -> None:
    with server.client("operator") as client:
        for n in range(3):
            reported = client.post(
                "/v1/items/harm-item-1/reports", json={"reason": f"abusive ({n})", "reporter": f"{SUBJECT}-{n}"}
            )
            assert reported.status_code == 201, reported.text
            assert reported.json()["reporter"] is not None and SUBJECT not in reported.text  # a pseudonym
        assert client.post("/v1/items/harm-item-1/reports", json={"reason": "x", "extra": 1}).status_code == 422
    with server.client("admin") as client:
        evaluated = client.post("/v1/escalations/evaluate", json={"pack": "baseline"})
        assert evaluated.status_code == 200, evaluated.text
        opened = [c for c in evaluated.json()["opened"] if c["item_id"] == "harm-item-1"]
        assert [c["rule"] for c in opened] == ["harm.reports"]
        case_id = opened[0]["case_id"]
        assert client.post("/v1/escalations/evaluate", json={"pack": "no-such-pack"}).status_code == 404
        again = client.post("/v1/escalations/evaluate", json={"pack": "baseline", "since": "2000-01-01T00:00:00Z"})
        assert again.status_code == 200 and again.json()["opened"] == []  # the case is open already: nothing new
        naive = client.post("/v1/escalations/evaluate", json={"since": "2000-01-01T00:00:00"})
        assert naive.status_code == 422
    with server.client("auditor") as client:
        listed = client.get("/v1/escalations", params={"status": "open"}).json()["cases"]
        assert case_id in {c["id"] for c in listed}
        assert client.get("/v1/escalations", params={"status": "bogus"}).status_code == 422
    with server.client("admin") as client:
        refused = client.post(f"/v1/escalations/{case_id}", json={"status": "dismissed", "action": "block"})
        assert refused.status_code == 409 and refused.headers["content-type"] == PROBLEM_JSON
        dismissed = client.post(f"/v1/escalations/{case_id}", json={"status": "dismissed", "note": "not abusive"})
        assert dismissed.status_code == 200, dismissed.text
        assert dismissed.json()["status"] == "dismissed" and dismissed.json()["resolution"] == "not abusive"
        illegal = client.post(f"/v1/escalations/{case_id}", json={"status": "triaged"})
        assert illegal.status_code == 409 and illegal.headers["content-type"] == PROBLEM_JSON
        assert illegal.json()["type"].endswith("/case-workflow") and "final" in illegal.json()["detail"]
        flagged = client.post("/v1/items/harm-item-2/flags", json={"category": "violence", "confidence": 1.5})
        assert flagged.status_code == 422


def _in_body(client, kind: str, subject: str, body: dict | None = None):
    return client.post(f"/v1/requests/{kind}", json={"subject": subject, **(body or {})})


def _in_url(client, kind: str, subject: str, body: dict | None = None):
    path = f"/v1/subjects/{subject}/{'export' if kind == 'access' else 'erasure'}"
    return client.post(path, json=body) if body is not None else client.post(path)


@pytest.mark.parametrize("route", ["body", "url"])
def test_export_erasure_and_requests_without_raw_ids_in_logs(server, caplog: pytest.LogCaptureFixture, route: str) -> None:
    """The same requests with the id in the body (``/v1/requests/access|erasure``) and in the deprecated URL form."""
    call = _in_body if route == "body" else _in_url
    ERASED = f"{ERASED_BASE}-{route}"
    caplog.set_level(logging.DEBUG)
    with server.client("operator") as client:
        for status in ("granted", "withdrawn"):
            body = {
                "subject": ERASED,
                "purpose": "personalization",
                "status": status,
                "basis": "consent",
                "source": "api",
            }
            assert client.post("/v1/consent", json=body).status_code == 201
    with server.client("admin") as client:
        exported = call(client, "access", ERASED)
        assert exported.status_code == 200, exported.text
        doc = exported.json()
        assert doc["subject"] == {"id": ERASED}
        assert [r["status"] for r in doc["consent"]["history"]] == ["granted", "withdrawn"]
        with_pack = call(client, "access", ERASED, {"pack": "baseline"})
        assert with_pack.status_code == 200 and with_pack.json()["profiling"] is not None
        erased = call(client, "erasure", ERASED, {"pack": "baseline"})
        assert erased.status_code == 200, erased.text
        report = erased.json()
        assert report["request"]["status"] == "completed" and report["shredded"] is True
        assert report["unlearning"] == [] and "versions" in report["models"]
        assert ERASED not in erased.text
        after = call(client, "access", ERASED).json()
        # the old records are unlinkable; only the restriction kept through erasure (a suppression
        # entry, so that the withdrawal still holds) is still theirs
        kept = after["consent"]["history"]
        assert [(r["purpose"], r["status"]) for r in kept] == [("personalization", "withdrawn")]
        assert kept[0]["evidence"]["note"].startswith("kept through erasure")
        assert after["decisions"] == [] and after["requests"][0]["kind"] == "access"
        assert len(after["requests"]) == 1  # only this very request: the old ones are unlinkable
    with server.client("auditor") as client:
        erasures = client.get("/v1/requests", params={"kind": "erasure", "status": "completed"})
        assert erasures.status_code == 200 and ERASED not in erasures.text
        assert any(r["subject"] == report["pseudonym"] for r in erasures.json()["requests"])
        assert client.get("/v1/requests", params={"kind": "nope"}).status_code == 422
    server_side = [
        r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    ]  # those are the test's client
    assert not any(ERASED in r.getMessage() for r in server_side)
    assert not any(r.name == "uvicorn.access" for r in server_side)  # the access log (request paths) is off
    from sqlalchemy import select

    from audits.models import TrailEvent

    with server.store.session() as session:
        for event in session.scalars(select(TrailEvent)):
            assert ERASED not in repr((event.subject, event.objects, event.payload))


@pytest.mark.parametrize(
    ("kind", "body", "location"),
    [
        ("access", {}, ["body", "subject"]),
        ("erasure", {"pack": "baseline"}, ["body", "subject"]),
        ("access", {"subject": "   "}, ["body", "subject"]),
        ("access", {"subject": "x" * 201}, ["body", "subject"]),
        ("erasure", {"subject": "subj-bad-body", "pack": "baseline", "purge": True}, ["body", "purge"]),
        ("access", {"subject": "subj-bad-body", "pack": ""}, ["body", "pack"]),
        ("erasure", {"subject": 42, "pack": "baseline"}, ["body", "subject"]),
    ],
)
def test_a_broken_request_body_is_refused_where_it_is_wrong_and_records_nothing(server, kind: str, body: dict, location: list[str]) -> None:
    with server.client("auditor") as client:
        before = client.get("/v1/requests").json()["requests"]
    with server.client("admin") as client:
        response = client.post(f"/v1/requests/{kind}", json=body)
    assert response.status_code == 422, response.text
    assert any([error["location"], error["field"]] == location for error in response.json()["errors"]), response.text
    with server.client("auditor") as client:
        assert client.get("/v1/requests").json()["requests"] == before


@pytest.mark.parametrize("kind", ["export", "erasure"])
def test_a_pack_in_the_query_of_the_id_in_path_routes_is_refused_not_ignored(server, kind: str) -> None:
    # These routes read the pack from the body: ?pack=eu-gdpr-dsa used to be ignored and the request judged
    # under the baseline pack's deadlines while the caller believed otherwise.
    with server.client("auditor") as client:
        before = client.get("/v1/requests").json()["requests"]
    with server.client("admin") as client:
        response = client.post(f"/v1/subjects/subj-query-pack/{kind}?pack=eu-gdpr-dsa")
    assert response.status_code == 422, response.text
    assert [[e["location"], e["field"]] for e in response.json()["errors"]] == [["query", "pack"]]
    with server.client("auditor") as client:
        assert client.get("/v1/requests").json()["requests"] == before


def test_metrics_after_a_recommendation(server) -> None:
    with server.client("operator") as client:
        served = client.post(
            "/v1/recommendations",
            json={"subject": "u000007", "k": 3, "model_version": server.model_version, "pack": "baseline"},
        )
        assert served.status_code == 200, served.text
        mode = served.json()["mode"]
        assert client.post(f"/v1/subjects/{SUBJECT}/export").status_code == 403  # an error with an id in the path
        assert client.post("/v1/items/metric-item-42/reports", json={"reason": "spam"}).status_code == 201
        assert client.get("/v1/no-such/metric-path-99").status_code == 404
    with server.client("viewer") as client:
        response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'recgov_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/recommendations"}' in text
    assert 'route="/v1/subjects/{subject_id}/export"' in text
    assert 'method="POST",route="/v1/items/{item_id}/reports"' in text
    assert 'route="<unmatched>"' in text
    decided = next(line for line in text.splitlines() if line.startswith(f'recgov_decisions_total{{outcome="{mode}"}}'))
    assert float(decided.split()[-1]) >= 1
    assert 'recgov_http_errors_total{status_class="4xx"}' in text
    for raw in (SUBJECT, f"{ERASED_BASE}-body", f"{ERASED_BASE}-url", "u000007", "harm-item-1", "auth-subject", "metric-item-42", "metric-path-99"):
        assert raw not in text
