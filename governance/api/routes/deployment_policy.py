"""``/v1/deployments/policy``: which pack gates each served stage (read: the read scope; set: the govern scope, admin).

A binding names a shipped pack or a stored one (``NAME@VERSION``, see
``POST /v1/packs``), pinned by its content hash when it is set, and what the
gate's data must cover. Each change is a new row and a trail event
(``deployment.policy_set``, then ``api.deployments.policy_set``), committed
before the answer.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from governance import deploy_policy
from governance import packs as pack_store
from governance.api.call_record import record_call
from governance.api.deps import GovernKey, ReadKey, SessionDep, SettingsDep
from governance.api.errors import Problem, problems
from governance.api.keys import actor_of
from governance.api.schemas import IDENTIFIER
from governance.api.schemas.deployments import PolicySet

__all__ = ["router"]

router = APIRouter(prefix="/v1/deployments", tags=["deployments"], responses=problems(401, 500))


@router.get("/policy", summary="The pack bound to each gated stage (an unbound stage refuses every promotion)")
def show_policy(session: SessionDep, key: ReadKey) -> dict[str, Any]:
    bindings = deploy_policy.current_bindings(session)
    return {"stages": {stage: None if b is None else b.to_dict() for stage, b in bindings.items()}}


GATED = {"enum": list(deploy_policy.GATED_STAGES)}
"""The stages a policy binds, in the document (any other is answered by the handler, saying why)."""


@router.put("/policy/{stage}", responses=problems(403, 404, 422), summary="Bind a gated stage to a pack (admin)")
def set_policy(
    # The document names the gated stages; any other is answered by the handler, saying why (shadow has no gate).
    stage: Annotated[
        str,
        Path(min_length=1, max_length=20, pattern=IDENTIFIER, json_schema_extra=GATED),
    ],
    body: PolicySet,
    session: SessionDep,
    settings: SettingsDep,
    key: GovernKey,
) -> dict[str, Any]:
    """422 for a stage that is not gated (shadow) or a bad requirement; 404 for an unknown pack."""
    if stage not in deploy_policy.GATED_STAGES:
        raise Problem(422, deploy_policy.NOT_A_GATED_STAGE.format(stage=stage), kind="invalid-input")
    try:
        loaded = pack_store.load_ref(settings.packs_dir, body.pack)
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None
    requirements = deploy_policy.StageRequirements(
        min_events=body.min_events, min_users=body.min_users, dataset=body.dataset
    )
    binding = deploy_policy.set_binding(
        session, stage=stage, ref=body.pack, pack=loaded, requirements=requirements, actor=actor_of(key)
    )
    answer = binding.to_dict()
    record_call(
        session,
        key,
        "deployments.policy_set",
        objects={"policy": binding.label},
        payload={k: answer[k] for k in ("stage", "pack_hash", "policy_id")},
    )
    return answer
