"""Bodies of ``/health`` and ``/ready``: the process answers, and whether it can serve."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["Check", "Health", "Readiness"]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


class Check(BaseModel):
    """One thing the service waits for."""

    ok: bool
    detail: str = Field(description="What was found, or what is awaited.")


class Readiness(BaseModel):
    """Whether the service can serve, and each thing it waits for."""

    ready: bool
    checks: dict[str, Check]
