"""The report's executive summary and accountability sections, as Jinja fragments of the page.

:mod:`governance.report.html` splices :data:`SUMMARY` after the page's title
and :data:`SECTIONS` after its last numbered section; they render the
document's ``executive_summary`` and ``accountability`` parts (see
:mod:`governance.report.accountability`). Every figure a reader might check
carries ``data-figure="NAME" data-value="RAW"`` (the unrounded value), so tools
and tests read the page's figures back without parsing prose; a section the
pack does not declare is a ``data-missing`` note, never an invented value.
"""

from __future__ import annotations

__all__ = ["SECTIONS", "SUMMARY"]

SUMMARY = r"""<h2 id="summary">Executive summary</h2>
<div class="summary">{% for s in d.executive_summary %}<p data-summary="{{ loop.index }}">{{ s }}</p>{% endfor %}</div>
"""

SECTIONS = r"""{% set ac = d.accountability %}
<h2 id="accountability">11. Controller, data protection officer and model card</h2>
{% for key, title in (("controller", "Controller"), ("dpo", "Data protection officer")) %}{% set who = ac[key] %}
{% if who %}<table><tr><th colspan="2">{{ title }}</th></tr>{% for field, value in who.items() %}<tr><th>{{ field }}</th><td data-figure="{{ key }}.{{ field }}" data-value="{{ raw(value) }}">{{ value }}</td></tr>{% endfor %}</table>
{% else %}<p class="note" data-missing="{{ key }}">{{ title }}: not declared by {{ "the pack in force" if p else "any pack (no pack in force was found)" }}; add a <code>{{ key }}</code> section to the pack.</p>{% endif %}{% endfor %}
{% set mc = ac.model_card %}{% if mc %}<p><strong>Intended use.</strong> {{ mc.intended_use }}</p>
<p><strong>Out of scope.</strong></p><ul>{% for x in mc.out_of_scope_use %}<li>{{ x }}</li>{% else %}<li>none listed</li>{% endfor %}</ul>
<p><strong>Limitations.</strong></p><ul>{% for x in mc.limitations %}<li>{{ x }}</li>{% else %}<li>none listed</li>{% endfor %}</ul>
{% else %}<p class="note" data-missing="model_card">Model card: intended use, out-of-scope use and limitations are not declared by {{ "the pack in force" if p else "any pack" }}; add a <code>model_card</code> section to the pack.</p>{% endif %}
<h3 id="headline-metrics">Headline metrics and their baselines</h3>
{% if ac.headline_metrics %}<table><tr><th>Rule</th><th>Audit</th><th>Metric or check</th><th>Model</th><th>Baseline</th><th>Baseline value</th><th>Threshold</th><th>Status</th></tr>
{% for x in ac.headline_metrics %}<tr><td>{{ x.rule_id }}</td><td>#{{ x.audit_id }} ({{ x.pack }})</td><td>{{ x.metric }}</td><td data-figure="metric.{{ x.rule_id }}.value" data-value="{{ raw(x.value) }}">{{ fmt(x.value) }}</td><td>{{ x.baseline or "—" }}</td><td data-figure="metric.{{ x.rule_id }}.baseline" data-value="{{ raw(x.baseline_value) }}">{{ fmt(x.baseline_value) }}</td><td>{{ fmt(x.threshold) }}</td><td class="{{ x.status }}">{{ x.status }}</td></tr>{% endfor %}</table>
{% else %}<p class="note" data-missing="headline_metrics">No audit of this model measured a quality rule.</p>{% endif %}

<h2 id="timeliness">12. Timeliness of subject requests and notice-and-action</h2>
{% set tm = ac.timeliness %}<p>Against each request's deadline and each case's due time, as of {{ tm.as_of }} (store-wide counts).</p>
<table><tr><th>What</th><th>Total</th><th>On time</th><th>Late</th><th>Open</th><th>Open past due</th><th>Failed</th></tr>
{% for kind, c in tm.subject_requests.items() %}<tr><td>{{ kind }} requests</td>{% for k in ("total", "on_time", "late", "open", "open_overdue", "failed") %}<td data-figure="requests.{{ kind }}.{{ k }}" data-value="{{ raw(c[k]) }}">{{ c[k] }}</td>{% endfor %}</tr>{% endfor %}
{% set c = tm.notice_and_action %}<tr><td>notice-and-action cases</td>{% for k in ("total", "on_time", "late", "open", "open_overdue", "failed") %}<td data-figure="notice_and_action.{{ k }}" data-value="{{ raw(c[k]) }}">{{ c[k] }}</td>{% endfor %}</tr></table>
{% if not tm.subject_requests %}<p class="note">No data subject request is recorded.</p>{% endif %}

<h2 id="non-profiling">13. The option not based on profiling (DSA Art. 38)</h2>
{% set dm = ac.decisions %}{% if dm.decisions %}<p>Of the <span data-figure="decisions" data-value="{{ raw(dm.decisions) }}">{{ dm.decisions }}</span> lists this model served,
<span data-figure="non_profiling" data-value="{{ raw(dm.non_profiling) }}">{{ dm.non_profiling }}</span> were not based on profiling:
<strong data-figure="non_profiling_share" data-value="{{ raw(dm.non_profiling_share) }}">{{ "%.1f"|format(100 * dm.non_profiling_share) }}%</strong>.</p>
<table><tr><th>How the list was made</th><th>Lists</th></tr>{% for mode, n in dm.by_mode.items() %}<tr><td>{{ mode }}</td><td data-figure="mode.{{ mode }}" data-value="{{ raw(n) }}">{{ n }}</td></tr>{% endfor %}</table>
{% else %}<p class="note" data-missing="decisions">This model has served no list yet: the share not based on profiling cannot be measured.</p>{% endif %}

<h2 id="systemic-risks">14. Systemic risks and their mitigation (DSA Art. 34 and 35)</h2>
{% if ac.systemic_risks is not none %}{% for k in ac.systemic_risks %}
<h3 data-risk="{{ k.id }}">{{ k.id }}: {{ k.category.replace("_", " ") }}</h3>
<p>{{ k.description }}</p><p>Assessed likelihood <strong data-figure="risk.{{ k.id }}.likelihood" data-value="{{ raw(k.likelihood) }}">{{ k.likelihood }}</strong>,
severity <strong data-figure="risk.{{ k.id }}.severity" data-value="{{ raw(k.severity) }}">{{ k.severity }}</strong>.</p>
<table><tr><th>Mitigation</th><th>In force</th><th>Evidence that it works</th></tr>
{% for m in k.mitigations %}{% set ev = m.evidence %}<tr data-mitigation="{{ m.name }}"><td>{{ m.name }}</td><td>{{ "yes" if m.in_force else "no" }}</td>
{% if m.kind == "rule" and ev %}<td><span class="{{ ev.status }}" data-figure="mitigation.{{ k.id }}.{{ m.name }}.status" data-value="{{ raw(ev.status) }}">{{ ev.status }}</span> in audit #{{ ev.audit_id }} ({{ ev.pack }}): {{ ev.message }}{% if ev.before_after %} (before: {{ ev.before_after.before }}; after: {{ ev.before_after.after }}){% endif %}</td>
{% elif m.kind == "rule" %}<td class="note">no audit of this model measured this rule</td>{% else %}<td>{{ ev }}</td>{% endif %}</tr>{% else %}<tr><td colspan="3" class="note">no mitigation declared</td></tr>{% endfor %}</table>
{% else %}<p class="note">The pack in force declares no systemic risk.</p>{% endfor %}
{% else %}<p class="note" data-missing="systemic_risks">No systemic-risk assessment is declared by {{ "the pack in force" if p else "any pack (no pack in force was found)" }}: add a <code>systemic_risks</code> section naming each risk, its likelihood, severity and mitigations.</p>{% endif %}
"""
