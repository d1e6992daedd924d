"""Bodies of the harmful-content routes: reports and flags of items, and escalation cases."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from governance.api.schemas import IDENTIFIER, TEXT, AwareMoment, _Body

__all__ = ["Case", "CaseList", "CaseTransition", "EvaluationCreate", "FlagCreate", "FlagPublic", "ReportCreate", "ReportPublic"]


class ReportCreate(_Body):
    """A user's report of an item."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "graphic violence in the thumbnail", "reporter": "u000012"}]},
    )

    reason: str = Field(
        min_length=1,
        max_length=10_000,
        pattern=TEXT,
        description="Why the user reported the item (must not contain the reporter's id).",
    )
    reporter: str | None = Field(
        None, min_length=1, max_length=200, pattern=IDENTIFIER, description="The reporting subject's id; stored only as its pseudonym."
    )


class FlagCreate(_Body):
    """A flag: the item may be harmful."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"category": "self-harm", "confidence": 0.7, "source": "model", "pack": "eu-gdpr-dsa"}]},
    )

    category: str = Field(
        min_length=1, max_length=100, pattern=IDENTIFIER,
        description="A harm category the pack knows (harmful_content.categories or blocked_categories), e.g. self-harm, violence.",
    )  # fmt: skip
    confidence: float = Field(ge=0, le=1, strict=True)  # a number: true and "0.5" are not confidences
    source: Literal["metadata", "api", "model", "report"] = "api"
    pack: str = Field(
        "baseline", min_length=1, max_length=200, pattern=IDENTIFIER,
        description="The pack whose harm vocabulary the category must belong to: a shipped pack name, or a stored pack as NAME@VERSION.",
    )  # fmt: skip


class EvaluationCreate(_Body):
    """The pack whose harmful-content rules to apply."""

    pack: str = Field(
        "baseline", min_length=1, max_length=200, pattern=IDENTIFIER, description="A shipped pack name, or a stored pack as NAME@VERSION."
    )
    since: AwareMoment | None = Field(
        None,
        description="Count reports and served places from this moment (default: all reports, the last day of decisions).",
    )


class CaseTransition(_Body):
    """Where a reviewer moves a case, and what happens to its item."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"status": "resolved", "action": "block", "note": "confirmed graphic violence"}]
        },
    )

    status: Literal["triaged", "resolved", "dismissed"]
    action: Literal["block", "unblock"] | None = None
    note: str | None = Field(None, min_length=1, max_length=10_000, pattern=TEXT)


class ReportPublic(BaseModel):
    """A report as recorded (the reporter named by pseudonym, or null)."""

    id: int
    item_id: str
    reporter: str | None
    reason: str
    created_at: str = Field(description="ISO 8601, UTC.")
    in_catalogue: bool = Field(
        description="Whether the item is in the catalogue recgov knows (the items of the recorded models that are not "
        "retired, and of the availability table). False: no list holds it now (an item no model serves yet)."
    )
    catalogue: str = Field(description="Where the item was found, or what was looked in without finding it, in one sentence.")


class FlagPublic(BaseModel):
    """A flag as recorded."""

    id: int
    item_id: str
    category: str
    confidence: float
    source: str
    active: bool
    created_at: str = Field(description="ISO 8601, UTC.")
    effect: str = Field(description="What the flag does under the pack, in one sentence.")
    in_catalogue: bool = Field(
        description="Whether the item is in the catalogue recgov knows (the items of the recorded models that are not "
        "retired, and of the availability table). False: no list holds it now (an item no model serves yet)."
    )
    catalogue: str = Field(description="Where the item was found, or what was looked in without finding it, in one sentence.")
    pack: str
    pack_version: str
    pack_hash: str


class Case(BaseModel):
    """An escalation case."""

    id: int
    item_id: str
    rule_id: str
    reason: str
    severity: str
    status: Literal["open", "triaged", "resolved", "dismissed"]
    sla_due: datetime
    created_at: datetime
    updated_at: datetime
    resolution: str | None
    action: str | None = Field(description="The latest action on the item through this case: block, unblock or null.")
    trail_seq: int = Field(description="The trail event of the latest change.")


class CaseList(BaseModel):
    """Escalation cases, by due time."""

    cases: list[Case]
