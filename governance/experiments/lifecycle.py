"""An experiment's life in the store: plan (frozen), start, status, analyze, stop; and the gate's verdict.

* :func:`plan` validates the variants against the store (recorded model versions,
  readable packs), computes the sample size the design asks for
  (:func:`recommender.experiments.plan_sample_size`), and freezes the normalized
  plan with its content hash and a fresh assignment salt; the ``experiment.planned``
  trail event anchors it before any subject is exposed.
* :func:`start` refuses a plan whose stored content no longer hashes to what was
  frozen, or a file that differs from it; one experiment runs at a time.
* :func:`status` and :func:`analyze` are looks at the data, each a trail event.
  A look is *planned* when it asks the pre-registered primary metric, on every
  randomised subject, within the planned number of looks and before a planned
  look concluded; anything else (another metric, a segment, a look too many) is
  stored and labelled *exploratory*, and never counts for the gate. Every look
  runs the SRM check (:func:`recommender.experiments.srm_check`) and judges every
  guardrail (:func:`recommender.experiments.guardrail_check`); with more than one
  treatment the family of p-values is corrected (:func:`recommender.experiments.correct`).
* :func:`gate_verdict` answers the gate: did a pre-registered, planned look find
  that a variant serving this model version won on the primary metric, with the
  SRM check passed and no guardrail failed?

The data of a look are the decision records of the experiment (their context
names the experiment, the variant and why) and the feedback stored under the
same pseudonyms after each subject's first exposure: the unit is the subject,
assigned at their first list (intention to treat).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from audits._common import in_values
from audits.models import DecisionRecord, Deployment, Experiment, ExperimentLook, ModelVersion, OutcomeEvent, TrailEvent
from audits.sealing import open_decisions
from audits.trail import append_event, lock_head
from governance.experiments.assign import InForce, RunningExperiment
from governance.experiments.guardrails import experiment_id_of_decision, item_table, judge_arm_guardrails
from governance.experiments.spec import (
    ARM_LEVEL_METRICS,
    GUARDRAIL_DIRECTION,
    INDISTINCT_ARMS,
    METRIC_KIND,
    METRICS,
    PRIMARY_METRICS,
    ExperimentSpec,
    LoadedExperiment,
    experiment_hash,
)
from recommender.errors import ConfigError, DataError

__all__ = [
    "ARMS_ALIKE_AT_START",
    "ExperimentConflict",
    "ExperimentNotFound",
    "PLAN_CHANGED",
    "SEGMENTS",
    "analyze",
    "experiments_of_model",
    "gate_verdict",
    "get",
    "in_force",
    "list_experiments",
    "plan",
    "running",
    "start",
    "status",
    "stop",
]

NOT_PER_SUBJECT = ("error_rate", *ARM_LEVEL_METRICS)
"""Guardrail metrics measured on the arm's traffic (:mod:`governance.experiments.guardrails`), never compared per subject."""
SEGMENTS = ("known", "new")
"""Exploratory segments: subjects whose first list was personalized (``known`` to the model) or a fallback (``new``)."""
MAX_UNITS_PER_ARM = 10**10
"""The largest sample size per arm a plan may ask (beyond, the design detects nothing any experiment could reach)."""
ANALYTICS = "analytics"
"""The consent purpose that covers analysing subjects' lists and outcomes (as for off-policy evaluation)."""
FINAL_TOO_EARLY = (
    "experiment {name!r}: planned look {look} is the plan's final look, and the arms have not reached the sample size "
    "the plan froze ({have} analysable units): {short} still missing ({total} in all). A final look taken early is "
    "underpowered and its timing could follow the data; look again when every arm has reached its planned size"
)
PRIMARY_GUARDRAIL_WITHHELD = (
    "figures withheld: this guardrail is on the pre-registered primary metric {primary!r} and planned looks remain, so an "
    "exploratory look says only whether it held (its estimate would be a look at the primary metric)"
)
PRIMARY_PEEK = (
    "experiment {name!r}: an exploratory look at the pre-registered primary metric {primary!r} (segment {segment!r}) "
    "is refused while planned looks remain ({taken} of {looks} taken): seeing it early could steer when the planned look "
    "is taken. Look at a guardrail or another metric, or take the planned look (the primary metric, no segment)"
)
REVERSED_GUARDRAIL = (
    "experiment {name!r}: the plan was frozen with guardrail(s) the wrong way round: {said}; judged as written, a harm "
    "would pass and an improvement fail. It does not start: plan it again under a new name with each metric's direction"
)
ARM_PACK_CHANGED = (
    "experiment {name!r}, variant {variant!r} (variants.{i}.pack): pack {pack!r} has changed since the plan was frozen "
    "(content hash {pinned} pinned, {now} now); the arm would serve under other rules than the plan's: restore that pack "
    "or plan the experiment anew under a new name"
)
ARM_PACK_UNREAD = "experiment {name!r}, variant {variant!r} (variants.{i}.pack): pack {pack!r} cannot be read: {error}"
ARM_MODEL_REFUSED = (
    "experiment {name!r}, variant {variant!r} (variants.{i}.model_version): the arm names no model version, so it serves the "
    "production model {model!r}, which its pack {pack!r} does not admit: {why}"
)
PLAN_CHANGED = "experiment {name!r}: the plan {what} differs from the one frozen at plan time (hash {frozen}, now {now}); a changed plan is another experiment: plan it under a new name"


class ExperimentNotFound(ConfigError):
    """No experiment of that name (API 404)."""


class ExperimentConflict(ConfigError):
    """The experiment is not in a state that allows the move (API 409)."""


class ArmsAlike(ExperimentConflict):
    """A look at an experiment whose arms serve the same lists now, or served them at some time since it started
    (API 409 ``experiment-arms-alike``)."""


ARM_MODEL_WITHDRAWN = (
    "variant {variant!r} names model version {version!r}, which may not serve again: {why}. Its subjects would get "
    "lists no one could ship; name a version that may be deployed"
)
ARMS_ALIKE_AT_LOOK = (
    "experiment {name!r}: no look while its arms serve the same lists (variants.{i}): {said}. The production model changed "
    "while the experiment runs, so a look would compare the production model with itself; the refusal is on the trail "
    "(experiment.look_refused). Put the control's model back in production, or stop the experiment and plan it anew"
)
ARMS_ALIKE_SINCE_START = (
    "experiment {name!r}: no look (variants.{i}): from {begin} to {end} the model in production was {model}, which variant "
    "{treatment!r} names, so variant {control!r} (which serves production) served the treatment's lists: {lists} of its lists "
    "in that time. A look would compare a mix of the treatment with itself, biased toward no difference (a harm would pass "
    "its guardrails), and the subjects' outcomes carry that time whatever a look left out; the refusal is on the trail "
    "(experiment.look_refused). Stop the experiment and plan it anew under a new name"
)
ARMS_ALIKE_AT_START = (
    "experiment {name!r} cannot start (variants.{i}): {said}. The production model changed since the plan was frozen; "
    "plan the experiment again with arms that differ"
)


def new_salt() -> str:
    """A fresh experiment salt (64 hex digits): subjects cannot predict their arm, and experiments shuffle apart."""
    return secrets.token_hex(32)


def _now() -> datetime:
    return datetime.now(UTC)


def _plain(value: Any) -> Any:
    """A library result as JSON-ready data."""
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _get(session: Session, name: str, *, lock: bool = False) -> Experiment:
    query = select(Experiment).where(Experiment.name == name)
    row = session.scalars(query.with_for_update() if lock else query).first()
    if row is None:
        known = session.scalars(select(Experiment.name).order_by(Experiment.id.desc()).limit(5)).all()
        hint = f"planned: {', '.join(known)}" if known else "none is planned yet (recgov experiment plan FILE)"
        raise ExperimentNotFound(f"no experiment named {name!r}; {hint}")
    return row


def _summary(row: Experiment) -> dict[str, Any]:
    spec = row.plan["spec"]
    return {
        "id": row.id, "name": row.name, "status": row.status, "plan_hash": row.plan_hash,
        "hypothesis": spec["hypothesis"], "primary_metric": spec["primary_metric"],
        "variants": spec["variants"], "allocation": spec["allocation"], "holdback": spec["holdback"],
        "design": spec["design"], "guardrails": spec["guardrails"], "sample_size": row.plan["sample_size"],
        "planned_at": row.planned_at.isoformat(), "started_at": row.started_at.isoformat() if row.started_at else None,
        "stopped_at": row.stopped_at.isoformat() if row.stopped_at else None,
        "holdback_days": spec.get("holdback_days", 0), "holdback_until": row.holdback_until.isoformat() if row.holdback_until else None,
        "plan_seq": row.plan_seq, "start_seq": row.start_seq, "stop_seq": row.stop_seq,
    }  # fmt: skip


