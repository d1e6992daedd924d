"""Governed deployments: a model version moves shadow -> canary -> production only through the gate.

Moves allowed by :func:`promote`:

* nothing -> ``shadow`` (no gate: shadow traffic is never served);
* ``shadow`` -> ``canary`` and ``canary`` -> ``production``, each after the pack's
  gate passed (``run_audit(..., train=False, shadow=False)``); a gate that does not
  pass raises :class:`GateRefused` with its blocking reasons and nothing moves.

Only one version is in production. Promoting a new one moves the one it
replaces back to ``shadow`` (not ``retired``): it stays warm and is the
*previous* production version that :func:`rollback` restores. ``retired`` is
final (``record_deployment`` refuses to move a retired version), so it is
used only for the version a rollback takes out of production.

Which pack gates canary and production is not the caller's choice: the
installation's deployment policy (:mod:`governance.deploy_policy`) binds each
to a pack and to what the gate's data must cover, and a promotion under any
other pack, or on data that falls short, is refused before the gate runs.

Every move is a ``deployment.changed`` event (``record_deployment``) followed by
a ``deployment.promoted`` or ``deployment.rolled_back`` event naming the audit
whose gate allowed it, in the same transaction. Each move's row and event carry
that gate (pack name, version, content hash, audit, binding): a promotion's own
gate, shared by the version it displaces; for a rollback, the gate that let the
restored version into production, shared by the version it retires.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audits.lineage import UNKNOWN_MODEL_VERSION, record_deployment
from audits.models import AuditRun, Deployment, ModelVersion
from audits.settings import get_settings
from audits.trail import append_event, lock_head
from governance import deploy_policy
from governance.artifacts import ARTIFACT_CHANGED, ArtifactChanged, verify_artifact
from governance.deploy_policy import Gate, PackLoader
from governance.policy import LoadedPack
from recommender.data import Dataset
from recommender.errors import ConfigError

__all__ = [
    "ARTIFACT_CHANGED",
    "GATE_REFUSED",
    "ILLEGAL_MOVE",
    "NOT_RETIRABLE",
    "NO_PREVIOUS",
    "PRODUCTION_MOVED",
    "PROMOTION_STAGES",
    "STAGE_NOT_KEPT",
    "ArtifactChanged",
    "ProductionMoved",
    "GateRefused",
    "UnknownModelVersion",
    "check_artifact",
    "deployed_versions",
    "promote",
    "replace_after_erasure",
    "retire",
    "rollback",
    "status",
]

PROMOTION_STAGES = ("shadow", "canary", "production")
_ALLOWED = {None: "shadow", "shadow": "canary", "canary": "production"}
_GATED = ("canary", "production")

ILLEGAL_MOVE = "cannot move model version {version!r} from {current} to {stage}: {why}"
NO_PREVIOUS = "nothing to roll back to: {why}"
NOT_RETIRABLE = "cannot retire model version {version!r}: {why}"
PRODUCTION_MOVED = (
    "production is not {expected!r}: {now} is in production now (another rollback or promotion may have moved it since); "
    "nothing changed. Read the deployments again and decide on what is in production now"
)
RETRAINED_AWAY = (
    "a full retrain after an erasure replaced it ({by}): it was trained on the data of a subject since erased; "
    "deploy the retrain (or a model trained since) and retire this version"
)


class UnknownModelVersion(ConfigError):
    """The store records no such model version (the API answers 404)."""


class ProductionMoved(ConfigError):
    """The caller's precondition on the production version no longer holds (API 409 ``production-changed``)."""


def _check_expected(latest: dict[str, Deployment], expected: str | None) -> None:
    """:class:`ProductionMoved` unless ``expected`` is None or the version in production now.

    A rollback or promotion decided on what was in production is valid under the lock whatever moved since: two
    rollbacks at once would each be allowed and together go back two versions. The caller states the version it
    decided on, and the move is made only if that is still what production serves."""
    if expected is None:
        return
    current = _production(latest)
    if current != expected:
        raise ProductionMoved(PRODUCTION_MOVED.format(expected=expected, now=repr(current) if current else "no model version"))


def check_artifact(session: Session, model_version: str) -> None:
    """Raise :class:`ArtifactChanged` unless ``model_version``'s artifact file still has its recorded SHA-256.

    The gate refits the version's recorded recipe and serving loads the file: a file changed on disk after
    it was recorded would pass the gate and be served (:func:`governance.artifacts.verify_artifact`).
    """
    row = session.get(ModelVersion, model_version)
    if row is None or not row.artifact_location:
        return
    verify_artifact(model_version, row.artifact_location, row.artifact_hash, use="deployed")


