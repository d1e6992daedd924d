"""Render the report document as one self-contained HTML page.

Inline CSS, plots as inline base64 PNG (matplotlib, Agg backend), no script and
no external URL: the page opens offline, in any browser, years from now. The
template is a string here, so the package needs no data files.

Every section is an ``<h2>`` with a stable id and every plot a
``<figure class="plot" data-plot="groups|exposure|popularity|carbon">``, so a
browser test (or a reader's tooling) can find them. Plots come from every audit
of the model, each captioned with its audit and pack. The executive summary and
the accountability sections are fragments of their own
(:mod:`governance.report.html_accountability`). Print rules (A4 pages, no
figure or table row split across pages) make the same page the PDF of
:mod:`governance.report.pdf`.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

from jinja2 import Environment, StrictUndefined

from governance.report.html_accountability import SECTIONS, SUMMARY
from governance.report.lifecycle import lifecycle_plot
from governance.report.tradeoff_section import TRADEOFF_SECTION

__all__ = ["plots", "render_html"]

Plot = dict[str, Any]  # {"title", "png" (base64) or None, "note"}


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width: float = 6.0, height: float = 3.2, columns: int = 1) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt.subplots(1, columns, figsize=(width, height))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _group_figures(evidence: dict[str, Any]) -> dict[str, tuple[float, float | None, float | None]]:
    """group -> (value, ci low, ci high) from ``groups`` / ``positive_rate`` evidence."""
    raw = evidence.get("groups") or evidence.get("positive_rate") or {}
    out: dict[str, tuple[float, float | None, float | None]] = {}
    for name, figure in raw.items() if isinstance(raw, dict) else ():
        if isinstance(figure, dict):
            value = _number(figure.get("value", figure.get("exposure_share")))
            ci = figure.get("ci") or figure.get("exposure_share_ci") or (None, None)
        else:
            value, ci = _number(figure), (None, None)
        if value is not None:
            low, high = (
                (_number(ci[0]), _number(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)
            )
            out[str(name)] = (value, low, high)
    return out


def _bars(
    title: str, figures: dict[str, tuple[float, float | None, float | None]], ylabel: str, xlabel: str = ""
) -> str:
    fig, ax = _figure()
    names = list(figures)
    values = [figures[n][0] for n in names]
    below = [max(0.0, v - (figures[n][1] if figures[n][1] is not None else v)) for n, v in zip(names, values)]
    above = [max(0.0, (figures[n][2] if figures[n][2] is not None else v) - v) for n, v in zip(names, values)]
    has_ci = any(figures[n][1] is not None or figures[n][2] is not None for n in names)
    ax.bar(names, values, color="#4c72b0", yerr=[below, above] if has_ci else None, capsize=4)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.tick_params(axis="x", labelrotation=30)
    return _png(fig)


def _group_plots(results: list[dict[str, Any]]) -> list[Plot]:
    out: list[Plot] = []
    for r in results:
        if r["check"] in ("exposure_share", "provider_exposure", "popularity_bias"):
            continue
        figures = _group_figures(r["evidence"])
        if len(figures) < 2:
            continue
        has_ci = any(low is not None for _, low, _ in figures.values())
        ev = r["evidence"]
        metric = ev.get("metric") or (
            "value" if ev.get("segment") else "positive rate" if "positive_rate" in ev else "value"
        )
        grouping = ev.get("attribute") or ev.get("segment") or "group"
        out.append(
            {
                "title": f"{r['rule_id']}: {metric} by group",
                "png": _bars(f"{r['rule_id']} ({r['check']})", figures, str(metric), f"group ({grouping})"),
                "note": "bars: point estimate; whiskers: confidence interval"
                if has_ci
                else "the evidence holds point values only (no confidence interval)",
            }
        )
    if not out:
        out.append({"title": "Group metrics", "png": None, "note": "no audit result holds per-group figures"})
    return out


def _exposure_plots(results: list[dict[str, Any]]) -> list[Plot]:
    out: list[Plot] = []
    for r in results:
        ev = r["evidence"]
        before, after = ev.get("before"), ev.get("after")
        if isinstance(before, dict) and isinstance(after, dict):
            groups = sorted(set(before) | set(after))
            fig, ax = _figure()
            xs = range(len(groups))
            ax.bar([x - 0.2 for x in xs], [_number(before.get(g)) or 0 for g in groups], 0.4, label="before re-ranking")
            ax.bar([x + 0.2 for x in xs], [_number(after.get(g)) or 0 for g in groups], 0.4, label="after re-ranking")
            ax.set_xticks(list(xs), groups)
            ax.set_ylabel("exposure share")
            ax.legend(fontsize=8)
            ax.set_title(f"{r['rule_id']}: exposure by provider group", fontsize=10)
            out.append({"title": f"{r['rule_id']}: exposure before/after re-ranking", "png": _png(fig), "note": ""})
        elif r["check"] == "exposure_share" and isinstance(ev.get("groups"), dict):
            figures = _group_figures(ev)
            if figures:
                out.append(
                    {
                        "title": f"{r['rule_id']}: exposure share by provider group",
                        "png": _bars(f"{r['rule_id']}: exposure share", figures, "exposure share"),
                        "note": "exposure of the served lists; the evidence holds no figures before re-ranking",
                    }
                )
        elif r["check"] == "provider_exposure" and isinstance(ev.get("groups"), dict):
            out += _ratio_plot(r["rule_id"], ev["groups"])
    if not out:
        out.append(
            {
                "title": "Exposure by provider group",
                "png": None,
                "note": "no audit result holds provider-group exposure (the pack has no exposure rule)",
            }
        )
    return out


def _ratio_plot(rule_id: str, groups: dict[str, Any]) -> list[Plot]:
    """Each provider group's exposure share over its relevance share, with the interval the audit recorded."""
    figures: dict[str, tuple[float, float | None, float | None]] = {}
    for name, g in groups.items():
        ratio = _number(g.get("exposure_ratio")) if isinstance(g, dict) else None
        ci = g.get("exposure_ratio_ci") if ratio is not None else None
        if ratio is not None:
            low, high = (_number(ci[0]), _number(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)
            figures[str(name)] = (ratio, low, high)
    if not figures:
        return []
    return [
        {
            "title": f"{rule_id}: exposure share over relevance share by provider group",
            "png": _bars(f"{rule_id}: exposure / relevance", figures, "exposure share / relevance share"),
            "note": "served lists; bars: point estimate, whiskers: confidence interval; 1 is exposure in proportion to relevance",
        }
    ]


def _popularity_plots(results: list[dict[str, Any]]) -> list[Plot]:
    out: list[Plot] = []
    for r in results:
        ev = r["evidence"]
        curve = ev.get("curve") or ev.get("popularity_curve")
        if isinstance(curve, list) and len(curve) > 1 and all(_number(v) is not None for v in curve):
            fig, ax = _figure()
            ax.plot(range(1, len(curve) + 1), curve, color="#c44e52")
            ax.set_xlabel("item rank by popularity")
            ax.set_ylabel("share of interactions")
            ax.set_title(f"{r['rule_id']}: popularity curve", fontsize=10)
            out.append({"title": f"{r['rule_id']}: popularity curve", "png": _png(fig), "note": ""})
        elif r["check"] == "popularity_bias":
            figures = {
                key: (v, *(ev.get(f"{key}_ci") or (None, None)))
                for key in ("arp", "arp_ratio", "long_tail_share", "recall_gap", "gini", "coverage")
                if (v := _number(ev.get(key))) is not None
            }
            if figures:
                out.append(
                    {
                        "title": f"{r['rule_id']}: popularity bias figures",
                        "png": _bars(f"{r['rule_id']}: popularity bias", figures, "value"),
                        "note": "summary figures from the evidence; the item popularity curve of the training data is not stored",
                    }
                )
    if not out:
        out.append(
            {
                "title": "Popularity curve",
                "png": None,
                "note": "not plotted: the item popularity of the training data is not stored, "
                "and no audit result holds popularity-bias figures",
            }
        )
    return out


def _carbon_plot(run: dict[str, Any]) -> Plot:
    kwh, kg = _number(run.get("energy_kwh")), _number(run.get("emissions_kg"))
    if kwh is None or kg is None:
        return {"title": "Energy and emissions", "png": None, "note": "not measured for this training run"}
    fig, (left, right) = _figure(6.0, 2.4, columns=2)
    left.bar(["energy"], [kwh], color="#55a868")
    left.set_ylabel("kWh")
    right.bar(["emissions"], [kg], color="#8c8c8c")
    right.set_ylabel("kg CO2eq")
    fig.suptitle("training run", fontsize=10)
    return {"title": "Energy and emissions", "png": _png(fig), "note": run.get("carbon_method") or ""}


_AUDIT_PLOTS = {"groups": _group_plots, "exposure": _exposure_plots, "popularity": _popularity_plots}


def plots(document: dict[str, Any]) -> dict[str, list[Plot]]:
    """Every plot of the report, from every audit of the model, each caption naming its audit and pack.

    A model gated under one pack and audited under another has its evidence in
    both audits, so each is plotted; a kind of plot no audit can draw is one note.
    """
    out: dict[str, list[Plot]] = {section: [] for section in _AUDIT_PLOTS}
    for audit in document["audit_runs"]:
        label = f"audit #{audit['id']}, pack {audit['policy_pack']} {audit['policy_version']}"
        for section, make in _AUDIT_PLOTS.items():
            out[section] += [{**pl, "title": f"{pl['title']} ({label})"} for pl in make(audit["results"]) if pl["png"]]
    for section, make in _AUDIT_PLOTS.items():
        out[section] = out[section] or make([])
    lifecycle = lifecycle_plot(document.get("lifecycle") or {}, _figure, _png)
    return {**out, "carbon": [_carbon_plot(document["training_run"])], "lifecycle": [lifecycle]}


def _raw(value: Any) -> str:
    """A figure as a data attribute holds it: unrounded, and empty when absent."""
    return "" if value is None else str(value)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


LIFECYCLE_SECTION = r"""{% set lc = d.get("lifecycle") or {} %}
<h2 id="lifecycle">15. Monitoring in service, retrains and retirement</h2>
{% for pl in figs.lifecycle %}{% if pl.png %}<figure class="plot" data-plot="lifecycle"><img alt="{{ pl.title }}" src="data:image/png;base64,{{ pl.png }}"><figcaption>{{ pl.title }}{% if pl.note %}: {{ pl.note }}{% endif %}</figcaption></figure>{% else %}<p class="note" data-note="monitoring">{{ pl.title }}: {{ pl.note }}.</p>{% endif %}{% endfor %}
{% if lc.series %}<table><tr><th>Window end</th><th>Lists</th><th>Click rate</th><th>Offline baseline</th><th>Provider gap</th><th>Input drift (PSI)</th></tr>
{% for x in lc.series[-12:] %}<tr><td>{{ x.window_end }}</td><td>{{ x.lists }}</td><td data-figure="monitor.{{ x.pass }}.click_rate" data-value="{{ raw(x.click_rate) }}">{{ fmt(x.click_rate) }}</td><td>{{ fmt(x.offline_hit_rate) }}</td><td data-figure="monitor.{{ x.pass }}.provider_gap" data-value="{{ raw(x.provider_gap) }}">{{ fmt(x.provider_gap) }}</td><td>{{ fmt(x.input_drift_psi) }}</td></tr>{% endfor %}</table>{% endif %}
{% if lc.tickets %}<table><tr><th>Retrain ticket</th><th>Trigger</th><th>This model</th><th>State</th><th>Opened</th></tr>
{% for x in lc.tickets %}<tr data-ticket="{{ x.id }}"><td class="hash">{{ x.id }}</td><td>{{ x.trigger }} ({{ x.kind }})</td><td>{{ x.role }}</td><td>{{ x.state }}</td><td>{{ x.opened_at }}</td></tr>{% endfor %}</table>
{% else %}<p class="note">No retrain ticket concerns this model.</p>{% endif %}
{% for x in lc.rolled_back %}<p data-rolled-back="{{ x.seq }}">Rolled back at the {{ x.step }} step (trail event {{ x.seq }}): {{ x.reasons|join("; ") }}.</p>{% endfor %}
{% for x in lc.retired %}<p data-retired="{{ x.seq }}"><strong>Retired</strong> from {{ x.stage }} (trail event {{ x.seq }}) because: {{ x.reasons|join("; ") }}{% if x.restored %}; {{ x.restored }} was restored to production{% endif %}.</p>{% endfor %}
"""


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Lineage report: {{ m.version_id }}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.45}
h1{border-bottom:3px solid #4c72b0}h2{border-bottom:1px solid #ccc;margin-top:2.2rem}
table{border-collapse:collapse;width:100%;margin:.6rem 0;font-size:.9rem}th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f9}code,.hash{font-family:ui-monospace,monospace;font-size:.85rem;word-break:break-all}.long{overflow-wrap:anywhere}
.pass{color:#1a7f37;font-weight:600}.fail,.error{color:#c62828;font-weight:600}.warn{color:#b26a00;font-weight:600}.skipped{color:#777}
.note{color:#555;font-style:italic}figure{margin:1rem 0}figcaption{font-size:.85rem;color:#555}
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto}img{max-width:100%;height:auto}
@page{size:A4;margin:14mm 12mm}
@media print{body{max-width:none;margin:0;padding:0;font-size:10pt}th{print-color-adjust:exact;-webkit-print-color-adjust:exact}
figure,tr,pre{break-inside:avoid}h1,h2,h3{break-after:avoid}pre{white-space:pre-wrap}}
</style></head><body>
<h1>Lineage report for model {{ m.version_id }}</h1>
<p>Generated {{ d.generated_at }} by recgov ({{ d.schema }}). This page is self-contained: it needs no software, network or account to read.
No data subject is named in it, not even by pseudonym: subjects appear as counts only.</p>
{% set ri = t.records %}{% if not ri.sound %}<div class="integrity-broken" data-integrity="broken"><p><strong class="fail">Records in this report no longer match the audit trail.</strong>
The figures below are read from the store; these records differ from what the trail recorded when they were written, so they are not proven by it (see section 10):</p>
<ul>{% for x in ri.problems %}<li>{{ x.record }}: {{ x.problem }}</li>{% endfor %}</ul></div>{% endif %}
""" + SUMMARY + r"""

<h2 id="system">1. The system and its purpose</h2>
<p>A recommender system ranking items for users from their interactions, governed by recgov: every model is trained on recorded data,
audited against a policy pack, and every step is written to a tamper-evident, signed audit trail.</p>
<table><tr><th>Model version</th><td class="hash">{{ m.version_id }}</td></tr>
<tr><th>Kind</th><td>{{ m.kind }}</td></tr>
<tr><th>Artifact hash</th><td class="hash">{{ m.artifact_hash }}</td></tr>
<tr><th>Recorded</th><td>{{ m.created_at }}</td></tr>
<tr><th>Deployment stage</th><td>{{ d.current_stage or "never deployed" }}</td></tr></table>
{% if d.deployments %}<table><tr><th>Stage</th><th>From</th><th>Changed at</th><th>Gated by</th><th>Pack hash</th><th>Gate audit</th><th>Trail seq</th></tr>
{% for x in d.deployments %}{% set g = x.get("gate") %}<tr><td>{{ x.stage }}</td><td>{{ x.previous_stage or "—" }}</td><td>{{ x.changed_at }}</td>
{% if g %}<td>{{ g.pack }} {{ g.pack_version }}{% if g.policy_id %} (deployment policy #{{ g.policy_id }}){% endif %}</td><td class="hash">{{ g.pack_hash }}</td><td>{{ "#" ~ g.audit_id if g.audit_id else "—" }}</td>
{% else %}<td colspan="3">{{ "no gate: shadow is never served" if x.stage == "shadow" else "not recorded" }}</td>{% endif %}<td>{{ x.trail_seq }}</td></tr>{% endfor %}</table>
<p class="note">Which pack gates canary and production is set by the installation's deployment policy, not by whoever promotes; each move names the pack (version and content hash) and the audit that allowed it.</p>{% endif %}
{% if d.experiments %}<h3 id="experiments">Experiments this model served in</h3>
<table><tr><th>Experiment</th><th>Status</th><th>Hypothesis</th><th>Primary metric</th><th>As variant</th><th>Last planned look</th><th>Plan hash</th></tr>
{% for e in d.experiments %}{% set l = e.last_planned_look %}<tr><td>{{ e.name }}</td><td>{{ e.status }}</td><td>{{ e.hypothesis }}</td><td>{{ e.primary_metric }}</td>
<td>{{ e.variants|join(", ") }}{% if e.control in e.variants %} (control){% endif %}</td>
<td>{% if l %}#{{ l.look }}: {{ l.verdict }}{% if l.winners %} (won: {{ l.winners|join(", ") }}){% endif %}, trail #{{ l.trail_seq }}{% else %}none yet{% endif %}</td><td class="hash">{{ e.plan_hash }}</td></tr>{% endfor %}</table>
<p class="note">Each plan was frozen (content hash, sample size) on the audit trail before any subject was exposed; only planned looks at the pre-registered primary metric count, exploratory ones are labelled as such.</p>{% endif %}

<h2 id="disclosure">2. DSA Art. 27 disclosure in force</h2>
{% if p %}{% set ds = p.disclosure %}
<p><strong>Main parameters.</strong> Recommendations come from {{ ds.model.kind }}: it learns {{ ds.model.what_it_learns }}.
It uses only these fields: {{ ds.inputs|join(", ") }}.{% if ds.not_used %} It never uses: {{ ds.not_used|join(", ") }}.{% endif %}</p>
<p><strong>Why the signals weigh as they do.</strong></p><ul>
{% for s in ds.signals %}<li>{{ s.signal }}: weight {{ s.weight }} ({{ s.why }})</li>{% endfor %}
{% if ds.rating_threshold is not none %}<li>a rating counts as interest only from {{ ds.rating_threshold }} stars up</li>{% endif %}</ul>
{% if ds.post_processing %}<p><strong>After the model.</strong></p><ul>{% for s in ds.post_processing %}<li>{{ s.what }}</li>{% endfor %}</ul>{% endif %}
{% if ds.blocked_content %}<p><strong>Never recommended.</strong> Content flagged as: {{ ds.blocked_content|join(", ") }}.</p>{% endif %}
<p><strong>Users' options.</strong></p><ul>{% for o in ds.options %}<li>{{ o }}</li>{% endfor %}</ul>
<p class="note">{{ ds.legal_reference }}</p>
{% else %}<p class="note">No policy pack was given and the audited pack could not be loaded: the disclosure is not included (run <code>recgov report MODEL --pack PACK</code>).</p>{% endif %}

<h2 id="policy">3. Policy pack</h2>
{% if p %}<table><tr><th>Pack in force</th><td>{{ p.pack }}</td></tr><tr><th>Version</th><td>{{ p.version }}</td></tr>
<tr><th>Content hash</th><td class="hash">{{ p.hash }}</td></tr>
<tr><th>Used by an audit of this model</th><td>{{ "yes" if p.audited else "no: this exact pack never audited this model" }}</td></tr></table>{% endif %}
{% if d.policy_history %}<p>Pack revisions that audited this model{% if d.policy_history|length > 1 %} (revision history){% endif %}:</p>
<table><tr><th>Pack</th><th>Version</th><th>Hash</th><th>Audits</th><th>First used</th><th>Last used</th></tr>
{% for h in d.policy_history %}<tr><td>{{ h.pack }}</td><td>{{ h.version }}</td><td class="hash">{{ h.hash }}</td><td>{{ h.audits }}</td><td>{{ h.first_used }}</td><td>{{ h.last_used }}</td></tr>{% endfor %}</table>
{% else %}<p class="note">This model has never been audited.</p>{% endif %}

<h2 id="data">4. Data</h2>
<table><tr><th>Name</th><th>Content hash</th><th>Events</th><th>Users</th><th>Items</th><th>Source</th><th>Recorded</th></tr>
<tr><td>{{ dv.name }}</td><td class="hash">{{ dv.content_hash }}</td><td>{{ dv.n_events }}</td><td>{{ dv.n_users }}</td><td>{{ dv.n_items }}</td><td class="long">{{ dv.source }}</td><td>{{ dv.created_at }}</td></tr></table>
{% for a in d.audit_runs %}{% set ad = (a.summary or {}).get("dataset") %}{% if ad %}<p>Audit #{{ a.id }} evaluated on {{ ad.name }} <span class="hash">{{ ad.version }}</span>: {{ ad.n_events }} events, {{ ad.n_users }} users, {{ ad.n_items }} items{% if ad.offline_evaluation %} ({{ ad.offline_evaluation }}){% endif %}.</p>{% endif %}{% endfor %}
<p>Training run {{ r.id }}: {{ r.started_at }} to {{ r.ended_at }}, code version <code>{{ r.code_version or "unknown" }}</code>.</p>
<table><tr><th>Library</th><th>Version</th></tr>{% for k, v in r.library_versions.items() %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>

<h2 id="consent">5. Consent basis and data minimization</h2>
{% if pf and not pf.get("purpose") %}<p>No consent filter was applied at training time; {{ pf.get("rules", "events were left out") }}:
{{ pf.events.excluded.get("erased", 0) }} of {{ pf.events.total }} events left out.</p>
{% elif pf %}<p>Training data was filtered for purpose <strong>{{ pf.purpose }}</strong> on the lawful basis <strong>{{ pf.lawful_basis }}</strong>
({{ pf.model }}{% if pf.legal_reference %}; {{ pf.legal_reference }}{% endif %}){% if pf.get("pack") %}, pack {{ pf.get("pack") }} {{ pf.get("pack_version", "") }}{% endif %}.</p>
<table><tr><th></th><th>Total</th><th>Kept</th>{% for reason in reasons %}<th>Excluded: {{ reason }}</th>{% endfor %}</tr>
{% for what in ("events", "subjects") %}{% set c = pf[what] %}<tr><th>{{ what }}</th><td>{{ c.total }}</td><td>{{ c.kept }}</td>{% for reason in reasons %}<td>{{ c.excluded.get(reason, 0) }}</td>{% endfor %}</tr>{% endfor %}</table>
{% if pf.reasons %}<ul>{% for k, v in pf.reasons.items() %}<li><strong>{{ k }}</strong>: {{ v }}</li>{% endfor %}</ul>{% endif %}
{% else %}<p class="note">No consent filter was applied at training time (the run's <code>privacy_filter</code> is empty): every event of the data set was used. The consent basis is the one stated by the pack for its purposes.</p>{% endif %}
{% if p %}{% if p.consent_purposes %}<table><tr><th>Purpose (pack {{ p.pack }})</th><th>Lawful basis</th><th>Model</th><th>Legal reference</th></tr>
{% for name, c in p.consent_purposes.items() %}<tr><td>{{ name }}</td><td>{{ c.lawful_basis }}</td><td>{{ c.model }}</td><td>{{ c.legal_reference or "—" }}</td></tr>{% endfor %}</table>
{% else %}<p class="note">The pack in force declares no consent purpose.</p>{% endif %}{% endif %}
<p>Fields the model used: {{ (d.model_inputs or [])|join(", ") or "not recorded" }}.</p>
{% if p %}<p>Fields excluded by minimization (never used by the model): {{ p.disclosure.not_used|join(", ") or "none listed by the pack" }}.</p>{% endif %}
{% for row in minimization %}<p>{{ row.rule_id }}: allowed {{ row.evidence.get("allowed", [])|join(", ") }}; forbidden present: {{ row.evidence.get("forbidden_present", [])|join(", ") or "none" }}; not allowed: {{ row.evidence.get("not_allowed", [])|join(", ") or "none" }}.</p>{% endfor %}

<h2 id="audits">6. Audit results</h2>
{% for a in d.audit_runs %}{% set c = (a.summary or {}).get("counts", {}) %}
<h3>Audit #{{ a.id }}: {{ a.policy_pack }} {{ a.policy_version }}: verdict <span class="{{ a.verdict }}">{{ a.verdict }}</span></h3>
<p>{{ a.started_at }} to {{ a.ended_at }}; {% for k, v in c.items() %}{{ k }} {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}; trail event {{ a.trail_seq }}.</p>
{% if (a.summary or {}).get("reasons") %}<ul>{% for x in a.summary.reasons %}<li>{{ x }}</li>{% endfor %}</ul>{% endif %}
<table><tr><th>Rule</th><th>Check</th><th>Severity</th><th>Status</th><th>Measured</th><th>Threshold</th><th>Legal reference</th><th>Message</th></tr>
{% for x in a.results %}<tr><td>{{ x.rule_id }}</td><td>{{ x.check }}</td><td>{{ x.severity }}</td><td class="{{ x.status }}">{{ x.status }}</td><td>{{ fmt(x.value) }}</td><td>{{ fmt(x.threshold) }}</td><td>{{ x.legal_reference or "—" }}</td><td>{{ x.message }}</td></tr>{% endfor %}</table>
{% else %}<p class="note">No audit of this model is recorded.</p>{% endfor %}
{% for section, title in (("groups", "Group metrics with confidence intervals"), ("exposure", "Exposure by provider group"), ("popularity", "Popularity")) %}
<h3 id="plots-{{ section }}">{{ title }}</h3>{% for pl in figs[section] %}{% if pl.png %}<figure class="plot" data-plot="{{ section }}"><img alt="{{ pl.title }}" src="data:image/png;base64,{{ pl.png }}"><figcaption>{{ pl.title }}{% if pl.note %}: {{ pl.note }}{% endif %}</figcaption></figure>{% else %}<p class="note">{{ pl.title }}: {{ pl.note }}.</p>{% endif %}{% endfor %}
{% endfor %}

<h2 id="carbon">7. Energy and emissions</h2>
{% if r.energy_kwh is not none %}<p>Training used {{ fmt(r.energy_kwh) }} kWh and emitted {{ fmt(r.emissions_kg) }} kg CO2eq ({{ r.carbon_method }}).</p>{% endif %}
{% for pl in figs.carbon %}{% if pl.png %}<figure class="plot" data-plot="carbon"><img alt="{{ pl.title }}" src="data:image/png;base64,{{ pl.png }}"><figcaption>{{ pl.title }}{% if pl.note %}: {{ pl.note }}{% endif %}</figcaption></figure>{% else %}<p class="note">{{ pl.title }}: {{ pl.note }}.</p>{% endif %}{% endfor %}

<h2 id="escalations">8. Escalations of harmful content</h2>
{% if d.escalations.by_status %}<table><tr><th>Status</th><th>Cases</th></tr>{% for k, v in d.escalations.by_status.items() %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>
<table><tr><th>Severity</th><th>Cases</th></tr>{% for k, v in d.escalations.by_severity.items() %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>
{% else %}<p>No escalation case is recorded.</p>{% endif %}

<h2 id="requests">9. Erasure and other data subject requests</h2>
<table><tr><th>Request</th><th>Received</th><th>In progress</th><th>Completed</th><th>Failed</th></tr>
{% for kind, c in d.subject_requests.items() %}<tr><td>{{ kind }}</td>{% for s in ("received", "in_progress", "completed", "failed") %}<td>{{ c.get(s, 0) }}</td>{% endfor %}</tr>{% endfor %}</table>
<p class="note">Counts only, over the whole store: no subject id or pseudonym is shown.</p>

<h2 id="trail">10. Audit trail and how to verify it</h2>
<table><tr><th>Trail head</th><td>event {{ t.head_seq }}, hash <span class="hash">{{ t.head_hash }}</span></td></tr>
{% set cv = t.checkpoint_verification %}
{% if t.checkpoint %}<tr><th>Latest verified checkpoint</th><td>event {{ t.checkpoint.seq }}, hash <span class="hash">{{ t.checkpoint.hash }}</span>, signed {{ t.checkpoint.time }}</td></tr>
<tr><th>Signing key id</th><td class="hash">{{ t.checkpoint.key_id }}</td></tr>
<tr><th>Verified with</th><td>{% if cv and cv.trusted_keys == "database" %}the keys the database holds only: this installation holds no key of its own, so whoever can write the database could have signed it{% else %}a key of this installation (its keys folder){% endif %}</td></tr>
{% if t.checkpoint.seq < t.head_seq %}<tr><th>Not yet signed</th><td>{{ t.head_seq - t.checkpoint.seq }} event(s) after the checkpoint</td></tr>{% endif %}
{% elif cv and cv.n_checkpoints %}<tr><th>Verified checkpoint</th><td>none: no stored checkpoint verifies with a trusted key</td></tr>
{% else %}<tr><th>Signed checkpoint</th><td>none yet: run <code>recgov trail checkpoint</code></td></tr>{% endif %}
{% if cv and cv.latest and not cv.latest.verified %}<tr><th>Latest stored checkpoint: NOT verified</th><td>event {{ cv.latest.seq }}, hash <span class="hash">{{ cv.latest.hash }}</span>, signed {{ cv.latest.time }}: {{ cv.latest.reason }}. It is not proof; run <code>recgov trail verify</code>.</td></tr>{% endif %}</table>
<p data-integrity="{{ "sound" if ri.sound else "broken" }}">Records checked against the trail: {{ ri.checked }} ({{ ri.scope }}).
{% if ri.sound %}Each still says what its trail event recorded.{% else %}<strong class="fail">{{ ri.problems|length }} problem(s)</strong>: {% for x in ri.problems %}{{ x.record }}: {{ x.problem }}{% if not loop.last %}; {% endif %}{% endfor %}. A checkpoint proves the chain, not these records.{% endif %}</p>
<p>Trail events that recorded this model's lineage:</p>
<table><tr><th>Seq</th><th>Time</th><th>Action</th><th>Hash</th></tr>{% for e in t.events %}<tr><td>{{ e.seq }}</td><td>{{ e.time }}</td><td>{{ e.action }}</td><td class="hash">{{ e.hash }}</td></tr>{% endfor %}</table>
<p>To verify offline, ask the operator for an export and, by a separate channel, the public key of key <span class="hash">{{ t.checkpoint.key_id if t.checkpoint else "KEY_ID" }}</span>:</p>
<pre>recgov trail export trail.jsonl                      # operator: writes the trail, checkpoints and public keys
recgov trail verify-export trail.jsonl --public-key KEY.pem   # auditor: no database needed</pre>
<p>The export verifies when its hash chain is intact and reaches a checkpoint signed by that key; the events above must then appear in it with the same hashes.</p>
""" + SECTIONS + LIFECYCLE_SECTION + TRADEOFF_SECTION + r"""
</body></html>
"""


def render_html(document: dict[str, Any]) -> str:
    """The report as one HTML page (autoescaped; no script, no external URL)."""
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(_TEMPLATE)
    pf = document.get("privacy_filter")
    reasons = sorted({*pf["events"].get("excluded", {}), *pf["subjects"].get("excluded", {})}) if pf else []
    latest = document["audit_runs"][-1]["results"] if document["audit_runs"] else []
    return template.render(
        d=document,
        m=document["model_version"],
        r=document["training_run"],
        dv=document["dataset_version"],
        p=document.get("policy"),
        t=document["trail"],
        pf=pf,
        reasons=reasons,
        minimization=[x for x in latest if x["check"] == "input_allowlist"],
        figs=plots(document),
        fmt=_fmt,
        raw=_raw,
    )
