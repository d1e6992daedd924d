"""``/health``: the one open endpoint."""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter

from governance.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health() -> Health:  # answered on the event loop, never queued behind the worker threads
    return Health(version=_version())


@functools.cache
def _version() -> str:
    """The installed version (read from the package metadata once: it does not change while the process runs)."""
    try:
        return version("recgov")
    except PackageNotFoundError:
        return "unknown"
