"""Shared fixtures: a private RECGOV_HOME per test, and databases on SQLite and PostgreSQL; how the suite splits over processes.

PostgreSQL comes from ``RECGOV_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Each test gets a fresh
schema of its own (``search_path`` set through the URL's ``options``), dropped
afterwards. An unreachable server skips the PostgreSQL half, except under
``CI=true``, where it fails.

``make test`` runs the suite on two processes (pytest-xdist, ``-n 2 --dist loadfile``):
each test file goes whole to one process, so a module's fixtures (a test server,
a trained model) are built once. Nothing shared is global: every PostgreSQL
schema and Redis namespace is named by a fresh uuid, ports are asked of the
kernel, and temporary directories are per process. Two folders keep a
session-wide fixture that every file in them reads (the console's seeded server,
the Spark session): each folder goes whole to one process
(:func:`pytest_xdist_make_scheduler`), so neither is built twice. Each process
gets one BLAS/OpenMP thread (:func:`pytest_configure`): two processes of two
threads each on two cores would only take turns.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from audits import Store, open_store

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

ONE_PROCESS_FOLDERS = ("tests/console/", "tests/spark/")
"""Folders whose files share a session-scoped fixture: under ``--dist loadfile`` each goes whole to one process."""

THREAD_SETTINGS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pytest_configure(config: pytest.Config) -> None:
    """Under ``-n N`` (N > 0), give the worker processes one BLAS/OpenMP thread each (an explicit setting wins).

    Runs in the controller before it starts the workers, which inherit the environment and read it
    when they load numpy and torch.
    """
    workers = getattr(config.option, "numprocesses", None)
    if workers and not os.environ.get("PYTEST_XDIST_WORKER"):
        for name in THREAD_SETTINGS:
            os.environ.setdefault(name, "1")


def _scope_of(nodeid: str) -> str:
    """The unit of work of a test under ``--dist loadfile``: its file, or its whole folder for :data:`ONE_PROCESS_FOLDERS`."""
    path = nodeid.split("::", 1)[0]
    return next((folder for folder in ONE_PROCESS_FOLDERS if path.startswith(folder)), path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadfile``, with each of :data:`ONE_PROCESS_FOLDERS` as one unit (see the module doc); other modes as xdist has them."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FolderAwareLoadFile(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope_of(nodeid)

    return FolderAwareLoadFile(config, log)


@pytest.fixture(autouse=True)
def recgov_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private RECGOV_HOME per test; no store setting leaks in from the environment."""
    home = tmp_path / "recgov-home"
    monkeypatch.setenv("RECGOV_HOME", str(home))
    for name in ("RECGOV_DATABASE_URL", "RECGOV_SIGNING_KEY_PATH", "RECGOV_INSTALLATION_KEY", "RECGOV_ACTOR"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The test server's URL, after checking it answers."""
    url = os.environ.get("RECGOV_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except DBAPIError as err:
        where = make_url(url).render_as_string(hide_password=True)
        reason = f"PostgreSQL at {where} is unreachable: {str(err.orig).splitlines()[0]}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        engine.dispose()
    return url


def _postgres_schema_url(admin_url: str) -> Iterator[str]:
    schema = f"recgov_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield (
            make_url(admin_url)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with engine.connect() as connection:
            connection.exec_driver_sql("SET lock_timeout = '20s'")
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    yield from _postgres_schema_url(request.getfixturevalue("postgres_admin_url"))


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema only, for what SQLite cannot express."""
    yield from _postgres_schema_url(postgres_admin_url)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """An open store at head on ``db_url``."""
    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.close()


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    """The test Redis (``RECGOV_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/0``), after checking it answers;
    unreachable: skipped, except under ``CI=true``, where it fails."""
    import redis

    url = os.environ.get("RECGOV_TEST_REDIS_URL") or DEFAULT_REDIS_URL
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as err:
        reason = f"Redis at {url} is unreachable: {err}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        client.close()
    return url


@pytest.fixture
def online_store(redis_server_url: str) -> Iterator[object]:
    """An :class:`audits.online_store.OnlineStore` on the test Redis under a namespace of its own, emptied afterwards."""
    from audits.online_store import OnlineStore

    namespace = f"recgov-test-{uuid.uuid4().hex[:12]}"
    store = OnlineStore.from_url(redis_server_url, namespace=namespace, key=b"k" * 32)
    try:
        yield store
    finally:
        keys = list(store.client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            store.client.delete(*keys)
        store.client.close()


@pytest.fixture
def fixed_experiment_salts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Experiment salts drawn from a seeded sequence instead of the OS, so that a test whose verdict depends on
    which subjects land in which arm (a null experiment's no-win, an SRM check) gives the same answer every run.
    Returns the salts handed out so far."""
    import hashlib

    from governance.experiments import lifecycle

    given: list[str] = []

    def seeded() -> str:
        salt = hashlib.sha256(f"recgov-test-salt-{len(given)}".encode()).hexdigest()
        given.append(salt)
        return salt

    monkeypatch.setattr(lifecycle, "new_salt", seeded)
    return given
