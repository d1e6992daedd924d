"""Bodies of ``/v1/subjects/{subject_id}/export|erasure``: the pack a data subject request runs under.

Both bodies are optional to send and forbid unknown fields, so a misspelt
option is a 422 rather than a request carried out under defaults.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from governance.api.schemas import IDENTIFIER

__all__ = ["ErasureCreate", "ExportCreate"]


class ExportCreate(BaseModel):
    """Optionally, a pack: adds whether each purpose may profile the subject now, and the logic disclosure."""

    model_config = ConfigDict(extra="forbid")

    pack: str | None = Field(
        None, min_length=1, max_length=200, pattern=IDENTIFIER, description="A shipped pack name, or a stored pack as NAME@VERSION."
    )


class ErasureCreate(BaseModel):
    """The pack in force (its consent purposes shape the report)."""

    model_config = ConfigDict(extra="forbid")

    pack: str = Field(
        "baseline", min_length=1, max_length=200, pattern=IDENTIFIER, description="A shipped pack name, or a stored pack as NAME@VERSION."
    )
