"""``POST /v1/consent-imports`` over real HTTP on SQLite and PostgreSQL: the CLI's report, refused rows located,
a broken body refused whole (422, nothing written), a second import adding nothing, and the call on the trail."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select

from audits.consent import effective_consent
from audits.models import TrailEvent
from governance.consent.import_rows import NOT_ONE_OF

CSV = (
    "user,purpose,status,time,source,banner_version\n"
    "api-import-alice-1,personalization,granted,2026-01-05T09:30:00Z,banner,2025-11\n"
    "api-import-bob-22,personalization,maybe,2026-01-05T09:30:00Z,banner,2025-11\n"
)
JSONL = '{"subject": "api-import-carol-3", "purpose": "analytics", "status": "opted_out", "time": "2026-01-05T09:30:00Z", "source": "gpc"}\n'
PARAMS = {"pack": "eu-gdpr-dsa", "map": "subject=user", "name": "crm-export.csv"}


def test_an_import_answers_the_report_and_a_second_adds_nothing(server) -> None:
    with server.client("operator", **{"Content-Type": "text/csv"}) as client:
        first = client.post("/v1/consent-imports", params=PARAMS, content=CSV)
        second = client.post("/v1/consent-imports", params=PARAMS, content=CSV)
    assert first.status_code == 200, first.text
    doc = first.json()
    assert (doc["file"], doc["format"], doc["rows"], doc["added"], doc["invalid"]) == ("crm-export.csv", "csv", 2, 1, 1)
    assert doc["problems"] == [
        {"line": 3, "field": "status", "reason": NOT_ONE_OF.format(field="status", value="maybe", allowed="granted, denied, withdrawn, opted_out, objected")}
    ]
    assert (second.json()["added"], second.json()["already_recorded"]) == (0, 1)
    with server.store.session() as session:
        assert effective_consent(session, "api-import-alice-1")["personalization"]["status"] == "granted"
        calls = session.scalars(select(TrailEvent).where(TrailEvent.action == "api.consent.import")).all()
    assert len(calls) >= 2
    text = json.dumps([[c.subject, c.objects, c.payload] for c in calls])
    assert "api-import-alice-1" not in text and doc["sha256"] in text


def test_json_lines_by_content_type(server) -> None:
    with server.client("operator", **{"Content-Type": "application/x-ndjson"}) as client:
        response = client.post("/v1/consent-imports", params={"pack": "eu-gdpr-dsa"}, content=JSONL)
    assert response.status_code == 200, response.text
    assert (response.json()["format"], response.json()["added"] + response.json()["already_recorded"]) == ("jsonl", 1)


def test_a_broken_body_is_a_located_422_and_writes_nothing(server) -> None:
    with server.client("operator", **{"Content-Type": "application/x-ndjson"}) as client:
        broken = client.post("/v1/consent-imports", params={"pack": "eu-gdpr-dsa", "name": "broken.jsonl"}, content="[1, 2]\n" + JSONL.replace("{", "", 1))
        unmapped = client.post("/v1/consent-imports", params={"pack": "eu-gdpr-dsa", "format": "csv"}, content=CSV)
        no_format = client.post("/v1/consent-imports", headers={"Content-Type": "text/plain"}, content=CSV)
        no_pack = client.post("/v1/consent-imports", params={"pack": "no-such-pack"}, content=JSONL)
    assert broken.status_code == 422 and broken.json()["detail"].startswith("broken.jsonl line 1: not a JSON object")
    assert broken.json()["errors"][0]["location"] == "body"
    assert unmapped.status_code == 422 and "no column 'subject' for the field subject" in unmapped.json()["detail"]
    assert no_format.status_code == 422 and no_format.json()["errors"][0]["field"] == "format"
    assert no_pack.status_code == 404
    with server.store.session() as session:
        assert "personalization" not in effective_consent(session, "api-import-bob-22")


def test_a_line_that_is_no_row_is_refused_with_its_line_and_the_good_ones_imported(server) -> None:
    with server.client("operator", **{"Content-Type": "application/x-ndjson"}) as client:
        response = client.post("/v1/consent-imports", params={"pack": "eu-gdpr-dsa", "name": "cut.jsonl"}, content="[1, 2]\n" + JSONL)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["problems"] == [{"line": 1, "field": "json", "reason": "not a JSON object (got a list); the line is not read"}]
    assert (report["rows"], report["invalid"], report["added"] + report["already_recorded"]) == (2, 1, 1)


def test_a_body_over_the_limit_is_413(server) -> None:
    with server.client("operator", **{"Content-Type": "text/csv"}) as client:
        response = client.post("/v1/consent-imports", params=PARAMS, content=CSV + "x" * (2 * 1024 * 1024))
    assert response.status_code == 413


def test_a_csv_body_with_lone_carriage_returns_is_read_with_its_lines(server) -> None:
    """An old Mac tool's export (lines end in CR) is a table, not a 500."""
    body = CSV.replace("\n", "\r")
    with server.client("operator", **{"Content-Type": "text/csv"}) as client:
        response = client.post("/v1/consent-imports", params={**PARAMS, "name": "mac.csv"}, content=body)
    assert response.status_code == 200, response.text
    assert [(p["line"], p["field"]) for p in response.json()["problems"]] == [(3, "status")]