def sample_size(spec: ExperimentSpec) -> dict[str, Any]:
    """The design's sample size, from :func:`recommender.experiments.plan_sample_size`."""
    from recommender.experiments import plan_sample_size

    d = spec.design
    control = next(v.name for v in spec.variants if v.control)
    order = [control, *(v.name for v in spec.variants if not v.control)]
    computed = plan_sample_size(
        METRIC_KIND[spec.primary_metric], d.baseline, d.mde, alpha=d.alpha, power=d.power,
        allocation=[spec.allocation[n] for n in order], sd=d.sd, method=d.method, looks=d.looks,
        alternative=d.alternative, comparisons=len(spec.variants) - 1, correction=d.correction, spending=d.spending,
    )  # fmt: skip
    return _plain(computed)


def plan(
    store: Any, loaded: LoadedExperiment, *, actor: str, load_pack: Callable[[str], Any] | None = None
) -> dict[str, Any]:
    """Freeze ``loaded`` (see the module doc); the stored experiment's summary.

    Raises ConfigError (a variant's model version is not recorded, its pack cannot be read) and
    :class:`ExperimentConflict` (the name is taken); nothing is stored then.
    """
    from governance.located import PackIssue, PolicyError

    spec = loaded.spec
    issues = []
    packs: dict[int, Any] = {}
    if load_pack is not None:
        for i, v in enumerate(spec.variants):
            if v.pack is not None:
                try:
                    packs[i] = load_pack(v.pack)
                except ConfigError as err:
                    line, col = loaded.positions.get(f"variants.{i}.pack", (None, None))
                    issues.append(PackIssue(loaded.source, line, col, f"variants.{i}.pack", str(err)))
    with store.session() as session:
        for i, v in enumerate(spec.variants):
            if v.model_version is not None and session.get(ModelVersion, v.model_version) is None:
                line, col = loaded.positions.get(f"variants.{i}.model_version", (None, None))
                issues.append(PackIssue(loaded.source, line, col, f"variants.{i}.model_version", f"model version {v.model_version!r} is not recorded (recgov train records one)"))
            elif v.model_version is not None and (why := _never_served_again(session, v.model_version)) is not None:
                line, col = loaded.positions.get(f"variants.{i}.model_version", (None, None))
                issues.append(PackIssue(loaded.source, line, col, f"variants.{i}.model_version", ARM_MODEL_WITHDRAWN.format(variant=v.name, version=v.model_version, why=why)))
        production = _production_pack(session, load_pack)
        weaker, pack_issues = _arm_packs(session, loaded, packs, production)
        issues += pack_issues
        issues += _production_alike_issues(session, loaded)
        for name_, i, why in _production_model_refusals(session, spec.variants, packs):
            line, col = loaded.positions.get(f"variants.{i}.pack", (None, None))
            issues.append(PackIssue(loaded.source, line, col, f"variants.{i}.model_version", (
                f"variant {name_!r} names no model version, so it serves the production model, which its pack "
                f"{spec.variants[i].pack!r} does not admit: {why}")))  # fmt: skip
    pins = {v.name: {"pack": v.pack, "content_hash": packs[i].content_hash} for i, v in enumerate(spec.variants) if i in packs}
    items: dict[str, Any] = {}
    for i, g in enumerate(spec.guardrails):
        if g.metric == "provider_exposure_gap" and g.items is not None:
            try:
                groups, digest = item_table(g.items, g.attribute)
            except ConfigError as err:
                line, col = loaded.positions.get(f"guardrails.{i}.items", (None, None))
                issues.append(PackIssue(loaded.source, line, col, f"guardrails.{i}.items", str(err)))
                continue
            items[str(i)] = {"path": g.items, "sha256": digest, "shares": {str(k): float(v) for k, v in groups.value_counts(normalize=True).sort_index().items()}}
    if issues:
        raise PolicyError(issues)
    size = sample_size(spec)  # before any write: a design the library refuses stores nothing
    if (largest := max(int(n) for n in size["n_per_arm"])) > MAX_UNITS_PER_ARM:
        line, col = loaded.positions.get("design.mde", (None, None))
        raise PolicyError([PackIssue(loaded.source, line, col, "design.mde", (
            f"the design asks {largest:.3g} units in an arm (more than {MAX_UNITS_PER_ARM:.0e}): an effect of {spec.design.mde:g} "
            "cannot be detected by any experiment; plan a larger minimum detectable effect"))])  # fmt: skip
    frozen = {"spec": spec.model_dump(mode="json"), "sample_size": size, **({"guardrail_items": items} if items else {}), **({"pack_pins": pins} if pins else {})}
    with store.session() as session:
        lock_head(session)
        taken = session.scalars(select(Experiment).where(Experiment.name == loaded.name)).first()
        if taken is not None:
            same = "the same plan is" if taken.plan_hash == loaded.content_hash else "another plan is"
            raise ExperimentConflict(f"experiment {loaded.name!r} is already planned ({same} frozen under that name, hash {taken.plan_hash[:12]}, {taken.status})")
        event = append_event(
            session, actor=actor, action="experiment.planned", objects={"experiment": loaded.name},
            payload={"plan_hash": loaded.content_hash, "sample_size": size, "primary_metric": spec.primary_metric,
                     "variants": [_variant_payload(v) for v in spec.variants], "design": spec.design.model_dump(mode="json"),
                     **({"weaker_packs_acknowledged": weaker} if weaker else {}), **({"pack_pins": pins} if pins else {}),
                     **({"guardrail_items": items} if items else {})},
        )  # fmt: skip
        row = Experiment(
            name=loaded.name, plan=frozen, plan_hash=loaded.content_hash, salt=new_salt(),
            status="planned", planned_at=_now(), actor=actor, plan_seq=event.seq,
        )  # fmt: skip
        session.add(row)
        session.flush()
        return _summary(row)


def _variant_payload(variant: Any) -> dict[str, Any]:
    """A variant as the ``experiment.planned`` event records it (an acknowledgement only when there is one)."""
    document = variant.model_dump(mode="json")
    if document.get("weaker_pack_acknowledged") is None:
        document.pop("weaker_pack_acknowledged", None)
    return document


def _production_pack(session: Session, load_pack: Callable[[str], Any] | None) -> tuple[str, Any] | None:
    """The pack the deployment policy binds to ``production`` (its label and the pack), or None when unbound or unread."""
    from governance.deploy_policy import binding_for

    binding = binding_for(session, "production")
    if binding is None or load_pack is None:
        return None
    try:
        return f"the production pack {binding.label}", load_pack(binding.ref)
    except ConfigError:
        return None  # a bound pack that cannot be read refuses every promotion already; nothing to compare with


def _arm_packs(
    session: Session, loaded: LoadedExperiment, packs: dict[int, Any], production: tuple[str, Any] | None
) -> tuple[dict[str, dict[str, Any]], list[Any]]:
    """Each variant's pack against the production pack and the control's (:func:`governance.experiments.packs.weaker_than`),
    and the model it serves against the pack it serves under (:func:`governance.experiments.packs.model_refused`).

    Returns what the acknowledged weaker packs drop (by variant) and the located refusals."""
    from governance.experiments.packs import model_refused, weaker_than
    from governance.located import PackIssue

    spec = loaded.spec
    control_index = next(i for i, v in enumerate(spec.variants) if v.control)
    control_pack = packs.get(control_index)
    acknowledged: dict[str, dict[str, Any]] = {}
    issues: list[Any] = []

    def issue(path: str, message: str) -> None:
        line, col = loaded.positions.get(path, loaded.positions.get(path.rsplit(".", 1)[0], (None, None)))
        issues.append(PackIssue(loaded.source, line, col, path, message))

    for i, v in enumerate(spec.variants):
        pack = packs.get(i)
        if pack is None:
            continue
        references = [r for r in (production, None if v.control or control_pack is None else (f"the control's pack {spec.variants[control_index].pack}", control_pack)) if r]
        drops = {label: found for label, ref in references if ref.content_hash != pack.content_hash and (found := weaker_than(pack.pack, ref.pack))}
        if not drops:
            continue
        if v.weaker_pack_acknowledged is None:
            said = "; ".join(f"than {label}: {', '.join(found)}" for label, found in drops.items())
            issue(f"variants.{i}.pack", (
                f"variant {v.name!r} would serve its subjects under pack {v.pack!r}, which protects them less {said}. "
                "Name a pack at least as protective, or say why under weaker_pack_acknowledged (frozen with the plan "
                "and recorded on the trail)"))  # fmt: skip
        else:
            acknowledged[v.name] = {"pack": v.pack, "why": v.weaker_pack_acknowledged, "weaker_than": drops}
    for i, v in enumerate(spec.variants):
        if v.model_version is None:
            continue
        pack = packs.get(i)
        label = f"its pack {v.pack!r}"
        if pack is None and production is not None and v.pack is None:
            label, pack = production
        if pack is None:
            continue
        refused = model_refused(session, v.model_version, pack)
        if refused is not None:
            issue(f"variants.{i}.model_version", f"variant {v.name!r} would serve under {label}, which does not admit the model: {refused}")
    return acknowledged, issues


