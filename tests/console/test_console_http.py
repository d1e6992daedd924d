"""The reviewer's console over real HTTP: signing in, the sessions' cookies and CSRF tokens, roles, and every page.

A browser is played by an httpx client that keeps cookies and follows no
redirect, so that each answer (303, 403, the cookie's attributes) is checked.
"""

from __future__ import annotations

import re
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from conftest import LOGIN_TOKEN, MODEL_VERSION, PACK_NAME, ConsoleServer
from console_a11y import accessibility_problems

from audits import record_dataset_version, record_model_version, record_training_run
from audits.models import AuditJob
from governance.api.keys import create_key, revoke_key

PAGES = (
    "/console/audits", "/console/escalations", "/console/trail", "/console/deployments", "/console/requests", "/console/packs",
    f"/console/packs/{PACK_NAME}", f"/console/lineage/{MODEL_VERSION}",
)  # fmt: skip
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


def test_an_unblock_on_the_page_says_what_still_keeps_the_item_out(server: ConsoleServer) -> None:
    """An unblock answered 'now resolved' and nothing more, while an active flag kept the item out all the same:
    the API's answer (still_held) and the CLI said it; the page did not."""
    item = "console-held-item"
    with server.api("operator") as api:
        for n in range(3):
            assert api.post(f"/v1/items/{item}/reports", json={"reason": f"abusive ({n})"}).status_code == 201
    with server.api("admin") as api:
        opened = api.post("/v1/escalations/evaluate", json={"pack": "baseline"}).json()["opened"]
        case_id = next(c["case_id"] for c in opened if c["item_id"] == item)
        flagged = api.post(f"/v1/items/{item}/flags", json={"category": "violence", "confidence": 0.9, "source": "model"})
        assert flagged.status_code == 201, flagged.text
    client, csrf = server.signed_in("admin")
    with closing(client):
        blocked = _move(client, csrf, case_id, status="triaged", action="block")
        page = client.get(blocked.headers["location"]).text
        assert f"Case {case_id} is now triaged." in page and "stays out of lists" not in page
        unblocked = _move(client, csrf, case_id, status="resolved", action="unblock", note="not abusive after all")
        raw = client.get(unblocked.headers["location"]).text
    page = unescape(raw)
    assert f"Case {case_id} is now resolved. Item {item} is unblocked, but it stays out of lists meanwhile:" in page
    assert f"<li>flag {flagged.json()['id']} (violence) is active: under a pack that blocks 'violence' it keeps the item out</li>" in page
    assert accessibility_problems(raw) == []


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


@pytest.mark.parametrize(
    ("status", "note", "why"),
    [("triaged", "n" * 10_001, "at most 10000 characters"), ("resolved", "confirmed\x00abuse", "NUL")],
    ids=["too-long", "nul"],
)
def test_a_note_the_api_refuses_is_a_located_422_page_and_changes_nothing(server: ConsoleServer, status: str, note: str, why: str) -> None:
    """The API refuses a note longer than 10,000 characters or holding a NUL (which PostgreSQL text cannot hold);
    the console's form answered the first with a JSON problem echoing the whole note (not a page), and took the
    second to the store. Both are now refused on the page, naming the note, as the API does."""
    case_id = server.case_ids[2]
    client, csrf = server.signed_in("admin")
    with closing(client):
        head = server.trail_head()
        refused = _move(client, csrf, case_id, status=status, note=note)
        assert refused.status_code == 422, refused.text[:300]
        assert 'role="alert"' in refused.text and "note" in unescape(refused.text) and why in unescape(refused.text)
        with server.api("admin") as api:
            assert api.post(f"/v1/escalations/{case_id}", json={"status": status, "note": note}).status_code == 422
    assert server.case(case_id)["status"] == "open" and server.trail_head() == head


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


