"""Bodies of ``/v1/audits``: the request to audit, and a job as the API shows it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from governance.api.schemas import IDENTIFIER
from governance.api.schemas.ope import MAX_GROUP_ITEMS
from governance.gate import GateDecision

__all__ = ["AuditCreate", "AuditJobDetail", "AuditJobList", "AuditJobPublic", "RuleOutcome"]


class AuditCreate(BaseModel):
    """What to audit: a pack, the data, and a recorded model version (or logged slates)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"pack": "baseline", "model_version": "als-75b761bdc3941eead4d61bf7", "data": "synthetic:n_users=300,seed=4"},
                {"pack": "eu-gdpr-dsa", "model_version": "als-75b761bdc3941eead4d61bf7", "data": "events/2026-11.csv", "shadow": True},
            ],
            # model_version and slates are alternatives (see _model_or_slates).
            "not": {
                "required": ["model_version", "slates"],
                "properties": {"model_version": {"type": "string"}, "slates": {"type": "string"}},
            },
        },
    )

    pack: str = Field(min_length=1, max_length=200, pattern=IDENTIFIER, description="A shipped pack name, or a stored pack as NAME@VERSION.")
    data: str = Field(
        min_length=1,
        max_length=1000,
        pattern=IDENTIFIER,
        description="DATA spec, as for 'recgov audit': synthetic[:name=value,...], or a MovieLens-100K folder or "
        "a .csv/.parquet event log under $RECGOV_HOME/data (a relative path is taken from there).",
    )
    model_version: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=IDENTIFIER,
        description="Audit this recorded model version (its parameters are refitted on a split of the data for the "
        "offline figures). Without it, the data alone is audited and the model checks are skipped.",
    )
    slates: str | None = Field(
        None,
        min_length=1,
        max_length=1000,
        pattern=IDENTIFIER,
        description="Audit logged slates instead of a model: a slate log (CSV user_id,item_id[,rank] or JSON lines) "
        "under $RECGOV_HOME/data.",
    )
    baseline: str | None = Field(None, min_length=1, max_length=1000, pattern=IDENTIFIER, description="Baseline DATA for the drift checks.")
    shadow: bool = Field(False, strict=True, description="Evaluate and record without enforcing: the gate passes and keeps its reasons.")
    ope_logged_pack: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=IDENTIFIER,
        description="Judge the pack's off-policy rules (off_policy_non_inferiority, off_policy_exposure) on the store's "
        "decision log, as 'recgov gate --ope-logged-pack': the pack the logged lists were served under (a shipped pack's "
        "name, or NAME@VERSION of a stored one). Only the decisions recorded with its content hash are read; its hash when "
        "asked is kept with the job, and a pack changed before the job runs fails it. Without it those rules are skipped.",
    )
    ope_provider_groups: (
        dict[
            Annotated[str, Field(min_length=1, max_length=100, pattern=IDENTIFIER)],
            Annotated[list[Annotated[str, Field(min_length=1, max_length=200, pattern=IDENTIFIER)]], Field(min_length=1, max_length=MAX_GROUP_ITEMS)],
        ]
        | None
    ) = Field(
        None, min_length=1, max_length=5,
        description="With ope_logged_pack: provider group name -> its item ids, for off_policy_exposure rules "
        "('recgov gate --ope-provider-group NAME=FILE'). At most 5 groups of 2,000 items.",
    )  # fmt: skip

    @model_validator(mode="after")
    def _model_or_slates(self) -> AuditCreate:
        if self.model_version is not None and self.slates is not None:
            raise ValueError("give model_version or slates, not both: a slate audit has no model artifact")
        return self


class RuleOutcome(BaseModel):
    """One rule's recorded result and the evidence behind it."""

    rule_id: str
    section: str
    check: str
    severity: str
    status: Literal["pass", "warn", "fail", "error", "skipped"]
    message: str
    value: float | str | bool | None = None
    threshold: float | str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    legal_reference: str | None = None
    line: int | None = Field(None, description="The rule's line in the pack file.")


class AuditJobPublic(BaseModel):
    """An audit job and where it stands."""

    id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    request: dict[str, Any] = Field(description="The request as accepted.")
    pack_hash: str = Field(description="Content hash of the pack when the audit was asked for.")
    requested_by: str = Field(description="The key that asked, as the trail names it (key:<id>:<name>).")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    audit_id: int | None = Field(None, description="The recorded audit run, once succeeded.")
    error: str | None = Field(None, description="Why the job failed, in one line.")
    links: dict[str, str]


class AuditJobDetail(AuditJobPublic):
    """A job; once succeeded, its results with their evidence and the gate decision."""

    verdict: Literal["pass", "fail", "error", "shadow"] | None = None
    decision: GateDecision | None = None
    counts: dict[str, int] | None = None
    results: list[RuleOutcome] | None = None
    gate_problem: str | None = None
    """Set when the stored gate document no longer matches the audit it decided (``decision`` and ``counts`` are then
    left out, and ``GET .../gate`` answers 409 ``gate-mismatch``): what differs, and what to do."""


class AuditJobList(BaseModel):
    """A page of audit jobs, newest first."""

    jobs: list[AuditJobPublic]
    total: int
    limit: int
    offset: int