GATE_REFUSED = "the gate refused model version {version!r} for {stage} (audit #{audit_id}, pack {pack}): {reasons}"


GATE_NOT_RUN = "the gate refused model version {version!r} for {stage} (no audit could run, pack {pack}): {reason}"


class GateRefused(ConfigError):
    """The gate did not pass: the promotion is refused (CLI exit 1, API 409). ``audit_id`` is None when no audit could run."""

    def __init__(self, message: str, *, reasons: list[str], audit_id: int | None) -> None:
        super().__init__(message)
        self.reasons = reasons
        self.audit_id = audit_id


def _stages(session: Session) -> dict[str, Deployment]:
    """Each deployed model version's latest deployment row."""
    latest: dict[str, Deployment] = {}
    for row in session.scalars(select(Deployment).order_by(Deployment.id)):
        latest[row.model_version_id] = row
    return latest


def deployed_versions(session: Session) -> dict[str, list[str]]:
    """Model versions by their current stage (``production``, ``canary``, ``shadow``, ``retired``), in one read."""
    out: dict[str, list[str]] = {"production": [], "canary": [], "shadow": [], "retired": []}
    for mv, row in _stages(session).items():
        out[row.stage].append(mv)
    return out


def _production(latest: dict[str, Deployment]) -> str | None:
    return next((mv for mv, row in latest.items() if row.stage == "production"), None)


def _previous(session: Session, latest: dict[str, Deployment]) -> str | None:
    """The version most recently displaced from production and still in shadow."""
    rows = session.scalars(
        select(Deployment).where(Deployment.previous_stage == "production", Deployment.stage == "shadow").order_by(Deployment.id.desc())
    )
    for row in rows:
        if latest.get(row.model_version_id) is row:
            return row.model_version_id
    return None


def _check_recorded(session: Session, model_version: str) -> None:
    """Raise :class:`UnknownModelVersion` (naming the latest recorded versions) unless the store records ``model_version``."""
    if session.get(ModelVersion, model_version) is None:
        recent = session.scalars(select(ModelVersion.version_id).order_by(ModelVersion.created_at.desc()).limit(5)).all()
        known = f"recorded: {', '.join(recent)}" if recent else "no model version is recorded yet"
        shown = model_version if len(model_version) <= 80 else f"{model_version[:60]}... ({len(model_version):,} characters)"
        raise UnknownModelVersion(UNKNOWN_MODEL_VERSION.format(version=shown, known=known))


def _retrained_away(session: Session, model_version: str) -> str | None:
    """Why ``model_version`` must not be deployed again, if a full retrain after an erasure replaced it."""
    from governance.suppressed import retrained_away

    found = retrained_away(session, model_version)
    if not found:
        return None
    by = ", ".join(f"{new} (retrain request #{request})" for new, request in found)
    return RETRAINED_AWAY.format(by=by)


def _check_move(session: Session, model_version: str, stage: str) -> str | None:
    """The current stage, after checking that ``model_version`` may move to ``stage``."""
    if stage not in PROMOTION_STAGES:
        raise ConfigError(f"stage must be one of {', '.join(PROMOTION_STAGES)}; got {stage!r} (use 'rollback' to leave production)")
    _check_recorded(session, model_version)
    row = _stages(session).get(model_version)
    current = row.stage if row else None
    away = _retrained_away(session, model_version)
    if away is not None:
        raise ConfigError(ILLEGAL_MOVE.format(version=model_version, current=current or "nothing", stage=stage, why=away))
    if _ALLOWED.get(current) != stage:
        if current == stage:
            why = "it is already there"
        elif current == "retired":
            why = "it is retired; record a new model version instead"
        elif current == "production":
            why = "it is in production; use rollback to take it out"
        else:
            why = f"the next stage is {_ALLOWED.get(current)}; promote to {_ALLOWED.get(current)} first"
        raise ConfigError(ILLEGAL_MOVE.format(version=model_version, current=current or "nothing", stage=stage, why=why))
    return current


