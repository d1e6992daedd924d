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

On PostgreSQL every statement is a network round trip, so a snapshot costs
no more of them than it must:

* the connection is checked out without the pool's ping
  (:func:`audits.db.unpinged_connection`); when the server dropped it while it
  sat in the pool, the ``BEGIN`` (which changes nothing) fails, the connection
  is discarded and the snapshot begins again on a pinged checkout, as every
  checkout did before (a restarted server: the pool's other connections are
  replaced there);
* ``prefetch`` names reads the snapshot will make (statement and parameters):
  they are read together, by one statement (each read's first row and its
  count of rows, side by side: :class:`_Together`), right after the ``BEGIN``,
  in the snapshot's own transaction, so each reads what it reads when run on
  its own there; the code then asks for its reads in its own order (the key
  first) and a read asked for with exactly the statement and parameters named
  is answered from that row (a read of several rows is read again, as asked, unless
  it was named to be read whole: then its rows come back as one array a column).
  Anything else is read when asked. A governed list's snapshot is then three
  round trips (``BEGIN``, its reads, ``ROLLBACK``), and psycopg's work per
  statement is paid three times, not seven (its pipeline mode, two round trips,
  costs the client more CPU than the round trip it saves). On SQLite, whose
  reads are local, ``prefetch`` is ignored.
* the same statement may be run alone, outside any transaction (one statement
  reads one committed state), and its row answer a snapshot with no connection
  (:meth:`FastReads.answered`): a read it was not given raises :class:`Unread`.
  :mod:`governance.api.awaited_reads` runs it so, awaited on the event loop: a
  governed list whose every read it answers is one round trip.

Parameters must be plain values (strings, integers) that need no bind
processing; statements are compiled at their first use and kept.
Nothing is cached but compiled SQL: every snapshot reads the database.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeAlias

from sqlalchemy import Select, func, literal_column, select, true
from sqlalchemy.sql.sqltypes import NULLTYPE
from sqlalchemy.engine import Dialect, Engine

from audits.db import is_dropped, unpinged_connection

__all__ = ["MAX_PREPARED", "NOT_READ_AHEAD", "FastReads", "FastSnapshot", "Read", "ReadsAhead", "Unread"]

Read: TypeAlias = "tuple[Select[Any], Mapping[str, Any] | None]"
"""A read a snapshot will make: a core ``SELECT`` and its parameters (see ``prefetch``)."""

_BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"

ReadsAhead: TypeAlias = "tuple[_Together, tuple[tuple[Select[Any], Mapping[str, Any]], ...], dict[str, Any]]"
"""Reads named ahead, as one statement (:meth:`FastReads.together`): it, the reads it answers (statement, parameters),
its parameters."""

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


class _Together:
    """Reads named ahead as one PostgreSQL statement: each read as a ``LEFT JOIN LATERAL`` of its first row and its
    count of rows (``count(*) OVER ()``, counted before the ``LIMIT 1``), so each read runs once, in one plan.

    A read named ``whole`` (one that may return several rows, e.g. a subject's consent records) is read whole: its
    count of rows and each column's values as an array (``array_agg``, one aggregate pass over the same rows, so the
    arrays line up row by row), each value then processed as the statement's own column processes it."""

    __slots__ = ("items", "prepared", "widths")

    def __init__(self, statements: Sequence[Select[Any]], dialect: Dialect, whole: Sequence[bool] = ()) -> None:
        joined: Any = select(literal_column("1").label("recgov_one")).subquery("recgov_one")
        columns: list[Any] = []
        widths = []
        items: list[Any] = []
        for n, statement in enumerate(statements):
            inner = statement.subquery(f"recgov_read_{n}")
            if n < len(whole) and whole[n]:
                arrays = [func.array_agg(column, type_=NULLTYPE) for column in inner.c]  # loaded as the driver loads them
                lateral = select(func.count().label("recgov_rows"), *arrays).lateral(f"recgov_ahead_{n}")
                items.append(_Prepared(statement, dialect))
                values = list(lateral.c)
            else:
                lateral = select(*inner.c, func.count().over().label("recgov_rows")).limit(1).lateral(f"recgov_ahead_{n}")
                items.append(None)
                values = list(lateral.c)
                values = [values[-1], *values[:-1]]
            columns += values  # each read: its count of rows, then its columns
            widths.append(len(values) - 1)
            joined = joined.outerjoin(lateral, true())
        self.prepared = _Prepared(select(*columns).select_from(joined), dialect)
        self.widths = tuple(widths)
        self.items = tuple(items)

    def split(self, row: tuple[Any, ...]) -> list[list[tuple[Any, ...]] | None]:
        """Each read's rows (None: several, of a read not read whole: not answered from here)."""
        reads: list[list[tuple[Any, ...]] | None] = []
        at = 0
        for width, item in zip(self.widths, self.items, strict=True):
            count, values = row[at], row[at + 1 : at + 1 + width]
            if item is not None:  # read whole: the rows from the arrays, each processed as the statement's own
                reads.append([] if not count else [item.process(tuple(one)) for one in zip(*values, strict=True)])
            else:
                reads.append([] if not count else [tuple(values)] if count == 1 else None)
            at += 1 + width
        return reads


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


