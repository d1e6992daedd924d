"""``/v1/deployments``: promote a model version through the gate (admin), roll back (admin), list (viewer),
and the deployment policy: which pack gates each served stage (set: admin, read: viewer).

The caller of a promotion does not choose the gate's pack: the stage's binding
does (:mod:`governance.deploy_policy`). A promotion the policy refuses is a 409
problem of kind ``deployment-policy``; no gate runs.

A request that is well formed but does not fit where the versions stand is a
409 Conflict of kind ``deployment-state``, not a 422: a promotion out of order
(production before canary, a version already there, a retired one) and a
rollback with nothing in production, or no earlier production version kept in
shadow. The same request is right at another moment; what decides is the
store's state, which no schema of the request can state.

A promotion or rollback may carry ``expected_production``, the version the
caller decided on; if production serves another one (or none) when the move is
made, the answer is a 409 of kind ``production-changed`` and nothing moves.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from audits.models import ModelVersion
from governance import deploy, deploy_policy
from governance import packs as pack_store
from governance.api.audit_jobs import check_input_size, resolve_input
from governance.api.call_record import record_call
from governance.api.deps import GovernKey, ReadKey, SessionDep, SettingsDep, StoreDep
from governance.api.errors import Problem, problems
from governance.api.keys import actor_of
from governance.api.schemas import IDENTIFIER
from governance.api.schemas.deployments import PromotionCreate, Rollback, RollbackCreate
from recommender.errors import ConfigError
from recommender.loaders import load_data

DATA_UNREADABLE = (
    "'data' cannot be read as a dataset ({reason}); give synthetic[:name=value,...], "
    "a MovieLens-100K directory or a .csv/.parquet event log on the server"
)

_ILLEGAL_MOVE = deploy.ILLEGAL_MOVE.split("{", 1)[0]
"""How :func:`governance.deploy.promote` begins the refusal of a move out of order (the rest names the version)."""

router = APIRouter(prefix="/v1/deployments", tags=["deployments"], responses=problems(401, 500))


@router.post("/{model_version}/promote", responses=problems(403, 404, 409, 422), summary="Move a model version one stage on, through the gate")
def promote(model_version: Annotated[str, Path(min_length=1, max_length=128, pattern=IDENTIFIER)], body: PromotionCreate, store: StoreDep, session: SessionDep, settings: SettingsDep, key: GovernKey) -> dict[str, Any]:
    """404 for an unknown model or pack; 409 when the deployment policy or the gate refuses (the gate's reasons and
    audit id in ``errors``) or the move is out of order for where the version stands (kind ``deployment-state``)
    or the model file is missing or no longer has its recorded SHA-256 (kind ``artifact-changed``) or production
    is not the body's ``expected_production`` (kind ``production-changed``); 422 for a body or data the gate cannot use."""
    try:
        loaded = pack_store.load_ref(settings.packs_dir, body.pack) if body.pack is not None else None
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None
    if session.get(ModelVersion, model_version) is None:
        raise Problem(404, f"model version {model_version!r} is not in the store; train one with 'recgov train'")
    session.rollback()  # end the read before the gate's own transactions (SQLite holds one writer)
    if body.stage != "shadow" and body.data is None:
        raise Problem(422, f"'data' is needed to promote to {body.stage}: the gate audits the model on it")
    try:  # files only from $RECGOV_HOME/data, as for audits: a request must not read any path of the server
        if body.data:  # and no more than the installation's audit limits: the gate loads the data in the server
            check_input_size("data", body.data, resolve_input(body.data, settings.home / "data"), settings)
        dataset = load_data(resolve_input(body.data, settings.home / "data")) if body.data else None
    except OSError as err:  # e.g. a name longer than the file system allows: the client's mistake, not ours
        raise Problem(422, DATA_UNREADABLE.format(reason=err.strerror or type(err).__name__), kind="invalid-data") from None
    out_dir = settings.home / "deployments" / f"{model_version}-{body.stage}"
    try:
        result = deploy.promote(
            store, model_version=model_version, to_stage=body.stage, pack=loaded, load_pack=_loader(settings.packs_dir), dataset=dataset,
            out_dir=out_dir, models_dir=settings.home / "models", actor=actor_of(key), expected_production=body.expected_production,
        )  # fmt: skip
    except deploy.ProductionMoved as err:
        raise Problem(409, str(err), kind="production-changed") from None
    except deploy.GateRefused as err:
        raise Problem(409, str(err), kind="gate-refused", errors=[{"audit_id": err.audit_id, "reason": r} for r in err.reasons]) from None
    except deploy_policy.DeploymentPolicyRefused as err:
        raise Problem(409, str(err), kind="deployment-policy") from None
    except deploy.ArtifactChanged as err:
        raise Problem(409, str(err), kind="artifact-changed") from None
    except ConfigError as err:
        if not str(err).startswith(_ILLEGAL_MOVE):
            raise
        raise Problem(409, str(err), kind="deployment-state") from None
    record_call(session, key, "deployments.promote", objects={"model": model_version}, payload=result)
    return result