def promote(
    store: Any,
    *,
    model_version: str,
    to_stage: str,
    pack: LoadedPack | None,
    load_pack: PackLoader,
    dataset: Dataset | None,
    out_dir: Path,
    models_dir: Path,
    actor: str | None = None,
    expected_production: str | None = None,
) -> dict[str, Any]:
    """Move ``model_version`` one stage on, through the gate the deployment policy binds for canary and production.

    ``pack`` is the pack the caller named, or None for the stage's bound pack
    (read through ``load_pack``). Returns ``{"model_version", "stage",
    "previous_stage", "audit_id", "displaced", "gate"}`` (``displaced``: the
    version moved from production back to shadow, or None; ``gate``: the pack
    and audit that allowed the move, None into shadow).

    ``expected_production``: when given, the move is made only if that version is in production, checked before
    the gate runs and again under the lock (:class:`ProductionMoved` otherwise, nothing moved): a promotion to
    production decided against one production version must not displace another one promoted meanwhile.

    Raises
    ------
    ConfigError
        Unknown model version, unknown stage, or an illegal move (the message says which stage comes next).
    DeploymentPolicyRefused
        No pack is bound to the stage, the caller named another pack, the bound pack changed since it was
        bound, or the data does not cover what the binding requires; no gate ran.
    GateRefused
        The gate did not pass; nothing moved. ``reasons`` and ``audit_id`` say why and where.
    ProductionMoved
        ``expected_production`` is not the version in production.
    """
    who = actor or get_settings().actor
    gate: Gate | None = None
    evidence: dict[str, Any] | None = None
    with store.session() as session:
        _check_move(session, model_version, to_stage)
        _check_expected(_stages(session), expected_production)
        check_artifact(session, model_version)  # before any gate: the gate refits the recipe, serving loads the file
        if to_stage in _GATED:
            if dataset is None:
                raise ConfigError(f"data is needed to promote to {to_stage}: the gate audits the model on it")
            binding = deploy_policy.binding_in_force(session, to_stage)
            trained_on = deploy_policy.training_hashes(session, model_version)
    if to_stage in _GATED:  # packs are read and data hashed outside any transaction
        gating = deploy_policy.gate_pack(binding, asked=pack, load=load_pack)
        deploy_policy.check_data(binding, dataset, trained_on=trained_on)
        audit_id = _run_gate(store, gating, dataset, model_version, to_stage, out_dir, models_dir, who)
        evidence = _require_experiment(store, gating, model_version, to_stage, audit_id)
        gate = Gate(gating.name, gating.version, gating.content_hash, audit_id, binding.id)
    with store.session() as session:
        lock_head(session)
        current = _check_move(session, model_version, to_stage)  # again, under the lock
        _check_expected(_stages(session), expected_production)
        if gate is not None:
            deploy_policy.check_unchanged(session, to_stage, gate)
        displaced = _production(_stages(session)) if to_stage == "production" else None
        recorded = None if gate is None else gate.to_dict()
        if displaced is not None:
            record_deployment(session, model_version=displaced, stage="shadow", actor=who, gate=recorded)
        row = record_deployment(session, model_version=model_version, stage=to_stage, actor=who, gate=recorded)
        audit_id = None if gate is None else gate.audit_id
        objects: dict[str, Any] = {"model": model_version, "deployment": row.id}
        if audit_id is not None:
            objects["audit"] = audit_id
        append_event(
            session, actor=who, action="deployment.promoted", objects=objects,
            payload={"stage": to_stage, "previous_stage": current, "audit_id": audit_id, "displaced": displaced, "policy": gating.stamp() if gate else None, "gate": recorded,
                     **({"experiment": evidence} if evidence is not None else {})},
        )  # fmt: skip
    return {"model_version": model_version, "stage": to_stage, "previous_stage": current, "audit_id": audit_id, "displaced": displaced, "gate": recorded}


def _run_gate(store: Any, pack: LoadedPack, dataset: Dataset, model_version: str, stage: str, out_dir: Path, models_dir: Path, actor: str) -> int:
    """Run the gate under ``pack``; the recorded audit's id, or :class:`GateRefused`."""
    from governance.audit import NothingToEvaluate, run_audit

    try:
        outcome = run_audit(
            pack, dataset, store=store, out_dir=out_dir, models_dir=models_dir, model_version=model_version,
            train=False, shadow=False, actor=actor,
        )  # fmt: skip
    except NothingToEvaluate as err:  # no subject may be profiled under the pack: nothing can pass its gate
        reason = str(err)
        raise GateRefused(
            GATE_NOT_RUN.format(version=model_version, stage=stage, pack=f"{pack.name}@{pack.version}", reason=reason),
            reasons=[reason], audit_id=None,
        ) from None
    if not outcome.decision.passed:
        reasons = list(outcome.decision.reasons) or ["the gate did not pass"]
        message = GATE_REFUSED.format(version=model_version, stage=stage, audit_id=outcome.audit_id, pack=f"{pack.name}@{pack.version}", reasons="; ".join(reasons))
        raise GateRefused(message, reasons=reasons, audit_id=outcome.audit_id)
    return outcome.audit_id


