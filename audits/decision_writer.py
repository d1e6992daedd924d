"""A decision log whose database work runs in a process of its own.

:class:`~audits.decisions.DecisionLog` commits batches from a writer thread.
In a serving process that thread competes with the request threads for the
interpreter lock: while it runs SQLAlchemy and hashes a batch, a request
waits, which is the tail of the serving latency (``bench/bench_serving.py``).
:class:`ProcessDecisionLog` keeps everything else the same (validation and
encoding in the caller's thread, batching and group commit, fail closed,
receipts) and moves the commit itself to a child process: the parent's writer
thread only sends each batch's validated records
(:class:`~audits.decisions.Decision`, their slates and contexts as the canonical
JSON encoded at submit time) down a pipe and waits for the
answer, with the interpreter lock released.

The child opens the same store (URL and ``RECGOV_*`` settings inherited) and
writes each batch exactly as the thread would: the consent records the decisions were made on, pseudonyms, the slates and
contexts sealed under each subject's record key (:mod:`audits.sealing`: the
encryption runs here, off the serving process), one
``decisions.committed`` trail event with the batch digest, the events the
decisions brought (an API call's own record), the rows, one transaction. If the child dies, every pending and later decision fails (fail
closed) with the cause.

Use it for a long-running service; it costs a process start (about a second
of imports): a new log returns once its child has opened the store, so the
first decision never waits for it (and a store the child cannot open is a
:class:`~recommender.errors.ConfigError` at once, saying why).

>>> with ProcessDecisionLog(store) as log:                      # doctest: +SKIP
...     receipt = log.submit_and_wait(record)
"""

from __future__ import annotations

import gc
import multiprocessing
import threading
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError

from audits.db import HeldConnection, Store, describe_db_error
from audits.consent_write import ConsentWrite
from audits.decision_record import Decision, _Pending
from audits.decisions import DecisionLog
from audits.trail import NewEvent
from recommender.errors import ConfigError, DataError, RecgovError

__all__ = ["WRITER_DIED", "WRITER_NOT_STARTED", "ProcessDecisionLog"]

WRITER_DIED = "the decision log's writer process is gone ({cause}); fail closed: open a new log"
WRITER_NOT_STARTED = "the decision log's writer process did not start: {cause}"
WRITER_START_TIMEOUT_S = 120.0
"""Seconds a new log waits for its writer process to have opened the store (imports on a loaded host take long)."""


def _child_main(url: str, actor: str, conn: Connection) -> None:
    """The writer process: commit each batch received, answer with its trail seq or the error."""
    from audits.db import open_store

    try:
        store = open_store(url)
    except BaseException as err:  # noqa: BLE001 - answered: the parent says why it could not start
        conn.send(("failed", f"{type(err).__name__}: {err}"[:2000]))
        return
    conn.send(("ready",))
    writer = DecisionLog.__new__(DecisionLog)  # only _commit is used: the store, the actor, the filed record keys
    writer.store, writer.actor, writer._filed = store, actor, set()
    writer._held = held = HeldConnection(store)  # the only writer of this process: one connection for every batch
    frozen = False
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return
            if message is None:
                conn.send(("closed",))
                return
            batch = [
                _Pending(decision, None, slate_json, context_json, tuple(NewEvent(*event) for event in events), decision.subject, consent)
                for decision, slate_json, context_json, events, consent in message
            ]
            try:
                seq = DecisionLog._commit(writer, batch)
            except IntegrityError as err:
                conn.send(("integrity", describe_db_error(err)))
            except DBAPIError as err:
                conn.send(("database", describe_db_error(err)))
            except RecgovError as err:
                conn.send(("recgov", type(err).__name__, str(err)))
            except BaseException as err:  # noqa: BLE001 - answered, and the writer lives on
                conn.send(("other", f"{type(err).__name__}: {err}"))
            else:
                conn.send(("ok", seq, [pending.recorded for pending in batch]))
                if not frozen:  # what the first commit loaded and compiled lives on: no full collection walks it
                    gc.collect()
                    gc.freeze()
                    frozen = True
    finally:
        held.close()
        store.close()


class _ChildIntegrityError(IntegrityError):
    """An IntegrityError the child reported (so that the per-record retry of the thread log applies)."""

    def __init__(self, message: str) -> None:
        super().__init__(statement=None, params=None, orig=Exception(message))
        self.message = message

    def __str__(self) -> str:
        return self.message


class ProcessDecisionLog(DecisionLog):
    """:class:`~audits.decisions.DecisionLog` with the commits in a child process (same parameters)."""

    def __init__(self, store: Store, **options: Any) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        self._conn, child = context.Pipe()
        self._pipe_lock = threading.Lock()
        self._dead: str | None = None
        url = store.engine.url.render_as_string(hide_password=False)
        from audits._common import actor_name

        self._process = context.Process(
            target=_child_main, args=(url, actor_name(options.get("actor")), child), name="recgov-decision-writer", daemon=True
        )
        self._process.start()
        child.close()
        self._wait_until_started()
        super().__init__(store, **options)

    def _wait_until_started(self) -> None:
        """Return once the child has opened the store, so that no decision waits on its start (a service starting
        the log at startup accepts lists only then); raise :class:`ConfigError` saying why it could not start."""
        try:
            answer = self._conn.recv() if self._conn.poll(WRITER_START_TIMEOUT_S) else ("failed", f"no answer within {WRITER_START_TIMEOUT_S:g} s")
        except (EOFError, OSError) as err:
            answer = ("failed", f"it exited ({type(err).__name__})")
        if answer[0] == "ready":
            return
        self._conn.close()
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
        raise ConfigError(WRITER_NOT_STARTED.format(cause=answer[1]))

    def _commit(self, batch: list[_Pending]) -> int:
        # Each record as its validated Decision, its slate and context as the canonical JSON encoded at submit time.
        message: list[tuple[Decision, bytes, bytes, list[tuple[Any, ...]], tuple[ConsentWrite, ...]]] = [
            (p.decision.without_objects(), p.slate_json, p.context_json, [(e.actor, e.action, e.subject, e.objects, e.payload) for e in p.events], p.consent)
            for p in batch
        ]
        with self._pipe_lock:
            if self._dead is not None:
                raise ConfigError(WRITER_DIED.format(cause=self._dead))
            try:
                self._conn.send(message)
                answer = self._conn.recv()
            except (EOFError, OSError) as err:
                self._dead = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
                raise ConfigError(WRITER_DIED.format(cause=self._dead)) from err
        kind = answer[0]
        if kind == "ok":
            for pending, recorded in zip(batch, answer[2], strict=True):
                pending.recorded = tuple(recorded)
            return int(answer[1])
        if kind == "integrity":
            raise _ChildIntegrityError(answer[1])
        if kind == "database":
            raise ConfigError(f"the database {self.store.url} failed: {answer[1]}")
        if kind == "recgov":
            error_type = {"DataError": DataError, "ConfigError": ConfigError}.get(answer[1], RecgovError)
            raise error_type(answer[2])
        raise ConfigError(f"the decision log's writer failed: {answer[1]}")

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued (through the child), then stop the writer thread and the child."""
        super().close(timeout)
        with self._pipe_lock:
            if self._dead is None:
                try:
                    self._conn.send(None)
                    self._conn.recv()
                except (EOFError, OSError):
                    pass
                self._dead = "closed"
            self._conn.close()
        self._process.join(timeout if timeout is not None else 30)
        if self._process.is_alive():
            self._process.kill()
