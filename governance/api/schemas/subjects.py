"""Bodies of the data subject requests: ``POST /v1/requests/access|erasure`` (the subject's id in the body)
and the deprecated ``/v1/subjects/{subject_id}/export|erasure`` (the id in the URL, the pack in the body).

Every body forbids unknown fields, so a misspelt option is a 422 rather than a
request carried out under defaults.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from governance.api.schemas import IDENTIFIER, REQUESTED_SUBJECT

__all__ = ["ErasureCreate", "ExportCreate", "SubjectAccessCreate", "SubjectErasureCreate"]


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
    approximate: bool = Field(
        False,
        strict=True,  # a JSON boolean only: 0 or "no" is a 422, never read as a choice
        description=(
            "Unlearn ALS models by the fast update: a provisional stand-in until a full retrain, the old version kept. "
            "Default: refit each without the subject; the new version takes the old one's stage, which is retired and "
            "its file deleted."
        ),
    )


_SUBJECT = Field(
    min_length=1,
    max_length=200,
    pattern=REQUESTED_SUBJECT,
    description="The subject's id, in the body so that no URL (kept by proxies and access logs) carries it.",
    examples=["u000042"],
)


class SubjectAccessCreate(ExportCreate):
    """An access request (GDPR Art. 15): the subject, and optionally a pack."""

    subject: str = _SUBJECT


class SubjectErasureCreate(ErasureCreate):
    """An erasure request (GDPR Art. 17): the subject, and the pack in force."""

    subject: str = _SUBJECT
