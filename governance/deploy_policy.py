"""The deployment policy: which pack gates each served stage, and what the gate's data must cover.

A caller who could name the gate's pack could pick a weaker one (the baseline
pack rather than the EU pack) and still reach production. So the pack is the
installation's decision: an admin binds each gated stage (``canary``,
``production``) to a pack, pinned by its content hash, and to data
requirements (:class:`StageRequirements`). A promotion then runs the gate under
the bound pack only:

* no binding for the stage: refused, with how to set one (fail closed: canary
  serves real subjects too, and a gate whose pack the caller picks is no gate);
* a pack named by the caller whose content hash is not the bound one: refused
  (the same name and version with other content is another pack);
* the bound pack no longer has the pinned hash (a stored file edited, a shipped
  pack changed by an upgrade): refused until an admin reviews it and sets the
  policy again;
* the gate's data below the minimum events or users, or not the data set the
  binding names (by default the model's own training data): refused.

A refusal raises :class:`DeploymentPolicyRefused` before any gate runs. Each
binding is a new row of ``deployment_policies`` (the latest per stage is in
force) and a ``deployment.policy_set`` trail event, in one transaction.
Reading packs is the caller's: a :data:`PackLoader` turns a reference into a
pack (the CLI and the API read the same shipped and stored packs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from audits.models import GATED_STAGES, DatasetVersion, Deployment, DeploymentPolicy, ModelVersion, TrainingRun
from audits.trail import append_event, lock_head
from governance.policy import LoadedPack
from recommender.data import Dataset
from recommender.errors import ConfigError

__all__ = [
    "BOUND_PACK_CHANGED",
    "BOUND_PACK_MISSING",
    "DATA_NOT_NAMED",
    "DATA_NOT_TRAINING",
    "DATA_TOO_SMALL",
    "GATED_STAGES",
    "NOT_A_GATED_STAGE",
    "NO_BINDING",
    "PACK_NOT_BOUND",
    "POLICY_CHANGED",
    "ROLLBACK_UNDER_OTHER_PACK",
    "Binding",
    "DeploymentPolicyRefused",
    "Gate",
    "PackLoader",
    "StageRequirements",
    "binding_for",
    "binding_in_force",
    "check_data",
    "check_rollback",
    "check_unchanged",
    "current_bindings",
    "gate_pack",
    "set_binding",
    "training_hashes",
]

NOT_A_GATED_STAGE = "a deployment policy binds canary or production, the stages that serve; got {stage!r} (shadow is never served and has no gate)"
NO_BINDING = (
    "no deployment policy binds a pack to {stage}, so no promotion to {stage} is allowed: "
    "an admin sets one with 'recgov deploy policy set {stage} --pack PACK' or PUT /v1/deployments/policy/{stage}"
)
PACK_NOT_BOUND = (
    "the deployment policy gates {stage} with pack {bound} (hash {bound_hash}); the promotion asked for pack {asked} "
    "(hash {asked_hash}): leave the pack out to use the bound one, or have an admin bind another"
)
BOUND_PACK_CHANGED = (
    "the pack bound to {stage} ({ref}) has content hash {now} now, not {pinned} as the deployment policy pinned: "
    "review the change, then set the policy again ('recgov deploy policy set {stage} --pack {ref}')"
)
BOUND_PACK_MISSING = (
    "the pack bound to {stage} ({ref}) cannot be read ({reason}): store it again, or set the policy again"
)
DATA_TOO_SMALL = (
    "the {stage} gate's data has {n} {what}; the deployment policy requires at least {minimum}: audit on the full data"
)
DATA_NOT_TRAINING = (
    "the deployment policy requires the {stage} gate to audit the model's own training data (dataset {expected}); "
    "the data given is dataset {got}: give the data the model was trained on"
)
DATA_NOT_NAMED = (
    "the deployment policy requires the {stage} gate to audit dataset {expected}; the data given is dataset {got}"
)
POLICY_CHANGED = (
    "the deployment policy for {stage} changed while the gate ran (binding #{was}, now #{now}): "
    "nothing moved; promote again to run the gate the policy binds now"
)
ROLLBACK_UNDER_OTHER_PACK = (
    "cannot roll back to {version!r} (it passed production under pack {gated}): production is now bound to pack {bound}; "
    "promote a version through the {bound} gate instead"
)

SHORT = 12
"""Characters of a hash shown in messages (enough to tell two apart)."""

PackLoader = Callable[[str], LoadedPack]
"""Reads a pack reference (a shipped name, or a stored pack as ``NAME@VERSION``); raises ConfigError when it cannot."""


class DeploymentPolicyRefused(ConfigError):
    """A move the deployment policy does not allow (CLI exit 2, API 409); nothing moved, no gate ran."""


class StageRequirements(BaseModel):
    """What the data of a stage's gate must cover."""

    model_config = ConfigDict(extra="forbid")

    min_events: int = Field(0, ge=0, le=10**12)
    """The gate's data has at least this many events (0: no minimum)."""
    min_users: int = Field(0, ge=0, le=10**10)
    """The gate's data has at least this many distinct users (0: no minimum)."""
    dataset: str = Field("training", pattern=r"^(training|any|[0-9a-f]{64})$")
    """``training``: the data the model was trained on (before any privacy filter); ``any``; or a recorded dataset's content hash."""


