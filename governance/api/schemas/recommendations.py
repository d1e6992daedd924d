"""Bodies of ``/v1/recommendations`` and ``/v1/ping``: the request for a list, the governed list, the pong.

:func:`governed_list_json` encodes a served list in :class:`GovernedList`'s shape
(its fields, in its order) once, without validating it again field by field: the
list was made by the serving engine, and ``tests/api`` holds every answer to the
model.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from governance.api.schemas import IDENTIFIER, MAX_TC_STRING, Count, PackStamp, _Body
from governance.serving import ServedList

__all__ = ["ConsentSignals", "GovernedList", "Pong", "RecommendationCreate", "ServedItem", "governed_list_json"]


class RecommendationCreate(_Body):
    """A request for one governed list."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"subject": "u000012", "k": 10, "model_version": "3f2a9c...", "pack": "california-ccpa"}]},
    )

    subject: str = Field(min_length=1, max_length=200, pattern=IDENTIFIER, description="The subject to recommend for.")
    k: Count = Field(10, ge=1, le=100, description="List length.")
    model_version: str | None = Field(
        None, min_length=1, max_length=128, pattern=IDENTIFIER,
        description="A recorded model version (see 'recgov train'). Omitted: what is deployed answers (production, or the "
        "canary for its share of subjects) and every shadow version gets the same request, recorded unserved.",
    )
    pack: str = Field("baseline", min_length=1, max_length=200, pattern=IDENTIFIER, description="A shipped pack name, or a stored pack as NAME@VERSION.")
    region: str | None = Field(
        None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$",
        description="The region the list is for: items restricted there (and items unavailable everywhere) are left out.",
    )
    tcf: str | None = Field(
        None, min_length=1, max_length=MAX_TC_STRING, pattern=IDENTIFIER,
        description="The IAB TCF v2.2 TC string the subject's CMP holds (its tcString), passed with the request as the "
        "Sec-GPC header is: recorded before serving (source tcf, the string as evidence; a grant only where the pack's "
        "consent.tcf.grants allows) and judged under the pack's consent.tcf for this list, for the pack's "
        "consent.tcf.vendor_id. A string that does not meet the pack (a purpose, the vendor, a publisher restriction, "
        "an older policy, too old) gets the non-profiling list, and 'consent' (or 'signals.ignored', for a string recorded as nothing) says why; one "
        "that does not decode, or a pack with no consent.tcf.vendor_id, is a 422 naming tcf.",
    )  # fmt: skip


class ServedItem(BaseModel):
    """One item of a governed list."""

    item_id: str
    score: float | None = Field(description="The model's score; null for a non-personalized list.")
    tags: list[dict[str, Any]] = Field(description="Explanation tags: why the item is in the list.")


class ConsentSignals(BaseModel):
    """The consent signals the request carried and what was recorded for them."""

    gpc: bool
    tcf: dict[str, Any] | None
    recorded: list[dict[str, Any]]
    unchanged: list[dict[str, Any]]
    ignored: list[dict[str, Any]]


class GovernedList(PackStamp):
    """A governed list; its decision record was committed before this answer."""

    decision_id: str
    mode: Literal["personalized", "fallback", "non_profiling"]
    items: list[ServedItem]
    model_version: str
    consent: str = Field(description="Why the subject may or may not be profiled.")
    decided_at: str = Field(description="ISO 8601, UTC.")
    blocked_removed: int = Field(description="How many items the harmful-content filters kept out.")
    model_standing: Literal["trained", "provisional", "replaced"] | None = Field(
        None,
        description=(
            "trained: a model trained from data; provisional: a model an erasure unlearned, a stand-in until the full "
            "retrain replaces it (it profiles nobody once that retrain is overdue); replaced: such a model a full "
            "retrain has replaced (serve the retrain)."
        ),
    )
    retrain_request: int | None = Field(None, description="For an unlearned model: the retrain request that replaces it.")
    signals: ConsentSignals
    deployment: dict[str, Any] | None = Field(
        None, description="When the request named no model version: the stage that answered and the shadow versions it was mirrored to."
    )


class Pong(BaseModel):
    """The answer of ``GET /v1/ping``."""

    status: str = "ok"
    key_id: int


def governed_list_json(served: ServedList, signals: dict[str, Any], deployment: dict[str, Any] | None) -> bytes:
    """The served list as :class:`GovernedList` JSON, with the request's consent ``signals`` and its ``deployment``."""
    body = {
        **served.pack,
        "decision_id": served.decision_id,
        "mode": served.mode,
        "items": served.item_dicts(),
        "model_version": served.model_version,
        "consent": served.consent_reason,
        "decided_at": served.decided_at,
        "blocked_removed": served.blocked_removed,
        "model_standing": served.model_standing,
        "retrain_request": served.retrain_request,
        "signals": signals,
        "deployment": deployment,
    }
    return orjson.dumps(body)