@pytest.mark.parametrize("tamper", ["decision", "results"])
def test_a_gate_document_changed_in_the_store_shows_no_decision_on_the_audit_pages(server: ConsoleServer, tamper: str) -> None:
    job = server.audit_job
    with server.store.session() as session:
        row = session.get(AuditJob, job["id"])
        original = row.gate
        passed = not original["decision"]["passed"]  # the opposite of what the audit decided
        if tamper == "decision":
            row.gate = {**original, "decision": {**original["decision"], "passed": passed, "reasons": []}}
        else:
            row.gate = {**original, "results": [{**r, "status": "fail"} for r in original["results"]]}
    try:
        client, _ = server.signed_in("viewer")
        with closing(client):
            page = client.get(f"/console/audits/{job['id']}")
            listing = client.get("/console/audits")
    finally:
        with server.store.session() as session:
            session.get(AuditJob, job["id"]).gate = original
    assert page.status_code == 200
    assert "The gate <strong>" not in page.text
    assert f"no longer matches the results recorded for audit {job['audit_id']}" in unescape(page.text)
    assert "<dt>Gate document matches the recorded results</dt><dd>no:" in unescape(page.text)
    row = re.search(rf'href="/console/audits/{job["id"]}".*?</tr>', listing.text, re.S).group(0)
    assert "not to be trusted" in row and ">passes<" not in row and ">blocks<" not in row


def test_malformed_addresses_are_pages_too(server: ConsoleServer) -> None:
    client, _ = server.signed_in("viewer")
    with closing(client):
        assert client.get("/console/audits/not-a-job").status_code == 404
        assert client.get("/console/audits/00000000-0000-0000-0000-000000000000").status_code == 404
        assert client.get("/console/audits", params={"status": ""}).status_code == 200  # the filter form's "any" filters nothing
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


def test_a_viewer_follows_a_deployed_model_version_to_its_lineage(server: ConsoleServer) -> None:
    client, _ = server.signed_in("viewer")
    with closing(client):
        deployments = client.get("/console/deployments")
        assert f'<a href="/console/lineage/{MODEL_VERSION}">{MODEL_VERSION}</a>' in deployments.text
        page = client.get(f"/console/lineage/{MODEL_VERSION}")
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        text = unescape(page.text)
        assert "console-synthetic" in text and "sha256:console-data" in text  # the data set version
        assert "factors = 16" in text and "implicit 0.7.2" in text  # the training run
        assert "sha256:console-artifact" in text and "<dt>Stage now</dt><dd>shadow</dd>" in text
        assert "baseline 1.0.0" in text and "status-pass" in text  # the audit of the model
        assert "<td>shadow</td>" in text and "console-tests" in text  # its move to shadow
        for action in ("dataset.recorded", "training_run.recorded", "model.recorded", "audit.recorded", "deployment.changed"):
            assert f"<td>{action}</td>" in text  # the trail events that recorded each step
        audit = client.get(f"/console/audits/{server.audit_job['id']}")  # a data-only audit has no model version to follow
        assert "an audit of data only" in audit.text and "/console/lineage/" not in audit.text


def test_the_lineage_page_shows_a_viewer_no_server_path(server: ConsoleServer, tmp_path) -> None:
    """A file data set's source is a server path: whole to an admin, masked to a viewer, as GET /v1/lineage shows it."""
    source = str(tmp_path / "private-exports" / "events.csv")
    version = f"console-paths-{uuid.uuid4().hex[:8]}"
    started = datetime.now(UTC) - timedelta(hours=1)
    with server.store.session() as session:
        data = record_dataset_version(
            session, content_hash=f"sha256:{uuid.uuid4().hex}", name="console-paths", source=source, n_events=10, n_users=3,
            n_items=4, schema={"user": "int64", "item": "int64"}, validation={"duplicates": 0},
        )  # fmt: skip
        run = record_training_run(
            session, dataset_version=data, params={"factors": 8}, library_versions={"implicit": "0.7.2"},
            started_at=started, ended_at=started + timedelta(seconds=5),
        )  # fmt: skip
        record_model_version(session, version_id=version, kind="als", training_run=run, artifact_hash="sha256:p", artifact_location="models/p.npz")
    for role, shown in (("viewer", False), ("admin", True)):
        client, _ = server.signed_in(role)
        with closing(client):
            text = unescape(client.get(f"/console/lineage/{version}").text)
        assert (source in text) is shown and ("private-exports" in text) is shown, role
        assert ("<server path>" in text) is not shown, role


