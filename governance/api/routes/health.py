"""``/health``: the one open endpoint."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter

from governance.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health() -> Health:
    try:
        v = version("recgov")
    except PackageNotFoundError:
        v = "unknown"
    return Health(version=v)
