"""The report's section on the model in service: monitoring's time series, the retrains it opened, and retirement.

:func:`lifecycle_evidence` reads, for one model version, the figures of every
monitoring pass that saw it serve (oldest first, at most :data:`MAX_PASSES`), the
retrain tickets about it or that produced it, and the trail's ``model.retired``
and ``lifecycle.rolled_back`` events naming it with their reasons.
:func:`lifecycle_plot` draws the series the regulator reads first: the click
rate against the offline baseline, the provider exposure gap, and input drift.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from audits.models import MonitorRun, RetrainTicket, TrailEvent

__all__ = ["MAX_PASSES", "SERIES", "lifecycle_evidence", "lifecycle_plot"]

MAX_PASSES = 200
SERIES = ("lists", "click_rate", "offline_hit_rate", "provider_gap", "exposure_gini", "input_drift_psi", "prediction_skew_ks", "harmful_share")


def _payload(event: TrailEvent) -> dict[str, Any]:
    value = event.payload
    return json.loads(value) if isinstance(value, str) else dict(value or {})


def _objects(event: TrailEvent) -> dict[str, Any]:
    value = event.objects
    return json.loads(value) if isinstance(value, str) else dict(value or {})


def lifecycle_evidence(session: Session, model_version: str) -> dict[str, Any]:
    """``{"series": [...], "tickets": [...], "retired": [...], "rolled_back": [...]}`` for ``model_version``."""
    runs = session.scalars(select(MonitorRun).order_by(MonitorRun.window_end.desc(), MonitorRun.id.desc()).limit(5 * MAX_PASSES)).all()
    series = []
    for run in reversed(runs):
        figures = (run.metrics or {}).get("models", {}).get(model_version)
        if figures:
            series.append({"pass": run.id, "window_end": run.window_end.isoformat(), **{k: figures.get(k) for k in SERIES}})
    tickets = session.scalars(
        select(RetrainTicket).where(or_(RetrainTicket.model_version_id == model_version, RetrainTicket.new_model_version == model_version)).order_by(RetrainTicket.opened_at)
    ).all()
    events = session.scalars(select(TrailEvent).where(TrailEvent.action.in_(("model.retired", "lifecycle.rolled_back"))).order_by(TrailEvent.seq)).all()
    mine = [e for e in events if _objects(e).get("model") == model_version]
    return {
        "series": series[-MAX_PASSES:],
        "tickets": [
            {"id": t.id, "trigger": t.trigger_id, "kind": t.trigger_kind, "state": t.state, "opened_at": t.opened_at.isoformat(),
             "role": "retrained" if t.model_version_id == model_version else "produced", "evidence": t.evidence}
            for t in tickets
        ],  # fmt: skip
        "retired": [{"seq": e.seq, "time": e.time, **{k: _payload(e).get(k) for k in ("stage", "reasons", "restored")}} for e in mine if e.action == "model.retired"],
        "rolled_back": [{"seq": e.seq, "time": e.time, **{k: _payload(e).get(k) for k in ("step", "reasons")}} for e in mine if e.action == "lifecycle.rolled_back"],
    }


def lifecycle_plot(evidence: dict[str, Any], figure: Any, png: Any) -> dict[str, Any]:
    """The time series as a plot (``figure`` and ``png`` are the report's matplotlib helpers)."""
    series = evidence.get("series") or []
    title = "Monitoring in service"
    if len(series) < 1:
        return {"title": title, "png": None, "note": "no monitoring pass has seen this model serve"}
    import pandas as pd

    frame = pd.DataFrame(series)
    frame["window_end"] = pd.to_datetime(frame["window_end"], utc=True)
    fig, (left, right) = figure(7.5, 2.8, columns=2)
    for name, style in (("click_rate", "o-"), ("offline_hit_rate", "--")):
        values = pd.to_numeric(frame[name], errors="coerce")
        if values.notna().any():
            left.plot(frame["window_end"], values, style, label=name.replace("_", " "))
    left.set_title("clicks per served item", fontsize=9)
    left.legend(fontsize=7)
    for name, style in (("provider_gap", "o-"), ("input_drift_psi", "s-")):
        values = pd.to_numeric(frame[name], errors="coerce")
        if values.notna().any():
            right.plot(frame["window_end"], values, style, label=name.replace("_", " "))
    right.set_title("exposure gap and input drift", fontsize=9)
    right.legend(fontsize=7)
    for axis in (left, right):
        axis.tick_params(axis="x", labelrotation=30, labelsize=7)
    return {"title": title, "png": png(fig), "note": f"{len(series)} pass(es), each over the pack's window"}
