"""Bodies of ``/v1/feedback``: the outcome events a service sends, and what storing them did.

``POST /v1/feedback`` takes a JSON list of events and stores it whole or not at
all; ``POST /v1/feedback/imports`` takes a file (CSV, JSON Lines, Parquet) as
its body, whose options come as query parameters, and stores its valid rows.
Both answer with :class:`FeedbackReportPublic`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from governance.api.schemas import IDENTIFIER, _Body

__all__ = ["DECISION_ID", "FeedbackEventIn", "FeedbackReportPublic", "WINDOW"]

DECISION_ID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
"""A decision id: a UUID, as the decision record of a served list has it."""
WINDOW = r"^[0-9]{1,6}(\.[0-9]{1,6})?[smhd]$"
"""An attribution window: a number and a unit (90s, 30m, 24h, 7d); at most 365 days (the handler says so)."""

_Text = Annotated[str, Field(min_length=1, max_length=200, pattern=IDENTIFIER)]


class FeedbackEventIn(_Body):
    """One outcome event: what the subject did with an item of a served list, and when."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"subject": "u000012", "item": "i0042", "kind": "click", "time": "2026-03-01T09:30:05Z", "decision_id": "6f1c2a4e-8b1d-4c3e-9a7f-2d5e6b7c8a90"},
                {"subject": "u000012", "item": "i0042", "kind": "dwell", "time": "2026-03-01T09:31:10Z", "value": 65.0},
            ]
        },
    )

    subject: _Text = Field(description="The subject's id as your systems know it (stored only as its pseudonym).")
    item: _Text = Field(description="The item the event is about.")
    kind: Literal["impression", "click", "conversion", "dwell", "rating"]
    time: Annotated[str, Field(min_length=1, max_length=64, pattern=IDENTIFIER)] | float = Field(
        description="When it happened: ISO 8601 (UTC when no zone is given) or Unix seconds; not in the future."
    )
    value: float | None = Field(
        None, allow_inf_nan=False,
        description="dwell: seconds (required, zero or more); rating: the rating (required); conversion: an amount (optional, "
        "zero or more); none for impression and click.",
    )  # fmt: skip
    decision_id: str | None = Field(
        None, pattern=DECISION_ID,
        description="The decision that served the item (its record's id): it must have listed the item for this subject. "
        "Without it the event is joined to the latest decision within the window that served the item, or stored unattributed.",
    )  # fmt: skip
    event_id: _Text | None = Field(None, description="Your id of the event: sent twice, it is stored once.")


class FeedbackReportPublic(BaseModel):
    """What storing outcome events did: counts, how each was joined, each batch's trail anchor, every refused or
    unattributed event located."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "file": "body", "sha256": "9f2c...", "format": "json", "window_seconds": 86400.0, "rows": 2, "valid": 2,
                    "invalid": 0, "added": 2, "already_recorded": 0, "by_attribution": {"decision_id": 1, "window": 1},
                    "batches": [{"batch": 1, "first_index": 0, "last_index": 1, "trail_seq": 812, "rows": 2, "added": 2,
                                 "already_recorded": 0, "refused": 0, "by_attribution": {"decision_id": 1, "window": 1}}],
                    "problems": [], "unattributed": [],
                }
            ]
        }
    )  # fmt: skip

    file: str = Field(description="body for a JSON list; the name given to an upload.")
    sha256: str = Field(description="SHA-256 of the upload (of the list's events for a JSON list), as each batch's trail event carries it.")
    format: str = Field(description="json, csv, jsonl or parquet.")
    window_seconds: float = Field(description="The attribution window applied to events without a decision id.")
    rows: int = Field(description="Events read (blank lines are no rows).")
    valid: int
    invalid: int = Field(description="Events refused: listed in problems, nothing of them stored.")
    added: int = Field(description="Events stored by this call.")
    already_recorded: int = Field(description="Events stored by an earlier call (same event id, or the same event): not stored again.")
    by_attribution: dict[str, int] = Field(
        description="Among the events added: decision_id, window (joined), or no_decision_before, outside_window, item_not_served (unattributed, why)."
    )
    batches: list[dict[str, Any]] = Field(description="Per batch: its first and last line (index), the trail_seq of its outcomes.recorded event (null when it added nothing), counts.")
    problems: list[dict[str, Any]] = Field(description='Per refused event: {"line" | "row" | "index": n, "field": ..., "reason": ...}; never a subject id.')
    unattributed: list[dict[str, Any]] = Field(description='Per event stored without a decision: {"line" | "row" | "index": n, "reason": ...}.')


FeedbackList = Annotated[list[FeedbackEventIn], Field(min_length=1, max_length=1_000)]
"""The body of ``POST /v1/feedback``: 1 to 1,000 events (a list that fits the body limit; more: send several, or upload a file)."""
