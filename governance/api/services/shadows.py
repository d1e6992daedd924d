"""Shadow versions served beside the answered list, never shown: the service's side of :mod:`governance.shadow`.

When a request names no model version, what is deployed answers and every
shadow version gets the same request after the answer, on a thread of its own
(:class:`ShadowMirror`). A shadow's engine is built (from the app's engine cache)
and its list made and recorded there (``served: false``, ``shadow_of`` the
answered decision), never returned: a shadow that cannot load or serve is logged
as a failed request and counted, never felt by the request. At most
:data:`MAX_SHADOW_BACKLOG` requests wait for the shadows; beyond that a mirror is
dropped and counted rather than held in memory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from audits.decisions import log_failure
from governance.policy import LoadedPack
from governance.serving import ServeRequest, ServingEngine

__all__ = ["MAX_SHADOW_BACKLOG", "ShadowMirror"]

MAX_SHADOW_BACKLOG = 1000
"""Served requests that may wait for the shadow versions; more are not mirrored (and are counted)."""

EngineOf = Callable[[LoadedPack, str, str, Any], ServingEngine]
"""``(pack, model version, artifact location, read snapshot) -> engine``: the engine cache's lookup."""


class ShadowMirror:
    """Hands served requests to the shadow versions, on one thread of their own (see the module doc).

    ``lock`` is the engine cache's: the cache refuses further mirrors
    (:meth:`refuse`) in the same critical section in which it closes, so no
    request is mirrored into a pool being shut down.
    """

    def __init__(self, engine_of: EngineOf, store: Any, lock: threading.Lock) -> None:
        self._engine_of = engine_of
        self.store = store
        self._lock = lock
        self._pool: ThreadPoolExecutor | None = None
        self._backlog = 0
        self._refused = False
        self.failures = 0
        """Shadow lists that could not be made (their engine did not load, or serving failed)."""
        self.dropped = 0
        """Requests not mirrored because :data:`MAX_SHADOW_BACKLOG` were waiting."""

    def mirror(self, request: ServeRequest, decision_id: str, loaded: LoadedPack, shadows: list[tuple[str, str]]) -> None:
        """Serve ``request`` (answered as ``decision_id``) with each shadow version ``(model_version, artifact location)``."""
        if not shadows:
            return
        with self._lock:  # submitted under the lock: refuse() cannot take the pool in between
            if self._refused:
                return
            if self._backlog >= MAX_SHADOW_BACKLOG:
                self.dropped += 1
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recgov-api-shadow")
            self._backlog += 1
            self._pool.submit(self._run, request, decision_id, loaded, shadows)

    def refuse(self) -> ThreadPoolExecutor | None:
        """Under the cache's lock: mirror nothing more; return the pool, for the caller to shut down (waiting)."""
        self._refused = True
        pool, self._pool = self._pool, None
        return pool

    def _run(self, request: ServeRequest, decision_id: str, loaded: LoadedPack, shadows: list[tuple[str, str]]) -> None:
        try:
            for model_version, location in shadows:
                try:
                    with self.store.snapshot() as read:
                        engine = self._engine_of(loaded, model_version, location, read)
                except Exception as err:  # noqa: BLE001 - a shadow that cannot load is logged, never raised
                    with self._lock:
                        self.failures += 1
                    try:
                        log_failure(self.store, f"shadow.{type(err).__name__}"[:100], {"model_version": model_version, "message": str(err)[:500]})
                    except Exception:  # noqa: BLE001 - the store is failing too; the count stays
                        pass
                    continue
                try:
                    engine.serve(request, shadow_of=decision_id)
                except Exception:  # noqa: BLE001 - the engine logged the failure with its cause
                    with self._lock:
                        self.failures += 1
        finally:
            with self._lock:
                self._backlog -= 1