@dataclass(frozen=True)
class Binding:
    """A stage's binding to a pack and its data requirements, as stored."""

    id: int
    stage: str
    ref: str
    pack: str
    pack_version: str
    pack_hash: str
    requirements: StageRequirements
    set_at: datetime
    actor: str
    trail_seq: int

    @classmethod
    def of(cls, row: DeploymentPolicy) -> Binding:
        requirements = StageRequirements(min_events=row.min_events, min_users=row.min_users, dataset=row.dataset)
        return cls(
            row.id,
            row.stage,
            row.pack_ref,
            row.pack_name,
            row.pack_version,
            row.pack_hash,
            requirements,
            row.set_at,
            row.actor,
            row.trail_seq,
        )

    @property
    def label(self) -> str:
        return f"{self.pack}@{self.pack_version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage, "ref": self.ref, "pack": self.pack, "pack_version": self.pack_version, "pack_hash": self.pack_hash,
            **self.requirements.model_dump(), "policy_id": self.id, "set_at": self.set_at.isoformat(), "set_by": self.actor, "trail_seq": self.trail_seq,
        }  # fmt: skip


@dataclass(frozen=True)
class Gate:
    """The gate that allowed a deployment move: its pack, the audit that passed, the binding in force."""

    pack: str
    pack_version: str
    pack_hash: str
    audit_id: int | None
    policy_id: int | None

    @classmethod
    def of_row(cls, row: Deployment) -> Gate | None:
        if row.gate_pack is None or row.gate_pack_version is None or row.gate_pack_hash is None:
            return None
        return cls(row.gate_pack, row.gate_pack_version, row.gate_pack_hash, row.gate_audit_id, row.gate_policy_id)

    @property
    def label(self) -> str:
        return f"{self.pack}@{self.pack_version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "pack": self.pack,
            "pack_version": self.pack_version,
            "pack_hash": self.pack_hash,
            "audit_id": self.audit_id,
            "policy_id": self.policy_id,
        }


def _short(value: str) -> str:
    return value[:SHORT]


def binding_for(session: Session, stage: str) -> Binding | None:
    """The binding in force for ``stage`` (its latest row), or None."""
    row = session.scalars(
        select(DeploymentPolicy).where(DeploymentPolicy.stage == stage).order_by(DeploymentPolicy.id.desc()).limit(1)
    ).first()
    return None if row is None else Binding.of(row)


def current_bindings(session: Session) -> dict[str, Binding | None]:
    """Each gated stage's binding in force (None: unbound, so promotion to it is refused)."""
    return {stage: binding_for(session, stage) for stage in GATED_STAGES}


def set_binding(
    session: Session, *, stage: str, ref: str, pack: LoadedPack, requirements: StageRequirements, actor: str
) -> Binding:
    """Bind ``stage`` to ``pack`` (read from ``ref``) pinned by its content hash; one row and one trail event."""
    if stage not in GATED_STAGES:
        raise ConfigError(NOT_A_GATED_STAGE.format(stage=stage))
    lock_head(session)
    row = DeploymentPolicy(
        stage=stage, pack_ref=ref, pack_name=pack.name, pack_version=pack.version, pack_hash=pack.content_hash,
        min_events=requirements.min_events, min_users=requirements.min_users, dataset=requirements.dataset,
        set_at=datetime.now(UTC), actor=actor, trail_seq=0,
    )  # fmt: skip
    previous = binding_for(session, stage)
    payload = {
        "stage": stage,
        "ref": ref,
        **pack.stamp(),
        **requirements.model_dump(),
        "replaces": None if previous is None else previous.id,
    }
    event = append_event(
        session,
        actor=actor,
        action="deployment.policy_set",
        objects={"policy": f"{pack.name}@{pack.version}"},
        payload=payload,
    )
    row.trail_seq = event.seq
    session.add(row)
    session.flush()
    return Binding.of(row)


