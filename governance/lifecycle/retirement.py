"""Retirement: a deployed model version that meets one of the pack's criteria is taken out of serving.

Criteria (the pack's ``lifecycle.retirement``): trained longer ago than
``max_age_days``; a click rate in the latest window below ``min_click_rate``
(judged on at least :data:`MIN_SERVED` served items); an erasure retrain that
still lists it past its deadline (``erasure_overdue``: it holds erased
subjects' data); displaced from production longer ago than ``superseded_days``.

A retired version's deployment moves to ``retired`` (final), and a
``model.retired`` trail event says why; the regulator's report lists them.
When the version is in production, the previous production version comes back
(:func:`governance.deploy.rollback`) if it meets no criterion itself and the
rollback is allowed; otherwise production is left empty and serving refuses
personalised lists (fail closed) rather than serve a model the pack retired.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from audits.lineage import record_deployment
from audits.models import Deployment
from audits.trail import append_event, lock_head
from governance.policy import LoadedPack
from recommender.errors import ConfigError

__all__ = ["MIN_SERVED", "retirement_reasons", "retire_models"]

MIN_SERVED = 100
"""A click rate is judged on at least this many served items."""


def _latest(session: Any) -> dict[str, Deployment]:
    latest: dict[str, Deployment] = {}
    for row in session.scalars(select(Deployment).order_by(Deployment.id)):
        latest[row.model_version_id] = row
    return latest


def retirement_reasons(store: Any, pack: LoadedPack, *, figures: dict[str, Any], now: datetime) -> dict[str, list[str]]:
    """Each deployed (not retired) version that meets a criterion, with every criterion it meets, in words."""
    from governance.lifecycle.facts import lifecycle_of, trained_at
    from governance.privacy import pending_retrains

    policy = lifecycle_of(pack).retirement
    with store.session() as session:
        latest = {mv: row for mv, row in _latest(session).items() if row.stage != "retired"}
        trained = trained_at(session, sorted(latest))
    overdue: set[str] = set()
    if policy.erasure_overdue and latest:
        overdue = {v for e in pending_retrains(store, now=now)["pending"] if e["overdue"] for v in e["models"]}
    reasons: dict[str, list[str]] = {}
    for mv, row in sorted(latest.items()):
        why = []
        if policy.max_age_days is not None and mv in trained:
            age = (now - trained[mv]).total_seconds() / 86400
            if age > policy.max_age_days:
                why.append(f"trained {age:.1f} days ago, more than max_age_days {policy.max_age_days:g}")
        model = figures.get("models", {}).get(mv, {})
        if policy.min_click_rate is not None and (model.get("served") or 0) >= MIN_SERVED and model.get("click_rate") is not None:
            if model["click_rate"] < policy.min_click_rate:
                why.append(f"click rate {model['click_rate']:.4f} over {model['served']} served items, below min_click_rate {policy.min_click_rate:g}")
        if mv in overdue:
            why.append("an erasure retrain that lists it is past its deadline (it was trained on erased subjects' data)")
        if policy.superseded_days is not None and row.stage == "shadow" and row.previous_stage == "production":
            days = (now - row.changed_at).total_seconds() / 86400
            if days > policy.superseded_days:
                why.append(f"displaced from production {days:.1f} days ago, more than superseded_days {policy.superseded_days:g}")
        if why:
            reasons[mv] = why
    return reasons


def retire_models(store: Any, pack: LoadedPack, *, figures: dict[str, Any], now: datetime, actor: str | None = None) -> list[dict[str, Any]]:
    """Retire every deployed version that meets a criterion; what was retired, from which stage, why, and what came back."""
    from audits._common import actor_name
    from governance.deploy import rollback

    reasons = retirement_reasons(store, pack, figures=figures, now=now)
    done = []
    for mv, why in reasons.items():
        restored = None
        with store.session() as session:
            lock_head(session)
            row = _latest(session).get(mv)
            if row is None or row.stage == "retired":
                continue
            stage = row.stage
        if stage == "production":
            from governance.deploy import status

            waiting = [d["model_version"] for d in status(store)["shadow"] if d["previous"]]
            if waiting and waiting[0] not in reasons:  # rollback restores exactly this one
                try:
                    restored = rollback(store, actor=actor)["restored"]
                except ConfigError as err:  # refused (gated under another pack, its file changed): retire all the same
                    why = [*why, f"{waiting[0]} was not restored ({err}): production is left empty"]
        with store.session() as session:
            lock_head(session)
            if _latest(session)[mv].stage != "retired":
                record_deployment(session, model_version=mv, stage="retired", actor=actor)
            append_event(
                session, actor=actor_name(actor), action="model.retired", objects={"model": mv},
                payload={"stage": stage, "reasons": why, "restored": restored, "policy": f"{pack.name}@{pack.version}", "at": now.isoformat()},
            )  # fmt: skip
        done.append({"model_version": mv, "stage": stage, "reasons": why, "restored": restored})
    return done
