"""Bodies of ``/v1/deployments``: a promotion through the gate, a rollback, and the pack bound to a gated stage."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from governance.api.schemas import IDENTIFIER, Count

__all__ = ["PolicySet", "PromotionCreate", "Rollback", "RollbackCreate"]


class PromotionCreate(BaseModel):
    """Where to move a model version, and the pack and data its gate runs on."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"stage": "canary", "data": "synthetic:n_users=300,seed=4"}],
            # A gated stage audits the model on the data: the route answers 422 without it.
            "if": {"properties": {"stage": {"enum": ["canary", "production"]}}},
            "then": {"required": ["data"], "properties": {"data": {"type": "string"}}},
        },
    )

    stage: Literal["shadow", "canary", "production"]
    pack: str | None = Field(
        None, min_length=1, max_length=200, pattern=IDENTIFIER,
        description="Leave out: the deployment policy's pack for the stage gates. Naming any other pack (shipped name or NAME@VERSION) is refused.",
    )  # fmt: skip
    data: str | None = Field(None, min_length=1, max_length=10_000, pattern=IDENTIFIER, description="DATA spec for the gate's audit (needed for canary and production).")
    expected_production: str | None = Field(
        None, min_length=1, max_length=128, pattern=IDENTIFIER,
        description="Precondition: the model version the caller expects in production. If another version (or none) is in "
        "production when the move is made, the answer is a 409 of kind production-changed and nothing moves.",
    )  # fmt: skip


class RollbackCreate(BaseModel):
    """An optional precondition of a rollback (the body may be left out)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"expected_production": "als-1a2b3c4d5e6f"}]})

    expected_production: str | None = Field(
        None, min_length=1, max_length=128, pattern=IDENTIFIER,
        description="The model version the caller means to roll back from. If another version (or none) is in production "
        "when the rollback is made (another rollback or a promotion came first), the answer is a 409 of kind "
        "production-changed and nothing changes: two rollbacks decided on the same state never go back two versions.",
    )  # fmt: skip


class Rollback(BaseModel):
    """What a rollback restored and retired."""

    restored: str = Field(description="The model version back in production.")
    retired: str = Field(description="The model version taken out of production.")
    audit_id: int | None = Field(description="The passed audit of the restored version's promotion.")
    gate: dict[str, Any] | None = Field(None, description="The gate that let the restored version into production: pack, pack_version, pack_hash, audit_id, policy_id.")


class PolicySet(BaseModel):
    """The pack that gates a stage, and what the gate's data must cover."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"pack": "eu-gdpr-dsa", "min_events": 10000, "dataset": "training"}]},
    )

    pack: str = Field(
        min_length=1,
        max_length=200,
        pattern=IDENTIFIER,
        description="A shipped pack name, or a stored pack as NAME@VERSION.",
    )
    min_events: Count = Field(0, ge=0, le=10**12, description="The gate's data has at least this many events.")
    min_users: Count = Field(0, ge=0, le=10**10, description="The gate's data has at least this many distinct users.")
    dataset: str = Field(
        "training", pattern=r"^(training|any|[0-9a-f]{64})$",
        description="training (the model's own training data), any, or a recorded dataset's content hash.",
    )  # fmt: skip
