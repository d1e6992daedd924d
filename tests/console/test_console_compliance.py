"""The console's compliance pages over real HTTP: a subject's consent under a pack, the Art. 30 record, the Art. 27 disclosure, the data sets.

Run on SQLite and PostgreSQL (the ``server`` fixture). The consent tests look
for the subject's raw id everywhere it must not be: the page, every URL the
client asked for, the trail (over the API, every page of it, and in the
store's own table) and the server's log lines.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import closing
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from conftest import CONSENTING, DATA, DENYING, EU_PACK, MODEL_VERSION, PACK_NAME, ConsoleServer
from console_a11y import accessibility_problems
from console_privacy import all_trail_events, assert_nowhere_in_the_trail, server_log

from audits import record_dataset_version, record_model_version
from audits.models import ModelVersion

COMPLIANCE_PAGES = ("/console/records/processing", "/console/records/disclosure", "/console/datasets")
def _lookup(client: Any, csrf: str | None, **fields: str) -> Any:
    data = dict(fields) | ({"csrf_token": csrf} if csrf is not None else {})
    return client.post("/console/consent", data=data)


def _verdicts(html: str) -> dict[str, tuple[str, str]]:
    """The verdict table: purpose -> (verdict, why)."""
    table = re.search(r'<table id="verdicts">(.*?)</table>', html, re.S).group(1)
    rows = re.findall(r'<th scope="row">([^<]+)</th>\s*<td><span[^>]*>([^<]+)</span></td>\s*<td>([^<]*)</td>', table)
    return {purpose: (verdict, unescape(why)) for purpose, verdict, why in rows}


def test_an_operator_reads_a_subjects_consent_under_the_eu_pack_and_the_trail_records_the_read_by_pseudonym(server: ConsoleServer) -> None:
    with server.api("operator") as api:
        from_api = api.get(f"/v1/consent/{CONSENTING}").json()
    pseudonym = from_api["subject"]
    assert re.fullmatch(r"[0-9a-f]{64}", pseudonym)
    client, csrf = server.signed_in("operator")
    head = server.trail_head()
    with closing(client), server_log() as lines:
        form = client.get("/console/consent")
        assert form.status_code == 200 and '<form method="post" action="/console/consent#result-heading"' in form.text
        answer = _lookup(client, csrf, subject=CONSENTING, pack=EU_PACK)
    assert answer.status_code == 200, answer.text
    assert any("POST /console/consent" in line for line in lines), lines  # the access log was caught: the next check can fail
    assert not any(CONSENTING in line for line in lines)
    assert CONSENTING not in answer.text and CONSENTING not in str(answer.request.url)
    assert f"<code>{pseudonym}</code>" in answer.text
    verdicts = _verdicts(answer.text)
    assert set(verdicts) == {"analytics", "personalization"}  # the EU pack's consent purposes
    assert verdicts["personalization"][0] == "may profile"
    in_force = re.search(r'<table id="in-force">(.*?)</table>', answer.text, re.S).group(1)
    assert from_api["in_force"]["personalization"]["status"] == "granted" and "<td>granted</td>" in in_force
    events = [e for e in all_trail_events(server) if e["seq"] > head]
    actor = f"key:{server.key_ids['operator']}:console-operator"
    assert [(e["actor"], e["action"], e["subject"], e["objects"]) for e in events] == [
        (actor, "api.console.consent.read", pseudonym, {"policy": EU_PACK})
    ]
    assert events[0]["payload"]["found"] is True and events[0]["payload"]["pack"] == EU_PACK
    assert_nowhere_in_the_trail(server, CONSENTING)


def test_a_denied_purpose_is_refused_with_its_reason_and_an_unknown_subject_makes_no_pseudonym(server: ConsoleServer) -> None:
    client, csrf = server.signed_in("admin")
    with closing(client):
        denied = _lookup(client, csrf, subject=DENYING, pack=EU_PACK)
        head = server.trail_head()
        unknown = _lookup(client, csrf, subject="never-seen-subject-55501", pack=EU_PACK)
    assert denied.status_code == 200 and DENYING not in denied.text
    verdict, why = _verdicts(denied.text)["personalization"]
    assert verdict == "may not profile" and "denied" in why
    assert unknown.status_code == 200 and "recgov holds no record of this subject" in unknown.text
    assert "never-seen-subject-55501" not in unknown.text
    assert _verdicts(unknown.text)["personalization"][0] == "may not profile"  # opt-in: no consent, no profiling
    [event] = [e for e in all_trail_events(server) if e["seq"] > head]
    assert (event["action"], event["subject"], event["payload"]["found"]) == ("api.console.consent.read", None, False)
    with server.api("admin") as api:
        assert api.get("/v1/consent/never-seen-subject-55501").json()["subject"] is None  # the read made no pseudonym


def test_the_same_consent_judged_under_another_pack(server: ConsoleServer) -> None:
    client, csrf = server.signed_in("operator")
    with closing(client):
        baseline = _lookup(client, csrf, subject=CONSENTING, pack="baseline")
    assert baseline.status_code == 200
    assert "Under baseline " in baseline.text and '<option value="baseline" selected>' in baseline.text


@pytest.mark.parametrize(
    ("fields", "status", "text"),
    [
        ({"subject": "", "pack": EU_PACK}, 422, "give the subject&#39;s id"),
        ({"subject": "   ", "pack": EU_PACK}, 422, "give the subject&#39;s id"),
        ({"subject": "a\x01b", "pack": EU_PACK}, 422, "without control characters"),
        ({"subject": "x" * 201, "pack": EU_PACK}, 422, "1 to 200 characters"),
        ({"subject": f" {CONSENTING}", "pack": EU_PACK}, 422, "must not begin or end with whitespace"),
        ({"subject": f"{CONSENTING}\n", "pack": EU_PACK}, 422, "must not begin or end with whitespace"),
        ({"subject": f"{CONSENTING}\t", "pack": EU_PACK}, 422, "must not begin or end with whitespace"),
        ({"subject": CONSENTING, "pack": f" {EU_PACK} "}, 404, "choose a pack from the list"),
        ({"subject": CONSENTING, "pack": "no-such-pack"}, 404, "choose a pack from the list"),
        ({"subject": CONSENTING}, 422, "choose a pack from the list"),
    ],
)
def test_bad_input_is_a_located_error_and_reads_and_records_nothing(server: ConsoleServer, fields: dict[str, str], status: int, text: str) -> None:
    client, csrf = server.signed_in("operator")
    head = server.trail_head()
    with closing(client):
        answer = _lookup(client, csrf, **fields)
    assert answer.status_code == status and text in answer.text
    assert 'role="alert"' in answer.text and 'aria-invalid="true"' in answer.text
    assert CONSENTING not in answer.text and "<table" not in answer.text
    assert server.trail_head() == head


def test_the_lookup_needs_the_sessions_csrf_token_and_the_operate_scope(server: ConsoleServer) -> None:
    head = server.trail_head()
    client, csrf = server.signed_in("operator")
    other, _ = server.signed_in("operator")
    with closing(client), closing(other):
        assert _lookup(client, None, subject=CONSENTING, pack=EU_PACK).status_code == 403
        assert _lookup(other, csrf, subject=CONSENTING, pack=EU_PACK).status_code == 403  # another session's token
    with server.browser_client() as anonymous:
        assert anonymous.post("/console/consent", data={"subject": CONSENTING, "pack": EU_PACK}).status_code == 403
    for role in ("viewer", "auditor"):
        refused, refused_csrf = server.signed_in(role)
        with closing(refused):
            page = refused.get("/console/consent")
            assert page.status_code == 403 and "scope &#39;operate&#39;" in page.text
            posted = _lookup(refused, refused_csrf, subject=CONSENTING, pack=EU_PACK)
            assert posted.status_code == 403 and CONSENTING not in posted.text
            assert 'href="/console/consent"' not in refused.get("/console/audits").text
    logins = [e for e in all_trail_events(server) if e["seq"] > head and e["action"] != "api.console.login"]
    assert logins == []


def test_an_auditor_reads_the_processing_record_and_downloads_the_apis_document(server: ConsoleServer) -> None:
    client, _ = server.signed_in("auditor")
    with closing(client):
        page = client.get("/console/records/processing", params={"pack": EU_PACK})
        download = client.get("/console/records/processing.json", params={"pack": EU_PACK})
        named = client.get("/console/records/processing.json", params={"pack": EU_PACK, "recipients": "hosting provider\n\n payment processor "})
        too_many = client.get("/console/records/processing", params={"pack": EU_PACK, "recipients": "\n".join(f"r{n}" for n in range(51))})
        unknown = client.get("/console/records/processing", params={"pack": "no-such-pack"})
    with server.api("auditor") as api:
        from_api = api.get("/v1/records/processing", params={"pack": EU_PACK}).json()
        named_api = api.get("/v1/records/processing", params={"pack": EU_PACK, "recipient": ["hosting provider", "payment processor"]}).json()
    assert page.status_code == 200 and 'download>Download the record as JSON</a>' in page.text
    assert download.status_code == 200 and download.headers["content-type"].startswith("application/json")
    assert re.fullmatch(r'attachment; filename="processing-record-eu-gdpr-dsa-1\.0\.0-\d{4}-\d{2}-\d{2}\.json"', download.headers["content-disposition"])
    document = download.json()
    assert {k: v for k, v in document.items() if k != "generated_at"} == {k: v for k, v in from_api.items() if k != "generated_at"}
    assert {k: v for k, v in named.json().items() if k != "generated_at"} == {k: v for k, v in named_api.items() if k != "generated_at"}
    assert named.json()["recipients"] == ["hosting provider", "payment processor"]
    counts = document["counts"]["consent_records"]["personalization"]
    assert counts["granted"] >= 1 and counts["denied"] >= 1  # the seeded records, counted by the store
    table = re.search(r'<table id="count-consent">(.*?)</table>', page.text, re.S).group(1)
    columns = re.findall(r'<th scope="col">([^<]+)</th>', table)[1:]
    cells = re.findall(r"<td>(\d+)</td>", re.search(r'<th scope="row">personalization</th>(.*?)</tr>', table, re.S).group(1))
    assert dict(zip(columns, map(int, cells))) == {status.replace("_", " "): n for status, n in counts.items()}
    text = unescape(page.text)
    assert f"<dt>Controller</dt><dd>{document['controller']}</dd>" in text
    dpo, details = document["dpo"], document["controller_details"]
    assert details["name"] == document["controller"] and f"<dt>Controller's contact</dt><dd>{details['contact']}</dd>" in text
    assert f"<dt>Data protection officer</dt><dd>{dpo['name']} ({dpo['contact']})</dd>" in text
    for purpose in document["purposes"]:
        assert f'<th scope="row">{purpose["purpose"]}</th>' in text
    assert f"<dt>Open subject requests</dt><dd>{document['counts']['open_requests']}</dd>" in text
    assert too_many.status_code == 422 and "at most 50 recipients" in too_many.text
    assert unknown.status_code == 404 and "no shipped pack" in unescape(unknown.text)


def test_a_viewer_reads_the_disclosure_but_not_the_processing_record(server: ConsoleServer) -> None:
    client, _ = server.signed_in("viewer")
    with closing(client):
        nav = client.get("/console/audits").text
        page = client.get("/console/records/disclosure", params={"pack": EU_PACK, "model_version": MODEL_VERSION})
        download = client.get("/console/records/disclosure.json", params={"pack": EU_PACK, "model_version": MODEL_VERSION})
        unknown_model = client.get("/console/records/disclosure", params={"pack": EU_PACK, "model_version": "no-such-model"})
        refused = client.get("/console/records/processing")
        refused_json = client.get("/console/records/processing.json")
        refused_data = client.get("/console/datasets")
    assert 'href="/console/records/disclosure"' in nav and 'href="/console/records/processing"' not in nav and 'href="/console/datasets"' not in nav
    with server.api("viewer") as api:
        from_api = api.get("/v1/records/disclosure", params={"pack": EU_PACK, "model_version": MODEL_VERSION}).json()
    assert page.status_code == 200 and download.json() == from_api
    assert from_api["model"]["params"] == {"factors": 16, "regularization": 0.05}  # the seeded training run's
    assert '<option value="console-model-1" selected>' in page.text
    assert "<dt>regularization</dt><dd>0.05</dd>" in page.text
    for option in from_api["options"]:
        assert option in unescape(page.text)
    assert download.headers["content-disposition"] == f'attachment; filename="disclosure-eu-gdpr-dsa-1.0.0-{MODEL_VERSION}.json"'
    assert unknown_model.status_code == 404 and "no-such-model" in unescape(unknown_model.text)
    assert refused.status_code == refused_json.status_code == refused_data.status_code == 403


def test_a_model_version_id_beyond_latin_1_is_offered_under_its_exact_name_with_an_ascii_fallback(server: ConsoleServer) -> None:
    version = "модель-推荐-1"  # an id the API takes (any printable text); HTTP headers carry Latin-1 only
    with server.store.session() as session:
        run = session.get(ModelVersion, MODEL_VERSION).training_run_id
        record_model_version(session, version_id=version, kind="als", training_run=run, artifact_hash="sha256:unicode-artifact", artifact_location="models/u.npz")
    client, _ = server.signed_in("viewer")
    with closing(client):
        download = client.get("/console/records/disclosure.json", params={"pack": EU_PACK, "model_version": version})
    assert download.status_code == 200, download.text
    disposition = download.headers["content-disposition"]
    assert disposition.isascii()
    fallback = re.search(r'filename="([^"]*)"', disposition).group(1)
    assert re.fullmatch(r"disclosure-eu-gdpr-dsa-1\.0\.0-[A-Za-z0-9._-]+\.json", fallback)
    exact = re.search(r"filename\*=UTF-8''(\S+)$", disposition).group(1)
    assert unquote(exact) == f"disclosure-eu-gdpr-dsa-1.0.0-{version}.json"
    assert download.json()["model"]["params"] == {"factors": 16, "regularization": 0.05}


@pytest.fixture
def data_folder(server: ConsoleServer) -> Iterator[Path]:
    """$RECGOV_HOME/data with an event log, a MovieLens-100K folder, a nested export, a file of no layout, a hidden file and a link outside."""
    root = server.home / "data"
    made = []
    (root / "ml-100k").mkdir(parents=True, exist_ok=True)
    (root / "exports").mkdir(exist_ok=True)
    files = {
        root / "events.csv": "user_id,item_id,timestamp\n1,2,2026-01-01T00:00:00Z\n",
        root / "ml-100k" / "u.data": "1\t2\t5\t881250949\n",
        root / "exports" / "2026-11.parquet": "not really parquet",
        root / "notes.md": "# notes\n",
        root / ".hidden.csv": "user_id,item_id\n",
    }
    for path, text in files.items():
        path.write_text(text)
        made.append(path)
    outside = root / "elsewhere"
    os.symlink("/etc", outside)
    try:
        yield root
    finally:
        outside.unlink()
        for path in made:
            path.unlink()
        for folder in (root / "ml-100k", root / "exports"):
            folder.rmdir()


def test_an_auditor_lists_the_data_sets_an_audit_may_use_and_the_audit_agrees(server: ConsoleServer, data_folder: Path) -> None:
    with server.store.session() as session:  # recorded by `recgov train` from a file in the folder, and from one elsewhere
        for n, source in enumerate((str(data_folder / "events.csv"), "/srv/private/exports/events.csv")):
            record_dataset_version(
                session, content_hash=f"sha256:console-file-{n}-{server.url[-5:]}", name=f"console-file-{n}", source=source, n_events=1,
                n_users=1, n_items=1, schema={"user": "int64"}, validation={},
            )  # fmt: skip
    client, _ = server.signed_in("auditor")
    with closing(client):
        page = client.get("/console/datasets")
    admin, _ = server.signed_in("admin")
    with closing(admin):
        admin_page = unescape(admin.get("/console/datasets").text)
    assert page.status_code == 200 and accessibility_problems(page.text) == []
    table = re.search(r'<table id="data-files">(.*?)</table>', page.text, re.S).group(1)
    rows = {
        name: (kind, layout, usable)
        for name, kind, layout, usable in re.findall(
            r'<th scope="row"><code>([^<]+)</code></th>\s*<td>([^<]+)</td>\s*<td>([^<]+)</td>.*?<td><span class="\w+">(yes|no)</span></td>', table, re.S
        )
    }
    assert rows == {
        "events.csv": ("file", "event log", "yes"),
        "exports/2026-11.parquet": ("file", "event log", "yes"),
        "ml-100k": ("folder", "movielens-100k", "yes"),
        "notes.md": ("file", "not a layout recgov reads", "no"),
    }  # no hidden file, nothing behind the link that leads out of the folder
    recorded = re.search(r'<table id="recorded-sets">(.*?)</table>', page.text, re.S).group(1)
    assert "console-synthetic" in recorded and f"<code class=\"long\">{DATA}</code>" in unescape(recorded)
    inside = re.search(r'<th scope="row">console-file-0</th>(.*?)</tr>', unescape(recorded), re.S).group(1)
    assert "<code class=\"long\">$RECGOV_HOME/data/events.csv</code>" in inside and inside.endswith('<code class="long">events.csv</code></td>\n    ')
    outside = re.search(r'<th scope="row">console-file-1</th>(.*?)</tr>', unescape(recorded), re.S).group(1)
    assert "/srv/private" not in outside and "<server path>" in outside and "cannot" in outside  # an auditor is not shown server paths
    assert "/srv/private/exports/events.csv" in admin_page  # an admin runs the server: shown them, as the API shows them
    with server.api("auditor") as api:  # the audit's own check refuses what the page leaves out
        outside = api.post("/v1/audits", json={"pack": "baseline", "data": "elsewhere/hostname"})
        missing = api.post("/v1/audits", json={"pack": "baseline", "data": ".absent.csv"})
    assert outside.status_code == 422 and "outside" in outside.text
    assert missing.status_code == 422


def test_the_new_pages_pass_the_accessibility_check_for_each_role_that_opens_them(server: ConsoleServer) -> None:
    for role, paths in (("operator", ["/console/consent", *COMPLIANCE_PAGES]), ("viewer", ["/console/records/disclosure"])):
        client, csrf = server.signed_in(role)
        with closing(client):
            for path in paths:
                page = client.get(path)
                assert page.status_code == 200, path
                assert accessibility_problems(page.text) == [], path
            if role == "operator":
                answer = _lookup(client, csrf, subject=CONSENTING, pack=EU_PACK)
                assert accessibility_problems(answer.text) == []
                assert accessibility_problems(_lookup(client, csrf, subject="", pack=EU_PACK).text) == []


def test_a_stored_pack_version_serves_too_and_a_malformed_query_is_a_422_page(server: ConsoleServer) -> None:
    stored = f"{PACK_NAME}@1.1.0"
    client, csrf = server.signed_in("admin")
    with closing(client):
        record = client.get("/console/records/processing", params={"pack": stored})
        told = client.get("/console/records/disclosure", params={"pack": stored})
        lookup = _lookup(client, csrf, subject=CONSENTING, pack=stored)
        bad_pack = client.get("/console/records/processing", params={"pack": "a\x01b"})
        bad_model = client.get("/console/records/disclosure", params={"model_version": "m" * 129})
        unknown_version = client.get("/console/records/disclosure.json", params={"pack": f"{PACK_NAME}@9.9.9"})
    with server.api("admin") as api:
        from_api = api.get("/v1/records/processing", params={"pack": stored}).json()
    assert record.status_code == 200 and f'<option value="{stored}" selected>' in record.text
    assert f"<dt>Controller</dt><dd>{from_api['controller']}</dd>" in unescape(record.text)
    assert told.status_code == 200 and f"{PACK_NAME} 1.1.0" in told.text
    assert lookup.status_code == 200 and "The pack declares no consent purpose." in lookup.text and CONSENTING not in lookup.text
    assert lookup.headers["cache-control"] == "no-store" and lookup.headers["referrer-policy"] == "no-referrer"
    assert bad_pack.status_code == 422 and "pack" in bad_pack.text
    assert bad_model.status_code == 422 and "model_version" in bad_model.text
    assert unknown_version.status_code == 404 and "no stored pack" in unescape(unknown_version.text)


def test_every_shipped_pack_has_its_record_and_disclosure_pages(server: ConsoleServer) -> None:
    client, _ = server.signed_in("auditor")
    with closing(client), server.api("auditor") as api:
        shipped = [p["ref"] for p in api.get("/v1/packs").json()["packs"] if p["origin"] == "shipped"]
        assert EU_PACK in shipped and len(shipped) >= 3
        for ref in shipped:
            for path in ("/console/records/processing", "/console/records/disclosure"):
                page = client.get(path, params={"pack": ref})
                assert page.status_code == 200 and accessibility_problems(page.text) == [], (path, ref)


def test_a_stored_pack_file_that_is_no_pack_is_a_located_422_page_without_server_paths(server: ConsoleServer) -> None:
    folder = server.home / "packs" / "console-broken"
    folder.mkdir(parents=True)
    (folder / "1.0.0.yaml").write_text("apiVersion: recgov/v1\nmetadata: [not, a, mapping]\n")
    try:
        client, csrf = server.signed_in("operator")
        with closing(client):
            form = client.get("/console/consent")
            assert '<option value="console-broken@1.0.0">' in form.text  # listed from its file name, not parsed to be listed
            record = client.get("/console/records/processing", params={"pack": "console-broken@1.0.0"})
            lookup = _lookup(client, csrf, subject=CONSENTING, pack="console-broken@1.0.0")
        auditor, _ = server.signed_in("auditor")
        with closing(auditor):
            told = auditor.get("/console/records/disclosure", params={"pack": "console-broken@1.0.0"})
            listed = auditor.get("/console/packs")
            compared = auditor.get("/console/packs/console-broken")
    finally:
        (folder / "1.0.0.yaml").unlink()
        folder.rmdir()
    assert record.status_code == 422 and "cannot be used" in unescape(record.text)
    assert lookup.status_code == 422 and "cannot be used" in unescape(lookup.text) and CONSENTING not in lookup.text
    assert told.status_code == 422 and str(server.home) not in told.text  # an auditor is shown no server path
    assert listed.status_code == 200 and "cannot be used" in listed.text and str(server.home) not in listed.text  # the other packs still listed
    assert f'<a href="/console/records/processing?pack={EU_PACK}">Art. 30 record under {EU_PACK}</a>' in listed.text
    assert compared.status_code == 422 and "cannot be used" in unescape(compared.text)


def test_an_id_put_in_the_address_is_neither_looked_up_nor_shown_back(server: ConsoleServer) -> None:
    client, _ = server.signed_in("operator")
    head = server.trail_head()
    with closing(client):
        page = client.get("/console/consent", params={"subject": CONSENTING, "pack": EU_PACK})
    assert page.status_code == 200 and CONSENTING not in page.text and "<table" not in page.text
    assert server.trail_head() == head
