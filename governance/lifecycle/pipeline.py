"""The retrain pipeline: a ticket's model is retrained, gated, shadowed, canaried, watched, then promoted or rolled back.

A ticket is a state machine persisted in ``retrain_tickets`` (:mod:`audits.monitoring`)::

    open --train--> trained --shadow--> shadow --canary (gate)--> canary --watch--> promoted
                                                       \\                    \\--> rolled_back
                                                        \\--> rolled_back (gate refused)
    (any step that cannot succeed) --> failed

:func:`run_ticket` runs the steps from the ticket's state until it is terminal
or must wait (the canary's watch has not ended). Each step does its work, then
records the new state with a ``retrain.step`` trail event; a run that crashed
between the two is simply run again: every step first looks whether its work
is done (a training run is reproducible and recorded once under its version; a
deployment move already made is not made twice), so re-running resumes.

* **train** -- the recipe recorded for the ticket's model
  (:func:`governance.privacy.training_recipe`) on the given data, through the
  pack's training filter (:func:`governance.training.train_and_record`), and the
  new model's profile (:func:`governance.monitoring.profile_under_pack`: its refit sees only
  the events the pack lets a model learn from). A retrain that
  reproduces the ticket's model (same data) fails the ticket: nothing would change.
* **shadow**, **canary** -- :func:`governance.deploy.promote`, under the
  installation's deployment policy: canary passes the gate bound to it.
* **watch** -- the canary's figures over ``lifecycle.canary.hours`` from the move
  (as the decisions' times record it), judged against the pack's guardrails; too
  few lists is a breach (nothing shows it safe).
* **promote** -- through the production gate; a breach or a refusal retires the
  canary (``lifecycle.rolled_back``) and production is untouched. An ``erasure_retrains``
  ticket's promotion completes the erasure retrain requests it was opened for, in the
  transaction that records it (:func:`_complete_erasures`). A ticket whose new
  model is retired meanwhile (by hand, by age) is rolled back at its next run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select

from audits.lineage import record_deployment
from audits.models import Deployment, TERMINAL_TICKET_STATES
from audits.monitoring import advance_ticket, get_ticket, record_profile, ticket_doc
from audits.trail import append_event, lock_head
from governance.deploy import GateRefused, deployed_versions, promote
from governance.deploy_policy import PackLoader
from governance.lifecycle.facts import lifecycle_of
from governance.lifecycle.passes import _inputs
from governance.monitoring import profile_under_pack, window_figures
from governance.policy import LoadedPack
from recommender.data import Dataset
from recommender.errors import ConfigError

__all__ = ["CANARY_BUSY", "NO_RECIPE", "SAME_MODEL", "PipelineContext", "run_ticket", "watch_canary"]

NO_RECIPE = "ticket {id}: the store does not record how model {version} was trained (no ALS parameters); train a model with `recgov train` and deploy it instead"
SAME_MODEL = "ticket {id}: retraining on this data reproduces model {version} exactly; give the data recorded since, or close the ticket"
CANARY_BUSY = (
    "ticket {id}: model {other} is in canary already, and the canary's watch judges one model at a time; "
    "promote it or roll it back, then run the ticket again"
)
RETIRED_MEANWHILE = "model {version} was retired before its ticket moved on (retired by hand or by age, or by an interrupted run); the ticket is rolled back"
NO_MODEL = "ticket {id} names no model to retrain and nothing is in production"
OTHER_PACK = (
    "ticket {id}: model {version} was trained under the consent rules of pack {trained}; a retrain under pack {run} "
    "could learn from subjects those rules left out: run the ticket under pack {trained} (--pack {trained}); nothing changed"
)


@dataclass(frozen=True)
class PipelineContext:
    """What a run of the pipeline needs besides the ticket."""

    store: Any
    pack: LoadedPack
    """The pack whose lifecycle section (canary, guardrails) and training filter apply."""
    dataset: Dataset
    """The data to retrain on (and the gates' data)."""
    load_pack: PackLoader
    """Reads the packs the deployment policy binds to canary and production."""
    models_dir: Path
    out_dir: Path
    items: pd.DataFrame | None = None
    now: datetime | None = None
    actor: str | None = None
    measure_carbon: bool = False

    @property
    def moment(self) -> datetime:
        return self.now or datetime.now(UTC)


def _stage_in(session: Any, version: str) -> str | None:
    row = session.scalars(select(Deployment).where(Deployment.model_version_id == version).order_by(Deployment.id.desc()).limit(1)).first()
    return None if row is None else row.stage


def _stage(store: Any, version: str) -> str | None:
    with store.session() as session:
        return _stage_in(session, version)


def _advance(ctx: PipelineContext, ticket_id: str, *, step: str, expect: str, state: str, report: dict[str, Any], new_model_version: str | None = None) -> str:
    with ctx.store.session() as session:
        advance_ticket(session, ticket_id, step=step, state=state, report=report, now=ctx.moment, new_model_version=new_model_version, expect=expect, actor=ctx.actor)
    return state


def _train(ctx: PipelineContext, ticket: dict[str, Any]) -> str:
    from governance.privacy.retrains import run_rules, training_recipe
    from governance.training import train_and_record
    from recommender.feedback import FeedbackConfig

    version = ticket["model_version"]
    with ctx.store.session() as session:
        if version is None:
            production = session.scalars(select(Deployment).order_by(Deployment.id)).all()
            latest = {r.model_version_id: r for r in production}
            version = next((v for v, r in latest.items() if r.stage == "production"), None)
        recipe = training_recipe(session, version) if version is not None else None
    if version is None:
        return _advance(ctx, ticket["id"], step="train", expect="open", state="failed", report={"error": NO_MODEL.format(id=ticket["id"])})
    if recipe is None:
        return _advance(ctx, ticket["id"], step="train", expect="open", state="failed", report={"error": NO_RECIPE.format(id=ticket["id"], version=version)})
    trained = recipe.get("trained_under")
    if trained not in (None, "", run_rules(ctx.pack)):  # the retrain would learn from subjects its model's rules left out
        raise ConfigError(OTHER_PACK.format(id=ticket["id"], version=version, trained=trained, run=ctx.pack.name))
    feedback = FeedbackConfig(**recipe["feedback"])
    run = train_and_record(
        ctx.dataset, store=ctx.store, models_dir=ctx.models_dir, feedback=feedback, params=recipe["params"], tune=False,
        random_state=recipe["random_state"], measure_carbon=ctx.measure_carbon, actor=ctx.actor, pack=ctx.pack, now=ctx.now,
    )  # fmt: skip
    if run.model_version == version:
        return _advance(ctx, ticket["id"], step="train", expect="open", state="failed", report={"error": SAME_MODEL.format(id=ticket["id"], version=version)})
    profile = profile_under_pack(
        run.result.model, ctx.dataset, ctx.pack, ctx.store, feedback=feedback, random_state=recipe["random_state"],
        filter_seen=lifecycle_of(ctx.pack).baseline_filter_seen,
    )  # fmt: skip
    with ctx.store.session() as session:
        record_profile(session, model_version=run.model_version, dataset_hash=run.dataset_version, profile=profile, actor=ctx.actor)
    report = {"model_version": run.model_version, "recipe_of": recipe["from"], "training_run": run.training_run_id, "dataset": run.dataset_version, "offline_hit_rate": profile["offline_hit_rate"]}
    return _advance(ctx, ticket["id"], step="train", expect="open", state="trained", report=report, new_model_version=run.model_version)


def _move(ctx: PipelineContext, version: str, stage: str) -> dict[str, Any]:
    """Promote ``version`` to ``stage`` unless it is there already (a re-run after a crash)."""
    if _stage(ctx.store, version) == stage:
        return {"stage": stage, "already": True}
    return promote(
        ctx.store, model_version=version, to_stage=stage, pack=None, load_pack=ctx.load_pack, dataset=ctx.dataset if stage != "shadow" else None,
        out_dir=ctx.out_dir, models_dir=ctx.models_dir, actor=ctx.actor,
    )  # fmt: skip


def _roll_back(ctx: PipelineContext, ticket: dict[str, Any], *, expect: str, step: str, reasons: list[str], report: dict[str, Any]) -> str:
    """Retire the ticket's model (the canary, or a model the gate refused) and record why; production is untouched.

    One transaction retires the model, appends ``lifecycle.rolled_back`` and moves the ticket on: a
    crash leaves either all of it or none of it (a retired model whose ticket still says canary would
    fail every re-run, the move to production refused because the model is retired).
    """
    version = ticket["new_model_version"]
    if _stage(ctx.store, version) == "production":  # moved there by hand during the watch: retiring it would empty production
        reasons = [*reasons, _out_of_production(ctx, version)]
    with ctx.store.session() as session:
        lock_head(session)
        if _stage_in(session, version) not in ("retired", "production", None):
            record_deployment(session, model_version=version, stage="retired", actor=ctx.actor)
        append_event(
            session, actor=ctx.actor or "recgov", action="lifecycle.rolled_back", objects={"model": version, "ticket": ticket["id"]},
            payload={"step": step, "reasons": reasons, "at": ctx.moment.isoformat()},
        )  # fmt: skip
        advance_ticket(
            session, ticket["id"], step=step, state="rolled_back", report={**report, "reasons": reasons}, now=ctx.moment, expect=expect, actor=ctx.actor
        )  # fmt: skip
    return "rolled_back"


def _out_of_production(ctx: PipelineContext, version: str) -> str:
    """Take ``version`` out of production the governed way (the previous production version comes back, as
    ``recgov deploy rollback`` does), and say what happened; if that cannot be done, it is left there and the
    reason says why and what to do: production is never emptied by a ticket's rollback."""
    from governance.deploy import rollback

    try:
        restored = rollback(ctx.store, actor=ctx.actor)
    except ConfigError as err:
        return f"model {version} was put in production outside this ticket and is left there ({err}); take it out by hand"
    return f"model {version} was put in production outside this ticket: rolled back, {restored['restored']} restored"


def _to_canary(ctx: PipelineContext, ticket: dict[str, Any]) -> str:
    with ctx.store.session() as session:
        others = [v for v in deployed_versions(session)["canary"] if v != ticket["new_model_version"]]
    if others:
        raise ConfigError(CANARY_BUSY.format(id=ticket["id"], other=others[0]))
    try:
        moved = _move(ctx, ticket["new_model_version"], "canary")
    except GateRefused as err:
        return _roll_back(ctx, ticket, expect="shadow", step="canary", reasons=err.reasons, report={"audit_id": err.audit_id})
    return _advance(ctx, ticket["id"], step="canary", expect="shadow", state="canary", report={"since": ctx.moment.isoformat(), "audit_id": moved.get("audit_id")})


def _canary_since(ticket: dict[str, Any]) -> datetime:
    step = next(s for s in reversed(ticket["steps"]) if s["step"] == "canary")
    return datetime.fromisoformat(step["report"]["since"])


def watch_canary(ctx: PipelineContext, ticket: dict[str, Any]) -> dict[str, Any]:
    """The canary's figures over its watch so far, and the guardrails it breaches (``done``: the watch has ended)."""
    policy = lifecycle_of(ctx.pack).canary
    since = _canary_since(ticket)
    until = since + timedelta(hours=policy.hours)
    end = min(ctx.moment, until)
    inputs, *_ = _inputs(ctx.store, ctx.pack, ctx.items, since, end)
    figures = window_figures(inputs)["models"].get(ticket["new_model_version"], {"lists": 0})
    breaches = []
    if figures.get("lists", 0) < policy.min_decisions:
        breaches.append(f"the canary served {figures.get('lists', 0)} lists, fewer than min_decisions {policy.min_decisions}")
    for rail in policy.guardrails:
        value = figures.get(rail.metric)
        if value is None:
            breaches.append(f"{rail.metric} could not be measured on the canary")
        elif rail.max is not None and value > rail.max:
            breaches.append(f"{rail.metric} {value:.4f} above the guardrail's max {rail.max:g}")
        elif rail.min is not None and value < rail.min:
            breaches.append(f"{rail.metric} {value:.4f} below the guardrail's min {rail.min:g}")
    return {"since": since.isoformat(), "until": until.isoformat(), "done": ctx.moment >= until, "figures": figures, "breaches": breaches}


def _watch(ctx: PipelineContext, ticket: dict[str, Any]) -> str | None:
    """Judge the canary once its watch has ended: roll back on a breach, else promote through the production gate. None: wait."""
    watched = watch_canary(ctx, ticket)
    if not watched["done"]:
        return None
    report = {"watch": {k: watched[k] for k in ("since", "until", "figures")}}
    if watched["breaches"]:
        return _roll_back(ctx, ticket, expect="canary", step="watch", reasons=watched["breaches"], report=report)
    try:
        moved = _move(ctx, ticket["new_model_version"], "production")
    except GateRefused as err:
        return _roll_back(ctx, ticket, expect="canary", step="promote", reasons=err.reasons, report={**report, "audit_id": err.audit_id})
    report = {**report, "audit_id": moved.get("audit_id"), "displaced": moved.get("displaced")}
    with ctx.store.session() as session:
        lock_head(session)
        erasures = _complete_erasures(session, ctx, ticket)
        advance_ticket(
            session, ticket["id"], step="promote", state="promoted", report={**report, **erasures}, now=ctx.moment, expect="canary", actor=ctx.actor
        )  # fmt: skip
    return "promoted"


def _recipe_key(recipe: dict[str, Any] | None) -> str | None:
    import json

    return None if recipe is None else json.dumps({k: recipe[k] for k in ("params", "random_state", "feedback")}, sort_keys=True)


def _complete_erasures(session: Any, ctx: PipelineContext, ticket: dict[str, Any]) -> dict[str, Any]:
    """Complete the erasure retrain requests an ``erasure_retrains`` ticket was opened for, now its model is promoted.

    The new model was trained through the pack's training filter, which leaves out erased
    subjects' events (:func:`governance.training.train_and_record`), with the recipe of the
    ticket's model: as :func:`governance.privacy.run_retrains` does, it replaces every model
    version a request lists that shares that recipe and that a run under the ticket's pack may
    retrain (trained by its consent rules, by none, or by rules the store cannot tell). A request still open whose every listed
    version is so replaced is completed (its result names the replacement); one listing a
    version of another recipe stays open (``erasure_requests_open`` says which versions it
    waits on: run ``recgov retrain run``). Runs in the caller's transaction, with the ticket's
    advance, so a crash completes both or neither.
    """
    from audits import list_requests, update_request
    from governance.privacy.retrains import pending_versions, retrained_under, training_recipe

    if ticket.get("kind") != "erasure_retrains":
        return {}
    wanted = {int(i) for i in (ticket.get("evidence") or {}).get("retrain_requests", [])}
    rows = list_requests(session, kind="retrain", open_only=True, ids=wanted)
    new_version = ticket["new_model_version"]
    key = _recipe_key(training_recipe(session, new_version))  # the recipe of the model it retrained (its own, reproduced)
    retired = set(deployed_versions(session)["retired"])
    completed, still_open = [], []
    for row in rows:
        models = list((row["result"] or {}).get("models", []))
        # what it still waits on: neither retired nor replaced by an earlier retrain run, as `retrain run` reads it
        # and, as `retrain run` groups them, only a version this run's consent rules may retrain: one another pack's
        # rules trained waits for a run under that pack (this model may have learned from subjects they left out)
        pending = pending_versions(row, retired)
        ours = set(retrained_under(session, pending, ctx.pack))
        left = [v for v in pending if key is None or v not in ours or _recipe_key(training_recipe(session, v)) != key]
        if left:
            still_open.append({"id": row["id"], "waits_on": left})
            continue
        result = {
            **(row["result"] or {}),
            "retrained": [{"version": new_version, "replaces": models}],
            "not_retrainable": [],
            "cannot_retrain": [],
            "policy_of_run": ctx.pack.stamp(),
            "retrain_ticket": ticket["id"],
        }
        if row["status"] == "received":
            update_request(session, row["id"], status="in_progress", actor=ctx.actor)
        update_request(session, row["id"], status="completed", result=result, actor=ctx.actor)
        completed.append(row["id"])
    return {"erasure_requests_completed": completed, "erasure_requests_open": still_open}


_NEXT_STEP = {"trained": "shadow", "shadow": "canary", "canary": "watch"}
"""The step a ticket in each state runs next, for the states where its new model is deployed or about to be."""


def _retired_meanwhile(ctx: PipelineContext, ticket: dict[str, Any]) -> str | None:
    """Roll the ticket back if its new model is retired already (retired by age, by hand, or by a run that crashed); else None.

    A retired model cannot move on (:func:`governance.deploy.promote` refuses it), so the ticket
    would otherwise fail at every run and never end.
    """
    version, step = ticket["new_model_version"], _NEXT_STEP.get(ticket["state"])
    if step is None or version is None or _stage(ctx.store, version) != "retired":
        return None
    reasons = [RETIRED_MEANWHILE.format(version=version)]
    return _roll_back(ctx, ticket, expect=ticket["state"], step=step, reasons=reasons, report={})


_STEPS = {
    "open": _train,
    "trained": lambda ctx, t: _advance(ctx, t["id"], step="shadow", expect="trained", state="shadow", report=_move(ctx, t["new_model_version"], "shadow")),
    "shadow": _to_canary,
    "canary": _watch,
}


def run_ticket(ctx: PipelineContext, ticket_id: str) -> dict[str, Any]:
    """Run ``ticket_id`` from its state until it is terminal or waits on the canary's watch; the ticket as it stands.

    ``waiting`` in the answer says the canary's watch has not ended (run again later: cron).
    """
    with ctx.store.session() as session:
        ticket = ticket_doc(get_ticket(session, ticket_id))
    while ticket["state"] not in TERMINAL_TICKET_STATES:
        state = _retired_meanwhile(ctx, ticket) or _STEPS[ticket["state"]](ctx, ticket)
        with ctx.store.session() as session:
            ticket = ticket_doc(get_ticket(session, ticket_id))
        if state is None:
            return {**ticket, "waiting": True, "watch": watch_canary(ctx, ticket)}
    return {**ticket, "waiting": False}
