"""``/v1/lineage``: from data to deployments for one model version.

The model file's location and a file data set's source are server paths: they are
shown as ``GET /v1/datasets`` shows sources, to the key's role
(:func:`governance.api.disclosure.lineage_shown_to`: whole to the roles that run
the service, relative to ``$RECGOV_HOME`` or masked to the others).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from audits.lineage import lineage_of
from audits.models import ModelVersion
from governance.api.deps import ReadKey, SessionDep, SettingsDep
from governance.api.disclosure import lineage_shown_to
from governance.api.errors import Problem, problems
from governance.api.schemas import IDENTIFIER

router = APIRouter(prefix="/v1/lineage", tags=["lineage"], responses=problems(401, 500))


@router.get("/{model_version}", responses=problems(404, 422), summary="The lineage of a model version")
def lineage(model_version: Annotated[str, Path(min_length=1, max_length=128, pattern=IDENTIFIER)], session: SessionDep, settings: SettingsDep, key: ReadKey) -> dict[str, Any]:
    if session.get(ModelVersion, model_version) is None:
        raise Problem(404, f"model version {model_version!r} is not in the store")
    document = lineage_of(session, model_version)
    session.rollback()
    return lineage_shown_to(key.role, document, settings.home)
