"""Bodies of ``/v1/consent/imports``: what a bulk consent import did.

The request body is the export itself (CSV or JSON Lines), not JSON, so only the
answer has a model here; the import's options come as query parameters.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["ConsentImportPublic"]


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
    problems: list[dict[str, Any]] = Field(description='Per refused row fault: {"line": n, "field": ..., "reason": ...}; never a subject id.')
