"""uvicorn's access log names no subject, when the app runs as README says it may (``uvicorn --factory``).

Regression: ``recgov serve`` turns the access log off, but ``uvicorn --factory governance.api.app:app_from_env``
(or gunicorn's uvicorn workers) keeps it, and the routes that still take the subject in their path
(``/v1/subjects/{subject_id}/export|erasure``, ``/v1/consent/{subject}``) wrote the raw id to it at INFO.
On SQLite and PostgreSQL, over real HTTP.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

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
            _wait_ready(url, server, log)
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


def _wait_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """Until the server answers /ready (it must not exit meanwhile; two minutes at most)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.5)


ACCESS_LINE = '"GET /ready HTTP/1.1" 200'


def _serve_and_log(command: list[str], env: dict[str, str], log: Path, port: int) -> str:
    """Run ``command`` (a server on ``port``), send it a few requests from 127.0.0.1, stop it; its log's access lines."""
    with log.open("wb") as sink:
        server = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, server, log)
            for _ in range(2):
                assert httpx.get(f"{url}/ready", timeout=10).status_code == 200
        finally:
            server.terminate()
            server.wait(timeout=60)
    return "\n".join(line for line in log.read_text().splitlines() if ACCESS_LINE in line)


@pytest.mark.parametrize(
    ("how", "clients"),
    [("factory", None), ("factory", "drop"), ("factory", "keep"), ("serve", None)],
)
def test_the_access_log_pseudonymizes_client_addresses_unless_told_to_keep_them(db_url: str, tmp_path: Path, how: str, clients: str | None) -> None:
    """Regression: every access-log line began with the client's IP address and port (personal data), whether the
    app ran under ``uvicorn --factory`` or, asked for an access log, under ``recgov serve``."""
    env = {**os.environ, "RECGOV_HOME": str(tmp_path / "home"), "RECGOV_DATABASE_URL": db_url, "RECGOV_API_COMPUTE": "inline", "RECGOV_DECISION_WRITER": "thread"}
    env.pop("RECGOV_ACCESS_LOG_CLIENTS", None)
    if clients is not None:
        env["RECGOV_ACCESS_LOG_CLIENTS"] = clients
    port = _port()
    if how == "factory":
        command = [sys.executable, "-m", "uvicorn", "governance.api.app:app_from_env", "--factory", "--port", str(port), "--log-level", "info"]
    else:
        command = [sys.executable, "-c", "from governance.cli import app; app()", "serve", "--port", str(port), "--access-log"]
    lines = _serve_and_log(command, env, tmp_path / "server.log", port)
    assert lines.count(ACCESS_LINE) >= 3, lines  # the wait's last probe and the two requests
    shown = [re.match(r"INFO:\s+(\S+) - ", line) for line in lines.splitlines()]
    assert all(shown), lines
    addresses = {m.group(1) for m in shown}
    if clients == "keep":
        assert all(a.startswith("127.0.0.1:") for a in addresses), lines
    elif clients == "drop":
        assert addresses == {"-"}, lines
    else:  # one client (its ports vary), one pseudonym
        assert "127.0.0.1" not in lines and len(addresses) == 1 and next(iter(addresses)).startswith("client-"), lines
