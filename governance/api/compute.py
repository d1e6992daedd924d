"""A process beside the event loop that makes the model's part of governed lists.

The REST API answers on one interpreter: its event loop parses requests, checks
keys, reads the store and decides each list, and a list's model part
(candidates, the pack's re-ranking, the explanation tags: about half a
millisecond of numpy and Python per list) holds the interpreter lock the whole
time. On a machine with two cores the second one had nothing to do but the
decision writer. :class:`ComputeProcess` runs that part in a child process, so
the loop answers other requests while a list is made.

What goes there is a :class:`~governance.serving.Personalizer`: a pure function
of the model, the re-ranking and its checked catalog, and the blocked items,
sent once per engine (its ``token`` names it; an engine built for new blocks has
a new one) and kept for the :data:`MAX_HELD` engines used last. Every other step
of the request (the consent decision, the record and its commit) stays in the
server. The child computes exactly what the server would (the same code on the
same arrays, one BLAS thread), so the process changes no answer, only where
the work runs:

* until the child is ready and holds the engine, a list is made in the server
  (the engine is sent meanwhile, without blocking the loop);
* a list the child does not answer within :data:`ANSWER_TIMEOUT_S`, or answers
  with an error, is made in the server (an error is raised there again, with
  the request's own failure handling); a late child is stopped and started
  again after :data:`RESTART_AFTER_S`, as is one that died.

Only the event loop uses it (the lists it decides itself, see
:mod:`governance.api.services.lists`); lists decided on worker threads
are made there.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import pickle
import socket
import struct
import time
from collections import OrderedDict
from multiprocessing.connection import Connection
from typing import Any

from governance.serving import PersonalizedList, Personalizer

__all__ = ["ANSWER_TIMEOUT_S", "MAX_HELD", "RESTART_AFTER_S", "ComputeProcess"]

log = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 2.0
"""Seconds a list waits for the compute process before it is made in the server."""
RESTART_AFTER_S = 30.0
"""Seconds after the compute process died or was stopped before another is started."""
MAX_HELD = 8
"""Engines whose model part the compute process holds (least recently used dropped first)."""

_LATE = object()
"""What a list's wait gets when the compute process did not answer in time."""


def _expire(waiting: asyncio.Future[Any]) -> None:
    if not waiting.done():
        waiting.set_result(_LATE)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _current_task() -> asyncio.Task[Any] | None:
    return asyncio.current_task() if _running_loop() is not None else None


_HEADER = struct.Struct("!i")  # multiprocessing.Connection's framing: a signed 32-bit length, then the pickle


def _compute_main(conn: Connection) -> None:
    """The child: hold the engines' model parts it is sent and make the lists it is asked for."""
    from recommender.als import pin_blas_single_thread

    pin_blas_single_thread()  # as the server: one list per call, 64-wide products
    held: dict[str, Personalizer] = {}
    gc.freeze()  # what is imported lives as long as the process: no full collection walks it (a list's pause)
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        except Exception:  # noqa: BLE001 - a message that does not unpickle here (read whole): skipped, not fatal
            continue
        kind = message[0]
        if kind == "run":
            _, number, token, row, k = message
            try:
                answer: tuple[Any, ...] = ("ok", number, held[token].personalize(row, k))
            except Exception as err:  # noqa: BLE001 - answered; the server makes the list itself and raises there
                answer = ("error", number, f"{type(err).__name__}: {err}"[:500])
            conn.send(answer)
        elif kind == "hold":
            held[message[1]] = message[2]
            # The model part received lives on too; what was dropped (and any cycle of it) is freed first.
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            conn.send(("held", message[1]))
        elif kind == "drop":
            held.pop(message[1], None)
        elif kind == "stop":
            return