def _production_model_refusals(session: Session, variants: Any, packs: Mapping[int, Any]) -> list[tuple[str, int, str]]:
    """``(variant, index, why)`` for each arm that names a pack but no model version, whose pack does not admit the
    model in production now (:func:`governance.experiments.packs.model_refused`): that arm serves it."""
    from governance.experiments.packs import model_refused

    pack_only = [(i, v) for i, v in enumerate(variants) if i in packs and _field(v, "model_version") is None]
    if not pack_only:
        return []
    production = _production_model(session)
    if production is None:
        return []
    return [(_field(v, "name"), i, why) for i, v in pack_only if (why := model_refused(session, production, packs[i])) is not None]


def _arms_serving_production_alike(session: Session, variants: Any) -> list[tuple[int, str, str, str]]:
    """``(index, variant, earlier variant, production model)`` for each arm that serves what an earlier arm serves
    once the production model is read: one names the model version in production, the other names none (so serves
    production), under the same pack. The two cannot be told apart (the plan alone cannot see it:
    :func:`governance.experiments.spec.parse_experiment` refuses arms equal as written)."""
    return _alike_under(variants, _production_model(session))


def _alike_under(variants: Any, production: str | None) -> list[tuple[int, str, str, str]]:
    """:func:`_arms_serving_production_alike` with ``production`` the model in production (None: none is)."""
    if production is None:
        return []
    found, seen = [], {}
    for i, v in enumerate(variants):
        model, pack = _field(v, "model_version"), _field(v, "pack")
        if model is None and pack is None and not _field(v, "control"):
            continue  # refused with the plan: it names neither a model_version nor a pack
        earlier = seen.setdefault((model or production, pack), i)
        if earlier != i and (model is None) != (_field(variants[earlier], "model_version") is None):
            found.append((i, _field(v, "name"), _field(variants[earlier], "name"), production))
    return found


def _production_alike_issues(session: Session, loaded: LoadedExperiment) -> list[Any]:
    """:func:`_arms_serving_production_alike` as located refusals of the plan."""
    from governance.located import PackIssue

    issues = []
    for i, name_, other, production in _arms_serving_production_alike(session, loaded.spec.variants):
        v = loaded.spec.variants[i]
        field_ = f"variants.{i}.model_version" if v.model_version is not None else f"variants.{i}"
        line, col = loaded.positions.get(field_, loaded.positions.get(f"variants.{i}", (None, None)))
        issues.append(PackIssue(loaded.source, line, col, field_, INDISTINCT_ARMS.format(
            variant=name_, other=other, model=f"{production}, the model in production,", pack=v.pack or "the request's pack")))  # fmt: skip
    return issues


def _never_served_again(session: Session, model_version: str) -> str | None:
    """Why ``model_version`` may never serve a personalized list again (retired, or replaced by a full retrain after
    an erasure), or None."""
    from governance.suppressed import retrained_away

    stage = session.scalars(select(Deployment.stage).where(Deployment.model_version_id == model_version).order_by(Deployment.id.desc()).limit(1)).first()
    if stage == "retired":
        return "it is retired, and a retired version profiles nobody"
    if replaced := retrained_away(session, model_version):
        by = ", ".join(f"{new} (retrain request #{request})" for new, request in replaced)
        return f"a full retrain after an erasure replaced it ({by}), so it is never deployed again"
    return None


def _production_model(session: Session) -> str | None:
    """The model version whose latest deployment is to ``production`` (as :mod:`governance.deploy` reads it)."""
    latest = select(Deployment.model_version_id, func.max(Deployment.id).label("id")).group_by(Deployment.model_version_id).subquery()
    return session.scalars(
        select(Deployment.model_version_id).join(latest, Deployment.id == latest.c.id).where(Deployment.stage == "production").order_by(Deployment.id.desc())
    ).first()


def _production_periods(session: Session, since: datetime, until: datetime) -> list[tuple[datetime, datetime, str | None]]:
    """``(from, to, model)``: the model in production (as :func:`_production_model` reads it at each moment, None for
    none) over ``[since, until)``, replayed from the deployment history (rows in the order they were recorded, each
    in force from its ``changed_at``)."""
    stages: dict[str, tuple[int, str]] = {}
    changes: list[tuple[datetime, str | None]] = []
    rows = session.execute(select(Deployment.id, Deployment.model_version_id, Deployment.stage, Deployment.changed_at).order_by(Deployment.id))
    for id_, model, stage, at in rows:
        stages[model] = (id_, stage)
        live = [(n, m) for m, (n, s) in stages.items() if s == "production"]
        changes.append((at, max(live)[1] if live else None))
    periods, current, start = [], None, since
    for at, production in changes:
        if at <= since:
            current = production
            continue
        if at >= until:
            break
        if production != current:
            periods.append((start, at, current))
            current, start = production, at
    periods.append((start, until, current))
    return periods


def _arms_alike_since_start(session: Session, row: Experiment) -> tuple[str, dict[str, Any]] | None:
    """Why a look at experiment ``row`` is refused because, at some time since it started (until it stopped), the
    production model made two of its arms serve the same lists and the arm that serves production served a
    personalized list to a randomised subject then; with the refusal's payload for the trail. None otherwise (a
    period in which that arm served no such list mixes nothing: a fallback or non-profiling list comes from no model,
    and a subject held back, not profiled or refused by the arm is outside the analysis). The lists are the experiment's own records, read by their time (the filter ``ix_decisions_experiment``
    indexes)."""
    if row.started_at is None:
        return None
    variants = row.plan["spec"]["variants"]
    windows = []
    for begin, end, production in _production_periods(session, row.started_at, row.stopped_at or _now()):
        for i, name_, other, _ in _alike_under(variants, production):
            serving = name_ if _field(variants[i], "model_version") is None else other
            treatment = other if serving == name_ else name_
            windows.append((begin, end, production, i, serving, treatment))
    if not windows:
        return None
    query = select(DecisionRecord.decided_at, DecisionRecord.context).where(
        experiment_id_of_decision(session) == row.id,
        DecisionRecord.mode == "personalized",  # a fallback or non-profiling list is no model's: alike in either arm
        DecisionRecord.decided_at >= min(w[0] for w in windows),
        DecisionRecord.decided_at < max(w[1] for w in windows),
    )
    served = [(at, context or {}) for at, context in session.execute(query)]
    for begin, end, production, i, serving, treatment in windows:
        lists = sum(
            1 for at, context in served
            if begin <= at < end and not context.get("shadow_of") and isinstance(exp := context.get("experiment"), Mapping)
            and exp.get("id") == row.id and exp.get("variant") == serving and exp.get("reason") == "randomised"
        )  # fmt: skip
        if lists:
            detail = ARMS_ALIKE_SINCE_START.format(
                name=row.name, i=i, begin=begin.isoformat(), end=end.isoformat(), model=production, treatment=treatment, control=serving, lists=lists
            )  # fmt: skip
            payload = {"reason": "arms_alike_since_start", "production": production, "from": begin.isoformat(), "to": end.isoformat(),
                       "variant": serving, "lists": lists, "detail": detail}  # fmt: skip
            return detail, payload
    return None


def _field(variant: Any, key: str) -> Any:
    return variant.get(key) if isinstance(variant, Mapping) else getattr(variant, key)