class Unread(Exception):
    """A read that a snapshot without a connection (:meth:`FastReads.answered`) was not given: it reads nothing."""


NOT_READ_AHEAD = "a read the statement read ahead did not answer"


def _read_key(statement: Select[Any], parameters: Mapping[str, Any] | None) -> tuple[int, tuple[tuple[str, Any], ...]]:
    return id(statement), tuple(sorted(parameters.items())) if parameters else ()


class FastSnapshot:
    """A read-only transaction on one pooled DBAPI connection (see the module doc); from :meth:`FastReads.snapshot`.

    From :meth:`FastReads.answered`: no connection, only the reads one statement read already (each once); any other
    read raises :class:`Unread`.
    """

    __slots__ = ("_cursor", "_ready", "_reads", "engine")

    def __init__(self, reads: FastReads, cursor: Any, ready: dict[Any, tuple[Select[Any], list[tuple[Any, ...]]]] | None = None) -> None:
        self._reads = reads
        self._cursor = cursor
        self._ready = ready
        self.engine = reads.engine
        """The engine (for per-engine caches such as the installation key check)."""

    def peek(self, statement: Select[Any], parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]] | None:
        """The rows a read named ahead was answered with, leaving it to be read (None: not answered from here)."""
        ready = self._ready.get(_read_key(statement, parameters)) if self._ready else None
        return list(ready[1]) if ready is not None and ready[0] is statement else None

    def execute(self, statement: Select[Any], parameters: Mapping[str, Any] | None = None) -> _Rows:
        """Run a core ``SELECT`` (compiled once per dialect) and return its rows (read with the ``BEGIN`` if prefetched)."""
        if self._ready:
            ready = self._ready.pop(_read_key(statement, parameters), None)
            if ready is not None and ready[0] is statement:
                return _Rows(ready[1])
        if self._cursor is None:
            raise Unread(NOT_READ_AHEAD, id(statement))  # the statement is not rendered: a fallback must stay cheap
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
        self._together: dict[tuple[int, ...], tuple[tuple[Select[Any], ...], _Together]] = {}
        self._lock = threading.Lock()
        self._held: Any = None  # SQLite: the event loop's own connection (hold_for_this_thread)
        self._held_thread: int | None = None
        self._held_busy = False

    def hold_for_this_thread(self) -> None:
        """SQLite: keep one pooled connection for the snapshots of the calling thread (the event loop's).

        A snapshot on the loop then skips the pool's checkout and check-in, and its reset on return (a second
        rollback), which cost as much as the reads themselves on an embedded store. Outside a snapshot the
        connection holds no transaction, so it takes no lock and keeps no older state from anyone. Other
        threads, and a snapshot begun inside another on the same thread, use the pool as before. No-op on
        PostgreSQL (its reads on the loop are awaited on connections of their own).
        """
        if self._sqlite and self._held is None:
            self._held = self.engine.raw_connection()
            self._held_thread = threading.get_ident()

    def release(self) -> None:
        """Give the held connection back to the pool (the app is stopping)."""
        held, self._held, self._held_thread = self._held, None, None
        if held is not None:
            held.close()

    def _sqlite_connection(self) -> tuple[Any, bool]:
        """The connection for a SQLite snapshot: the held one when this thread holds it and it is free."""
        if self._held is not None and not self._held_busy and threading.get_ident() == self._held_thread:
            self._held_busy = True
            return self._held, True
        return self.engine.raw_connection(), False

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

    def together(self, prefetch: Sequence[Read], whole: Collection[Select[Any]] = ()) -> ReadsAhead | None:
        """``prefetch`` as one statement (compiled once per list of statements), the reads it answers and its
        parameters; a read whose parameter names another value under a name taken is left out (read when asked).
        A statement in ``whole`` is read with all its rows (:class:`_Together`), any other answers one row or none."""
        reads: list[tuple[Select[Any], Mapping[str, Any]]] = []
        parameters: dict[str, Any] = {}
        for statement, given in prefetch:
            given = given or {}
            taken = any(statement is other for other, _ in reads)
            if taken or any(name in parameters and parameters[name] != value for name, value in given.items()):
                continue
            reads.append((statement, given))
            parameters.update(given)
        if not reads:
            return None
        statements = tuple(statement for statement, _ in reads)
        read_whole = tuple(any(statement is other for other in whole) for statement in statements)
        key = tuple(id(statement) for statement in statements) + read_whole
        entry = self._together.get(key)
        if entry is None or not all(a is b for a, b in zip(entry[0], statements, strict=True)):
            entry = (statements, _Together(statements, self.dialect, read_whole))  # the statements are kept: their ids stay theirs
            with self._lock:
                if len(self._together) < MAX_PREPARED:
                    self._together[key] = entry
        return entry[1], tuple(reads), parameters

    def answered(self, ahead: ReadsAhead, row: tuple[Any, ...], earlier: FastSnapshot | None = None) -> FastSnapshot:
        """A snapshot with no connection that answers the reads of ``ahead`` from ``row``, the row its statement
        read (processed: :attr:`_Prepared.process`), each once; any other read raises :class:`Unread`.

        On PostgreSQL a single statement reads under one snapshot of its own, so the reads it answers are of one
        committed state of the store, as they would be in :meth:`snapshot`'s transaction. ``earlier``: a snapshot
        answered by an earlier statement, whose reads this one answers too, but for those ``row`` answers again
        (then as of this statement): a caller that combines two must itself see that what it reads from the
        earlier one holds with what it reads from this one (:meth:`audits.consent.ConsentReadCache.refresh_reads`).
        """
        answers = _answers(ahead, row)
        if earlier is not None and earlier._ready:
            answers = {**earlier._ready, **answers}
        return FastSnapshot(self, None, answers)

    @contextmanager
    def snapshot(self, prefetch: Sequence[Read] = ()) -> Iterator[FastSnapshot]:
        """A read-only transaction seeing one committed state of the store; rolled back at the end.

        ``prefetch``: reads the transaction will make, read by one statement after its ``BEGIN`` on PostgreSQL
        (see the module doc).
        """
        if self._sqlite:
            connection, held = self._sqlite_connection()
            ended = False
            try:
                cursor = connection.cursor()
                try:
                    # The driver runs in autocommit mode (audits.db), so the transaction is ours to begin.
                    cursor.execute("BEGIN DEFERRED")
                    try:
                        yield FastSnapshot(self, cursor)
                    finally:
                        connection.rollback()
                        ended = True
                finally:
                    cursor.close()
            finally:
                if not held:
                    connection.close()  # back to the pool
                elif ended:
                    self._held_busy = False
                else:  # a snapshot that could not begin or end: the held connection is not used again
                    self._held = self._held_thread = None
                    self._held_busy = False
                    connection.invalidate()
                    connection.close()
            return
        connection, cursor, ready = self._begin(self.together(prefetch) if prefetch else None)
        try:
            yield FastSnapshot(self, cursor, ready)
        finally:
            _end(connection, cursor)

    def _begin(self, reads: ReadsAhead | None) -> tuple[Any, Any, dict[Any, Any] | None]:
        """PostgreSQL: a pooled connection with the snapshot begun and ``reads`` read; one retry on a pinged
        connection when the server had dropped the unpinged one."""
        connection = unpinged_connection(self.engine)
        try:
            return connection, *_begin_on(connection, reads)
        except BaseException as err:
            if not is_dropped(self.engine, err, connection.dbapi_connection):
                _end(connection, None)
                raise
            connection.invalidate(err)  # gone: the pool opens another in its place
            connection.close()
        connection = self.engine.raw_connection()  # pinged: a dropped connection is replaced before it is used
        try:
            return connection, *_begin_on(connection, reads)
        except BaseException:
            _end(connection, None)
            raise