def binding_in_force(session: Session, stage: str) -> Binding:
    """The binding of ``stage``, or :class:`DeploymentPolicyRefused` when there is none (fail closed)."""
    binding = binding_for(session, stage)
    if binding is None:
        raise DeploymentPolicyRefused(NO_BINDING.format(stage=stage))
    return binding


def gate_pack(binding: Binding, *, asked: LoadedPack | None, load: PackLoader) -> LoadedPack:
    """The pack that gates ``binding``'s stage, after refusing any other the caller ``asked`` for.

    Reads no store: call it outside a transaction (reading a pack must not hold the store's writer lock).
    """
    stage = binding.stage
    if asked is not None and asked.content_hash != binding.pack_hash:
        asked_label = f"{asked.name}@{asked.version}"
        message = PACK_NOT_BOUND.format(
            stage=stage, bound=binding.label, bound_hash=_short(binding.pack_hash), asked=asked_label, asked_hash=_short(asked.content_hash)
        )
        raise DeploymentPolicyRefused(message)
    try:
        loaded = load(binding.ref)
    except ConfigError as err:
        raise DeploymentPolicyRefused(BOUND_PACK_MISSING.format(stage=stage, ref=binding.ref, reason=str(err).splitlines()[0])) from err
    if loaded.content_hash != binding.pack_hash:
        raise DeploymentPolicyRefused(
            BOUND_PACK_CHANGED.format(stage=stage, ref=binding.ref, now=_short(loaded.content_hash), pinned=_short(binding.pack_hash))
        )
    return loaded


def training_hashes(session: Session, model_version: str) -> set[str]:
    """The content hashes of the data ``model_version`` was trained on: as recorded, and before any privacy filter."""
    model = session.get(ModelVersion, model_version)
    if model is None:
        return set()
    hashes = {session.scalar(select(DatasetVersion.content_hash).where(DatasetVersion.id == model.dataset_version_id))}
    run = session.get(TrainingRun, model.training_run_id)
    before = ((run.params or {}).get("privacy_filter") or {}).get("dataset", {}).get("before") if run else None
    return {h for h in (*hashes, before) if h}


def check_data(binding: Binding, dataset: Dataset, *, trained_on: set[str]) -> None:
    """Refuse gate data that does not cover what ``binding`` requires (``trained_on``: :func:`training_hashes`)."""
    need = binding.requirements
    n_users = int(dataset.events["user_id"].nunique()) if len(dataset.events) else 0
    for n, what, minimum in ((dataset.n_events, "events", need.min_events), (n_users, "users", need.min_users)):
        if n < minimum:
            raise DeploymentPolicyRefused(DATA_TOO_SMALL.format(stage=binding.stage, n=n, what=what, minimum=minimum))
    if need.dataset == "any":
        return
    got = dataset.content_hash()
    if need.dataset == "training":
        if got not in trained_on:
            shown = ", ".join(sorted(_short(h) for h in trained_on)) or "unknown"
            raise DeploymentPolicyRefused(DATA_NOT_TRAINING.format(stage=binding.stage, expected=shown, got=_short(got)))
    elif got != need.dataset:
        raise DeploymentPolicyRefused(DATA_NOT_NAMED.format(stage=binding.stage, expected=_short(need.dataset), got=_short(got)))


def check_unchanged(session: Session, stage: str, gate: Gate) -> None:
    """Refuse to record a move whose gate ran under a binding that is no longer in force (call under the trail lock)."""
    binding = binding_for(session, stage)
    if binding is None or binding.id != gate.policy_id:
        raise DeploymentPolicyRefused(POLICY_CHANGED.format(stage=stage, was=gate.policy_id, now=None if binding is None else binding.id))


def check_rollback(session: Session, *, version: str, gate: Gate | None) -> None:
    """Refuse to restore ``version`` to production when the pack that let it in is not the one production is bound to now.

    With no production binding (a store from before deployment policies), a rollback stays allowed:
    it restores a version that was in production, and the caller picks no pack.
    """
    binding = binding_for(session, "production")
    if binding is None or (gate is not None and gate.pack_hash == binding.pack_hash):
        return
    gated = "an unrecorded pack" if gate is None else f"{gate.label} (hash {_short(gate.pack_hash)})"
    raise DeploymentPolicyRefused(ROLLBACK_UNDER_OTHER_PACK.format(version=version, gated=gated, bound=binding.label))
