"""The accuracy-fairness front of a model's re-ranking, recorded on the trail and shown in the regulator's report.

``recgov tradeoff DATA --pack PACK --record MODEL_VERSION`` appends the event
``tradeoff.front_drawn`` (objects: the model version) whose payload is
:func:`front_record` of the result: every grid point's figures (means and
spread over the seeds), which are on the front of which objective, the pack's
point, the paired comparisons, the groups too small for a gap to be
detectable, the lineage (data, split seeds, training-matrix hashes, ALS
parameters, steps) and the SHA-256 of the canonical JSON (sorted keys, no
spaces) of the whole result that ``tradeoff.json`` holds. :func:`tradeoff_evidence` reads the model's latest such
events back for the report, which renders :data:`TRADEOFF_SECTION` when there is
one. Only aggregates are recorded: no user, item or pseudonym.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

__all__ = ["ACTION", "MAX_RUNS", "TRADEOFF_SECTION", "front_record", "record_tradeoff", "tradeoff_evidence"]

ACTION = "tradeoff.front_drawn"
MAX_RUNS = 3
"""The report shows the model's latest this many fronts."""


def _figures(point: Mapping[str, Any], objectives: list[str]) -> dict[str, Any]:
    return {name: {"mean": point[name]["mean"], "sd": point[name]["sd"]} for name in ["ndcg", *objectives]}


def front_record(result: Mapping[str, Any]) -> dict[str, Any]:
    """The trail payload of a front: compact, aggregate, with the digest of the whole result."""
    text = json.dumps(result, sort_keys=True, separators=(",", ":"), default=str, allow_nan=False)
    objectives = list(result["objectives"])
    return {
        "pack": result["pack"],
        "k": result["k"],
        "grid": result["grid"],
        "objectives": objectives,
        "chosen": result["chosen"],
        "points": [
            {"id": p["id"], "setting": p["setting"], "chosen": p["chosen"], "on_front": p["on_front"], **_figures(p, objectives)}
            for p in result["points"]
        ],
        "comparisons": [
            {k: c.get(k) for k in ("seed", "what", "a", "b", "n_users", "n_boot", "confidence", "ndcg", "exposure_gap")}
            for c in result["comparisons"]
        ],
        "group_power": {
            **{k: v for k, v in result["group_power"].items() if k != "groups"},
            "too_small": [g for g in result["group_power"]["groups"] if g["too_small"]],
            "n_groups": len(result["group_power"]["groups"]),
        },
        "lineage": result["lineage"],
        "result_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


def record_tradeoff(session: Session, model_version: str, result: Mapping[str, Any], *, actor: str = "cli") -> int:
    """Append ``tradeoff.front_drawn`` for ``model_version`` in the caller's transaction; the event's seq.

    Raises :class:`recommender.errors.ConfigError` for a model version the store does not hold.
    """
    from audits.lineage import lineage_of
    from audits.trail import append_event

    lineage_of(session, model_version)
    event = append_event(session, actor=actor, action=ACTION, objects={"model": model_version}, payload=front_record(result))
    return int(event.seq)


def tradeoff_evidence(session: Session, model_version: str) -> list[dict[str, Any]]:
    """The model's latest :data:`MAX_RUNS` recorded fronts, newest first, each with its trail seq and time."""
    from audits.models import TrailEvent

    events = session.scalars(select(TrailEvent).where(TrailEvent.action == ACTION).order_by(TrailEvent.seq.desc())).all()
    out = []
    for event in events:
        objects = json.loads(event.objects) if isinstance(event.objects, str) else dict(event.objects or {})
        if objects.get("model") != model_version:
            continue
        payload = json.loads(event.payload) if isinstance(event.payload, str) else dict(event.payload or {})
        out.append({"seq": event.seq, "time": str(event.time), **payload})
        if len(out) == MAX_RUNS:
            break
    return out


TRADEOFF_SECTION = r"""{% set fronts = d.get("tradeoff") or [] %}{% if fronts %}
<h2 id="tradeoff">16. The accuracy-fairness trade-off of the re-ranking</h2>
<p>Each grid point re-ranks the same model's candidates with other values of the pack's re-ranking parameters; a point is on the front of an
objective when no other point is at least as accurate (NDCG@k) with at most its gap. Figures are means over the split seeds (spread in brackets).</p>
{% for tf in fronts %}
<h3 data-tradeoff="{{ tf.seq }}">{{ tf.pack.name }} {{ tf.pack.version }}: {{ tf.points|length }} points, seeds {{ tf.lineage.seeds|map(attribute="seed")|join(", ") }} (trail event {{ tf.seq }}, {{ tf.time }})</h3>
<table><tr><th>Point</th><th>Setting</th><th>NDCG@{{ tf.k }}</th>{% for o in tf.objectives %}<th>{{ o.replace("_", " ") }}</th>{% endfor %}</tr>
{% for p in tf.points %}{% if p.chosen or p.id == "plain" or (p.on_front.values()|select|list) %}<tr data-point="{{ p.id }}"><td>{{ p.id }}{% if p.chosen %} (the pack's){% endif %}</td>
<td>{% if p.setting %}{% for k, v in p.setting.items() %}{{ k }}={{ v }} {% endfor %}{% else %}no re-ranking{% endif %}</td>
<td>{{ fmt(p.ndcg.mean) }}{% if p.ndcg.sd is not none %} ({{ fmt(p.ndcg.sd) }}){% endif %}</td>
{% for o in tf.objectives %}<td>{{ fmt(p[o].mean) }}{% if p[o].sd is not none %} ({{ fmt(p[o].sd) }}){% endif %}{% if p.on_front.get(o) %} &#9733;{% endif %}</td>{% endfor %}</tr>{% endif %}{% endfor %}</table>
<p class="note">&#9733; on the front of that objective; rows shown: the points on some front, the pack's setting and no re-ranking.</p>
{% for c in tf.comparisons %}<p data-comparison="{{ c.seed }}">Seed {{ c.seed }}, {{ c.what }} ({{ c.n_users }} users, {{ c.n_boot }} paired resamples):
NDCG {{ fmt(c.ndcg.difference) }} [{{ fmt(c.ndcg.interval[0]) }}, {{ fmt(c.ndcg.interval[1]) }}]{% if c.exposure_gap %};
exposure gap {{ fmt(c.exposure_gap.difference) }} [{{ fmt(c.exposure_gap.interval[0]) }}, {{ fmt(c.exposure_gap.interval[1]) }}]{% endif %}.</p>{% endfor %}
{% set gp = tf.group_power %}{% if gp.too_small %}<p class="note">Too small to detect an NDCG gap of {{ gp.gap }} (alpha {{ gp.alpha }}, power {{ gp.power }}):
{% for g in gp.too_small %}{{ g.attribute }}={{ g.group }} ({{ g.n_users }} users, needs {{ g.users_needed if g.users_needed is not none else "more users outside it" }}){% if not loop.last %}; {% endif %}{% endfor %}.</p>{% endif %}
<p class="note">Result digest <span class="hash">{{ tf.result_sha256 }}</span>.</p>
{% endfor %}{% endif %}
"""
