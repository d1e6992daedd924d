"""A real uvicorn server per test module, on SQLite and on PostgreSQL, with one key per role.

The server runs in a background thread of the test process on a free port of
127.0.0.1; tests talk to it over HTTP with httpx. ``RECGOV_HOME`` is fixed for
the whole module (the server reads it on every request), so the autouse
``recgov_home`` of the root conftest is overridden here.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine
from typer.testing import CliRunner

from audits import open_store
from audits.db import Store
from governance.api import ApiSettings, create_app
from governance.api.keys import create_key, revoke_key
from governance.cli import app as cli

ROLES = ("viewer", "auditor", "operator", "admin")
DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"
STORE_SETTINGS = ("RECGOV_DATABASE_URL", "RECGOV_SIGNING_KEY_PATH", "RECGOV_INSTALLATION_KEY", "RECGOV_ACTOR", "RECGOV_ENVIRONMENT")

TLS = ssl.create_default_context()
"""One TLS context for every test client: httpx builds one per client otherwise (reading the CA bundle, tens of
milliseconds of CPU each), and the suite makes thousands of clients. The servers are plain HTTP: it is never used."""


@dataclass
class Server:
    """A running API: its base URL, its store, and a token per role (plus a revoked one)."""

    url: str
    db_url: str
    store: Store
    home: Path
    tokens: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, int] = field(default_factory=dict)
    model_version: str = ""
    app: Any = None
    """The app the server runs (for tests that look at its in-process state)."""

    def client(self, role: str | None = None, **headers: str) -> httpx.Client:
        """An httpx client sending the token of ``role`` (``None``: no key; ``revoked``: a revoked admin key)."""
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, verify=TLS)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


STARTED_WITHIN_S = 120.0
"""How long uvicorn may take to finish the app's startup (migrations, the OpenAPI document, starting the helper
processes): seconds alone, but with the suite on two processes, both may be starting a server at once on a busy machine."""

READY_WITHIN_S = 240.0
"""How long a module's server may take to start its helper processes (imports, on a busy machine: most of a minute)."""


def _wait_until_ready(url: str) -> None:
    """Wait for ``GET /ready`` to answer 200, as a load balancer would before sending traffic.

    The pack parser and the compute process are spawned at startup and import recgov; a request
    that needs one before it is up waits for it, and on a loaded machine that wait can pass a
    test client's timeout. Past :data:`READY_WITHIN_S` the tests run anyway (and say what fails).
    """
    deadline = time.monotonic() + READY_WITHIN_S
    with httpx.Client(base_url=url, timeout=10, verify=TLS) as client:  # one client: the wait competes with the children's imports
        while time.monotonic() < deadline:
            try:
                if client.get("/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)


@pytest.fixture(scope="module")
def api_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api") / "recgov-home"


@pytest.fixture(autouse=True)
def recgov_home(api_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The module's RECGOV_HOME (the server of the module uses it too)."""
    monkeypatch.setenv("RECGOV_HOME", str(api_home))
    for name in STORE_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return api_home


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def api_db_url(request: pytest.FixtureRequest, api_home: Path) -> Iterator[str]:
    """An empty database for the module: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{api_home.parent / f'store-{uuid.uuid4().hex[:6]}.db'}"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    from sqlalchemy.engine import make_url

    schema = f"recgov_api_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()


@pytest.fixture(scope="module")
def server(api_home: Path, api_db_url: str) -> Iterator[Server]:
    """Train a small model, create the keys, start uvicorn; stop it after the module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECGOV_HOME", str(api_home))
        for name in STORE_SETTINGS:
            mp.delenv(name, raising=False)
        trained = CliRunner().invoke(cli, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "8", "--iterations", "4", "--database-url", api_db_url, "--json"])
        assert trained.exit_code == 0, trained.output
        store = open_store(api_db_url)
        port = _free_port()
        srv = Server(url=f"http://127.0.0.1:{port}", db_url=api_db_url, store=store, home=api_home, model_version=json.loads(trained.stdout)["model_version"])
        with store.session() as session:
            for role in (*ROLES, "revoked"):
                key, token = create_key(session, name=f"test-{role}", role="admin" if role == "revoked" else role)
                srv.tokens[role], srv.key_ids[role] = token, key.id
            revoke_key(session, srv.key_ids["revoked"])
        app = create_app(ApiSettings(home=api_home, database_url=api_db_url))
        srv.app = app

        @app.get("/v1/_boom", include_in_schema=False)
        def boom() -> None:  # a route that crashes, to see the 500 problem
            raise RuntimeError("kaboom with a secret inside")

        uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="on"))
        thread = threading.Thread(target=uv.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + STARTED_WITHIN_S
        while not uv.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        _wait_until_ready(srv.url)
        try:
            yield srv
        finally:
            uv.should_exit = True
            thread.join(timeout=10)
            store.close()
