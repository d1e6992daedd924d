"""Engines and sessions: :func:`open_store` and :class:`Store`.

SQLite (the embedded default) runs in WAL mode with foreign keys on; every write
transaction starts with ``BEGIN IMMEDIATE``, so that two writers never read the
same trail head (the second waits, up to 30 s). PostgreSQL is reached through
psycopg 3; appends lock the one-row ``trail_head`` table with ``SELECT ... FOR
UPDATE``.
"""

from __future__ import annotations

from collections.abc import Iterator
import json
import os
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, InvalidatePoolError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.orm import Session, sessionmaker

from audits.db_messages import describe_db_error, masked_url
from audits.private_files import OWNER_ONLY
from audits.settings import StoreSettings, get_settings
from recommender.errors import ConfigError

__all__ = [
    "EncodedJson",
    "Store",
    "connect_arguments",
    "create_store_engine",
    "describe_db_error",
    "is_dropped",
    "masked_url",
    "open_store",
    "unpinged_connection",
]


class EncodedJson(str):
    """JSON text that is already encoded (e.g. the canonical bytes a digest was taken over).

    Given as the value of a JSON column it is stored as it is, not encoded again:
    a hot writer (the decision log) then serializes each record once. Any other
    value, a plain ``str`` included, is encoded as usual.
    """

    __slots__ = ()


def _json_serializer(value: Any) -> str:
    """The engines' JSON serializer: :class:`EncodedJson` as is, anything else through ``json.dumps``."""
    if type(value) is EncodedJson:
        return value
    return json.dumps(value)

SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 10
"""Seconds a PostgreSQL connection may take to open, unless the URL sets ``connect_timeout``."""
_SQLITE_BEGIN = "recgov_sqlite_begin"


def _parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise ConfigError(
            f"cannot parse the database URL {url!r}; expected sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST:PORT/DBNAME"
        ) from err
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend != "sqlite":
        raise ConfigError(
            f"unsupported database {backend!r} in {masked_url(parsed)}; recgov's store runs on "
            "sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DBNAME"
        )
    return parsed


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (see "begin" below) instead of the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_SQLITE_BEGIN, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")


_UNPINGED: ContextVar[bool] = ContextVar("recgov_unpinged_checkout", default=False)
_FRESH = "recgov_fresh"


def _ping_on_checkout(engine: Engine) -> None:
    """PostgreSQL: every checkout from the pool is pinged first (one round trip), except a fresh connection's and
    :func:`unpinged_connection`'s.

    What ``pool_pre_ping`` does, as a pool ``checkout`` listener: a connection the server dropped while it sat in the
    pool is found before its user sends anything, and the pool's older connections are replaced with it (a restarted
    server dropped them all). A read path that recovers from a dropped connection itself (its first statement,
    which changes nothing, is sent again on a pinged connection) skips the ping.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info[_FRESH] = True  # just opened: nothing to ping, as pool_pre_ping does

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if record.info.pop(_FRESH, False) or _UNPINGED.get():
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as err:
            if dialect.is_disconnect(err, dbapi_connection, None):
                raise InvalidatePoolError(f"the pooled connection was dropped: {err}") from err  # reconnected by the pool
            raise


def unpinged_connection(engine: Engine) -> PoolProxiedConnection:
    """A pooled DBAPI connection checked out without the ping (PostgreSQL; SQLite pings nothing).

    For a caller that sends its first statement again on :meth:`Engine.raw_connection`'s pinged connection when the
    server dropped this one (see :func:`is_dropped`); the ping's round trip is then saved on every other checkout.
    """
    token = _UNPINGED.set(True)
    try:
        return engine.raw_connection()
    finally:
        _UNPINGED.reset(token)


def is_dropped(engine: Engine, err: BaseException, dbapi_connection: Any) -> bool:
    """Whether ``err``, raised by a statement on ``dbapi_connection``, says the server dropped the connection."""
    dialect = engine.dialect
    return isinstance(err, dialect.loaded_dbapi.Error) and bool(dialect.is_disconnect(err, dbapi_connection, None))


def _reserve_sqlite_file(url: URL) -> None:
    """Create a SQLite store's file owner-only (``0600``) before SQLite creates it with the process umask.

    The file holds every subject's pseudonym secret and record key (:mod:`audits.subjects`), so a reader of the file
    opens everything sealed under them; ``RECGOV_HOME`` is made ``0700`` only when recgov creates it, and a file
    created in a folder someone else made (a container volume, a deployment script) was world-readable. SQLite gives
    its WAL and shared-memory files the database file's mode. An existing file is left as it is.
    """
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:") or url.query.get("uri"):
        return
    path = Path(database)
    if not path.parent.is_dir():
        return  # SQLite's own error names it
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY))
    except FileExistsError:
        pass
    except OSError:
        return  # a folder it may not write to: SQLite's own error names it


def connect_arguments(engine: Engine) -> dict[str, Any]:
    """PostgreSQL: the keyword arguments ``psycopg`` connects with for ``engine``'s pool (the URL's host, database,
    user and query options, SQLAlchemy's type adapters, the connect timeout), for a connection opened outside it
    (``psycopg.AsyncConnection.connect``) that reads values as the pool's connections do."""
    _args, params = engine.dialect.create_connect_args(engine.url)
    if "connect_timeout" not in params:
        params["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    return params


def create_store_engine(url: str, *, pool_size: int | None = None) -> Engine:
    """An engine for ``url`` with the store's connection settings (see module doc).

    ``pool_size``: connections kept open (default SQLAlchemy's 5). A service with
    many worker threads sizes it to them: a connection opened beyond the pool is
    closed again when returned, and on SQLite each new one runs its PRAGMAs.
    """
    parsed = _parse_url(url)
    pool = {} if pool_size is None else {"pool_size": pool_size}
    if parsed.get_backend_name() == "sqlite":
        _reserve_sqlite_file(parsed)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, json_serializer=_json_serializer, **pool)
        _configure_sqlite(engine)
        return engine
    connect_args = {"connect_timeout": PG_CONNECT_TIMEOUT_S} if "connect_timeout" not in parsed.query else {}
    engine = create_engine(parsed, connect_args=connect_args, json_serializer=_json_serializer, **pool)
    _ping_on_checkout(engine)  # pool_pre_ping, which a read path that recovers by itself may skip
    return engine


