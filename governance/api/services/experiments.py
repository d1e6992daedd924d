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
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy.orm import Session

from governance import packs as pack_store
from governance.api.errors import Problem
from governance.api.services.engines import artifact_location
from governance.experiments.assign import InForce, assign_in_force
from governance.experiments.lifecycle import in_force
from governance.serving import ServeRequest, ServingEngine, erasure_decision

__all__ = ["experiment_in_force", "route"]

VARIANT_MODEL_MISSING = "experiment {name!r}: variant {variant!r} names model version {model!r}, which is not in the store"


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
    chosen = engine
    if model_version != engine.model.version_id_ or ref != pack_ref:
        try:
            loaded = ctx.cache.pack(ctx.settings.packs_dir, ref, loaded_only=inline)
        except pack_store.PackNotFound as err:
            raise Problem(404, str(err)) from None
        with ctx.reads.snapshot() as read:
            location = artifact_location(read, model_version)
            if location is None:
                raise Problem(404, VARIANT_MODEL_MISSING.format(name=experiment.name, variant=variant["name"], model=model_version))
            chosen = ctx.cache.engine(loaded, model_version, location, read, built_only=inline)
    return chosen, dataclasses.replace(request, experiment=assignment), {**assignment, "name": experiment.name}
