"""The serving process's heap kept out of the cyclic garbage collector's full walks.

One interpreter answers every request. It holds a few hundred thousand objects
tracked by the cyclic garbage collector (about 290,000 on the benchmark's
server: the imported modules, the app, its OpenAPI document, the models and
engines), and every full collection walked all of them with the interpreter
lock held: 150 to 190 ms on this benchmark's machine, once every one to two
thousand lists, stalling every request in flight. That pause, not the work of
a list, was the p99 of the service (``bench/bench_http.py``).

What is loaded at startup, and with each model and engine, lives as long as
the process, so it is moved out of the collector's sight (:func:`gc.freeze`):
full collections then walk only what was allocated since (a couple of
milliseconds). The collector still finds cycles among everything allocated
later, and reference counting frees frozen objects as ever. Cyclic garbage
present at a freeze is kept until :func:`freeze_heap` collects everything
(once every :data:`SETTLE_EVERY` engines built) or the app stops.

:func:`tune` freezes at the app's startup and :func:`restore` makes everything
collectable again at its shutdown (a test process starts many apps).
"""

from __future__ import annotations

import gc
import threading

__all__ = ["SETTLE_EVERY", "freeze_heap", "restore", "tune"]

SETTLE_EVERY = 16
"""Engines built between two full collections of the frozen heap (see :func:`freeze_heap`)."""

_lock = threading.Lock()
_apps = [0]
"""Apps of this process between :func:`tune` and :func:`restore`."""
_builds = [0]


def tune() -> None:
    """Freeze what is loaded (the app's startup); :func:`restore` undoes it."""
    with _lock:
        _apps[0] += 1
        gc.freeze()


def freeze_heap() -> None:
    """Freeze what the collector tracks now (after building an engine: its model and catalog live on).

    No collection first (it holds the lock for a full walk while requests
    wait), except at every :data:`SETTLE_EVERY`-th engine: then everything is
    made collectable and collected once before the freeze, so that what newer
    engines replaced (the engines before them, evicted models) is freed rather
    than kept frozen for good. Outside a running app (a cache used on its own)
    it does nothing.
    """
    with _lock:
        if not _apps[0]:
            return
        _builds[0] += 1
        if _builds[0] % SETTLE_EVERY == 0:
            gc.unfreeze()
            gc.collect()
        gc.freeze()


def restore() -> None:
    """Every frozen object collectable again once the last running app of the process stops."""
    with _lock:
        if not _apps[0]:
            return
        _apps[0] -= 1
        if not _apps[0]:
            gc.unfreeze()