class ComputeProcess:
    """The server's compute process (started at the first list that could use it; see the module doc)."""

    def __init__(self, *, answer_timeout_s: float = ANSWER_TIMEOUT_S, max_held: int = MAX_HELD) -> None:
        self.answer_timeout_s = answer_timeout_s
        self.max_held = max_held
        self.made_there = 0
        """Lists the compute process made."""
        self.made_here = 0
        """Lists it could have made that were made in the server (not ready yet, late, failed)."""
        self.restarts = 0
        self._process: Any = None
        self._sock: socket.socket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._send_lock: asyncio.Lock | None = None
        self._ready = False
        self._held: OrderedDict[str, bool] = OrderedDict()  # token -> the child has it (False: on its way)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._number = 0
        self._down_until = 0.0
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the server's side (event loop only) ------------------------------------------------
    async def personalize(self, personalizer: Personalizer, row: int, k: int) -> PersonalizedList | None:
        """``personalizer.personalize(row, k)`` made in the compute process, or None: make it here."""
        if not self._usable() or getattr(personalizer, "stateful", False):  # a ledger lives in the server's process
            self.made_here += 1
            return None
        token = personalizer.token
        state = self._held.get(token)
        if state is None:  # send it (once), meanwhile make lists here
            self._hold(personalizer)
            self.made_here += 1
            return None
        self._held.move_to_end(token)
        if not state:
            self.made_here += 1
            return None
        self._number += 1
        number = self._number
        loop = asyncio.get_running_loop()
        waiting: asyncio.Future[Any] = loop.create_future()
        self._waiting[number] = waiting
        # One deadline for the whole exchange: the request is written by a task of its own (it may wait
        # behind a large message being written), and the timer settles the wait whatever holds it up.
        timer = loop.call_later(self.answer_timeout_s, _expire, waiting)
        sending = loop.create_task(self._send(("run", number, token, row, k)))
        sending.add_done_callback(lambda task: self._sent(task, waiting))
        try:
            answer = await waiting
        finally:
            timer.cancel()
            self._waiting.pop(number, None)
        if answer is _LATE:
            self._stop(f"no answer within {self.answer_timeout_s:g} s")
            answer = None
        if answer is None:
            self.made_here += 1
        else:
            self.made_there += 1
        return answer

    def start(self) -> None:
        """Start the process now (on the event loop), so that it is ready before the first lists."""
        if self._process is None and not self._closed:
            self._start()

    def close(self) -> None:
        """Stop the compute process (the app is stopping); later lists are made in the server."""
        self._closed = True
        self._stop("the service is stopping", restart=False)

    def drop_soon(self, tokens: set[str]) -> None:
        """Tell the compute process to drop these engines' model parts (from any thread: done on the event loop)."""
        loop = self._loop
        if loop is None or self._closed or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile: the process is gone with it
            loop.call_soon_threadsafe(self._drop, set(tokens))

    def _drop(self, tokens: set[str]) -> None:
        for token in tokens:
            if self._held.pop(token, None) is not None and self._sock is not None:
                self._background(("drop", token))

    @property
    def running(self) -> bool:
        """Whether a compute process is up and ready."""
        return self._ready and self._process is not None and self._process.is_alive()

    # -- internals ----------------------------------------------------------------------------
    def _usable(self) -> bool:
        if self._closed:
            return False
        if self._process is None:
            if time.monotonic() < self._down_until:
                return False
            self._start()
            return False
        return self._ready

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        ours, theirs = socket.socketpair()
        child = Connection(theirs.detach())  # the child's end, as multiprocessing.Pipe() would give it
        process = context.Process(target=_compute_main, args=(child,), name="recgov-api-compute", daemon=True)
        try:
            process.start()
        except Exception as err:  # noqa: BLE001 - no process: lists are made here, another try later
            _close(ours)
            child.close()
            self._down_until = time.monotonic() + RESTART_AFTER_S
            log.warning("the compute process could not start (%s: %s); lists are made in the server", type(err).__name__, err)
            return
        self._process = process
        child.close()
        # The loop reads and writes its end without blocking, in Connection's framing.
        ours.setblocking(False)
        self._sock = ours
        self._send_lock = asyncio.Lock()
        self._ready = False
        self._held.clear()
        self._loop = asyncio.get_running_loop()
        self._reader = self._loop.create_task(self._read(self._sock))

    def _sent(self, task: asyncio.Task[None], waiting: asyncio.Future[Any]) -> None:
        """A request written, or not: a failed write settles its wait at once (the list is made here)."""
        error = None if task.cancelled() else task.exception()
        if error is not None:
            if not waiting.done():
                waiting.set_result(None)
            self._stop(f"{type(error).__name__}: {error}")

    def _hold(self, personalizer: Personalizer) -> None:
        self._held[personalizer.token] = False
        while len(self._held) > self.max_held:
            dropped, _ = self._held.popitem(last=False)
            self._background(("drop", dropped))
        self._background(("hold", personalizer.token, personalizer))

    def _background(self, message: tuple[Any, ...]) -> None:
        async def send() -> None:
            try:
                await self._send(message)
            except (OSError, ConnectionError) as err:
                self._stop(f"{type(err).__name__}: {err}")
            except Exception as err:  # noqa: BLE001 - e.g. a model part that cannot be pickled: its lists are made here
                log.warning("the compute process cannot be sent %s (%s: %s); those lists are made in the server", message[0], type(err).__name__, err)

        asyncio.get_running_loop().create_task(send())

    async def _send(self, message: tuple[Any, ...]) -> None:
        sock, lock = self._sock, self._send_lock
        if sock is None or lock is None:
            raise ConnectionError("the compute process is not running")
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        async with lock:  # one message at a time: a large one is written in parts
            await asyncio.get_running_loop().sock_sendall(sock, _HEADER.pack(len(payload)) + payload)

    async def _read(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        buffer = bytearray()
        try:
            while True:
                chunk = await loop.sock_recv(sock, 1 << 16)
                if not chunk:
                    raise ConnectionError("the compute process closed its end")
                buffer += chunk
                while len(buffer) >= _HEADER.size:
                    (size,) = _HEADER.unpack_from(buffer)
                    if len(buffer) < _HEADER.size + size:
                        break
                    message = pickle.loads(buffer[_HEADER.size : _HEADER.size + size])
                    del buffer[: _HEADER.size + size]
                    self._on_message(message)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - a broken pipe or a dead child: lists are made here meanwhile
            if sock is self._sock:
                self._stop(f"{type(err).__name__}: {err}")

    def _on_message(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            self._ready = True
        elif kind == "held":
            if message[1] in self._held:
                self._held[message[1]] = True
        elif kind in ("ok", "error"):
            waiting = self._waiting.get(message[1])
            if waiting is not None and not waiting.done():
                waiting.set_result(message[2] if kind == "ok" else None)

    def _stop(self, why: str, *, restart: bool = True) -> None:
        process, sock, reader = self._process, self._sock, self._reader
        if process is None:
            return
        self._process = self._sock = self._reader = None
        self._ready = False
        self._held.clear()
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_result(None)
        if restart:
            self.restarts += 1
            self._down_until = time.monotonic() + RESTART_AFTER_S
            log.warning("the compute process stopped (%s); lists are made in the server, another process starts in %g s", why, RESTART_AFTER_S)
        loop = self._loop

        def teardown() -> None:
            # The reader's wait is cancelled first (asyncio then stops watching the socket), and the
            # socket closed after that, so the loop never watches a closed or reused descriptor.
            if reader is not None and reader is not _current_task():
                reader.cancel()
            if sock is not None and loop is not None:
                loop.call_soon(_close, sock)
            elif sock is not None:
                _close(sock)

        if loop is None or loop.is_closed():
            if sock is not None:
                _close(sock)
        elif _running_loop() is loop:
            teardown()
        else:  # from another thread (a test, a shutdown hook): on the loop's own thread
            loop.call_soon_threadsafe(teardown)
        with contextlib.suppress(Exception):  # it holds nothing to save: stopped at once
            process.kill()
            process.join(timeout=1)
