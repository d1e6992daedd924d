"""Bodies of ``/v1/consent``: one record appended, and what a bulk import did.

An import's request body is the export itself (CSV or JSON Lines), not JSON, so
only its answer has a model here; its options come as query parameters.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from governance.api.schemas import IDENTIFIER, _Body
from governance.consent.evidence import EVIDENCE_KEYS

__all__ = ["ConsentCreate", "ConsentImportPublic", "ConsentPublic"]


def _evidence_needed(source: str, key: str) -> dict[str, Any]:
    """JSON Schema: a record from ``source`` carries ``evidence.{key}``, text that is not blank (as the handler checks)."""
    return {
        "if": {"required": ["source"], "properties": {"source": {"const": source}}},
        "then": {
            "required": ["evidence"],
            "properties": {"evidence": {"type": "object", "required": [key], "properties": {key: {"type": "string", "pattern": r"\S"}}}},
        },
    }


class ConsentCreate(_Body):
    """One consent record to append to a subject's history.

    The document states what a schema can of the record's checks: the evidence
    each source claims (``allOf``, from :data:`~governance.consent.evidence.EVIDENCE_KEYS`)
    and, added when the document is served, the purposes of each known pack
    (:mod:`governance.api.schemas.vocabulary`). Whether a TC string decodes and
    supports the status under the pack's ``consent.tcf`` is judged by the handler.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"subject": "u000012", "purpose": "personalization", "status": "granted", "basis": "consent", "source": "banner", "evidence": {"banner_version": "2026-03"}}],
            "allOf": [_evidence_needed(source, key) for source, (key, _) in EVIDENCE_KEYS.items()],
        },
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



class ConsentImportPublic(BaseModel):
    """The report of a consent import: counts, each batch's trail anchor, and every refused row with its line."""

    file: str = Field(description="The name the export was given (query parameter name).")
    sha256: str = Field(description="SHA-256 of the body, as each batch's trail event carries it.")
    format: str = Field(description="csv or jsonl.")
    pack: str | None = Field(description="The pack the rows were judged under.")
    rows: int = Field(description="Rows read (blank lines are no rows).")
    valid: int
    invalid: int = Field(description="Rows refused: listed in problems, nothing of them written.")
    added: int = Field(description="Records appended by this import.")
    already_recorded: int = Field(description="Valid rows already in the store from an earlier import: not appended again.")
    batches: list[dict[str, Any]] = Field(
        description="Per batch: its number, first and last line, trail_seq of its consent.imported event (null when it added nothing), rows, added, already_recorded."
    )
    problems: list[dict[str, Any]] = Field(description='Per refused row (its first fault): {"line": n, "field": ..., "reason": ...}; never a subject id.')
