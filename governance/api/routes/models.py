"""``/v1/models``: the model versions the store holds, each with what a reviewer asks first, and one with its lineage.

A summary names the data set and training run a version came from, the pack
stamp and verdict of its latest audit, its standing (a model unlearned by an
erasure is provisional until a full retrain replaces it,
:func:`governance.suppressed.model_standing`) and its stage changes. A page
reads each table once (the page's runs, data sets, audits and deployments by
``IN``), plus the standing's two indexed reads per version; a page holds at
most 100 versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audits.lineage import lineage_of
from audits.models import AuditRun, DatasetVersion, Deployment, ModelVersion, TrainingRun
from governance.api.deps import ReadKey, SessionDep, SettingsDep
from governance.api.disclosure import lineage_shown_to
from governance.api.errors import UNKNOWN_MODEL, Problem, problems
from governance.api.schemas import IDENTIFIER
from governance.api.schemas.models import ModelDetail, ModelList
from governance.suppressed import model_standing

__all__ = ["router"]

router = APIRouter(prefix="/v1/models", tags=["models"], responses=problems(401, 403, 500))

VersionPath = Annotated[str, Path(min_length=1, max_length=128, pattern=IDENTIFIER, description="A model version id.")]


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def _summaries(session: Session, models: Sequence[ModelVersion]) -> list[dict[str, Any]]:
    """The summaries of ``models``, in their order."""
    ids = [m.version_id for m in models]
    runs = {r.id: r for r in session.scalars(select(TrainingRun).where(TrainingRun.id.in_({m.training_run_id for m in models})))}
    data = {d.id: d for d in session.scalars(select(DatasetVersion).where(DatasetVersion.id.in_({m.dataset_version_id for m in models})))}
    latest: dict[str, AuditRun] = {}
    for audit in session.scalars(select(AuditRun).where(AuditRun.model_version_id.in_(ids)).order_by(AuditRun.id)):
        latest[audit.model_version_id] = audit  # type: ignore[index]  # the last one wins: the latest
    stages: dict[str, list[dict[str, Any]]] = {version: [] for version in ids}
    for row in session.scalars(select(Deployment).where(Deployment.model_version_id.in_(ids)).order_by(Deployment.id)):
        stages[row.model_version_id].append({"stage": row.stage, "changed_at": _iso(row.changed_at)})
    out = []
    for m in models:
        run, dataset, audit = runs[m.training_run_id], data[m.dataset_version_id], latest.get(m.version_id)
        out.append(
            {
                "version_id": m.version_id,
                "kind": m.kind,
                "created_at": _iso(m.created_at),
                "artifact_hash": m.artifact_hash,
                "dataset": {"id": dataset.id, "name": dataset.name, "content_hash": dataset.content_hash},
                "training_run": {"id": run.id, "code_version": run.code_version, "ended_at": _iso(run.ended_at)},
                "pack": None
                if audit is None
                else {"pack": audit.policy_pack, "pack_version": audit.policy_version, "pack_hash": audit.policy_hash, "audit_id": audit.id, "verdict": audit.verdict},
                "standing": model_standing(session, m.version_id).as_dict(),
                "current_stage": stages[m.version_id][-1]["stage"] if stages[m.version_id] else None,
                "deployments": stages[m.version_id],
            }
        )
    return out


@router.get("", response_model=ModelList, responses=problems(422), summary="Model versions, newest first (viewer)")
def list_models(
    session: SessionDep,
    key: ReadKey,
    limit: int = Query(20, ge=1, le=100, description="Versions per page."),
    offset: int = Query(0, ge=0, le=1_000_000, description="Versions to skip."),
) -> dict[str, Any]:
    total = session.scalar(select(func.count()).select_from(ModelVersion)) or 0
    page = session.scalars(select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.version_id).limit(limit).offset(offset)).all()
    models = _summaries(session, page)
    session.rollback()
    return {"models": models, "total": int(total), "limit": limit, "offset": offset}


@router.get(
    "/{version}",
    response_model=ModelDetail,
    responses=problems(404, 422),
    summary="A model version with its lineage (viewer)",
    description="The summary of GET /v1/models and the lineage of GET /v1/lineage/{model_version}: data, training run, audits, deployments and the trail events that recorded them.",
)
def get_model(version: VersionPath, session: SessionDep, settings: SettingsDep, key: ReadKey) -> dict[str, Any]:
    model = session.get(ModelVersion, version)
    if model is None:
        raise Problem(404, UNKNOWN_MODEL.format(version=version))
    out = {**_summaries(session, [model])[0], "lineage": lineage_shown_to(key.role, lineage_of(session, version), settings.home)}
    session.rollback()
    return out