def test_an_unknown_model_version_is_a_not_found_page(server: ConsoleServer) -> None:
    client, _ = server.signed_in("viewer")
    with closing(client):
        missing = client.get("/console/lineage/no-such-model")
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
        assert "no model version 'no-such-model'" in unescape(missing.text) and 'role="alert"' in missing.text
        assert client.get("/console/lineage/" + "m" * 129).status_code == 404  # longer than any version id
    with server.browser_client() as anonymous:
        assert anonymous.get(f"/console/lineage/{MODEL_VERSION}").status_code == 303  # sign in first


def test_an_auditor_reads_subject_requests_by_pseudonym_with_the_overdue_marked(server: ConsoleServer) -> None:
    ids = server.request_ids
    client, _ = server.signed_in("auditor")
    with closing(client):
        page = client.get("/console/requests")
        assert page.status_code == 200
        rows = {n: re.search(rf'<tr id="request-{n}">(.*?)</tr>', page.text, re.S).group(1) for n in ids.values()}
        assert 'class="overdue"' in rows[ids["overdue"]] and "received" in rows[ids["overdue"]]
        assert 'class="overdue"' not in rows[ids["due"]] and 'class="overdue"' not in rows[ids["completed"]]
        assert "completed" in rows[ids["completed"]] and "1 overdue" in page.text
        assert "console-subject" not in page.text  # pseudonyms only, never the raw id
        with server.api("auditor") as api:
            pseudonyms = {r["id"]: r["subject"] for r in api.get("/v1/requests").json()["requests"]}
        assert all(f"<code>{pseudonyms[n][:16]}</code>" in rows[n] for n in ids.values())
        erasures = client.get("/console/requests", params={"kind": "erasure"})
        assert f'id="request-{ids["overdue"]}"' in erasures.text and f'id="request-{ids["due"]}"' not in erasures.text
        anything = client.get("/console/requests", params={"kind": "", "status": ""})  # the filter form's "any"
        assert anything.status_code == 200 and all(f'id="request-{n}"' in anything.text for n in ids.values())
        assert client.get("/console/escalations", params={"status": ""}).status_code == 200
        bad = client.get("/console/requests", params={"status": "lost"})
        assert bad.status_code == 422 and "status" in bad.text


