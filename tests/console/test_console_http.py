"""The reviewer's console over real HTTP: signing in, the sessions' cookies and CSRF tokens, roles, and every page.

A browser is played by an httpx client that keeps cookies and follows no
redirect, so that each answer (303, 403, the cookie's attributes) is checked.
"""

from __future__ import annotations

import re
from contextlib import closing
from html import unescape

import pytest
from conftest import LOGIN_TOKEN, ConsoleServer
from console_a11y import accessibility_problems

from governance.api.keys import create_key, revoke_key

PAGES = ("/console/audits", "/console/escalations", "/console/trail", "/console/deployments")
ACTION_FORM = re.compile(r'<form method="post" action="/console/escalations/\d+"')


def _move(client, csrf: str | None, case_id: int, **fields: str):
    data = dict(fields) | ({"csrf_token": csrf} if csrf is not None else {})
    return client.post(f"/console/escalations/{case_id}", data=data)


def test_console_pages_are_not_api_operations(server: ConsoleServer) -> None:
    with server.api("viewer") as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/console")]


def test_a_page_asks_to_sign_in_and_a_form_without_a_session_is_refused(server: ConsoleServer) -> None:
    with server.browser_client() as client:
        page = client.get("/console/escalations")
        assert page.status_code == 303 and page.headers["location"] == "/console/login?next=/console/escalations"
        case_id = server.case_ids[-1]
        refused = _move(client, "made-up", case_id, status="triaged")
        assert refused.status_code == 403 and "sign in first" in refused.text
        assert refused.headers["content-type"].startswith("text/html")
    assert server.case(case_id)["status"] == "open"


def test_signing_in_sets_a_strict_http_only_cookie_that_holds_no_token(server: ConsoleServer) -> None:
    with server.browser_client() as client:
        form = client.get("/console/login")
        assert form.headers["content-security-policy"].startswith("default-src 'none'")
        login_token = LOGIN_TOKEN.search(form.text).group(1)
        signed = client.post("/console/login", data={"login_token": login_token, "token": server.tokens["auditor"], "next": "/console/trail"})
        assert signed.status_code == 303 and signed.headers["location"] == "/console/trail"
        cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith("recgov_console="))
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "max-age", "path"} <= attributes and "samesite=strict" in cookie.lower()
        assert "secure" not in attributes  # plain http here; over https the cookie is Secure
        assert server.tokens["auditor"] not in cookie and server.tokens["auditor"][4:20] not in cookie
        page = client.get("/console/trail")
        assert page.status_code == 200 and f"key {server.key_ids['auditor']} (console-auditor)" in page.text
        assert page.headers["cache-control"] == "no-store"


def test_over_https_the_cookies_are_secure(server: ConsoleServer) -> None:
    """Behind a TLS proxy on this host (uvicorn trusts 127.0.0.1's X-Forwarded-Proto), the page came over https."""
    with server.browser_client() as client:
        client.headers["X-Forwarded-Proto"] = "https"
        form = client.get("/console/login")
        assert "; secure" in form.headers["set-cookie"].lower()
        nonce = form.cookies["recgov_console_login"]  # a client sends a Secure cookie over https only: hand it over
        fields = {"login_token": LOGIN_TOKEN.search(form.text).group(1), "token": server.tokens["viewer"]}
        signed = client.post("/console/login", data=fields, headers={"Cookie": f"recgov_console_login={nonce}"})
        cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith("recgov_console="))
        assert "; secure" in cookie.lower() and "samesite=strict" in cookie.lower()


@pytest.mark.parametrize(
    ("fields", "status", "text"),
    [
        ({"token": "rgk_not-a-key"}, 401, "unknown or revoked"),
        ({"token": ""}, 401, "unknown or revoked"),
        ({"token": "serving"}, 403, "reads nothing"),
    ],
)
def test_a_wrong_key_is_refused_on_the_form(server: ConsoleServer, fields: dict[str, str], status: int, text: str) -> None:
    token = server.tokens["serving"] if fields["token"] == "serving" else fields["token"]
    with server.browser_client() as client:
        login_token = LOGIN_TOKEN.search(client.get("/console/login").text).group(1)
        refused = client.post("/console/login", data={"login_token": login_token, "token": token})
        assert refused.status_code == status and text in refused.text
        assert "recgov_console=" not in refused.headers.get("set-cookie", "")
        assert client.get("/console/audits").status_code == 303