def _begin_on(connection: Any, reads: ReadsAhead | None) -> tuple[Any, dict[Any, Any] | None]:
    """PostgreSQL: the read-only transaction begun by one statement, then ``reads`` read in it by one more.

    psycopg outside autocommit sends ``BEGIN`` on its own before the first
    statement, and the isolation level would then take a ``SET TRANSACTION`` of
    its own: two round trips, on every request, before the first read. In
    autocommit mode (switched on the idle connection, which costs no round trip)
    ``BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY`` is one. The connection
    goes back to the pool as it came (not in autocommit), or is discarded (:func:`_end`).
    """
    dbapi = connection.dbapi_connection
    dbapi.autocommit = True
    cursor = dbapi.cursor()
    try:
        cursor.execute(_BEGIN)
        if reads is None:
            return cursor, None
        prepared = reads[0].prepared
        cursor.execute(prepared.sql, prepared.parameters(reads[2]))
        row = prepared.process(cursor.fetchone())
    except BaseException:
        cursor.close()
        raise
    return cursor, _answers(reads, row)


def _answers(ahead: ReadsAhead, row: tuple[Any, ...]) -> dict[Any, tuple[Select[Any], list[tuple[Any, ...]]]]:
    """The reads ``ahead`` names, each with its rows as ``row`` holds them (a read of several rows is left out)."""
    together, named, _parameters = ahead
    ready = {}
    for (statement, given), rows in zip(named, together.split(row), strict=True):
        if rows is not None:
            ready[_read_key(statement, given)] = (statement, rows)
    return ready


def _end(connection: Any, cursor: Any) -> None:
    """PostgreSQL: the snapshot ended (also after a failed ``BEGIN``) and the connection back to the pool as it came
    (not in autocommit), or discarded when it cannot be."""
    dbapi = connection.dbapi_connection
    try:
        try:
            if dbapi is not None:
                (cursor or dbapi.cursor()).execute("ROLLBACK")  # outside a transaction it only warns
                dbapi.autocommit = False
        except Exception:  # noqa: BLE001 - the reads are done; a connection that cannot end them is not pooled again
            connection.invalidate()
        finally:
            if cursor is not None:
                cursor.close()
    finally:
        connection.close()  # back to the pool (or, invalidated, replaced there)
