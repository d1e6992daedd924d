"""A real uvicorn server for the console tests (one for all of them), with a finished audit, open escalation cases and one key per role.

As in ``tests/api``: the server runs in a thread of the test process on a free
port of 127.0.0.1, over a SQLite store and then a fresh PostgreSQL schema
(``-m "not postgres"`` keeps SQLite only); audits run on a thread of the
server (no child processes to start). The store is seeded over
the API itself (an auditor starts a data-only audit; an operator relays user
reports; an admin applies the baseline pack's harmful-content rules; an admin
stores two versions of a pack), so the console reads what a real installation
would hold. What the API cannot make (a trained model's lineage, subject
requests opened weeks ago) is recorded through the store's own functions, as
``recgov train`` and the privacy workflows record them.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from audits import (
    open_request,
    open_store,
    record_audit_run,
    record_dataset_version,
    record_deployment,
    record_model_version,
    record_training_run,
    update_request,
)
from audits.db import Store
from governance.api import ApiSettings, create_app
from governance.api.keys import create_key

ROLES = ("viewer", "auditor", "operator", "admin", "serving")
DATA = "synthetic:n_users=60,n_items=40,n_interactions=900,seed=2"
N_CASES = 6
AUDIT_DEADLINE_S = 120
STORE_SETTINGS = ("RECGOV_DATABASE_URL", "RECGOV_SIGNING_KEY_PATH", "RECGOV_INSTALLATION_KEY", "RECGOV_ACTOR", "RECGOV_ENVIRONMENT")
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
MODEL_VERSION = "console-model-1"
EU_PACK = "eu-gdpr-dsa"
CONSENTING = "dpo-lookup-subject-81723"
"""A subject who granted personalization on the EU pack's banner (a distinctive raw id: the tests look for it where it must not be)."""
DENYING = "dpo-lookup-subject-90514"
"""A subject who denied personalization."""
PACK_NAME = "console-reviewed"
PACK_V1 = f"""apiVersion: recgov/v1
metadata:
  name: {PACK_NAME}
  version: 1.0.0
  owner: compliance team
data:
  rules:
    - id: data-validation
      check: validation_findings
      description: Few validation findings.
      params:
        default_max_share: 0.05
carbon:
  rules:
    - id: carbon-budget
      check: carbon_budget
      description: A small energy budget.
      params:
        max_energy_kwh: 1.0
"""
PACK_V2 = f"""apiVersion: recgov/v1
metadata:
  name: {PACK_NAME}
  version: 1.1.0
  owner: privacy office
data:
  rules:
    - id: data-validation
      check: validation_findings
      description: Few validation findings.
      params:
        default_max_share: 0.02
    - id: data-drift
      check: data_drift
      description: No large drift.
      params:
        statistic: psi
        max: 0.25
"""
"""Version 1.1.0: a threshold tightened (0.05 to 0.02), the carbon rule removed, a drift rule added, a new owner."""


TLS = ssl.create_default_context()
"""One TLS context for every client of the console's tests (httpx builds one per client otherwise, reading the
CA bundle each time); the server is plain HTTP, so it is never used."""