def test_a_sign_in_form_from_elsewhere_is_refused(server: ConsoleServer) -> None:
    with server.browser_client() as client:  # no nonce cookie, or a made-up form token: a login CSRF
        refused = client.post("/console/login", data={"login_token": "x", "token": server.tokens["admin"]})
        assert refused.status_code == 403 and "sign-in form has expired" in refused.text
        client.get("/console/login")
        assert client.post("/console/login", data={"login_token": "x", "token": server.tokens["admin"]}).status_code == 403
        assert client.get("/console/audits").status_code == 303


def test_a_reviewer_triages_then_resolves_a_case_and_the_trail_names_the_key(server: ConsoleServer) -> None:
    case_id = server.case_ids[0]
    actor = f"key:{server.key_ids['admin']}:console-admin"
    client, csrf = server.signed_in("admin")
    with closing(client):
        queue = client.get("/console/escalations")
        assert re.search(rf'<form method="post" action="/console/escalations/{case_id}"', queue.text)
        triaged = _move(client, csrf, case_id, status="triaged", note="looking into it", action="")
        assert triaged.status_code == 303 and triaged.headers["location"] == f"/console/escalations?moved={case_id}"
        assert f"Case {case_id} is now triaged." in client.get(triaged.headers["location"]).text
        resolved = _move(client, csrf, case_id, status="resolved", note="abusive: blocked", action="block")
        assert resolved.status_code == 303
        trail = client.get("/console/trail")
    case = server.case(case_id)
    assert (case["status"], case["action"], case["resolution"]) == ("resolved", "block", "abusive: blocked")
    with server.api("admin") as api:
        events = api.get("/v1/trail/events", params={"limit": 1000}).json()["events"]
    mine = [(e["action"], e["payload"].get("status")) for e in events if e["actor"] == actor and e["objects"].get("case") == case_id]
    assert mine == [
        ("case.triaged", None),
        ("api.console.escalations.transition", "triaged"),
        ("case.resolved", None),
        ("item.blocked", None),
        ("api.console.escalations.transition", "resolved"),
    ]
    assert "api.console.login" in {e["action"] for e in events if e["actor"] == actor}
    assert trail.status_code == 200 and "trail intact" in trail.text and f"<td>{actor}</td><td>api.console.escalations.transition</td>" in trail.text


def test_a_form_without_the_session_csrf_token_is_refused_and_changes_nothing(server: ConsoleServer) -> None:
    case_id = server.case_ids[1]
    client, csrf = server.signed_in("admin")
    other, other_csrf = server.signed_in("admin")
    head = server.trail_head()
    with closing(client), closing(other):
        assert _move(client, None, case_id, status="triaged").status_code == 403
        assert _move(client, other_csrf, case_id, status="triaged").status_code == 403  # another session's token
        assert _move(client, csrf[:-1], case_id, status="triaged").status_code == 403
    assert server.case(case_id)["status"] == "open" and server.trail_head() == head


def test_the_workflow_refuses_an_illegal_move_on_the_page(server: ConsoleServer) -> None:
    case_id = server.case_ids[2]
    client, csrf = server.signed_in("admin")
    with closing(client):
        head = server.trail_head()
        refused = _move(client, csrf, case_id, status="dismissed", action="block")
        assert refused.status_code == 409 and 'role="alert"' in refused.text
        assert _move(client, csrf, case_id, status="reopened").status_code == 422
        assert _move(client, csrf, case_id, status="resolved", action="burn").status_code == 422
        assert _move(client, csrf, 2_000_000_000, status="resolved").status_code == 404
        assert _move(client, csrf, 0, status="resolved").status_code == 404
        json_body = client.post(f"/console/escalations/{case_id}", json={"status": "resolved", "csrf_token": csrf})
        assert json_body.status_code == 415
        assert server.trail_head() == head
    assert server.case(case_id)["status"] == "open"