def _check_arm_packs(session: Session, row: Experiment, load_pack: Callable[[str], Any] | None) -> None:
    """Each arm's pack still has the content the plan pinned, and admits the production model an arm without a
    model version of its own serves (:class:`ExperimentConflict`, located, otherwise). Plans frozen before packs
    were pinned have no pins: only the model is checked for them."""
    if load_pack is None:
        return
    variants = row.plan["spec"]["variants"]
    pins = row.plan.get("pack_pins") or {}
    packs: dict[int, Any] = {}
    for i, v in enumerate(variants):
        if not v.get("pack"):
            continue
        try:
            packs[i] = load_pack(v["pack"])
        except ConfigError as err:
            raise ExperimentConflict(ARM_PACK_UNREAD.format(name=row.name, variant=v["name"], i=i, pack=v["pack"], error=err)) from None
        pinned = (pins.get(v["name"]) or {}).get("content_hash")
        if pinned is not None and packs[i].content_hash != pinned:
            raise ExperimentConflict(ARM_PACK_CHANGED.format(name=row.name, variant=v["name"], i=i, pack=v["pack"], pinned=pinned, now=packs[i].content_hash))
    for name_, i, why in _production_model_refusals(session, variants, packs):
        model = _production_model(session)
        raise ExperimentConflict(ARM_MODEL_REFUSED.format(name=row.name, variant=name_, i=i, model=model, pack=variants[i]["pack"], why=why))


def _check_anchored(session: Session, row: Experiment) -> None:
    """The stored plan's hash, sample size, arms' pack pins and guardrail item tables are the ones its
    ``experiment.planned`` event anchored.

    The experiments table is not append-only: a sample size lowered there would let the final look be taken
    early (:func:`_check_final_size` reads it), a plan hash rewritten with the plan would pass :func:`_check_frozen`,
    an item table's hash rewritten with the file would let a provider gap be judged against other target shares.
    Plans frozen before their item tables were anchored have none on the trail: theirs are not compared."""
    import json

    from audits.canonical import canonical_json

    payload = session.scalars(select(TrailEvent.payload).where(TrailEvent.seq == row.plan_seq, TrailEvent.action == "experiment.planned")).first()
    anchored = json.loads(payload) if payload is not None else {}
    same = canonical_json(anchored.get("sample_size")) == canonical_json(row.plan.get("sample_size"))  # as the trail hashed it
    pinned = canonical_json(anchored.get("pack_pins")) == canonical_json(row.plan.get("pack_pins"))
    items = "guardrail_items" not in anchored or canonical_json(anchored["guardrail_items"]) == canonical_json(row.plan.get("guardrail_items"))
    if anchored.get("plan_hash") != row.plan_hash or not same or not pinned or not items:
        what = ("plan hash" if anchored.get("plan_hash") != row.plan_hash else "sample size" if not same
                else "arms' pack pins" if not pinned else "guardrail item tables")  # fmt: skip
        raise ExperimentConflict(
            f"experiment {row.name!r}: the stored {what} is not the one the trail anchored when the plan was frozen "
            f"(experiment.planned, event {row.plan_seq}): the experiment's record was changed since; it is not analysed"
        )


def _check_frozen(row: Experiment, loaded: LoadedExperiment | None) -> None:
    now = experiment_hash(ExperimentSpec.model_validate(row.plan["spec"]))
    if now != row.plan_hash:
        raise ExperimentConflict(PLAN_CHANGED.format(name=row.name, what="stored", frozen=row.plan_hash[:12], now=now[:12]))
    if loaded is not None and loaded.content_hash != row.plan_hash:
        raise ExperimentConflict(PLAN_CHANGED.format(name=row.name, what=f"in {loaded.source}", frozen=row.plan_hash[:12], now=loaded.content_hash[:12]))


def start(
    store: Any, name: str, *, actor: str, loaded: LoadedExperiment | None = None, load_pack: Callable[[str], Any] | None = None
) -> dict[str, Any]:
    """Start a planned experiment: subjects are assigned from the next list on.

    ``loaded``: the plan as the caller has it now; it must hash to the frozen plan. ``load_pack``: reads an arm's
    pack, which must still have the content the plan pinned and admit the production model an arm without a
    model version serves (:func:`_check_arm_packs`).
    """
    if loaded is not None and loaded.name != name:
        raise ConfigError(f"the plan file names experiment {loaded.name!r}, not {name!r}")
    with store.session() as session:
        lock_head(session)
        row = _get(session, name, lock=True)
        if row.status != "planned":
            raise ExperimentConflict(f"experiment {name!r} is {row.status}; only a planned experiment starts")
        _check_frozen(row, loaded)
        _check_anchored(session, row)
        _check_arm_packs(session, row, load_pack)
        variants = row.plan["spec"]["variants"]
        for i, name_, other, production in _arms_serving_production_alike(session, variants):
            raise ExperimentConflict(ARMS_ALIKE_AT_START.format(name=name, i=i, said=INDISTINCT_ARMS.format(
                variant=name_, other=other, model=f"{production}, the model in production now,", pack=variants[i]["pack"] or "the request's pack")))  # fmt: skip
        if reversed_ := [g for g in _judged_guardrails(row.plan["spec"]["guardrails"]) if "plan_direction" in g]:
            said = ", ".join(f"{g['metric']} ({g['plan_direction']}, but it is {g['direction']})" for g in reversed_)
            raise ExperimentConflict(REVERSED_GUARDRAIL.format(name=name, said=said))
        other = session.scalars(select(Experiment.name).where(Experiment.status == "running")).first()
        if other is not None:
            raise ExperimentConflict(f"experiment {other!r} is running; stop it first (one experiment runs at a time)")
        event = append_event(session, actor=actor, action="experiment.started", objects={"experiment": name}, payload={"plan_hash": row.plan_hash})
        row.status, row.started_at, row.start_seq = "running", _now(), event.seq
        session.flush()
        return _summary(row)


def stop(store: Any, name: str, *, actor: str) -> dict[str, Any]:
    """End a running experiment: no subject is assigned from the next list on; its data stay for the analysis.

    A plan with a holdback and ``holdback_days`` keeps its holdback: until ``holdback_until`` (the stop plus
    those days) the same subjects (the same keyed hash under the same salt) are still served the control,
    recorded with reason ``holdback``, so the long-term effect can be measured against them."""
    with store.session() as session:
        lock_head(session)
        row = _get(session, name, lock=True)
        if row.status != "running":
            raise ExperimentConflict(f"experiment {name!r} is {row.status}; only a running experiment stops")
        spec = row.plan["spec"]
        stopped = _now()
        days = int(spec.get("holdback_days", 0)) if float(spec.get("holdback", 0.0)) > 0 else 0
        until = stopped + timedelta(days=days) if days else None
        payload = {"plan_hash": row.plan_hash, **({"holdback_until": until.isoformat()} if until else {})}
        event = append_event(session, actor=actor, action="experiment.stopped", objects={"experiment": name}, payload=payload)
        row.status, row.stopped_at, row.stop_seq, row.holdback_until = "stopped", stopped, event.seq, until
        session.flush()
        return _summary(row)


def get(store: Any, name: str) -> dict[str, Any]:
    """The experiment's summary and its looks (reading the plan is not a look at the data)."""
    with store.session() as session:
        row = _get(session, name)
        looks = session.scalars(select(ExperimentLook).where(ExperimentLook.experiment_id == row.id).order_by(ExperimentLook.id)).all()
        return {**_summary(row), "looks": [_look_dict(look) for look in looks]}


def list_experiments(store: Any) -> list[dict[str, Any]]:
    with store.session() as session:
        return [_summary(r) for r in session.scalars(select(Experiment).order_by(Experiment.id))]


def running(session: Session | Any) -> RunningExperiment | None:
    """The experiment in force for serving, or None (one indexed read; the plan is parsed once per experiment)."""
    row = session.execute(select(Experiment.id, Experiment.name, Experiment.plan_hash, Experiment.salt).where(Experiment.status == "running")).first()
    if row is None:
        return None
    key = (row.id, row.plan_hash, row.salt)  # the salt too: two stores (or a store made anew) may reuse an id and a plan
    cached = _RUNNING.get(key)
    if cached is None:
        plan_json = session.execute(select(Experiment.plan).where(Experiment.id == row.id)).scalar_one()
        cached = _RUNNING[key] = RunningExperiment.from_row(row.id, row.name, plan_json, row.salt)
    return cached


_RUNNING: dict[tuple[int, str, str], RunningExperiment] = {}


def in_force(session: Session | Any) -> InForce | None:
    """The running experiment and the stopped ones whose holdback is still held back, or None (one read, plans cached)."""
    rows = session.execute(
        select(Experiment.id, Experiment.name, Experiment.plan_hash, Experiment.salt, Experiment.status).where(
            or_(Experiment.status == "running", and_(Experiment.status == "stopped", Experiment.holdback_until > _now()))
        ).order_by(Experiment.id)
    ).all()
    if not rows:
        return None
    experiments = []
    for row in rows:
        key = (row.id, row.plan_hash, row.salt)
        cached = _RUNNING.get(key)
        if cached is None:
            plan_json = session.execute(select(Experiment.plan).where(Experiment.id == row.id)).scalar_one()
            cached = _RUNNING[key] = RunningExperiment.from_row(row.id, row.name, plan_json, row.salt)
        experiments.append((row.status, cached))
    return InForce(
        running=next((e for status, e in experiments if status == "running"), None),
        holdbacks=tuple(e for status, e in experiments if status == "stopped"),
    )


