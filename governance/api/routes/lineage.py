"""``/v1/lineage``: from data to deployments for one model version."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from audits.lineage import lineage_of
from audits.models import ModelVersion
from governance.api.deps import SessionDep, Viewer
from governance.api.errors import Problem

router = APIRouter(prefix="/v1/lineage", tags=["lineage"])


@router.get("/{model_version}", summary="The lineage of a model version")
def lineage(model_version: str, session: SessionDep, key: Viewer) -> dict[str, Any]:
    if session.get(ModelVersion, model_version) is None:
        raise Problem(404, f"model version {model_version!r} is not in the store")
    document = lineage_of(session, model_version)
    session.rollback()
    return document
