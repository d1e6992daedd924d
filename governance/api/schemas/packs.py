"""Bodies of ``/v1/packs``: a pack's identity (stamped on every result and decision), its validation, storage, list and diff."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PackDiff", "PackList", "PackPublic", "PackRef", "PackStamp", "PackStored", "PackValidation"]


class PackStamp(BaseModel):
    """A pack's identity, as stamped on every result and decision."""

    pack: str = Field(description="metadata.name")
    pack_version: str = Field(description="metadata.version")
    pack_hash: str = Field(description="The SHA-256 of the pack's canonical content.")


class PackPublic(PackStamp):
    """A validated pack's identity, its number of rules and its warnings."""

    rules: int
    warnings: list[dict[str, Any]] = []


class PackValidation(PackPublic):
    """The answer of ``POST /v1/packs/validate`` for a valid pack (an invalid one is a 422 problem)."""

    valid: Literal[True] = True


class PackStored(PackPublic):
    """The answer of ``POST /v1/packs``: ``created`` is false when that exact version was stored already."""

    created: bool


class PackRef(PackStamp):
    """A pack the API can serve with: ``ref`` is what a request names it by."""

    origin: Literal["shipped", "stored"]
    ref: str = Field(description="A shipped pack's name, or NAME@VERSION for a stored one.")
    error: str | None = Field(
        default=None,
        description="Set when a stored file is no valid pack (its located fault; it cannot be served with); pack_hash is then empty.",
    )


class PackList(BaseModel):
    """Every shipped pack and every stored version."""

    packs: list[PackRef]


class PackDiff(BaseModel):
    """What changed between two stored versions of a pack."""

    model_config = ConfigDict(populate_by_name=True)

    from_: PackStamp = Field(alias="from")
    to: PackStamp
    changes: list[dict[str, Any]] = Field(description="One entry per change: kind, path, before, after, threshold, effect (stricter, looser or null).")
