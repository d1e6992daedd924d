"""``/v1/datasets``: the data sets an audit may use on this installation (auditor).

An audit asked for over the API reads files only from ``$RECGOV_HOME/data``,
within the installation's size limits, or generates synthetic data. The answer
lists those files and folders with the layout each is read in, the generator's
limits, and the data sets recorded in the store, each with the ``data`` an audit
would give to load it again (:func:`governance.api.services.datasets.audit_inputs`,
which applies the audit's own input checks). It reads sizes and times, never a
file's contents, and names no subject; server paths are shown as the key's role
may see them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from governance.api.deps import AuditKey, SessionDep, SettingsDep
from governance.api.errors import problems
from governance.api.schemas.datasets import AuditInputs
from governance.api.services.datasets import audit_inputs

__all__ = ["router"]

router = APIRouter(prefix="/v1/datasets", tags=["audits"], responses=problems(401, 403, 500))


@router.get("", response_model=AuditInputs, summary="The data sets an audit may use (auditor)")
def list_datasets(session: SessionDep, settings: SettingsDep, key: AuditKey) -> dict[str, Any]:
    """The files under ``$RECGOV_HOME/data`` an audit may name, the synthetic generator's limits, and the recorded data sets."""
    found = audit_inputs(session, settings, role=key.role)
    return {**found, "entries": [vars(e) for e in found["entries"]], "recorded": [vars(r) for r in found["recorded"]]}