# -- the data of a look -------------------------------------------------------------
def _exposures(session: Session, row: Experiment, *, empty_lists: bool = False) -> pd.DataFrame:
    """One row per subject of the experiment: first variant, reason, first exposure (its decision and mode), list counts by
    mode, mean latency, and the lists served under a pack other than the arm's pinned one (``off_pin``, see
    :func:`_pack_drift`).

    Only the experiment's records are read: the filter on the context's experiment id is the expression
    ``ix_decisions_experiment`` indexes (:func:`governance.experiments.guardrails.experiment_id_of_decision`).
    With ``empty_lists`` the served slates are read too, to count the lists that came out empty (an
    ``empty_list_share`` guardrail); otherwise that count is left out, since a slate is the record's largest part."""
    columns = [DecisionRecord.subject, DecisionRecord.decided_at, DecisionRecord.decision_id, DecisionRecord.mode, DecisionRecord.context, DecisionRecord.pack_hash]
    if empty_lists:
        columns += [DecisionRecord.slate]
    query = select(*columns).where(
        experiment_id_of_decision(session) == row.id, DecisionRecord.decided_at >= row.started_at, DecisionRecord.subject.is_not(None)
    )
    if row.stopped_at is not None:
        query = query.where(DecisionRecord.decided_at <= row.stopped_at)
    records = []
    sealed = []
    pins = _pins(row)
    for subject, at, decision_id, mode, context, pack_hash, *slate in session.execute(query):
        exp = (context or {}).get("experiment")
        if isinstance(exp, Mapping) and exp.get("id") == row.id and not (context or {}).get("shadow_of"):
            latency = context.get("latency_ms")
            pinned = pins.get(exp.get("variant"))
            off_pin = int(pinned is not None and pack_hash != pinned and exp.get("reason") != "arm_refused")
            records.append((subject, at, decision_id, mode, exp.get("variant"), exp.get("reason"), off_pin, latency if isinstance(latency, (int, float)) else np.nan, np.nan))
            if empty_lists:
                sealed.append((decision_id, subject, slate[0], context))
    if empty_lists:  # slates are sealed under their subject's key: an erased subject's no longer open (left NaN, left out)
        for n, opened in enumerate(open_decisions(session, sealed)):
            if opened is not None:
                records[n] = (*records[n][:-1], float(not (opened[0] or {}).get("items")))
    frame = pd.DataFrame(records, columns=["subject", "at", "decision_id", "mode", "variant", "reason", "off_pin", "latency_ms", "empty"])
    if frame.empty:
        columns = ["variant", "reason", "first_at", "first_decision", "first_mode", "lists", "non_profiling", "fallback", "off_pin", "empty", "opened", "latency_ms"]
        return pd.DataFrame(columns=columns).rename_axis("subject")
    frame = frame.sort_values("at", kind="stable")
    frame["non_profiling"] = (frame["mode"] == "non_profiling").astype(int)
    frame["fallback"] = (frame["mode"] == "fallback").astype(int)
    by = frame.groupby("subject", sort=False)
    out = by[["at", "decision_id", "mode", "variant", "reason"]].first().rename(columns={"at": "first_at", "decision_id": "first_decision", "mode": "first_mode"})
    out["lists"] = by.size()
    out[["non_profiling", "fallback", "off_pin"]] = by[["non_profiling", "fallback", "off_pin"]].sum()
    out["empty"] = by["empty"].sum(min_count=1)  # NaN where no list was opened (not asked for, or the subject erased)
    out["opened"] = by["empty"].count()
    out["latency_ms"] = by["latency_ms"].mean()  # NaN for a subject none of whose lists recorded a latency
    return out


def _pins(row: Experiment) -> dict[str, str]:
    """Variant name -> the content hash its pack was pinned at when the plan was frozen (none before pins existed)."""
    return {name: pin["content_hash"] for name, pin in (row.plan.get("pack_pins") or {}).items()}


def _pack_drift(row: Experiment, subjects: pd.DataFrame) -> dict[str, Any]:
    """Per arm, the lists its subjects were served under a pack whose content hash is not the one the plan pinned
    (each decision's recorded ``pack_hash`` against the pin), and how many subjects got one; empty when none was.

    Serving refuses such an arm since packs are checked on every list (reason ``arm_refused``, left out here); a
    list recorded otherwise was served before, or by a recgov that did not check. The arm then compared other rules
    than the plan's: a planned look says so (verdict ``invalid_pack``) and names no winner."""
    if subjects.empty or not int(subjects["off_pin"].sum()):
        return {}
    pins = _pins(row)
    drifted = subjects[subjects["off_pin"] > 0]
    return {
        str(v): {"lists": int(group["off_pin"].sum()), "subjects": int(len(group)), "pinned": pins.get(str(v))}
        for v, group in drifted.groupby("variant")
    }


def _outcomes(session: Session, row: Experiment, subjects: pd.DataFrame) -> pd.DataFrame:
    """Per subject, clicks and conversions after their first exposure (up to the stop)."""
    counts = pd.DataFrame(0, index=subjects.index, columns=["click", "conversion"])
    if subjects.empty:
        return counts
    query = select(OutcomeEvent.subject, OutcomeEvent.kind, OutcomeEvent.occurred_at).where(
        OutcomeEvent.occurred_at >= row.started_at, OutcomeEvent.kind.in_(("click", "conversion"))
    )
    if row.stopped_at is not None:
        query = query.where(OutcomeEvent.occurred_at <= row.stopped_at)
    events = pd.DataFrame(session.execute(query).all(), columns=["subject", "kind", "at"])
    if events.empty:
        return counts
    events = events[events["subject"].isin(subjects.index)]
    first = pd.to_datetime(subjects["first_at"], utc=True)
    events = events[pd.to_datetime(events["at"], utc=True).to_numpy() >= first.reindex(events["subject"]).to_numpy()]
    tally = events.groupby(["subject", "kind"]).size().unstack(fill_value=0)
    for kind in ("click", "conversion"):
        if kind in tally:
            counts[kind] = tally[kind].reindex(counts.index, fill_value=0).astype(int)
    return counts


def _analytics_model(session: Session, row: Experiment, packs_dir: Path | None) -> tuple[str, list[str]]:
    """The ``analytics`` consent model the experiment's subjects are analysed under, and the packs it could not read.

    The rule of the packs that served the experiment's lists (their recorded name, version and hash), read as
    off-policy evaluation and the researchers' package read them (:func:`governance.ope.analytics_model`): the
    shipped pack of that name, else the installation's stored ``name@version`` under ``packs_dir``, when the content
    hash matches; ``opt_in`` when any of them asks a grant or cannot be read (its rule is unknown: the strict one
    applies, and the pack is named), else ``opt_out``."""
    from governance.ope import analytics_model

    served = session.execute(
        select(DecisionRecord.pack_name, DecisionRecord.pack_version, DecisionRecord.pack_hash)
        .where(experiment_id_of_decision(session) == row.id, DecisionRecord.decided_at >= row.started_at)
        .distinct()
    ).all()
    return analytics_model(served, packs_dir)