def _require_experiment(store: Any, pack: LoadedPack, model_version: str, stage: str, audit_id: int) -> dict[str, Any] | None:
    """Under a pack whose ``experiments.require_positive_result`` is set, :class:`GateRefused` unless a
    pre-registered experiment found that ``model_version`` won (see :func:`governance.experiments.lifecycle.gate_verdict`);
    the experiment, plan hash and look that did (the promotion's trail event names them), else None."""
    section = pack.pack.experiments
    if section is None or not section.require_positive_result:
        return None
    from governance.experiments.lifecycle import gate_verdict

    with store.session() as session:
        passed, reasons, evidence = gate_verdict(session, model_version)
    if not passed:
        message = GATE_REFUSED.format(version=model_version, stage=stage, audit_id=audit_id, pack=f"{pack.name}@{pack.version}", reasons="; ".join(reasons))
        raise GateRefused(message, reasons=reasons, audit_id=audit_id)
    return evidence


def rollback(store: Any, *, actor: str | None = None, expected_production: str | None = None) -> dict[str, Any]:
    """Put the previous production version back in production and retire the current one.

    The restored version does not go through the gate again: it passed it when it
    was first promoted, and a rollback must work when the gate cannot run. The
    ``deployment.rolled_back`` event names the audit of that promotion.

    The restored version must have entered production under the pack production
    is bound to now (when a binding exists): a rollback must not bring back what
    the installation's current pack was never asked about.

    ``expected_production``: when given, the version the caller means to roll back from; if another version (or
    none) is in production when the lock is held, :class:`ProductionMoved` and nothing changes. Without it two
    rollbacks at once are each valid under the lock and together go back two versions.

    Raises
    ------
    ProductionMoved
        ``expected_production`` is not the version in production.
    ConfigError
        Nothing is in production, or no earlier production version is waiting in shadow.
    DeploymentPolicyRefused
        The restored version passed production under another pack than the one bound now.
    """
    who = actor or get_settings().actor
    with store.session() as session:
        lock_head(session)
        latest = _stages(session)
        _check_expected(latest, expected_production)
        current = _production(latest)
        if current is None:
            raise ConfigError(NO_PREVIOUS.format(why="no model version is in production"))
        previous = _previous(session, latest)
        if previous is None:
            raise ConfigError(NO_PREVIOUS.format(why=f"{current!r} is in production and no earlier production version is kept in shadow"))
        away = _retrained_away(session, previous)
        if away is not None:
            raise ConfigError(NO_PREVIOUS.format(why=f"{previous!r}, kept in shadow, cannot come back: {away}"))
        gate = _production_gate(session, previous)
        deploy_policy.check_rollback(session, version=previous, gate=gate)
        check_artifact(session, previous)
        recorded = None if gate is None else gate.to_dict()
        retired = record_deployment(session, model_version=current, stage="retired", actor=who, gate=recorded)
        restored = record_deployment(session, model_version=previous, stage="production", actor=who, gate=recorded)
        audit_id = gate.audit_id if gate is not None and gate.audit_id is not None else _last_passed_audit(session, previous)
        append_event(
            session, actor=who, action="deployment.rolled_back",
            objects={"model": previous, "deployment": restored.id, **({"audit": audit_id} if audit_id else {})},
            payload={"restored": previous, "retired": current, "retired_deployment": retired.id, "audit_id": audit_id, "gate": recorded},
        )  # fmt: skip
    return {"restored": previous, "retired": current, "audit_id": audit_id, "gate": recorded}


def retire(store: Any, *, model_version: str, actor: str | None = None) -> dict[str, Any]:
    """Retire ``model_version`` (recorded, not in production, not retired): it is never served again.

    What closes a retrain request that waits on a version ``recgov retrain run``
    cannot retrain (another family): retrain it with its family, then retire the
    old version (:func:`governance.privacy.retrains.pending_versions`). A version
    in production leaves it by :func:`rollback` (or a promotion of another one),
    so that production is never left empty by a retirement.

    Raises
    ------
    ConfigError
        An unknown version, one in production, or one retired already.
    """
    who = actor or get_settings().actor
    with store.session() as session:
        lock_head(session)
        _check_recorded(session, model_version)
        row = _stages(session).get(model_version)
        current = row.stage if row else None
        if current == "production":
            raise ConfigError(NOT_RETIRABLE.format(version=model_version, why="it is in production; use rollback to take it out"))
        if current == "retired":
            raise ConfigError(NOT_RETIRABLE.format(version=model_version, why="it is retired already"))
        deployment_id = record_deployment(session, model_version=model_version, stage="retired", actor=who).id
    return {"retired": model_version, "previous_stage": current, "deployment": deployment_id}


