"""One monitoring pass (``recgov monitor run``, ``POST /v1/monitor/runs``): read, compute, store, fire, retire.

:func:`run_monitor` reads the window ``[now - lifecycle.window_hours, now)``
from the store, computes its figures (:func:`governance.monitoring.window_figures`),
judges the pack's triggers on the production model (:mod:`governance.lifecycle.triggers`)
and, in ONE transaction, stores the pass (``monitor.run``) with the tickets its
firings open (``retrain.ticket_opened``). A pass for a window end already passed
under the same pack returns what was stored and opens nothing: cron may retry.
Then the pack's retirement criteria are applied (:mod:`governance.lifecycle.retirement`).

``now`` is injectable (simulated time in tests; the decisions' own times decide
what falls in the window), and defaults to the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import func, select

from audits.models import RetrainTicket
from audits.monitoring import evidence_key, failed_count, open_ticket, profiles_of, record_monitor_run, run_doc, window_decisions, window_outcomes
from governance.deploy import deployed_versions
from governance.lifecycle.facts import lifecycle_of, trained_at
from governance.lifecycle.triggers import ModelFacts, evaluate_triggers, unticketed_erasures
from governance.monitoring import WindowInputs, window_figures
from governance.policy import LoadedPack
from recommender.errors import DataError

__all__ = ["EARLY_PASS", "FUTURE_PASS", "run_monitor"]

FUTURE_PASS = "a monitoring pass cannot end in the future: --at {at} is after now ({now})"
EARLY_PASS = "a monitoring pass must end after {earliest}; got {at}"
EARLIEST = datetime(1980, 1, 1, tzinfo=UTC)
PROFILED = ("input_drift", "performance_drop", "prediction_skew")
"""Trigger kinds judged against the model's profile (its training data and offline evaluation)."""
NO_PROFILE = (
    "the production model {version} has no profile, so triggers {triggers} cannot be judged: "
    "record one with `recgov monitor profile {version} DATA --pack {pack}` (DATA: what it was trained on)"
)

NO_PRODUCTION_ERASURES = (
    "erasure retrain request(s) {requests} are due and no model version is in production, so no retrain ticket is "
    "opened (a ticket retrains the production model): run them with `recgov retrain run DATA --pack {pack}` "
    "(`recgov retrain due` says which pack each version is retrained under)"
)


def _inputs(store: Any, pack: LoadedPack, items: pd.DataFrame | None, start: datetime, end: datetime) -> tuple[WindowInputs, dict[str, list[str]], dict[str, datetime], dict[str, datetime]]:
    fairness = pack.pack.fairness
    with store.session() as session:
        decisions = window_decisions(session, start, end)
        outcomes = window_outcomes(session, start, end)
        failed = failed_count(session, start, end)
        stages = deployed_versions(session)
        served = sorted(set(decisions.frame["model_version"].dropna().astype(str)) if len(decisions.frame) else set())
        versions = sorted(set(served) | set(stages["production"]) | set(stages["canary"]))
        profiles = profiles_of(session, versions)
        trained = trained_at(session, versions)
        last = dict(session.execute(select(RetrainTicket.trigger_id, func.max(RetrainTicket.opened_at)).group_by(RetrainTicket.trigger_id)).all())
    inputs = WindowInputs(
        decisions.frame, outcomes, failed, decisions.unreadable, items, profiles,
        provider_attribute=fairness.provider_attribute or "provider_group", protected_provider_group=fairness.protected_provider_group,
    )  # fmt: skip
    return inputs, stages, trained, last


def run_monitor(store: Any, pack: LoadedPack, *, items: pd.DataFrame | None = None, now: datetime | None = None, actor: str | None = None) -> dict[str, Any]:
    """One monitoring pass ending at ``now``; the stored pass (``created``: False when it was stored before), its firings and retirements."""
    from governance.lifecycle.retirement import retire_models
    from governance.privacy import pending_retrains

    clock = datetime.now(UTC)
    end = clock if now is None else now
    if end.tzinfo is None:
        raise DataError(f"the pass's time must be aware (UTC); got {end!r}")
    if end > clock + timedelta(seconds=1):
        raise DataError(FUTURE_PASS.format(at=end.isoformat(), now=clock.isoformat()))
    if end < EARLIEST:
        raise DataError(EARLY_PASS.format(earliest=EARLIEST.date().isoformat(), at=end.isoformat()))
    section = lifecycle_of(pack)
    start = end - timedelta(hours=section.window_hours)
    inputs, stages, trained, last = _inputs(store, pack, items, start, end)
    figures = {**window_figures(inputs), "window_start": start.isoformat(), "window_end": end.isoformat(), "stages": {k: stages[k] for k in ("production", "canary")}}
    production = stages["production"][0] if stages["production"] else None
    needs_profile = sorted(t.id for t in section.triggers if t.kind in PROFILED)
    if production is not None and needs_profile and production not in inputs.profiles:
        figures["notes"] = [NO_PROFILE.format(version=production, triggers=", ".join(needs_profile), pack=pack.source)]
    erasures = pending_retrains(store, now=end)["pending"] if any(t.kind == "erasure_retrains" for t in section.triggers) else []
    facts = ModelFacts(production, trained.get(production or ""), last, erasures)
    firings = evaluate_triggers(section, figures, facts, end)
    waiting = unticketed_erasures(section, facts)
    if waiting:
        listed = ", ".join(f"#{i}" for i in waiting)
        figures["notes"] = [*figures.get("notes", []), NO_PRODUCTION_ERASURES.format(requests=listed, pack=pack.source)]
    with store.session() as session:
        run, created = record_monitor_run(session, window_start=start, window_end=end, stamp=pack.stamp(), metrics=figures, actor=actor)
        if created:
            fired = []
            for firing in firings:
                key = evidence_key(firing.trigger_id, firing.model_version, firing.identity)
                outcome = open_ticket(
                    session, trigger_id=firing.trigger_id, trigger_kind=firing.kind, model_version=firing.model_version,
                    evidence=firing.evidence, key=key, stamp=pack.stamp(), now=end, monitor_run_id=run.id, actor=actor,
                )  # fmt: skip
                fired.append({
                    "trigger": firing.trigger_id, "kind": firing.kind, "model_version": firing.model_version, "evidence": firing.evidence,
                    "ticket": outcome.ticket.id, "opened": outcome.opened, "reason": outcome.reason,
                })  # fmt: skip
            run.fired = fired
            session.flush()
        doc = run_doc(run)
    retired = retire_models(store, pack, figures=figures, now=end, actor=actor) if created else []
    return {**doc, "created": created, "retired": retired}
