"""Over real HTTP, on SQLite and PostgreSQL: after an erasure the subject's raw id is nowhere recgov keeps or shows,
and no list the service makes for them afterwards is personalised.

The sweep: every file under RECGOV_HOME (model files read as the model reads them), the store's bytes (the SQLite
file with its journal, the rows of every table, trail payloads among them), the regulator's report and its DSA
export, the access export of another subject, the log records of the run, and every API answer. The race: lists
for the subject are asked for while the erasure runs; none asked after it answered is personalised, and the
version it replaced serves nobody.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audits.lineage import record_deployment
from governance.cli import app as cli
from tests.files_naming import files_naming
from tests.store_dump import dump_store

SUBJECT, OTHER = "u000041", "u000042"


def _ask(client, subject: str, version: str | None = None):  # noqa: ANN001
    body = {"subject": subject, "k": 5, "pack": "eu-gdpr-dsa"}
    if version is not None:
        body["model_version"] = version
    return client.post("/v1/recommendations", json=body)


def _store_bytes(server) -> bytes:  # noqa: ANN001
    """The SQLite file and its journals as they lie on disk (free pages included); nothing for PostgreSQL."""
    if not server.db_url.startswith("sqlite"):
        return b""
    path = Path(server.db_url.removeprefix("sqlite:///"))
    assert path.is_file(), path
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-journal")) if p.exists())


def test_after_an_erasure_over_http_the_raw_id_is_nowhere_recgov_keeps_or_shows(
    server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    old = server.model_version
    with server.store.session() as session:
        record_deployment(session, model_version=old, stage="shadow")
        record_deployment(session, model_version=old, stage="production")
    answers: list[str] = []
    with server.client("admin") as client:
        for path, body in (
            ("/v1/consent", {"subject": SUBJECT, "purpose": "personalization", "status": "granted", "basis": "consent", "pack": "eu-gdpr-dsa"}),
            ("/v1/requests/access", {"subject": SUBJECT, "pack": "eu-gdpr-dsa"}),
        ):
            left = client.post(path, json=body)  # the subject leaves traces first (these answers name them: asked for)
            assert left.status_code in (200, 201), left.text
        assert files_naming(server.home, SUBJECT)  # the sweep sees the raw id where it is: the model file lists it
        served = _ask(client, SUBJECT)
        assert served.status_code == 200 and served.json()["mode"] == "personalized", served.text
        erased = client.post("/v1/requests/erasure", json={"subject": SUBJECT, "pack": "eu-gdpr-dsa"})
        assert erased.status_code == 200, erased.text
        answers.append(erased.text)
        for path in ("/v1/requests?limit=1000", "/v1/trail?limit=1000", "/v1/models", "/v1/deployments"):
            got = client.get(path)
            answers.append(got.text)
        other = client.post("/v1/requests/access", json={"subject": OTHER, "pack": "eu-gdpr-dsa"})
        assert other.status_code == 200, other.text
        answers.append(other.text)
        after = _ask(client, SUBJECT)
        assert after.status_code == 200 and after.json()["mode"] == "non_profiling", after.text
        answers.append(after.text)
    refit = next(s["version"] for s in erased.json()["unlearning"] if s.get("previous_version") == old)
    html, dsa = tmp_path / "report.html", tmp_path / "dsa.json"
    reported = CliRunner().invoke(
        cli, ["report", refit, "--pack", "eu-gdpr-dsa", "--out", str(html), "--dsa-audit-export", str(dsa), "--database-url", server.db_url]
    )
    assert reported.exit_code == 0, reported.output
    raw = SUBJECT.encode()
    assert files_naming(server.home, SUBJECT) == []  # model files, keys, caches: every file under RECGOV_HOME
    assert raw not in _store_bytes(server)  # the SQLite file's bytes, free pages and journals included
    assert SUBJECT not in dump_store(server.store)  # every row of every table, trail payloads among them
    assert SUBJECT not in html.read_text() and SUBJECT not in dsa.read_text() and SUBJECT not in reported.output
    for text in answers:
        assert SUBJECT not in text, text[:500]
    assert SUBJECT not in caplog.text


def test_lists_asked_while_the_erasure_runs_are_not_personalised_once_it_answered(server) -> None:
    subject = "u000043"
    with server.client("operator") as client:
        granted = client.post(
            "/v1/consent", json={"subject": subject, "purpose": "personalization", "status": "granted", "basis": "consent", "pack": "eu-gdpr-dsa"}
        )
        assert granted.status_code == 201, granted.text
        warm = _ask(client, subject)
    assert warm.status_code == 200 and warm.json()["mode"] == "personalized", warm.text
    served: list[tuple[float, int, dict]] = []
    stop = threading.Event()

    def ask_again() -> None:
        with server.client("operator") as client:
            while not stop.is_set():
                asked = time.monotonic()
                got = _ask(client, subject)
                served.append((asked, got.status_code, got.json()))

    threads = [threading.Thread(target=ask_again) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        with server.client("admin") as client:
            erased = client.post("/v1/requests/erasure", json={"subject": subject, "pack": "eu-gdpr-dsa"})
        answered = time.monotonic()
        assert erased.status_code == 200, erased.text
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    replaced = {s["previous_version"] for s in erased.json()["unlearning"] if s.get("status") == "unlearned"}
    later = [(code, doc) for asked, code, doc in served if asked > answered]
    assert later, "no list was asked for after the erasure answered"
    for code, doc in later:
        assert code == 200, doc
        assert doc["mode"] == "non_profiling" and all(i["score"] is None for i in doc["items"]), doc
        assert doc.get("model_version") not in replaced, doc
    with server.client("operator") as client:
        for version in replaced:  # the version it replaced serves nobody, the subject nor anyone else
            for who in (subject, "u000044"):
                got = _ask(client, who, version)
                assert got.status_code != 200 or got.json()["mode"] != "personalized", got.text