def _consenting(session: Session, row: Experiment, subjects: pd.DataFrame, packs_dir: Path | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The subjects whose consent covers ``analytics`` (the rule off-policy evaluation applies,
    :func:`governance.ope.analytics_allowed`), and what was excluded: per variant, the subjects left out."""
    from governance.ope import analytics_allowed

    model, unread = _analytics_model(session, row, packs_dir) if not subjects.empty else ("opt_out", [])
    pseudonyms = [str(s) for s in subjects.index]
    erased = _erased(session, pseudonyms)
    allowed = analytics_allowed(session, pseudonyms, model=model)
    gone = np.array([s in erased for s in pseudonyms], dtype=bool)
    keep = np.array([allowed[s] for s in pseudonyms], dtype=bool) & ~gone

    def per_arm(mask: np.ndarray) -> dict[str, int]:
        out = subjects[mask]
        return {str(v): int(n) for v, n in out.groupby("variant").size().items()} if not out.empty else {}

    excluded = {"analytics_consent_not_in_force": per_arm(~keep & ~gone), "erased_subjects": per_arm(gone)}
    consent = {"purpose": ANALYTICS, "model": model, "excluded": excluded, "packs_not_read": unread}
    return subjects[keep], consent


def _erased(session: Session, pseudonyms: list[str]) -> set[str]:
    """The pseudonyms among ``pseudonyms`` that were erased (crypto-shredded: their ``subject.shredded`` trail event).

    Erasure deletes a subject's outcome events but leaves their decisions under the now unlinkable pseudonym; read as
    a subject of the experiment, they would enter every look as one who never clicked nor converted."""
    if not pseudonyms:
        return set()
    query = select(TrailEvent.subject).where(TrailEvent.action == "subject.shredded", in_values(session, TrailEvent.subject, pseudonyms))
    return {str(s) for s in session.scalars(query.distinct())}


def _check_final_size(name: str, look: int, sizes: list[int], control: str, treatments: list[str], arms: Mapping[str, Any]) -> None:
    """Refuse the plan's final look before every arm reached the sample size the plan froze."""
    planned = {control: sizes[0], **{t: sizes[i + 1] if len(sizes) > i + 1 else max(sizes) for i, t in enumerate(treatments)}}
    missing = {v: max(0, n - arms[v].n) for v, n in planned.items()}
    if any(missing.values()):
        have = ", ".join(f"{v} {arms[v].n} of {planned[v]}" for v in planned)
        short = ", ".join(f"{v} {n}" for v, n in missing.items() if n)
        raise ExperimentConflict(FINAL_TOO_EARLY.format(name=name, look=look, have=have, short=short, total=sum(missing.values())))


def _values(metric: str, subjects: pd.DataFrame, outcomes: pd.DataFrame) -> pd.Series:
    """The metric per subject."""
    if metric == "click_through":
        return (outcomes["click"] > 0).astype(float)
    if metric == "conversion":
        return (outcomes["conversion"] > 0).astype(float)
    if metric == "clicks_per_subject":
        return outcomes["click"].astype(float)
    if metric == "non_profiling_share":
        return subjects["non_profiling"] / subjects["lists"]
    if metric == "fallback_share":
        return subjects["fallback"] / subjects["lists"]
    if metric == "empty_list_share":  # over the lists that could be opened; NaN (left out of the arm) where none could
        return subjects["empty"] / subjects["opened"].replace(0, np.nan)
    if metric == "latency_ms":
        return subjects["latency_ms"].astype(float)  # NaN where no list recorded a latency: left out of the arm
    raise ConfigError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")


def _arm(values: np.ndarray) -> Any:
    from recommender.experiments import ArmData

    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return ArmData(n=int(values.size), total=float(values.sum()), total_sq=float(np.square(values).sum()))


def _look_dict(look: ExperimentLook) -> dict[str, Any]:
    return {"id": look.id, "look": look.look, "kind": look.kind, "metric": look.metric, "at": look.at.isoformat(),
            "decision": look.decision, "trail_seq": look.trail_seq, "actor": look.actor, **look.result}  # fmt: skip


def _counts(subjects: pd.DataFrame) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for (variant, reason), n in subjects.groupby(["variant", "reason"]).size().items():
        counts.setdefault(str(variant), {})[str(reason)] = int(n)
    return counts


def _srm(spec: Mapping[str, Any], randomised: pd.DataFrame) -> dict[str, Any]:
    from recommender.experiments import srm_check

    observed = {v["name"]: int((randomised["variant"] == v["name"]).sum()) for v in spec["variants"]}
    if sum(observed.values()) == 0:
        return {"observed": observed, "checked": False, "mismatch": False, "reason": "no randomised subject yet"}
    result = _plain(srm_check(observed, dict(spec["allocation"])))
    return {"observed": observed, "checked": True, **result}


def _judged_guardrails(guardrails: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The plan's guardrails with each metric's own direction (:data:`GUARDRAIL_DIRECTION`).

    A plan frozen before directions were checked may hold one the wrong way round (harmful exposure
    ``higher_is_better``): judged as written, more harm would pass and an improvement fail. It is judged by the
    metric's direction, and the frozen one is kept as ``plan_direction`` beside it."""
    judged = []
    for g in guardrails:
        fixed = GUARDRAIL_DIRECTION.get(g["metric"], g["direction"])
        judged.append(dict(g) if fixed == g["direction"] else {**g, "direction": fixed, "plan_direction": g["direction"]})
    return judged


def _misjudged(look_result: Mapping[str, Any]) -> list[str]:
    """The guardrails a stored look judged against their metric's direction (taken before directions were fixed)."""
    return sorted({
        f"{g['metric']} ({g['direction']})" for g in look_result.get("guardrails", [])
        if g.get("metric") in GUARDRAIL_DIRECTION and g.get("direction") != GUARDRAIL_DIRECTION[g["metric"]]
    })  # fmt: skip


def _guardrail_failed(result: Mapping[str, Any]) -> bool:
    """A guardrail fails unless the treatment was shown non-inferior within its margin."""
    return not bool(result["non_inferior"])


def _guardrail(check: Callable[..., Any], control: Any, treatment: Any, guardrail: Mapping[str, Any], alpha: float) -> dict[str, Any]:
    """The library's non-inferiority test; where it has no variance to test, what the data show exactly.

    A metric constant in both arms (no subject's list was non-profiling, say) has no standard error: its
    difference is known exactly and is held to the margin as it is. Too few subjects is a failure: the
    treatment is not shown to be non-inferior."""
    try:
        return _plain(check(control, treatment, margin=guardrail["margin"], direction=guardrail["direction"], alpha=alpha))
    except DataError as err:
        if min(control.n, treatment.n) < 2:
            return {"non_inferior": False, "exact": False, "reason": str(err)}
        harm = (control.mean - treatment.mean) if guardrail["direction"] == "higher_is_better" else (treatment.mean - control.mean)
        return {"non_inferior": bool(harm <= guardrail["margin"]), "exact": True, "estimate": treatment.mean - control.mean,
                "reason": "the metric does not vary within either arm: the difference is exact"}  # fmt: skip


def _arms_alike_now(session: Session, row: Experiment) -> str | None:
    """Why a look at running experiment ``row`` is refused because two of its arms serve the same lists now (one names
    the model version in production, the other names none, under the same pack), or None. Checked at plan and start
    too; a promotion or rollback while it runs can bring it about."""
    variants = row.plan["spec"]["variants"]
    for i, name_, other, production in _arms_serving_production_alike(session, variants):
        said = INDISTINCT_ARMS.format(variant=name_, other=other, model=f"{production}, the model in production now,", pack=variants[i]["pack"] or "the request's pack")
        return ARMS_ALIKE_AT_LOOK.format(name=row.name, i=i, said=said)
    return None


def _refuse_alike_look(store: Any, name: str, actor: str) -> None:
    """:class:`ExperimentConflict` when running experiment ``name``'s arms serve the same lists now, after recording the
    refused look (``experiment.look_refused``, its own transaction: the refusal stays on the trail)."""
    with store.session() as session:
        lock_head(session)
        row = session.scalars(select(Experiment).where(Experiment.name == name)).first()
        if row is None or row.started_at is None:
            return
        if row.status == "running" and (refusal := _arms_alike_now(session, row)) is not None:
            _record(session, row, "experiment.look_refused", actor, {"reason": "arms_alike", "production": _production_model(session), "detail": refusal})
        elif (since := _arms_alike_since_start(session, row)) is not None:
            refusal, payload = since
            _record(session, row, "experiment.look_refused", actor, payload)
        else:
            return
    raise ArmsAlike(refusal)


def _record(session: Session, row: Experiment, action: str, actor: str, payload: dict[str, Any]) -> int:
    event = append_event(session, actor=actor, action=action, objects={"experiment": row.name}, payload=payload)
    return event.seq


def status(store: Any, name: str, *, actor: str, packs_dir: Path | None = None) -> dict[str, Any]:
    """Subjects per variant and reason, and the SRM check: a look at the data (an ``experiment.viewed`` event),
    never at a metric, so it spends no look. ``packs_dir``: the installation's stored packs, read for the analytics
    consent rule of lists served under a stored pack (see :func:`_analytics_model`)."""
    with store.session() as session:
        row = _get(session, name)
        summary = _summary(row)
        if row.started_at is None:
            return {**summary, "counts": {}, "srm": None, "viewed_seq": None}
        exposed = _exposures(session, row)
        drift = _pack_drift(row, exposed)
        subjects, consent = _consenting(session, row, exposed, packs_dir)
        spec = row.plan["spec"]
        srm = _srm(spec, subjects[subjects["reason"] == "randomised"])
        counts = _counts(subjects)
        seq = _record(session, row, "experiment.viewed", actor, {"counts": counts, "srm_mismatch": bool(srm.get("mismatch"))})
        looks = session.scalars(select(ExperimentLook).where(ExperimentLook.experiment_id == row.id).order_by(ExperimentLook.id)).all()
        return {**summary, "counts": counts, "consent": consent, "srm": srm, "pack_drift": drift, "viewed_seq": seq, "looks": [_look_dict(x) for x in looks]}


def analyze(
    store: Any, name: str, *, actor: str, metric: str | None = None, segment: str | None = None, packs_dir: Path | None = None,
    load_pack: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """One look at the experiment's data (see the module doc); stored, and anchored by an ``experiment.analyzed`` event.
    ``packs_dir``: as :func:`status`. ``load_pack``: as :func:`start`, checked while the experiment runs (an arm whose
    pack changed, or whose pack does not admit the production model it serves, refuses the look)."""
    from recommender.experiments import AnalysisPlan, analyze_look, correct, guardrail_check

    if metric is not None and metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
    if metric in NOT_PER_SUBJECT:
        raise ConfigError(f"metric {metric!r} is judged as a guardrail of the arm's whole traffic, not compared per subject; declare it under guardrails")
    if segment is not None and segment not in SEGMENTS:
        raise ConfigError(f"unknown segment {segment!r}; one of {', '.join(SEGMENTS)}")
    _refuse_alike_look(store, name, actor)
    with store.session() as session:
        lock_head(session)  # looks are numbered one at a time
        row = _get(session, name, lock=True)
        if row.started_at is None:
            raise ExperimentConflict(f"experiment {name!r} has not started: there is no data to look at")
        _check_frozen(row, None)
        _check_anchored(session, row)
        if row.status == "running":
            _check_arm_packs(session, row, load_pack)
            if (refusal := _arms_alike_now(session, row)) is not None:
                raise ArmsAlike(refusal)  # recorded by _refuse_alike_look; a move since then is refused all the same
        if (since := _arms_alike_since_start(session, row)) is not None:
            raise ArmsAlike(since[0])
        spec, design = row.plan["spec"], row.plan["spec"]["design"]
        primary = spec["primary_metric"]
        asked = metric or primary
        previous = session.scalars(select(ExperimentLook).where(ExperimentLook.experiment_id == row.id).order_by(ExperimentLook.id)).all()
        planned_before = [x for x in previous if x.kind == "planned"]
        concluded = any(x.decision != "continue" for x in planned_before)
        why_exploratory = [
            why for why, applies in (
                (f"metric {asked!r} is not the pre-registered primary metric {primary!r}", asked != primary),
                (f"segment {segment!r} is not in the plan", segment is not None),
                (f"the plan has {design['looks']} look(s) and all were taken", len(planned_before) >= design["looks"]),
                ("a planned look already concluded the experiment", concluded),
            ) if applies
        ]  # fmt: skip
        kind = "exploratory" if why_exploratory else "planned"
        look_no = len(planned_before) + 1 if kind == "planned" else None
        remaining = 0 if concluded else max(0, design["looks"] - len(planned_before))
        if kind == "exploratory" and asked == primary and remaining:
            raise ExperimentConflict(PRIMARY_PEEK.format(name=name, primary=primary, segment=segment, taken=len(planned_before), looks=design["looks"]))
        needs_slates = "empty_list_share" in (asked, *(g["metric"] for g in spec["guardrails"]))
        subjects = _exposures(session, row, empty_lists=needs_slates)
        drift = _pack_drift(row, subjects)
        subjects, consent = _consenting(session, row, subjects, packs_dir)
        randomised = subjects[subjects["reason"] == "randomised"]
        if segment is not None:
            randomised = randomised[(randomised["first_mode"] == "personalized") == (segment == "known")]
        outcomes = _outcomes(session, row, randomised)
        srm = _srm(spec, randomised)
        control = next(v["name"] for v in spec["variants"] if v["control"])
        treatments = [v["name"] for v in spec["variants"] if not v["control"]]
        values = {asked: _values(asked, randomised, outcomes)}
        for g in spec["guardrails"]:
            if g["metric"] not in NOT_PER_SUBJECT:
                values.setdefault(g["metric"], _values(g["metric"], randomised, outcomes))
        arms = {m: {v: _arm(s[randomised["variant"] == v].to_numpy()) for v in [control, *treatments]} for m, s in values.items()}
        sizes = [int(n) for n in row.plan["sample_size"]["n_per_arm"]]  # control first, then the treatments in plan order
        if kind == "planned" and design["method"] != "msprt" and look_no == design["looks"]:
            _check_final_size(name, look_no, sizes, control, treatments, arms[asked])
        comparisons = []
        for i, t in enumerate(treatments):
            planned_n = (sizes[0], sizes[i + 1]) if len(sizes) > i + 1 else max(sizes)
            if kind == "planned":
                analysis_plan = AnalysisPlan(
                    method=design["method"], alpha=design["alpha"], power=design["power"], kind=METRIC_KIND[asked], mde=design["mde"],
                    planned_n_per_arm=planned_n, looks=design["looks"], spending=design["spending"], alternative=design["alternative"],
                    futility_power=design.get("futility_power"),
                )  # fmt: skip
            else:  # an exploratory look is a nominal fixed-horizon test, at the plan's alpha, of what was asked
                analysis_plan = AnalysisPlan(
                    method="fixed", alpha=design["alpha"], power=design["power"], kind=METRIC_KIND[asked], mde=design["mde"],
                    planned_n_per_arm=planned_n, looks=1, alternative=design["alternative"],
                )  # fmt: skip
            history = _history([c["result"] for x in planned_before for c in x.result.get("comparisons", []) if c["variant"] == t]) if kind == "planned" else ()
            try:
                result = analyze_look(analysis_plan, arms[asked][control], arms[asked][t], look=look_no or 1, history=history)
            except DataError as err:
                raise ExperimentConflict(f"experiment {name!r}, variant {t!r}: {err}") from None
            comparisons.append({"variant": t, "result": _plain(result)})
        p_values = [c["result"].get("p_value") for c in comparisons]
        if len(comparisons) > 1 and all(p is not None for p in p_values):
            corrected = [float(p) for p in correct(p_values, design["correction"])]
            for c, p in zip(comparisons, corrected, strict=True):
                c["p_adjusted"] = p
        else:
            for c in comparisons:
                c["p_adjusted"] = c["result"].get("p_value")
        guardrails = []
        judged = _judged_guardrails(spec["guardrails"])  # by each metric's own direction, whatever an old plan froze
        quality = {g["quality"]: _values(g["quality"], randomised, outcomes) for g in judged if g.get("quality")}
        arm_level = judge_arm_guardrails(session, row, randomised, judged, control, treatments, design["alpha"],
                                         row.plan.get("guardrail_items", {}), segment=segment, quality=quality)  # fmt: skip
        for i, g in enumerate(judged):
            for t in treatments:
                if (i, t) in arm_level:
                    res = arm_level[(i, t)]
                else:
                    res = _guardrail(guardrail_check, arms[g["metric"]][control], arms[g["metric"]][t], g, design["alpha"])
                failed = _guardrail_failed(res)
                if kind == "exploratory" and remaining and primary in (g["metric"], g.get("quality")):
                    res = {"non_inferior": not failed, "reason": PRIMARY_GUARDRAIL_WITHHELD.format(primary=primary)}
                entry = {"metric": g["metric"], "variant": t, "margin": g["margin"], "direction": g["direction"], "failed": failed, "result": res}
                if "plan_direction" in g:
                    entry["plan_direction"] = g["plan_direction"]
                guardrails.append(entry)
        winners = []
        for c in comparisons:
            r = c["result"]
            p_ok = len(comparisons) == 1 or (c["p_adjusted"] is not None and c["p_adjusted"] <= design["alpha"])
            won = r.get("decision") == "reject" and (r.get("estimate") or 0) > 0 and p_ok
            c["won"] = bool(won)
            if won and not srm.get("mismatch") and not drift and not any(g["failed"] and g["variant"] == c["variant"] for g in guardrails):
                winners.append(c["variant"])
        decisions = {c["result"].get("decision") for c in comparisons}
        decision = "continue" if "continue" in decisions or not decisions else ("reject" if "reject" in decisions else sorted(decisions)[0])
        verdict = _verdict(kind, decision, srm, guardrails, winners, drift)
        result = {
            "metric": asked, "segment": segment, "exploratory_because": why_exploratory, "counts": _counts(subjects),
            "srm": srm, "comparisons": comparisons, "guardrails": guardrails, "winners": winners if kind == "planned" else [],
            "verdict": verdict, "recommendation": RECOMMENDATIONS[verdict], "correction": design["correction"], "randomised": int(len(randomised)),
            "consent": consent, "pack_drift": drift,
        }  # fmt: skip
        seq = _record(session, row, "experiment.analyzed", actor, {"look": look_no, "kind": kind, "metric": asked, "segment": segment,
                      "decision": decision, "verdict": verdict, "winners": result["winners"], "srm_mismatch": bool(srm.get("mismatch")),
                      **({"pack_drift": drift} if drift else {})})  # fmt: skip
        look = ExperimentLook(experiment_id=row.id, look=look_no, kind=kind, metric=asked, at=_now(), result=_plain(result), decision=decision, actor=actor, trail_seq=seq)
        session.add(look)
        session.flush()
        return {"experiment": row.name, "status": row.status, "plan_hash": row.plan_hash, **_look_dict(look)}


def _history(results: list[dict[str, Any]]) -> tuple[Any, ...]:
    """Earlier planned looks as the library's results (it builds sequential boundaries from them).

    Stored as JSON, where a non-finite number is null: it comes back as NaN."""
    from recommender.experiments import LookResult

    fields = LookResult.__dataclass_fields__
    return tuple(LookResult(**{k: (math.nan if v is None else v) for k, v in r.items() if k in fields}) for r in results)


def _verdict(kind: str, decision: str, srm: Mapping[str, Any], guardrails: list[dict[str, Any]], winners: list[str], drift: Mapping[str, Any]) -> str:
    """One word for people: what this look says."""
    if kind == "exploratory":
        return "exploratory"
    if drift:
        return "invalid_pack"
    if srm.get("mismatch"):
        return "invalid_srm"
    if any(g["failed"] for g in guardrails):
        return "guardrail_failed"
    if winners:
        return "treatment_won"
    if decision == "futility":
        return "futility"
    return "continue" if decision == "continue" else "no_win"


RECOMMENDATIONS: dict[str, str] = {
    "exploratory": "exploratory look: it decides nothing",
    "invalid_pack": (
        "stop and investigate: lists of an arm were served under a pack whose content is not the one the plan pinned "
        "(see pack_drift); the arms compared other rules than the plan's, so this look decides nothing"
    ),
    "invalid_srm": "stop and investigate: the assignment does not match the planned shares (sample ratio mismatch)",
    "guardrail_failed": "stop: a guardrail is breached (the treatment is not shown within its margin); not promotable",
    "treatment_won": "stop: the treatment won on the pre-registered metric",
    "futility": "stop for futility: the conditional power under the planned effect fell below the plan's futility_power",
    "continue": "continue to the next planned look",
    "no_win": "stop: no win on the pre-registered metric",
}
"""What a look's verdict tells the experimenter to do."""


def _final_look(session: Session, row: Experiment) -> ExperimentLook | None:
    """The last planned look of an experiment."""
    return session.scalars(
        select(ExperimentLook).where(ExperimentLook.experiment_id == row.id, ExperimentLook.kind == "planned").order_by(ExperimentLook.id.desc()).limit(1)
    ).first()


def experiments_of_model(session: Session, model_version: str) -> list[dict[str, Any]]:
    """Every experiment in which a variant served ``model_version``, with its last planned look's outcome."""
    out = []
    for row in session.scalars(select(Experiment).order_by(Experiment.id)):
        variants = [v["name"] for v in row.plan["spec"]["variants"] if v.get("model_version") == model_version]
        if not variants:
            continue
        look = _final_look(session, row)
        control = next(v for v in row.plan["spec"]["variants"] if v["control"])
        out.append({
            "name": row.name, "status": row.status, "plan_hash": row.plan_hash, "variants": variants,
            "control": control["name"],
            # variants serving the version under a pack of their own, other than the control's: their lift is the
            # pack's and the model's together, no evidence for the model alone
            "other_pack": {v["name"]: v["pack"] for v in row.plan["spec"]["variants"]
                           if v["name"] in variants and v.get("pack") and v.get("pack") != control.get("pack")},
            "primary_metric": row.plan["spec"]["primary_metric"], "hypothesis": row.plan["spec"]["hypothesis"],
            "started_at": row.started_at.isoformat() if row.started_at else None,
            "stopped_at": row.stopped_at.isoformat() if row.stopped_at else None,
            "last_planned_look": None if look is None else {"look": look.look, "decision": look.decision, "verdict": look.result.get("verdict"),
                                                             "winners": look.result.get("winners", []), "trail_seq": look.trail_seq,
                                                             "misjudged_guardrails": _misjudged(look.result)},
        })  # fmt: skip
    return out


def _guardrails_failed_by(session: Session, model_version: str) -> list[str]:
    """Why ``model_version`` may not be promoted on any experiment's result: each stopped or concluded experiment whose
    last planned look found a guardrail failed by a treatment serving that version (the metrics named)."""
    out = []
    for row in session.scalars(select(Experiment).order_by(Experiment.id)):
        spec = row.plan["spec"]
        treated = {v["name"] for v in spec["variants"] if v.get("model_version") == model_version and not v["control"]}
        look = _final_look(session, row) if treated else None
        if look is None or (row.status != "stopped" and look.decision == "continue"):
            continue
        if misjudged := _misjudged(look.result):
            out.append(f"experiment {row.name!r} ({row.status}): its last planned look (#{look.look}) judged the guardrail(s) "
                       f"{', '.join(misjudged)} the wrong way round, so whether a variant serving model version {model_version!r} "
                       "harmed subjects is unknown; a win elsewhere does not outweigh it")  # fmt: skip
            continue
        failed = sorted({g["metric"] for g in look.result.get("guardrails", []) if g.get("failed") and g.get("variant") in treated})
        if failed:
            out.append(f"experiment {row.name!r} ({row.status}): at its last planned look (#{look.look}) a variant serving model version "
                       f"{model_version!r} failed the guardrail(s) {', '.join(failed)} (guardrail_failed); a win elsewhere does not outweigh it")  # fmt: skip
    return out


def gate_verdict(session: Session, model_version: str) -> tuple[bool, list[str], dict[str, Any] | None]:
    """Whether a pre-registered result lets ``model_version`` through: ``(passed, reasons, evidence)``.

    Passes when an experiment that is stopped, or whose last planned look concluded, found at that
    planned look (the primary metric, every randomised subject) that a non-control variant serving
    ``model_version`` won, with the SRM check passed and no guardrail failed, and no such experiment found a
    guardrail failed by a variant serving it (a harm found once is not outweighed by a win in another
    experiment). Exploratory looks never count.
    """
    reasons: list[str] = []
    passing = None
    harmed = _guardrails_failed_by(session, model_version)
    for exp in experiments_of_model(session, model_version):
        look = exp["last_planned_look"]
        treated = [v for v in exp["variants"] if v != exp["control"]]
        where = f"experiment {exp['name']!r} ({exp['status']})"
        if not treated:
            reasons.append(f"{where}: model version {model_version!r} is its control, not a treatment")
        elif look is None:
            reasons.append(f"{where}: no planned look at its pre-registered metric {exp['primary_metric']!r} yet")
        elif exp["status"] != "stopped" and look["decision"] == "continue":
            reasons.append(f"{where}: still running and its last planned look (#{look['look']}) did not conclude")
        elif look["misjudged_guardrails"]:
            reasons.append(
                f"{where}: its last planned look (#{look['look']}) judged the guardrail(s) {', '.join(look['misjudged_guardrails'])} "
                "the wrong way round (the plan was frozen before directions were checked): a harm could have passed as an "
                "improvement, so its result cannot pass the gate; plan the experiment again"
            )
        elif not set(treated) & set(look["winners"]):
            reasons.append(f"{where}: its last planned look (#{look['look']}) on {exp['primary_metric']!r} found no win ({look['verdict']})")
        elif not set(treated) & set(look["winners"]) - set(exp["other_pack"]):
            packs = ", ".join(f"{v} under pack {exp['other_pack'][v]!r}" for v in sorted(set(treated) & set(look["winners"])))
            reasons.append(
                f"{where}: its win ({packs}) was served under a pack the control did not serve: the lift is the pack's and "
                "the model's together, not evidence for the model alone"
            )
        elif passing is None:
            passing = {"experiment": exp["name"], "plan_hash": exp["plan_hash"], "look": look["look"], "trail_seq": look["trail_seq"]}
    if harmed:  # a guardrail the version failed is not outweighed by a win elsewhere
        return False, harmed, None
    if passing is not None:
        return True, [], passing
    if not reasons:
        reasons.append(f"model version {model_version!r} was in no planned experiment; the pack requires a positive pre-registered result")
    return False, reasons, None
