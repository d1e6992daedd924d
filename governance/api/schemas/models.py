"""Bodies of ``/v1/models``: each model version with its data, training run, latest audit, standing and deployments."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["ModelDetail", "ModelList", "ModelSummary"]


class ModelSummary(BaseModel):
    """What a reviewer reads first about a model version."""

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "version_id": "als-66329e",
                    "kind": "als",
                    "created_at": "2026-12-05T09:58:00+00:00",
                    "artifact_hash": "66329e...",
                    "dataset": {"id": 1, "name": "synthetic", "content_hash": "b41c..."},
                    "training_run": {"id": 1, "code_version": "a3baf24", "ended_at": "2026-12-05T09:57:59+00:00"},
                    "pack": {"pack": "baseline", "pack_version": "1.0.0", "pack_hash": "9c1f...", "audit_id": 3, "verdict": "pass"},
                    "standing": {"model_standing": "trained", "retrain_request": None, "retrain_deadline": None, "replaced_by": []},
                    "current_stage": "production",
                    "deployments": [{"stage": "shadow", "changed_at": "2026-12-05T10:01:00+00:00"}],
                }
            ]
        }
    }

    version_id: str
    kind: str
    created_at: str | None
    artifact_hash: str
    dataset: dict[str, Any] = Field(description="The data set it was trained on: id, name, content_hash.")
    training_run: dict[str, Any] = Field(description="Its training run: id, code_version, ended_at.")
    pack: dict[str, Any] | None = Field(description="The pack stamp of its latest audit (pack, pack_version, pack_hash) with audit_id and verdict; null if never audited.")
    standing: dict[str, Any] = Field(
        description="model_standing: trained, or for a model unlearned by an erasure provisional until a full retrain "
        "replaced it (then replaced); the retrain request, its deadline and the versions that replaced it.",
    )
    current_stage: Literal["shadow", "canary", "production", "retired"] | None
    deployments: list[dict[str, Any]] = Field(description="Every stage change, oldest first: stage, changed_at.")


class ModelList(BaseModel):
    """A page of model versions, newest first."""

    models: list[ModelSummary]
    total: int
    limit: int
    offset: int


class ModelDetail(ModelSummary):
    """A model version and its whole lineage (as ``GET /v1/lineage/{model_version}``)."""

    lineage: dict[str, Any] = Field(description="From data to deployments: model_version, training_run, dataset_version, audit_runs, deployments, trail.")
