"""``/health`` and ``/ready``: the open endpoints.

``/health`` says the process answers (on the event loop, never behind the
worker threads). ``/ready`` says whether it can serve, and if not, what it waits
for: the store reachable and at the migration head, the decision log's writer
started (a governed list is answered only once its decision is committed), the
compute process up where one is configured, the process that parses posted
packs up, and the settings loaded. A load
balancer sends traffic once ``/ready`` is 200; the first governed list after a
start is then answered like any other.
"""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from governance.api.schemas.health import Check, Health, Readiness

router = APIRouter(tags=["health"])

READY_CHECK_TIMEOUT_S = 2.0
"""A store that does not answer within this is reported as unreachable."""


@router.get("/health", response_model=Health)
async def health() -> Health:  # answered on the event loop, never queued behind the worker threads
    return Health(version=_version())


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"description": "Not ready yet: the checks say what it waits for.", "model": Readiness}},
    summary="Whether the service can serve (200), or what it waits for (503)",
)
async def ready(request: Request) -> JSONResponse:
    app = request.app
    checks: dict[str, Check] = {"settings": Check(ok=hasattr(app.state, "settings"), detail="loaded")}
    store = getattr(app.state, "store", None)
    if store is None:
        checks["store"] = Check(ok=False, detail="not opened yet (the service is starting)")
        checks["migrations"] = Check(ok=False, detail="waiting for the store")
    else:
        try:
            with anyio.fail_after(READY_CHECK_TIMEOUT_S):
                checks.update(await anyio.to_thread.run_sync(_store_checks, store, abandon_on_cancel=True))
        except TimeoutError:
            checks["store"] = Check(ok=False, detail=f"no answer within {READY_CHECK_TIMEOUT_S:g} s")
            checks["migrations"] = Check(ok=False, detail="waiting for the store")
    checks.update(_serving_checks(app))
    body = Readiness(ready=all(c.ok for c in checks.values()), checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


def _store_checks(store: Any) -> dict[str, Check]:
    """The store answers, and its schema is at the head revision (worker thread)."""
    from audits.migrate import current_revision, head_revision

    try:
        with store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current = current_revision(store.engine)
    except Exception as err:  # noqa: BLE001 - any failure is "not ready", said in one line
        reason = f"unreachable ({type(err).__name__})"
        return {"store": Check(ok=False, detail=reason), "migrations": Check(ok=False, detail="waiting for the store")}
    head = head_revision()
    migrated = Check(ok=current == head, detail=f"at {current}" if current == head else f"at {current}, waiting for {head}")
    return {"store": Check(ok=True, detail=f"reachable ({store.engine.dialect.name})"), "migrations": migrated}


def _serving_checks(app: Any) -> dict[str, Check]:
    """The decision log's writer, the compute process where one is configured, and the pack parser."""
    cache = getattr(app.state, "engines", None)
    settings = app.state.settings
    if cache is None:
        writer = Check(ok=False, detail="not started yet")
    else:
        process = getattr(cache.start_decision_log(), "_process", None)  # the writer's child, in process mode
        alive = process is None or process.is_alive()
        writer = Check(ok=alive, detail=f"{settings.decision_writer} writer " + ("up" if alive else "stopped"))
    compute = getattr(cache, "compute", None) if cache is not None else None
    if compute is None:  # RECGOV_API_COMPUTE=inline; on either store a configured process makes the lists
        computing = Check(ok=True, detail="not used (lists are made in the server)")
    else:
        computing = Check(ok=compute.running, detail="process up" if compute.running else "process starting")
    parser = getattr(app.state, "pack_parser", None)
    parsing = Check(ok=parser is not None and parser.ready, detail="process up" if parser is not None and parser.ready else "process starting")
    return {"decision_log": writer, "compute": computing, "pack_parser": parsing}


@functools.cache
def _version() -> str:
    """The installed version (read from the package metadata once: it does not change while the process runs)."""
    try:
        return version("recgov")
    except PackageNotFoundError:
        return "unknown"
