"""Read-only snapshots for the hot request paths, on the pool's DBAPI connections.

Every request checks its key, and every governed list reads the model row, the
blocks revision and the subject's consent history. Through SQLAlchemy each of
those statements costs tens of microseconds of Python (an execution context,
parameter processing, a result object) for a query the database answers in a
few; on a server bound by one interpreter that is most of what a request costs
beyond the work itself. :class:`FastReads` runs the same core ``SELECT``
statements, compiled once per dialect by SQLAlchemy, straight on a pooled
DBAPI cursor:

* the SQL text and parameter order come from SQLAlchemy's compiler, and each
  column's result processor from its type (``UtcDateTime`` values come back
  aware, JSON decoded), so a row reads the same as through a ``Connection``;
* :meth:`FastReads.snapshot` is a read-only transaction, like
  :meth:`audits.db.Store.snapshot`: ``BEGIN DEFERRED`` on SQLite (WAL: it takes
  no write lock and sees one committed state), ``REPEATABLE READ, READ ONLY`` on
  PostgreSQL (begun by one statement: one round trip, not psycopg's ``BEGIN``
  then a ``SET TRANSACTION``); it is rolled back at the end (it wrote nothing);
* the object it yields answers ``execute(statement, params)`` like a
  ``Connection`` does for these reads (``scalar_one_or_none``,
  ``one_or_none``, ``one``, iteration), so the functions that read a snapshot
  (:func:`governance.api.keys.live_key`,
  :func:`audits.consent.read_consent_history`, ...) take either.

Parameters must be plain values (strings, integers) that need no bind
processing; statements are compiled at their first use and kept.
Nothing is cached but compiled SQL: every snapshot reads the database.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Select
from sqlalchemy.engine import Dialect, Engine

__all__ = ["MAX_PREPARED", "FastReads", "FastSnapshot"]

MAX_PREPARED = 256
"""Statements kept compiled per engine; the hot paths use a handful of module constants."""


class _Prepared:
    """One ``SELECT`` compiled for one dialect: its SQL, its parameters' order and defaults, its columns' processors."""

    __slots__ = ("defaults", "positions", "processors", "sql")

    def __init__(self, statement: Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.defaults = dict(compiled.params)
        self.positions = tuple(compiled.positiontup) if compiled.positiontup is not None else None
        processors = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in statement.selected_columns]
        self.processors = tuple(processors) if any(p is not None for p in processors) else None

    def parameters(self, given: Mapping[str, Any] | None) -> Any:
        values = self.defaults if not given else {**self.defaults, **given}
        missing = [name for name, value in values.items() if value is None and (not given or name not in given)]
        if missing:
            raise TypeError(f"no value for the parameters {missing} of: {self.sql}")
        return tuple(values[name] for name in self.positions) if self.positions is not None else values

    def process(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        if self.processors is None:
            return row
        return tuple(value if p is None else p(value) for p, value in zip(self.processors, row, strict=True))


class _Rows:
    """The rows of one statement, with the few ``Result`` methods the readers use."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._rows)

    def all(self) -> list[tuple[Any, ...]]:
        return list(self._rows)

    def one_or_none(self) -> tuple[Any, ...] | None:
        if len(self._rows) > 1:
            raise ValueError("expected at most one row, got several")
        return self._rows[0] if self._rows else None

    def one(self) -> tuple[Any, ...]:
        row = self.one_or_none()
        if row is None:
            raise ValueError("expected one row, got none")
        return row

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalar_one(self) -> Any:
        return self.one()[0]


class FastSnapshot:
    """A read-only transaction on one pooled DBAPI connection (see the module doc); from :meth:`FastReads.snapshot`."""

    __slots__ = ("_cursor", "_reads", "engine")

    def __init__(self, reads: FastReads, cursor: Any) -> None:
        self._reads = reads
        self._cursor = cursor
        self.engine = reads.engine
        """The engine (for per-engine caches such as the installation key check)."""

    def execute(self, statement: Select[Any], parameters: Mapping[str, Any] | None = None) -> _Rows:
        """Run a core ``SELECT`` (compiled once per dialect) and return its rows."""
        prepared = self._reads.prepared(statement)
        self._cursor.execute(prepared.sql, prepared.parameters(parameters))
        return _Rows([prepared.process(row) for row in self._cursor.fetchall()])


class FastReads:
    """Prepared reads of one store's engine (thread-safe; one per app)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self._sqlite = engine.dialect.name == "sqlite"
        self.embedded = self._sqlite
        """Whether the store is an embedded SQLite file: a read is local file access, not a network round trip."""
        self._prepared: dict[int, tuple[Select[Any], _Prepared]] = {}
        self._lock = threading.Lock()

    def prepared(self, statement: Select[Any]) -> _Prepared:
        """``statement`` compiled for this dialect (statements are module constants: keyed by identity)."""
        entry = self._prepared.get(id(statement))
        if entry is not None and entry[0] is statement:
            return entry[1]
        prepared = _Prepared(statement, self.dialect)
        with self._lock:
            if len(self._prepared) < MAX_PREPARED:  # beyond: a statement built per call, compiled per call
                self._prepared[id(statement)] = (statement, prepared)  # the statement is kept: its id stays its own
        return prepared

    @contextmanager
    def snapshot(self) -> Iterator[FastSnapshot]:
        """A read-only transaction seeing one committed state of the store; rolled back at the end."""
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                if self._sqlite:
                    # The driver runs in autocommit mode (audits.db), so the transaction is ours to begin.
                    cursor.execute("BEGIN DEFERRED")
                    try:
                        yield FastSnapshot(self, cursor)
                    finally:
                        connection.rollback()
                else:
                    with _one_statement_begin(connection, cursor):
                        yield FastSnapshot(self, cursor)
            finally:
                cursor.close()
        finally:
            connection.close()  # back to the pool


@contextmanager
def _one_statement_begin(connection: Any, cursor: Any) -> Iterator[None]:
    """PostgreSQL: the read-only transaction begun and ended by one statement each.

    psycopg outside autocommit sends ``BEGIN`` on its own before the first
    statement, and the isolation level would then take a ``SET TRANSACTION`` of
    its own: two round trips, on every request, before the first read. In
    autocommit mode (switched on the idle connection, which costs no round trip)
    ``BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY`` is one; the connection
    goes back to the pool as it came (not in autocommit), or is discarded.
    """
    dbapi = connection.dbapi_connection
    dbapi.autocommit = True
    try:
        cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield
    finally:
        try:
            cursor.execute("ROLLBACK")  # also after a failed BEGIN: outside a transaction it only warns
            dbapi.autocommit = False
        except Exception:  # noqa: BLE001 - the reads are done; a connection that cannot end them is not pooled again
            connection.invalidate()
