"""Bodies of the availability routes: an item's availability in a region, a batch of changes, what is unavailable."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from governance.api.schemas import IDENTIFIER, _Body

__all__ = ["AvailabilityBatch", "AvailabilityChangeBody", "AvailabilityPut", "AvailabilityResult", "UnavailableList"]

REGION = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
Status = Literal["available", "out_of_stock", "withdrawn", "geo_restricted"]


class AvailabilityPut(_Body):
    """One item's availability in one region (omitted: everywhere)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"status": "geo_restricted", "region": "DE"}],
            # What the handler refuses, stated in the document: a restriction to a region names the region.
            "if": {"properties": {"status": {"const": "geo_restricted"}}, "required": ["status"]},
            "then": {"required": ["region"], "properties": {"region": {"type": "string"}}},
        },
    )

    status: Status = Field(description="available (again), out_of_stock, withdrawn, or geo_restricted (needs a region).")
    region: str | None = Field(None, min_length=1, max_length=64, pattern=REGION, description="A region code; omitted: everywhere.")


class AvailabilityChangeBody(AvailabilityPut):
    """One change of a batch."""

    item_id: str = Field(min_length=1, max_length=200, pattern=IDENTIFIER, description="The item.")


class AvailabilityBatch(_Body):
    """Changes applied all or nothing, under one trail event (the feed's delta)."""

    changes: list[AvailabilityChangeBody] = Field(min_length=1, max_length=10_000)


class AvailabilityResult(BaseModel):
    """What a change did."""

    changed: int = Field(description="Rows whose availability changed (a change to what was stored already changes nothing).")
    unavailable: int
    available: int


class UnavailableList(BaseModel):
    """What is unavailable now."""

    everywhere: list[str]
    by_region: dict[str, list[str]]
    revision: int = Field(description="The trail event of the latest availability change (0: none).")