def _loader(packs_dir: Any) -> deploy_policy.PackLoader:
    """Shipped and stored packs by reference, a missing one as ConfigError."""

    def load(ref: str) -> Any:
        try:
            return pack_store.load_ref(packs_dir, ref)
        except pack_store.PackNotFound as err:
            raise ConfigError(str(err)) from None

    return load


@router.post("/rollback", response_model=Rollback, responses=problems(403, 409, 422), summary="Restore the previous production version")
def rollback(store: StoreDep, session: SessionDep, key: GovernKey, body: RollbackCreate | None = None) -> dict[str, Any]:
    """409 ``production-changed`` when the body's ``expected_production`` is not the version in production (another
    rollback or promotion came first; nothing changes);
    409 ``deployment-state`` when nothing is in production or no earlier production version waits in shadow;
    409 ``deployment-policy`` when the version to restore passed production under another pack than the one bound now;
    409 ``artifact-changed`` when its model file is missing or no longer has the recorded SHA-256."""
    try:
        result = deploy.rollback(store, actor=actor_of(key), expected_production=None if body is None else body.expected_production)
    except deploy.ProductionMoved as err:
        raise Problem(409, str(err), kind="production-changed") from None
    except deploy_policy.DeploymentPolicyRefused as err:
        raise Problem(409, str(err), kind="deployment-policy") from None
    except deploy.ArtifactChanged as err:
        raise Problem(409, str(err), kind="artifact-changed") from None
    except ConfigError as err:  # deploy.rollback refuses only on where the versions stand (see its Raises)
        raise Problem(409, str(err), kind="deployment-state") from None
    record_call(session, key, "deployments.rollback", objects={"model": result["restored"]}, payload=result)
    return result


@router.post("/{model_version}/retire", responses=problems(403, 404, 409, 422), summary="Retire a model version (never served again)")
def retire(model_version: Annotated[str, Path(min_length=1, max_length=128, pattern=IDENTIFIER)], store: StoreDep, session: SessionDep, key: GovernKey) -> dict[str, Any]:
    """404 for an unknown model version; 409 ``deployment-state`` for the version in production (use rollback) or one
    retired already. A retrain request waiting on the version (``recgov retrain due``) completes at the next retrain run."""
    try:
        result = deploy.retire(store, model_version=model_version, actor=actor_of(key))
    except deploy.UnknownModelVersion as err:
        raise Problem(404, str(err)) from None
    except ConfigError as err:  # deploy.retire refuses otherwise only on where the version stands (see its Raises)
        raise Problem(409, str(err), kind="deployment-state") from None
    record_call(session, key, "deployments.retire", objects={"model": model_version}, payload=result)
    return result


@router.get("", summary="Deployed model versions by stage")
def list_deployments(store: StoreDep, key: ReadKey) -> dict[str, Any]:
    return deploy.status(store)