@dataclass
class ConsoleServer:
    """A running app: its URL, store, a token and key id per role, the finished audit job and the seeded cases."""

    url: str
    store: Store
    tokens: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, int] = field(default_factory=dict)
    audit_job: dict[str, Any] = field(default_factory=dict)
    case_ids: list[int] = field(default_factory=list)
    request_ids: dict[str, int] = field(default_factory=dict)
    """Subject requests by what they show: 'overdue' (open past its deadline), 'due' (open, in time), 'completed'."""
    home: Path | None = None

    def api(self, role: str) -> httpx.Client:
        """A REST client with the key of ``role``."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[role]}"}, timeout=60, verify=TLS)

    def browser_client(self) -> httpx.Client:
        """A client that keeps cookies and does not follow redirects, like a browser whose every hop we check."""
        return httpx.Client(base_url=self.url, timeout=60, follow_redirects=False, verify=TLS)

    def signed_in(self, role: str) -> tuple[httpx.Client, str]:
        """A browser-like client signed in with the key of ``role``, and its session's CSRF token."""
        client = self.browser_client()
        form = client.get("/console/login")
        assert form.status_code == 200, form.text
        answer = client.post("/console/login", data={"login_token": LOGIN_TOKEN.search(form.text).group(1), "token": self.tokens[role]})
        assert answer.status_code == 303, answer.text
        page = client.get("/console/audits")
        assert page.status_code == 200, page.text
        return client, CSRF.search(page.text).group(1)

    def case(self, case_id: int) -> dict[str, Any]:
        """A case as the REST API answers it."""
        with self.api("admin") as client:
            return next(c for c in client.get("/v1/escalations").json()["cases"] if c["id"] == case_id)

    def trail_head(self) -> int:
        with self.api("admin") as client:
            return client.get("/v1/trail/events", params={"limit": 1}).json()["head_seq"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The browser tests run once, on SQLite: what a page shows does not depend on the store (the HTTP tests run on both)."""
    twice = [
        item for item in items
        if item.path.name == "test_console_browser.py" and getattr(item, "callspec", None) is not None
        and item.callspec.params.get("console_db_url") != "sqlite"
    ]  # fmt: skip
    if twice:
        config.hook.pytest_deselected(items=twice)
        items[:] = [item for item in items if item not in twice]


STARTED_WITHIN_S = 120.0
"""How long uvicorn may take to finish the app's startup (migrations, the OpenAPI document) on a busy machine."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def console_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console") / "recgov-home"


@pytest.fixture(autouse=True)
def recgov_home(console_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The session's RECGOV_HOME (the server uses it too)."""
    monkeypatch.setenv("RECGOV_HOME", str(console_home))
    for name in STORE_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return console_home


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $RECGOV_TEST_ARTIFACTS (kept by CI), else a temporary directory."""
    folder = Path(os.environ["RECGOV_TEST_ARTIFACTS"]) / "console" if os.environ.get("RECGOV_TEST_ARTIFACTS") else tmp_path_factory.mktemp("console-shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _seed(server: ConsoleServer) -> None:
    """A data-only audit (finished), and N_CASES open cases from users' reports."""
    with server.api("auditor") as client:
        started = client.post("/v1/audits", json={"pack": "baseline", "data": DATA})
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
    with server.api("operator") as client:
        for item in range(N_CASES):
            for n in range(3):
                reported = client.post(f"/v1/items/console-item-{item}/reports", json={"reason": f"abusive ({n})"})
                assert reported.status_code == 201, reported.text
        for subject, status in ((CONSENTING, "granted"), (DENYING, "denied")):
            consent = {"subject": subject, "purpose": "personalization", "status": status, "basis": "consent", "pack": EU_PACK,
                       "source": "banner", "evidence": {"banner_version": "2026-03"}}  # fmt: skip
            recorded = client.post("/v1/consent", json=consent)
            assert recorded.status_code == 201, recorded.text
    with server.api("admin") as client:
        opened = client.post("/v1/escalations/evaluate", json={"pack": "baseline"})
        assert opened.status_code == 200, opened.text
        server.case_ids = sorted(c["case_id"] for c in opened.json()["opened"])
    assert len(server.case_ids) == N_CASES
    deadline = time.monotonic() + AUDIT_DEADLINE_S
    with server.api("viewer") as client:
        while (job := client.get(f"/v1/audits/{job_id}").json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, f"audit job {job_id} still {job['status']}"
            time.sleep(0.1)
    assert job["status"] == "succeeded", job
    server.audit_job = job
    with server.api("admin") as client:
        for text in (PACK_V1, PACK_V2):
            stored = client.post("/v1/packs", content=text, headers={"Content-Type": "application/yaml"})
            assert stored.status_code in (200, 201), stored.text
    _record_lineage(server.store)
    server.request_ids = _open_requests(server.store)


def _record_lineage(store: Store) -> None:
    """A trained model version with its data set, training run, one audit and a move to shadow (as ``recgov train`` records them)."""
    started = datetime.now(UTC) - timedelta(hours=2)
    with store.session() as session:
        data = record_dataset_version(
            session, content_hash="sha256:console-data", name="console-synthetic", source=DATA, n_events=900, n_users=60,
            n_items=40, schema={"user": "int64", "item": "int64"}, validation={"duplicates": 0},
        )  # fmt: skip
        run = record_training_run(
            session, dataset_version=data, params={"factors": 16, "regularization": 0.05}, library_versions={"implicit": "0.7.2"},
            started_at=started, ended_at=started + timedelta(seconds=30),
        )  # fmt: skip
        record_model_version(
            session, version_id=MODEL_VERSION, kind="als", training_run=run, artifact_hash="sha256:console-artifact",
            artifact_location="models/console-model-1.npz",
        )  # fmt: skip
        record_audit_run(
            session, policy_pack="baseline", policy_version="1.0.0", policy_hash="c0" * 32, verdict="pass",
            started_at=started + timedelta(minutes=5), ended_at=started + timedelta(minutes=6), model_version=MODEL_VERSION,
            dataset_version=data,
        )  # fmt: skip
        record_deployment(session, model_version=MODEL_VERSION, stage="shadow", actor="console-tests")


def _open_requests(store: Store) -> dict[str, int]:
    """Three subject requests: one open past its deadline, one open in time, one completed."""
    now = datetime.now(UTC)
    with store.session() as session:
        overdue = open_request(session, subject_id="console-subject-1", kind="erasure", deadline_days=30, requested_at=now - timedelta(days=40))
        due = open_request(session, subject_id="console-subject-2", kind="access", deadline_days=30, requested_at=now - timedelta(days=3))
        done = open_request(session, subject_id="console-subject-3", kind="access", deadline_days=30, requested_at=now - timedelta(days=10))
        update_request(session, done.id, status="in_progress")
        update_request(session, done.id, status="completed", result={"exported": True})
        return {"overdue": overdue.id, "due": due.id, "completed": done.id}


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def console_db_url(request: pytest.FixtureRequest, console_home: Path) -> Iterator[str]:
    """The store's database: a SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{console_home.parent / 'console.db'}"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    schema = f"recgov_console_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()


@pytest.fixture(scope="session")
def server(console_home: Path, console_db_url: str) -> Iterator[ConsoleServer]:
    """Create the keys, start uvicorn, seed the store; stop it at the end of the session."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECGOV_HOME", str(console_home))
        for name in STORE_SETTINGS:
            mp.delenv(name, raising=False)
        db_url = console_db_url
        store = open_store(db_url)
        port = _free_port()
        srv = ConsoleServer(url=f"http://127.0.0.1:{port}", store=store, home=console_home)
        with store.session() as session:
            for role in ROLES:
                key, token = create_key(session, name=f"console-{role}", role=role)
                srv.tokens[role], srv.key_ids[role] = token, key.id
        # No child processes: the console needs none, and starting them costs the tests seconds.
        settings = ApiSettings(home=console_home, database_url=db_url, audit_isolation="thread", decision_writer="thread", api_compute="inline")
        app = create_app(settings)
        uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="on"))
        thread = threading.Thread(target=uv.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + STARTED_WITHIN_S
        while not uv.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        try:
            _seed(srv)
            yield srv
        finally:
            uv.should_exit = True
            thread.join(timeout=10)
            store.close()
