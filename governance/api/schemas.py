"""Request and response bodies of the REST API (separate from the SQLAlchemy models)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ConsentCreate", "Health", "PackPublic", "RecommendationCreate"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsentCreate(_Body):
    """One consent record to append to a subject's history."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"subject": "u000012", "purpose": "personalization", "status": "granted", "basis": "consent", "source": "banner"}]},
    )

    subject: str = Field(min_length=1, max_length=200, description="The subject's id (stored only as its pseudonym).")
    purpose: str = Field(min_length=1, max_length=100, description="A purpose of the pack in force, e.g. personalization.")
    status: Literal["granted", "denied", "withdrawn", "opted_out", "objected"]
    basis: Literal["consent", "legitimate_interest", "contract"] = Field(description="The lawful basis the record was given under.")
    source: Literal["api", "banner", "tcf", "gpc", "import"] = "api"


class RecommendationCreate(_Body):
    """A request for one governed list."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"subject": "u000012", "k": 10, "model_version": "3f2a9c...", "pack": "california-ccpa"}]},
    )

    subject: str = Field(min_length=1, max_length=200, description="The subject to recommend for.")
    k: int = Field(10, ge=1, le=100, description="List length.")
    model_version: str = Field(min_length=1, max_length=128, description="A recorded model version (see 'recgov train').")
    pack: str = Field("baseline", min_length=1, max_length=200, description="A shipped pack name, or a stored pack as NAME@VERSION.")


class PackPublic(BaseModel):
    """A validated pack's identity."""

    pack: str
    pack_version: str
    pack_hash: str
    rules: int
    warnings: list[dict[str, Any]] = []


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
