"""Which of the pack's triggers a monitoring pass fires, and with what evidence. Pure: no I/O.

Each trigger is judged on the production model's figures of the window
(:func:`governance.monitoring.window_figures`) and a few facts the pass reads
from the store (:class:`ModelFacts`: when the model was trained, when this
trigger last opened a ticket, the erasure retrains still open). A firing names
its evidence: the figures it read, the bound, and the window; the evidence's
*identity* (the window, or the erasure requests) keys the ticket, so a pass
retried on the same evidence opens nothing new (:func:`audits.monitoring.evidence_key`).

A performance trigger fires only with confidence: the window's clicks (of the
items served) are tested against ``baseline * (1 - min_drop)`` with a one-sided
exact binomial test (:func:`scipy.stats.binomtest`, alternative ``less``), at
``1 - confidence``. The baseline is the model's offline hit rate at the same
list length (its profile, :func:`governance.monitoring.build_profile`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scipy.stats import binomtest

from governance.lifecycle_section import LifecycleSection

__all__ = ["Firing", "ModelFacts", "evaluate_triggers", "unticketed_erasures"]


@dataclass(frozen=True)
class ModelFacts:
    """What the store says about the production model, beside the window's figures."""

    model_version: str | None
    trained_at: datetime | None = None
    last_ticket_at: Mapping[str, datetime] = field(default_factory=dict)
    """Per trigger id, when it last opened a ticket (for schedules)."""
    erasure_retrains: Sequence[Mapping[str, Any]] = ()
    """Open erasure retrains (:func:`governance.privacy.pending_retrains`'s entries)."""


@dataclass(frozen=True)
class Firing:
    """A trigger that fired: what it read, and what identifies the evidence (the ticket's key)."""

    trigger_id: str
    kind: str
    model_version: str | None
    evidence: dict[str, Any]
    identity: dict[str, Any]


def _window(figures: Mapping[str, Any]) -> dict[str, Any]:
    return {"window_start": figures.get("window_start"), "window_end": figures.get("window_end")}


def _value(model: Mapping[str, Any], name: str) -> float | None:
    value = model.get(name)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _judge(trigger: Any, model: Mapping[str, Any], facts: ModelFacts, now: datetime, window: dict[str, Any]) -> Firing | None:
    kind, mv = trigger.kind, facts.model_version
    fire = lambda evidence, identity=None: Firing(trigger.id, kind, mv, {**evidence, **window}, identity or window)  # noqa: E731
    if kind == "input_drift":
        psi, n = _value(model, "input_drift_psi"), int(model.get("feedback_events") or 0)
        if psi is not None and n >= trigger.min_events and psi > trigger.max_psi:
            return fire({"input_drift_psi": psi, "max_psi": trigger.max_psi, "feedback_events": n})
    elif kind == "performance_drop":
        baseline, served = _value(model, "offline_hit_rate"), int(model.get("served") or 0)
        hits = int(model.get("clicks" if trigger.metric == "click_rate" else "conversions") or 0)
        if baseline is not None and baseline > 0 and served >= trigger.min_served:
            bound = baseline * (1 - trigger.min_drop)
            p_value = float(binomtest(hits, served, bound, alternative="less").pvalue)
            if p_value < 1 - trigger.confidence:
                return fire({
                    trigger.metric: round(hits / served, 6), "hits": hits, "served": served, "offline_baseline": baseline,
                    "bound": round(bound, 6), "p_value": p_value, "confidence": trigger.confidence,
                })  # fmt: skip
    elif kind == "prediction_skew":
        ks, n = _value(model, "prediction_skew_ks"), int(model.get("scores") or 0)
        if ks is not None and n >= trigger.min_scores and ks > trigger.max_ks:
            return fire({"prediction_skew_ks": ks, "max_ks": trigger.max_ks, "scores": n})
    elif kind == "exposure_regression":
        value, lists = _value(model, trigger.metric), int(model.get("lists") or 0)
        if value is not None and lists >= trigger.min_decisions:
            if (trigger.max is not None and value > trigger.max) or (trigger.min is not None and value < trigger.min):
                return fire({trigger.metric: value, "max": trigger.max, "min": trigger.min, "lists": lists})
    elif kind == "staleness":
        if facts.trained_at is not None:
            age = (now - facts.trained_at).total_seconds() / 86400
            if age > trigger.max_days:
                return fire({"age_days": round(age, 3), "max_days": trigger.max_days}, {"trained_at": facts.trained_at.isoformat()})
    elif kind == "schedule":
        since = facts.last_ticket_at.get(trigger.id) or facts.trained_at
        if since is not None and (now - since).total_seconds() / 86400 >= trigger.every_days:
            return fire({"since": since.isoformat(), "every_days": trigger.every_days}, {"since": since.isoformat()})
    elif kind == "erasure_retrains":
        due = sorted(int(e["id"]) for e in facts.erasure_retrains if float(e["days_left"]) <= trigger.within_days)
        if due:
            return fire({"retrain_requests": due, "within_days": trigger.within_days}, {"retrain_requests": due})
    return None


def evaluate_triggers(section: LifecycleSection, figures: Mapping[str, Any], facts: ModelFacts, now: datetime) -> list[Firing]:
    """The triggers of ``section`` that fire on the production model's figures (in pack order).

    ``figures`` is a pass's figures with its window (``window_start``, ``window_end``);
    with no production model none fires: every ticket retrains the production model (an erasure retrains
    ticket too: it would fail with nothing to retrain, and each new set of due requests would open another;
    :func:`unticketed_erasures` names the requests ``recgov retrain run`` runs instead).
    """
    model = figures.get("models", {}).get(facts.model_version or "", {})
    window = _window(figures)
    fired = []
    for trigger in section.triggers:
        if facts.model_version is None:
            continue
        firing = _judge(trigger, model, facts, now, window)
        if firing is not None:
            fired.append(firing)
    return fired


def unticketed_erasures(section: LifecycleSection, facts: ModelFacts) -> list[int]:
    """The erasure retrain requests an ``erasure_retrains`` trigger would open a ticket for, were a model in
    production (with none, no ticket can run: ``recgov retrain run`` retrains the versions they list)."""
    if facts.model_version is not None:
        return []
    within = [t.within_days for t in section.triggers if t.kind == "erasure_retrains"]
    if not within:
        return []
    return sorted(int(e["id"]) for e in facts.erasure_retrains if float(e["days_left"]) <= max(within))
