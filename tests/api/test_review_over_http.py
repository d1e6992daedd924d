"""A compliance review over HTTP: models, trail events, the signed export and its keys, a pack's text, the records and the report.

Real uvicorn on SQLite and PostgreSQL (``tests/api/conftest.py``): each endpoint
with the role it needs, the role below it refused, and bad input (unknown ids,
bad cursors) refused with a problem document that names what was wrong.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from audits.export import verify_export
from governance.api.errors import PROBLEM_JSON
from governance.packs import shipped_pack_path
from governance.policy import load_pack

RAW_SUBJECT = "review-subject-7f3a"
PACK_TEXT = "apiVersion: recgov/v1\n# kept byte for byte, comments included\nmetadata:\n  name: review-text\n  version: 2.0.0\n  owner: compliance team\n"


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    return response.json()


# -- models --------------------------------------------------------------------------------------
def test_models_list_pages_and_summarises(server) -> None:
    with server.client("viewer") as http:
        page = http.get("/v1/models").json()
        assert page["total"] >= 1 and page["limit"] == 20 and page["offset"] == 0
        summary = next(m for m in page["models"] if m["version_id"] == server.model_version)
        assert summary["kind"] == "als" and summary["dataset"]["content_hash"] and summary["training_run"]["id"]
        assert summary["standing"]["model_standing"] == "trained"
        assert isinstance(summary["deployments"], list)
        assert http.get("/v1/models", params={"limit": 1, "offset": page["total"]}).json()["models"] == []
        _problem(http.get("/v1/models", params={"limit": 0}), 422)


def test_model_detail_has_its_lineage(server) -> None:
    with server.client("viewer") as http:
        detail = http.get(f"/v1/models/{server.model_version}").json()
        lineage = http.get(f"/v1/lineage/{server.model_version}").json()
        assert detail["version_id"] == server.model_version
        assert detail["lineage"]["model_version"] == lineage["model_version"]
        assert detail["lineage"]["trail"] == lineage["trail"]
        problem = _problem(http.get("/v1/models/no-such-model"), 404)
        assert "'no-such-model' is not in the store" in problem["detail"]
    with server.client(None) as http:
        _problem(http.get("/v1/models"), 401)


# -- trail events --------------------------------------------------------------------------------
def test_trail_events_follow_the_cursor_and_filter(server) -> None:
    with server.client("operator") as http:  # a subject in the trail, under its pseudonym only
        consent = {"subject": RAW_SUBJECT, "purpose": "personalization", "status": "granted", "basis": "consent"}
        assert http.post("/v1/consent", json=consent).status_code == 201
    with server.client("auditor") as http:
        everything = http.get("/v1/trail/events", params={"limit": 1000}).json()
        assert everything["next_after"] is None
        seqs = [e["seq"] for e in everything["events"]]
        assert seqs == list(range(1, len(seqs) + 1)) and everything["head_seq"] >= seqs[-1]
        paged, after = [], 0
        while after is not None:
            page = http.get("/v1/trail/events", params={"limit": 3, "after": after}).json()
            assert len(page["events"]) <= 3
            paged += page["events"]
            after = page["next_after"]
        assert [e["seq"] for e in paged] == seqs[: len(paged)] and len(paged) >= len(seqs)
        consents = http.get("/v1/trail/events", params={"action": "consent."}).json()["events"]
        assert consents and all(e["action"].startswith("consent.") for e in consents)
        assert all(e["subject"] != RAW_SUBJECT for e in consents) and any(e["subject"] for e in consents)
        assert RAW_SUBJECT not in http.get("/v1/trail/events", params={"limit": 1000}).text
        assert http.get("/v1/trail/events", params={"action": "100%_"}).json()["events"] == []  # a prefix, not a pattern
        first = everything["events"][0]["time"]
        later = datetime.now(UTC) + timedelta(days=1)
        assert http.get("/v1/trail/events", params={"since": later.isoformat()}).json()["events"] == []
        window = http.get("/v1/trail/events", params={"since": first, "until": later.isoformat()}).json()["events"]
        assert window[0]["seq"] == 1
        for bad in ({"after": -1}, {"after": "abc"}, {"limit": 0}, {"since": "yesterday"}):
            problem = _problem(http.get("/v1/trail/events", params=bad), 422)
            assert problem["errors"], bad
        problem = _problem(http.get("/v1/trail/events", params={"since": later.isoformat(), "until": first}), 422)
        assert "is after 'until'" in problem["detail"]
    with server.client("viewer") as http:
        assert "scope 'audit'" in _problem(http.get("/v1/trail/events"), 403)["detail"]


def test_trail_export_verifies_offline_with_the_published_key(server, tmp_path: Path) -> None:
    with server.client("admin") as http:
        assert http.post("/v1/trail/checkpoint").status_code == 201
    with server.client("viewer") as http:
        keys = http.get("/v1/trail/keys").json()["keys"]
        _problem(http.get("/v1/trail/export"), 403)
    signer = next(k for k in keys if k["checkpoints"] >= 1)
    assert signer["algorithm"] == "ed25519" and signer["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert signer["jwk"]["kty"] == "OKP" and signer["jwk"]["crv"] == "Ed25519" and signer["jwk"]["kid"] == signer["key_id"]
    with server.client("auditor") as http:
        response = http.get("/v1/trail/export")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in response.headers["content-disposition"]
    export = tmp_path / "trail.jsonl"
    export.write_bytes(response.content)
    report = verify_export(export, signer["public_key_pem"])
    assert report.intact and report.head_seq == int(response.headers["x-trail-head-seq"]) and report.checkpoints_verified >= 1
    assert RAW_SUBJECT.encode() not in response.content


# -- a pack's text -------------------------------------------------------------------------------
def test_pack_text_is_the_stored_bytes(server) -> None:
    with server.client("admin") as http:
        assert http.post("/v1/packs", content=PACK_TEXT, headers={"Content-Type": "application/yaml"}).status_code in (200, 201)
    with server.client("viewer") as http:
        response = http.get("/v1/packs/review-text/2.0.0/text")
        assert response.status_code == 200 and response.headers["content-type"].startswith("application/yaml")
        assert response.content == PACK_TEXT.encode()
        stamped = {p["ref"]: p["pack_hash"] for p in http.get("/v1/packs").json()["packs"]}
        assert response.headers["x-pack-hash"] == stamped["review-text@2.0.0"]
        shipped = load_pack(shipped_pack_path("baseline"))
        baseline = http.get(f"/v1/packs/baseline/{shipped.version}/text")
        assert baseline.content == shipped_pack_path("baseline").read_bytes()
        assert "stored versions: 2.0.0" in _problem(http.get("/v1/packs/review-text/9.9.9/text"), 404)["detail"]
        _problem(http.get("/v1/packs/baseline/0.0.0-none/text"), 404)
        _problem(http.get("/v1/packs/..%2F..%2Fetc/passwd/text"), 404)
        assert http.get("/v1/packs/review-text/diff", params={"from": "2.0.0", "to": "2.0.0"}).status_code == 200  # the older router still answers


# -- records -------------------------------------------------------------------------------------
def test_processing_record_and_disclosure(server) -> None:
    with server.client("auditor") as http:
        record = http.get("/v1/records/processing", params={"pack": "baseline", "recipient": ["hosting provider"]}).json()
        assert record["legal_reference"] == "GDPR Art. 30(1)" and record["pack"] == "baseline"
        assert record["recipients"] == ["hosting provider"] and "consent_records" in record["counts"]
        assert "no shipped pack 'nope'" in _problem(http.get("/v1/records/processing", params={"pack": "nope"}), 404)["detail"]
        _problem(http.get("/v1/records/processing"), 422)
    with server.client("viewer") as http:
        _problem(http.get("/v1/records/processing", params={"pack": "baseline"}), 403)
        plain = http.get("/v1/records/disclosure", params={"pack": "baseline"}).json()
        with_model = http.get("/v1/records/disclosure", params={"pack": "baseline", "model_version": server.model_version}).json()
        assert plain["legal_reference"] == "DSA Art. 27(1), Art. 38" and plain["model"]["params"] == {}
        assert with_model["model"]["params"]["factors"] == 8
        _problem(http.get("/v1/records/disclosure", params={"pack": "baseline", "model_version": "no-such-model"}), 404)


# -- the report ----------------------------------------------------------------------------------
def test_report_is_html_by_default(server) -> None:
    with server.client("auditor") as http:
        response = http.get(f"/v1/reports/{server.model_version}")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        assert server.model_version in response.text and "<html" in response.text.lower()
        assert RAW_SUBJECT not in response.text
        disclosed = http.get(f"/v1/reports/{server.model_version}", params={"pack": "baseline"}).text
        assert load_pack(shipped_pack_path("baseline")).content_hash in disclosed
        _problem(http.get("/v1/reports/no-such-model"), 404)
        _problem(http.get(f"/v1/reports/{server.model_version}", params={"pack": "nope@1"}), 404)
        _problem(http.get(f"/v1/reports/{server.model_version}", params={"format": "docx"}), 422)
    with server.client("viewer") as http:
        _problem(http.get(f"/v1/reports/{server.model_version}"), 403)


@pytest.mark.parametrize(
    ("path", "module", "slow"),
    [
        ("/v1/reports/{model_version}", "governance.api.routes.reports", "render_html"),
        ("/v1/trail/verify", "governance.api.routes.trail", "verify_store"),
        ("/v1/trail/export", "governance.api.routes.trail", "export_trail"),
    ],
)
def test_heavy_requests_wait_their_turn_without_taking_the_other_requests_threads(
    server, monkeypatch: pytest.MonkeyPatch, path: str, module: str, slow: str
) -> None:
    """More reports, trail verifications or trail exports than the server has worker threads: a few are worked on at
    a time, the others wait on the event loop, and every other request still gets a thread meanwhile (before, they
    took them all: 16 report requests held a one-row GET /v1/audits for 15 s)."""
    import importlib

    from governance.api import heavy

    started, release, lock = threading.Event(), threading.Event(), threading.Lock()
    busy, most = [0], [0]
    target = importlib.import_module(module)
    original = getattr(target, slow)

    def held(*args, **kwargs):
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        started.set()
        release.wait(60)
        with lock:
            busy[0] -= 1
        return original(*args, **kwargs)

    monkeypatch.setattr(target, slow, held)
    statuses: list[int] = []

    def ask() -> None:
        with server.client("auditor") as http:
            statuses.append(http.get(path.format(model_version=server.model_version)).status_code)

    askers = [threading.Thread(target=ask) for _ in range(server.app.state.settings.api_threads + 4)]
    for asker in askers:
        asker.start()
    try:
        assert started.wait(60), "no request started its work"
        deadline = time.monotonic() + 60
        while busy[0] < heavy.HEAVY_AT_ONCE and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # every request has reached the server
        with server.client("viewer") as http:
            http.timeout = httpx.Timeout(10)
            assert http.get("/v1/audits", params={"limit": 1}).status_code == 200  # a thread was free for it
    finally:
        release.set()
        for asker in askers:
            asker.join(120)
    assert statuses == [200] * len(askers)
    assert most[0] == heavy.HEAVY_AT_ONCE


def _chromium() -> bool:
    return any(shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")) or bool(os.environ.get("RECGOV_CHROMIUM"))


def test_report_as_pdf(server) -> None:
    if not _chromium():
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have Chromium to print the report to PDF")
        pytest.skip("no local Chromium (chromium, chromium-browser, google-chrome or RECGOV_CHROMIUM) to print the PDF with")
    with server.client("auditor", Accept="application/pdf") as http:
        response = http.get(f"/v1/reports/{server.model_version}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf" and response.content.startswith(b"%PDF-")
    assert f'filename="report-{server.model_version}.pdf"' in response.headers["content-disposition"]


def test_openapi_documents_the_review_with_examples(server) -> None:
    with server.client() as http:
        spec = http.get("/openapi.json").json()
    review = ["/v1/models", "/v1/models/{version}", "/v1/reports/{model_version}", "/v1/trail/events", "/v1/trail/export",
              "/v1/trail/keys", "/v1/packs/{name}/{version}/text", "/v1/records/processing", "/v1/records/disclosure"]  # fmt: skip
    for path in review:
        operation = spec["paths"][path]["get"]
        assert operation["summary"] and operation["security"], path
    assert spec["paths"]["/v1/trail/verify"]["get"] and spec["paths"]["/v1/packs/{name}/diff"]["get"]  # the routers sharing a prefix
    schemas = spec["components"]["schemas"]
    for name in ("ModelSummary", "TrailEventPage", "ProcessingRecord", "Disclosure"):
        assert schemas[name]["examples"], name
    report = spec["paths"]["/v1/reports/{model_version}"]["get"]["responses"]["200"]["content"]
    assert {"text/html", "application/pdf"} <= set(report) and report["text/html"]["example"]
