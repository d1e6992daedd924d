"""Consent changes reach the very next list over real HTTP, whoever writes them (the serving process's
consent cache, audits.consent.ConsentReadCache, must never serve a stale state), on SQLite and PostgreSQL.

The server is warmed on each subject first, so that its cache holds the state the change replaces.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from audits import record_consent
from audits.consent import consent_read_cache

EU = "eu-gdpr-dsa"  # personalization needs a grant (opt-in)
CCPA = "california-ccpa"  # personalization until an opt-out (Sec-GPC: 1 records one)
ROOT = Path(__file__).resolve().parents[2]


def _list(client, subject: str, pack: str, model_version: str, **headers: str) -> dict:  # noqa: ANN001
    response = client.post("/v1/recommendations", json={"subject": subject, "k": 5, "model_version": model_version, "pack": pack}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _grant(server, subject: str) -> None:  # noqa: ANN001
    with server.store.session() as session:
        record_consent(session, subject_id=subject, purpose="personalization", status="granted", lawful_basis="consent", source="api")


def test_a_withdrawal_over_the_api_makes_the_next_list_non_personalised(server) -> None:
    subject = "u000041"
    _grant(server, subject)
    cache = consent_read_cache(server.app.state.reads.engine)  # the server's own
    hits = cache.hits
    with server.client("operator") as client:
        for _ in range(3):  # the state is cached after the first
            assert _list(client, subject, EU, server.model_version)["mode"] == "personalized"
        assert cache.hits >= hits + 2, "the second and third lists read the cached state"
        withdrawn = client.post("/v1/consent", json={"subject": subject, "purpose": "personalization", "status": "withdrawn", "basis": "consent"})
        assert withdrawn.status_code == 201, withdrawn.text
        after = _list(client, subject, EU, server.model_version)
    assert after["mode"] == "non_profiling", after
    assert all(item["score"] is None for item in after["items"])


def test_a_grant_written_by_another_connection_is_seen_at_once(server) -> None:
    subject = "u000042"
    with server.client("operator") as client:
        assert _list(client, subject, EU, server.model_version)["mode"] == "non_profiling"
        assert _list(client, subject, EU, server.model_version)["mode"] == "non_profiling"
        _grant(server, subject)  # not through the server: its cache is not told
        assert _list(client, subject, EU, server.model_version)["mode"] == "personalized"


def test_an_erasure_makes_the_next_list_non_personalised(server) -> None:
    subject = "u000043"
    _grant(server, subject)
    with server.client("operator") as client:
        assert _list(client, subject, EU, server.model_version)["mode"] == "personalized"
        assert _list(client, subject, EU, server.model_version)["mode"] == "personalized"
    with server.client("admin") as client:
        assert client.post(f"/v1/subjects/{subject}/erasure", json={"pack": "baseline", "approximate": True}).status_code == 200
    with server.client("operator") as client:
        after = _list(client, subject, EU, server.model_version)
    assert after["mode"] == "non_profiling", after


def test_a_gpc_opt_out_holds_on_the_next_list_without_the_header(server) -> None:
    subject = "u000044"
    with server.client("operator") as client:
        assert _list(client, subject, CCPA, server.model_version)["mode"] == "personalized"
        assert _list(client, subject, CCPA, server.model_version)["mode"] == "personalized"
        signalled = _list(client, subject, CCPA, server.model_version, **{"Sec-GPC": "1"})
        assert signalled["mode"] == "non_profiling", signalled
        assert _list(client, subject, CCPA, server.model_version)["mode"] == "non_profiling"


def test_a_consent_import_by_the_cli_in_another_process_is_seen_by_the_next_list(server, tmp_path: Path) -> None:
    subjects = ["u000045", "u000046"]
    with server.client("operator") as client:
        for subject in subjects:
            assert _list(client, subject, EU, server.model_version)["mode"] == "non_profiling"
    export = tmp_path / "grants.csv"
    export.write_text(
        "subject,purpose,status,time,source,banner_version\n"
        + "".join(f"{s},personalization,granted,2026-01-01T00:00:00+00:00,banner,cache-test\n" for s in subjects)
    )
    env = {**os.environ, "RECGOV_HOME": str(server.home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", "from governance.cli import main; main()", "consent", "import", str(export), "--pack", EU, "--database-url", server.db_url, "--json"],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    with server.client("operator") as client:
        for subject in subjects:
            assert _list(client, subject, EU, server.model_version)["mode"] == "personalized", subject
