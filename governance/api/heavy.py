"""Work that costs seconds (or minutes) per request, made a few at a time so it never takes every worker thread.

The regulator's report (its plots, a PDF printed by Chromium), a verification of
the whole trail with every record it anchors (about 200,000 events/s, 56,000
decisions/s) and the trail's export all cost time in proportion to the store.
Run on the worker threads like the other endpoints, a few such requests of one
auditor's key took every thread and every other request waited for them (16
report requests: a one-row ``GET /v1/audits`` answered in 15.5 s instead of
5 ms). :func:`run_heavy` runs such work on a thread under the app's own
capacity limiter of :data:`HEAVY_AT_ONCE`: the requests for more wait on the
event loop, holding no thread, and the rest of the API keeps its threads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from starlette.requests import Request

__all__ = ["HEAVY_AT_ONCE", "run_heavy"]

HEAVY_AT_ONCE = 2
"""Heavy requests a server works on at the same time (two: a PDF or a verification keeps about a core busy)."""

T = TypeVar("T")


def _limiter(request: Request) -> anyio.CapacityLimiter:
    """The app's limiter, made on first use (on the event loop, so made once)."""
    limiter = getattr(request.app.state, "heavy_limiter", None)
    if limiter is None:
        limiter = request.app.state.heavy_limiter = anyio.CapacityLimiter(HEAVY_AT_ONCE)
    return limiter


async def run_heavy(request: Request, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``work(*args, **kwargs)`` on a worker thread, once one of the app's :data:`HEAVY_AT_ONCE` places is free."""
    return await anyio.to_thread.run_sync(functools.partial(work, *args, **kwargs), limiter=_limiter(request))
