"""Bodies of ``POST /v1/consent-state``: one subject's consent, judged under a named pack.

The subject's id travels in the request body, never in a URL (no access log,
proxy or browser history holds it); the answer names the subject by pseudonym.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from governance.api.schemas import IDENTIFIER, _Body

__all__ = ["ConsentStateQuery", "ConsentStatePublic", "PurposeVerdict"]


class ConsentStateQuery(_Body):
    """Whose consent, under which pack."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"subject": "u000012", "pack": "eu-gdpr-dsa"}]})

    subject: str = Field(min_length=1, max_length=200, pattern=IDENTIFIER, description="The subject's id (never stored, logged or answered back).")
    pack: str = Field(
        min_length=1, max_length=200, pattern=IDENTIFIER, description="The pack to judge under: a shipped name or NAME@VERSION of a stored pack."
    )


class PurposeVerdict(BaseModel):
    """Whether recgov may profile the subject for one purpose of the pack now, and why."""

    model_config = ConfigDict(extra="forbid")

    purpose: str
    allowed: bool
    reason: str


class ConsentStatePublic(BaseModel):
    """The subject's consent under the pack: each purpose's verdict, the records in force, the history (newest last)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "subject": "3f2a9c...", "pack": {"pack": "eu-gdpr-dsa", "pack_version": "1.0.0", "pack_hash": "9c1f..."},
                    "verdicts": [{"purpose": "personalization", "allowed": True, "reason": "granted (consent, banner, 2026-11-02T10:00:00+00:00)"}],
                    "in_force": [{"purpose": "personalization", "status": "granted", "lawful_basis": "consent", "source": "banner"}],
                    "history": [{"purpose": "personalization", "status": "granted", "lawful_basis": "consent", "source": "banner"}],
                }
            ]
        },
    )  # fmt: skip

    subject: str | None = Field(description="The subject's pseudonym; null when recgov holds no record of them (a lookup makes none).")
    pack: dict[str, str] = Field(description="The pack judged under: name, version and content hash.")
    verdicts: list[PurposeVerdict] = Field(description="One per purpose of the pack.")
    in_force: list[dict[str, Any]] = Field(description="The record in force per purpose.")
    history: list[dict[str, Any]] = Field(description="Every record of the subject, oldest first, with the restrictions an erasure kept.")
