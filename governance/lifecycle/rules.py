"""Prometheus alerting rules from the pack's triggers and the canary's guardrails (``recgov monitor rules``).

Every expression reads only series that recgov exports on ``GET /metrics``
(:data:`EXPORTED`, from the latest monitoring pass: :mod:`governance.api.routes.monitor`),
so the rules work as soon as Prometheus scrapes the API. A rule's name comes
from the trigger's id; its annotations say which pack and trigger it encodes.

The performance trigger's alert compares the point estimates (the click rate
against the offline baseline times ``1 - min_drop``); the monitoring pass
applies the binomial test before it opens a ticket, so an alert may come a
window before the ticket. Schedules alert nothing (they are not a symptom);
instead every pack gets a rule that fires when no pass has run for two windows.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from governance.lifecycle_section import LifecycleSection
from governance.policy import LoadedPack

__all__ = ["EXPORTED", "alerting_rules", "metric_names", "rules_yaml"]

FIGURE = "recgov_monitor_figure"
LAST_PASS = "recgov_monitor_last_pass_timestamp_seconds"
TRAINED = "recgov_model_trained_timestamp_seconds"
TICKETS = "recgov_retrain_tickets"
ERASURES_OVERDUE = "recgov_erasure_retrains_overdue"
EXPORTED = (FIGURE, LAST_PASS, TRAINED, TICKETS, ERASURES_OVERDUE)
"""The series the monitoring collector exports (and the only ones these rules read)."""


def _name(pack: LoadedPack, suffix: str) -> str:
    words = re.split(r"[^A-Za-z0-9]+", f"recgov {suffix}")
    return "".join(w[:1].upper() + w[1:] for w in words if w)


def _figure(name: str, stage: str) -> str:
    return f'{FIGURE}{{figure="{name}",stage="{stage}"}}'


def _rule(pack: LoadedPack, alert: str, expr: str, summary: str, *, trigger: str | None = None, severity: str = "warning", hold: str = "0m") -> dict[str, Any]:
    labels = {"severity": severity, "pack": pack.name}
    if trigger is not None:
        labels["trigger"] = trigger
    return {
        "alert": alert,
        "expr": expr,
        "for": hold,
        "labels": labels,
        "annotations": {"summary": summary, "pack": f"{pack.name}@{pack.version} ({pack.content_hash[:12]})"},
    }


def alerting_rules(pack: LoadedPack) -> dict[str, Any]:
    """The rule file (``groups``) for ``pack``'s lifecycle section (the defaults when it declares none)."""
    section = pack.pack.lifecycle or LifecycleSection()
    rules = []
    for t in section.triggers:
        alert = _name(pack, t.id)
        if t.kind == "input_drift":
            rules.append(_rule(pack, alert, f"{_figure('input_drift_psi', 'production')} > {t.max_psi}", f"feedback drifted from the training data (PSI above {t.max_psi})", trigger=t.id))
        elif t.kind == "performance_drop":
            figure = t.metric
            expr = f"{_figure(figure, 'production')} < on(model_version) ({_figure('offline_hit_rate', 'production')} * {1 - t.min_drop:.6g})"
            rules.append(_rule(pack, alert, expr, f"{figure} more than {t.min_drop:.0%} below the offline baseline", trigger=t.id))
        elif t.kind == "prediction_skew":
            rules.append(_rule(pack, alert, f"{_figure('prediction_skew_ks', 'production')} > {t.max_ks}", f"served scores differ from offline scores (KS above {t.max_ks})", trigger=t.id))
        elif t.kind == "exposure_regression":
            op, bound = (">", t.max) if t.max is not None else ("<", t.min)
            rules.append(_rule(pack, alert, f"{_figure(t.metric, 'production')} {op} {bound}", f"{t.metric} {op} {bound} on the served lists", trigger=t.id))
        elif t.kind == "staleness":
            rules.append(_rule(pack, alert, f'(time() - {TRAINED}{{stage="production"}}) / 86400 > {t.max_days}', f"the production model is more than {t.max_days:g} days old", trigger=t.id))
        elif t.kind == "erasure_retrains":
            rules.append(_rule(pack, alert, f"{ERASURES_OVERDUE} > 0", "an erasure retrain is past its deadline", trigger=t.id, severity="critical"))
    for index, rail in enumerate(section.canary.guardrails):
        op, bound = (">", rail.max) if rail.max is not None else ("<", rail.min)
        rules.append(_rule(pack, _name(pack, f"canary {rail.metric} {index}"), f"{_figure(rail.metric, 'canary')} {op} {bound}", f"the canary breaches its guardrail: {rail.metric} {op} {bound}"))
    stalled = 2 * section.window_hours * 3600
    rules.append(_rule(pack, _name(pack, "monitoring stalled"), f"absent({LAST_PASS}) or (time() - {LAST_PASS}) > {stalled:g}", "no monitoring pass for two windows"))
    rules.append(_rule(pack, _name(pack, "retrain failed"), f'{TICKETS}{{state="failed"}} > 0', "a retrain ticket failed; read its steps (recgov lifecycle tickets)"))
    return {"groups": [{"name": f"recgov-{pack.name}", "rules": rules}]}


def rules_yaml(pack: LoadedPack) -> str:
    """:func:`alerting_rules` as the YAML Prometheus reads (``rule_files``)."""
    return yaml.safe_dump(alerting_rules(pack), sort_keys=False, width=200)


def metric_names(document: dict[str, Any]) -> set[str]:
    """Every ``recgov_*`` series a rule file reads."""
    return {name for group in document["groups"] for rule in group["rules"] for name in re.findall(r"\brecgov_[a-z_]+\b", rule["expr"])}
