"""Bodies of ``/v1/ope``: an off-policy evaluation request (the inputs of ``recgov ope``) and its stored report.

The evaluation runs in the request, so every input that sets its cost is bounded
here: at most :data:`MAX_DECISIONS` decisions read (the newest), at most
:data:`MAX_BOOTSTRAP` bootstrap resamples, at most :data:`MAX_SEGMENT` segment items.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from governance.api.schemas import IDENTIFIER, _Body

__all__ = ["MAX_BOOTSTRAP", "MAX_DECISIONS", "MAX_GROUP_ITEMS", "MAX_SEGMENT", "OpeCreate", "OpeReportPublic"]

MAX_DECISIONS = 5_000
"""The most decisions one request reads. The exact Plackett-Luce marginals cost about 5 ms a list for a pool of
10 and about 70 ms for pools of 15 to 20 (under load), so a request of the default 1,000 lists takes seconds for
small pools and a minute for the largest; ``recgov ope`` has no such bound."""
MAX_BOOTSTRAP = 2_000
"""The most bootstrap resamples per interval."""
MAX_SEGMENT = 1_000
"""The most item ids in a segment (a body stays far below the installation's body limit; larger segments: `recgov ope --segment-items`)."""

MAX_GROUP_ITEMS = 2_000
"""The most item ids in one provider group."""

_Ref = Annotated[str, Field(min_length=1, max_length=200, pattern=IDENTIFIER)]
OutcomeKind = Literal["impression", "click", "conversion", "dwell", "rating"]


class OpeCreate(_Body):
    """What to evaluate: a candidate pack on the lists served under the logged pack, from the decision log."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"logged_pack": "eu-gdpr-dsa", "target_pack": "eu-gdpr-dsa-explore@1.1.0", "kinds": ["click"], "limit": 2000}]},
    )

    logged_pack: _Ref = Field(description="The pack the logged lists were served under: a shipped pack's name, or NAME@VERSION of a stored one.")
    target_pack: _Ref = Field(description="The candidate pack to evaluate (same forms). It must re-rank as the logged pack does.")
    kinds: list[OutcomeKind] = Field(
        default_factory=lambda: ["click", "conversion"], min_length=1, max_length=5, description="Outcome kinds to estimate (distinct)."
    )
    min_ess: float = Field(30.0, ge=0, le=1e6, allow_inf_nan=False, description="Refuse an estimate whose effective sample size is below this.")
    n_bootstrap: int = Field(500, ge=0, le=MAX_BOOTSTRAP, description="Bootstrap resamples for each interval (0: no interval).")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="The bootstrap's seed.")
    confidence: float = Field(0.95, gt=0, lt=1, allow_inf_nan=False, description="The intervals' confidence level.")
    limit: int = Field(1_000, ge=1, le=MAX_DECISIONS, description="Read at most this many decisions (the newest).")
    segment_items: list[_Ref] | None = Field(
        None, min_length=1, max_length=MAX_SEGMENT, description="Item ids of a segment: the report adds estimates of the outcomes on them alone."
    )
    provider_groups: dict[Annotated[str, Field(min_length=1, max_length=100, pattern=IDENTIFIER)], Annotated[list[_Ref], Field(min_length=1, max_length=MAX_GROUP_ITEMS)]] | None = Field(
        None, min_length=1, max_length=5,
        description="Provider group name -> its item ids: the report adds each group's estimated share of attention under the target "
        "(what the target pack's off_policy_exposure rules judge). At most 5 groups; larger ones: `recgov ope --provider-group`.",
    )  # fmt: skip


class OpeReportPublic(BaseModel):
    """A stored off-policy report: its id (the sequence number of the trail event that holds it), the report and its digest."""

    id: int = Field(description="The report's id: the sequence number of the trail event `api.ope.evaluate` that holds it.")
    requested_by: str = Field(description="The key that asked for it.")
    time: str = Field(description="When it was made (UTC, as the trail records it).")
    request: dict[str, Any] = Field(description="The request, as validated (defaults filled in).")
    report: dict[str, Any] = Field(
        description="What `recgov ope --json` prints: the packs, decisions read and used, every exclusion with its count "
        "(consent for the analytics purpose, erasure, shadow lists), and per outcome kind every estimator's value, interval, "
        "effective sample size and largest weight, or its refusal with the reason. Non-finite figures are null."
    )
    report_sha256: str = Field(description="SHA-256 of the report's canonical JSON (RFC 8785), as stored on the trail.")
    links: dict[str, str]
