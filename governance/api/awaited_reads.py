"""A governed list's reads as one PostgreSQL statement awaited on the event loop: no worker thread, no transaction.

On PostgreSQL a governed list reads its key, its model's artifact, the blocks
revision and its subject's consent version by one statement
(:meth:`governance.api.reads.FastReads.together`). A single statement reads
under one snapshot of its own: run alone in autocommit mode it sees one
committed state of the store, everything committed before it began, as the
``REPEATABLE READ, READ ONLY`` transaction of
:meth:`~governance.api.reads.FastReads.snapshot` does, without that
transaction's ``BEGIN`` and ``ROLLBACK`` (two of its three round trips) and
without the worker thread that waits for them (the hand-off to it and back is
more of the serving process's interpreter than the reads themselves).
:class:`AwaitedReads` runs that statement on a ``psycopg.AsyncConnection``,
awaited on the event loop, and gives its row as a snapshot with no connection
(:meth:`~governance.api.reads.FastReads.answered`): the list's code reads it as
it reads any snapshot, in its own order (the key first), and a read the
statement did not answer (a consent history to read, a read of several rows)
raises :class:`~governance.api.reads.Unread`, having read and written nothing.
The caller then prepares the list as before, in a snapshot on a worker thread
(:mod:`governance.api.services.lists`).

* Its connections are its own, not the engine's pool: opened when first needed
  (at most ``size``; a read finding all of them in use waits for one), with the
  pool's connect arguments and type adapters
  (:func:`audits.db.connect_arguments`), in autocommit mode; each statement is
  prepared on the server at its first use on a connection.
* A statement that fails (the server dropped the connection or restarted, a
  connection that cannot be opened, any error) raises
  :class:`~governance.api.reads.Unread`: the connection is closed, the next
  read opens another, and the caller's snapshot on a worker thread recovers
  from a dropped connection, or reports the error, as it always did.
* :meth:`AwaitedReads.aclose` closes them when the app stops (a connection in
  use is closed when given back); later reads raise
  :class:`~governance.api.reads.Unread`.

Not thread-safe: one event loop (the app's) uses it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Collection, Sequence
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Select

from audits.db import connect_arguments
from governance.api.reads import FastReads, FastSnapshot, Read, Unread

__all__ = ["STOPPED", "AwaitedReads"]

STOPPED = "the service's awaited reads are closed (it is stopping)"


class AwaitedReads:
    """Reads named ahead, read by one statement awaited on the event loop, on up to ``size`` connections of its own."""

    def __init__(self, reads: FastReads, size: int) -> None:
        if reads.embedded:
            raise ValueError("awaited reads are for PostgreSQL; an embedded SQLite store's reads are local")
        self.reads = reads
        self.size = size
        self._connect = connect_arguments(reads.engine)
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._open = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def read(self, prefetch: Sequence[Read], *, whole: Collection[Select[Any]] = (), earlier: FastSnapshot | None = None) -> FastSnapshot:
        """``prefetch`` read by one statement: a snapshot answering those reads (each once) and no other
        (:class:`~governance.api.reads.Unread`); raises :class:`~governance.api.reads.Unread` when the statement
        could not be read. ``whole``: statements read with all their rows; ``earlier``: a snapshot an earlier
        statement answered, whose answers the new one keeps but for the reads it answers again
        (:meth:`~governance.api.reads.FastReads.answered`)."""
        ahead = self.reads.together(prefetch, whole)
        if ahead is None:
            raise Unread("nothing to read ahead")
        prepared = ahead[0].prepared
        sql, parameters = prepared.sql, prepared.parameters(ahead[2])
        try:
            connection = await self._take()
        except psycopg.Error as err:
            raise Unread(f"no connection: {err}") from err
        reusable = False
        try:
            row = await (await connection.execute(sql, parameters, prepare=True)).fetchone()
            reusable = True
        except psycopg.Error as err:
            raise Unread(f"the statement failed: {err}") from err
        finally:
            await self._give(connection, reusable)
        if row is None:  # a SELECT of one row of subqueries: never
            raise Unread("the statement read no row")
        return self.reads.answered(ahead, prepared.process(row), earlier)

    async def _take(self) -> psycopg.AsyncConnection[Any]:
        while True:
            if self._closed:
                raise Unread(STOPPED)
            if self._idle:
                return self._idle.pop()  # the most recently used: the fewest connections stay busy
            if self._open < self.size:
                self._open += 1
                try:
                    return await psycopg.AsyncConnection.connect(autocommit=True, **self._connect)
                except BaseException:
                    self._open -= 1
                    self._wake()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: the turn goes to the next
                raise

    async def _give(self, connection: psycopg.AsyncConnection[Any], reusable: bool) -> None:
        if reusable and not self._closed and connection.info.transaction_status == TransactionStatus.IDLE:
            self._idle.append(connection)
        else:
            self._open -= 1
            await connection.close()  # never suspends: the socket is closed in place
        self._wake()

    def _wake(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        """Close the idle connections (one in use is closed when given back); later reads raise
        :class:`~governance.api.reads.Unread`."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            self._open -= 1
            await connection.close()
        while self._waiting:
            self._wake()

    @property
    def connections(self) -> int:
        """Connections open now (idle or in use)."""
        return self._open