STAGE_NOT_KEPT = (
    "{stage} lost a version to an erasure: the version it served there listed the erased subject and is retired, and "
    "{new}, the model trained without them, serves {took} (one version holds one stage); deploy a version to {stage} "
    "(recgov deploy promote) if it should serve"
)


def replace_after_erasure(session: Session, *, old: str, new: str, erasure_request: int, actor: str | None = None) -> dict[str, Any]:
    """In the caller's transaction: ``new`` (``old`` minus an erased subject, exactly) takes ``old``'s stage, and
    ``old`` is retired.

    An exact erasure's version is the model ``old``'s recipe trains without the subject: it stands in ``old``'s
    stage under the gate that let ``old`` there, as a rollback's restored version does; ``old``, whose file lists
    the erased subject, is never served again. A version in no stage is retired all the same (a caller naming it
    gets no profile from it). One version holds one stage: when ``new`` already took a stage (from another version
    it replaces), it keeps the higher one (production, then canary, then shadow) and moves up to ``old``'s if that is
    higher, so that production is never left without the version trained without the subject; the stage it could not
    hold is returned in ``not_kept``, with :data:`STAGE_NOT_KEPT` (never silently empty). A
    ``model.replaced_by_erasure`` event names both and the request. Returns ``{"replaced", "by", "stage", "gate",
    "not_kept", "note"}`` (``stage``: the stage ``new`` took, or None).
    """
    who = actor or get_settings().actor
    lock_head(session)
    latest = _stages(session)
    row = latest.get(old)
    stage = row.stage if row is not None else None
    gate = None if row is None or (found := Gate.of_row(row)) is None else found.to_dict()
    took, not_kept = None, None
    held = latest[new].stage if new in latest else None
    if stage in PROMOTION_STAGES and held is None:
        record_deployment(session, model_version=new, stage=stage, actor=who, gate=gate)
        took = stage
    elif stage in PROMOTION_STAGES and held in PROMOTION_STAGES and stage != held:
        if PROMOTION_STAGES.index(stage) > PROMOTION_STAGES.index(held):  # old's stage ranks higher: new moves up
            record_deployment(session, model_version=new, stage=stage, actor=who, gate=gate)
            took, not_kept = stage, held
        else:
            not_kept = stage
    if stage != "retired":
        record_deployment(session, model_version=old, stage="retired", actor=who, gate=gate)
    note = None
    if not_kept is not None:
        serves = took or held
        note = STAGE_NOT_KEPT.format(stage=not_kept, new=new, took=serves)
    append_event(
        session, actor=who, action="model.replaced_by_erasure",
        objects={"model": new, "subject_request": erasure_request},
        payload={"replaced": old, "by": new, "previous_stage": stage, "stage": took, "gate": gate, "not_kept": not_kept},
    )  # fmt: skip
    return {"replaced": old, "by": new, "stage": took, "gate": gate, "not_kept": not_kept, "note": note}


def _production_gate(session: Session, model_version: str) -> Gate | None:
    """The gate of ``model_version``'s latest move into production (None if unrecorded)."""
    row = session.scalars(
        select(Deployment).where(Deployment.model_version_id == model_version, Deployment.stage == "production").order_by(Deployment.id.desc()).limit(1)
    ).first()
    return None if row is None else Gate.of_row(row)


def _last_passed_audit(session: Session, model_version: str) -> int | None:
    return session.scalar(
        select(AuditRun.id).where(AuditRun.model_version_id == model_version, AuditRun.verdict == "pass").order_by(AuditRun.id.desc()).limit(1)
    )


def status(store: Any) -> dict[str, list[dict[str, Any]]]:
    """Deployed versions by stage (``production``, ``canary``, ``shadow``, ``retired``), each with its latest audit.

    A shadow version displaced from production, which a rollback would restore, has ``"previous": true``.
    """
    with store.session() as session:
        latest = _stages(session)
        previous = _previous(session, latest)
        out: dict[str, list[dict[str, Any]]] = {"production": [], "canary": [], "shadow": [], "retired": []}
        for mv, row in latest.items():
            audit = session.scalars(select(AuditRun).where(AuditRun.model_version_id == mv).order_by(AuditRun.id.desc()).limit(1)).first()
            out[row.stage].append(
                {
                    "model_version": mv,
                    "stage": row.stage,
                    "since": row.changed_at.isoformat() if row.changed_at else None,
                    "actor": row.actor,
                    "previous": mv == previous,
                    "gate": None if (gate := Gate.of_row(row)) is None else gate.to_dict(),
                    "latest_audit": None if audit is None else {"id": audit.id, "verdict": audit.verdict, "pack": f"{audit.policy_pack}@{audit.policy_version}"},
                }
            )
    return out
