"""Posted packs are parsed in a process of their own, within a time budget.

Parsing YAML and validating a pack is pure-Python work: on a thread of the
server it holds the interpreter lock, and while it does the event loop (and
``/health``) waits, the longer the busier the machine. So the server hands each
posted pack to one child process (spawned at startup, never forked from a
process that runs threads) and awaits the answer without blocking: a flood of
hostile packs queues there, each refused by the YAML limits of
:mod:`governance.located` at the cost of one read, while the loop answers other
requests.

A pack not parsed within ``RECGOV_PACK_PARSE_TIMEOUT_S`` (queueing included) is a
:class:`PackTooSlow`; the child is then stopped and a fresh one takes its place,
so no work outlives its budget. The child answers with plain data (the pack's
identity, or its located issues), which the server turns back into the
:class:`~governance.located.PolicyError` the error handlers answer as a 422.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from governance.located import PackIssue, PolicyError

__all__ = ["PackParser", "PackTooSlow", "identity_of"]


STARTUP_TIMEOUT_S = 120.0
"""How long a pack waits for the child to start (imports), outside its own budget."""


class PackTooSlow(Exception):
    """A pack not parsed within its time budget."""


def identity_of(text: str, source: str) -> dict[str, Any]:
    """In the child: the pack's identity, or ``{"issues": [...]}`` (plain data, picklable)."""
    from governance.policy import parse_pack

    try:
        loaded = parse_pack(text, source)
    except PolicyError as err:
        return {"issues": [issue.to_dict() for issue in err.issues]}
    return {**loaded.stamp(), "rules": len(loaded.pack.rules()), "warnings": [w.to_dict() for w in loaded.warnings]}


def _warm() -> bool:
    import governance.policy  # noqa: F401  (the child imports the checks once, before the first pack)

    return True


class PackParser:
    """One child process that parses posted packs; :meth:`identity` awaits its answer within a budget."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._warmed: Future[bool] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Spawn the child (it imports the checks meanwhile)."""
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
                self._warmed = self._pool.submit(_warm)

    @property
    def ready(self) -> bool:
        """Whether the child is up, its imports done."""
        with self._lock:
            warmed = self._warmed
        return warmed is not None and warmed.done() and warmed.exception() is None

    def close(self) -> None:
        """Stop the child (the app is stopping)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            _kill(pool)

    async def identity(self, text: str, source: str, *, budget_s: float) -> dict[str, Any]:
        """The identity of pack ``text``; raises :class:`PolicyError` (its issues) or :class:`PackTooSlow`."""
        self.start()
        with self._lock:
            pool, warmed = self._pool, self._warmed
        assert pool is not None and warmed is not None
        try:  # a child still starting is waited for outside the budget: the budget is the pack's
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(warmed)), STARTUP_TIMEOUT_S)
            answer = await asyncio.wait_for(asyncio.wrap_future(pool.submit(identity_of, text, source)), budget_s)
        except (TimeoutError, BrokenProcessPool):
            self._replace(pool)
            raise PackTooSlow from None
        if "issues" in answer:
            raise PolicyError([PackIssue(**issue) for issue in answer["issues"]])
        return answer

    def _replace(self, pool: ProcessPoolExecutor) -> None:
        """Stop ``pool``'s child (still busy past its budget, or dead); the next pack starts a fresh one."""
        with self._lock:
            if self._pool is pool:
                self._pool = None
        _kill(pool)
        self.start()  # the next pack finds a child ready, or starting


def _kill(pool: ProcessPoolExecutor) -> None:
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public way to stop a busy worker
    for process in processes:
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)