def test_the_requests_page_pages_by_cursor_with_its_filters(server: ConsoleServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of REQUESTS_PER_PAGE (two here), "Later requests" carrying the filters, the overdue count over all pages."""
    from audits import list_requests
    from governance.api.console import records

    monkeypatch.setattr(records, "REQUESTS_PER_PAGE", 2)  # the server runs in this process: its module is this one
    with server.store.session() as session:
        expected = [r["id"] for r in list_requests(session)]
        overdue = [r["id"] for r in list_requests(session, overdue_at=datetime.now(UTC))]
        overdue_erasures = [r["id"] for r in list_requests(session, kind="erasure", overdue_at=datetime.now(UTC))]
    client, _ = server.signed_in("auditor")
    with closing(client):
        seen, url = [], "/console/requests"
        while url:
            page = client.get(url)
            assert page.status_code == 200, page.text
            rows = [int(n) for n in re.findall(r'<tr id="request-(\d+)">', page.text)]
            assert len(rows) <= 2 and f"{len(overdue)} overdue</strong> in all" in page.text
            seen += rows
            later = re.search(r'<a href="(/console/requests\?after=\d+[^"]*)">Later requests</a>', page.text)
            url = unescape(later.group(1)) if later else None
        assert seen == expected and len(expected) > 2
        only = client.get("/console/requests", params={"overdue": "true", "kind": "erasure"})
        assert [int(n) for n in re.findall(r'<tr id="request-(\d+)">', only.text)] == overdue_erasures[:2] and overdue_erasures
        assert "checked" in re.search(r'<input type="checkbox" id="overdue"[^>]*>', only.text).group(0)
        first = client.get("/console/requests", params={"after": expected[0], "kind": "access"})
        later = re.search(r'href="/console/requests\?after=0([^"]*)">First requests</a>', first.text)
        assert later and unescape(later.group(1)) == "&kind=access"
        bad = client.get("/console/requests", params={"after": max(expected) + 10_000})
        assert bad.status_code == 422 and f"no subject request {max(expected) + 10_000}" in unescape(bad.text)
        assert client.get("/console/requests", params={"after": -1}).status_code == 422
        assert client.get("/console/requests", params={"after": 2**31}).status_code == 422  # past the id column: no 500


def test_a_viewer_is_refused_the_subject_requests(server: ConsoleServer) -> None:
    client, _ = server.signed_in("viewer")
    with closing(client):
        refused = client.get("/console/requests")
        assert refused.status_code == 403 and "scope 'audit'" in unescape(refused.text)
        assert "request-" not in refused.text
        assert 'href="/console/requests"' not in client.get("/console/audits").text


def test_a_viewer_compares_two_versions_of_a_stored_pack(server: ConsoleServer) -> None:
    client, _ = server.signed_in("viewer")
    with closing(client):
        listing = client.get("/console/packs")
        assert listing.status_code == 200 and f'href="/console/packs/{PACK_NAME}"' in listing.text
        assert '<th scope="row">baseline</th>' in listing.text  # a shipped pack
        page = client.get(f"/console/packs/{PACK_NAME}")  # the two latest versions by default
        assert page.status_code == 200
        text = unescape(page.text)
        assert '<option value="1.0.0" selected>' in text and '<option value="1.1.0" selected>' in text
        added = text[text.index('id="added-heading"') : text.index('id="removed-heading"')]
        removed = text[text.index('id="removed-heading"') : text.index('id="changed-heading"')]
        changed = text[text.index('id="changed-heading"') : text.index('id="settings-heading"')]
        assert '<th scope="row">data-drift</th>' in added and "params.max</dt><dd>0.25" in added
        assert '<th scope="row">carbon-budget</th>' in removed and "params.max_energy_kwh</dt><dd>1" in removed
        assert re.search(r"data-validation</th>\s*<td>params.default_max_share</td>\s*<td>0.05</td>\s*<td>0.02</td>\s*<td>yes</td>\s*<td>stricter</td>", changed)
        # each line's effect on what the gate lets through, counted as `recgov policy diff` counts them
        assert "<td>stricter</td>" in added and "<td>looser</td>" in removed
        assert "<dt>Effect on the gate</dt><dd>2 stricter, 1 looser</dd>" in text
        assert "metadata.owner" in text and "privacy office" in text
        settings = text[text.index('id="settings-heading"') :]
        assert re.search(r"metadata.owner</th><td>compliance team</td><td>privacy office</td><td>depends on the data</td>", settings)
        same = client.get(f"/console/packs/{PACK_NAME}", params={"from": "1.1.0", "to": "1.1.0"})
        assert same.status_code == 200 and "hold the same rules and settings" in same.text


@pytest.mark.parametrize(
    ("path", "params", "text"),
    [
        ("/console/packs/no-such-pack", {}, "no stored pack 'no-such-pack'"),
        ("/console/packs/baseline", {}, "no stored pack 'baseline'"),  # shipped: one version, nothing to compare
        (f"/console/packs/{PACK_NAME}", {"from": "1.0.0", "to": "9.9.9"}, "stored versions: 1.0.0, 1.1.0"),
    ],
)
def test_an_unknown_pack_or_version_is_a_not_found_page(server: ConsoleServer, path: str, params: dict[str, str], text: str) -> None:
    client, _ = server.signed_in("viewer")
    with closing(client):
        missing = client.get(path, params=params)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert text in unescape(missing.text)


def test_trail_pages_wait_their_turn_without_taking_the_other_pages_threads(server: ConsoleServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trail page verifies the whole store, as GET /v1/trail/verify does: more of them than the server has worker
    threads are worked on a few at a time, and the other pages still get a thread meanwhile."""
    import threading
    import time

    import httpx

    from governance.api import heavy
    from governance.api.console import pages

    started, release, lock = threading.Event(), threading.Event(), threading.Lock()
    busy, most = [0], [0]
    original = pages.verify_store

    def held(connection, **kwargs):
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        started.set()
        release.wait(60)
        with lock:
            busy[0] -= 1
        return original(connection, **kwargs)

    monkeypatch.setattr(pages, "verify_store", held)
    auditor, _ = server.signed_in("auditor")
    viewer, _ = server.signed_in("viewer")
    cookies = dict(auditor.cookies)
    statuses: list[int] = []

    def ask() -> None:
        with server.browser_client() as client:
            client.cookies.update(cookies)
            statuses.append(client.get("/console/trail").status_code)

    askers = [threading.Thread(target=ask) for _ in range(12)]  # more than the server's 8 worker threads
    for asker in askers:
        asker.start()
    try:
        assert started.wait(60), "no trail page started its verification"
        deadline = time.monotonic() + 60
        while busy[0] < heavy.HEAVY_AT_ONCE and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        viewer.timeout = httpx.Timeout(10)
        assert viewer.get("/console/deployments").status_code == 200  # a thread was free for it
    finally:
        release.set()
        for asker in askers:
            asker.join(120)
        auditor.close()
        viewer.close()
    assert statuses == [200] * len(askers)
    assert most[0] == heavy.HEAVY_AT_ONCE


def test_a_failed_request_still_owed_is_marked_overdue_as_the_api_counts_it(server: ConsoleServer) -> None:
    """A failed erasure past its deadline, with no later erasure of the subject completed, is still owed: the API's
    overdue filter lists it and the page's count included it, yet its row was not marked overdue (the page marked
    open requests only), so the count named one more overdue request than the rows showed. Once a retry completes,
    neither the API nor the page counts it any more."""
    from audits import open_request, update_request

    now = datetime.now(UTC)
    subject = f"console-failed-{uuid.uuid4().hex[:8]}"
    with server.store.session() as session:
        failed = open_request(session, subject_id=subject, kind="erasure", deadline_days=30, requested_at=now - timedelta(days=45))
        update_request(session, failed.id, status="in_progress")
        update_request(session, failed.id, status="failed", result={"reason": "model store unreachable"})
    client, _ = server.signed_in("auditor")

    def shown() -> tuple[bool, int, list[int]]:
        page = client.get("/console/requests", params={"kind": "erasure"}).text
        row = re.search(rf'<tr id="request-{failed.id}">(.*?)</tr>', page, re.S).group(1)
        count = re.search(r"(\d+) overdue</strong> in all", page)
        with server.api("auditor") as api:
            listed = api.get("/v1/requests", params={"kind": "erasure", "overdue": "true", "limit": 1000}).json()["requests"]
        return 'class="overdue"' in row, int(count.group(1)) if count else 0, [r["id"] for r in listed]

    with closing(client):
        marked, count, api_overdue = shown()
        assert failed.id in api_overdue and marked, "the API counts it overdue; the page must mark its row"
        with server.store.session() as session:
            retry = open_request(session, subject_id=subject, kind="erasure", deadline_days=30)
            update_request(session, retry.id, status="in_progress")
            update_request(session, retry.id, status="completed", result={"erased": True})
        marked, after, api_overdue = shown()
        assert failed.id not in api_overdue and not marked and after == count - 1