def test_a_first_row_wider_than_the_header_is_one_refused_line_not_a_422(server) -> None:
    lines = CSV.splitlines(keepends=True)
    body = lines[0] + lines[1].replace("\n", ",stray\n") + lines[2] + lines[1].replace("alice-1", "alice-4")
    with server.client("operator", **{"Content-Type": "text/csv"}) as client:
        response = client.post("/v1/consent-imports", params={**PARAMS, "name": "wide.csv"}, content=body)
    assert response.status_code == 200, response.text
    assert [(p["line"], p["field"]) for p in response.json()["problems"]] == [(2, "fields"), (3, "status")]
    assert response.json()["added"] + response.json()["already_recorded"] == 1


def test_a_gzip_body_is_read_and_held_to_the_limit_once_decompressed(server) -> None:
    """``Content-Encoding: gzip`` is decompressed (not refused as text that is not UTF-8); the body limit holds for what
    it inflates to, so a small bomb is a 413; another encoding is a 415 naming it; a cut stream a 400. Nothing written."""
    import gzip

    with server.client("operator", **{"Content-Type": "text/csv", "Content-Encoding": "gzip"}) as client:
        packed = client.post("/v1/consent-imports", params=PARAMS, content=gzip.compress(CSV.encode()))
        bomb = client.post("/v1/consent-imports", params=PARAMS, content=gzip.compress(CSV.encode() + b"x" * (64 * 1024 * 1024)))
        cut = client.post("/v1/consent-imports", params=PARAMS, content=gzip.compress(CSV.replace("alice", "cut").encode())[:-12])
    with server.client("operator", **{"Content-Type": "text/csv", "Content-Encoding": "br"}) as client:
        brotli = client.post("/v1/consent-imports", params=PARAMS, content=CSV.replace("alice", "br").encode())
    assert packed.status_code == 200, packed.text
    assert (packed.json()["rows"], packed.json()["invalid"], [p["line"] for p in packed.json()["problems"]]) == (2, 1, [3])
    assert packed.json()["sha256"] == hashlib.sha256(CSV.encode()).hexdigest()  # the file's, as the CLI reports it
    assert bomb.status_code == 413 and "RECGOV_MAX_BODY_BYTES" in bomb.json()["detail"]
    assert cut.status_code == 400 and "gzip" in cut.json()["detail"]
    assert brotli.status_code == 415 and "'br'" in brotli.json()["detail"]
    with server.store.session() as session:
        assert effective_consent(session, "api-import-cut-1") == {} and effective_consent(session, "api-import-br-1") == {}
