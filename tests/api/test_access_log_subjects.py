"""uvicorn's access log names no subject, when the app runs as README says it may (``uvicorn --factory``).

Regression: ``recgov serve`` turns the access log off, but ``uvicorn --factory governance.api.app:app_from_env``
(or gunicorn's uvicorn workers) keeps it, and the routes that still take the subject in their path
(``/v1/subjects/{subject_id}/export|erasure``, ``/v1/consent/{subject}``) wrote the raw id to it at INFO.
On SQLite and PostgreSQL, over real HTTP.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.governance.cli_helpers import ok

SUBJECT = "alice.dpo@example.org"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_access_log_names_the_route_not_the_subject(db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "RECGOV_HOME": str(home), "RECGOV_DATABASE_URL": db_url, "RECGOV_API_COMPUTE": "inline", "RECGOV_DECISION_WRITER": "thread"}
    os.environ["RECGOV_HOME"] = str(home)
    try:
        token = ok("keys", "create", "dpo", "--role", "admin", "--database-url", db_url)["token"]
    finally:
        del os.environ["RECGOV_HOME"]
    port = _port()
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "governance.api.app:app_from_env", "--factory", "--port", str(port), "--log-level", "info"],
            env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.5)
            headers = {"Authorization": f"Bearer {token}"}
            exported = httpx.post(f"{url}/v1/subjects/{SUBJECT}/export", headers=headers, timeout=60)
            assert exported.status_code == 200, exported.text
            assert exported.json()["subject"] == {"id": SUBJECT}  # the answer goes to the subject; the log does not
            assert httpx.get(f"{url}/v1/consent/{SUBJECT}", headers=headers, timeout=60).status_code == 200
            assert httpx.post(f"{url}/v1/subjects/{SUBJECT}/nowhere", headers=headers, timeout=60).status_code == 404
        finally:
            server.terminate()
            server.wait(timeout=60)
    text = log.read_text()
    assert '"POST /v1/subjects/{subject}/export HTTP/1.1" 200' in text, text
    assert '"GET /v1/consent/{subject} HTTP/1.1" 200' in text, text
    assert '"POST /v1/subjects/{subject}/nowhere HTTP/1.1" 404' in text, text
    assert SUBJECT not in text and "alice" not in text, text