class Store:
    """An open store: an engine and a session factory.

    Use :meth:`session` for work that writes; each ``with`` block is one
    transaction, committed at the end or rolled back on an exception.
    """

    def __init__(self, engine: Engine, settings: StoreSettings) -> None:
        self.engine = engine
        self.settings = settings
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return masked_url(self.engine.url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commit on success, roll back on error.

        Example
        -------
        >>> with store.session() as session:          # doctest: +SKIP
        ...     record_dataset_version(session, ...)
        """
        try:
            with self._sessions.begin() as session:
                yield session
        except IntegrityError:
            raise  # a constraint the caller may handle (a duplicate id, say)
        except DBAPIError as err:
            raise self.refused(err) from err

    def refused(self, err: DBAPIError) -> ConfigError:
        """The error :meth:`session` raises for a write the database refused (``err``, not an IntegrityError)."""
        # A store that cannot be written is bad input to the caller (exit 2),
        # never a policy finding; nothing of the transaction was committed.
        return ConfigError(f"the database {masked_url(self.engine.url)} refused the write: {describe_db_error(err)}")

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read-only connection that sees one consistent state of the store.

        PostgreSQL: a ``REPEATABLE READ READ ONLY`` transaction; SQLite: a
        deferred read transaction in WAL mode (writers are not blocked).
        """
        if self.dialect == "sqlite":
            options: dict[str, Any] = {_SQLITE_BEGIN: "DEFERRED"}
        else:
            options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        with self.engine.connect().execution_options(**options) as connection, connection.begin():
            yield connection

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"


class HeldConnection:
    """One connection of a store kept checked out across the transactions of a single writer (a process of its own).

    :meth:`Store.session` checks a connection out of the pool for each
    transaction: on PostgreSQL that is a ping (one round trip) before the first
    statement, and on both stores the pool's checkout and reset and a new
    session's set-up, a fixed cost that dominates a small transaction. A writer
    that runs one transaction after another (the decision writer) keeps one
    connection instead. Each :meth:`session` is one transaction, committed at
    the end or rolled back on an exception, with the errors of
    :meth:`Store.session`. After any database error the connection is given up
    and the next transaction checks out a new one (pinged).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._connection: Connection | None = None

    @property
    def fresh(self) -> bool:
        """Whether the next transaction runs on a newly checked out connection (pinged, on PostgreSQL)."""
        return self._connection is None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction on the held connection: commit on success, roll back on error."""
        if self._connection is None:
            self._connection = self.store.engine.connect()
        connection = self._connection
        try:
            with connection.begin():
                with Session(bind=connection, expire_on_commit=False) as session:
                    yield session
                    session.flush()
        except BaseException as err:
            if isinstance(err, DBAPIError) or connection.invalidated:
                self.close()  # a dropped or broken connection is not used again
            if isinstance(err, DBAPIError) and not isinstance(err, IntegrityError):
                raise self.store.refused(err) from err
            raise

    def close(self) -> None:
        """Return the connection to the pool (the next transaction checks out another)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except DBAPIError:
                pass


def open_store(url: str | None = None, *, upgrade: bool = True, pool_size: int | None = None) -> Store:
    """Open the store at ``url`` (default: ``RECGOV_DATABASE_URL``, else the embedded SQLite file).

    With ``upgrade`` (the default) the schema is created or upgraded to the
    newest migration first, so a fresh database is ready to use. ``pool_size``:
    see :func:`create_store_engine`.

    Raises
    ------
    ConfigError
        The URL is malformed, the database cannot be reached, or it carries a
        schema revision this version of recgov does not know.
    """
    settings = get_settings()
    engine = create_store_engine(url or settings.resolved_database_url(), pool_size=pool_size)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except DBAPIError as err:
        engine.dispose()
        raise ConfigError(f"cannot connect to the database {masked_url(engine.url)}: {describe_db_error(err)}") from err
    store = Store(engine, settings)
    if upgrade:
        from audits.migrate import ensure_head

        try:
            ensure_head(engine)
        except BaseException:
            engine.dispose()
            raise
    return store
