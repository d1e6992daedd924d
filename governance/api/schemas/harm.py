"""Bodies of the harmful-content routes: reports and flags of items, and escalation cases."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from governance.api.schemas import IDENTIFIER, TEXT, AwareMoment, _Body

NewItemClaim = Annotated[
    bool,
    Field(
        strict=True,  # a boolean: "true" and 1 are not claims
        description="The item id names an item no catalogue holds yet, though one holds a near spelling of it (I9 beside "
        "i9): written anyway, and the trail event records this claim and the spellings it overrode. A 422 "
        "(not-a-new-item) for an id a catalogue holds.",
    ),
]
"""The ``new_item`` claim of a flag, a report or a block (one definition, so the three bodies say the same)."""
InCatalogue = Annotated[
    bool,
    Field(
        description="Whether the item is in the catalogue recgov knows (the items of the recorded models that are not "
        "retired, and of the availability table). False: no list holds it now (an item no model serves yet)."
    ),
]
Catalogue = Annotated[str, Field(description="Where the item was found, or what was looked in without finding it, in one sentence.")]
"""What the answers about a reported, flagged or blocked item say of the catalogue (one definition for the four)."""

__all__ = [
    "BlockPublic",
    "BlockSet",
    "Case",
    "CaseList",
    "CaseMoved",
    "CaseTransition",
    "EvaluationCreate",
    "FlagActivePublic",
    "FlagActiveSet",
    "FlagCreate",
    "FlagList",
    "FlagPublic",
    "ListedFlag",
    "ReportCreate",
    "ReportPublic",
]


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
    new_item: NewItemClaim = False


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
    new_item: NewItemClaim = False


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
    in_catalogue: InCatalogue
    catalogue: Catalogue


class _StoredFlag(BaseModel):
    """What every answer about a stored flag says of it (the flag as written, listed)."""

    id: int
    item_id: str
    category: str
    confidence: float
    source: str
    active: bool
    created_at: str = Field(description="ISO 8601, UTC.")
    in_catalogue: InCatalogue
    catalogue: Catalogue


class FlagPublic(_StoredFlag):
    """A flag as recorded."""

    effect: str = Field(description="What the flag does under the pack, in one sentence.")
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


class CaseMoved(Case):
    """A case as moved."""

    still_held: list[str] = Field(
        description="When the move unblocked the item: what keeps it out of lists all the same (an active flag under a "
        "pack that blocks its category, another case under review), in words."
    )


class CaseList(BaseModel):
    """Escalation cases, by due time."""

    cases: list[Case]


class BlockSet(_Body):
    """An item's block, set without a case: out of every list from the next request (or back in them)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"blocked": True, "reason": "court order 2026-114"}]}
    )

    blocked: bool = Field(True, strict=True, description="True: keep the item out of every list; False: lift its block.")
    reason: str = Field(min_length=1, max_length=10_000, pattern=TEXT, description="Why (stored on the trail; no personal data).")
    new_item: NewItemClaim = False


class BlockPublic(BaseModel):
    """An item's block as set."""

    item_id: str
    blocked: bool
    reason: str
    trail_seq: int = Field(description="The trail event of this change.")
    in_catalogue: InCatalogue
    catalogue: Catalogue
    new_item: bool
    near: list[str] = Field(description="With new_item: the catalogue's near spellings the claim overrode.")
    still_held: list[str] = Field(
        description="When unblocked: what keeps the item out of lists all the same (an active flag under a pack that "
        "blocks its category, a case under review), in words."
    )


class ListedFlag(_StoredFlag):
    """A stored flag, with whether the catalogue recgov knows holds its item."""

    near: list[str] = Field(
        description="When no catalogue holds the id: the spellings of it one holds. Such a flag keeps nothing out of any "
        "list (lists are filtered by the exact id): flag the catalogue's id."
    )
    near_in: str | None
    claimed_new: bool = Field(
        description="A write on the trail said the id names a new item (new_item), though spelt like one a catalogue holds: "
        "not a misspelling."
    )


class FlagList(BaseModel):
    """Stored flags, oldest first."""

    flags: list[ListedFlag]
    misspelt: list[int] = Field(
        description="The active flags whose item id no catalogue holds but one holds a near spelling of, not claimed a new item."
    )


class FlagActiveSet(_Body):
    """A flag switched off (a false positive, a misspelt id flagged again under the catalogue's) or on again."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"active": False, "note": "false positive: satire"}]}
    )

    active: bool = Field(strict=True, description="False: switch the flag off (what it kept out of lists is served again); True: on again.")
    note: str | None = Field(None, min_length=1, max_length=10_000, pattern=TEXT, description="Why (stored on the trail; no personal data).")


class FlagActivePublic(BaseModel):
    """A flag as switched."""

    id: int
    item_id: str
    category: str
    active: bool
    trail_seq: int = Field(description="The trail event of this change.")
