"""Lineage records: which data, run and code made which model, how it was audited and deployed.

Every ``record_*`` function writes its row and a trail event (``dataset.recorded``,
``training_run.recorded``, ``model.recorded``, ``audit.recorded``,
``deployment.changed``, ``training_run.carbon_recorded``) in the caller's
transaction, and stores the event's sequence number in the row's ``trail_seq``.
Call them inside ``with store.session() as session:``.

Example
-------
>>> store = open_store()                                            # doctest: +SKIP
>>> with store.session() as session:                                # doctest: +SKIP
...     data = record_dataset_version(session, content_hash="sha256:...", name="ml-100k",
...         source="data/ml-100k/u.data", n_events=100_000, n_users=943, n_items=1682,
...         schema={"user": "int", "item": "int"}, validation={"duplicates": 0})
...     run = record_training_run(session, dataset_version=data, params={"factors": 64},
...         library_versions={"implicit": "0.7.2"}, started_at=t0, ended_at=t1)
...     model = record_model_version(session, version_id="3f2a...", kind="als",
...         training_run=run, artifact_hash="sha256:...", artifact_location="models/3f2a.npz")
>>> with store.session() as session:                                # doctest: +SKIP
...     lineage_of(session, "3f2a...")["dataset_version"]["name"]
'ml-100k'
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from audits.canonical import canonical_json
from audits.models import (
    AUDIT_VERDICTS,
    DEPLOYMENT_STAGES,
    AuditRun,
    DatasetVersion,
    Deployment,
    ModelProfile,
    ModelVersion,
    RetrainTicket,
    TrailEvent,
    TrainingRun,
)
from audits.settings import get_settings
from audits.trail import append_event, format_time, lock_head
from recommender.errors import ConfigError, DataError

__all__ = [
    "record_dataset_version",
    "record_training_run",
    "record_model_version",
    "record_audit_run",
    "record_deployment",
    "record_carbon",
    "lineage_of",
    "current_code_version",
    "UNKNOWN_MODEL_VERSION",
]

UNKNOWN_MODEL_VERSION = "unknown model version {version!r}; {known}"
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def current_code_version() -> str | None:
    """The git commit of recgov's own code (``<sha>-dirty`` with uncommitted changes), or None.

    None when recgov is not running from a git checkout that tracks it (an
    installed wheel, no git, no commit yet).
    """

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(_PACKAGE_ROOT), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    if git("ls-files", "--error-unmatch", "audits/lineage.py") is None:
        return None
    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}-dirty" if dirty else commit


def _json(value: Any, name: str) -> Any:
    """``value`` after checking it is plain JSON (no NaN, safe integers), as the trail needs."""
    try:
        canonical_json(value)
    except DataError as err:
        raise DataError(f"{name}: {err}") from err
    return value


def _count(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name} must be a non-negative integer, got {value!r}") from err
    if number != value or number < 0:
        raise DataError(f"{name} must be a non-negative integer, got {value!r}")
    return number


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise DataError(f"{name} must be a non-empty string of at most {limit} characters, got {value!r}")
    return value


def _actor(actor: str | None) -> str:
    return actor or get_settings().actor


def _times(started_at: datetime, ended_at: datetime) -> None:
    for name, value in (("started_at", started_at), ("ended_at", ended_at)):
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise DataError(f"{name} must be a timezone-aware datetime, got {value!r}")
    if ended_at < started_at:
        raise DataError(f"ended_at ({ended_at.isoformat()}) is before started_at ({started_at.isoformat()})")


def _dataset(session: Session, value: DatasetVersion | int) -> DatasetVersion:
    if isinstance(value, DatasetVersion):
        return value
    found = session.get(DatasetVersion, value) if isinstance(value, int) else None
    if found is None:
        raise ConfigError(f"unknown dataset version {value!r}; record it first with record_dataset_version")
    return found


def _run(session: Session, value: TrainingRun | int) -> TrainingRun:
    if isinstance(value, TrainingRun):
        return value
    found = session.get(TrainingRun, value) if isinstance(value, int) else None
    if found is None:
        raise ConfigError(f"unknown training run {value!r}; record it first with record_training_run")
    return found


def _model(session: Session, value: ModelVersion | str) -> ModelVersion:
    if isinstance(value, ModelVersion):
        return value
    found = session.get(ModelVersion, value) if isinstance(value, str) else None
    if found is None:
        raise ConfigError(UNKNOWN_MODEL_VERSION.format(version=value, known=_known_models(session)))
    return found


def _known_models(session: Session) -> str:
    recent = session.scalars(select(ModelVersion.version_id).order_by(ModelVersion.created_at.desc()).limit(5)).all()
    if not recent:
        return "no model version is recorded yet"
    total = session.scalar(select(func.count()).select_from(ModelVersion)) or 0
    more = f" and {total - len(recent)} more" if total > len(recent) else ""
    return f"recorded: {', '.join(recent)}{more}"


def record_dataset_version(
    session: Session,
    *,
    content_hash: str,
    name: str,
    source: str,
    n_events: int,
    n_users: int,
    n_items: int,
    schema: dict[str, Any],
    validation: dict[str, Any] | None,
    actor: str | None = None,
) -> DatasetVersion:
    """Record a data set version; idempotent on ``content_hash``.

    If a version with the same content hash exists it is returned unchanged
    (the same content is the same data set, whatever it was called) and no
    event is appended.
    """
    content_hash = _text(content_hash, "content_hash", 128)
    lock_head(session)  # serialize lineage writes with the trail: no duplicate, no deadlock
    existing = session.scalar(select(DatasetVersion).where(DatasetVersion.content_hash == content_hash))
    if existing is not None:
        return existing
    row = DatasetVersion(
        content_hash=content_hash,
        name=_text(name, "name", 200),
        source=_text(source, "source", 10_000),
        n_events=_count(n_events, "n_events"),
        n_users=_count(n_users, "n_users"),
        n_items=_count(n_items, "n_items"),
        data_schema=_json(schema, "schema"),
        validation=_json(validation, "validation"),
    )
    session.add(row)
    session.flush()
    event = append_event(
        session,
        actor=_actor(actor),
        action="dataset.recorded",
        objects={"dataset": content_hash},
        payload={
            "name": row.name,
            "source": row.source,
            "n_events": row.n_events,
            "n_users": row.n_users,
            "n_items": row.n_items,
            "schema": schema,
            "validation": validation,
        },
    )
    row.trail_seq = event.seq
    session.flush()
    return row


def record_training_run(
    session: Session,
    *,
    dataset_version: DatasetVersion | int,
    params: dict[str, Any],
    library_versions: dict[str, Any],
    started_at: datetime,
    ended_at: datetime,
    code_version: str | None = None,
    actor: str | None = None,
) -> TrainingRun:
    """Record a training run on ``dataset_version``.

    ``code_version`` defaults to :func:`current_code_version` (the git commit of
    recgov's checkout, or None). Carbon figures start empty; see :func:`record_carbon`.
    """
    _times(started_at, ended_at)
    lock_head(session)
    data = _dataset(session, dataset_version)
    code = code_version if code_version is not None else current_code_version()
    row = TrainingRun(
        dataset_version_id=data.id,
        params=_json(params, "params"),
        code_version=code,
        library_versions=_json(library_versions, "library_versions"),
        started_at=started_at,
        ended_at=ended_at,
    )
    session.add(row)
    session.flush()
    event = append_event(
        session,
        actor=_actor(actor),
        action="training_run.recorded",
        objects={"dataset": data.content_hash, "training_run": row.id},
        payload={
            "params": params,
            "library_versions": library_versions,
            "code_version": code,
            "started_at": format_time(started_at),
            "ended_at": format_time(ended_at),
        },
    )
    row.trail_seq = event.seq
    session.flush()
    return row


def record_carbon(
    session: Session,
    *,
    training_run: TrainingRun | int,
    energy_kwh: float,
    emissions_kg: float,
    carbon_method: str,
    actor: str | None = None,
) -> TrainingRun:
    """Fill in a training run's energy and emissions (once) and append ``training_run.carbon_recorded``."""
    lock_head(session)
    run = _run(session, training_run)
    if run.carbon_method is not None:
        raise ConfigError(f"training run {run.id} already has carbon figures ({run.carbon_method})")
    for name, value in (("energy_kwh", energy_kwh), ("emissions_kg", emissions_kg)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0 or value == float("inf"):
            raise DataError(f"{name} must be a finite non-negative number, got {value!r}")
    run.energy_kwh, run.emissions_kg = float(energy_kwh), float(emissions_kg)
    run.carbon_method = _text(carbon_method, "carbon_method", 100)
    session.flush()
    append_event(
        session,
        actor=_actor(actor),
        action="training_run.carbon_recorded",
        objects={"training_run": run.id},
        payload={"energy_kwh": run.energy_kwh, "emissions_kg": run.emissions_kg, "carbon_method": run.carbon_method},
    )
    return run


def record_model_version(
    session: Session,
    *,
    version_id: str,
    kind: str,
    training_run: TrainingRun | int,
    artifact_hash: str,
    artifact_location: str,
    actor: str | None = None,
) -> ModelVersion:
    """Record a model version (``version_id``: the caller's content hash of the model).

    Recording the same version again with the same artifact hash returns the
    existing row; a different artifact under the same id is refused.
    """
    version_id = _text(version_id, "version_id", 128)
    artifact_hash = _text(artifact_hash, "artifact_hash", 128)
    lock_head(session)
    run = _run(session, training_run)
    existing = session.get(ModelVersion, version_id)
    if existing is not None:
        if existing.artifact_hash != artifact_hash or existing.training_run_id != run.id:
            raise ConfigError(
                f"model version {version_id!r} is already recorded with artifact {existing.artifact_hash} "
                f"from training run {existing.training_run_id}; a different model needs a different version id"
            )
        return existing
    data = _dataset(session, run.dataset_version_id)
    row = ModelVersion(
        version_id=version_id,
        kind=_text(kind, "kind", 50),
        training_run_id=run.id,
        dataset_version_id=data.id,
        artifact_hash=artifact_hash,
        artifact_location=_text(artifact_location, "artifact_location", 10_000),
    )
    session.add(row)
    session.flush()
    event = append_event(
        session,
        actor=_actor(actor),
        action="model.recorded",
        objects={"model": version_id, "training_run": run.id, "dataset": data.content_hash},
        payload={"kind": row.kind, "artifact_hash": artifact_hash, "artifact_location": row.artifact_location},
    )
    row.trail_seq = event.seq
    session.flush()
    return row


def record_audit_run(
    session: Session,
    *,
    policy_pack: str,
    policy_version: str,
    policy_hash: str,
    verdict: str,
    started_at: datetime,
    ended_at: datetime,
    model_version: ModelVersion | str | None = None,
    dataset_version: DatasetVersion | int | None = None,
    summary: dict[str, Any] | None = None,
    actor: str | None = None,
) -> AuditRun:
    """Record an audit: a policy pack (name, version, content hash) run against a model and/or data set."""
    if verdict not in AUDIT_VERDICTS:
        raise ConfigError(f"verdict must be one of {', '.join(AUDIT_VERDICTS)}; got {verdict!r}")
    _times(started_at, ended_at)
    lock_head(session)
    model = _model(session, model_version) if model_version is not None else None
    data = _dataset(session, dataset_version) if dataset_version is not None else None
    row = AuditRun(
        policy_pack=_text(policy_pack, "policy_pack", 200),
        policy_version=_text(policy_version, "policy_version", 100),
        policy_hash=_text(policy_hash, "policy_hash", 128),
        model_version_id=model.version_id if model else None,
        dataset_version_id=data.id if data else None,
        verdict=verdict,
        started_at=started_at,
        ended_at=ended_at,
        summary=_json(summary, "summary"),
    )
    session.add(row)
    session.flush()
    objects: dict[str, Any] = {"audit": row.id, "policy": f"{policy_pack}@{policy_version}"}
    if model:
        objects["model"] = model.version_id
    if data:
        objects["dataset"] = data.content_hash
    event = append_event(
        session,
        actor=_actor(actor),
        action="audit.recorded",
        objects=objects,
        payload={
            "policy_pack": policy_pack,
            "policy_version": policy_version,
            "policy_hash": policy_hash,
            "verdict": verdict,
            "started_at": format_time(started_at),
            "ended_at": format_time(ended_at),
            "summary": summary,
        },
    )
    row.trail_seq = event.seq
    session.flush()
    return row


def record_deployment(
    session: Session, *, model_version: ModelVersion | str, stage: str, actor: str | None = None, gate: dict[str, Any] | None = None
) -> Deployment:
    """Move a model version to ``stage`` (shadow, canary, production, retired); the previous stage is kept.

    ``gate`` is the gate that allowed the move (``pack``, ``pack_version``, ``pack_hash``,
    ``audit_id``, ``policy_id``), stored on the row and in the event; None for a move no gate allows.
    """
    if stage not in DEPLOYMENT_STAGES:
        raise ConfigError(f"stage must be one of {', '.join(DEPLOYMENT_STAGES)}; got {stage!r}")
    lock_head(session)
    model = _model(session, model_version)
    previous = session.scalar(
        select(Deployment.stage)
        .where(Deployment.model_version_id == model.version_id)
        .order_by(Deployment.id.desc())
        .limit(1)
    )
    if previous == stage:
        raise ConfigError(f"model version {model.version_id!r} is already in stage {stage!r}")
    if previous == "retired":
        raise ConfigError(f"model version {model.version_id!r} is retired; record a new model version instead")
    who = _actor(actor)
    row = Deployment(model_version_id=model.version_id, stage=stage, previous_stage=previous, actor=who)
    if gate is not None:
        row.gate_pack, row.gate_pack_version, row.gate_pack_hash = gate["pack"], gate["pack_version"], gate["pack_hash"]
        row.gate_audit_id, row.gate_policy_id = gate.get("audit_id"), gate.get("policy_id")
    session.add(row)
    session.flush()
    event = append_event(
        session,
        actor=who,
        action="deployment.changed",
        objects={"model": model.version_id, "deployment": row.id},
        payload={"stage": stage, "previous_stage": previous, "gate": gate},
    )
    row.trail_seq = event.seq
    session.flush()
    return row


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def lineage_of(session: Session, model_version_id: str) -> dict[str, Any]:
    """The chain from data to deployments of one model version, JSON-ready.

    Keys: ``model_version``, ``training_run``, ``dataset_version``,
    ``audit_runs``, ``deployments``, ``current_stage``, ``monitoring`` (the
    model's monitoring profile and the retrain tickets about it or that
    produced it) and ``trail`` (the trail
    events that recorded each of them: seq, time, action, hash; check them
    against a verified export).

    Raises
    ------
    ConfigError
        No such model version (the message lists recent ones).
    """
    model = session.get(ModelVersion, model_version_id) if isinstance(model_version_id, str) else None
    if model is None:
        raise ConfigError(UNKNOWN_MODEL_VERSION.format(version=model_version_id, known=_known_models(session)))
    run = session.get(TrainingRun, model.training_run_id)
    data = session.get(DatasetVersion, model.dataset_version_id)
    assert run is not None and data is not None  # foreign keys
    audits = session.scalars(
        select(AuditRun).where(AuditRun.model_version_id == model.version_id).order_by(AuditRun.id)
    ).all()
    deployments = session.scalars(
        select(Deployment).where(Deployment.model_version_id == model.version_id).order_by(Deployment.id)
    ).all()
    profile = session.get(ModelProfile, model.version_id)
    tickets = session.scalars(
        select(RetrainTicket)
        .where(or_(RetrainTicket.model_version_id == model.version_id, RetrainTicket.new_model_version == model.version_id))
        .order_by(RetrainTicket.opened_at)
    ).all()
    monitoring = {
        "profile": None if profile is None else {"dataset": profile.dataset_hash, "recorded_at": _iso(profile.recorded_at), "offline_hit_rate": profile.profile.get("offline_hit_rate"), "k": profile.profile.get("k")},
        "retrain_tickets": [
            {"id": t.id, "trigger": t.trigger_id, "state": t.state, "role": "retrained" if t.model_version_id == model.version_id else "produced", "opened_at": _iso(t.opened_at)}
            for t in tickets
        ],
    }
    return {
        "model_version": _model_doc(model),
        "training_run": _run_doc(run),
        "dataset_version": _dataset_doc(data),
        "audit_runs": [_audit_doc(a) for a in audits],
        "deployments": [_deployment_doc(d) for d in deployments],
        "current_stage": deployments[-1].stage if deployments else None,
        "monitoring": monitoring,
        "trail": _trail_of(session, (data, run, model, *audits, *deployments, *([profile] if profile else []), *tickets)),
    }


def _model_doc(model: ModelVersion) -> dict[str, Any]:
    return {
        "version_id": model.version_id,
        "kind": model.kind,
        "artifact_hash": model.artifact_hash,
        "artifact_location": model.artifact_location,
        "created_at": _iso(model.created_at),
        "trail_seq": model.trail_seq,
    }


def _run_doc(run: TrainingRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "params": run.params,
        "code_version": run.code_version,
        "library_versions": run.library_versions,
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "energy_kwh": run.energy_kwh,
        "emissions_kg": run.emissions_kg,
        "carbon_method": run.carbon_method,
        "trail_seq": run.trail_seq,
    }


def _dataset_doc(data: DatasetVersion) -> dict[str, Any]:
    return {
        "id": data.id,
        "content_hash": data.content_hash,
        "name": data.name,
        "source": data.source,
        "n_events": data.n_events,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "schema": data.data_schema,
        "validation": data.validation,
        "created_at": _iso(data.created_at),
        "trail_seq": data.trail_seq,
    }


def _audit_doc(audit: AuditRun) -> dict[str, Any]:
    return {
        "id": audit.id,
        "policy_pack": audit.policy_pack,
        "policy_version": audit.policy_version,
        "policy_hash": audit.policy_hash,
        "dataset_version_id": audit.dataset_version_id,
        "verdict": audit.verdict,
        "started_at": _iso(audit.started_at),
        "ended_at": _iso(audit.ended_at),
        "summary": audit.summary,
        "trail_seq": audit.trail_seq,
    }


def _deployment_doc(deployment: Deployment) -> dict[str, Any]:
    gate = None
    if deployment.gate_pack is not None:
        gate = {
            "pack": deployment.gate_pack,
            "pack_version": deployment.gate_pack_version,
            "pack_hash": deployment.gate_pack_hash,
            "audit_id": deployment.gate_audit_id,
            "policy_id": deployment.gate_policy_id,
        }
    return {
        "id": deployment.id,
        "stage": deployment.stage,
        "previous_stage": deployment.previous_stage,
        "changed_at": _iso(deployment.changed_at),
        "actor": deployment.actor,
        "trail_seq": deployment.trail_seq,
        "gate": gate,
    }


def _trail_of(session: Session, rows: tuple[Any, ...]) -> list[dict[str, Any]]:
    """The trail events that recorded ``rows`` (seq, time, action, hash), in trail order."""
    seqs = [r.trail_seq for r in rows if r.trail_seq is not None]
    events = session.execute(
        select(TrailEvent.seq, TrailEvent.time, TrailEvent.action, TrailEvent.hash)
        .where(TrailEvent.seq.in_(seqs))
        .order_by(TrailEvent.seq)
    ).all()
    return [{"seq": e.seq, "time": e.time, "action": e.action, "hash": e.hash} for e in events]
