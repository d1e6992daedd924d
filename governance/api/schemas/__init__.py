"""Request and response bodies of the REST API (separate from the SQLAlchemy models).

One module per resource sits beside this one (``governance.api.schemas.<resource>``);
the shared field patterns and the bodies used by more than one route live here. Routes
declare no body models of their own.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from governance.api.schemas.health import Health
from governance.api.schemas.packs import PackDiff, PackList, PackPublic, PackRef, PackStamp, PackStored, PackValidation

__all__ = [
    "IDENTIFIER",
    "INT4_MAX",
    "TEXT",
    "ConsentCreate",
    "ConsentPublic",
    "ConsentSignals",
    "GovernedList",
    "Health",
    "PackDiff",
    "PackList",
    "PackPublic",
    "PackStored",
    "PackValidation",
    "ProblemDetail",
    "RecommendationCreate",
    "ServedItem",
]


IDENTIFIER = r"^[^\x00-\x1f\x7f]+$"
"""Pattern of ids and names (subjects, items, purposes, packs, model versions): no control character.

PostgreSQL text cannot hold NUL at all; the other control characters have no
business in an id, and would be hard to see in a log or a report."""
TEXT = r"^[^\x00]*$"
"""Pattern of free text (a reason, a note): anything but NUL, which PostgreSQL text cannot hold."""
MAX_TC_STRING = 8192
"""Characters of a TC string (one with every vendor range and publisher restriction of the Global Vendor List fits)."""
INT4_MAX = 2**31 - 1
"""The largest row id (PostgreSQL ``integer``): a larger id in a path is a 422, never a database error."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsentCreate(_Body):
    """One consent record to append to a subject's history."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"subject": "u000012", "purpose": "personalization", "status": "granted", "basis": "consent", "source": "banner", "evidence": {"banner_version": "2026-03"}}]},
    )

    subject: str = Field(min_length=1, max_length=200, pattern=IDENTIFIER, description="The subject's id (stored only as its pseudonym).")
    purpose: str = Field(min_length=1, max_length=100, pattern=IDENTIFIER, description="A purpose of the pack in force, e.g. personalization.")
    status: Literal["granted", "denied", "withdrawn", "opted_out", "objected"]
    basis: Literal["consent", "legitimate_interest", "contract"] = Field(description="The lawful basis the record was given under.")
    source: Literal["api", "banner", "tcf", "gpc", "import"] = "api"
    evidence: dict[str, Any] | None = Field(
        None,
        description="What proves the record (GDPR Art. 7(1)); required by the sources that claim it: banner "
        "(evidence.banner_version), import (evidence.origin), tcf (evidence.tc_string, a TC string that supports the "
        "status under the pack's consent.tcf; evidence.vendor_id where the pack sets no consent.tcf.vendor_id). "
        "Never the subject's id.",
    )
    pack: str | None = Field(
        None, min_length=1, max_length=200, pattern=IDENTIFIER,
        description="The pack in force (a shipped name or NAME@VERSION): the purpose must be one of its own, and "
        "a withdrawal of a purpose it erases on (erase_on_withdrawal) opens an erasure request.",
    )


class ConsentPublic(BaseModel):
    """A consent record as appended (the subject named by pseudonym)."""

    subject: str = Field(description="The subject's pseudonym.")
    purpose: str
    status: str
    basis: str
    source: str
    recorded_at: str = Field(description="ISO 8601, UTC.")
    erasure_request: dict[str, Any] | None = Field(
        None, description="The erasure request the record opened under the pack (erase_on_withdrawal): id, status, deadline."
    )


class ProblemDetail(BaseModel):
    """An error, as RFC 9457 problem details (``application/problem+json``)."""

    type: str = Field(description="A URI naming the kind of problem, under https://recgov.dev/problems/.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong in this request, and what to do.")
    instance: str = Field(description="The request path.")
    errors: list[dict[str, Any]] | None = Field(
        None, description="Located issues (422), or the gate's reasons (409 on promotion)."
    )


# Bodies of /v1/recommendations, kept importable from here (they moved to their resource's module).
from governance.api.schemas.recommendations import ConsentSignals, GovernedList, RecommendationCreate, ServedItem  # noqa: E402