def test_a_viewer_and_an_auditor_have_no_buttons_and_a_forged_post_is_refused(server: ConsoleServer) -> None:
    case_id = server.case_ids[3]
    viewer, viewer_csrf = server.signed_in("viewer")
    auditor, auditor_csrf = server.signed_in("auditor")
    head = server.trail_head()
    with closing(viewer), closing(auditor):
        refused = viewer.get("/console/escalations")  # as GET /v1/escalations: reading cases needs scope 'audit'
        assert refused.status_code == 403 and "scope 'audit'" in unescape(refused.text) and not ACTION_FORM.search(refused.text)
        assert 'href="/console/escalations"' not in viewer.get("/console/audits").text
        queue = auditor.get("/console/escalations")
        assert queue.status_code == 200 and f'id="case-{case_id}"' in queue.text and not ACTION_FORM.search(queue.text)
        for client, csrf in ((viewer, viewer_csrf), (auditor, auditor_csrf)):  # a valid CSRF token, the wrong role
            forged = _move(client, csrf, case_id, status="resolved", action="block")
            assert forged.status_code == 403 and "scope 'govern'" in unescape(forged.text)
    assert server.case(case_id)["status"] == "open" and server.trail_head() == head


def test_an_auditor_reads_an_audit_every_rule_and_its_gate(server: ConsoleServer) -> None:
    job = server.audit_job
    client, _ = server.signed_in("auditor")
    with closing(client):
        listing = client.get("/console/audits")
        assert f'href="/console/audits/{job["id"]}"' in listing.text
        page = client.get(f"/console/audits/{job['id']}")
    assert page.status_code == 200
    for result in job["results"]:
        assert f'<th scope="row">{result["rule_id"]}' in page.text
    words = "passes" if job["decision"]["passed"] else "blocks"
    assert f"The gate <strong>{words}</strong>" in page.text
    assert "<dt>Gate document matches the recorded results</dt><dd>yes</dd>" in page.text


def test_malformed_addresses_are_pages_too(server: ConsoleServer) -> None:
    client, _ = server.signed_in("viewer")
    with closing(client):
        assert client.get("/console/audits/not-a-job").status_code == 404
        assert client.get("/console/audits/00000000-0000-0000-0000-000000000000").status_code == 404
        bad = client.get("/console/audits", params={"offset": -1})
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html") and "offset" in bad.text


def test_signing_out_or_a_revoked_key_ends_the_session(server: ConsoleServer) -> None:
    client, csrf = server.signed_in("viewer")
    with closing(client):
        cookie = client.cookies.get("recgov_console")
        assert client.post("/console/logout", data={"other": "field"}).status_code == 403  # signing out is a form with its token too
        out = client.post("/console/logout", data={"csrf_token": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/console/login"
    with server.browser_client() as replay:
        replay.cookies.set("recgov_console", cookie, path="/console")
        assert replay.get("/console/audits").status_code == 303
    with server.store.session() as session:
        key, token = create_key(session, name="console-short-lived", role="auditor")
    server.tokens["short-lived"], key_id = token, key.id
    client, _ = server.signed_in("short-lived")
    with closing(client):
        with server.store.session() as session:
            revoke_key(session, key_id)
        assert client.get("/console/audits").status_code == 303


@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_every_page_passes_the_accessibility_check(server: ConsoleServer, role: str) -> None:
    client, _ = server.signed_in(role)
    with closing(client):
        pages = [*PAGES, f"/console/audits/{server.audit_job['id']}"]
        for path in pages:
            page = client.get(path)
            assert page.status_code == 200, path
            assert accessibility_problems(page.text) == [], path
    with server.browser_client() as anonymous:
        assert accessibility_problems(anonymous.get("/console/login").text, navigation=False) == []
