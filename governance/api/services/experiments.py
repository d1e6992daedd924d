"""The experiment in force on the list path: which variant serves the subject, and with which engine.

Only a request that names no model version (what is deployed answers) takes part.
The subject's consent is judged first, under the deployed engine's pack: a subject
who may not be profiled is not randomised (reason ``not_profiled``) and gets the
control's list. Otherwise the keyed hash of :mod:`governance.experiments.assign`
picks the variant, whose model version (default: the deployed one) and pack
(default: the request's) serve the list. The assignment rides on the
:class:`~governance.serving.ServeRequest` into the decision record's context,
and on the answer's ``deployment``.

A stopped experiment whose plan keeps its holdback (``holdback_days``) still serves
the control to the subjects of its holdback until ``holdback_until``
(:func:`governance.experiments.assign.assign_in_force`); anyone else is out of it.

An arm serves only as the plan froze it, checked on every list (:func:`arm_refused`):
its pack must have the content hash the plan pinned (a pack file changed in place
since, say by an upgrade, is not the pack the plan was approved under), and must
admit the model the arm serves (:func:`governance.experiments.packs.model_refused`;
an arm naming no model version serves what is deployed now, which may have changed
since the start). An arm that does not hold is refused for that list: the subject
gets what a request outside any experiment gets (the request's pack, the deployed
model), recorded with the assignment's reason ``arm_refused`` and why, so the
subject is left out of the analysis and the refusal is on the record; the
experiment's status counts such subjects per arm, and the missing share shows as a
sample ratio mismatch. An arm whose model file no longer has the SHA-256 recorded
with it (where a request naming that model answers 409 ``artifact-changed``) is
refused the same way. The verdict on a pack and a model is kept per (pack content hash, model version):
a model's recorded inputs do not change.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from sqlalchemy.orm import Session

from governance.api.errors import Problem
from governance.api.services.engines import ARTIFACT_CHANGED_KIND, NotReady, artifact_location
from governance.experiments.assign import InForce, RunningExperiment, assign_in_force
from governance.experiments.lifecycle import in_force
from governance.experiments.packs import model_refused
from governance.policy import LoadedPack
from governance.serving import ServeRequest, ServingEngine, erasure_decision
from recommender.errors import ConfigError

__all__ = ["ARM_PACK_CHANGED", "arm_refused", "experiment_in_force", "route"]

log = logging.getLogger(__name__)

VARIANT_MODEL_MISSING = "experiment {name!r}: variant {variant!r} names model version {model!r}, which is not in the store"
ARM_PACK_CHANGED = (
    "pack {pack!r} has content hash {now}, not the {pinned} the plan pinned: the arm is served only under the pack "
    "it was approved with"
)
ARM_MODEL_REFUSED = "pack {pack!r} does not admit the model the arm would serve: {why}"
ARM_PACK_UNREAD = "pack {pack!r} cannot be read: {error}"
_WARNED: set[tuple[int, str, str]] = set()


def experiment_in_force(read: Any) -> InForce | None:
    """The running experiment and the holdbacks still held back, read in the request's snapshot (a SQLAlchemy connection)."""
    with Session(bind=read) as session:
        return in_force(session)


def route(
    experiments: InForce, request: ServeRequest, engine: ServingEngine, *, pack_ref: str, ctx: Any, inline: bool
) -> tuple[ServingEngine, ServeRequest, dict[str, Any] | None]:
    """The engine and request that serve the subject under the experiments in force, and the assignment
    (None, and the request as it was, when no experiment takes the subject)."""
    decision = erasure_decision(request.erasure_seq, engine.erasures_seen, engine.model.version_id_) or engine.decide_consent(request)
    taken = assign_in_force(experiments, request.subject_id, may_profile=decision.allowed)
    if taken is None:
        return engine, request, None
    experiment, assignment = taken
    variant = experiment.variant(assignment["variant"])
    model_version = variant.get("model_version") or engine.model.version_id_
    ref = variant.get("pack") or pack_ref
    chosen, loaded, why = engine, engine.loaded, None
    if ref != pack_ref:
        try:
            loaded = ctx.cache.pack(ctx.settings.packs_dir, ref, loaded_only=inline)
        except ConfigError as err:  # gone or unreadable: not the pack the plan pinned either
            why = ARM_PACK_UNREAD.format(pack=ref, error=err)
    why = why or arm_refused(experiment, variant, loaded, model_version, ctx.cache, checked_only=inline)
    if why is None and (model_version != engine.model.version_id_ or ref != pack_ref):
        with ctx.reads.snapshot() as read:
            location = artifact_location(read, model_version)
            if location is None:
                raise Problem(404, VARIANT_MODEL_MISSING.format(name=experiment.name, variant=variant["name"], model=model_version))
            try:
                chosen = ctx.cache.engine(loaded, model_version, location, read, built_only=inline)
            except Problem as err:  # its file is not the one recorded and gated: not the arm's model either
                if err.kind != ARTIFACT_CHANGED_KIND:
                    raise
                why = err.detail
    if why is not None:  # what a request outside the experiment gets, and the refusal on its record
        if (experiment.id, variant["name"], why) not in _WARNED:  # once per arm and reason, not on every list
            _WARNED.add((experiment.id, variant["name"], why))
            log.warning("experiment %s, variant %s: arm refused, its lists are served outside the experiment: %s", experiment.name, variant["name"], why)
        assignment, chosen = {**assignment, "reason": "arm_refused", "refused": why}, engine
    return chosen, dataclasses.replace(request, experiment=assignment), {**assignment, "name": experiment.name}


def arm_refused(
    experiment: RunningExperiment, variant: dict[str, Any], loaded: LoadedPack, model_version: str, cache: Any, *, checked_only: bool
) -> str | None:
    """Why the arm ``variant`` may not serve ``model_version`` under ``loaded``, or None (see the module doc).

    ``cache``: the app's :class:`~governance.api.services.engines.EngineCache`, which keeps the verdicts on a pack
    and a model; ``checked_only``: raise :class:`NotReady` rather than read the store for one not kept yet."""
    pinned = experiment.pins.get(variant["name"])
    if pinned is not None and loaded.content_hash != pinned:
        return ARM_PACK_CHANGED.format(pack=variant.get("pack"), now=loaded.content_hash, pinned=pinned)
    if not (variant.get("pack") or variant.get("model_version")):
        return None  # the arm serves as a request outside the experiment does
    key = (loaded.content_hash, model_version)
    verdicts = cache.arm_verdicts
    if key not in verdicts:
        if checked_only:
            raise NotReady
        with cache.store.snapshot() as connection, Session(bind=connection) as session:
            verdicts[key] = model_refused(session, model_version, loaded)
    why = verdicts[key]
    return None if why is None else ARM_MODEL_REFUSED.format(pack=variant.get("pack") or loaded.name, why=why)
