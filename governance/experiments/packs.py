"""What an arm's pack may be: no weaker than production's unless the plan says why, and admitting the arm's model.

A variant that names a pack serves its subjects under that pack instead of the
one the request names. Two things are checked when the plan is frozen
(:func:`governance.experiments.lifecycle.plan`):

* :func:`weaker_than`: the arm's pack against the production pack (the pack the
  deployment policy binds to ``production``) and the control's pack, if it names
  one. It is weaker when it holds fewer rules of a check, or fewer that block, in
  a protective section (minimisation, consent, fairness, harmful content), drops a consent purpose or the grant an
  ``opt_in`` purpose asks, a forbidden or audit-only attribute, the GPC signal,
  a blocked harm category, or a constraint re-ranking step (a fairness
  constraint); keeps events longer (``minimization.retention_days`` left out or
  larger); or loosens the ``gate`` section (a status dropped from ``block_on``, a
  rule of a check dropped from ``required_rules``, ``max_warnings`` left out or
  larger). Such an arm is refused unless the variant carries
  ``weaker_pack_acknowledged`` (why, in words), which is frozen with the plan and
  anchored on the trail.
* :func:`model_refused`: the model version an arm serves must be one the arm's
  pack admits: the family's declared inputs on the pack's minimisation
  allow-list, and none of the columns its run recorded (its recorded
  ``model_inputs`` and parameters) naming a forbidden or audit-only attribute,
  as a governed fit under that pack would require (:mod:`governance.family_inputs`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audits.models import ModelVersion, TrainingRun
from governance.family_inputs import family_input_verdict
from recommender.attribute_names import named_attributes

__all__ = ["PROTECTIVE_SECTIONS", "model_refused", "weaker_than"]

PROTECTIVE_SECTIONS = ("minimization", "consent", "fairness", "harmful_content")
"""Sections whose rules protect subjects: an arm's pack that drops one of them serves with less protection."""


def _checks(pack: Any, section: str) -> tuple[Counter[str], Counter[str]]:
    """How many rules of each check the section holds: all of them, and those that block."""
    rules = getattr(pack, section).rules
    return Counter(r.check for r in rules), Counter(r.check for r in rules if r.severity == "block")


def weaker_than(arm: Any, reference: Any) -> list[str]:
    """How the pack ``arm`` protects subjects less than ``reference`` (both :class:`~governance.policy.PolicyPack`);
    empty when it drops nothing.

    Rules are compared by their check, not their id (two packs name their rules apart): the arm must hold as many
    rules of each check of a protective section as the reference, and as many that block. A rule's parameters (a
    threshold, the attribute it groups by) are not compared."""
    found: list[str] = []
    for section in PROTECTIVE_SECTIONS:
        (arm_all, arm_block), (ref_all, ref_block) = _checks(arm, section), _checks(reference, section)
        for check, n in sorted(ref_all.items()):
            if arm_all[check] < n:
                found.append(f"{section}: {arm_all[check]} {check} rule(s), not {n}")
            elif arm_block[check] < ref_block[check]:
                found.append(f"{section}: {arm_block[check]} blocking {check} rule(s), not {ref_block[check]} (the others only warn)")
    for purpose, basis in reference.consent.purposes.items():
        mine = arm.consent.purposes.get(purpose)
        if mine is None:
            found.append(f"consent purpose {purpose!r} is missing")
        elif basis.model == "opt_in" and mine.model == "opt_out":
            found.append(f"consent purpose {purpose!r} is opt_out, not opt_in (no grant needed)")
        elif basis.erase_on_withdrawal and not mine.erase_on_withdrawal:
            found.append(f"consent purpose {purpose!r} does not erase on withdrawal")
    if reference.consent.honour_gpc and not arm.consent.honour_gpc:
        found.append("consent.honour_gpc is off (the GPC signal is not an opt-out)")
    for field in ("forbidden_attributes", "audit_only_attributes"):
        dropped = sorted(set(getattr(reference.minimization, field)) - set(getattr(arm.minimization, field)))
        if dropped:
            found.append(f"minimization.{field} drops {', '.join(dropped)}")
    for purpose, theirs in reference.minimization.purposes.items():
        inputs = arm.minimization.purposes.get(purpose)
        if inputs is None:
            found.append(f"minimization.purposes.{purpose} (its allow-list) is missing")
        elif more := sorted(set(inputs.allowed_inputs) - set(theirs.allowed_inputs)):
            found.append(f"minimization.purposes.{purpose}.allowed_inputs adds {', '.join(more)}")
    kept, limit = arm.minimization.retention_days, reference.minimization.retention_days
    if limit is not None and (kept is None or kept > limit):
        found.append(f"minimization.retention_days is {'not set (no limit)' if kept is None else kept}, not {limit} (older events are kept and learnt from)")
    found += _gate_looser(arm, reference)
    dropped = sorted(set(reference.harmful_content.blocked_categories) - set(arm.harmful_content.blocked_categories))
    if dropped:
        found.append(f"harmful_content.blocked_categories drops {', '.join(dropped)}")
    from governance.policy import CONSTRAINT_RERANKERS

    def constraints(pack: Any) -> set[str]:
        return {s.name for s in pack.reranking.steps if s.name in CONSTRAINT_RERANKERS} if pack.reranking.enabled else set()

    if missing := sorted(constraints(reference) - constraints(arm)):
        found.append(f"re-ranking constraint step(s) {', '.join(missing)} are not applied (no fairness constraint)")
    return found


def _required_checks(pack: Any) -> Counter[str]:
    """The checks of the rules the pack's gate requires (rules compared by check: two packs name their rules apart)."""
    checks = {rule.id: rule.check for _, rule in pack.rules()}
    return Counter(checks.get(rule_id, rule_id) for rule_id in pack.gate.required_rules)


def _gate_looser(arm: Any, reference: Any) -> list[str]:
    """How the arm's ``gate`` section lets through what the reference's blocks (statuses, required rules, warnings)."""
    found = []
    mine, theirs = arm.gate, reference.gate
    if missing := [status for status in theirs.block_on if status not in mine.block_on]:
        found.append(f"gate.block_on drops {', '.join(missing)} (those results no longer block)")
    required, needed = _required_checks(arm), _required_checks(reference)
    for check, n in sorted(needed.items()):
        if required[check] < n:
            found.append(f"gate.required_rules: {required[check]} required {check} rule(s), not {n}")
    if theirs.max_warnings is not None and (mine.max_warnings is None or mine.max_warnings > theirs.max_warnings):
        found.append(f"gate.max_warnings is {'not set (no limit)' if mine.max_warnings is None else mine.max_warnings}, not {theirs.max_warnings}")
    return found


def _purpose(pack: Any) -> str:
    """The purpose whose allow-list the pack's ``input_allowlist`` rule reads (``personalization`` by default)."""
    for rule in pack.minimization.rules:
        if rule.check == "input_allowlist":
            return str(getattr(rule.params, "purpose", "personalization"))
    return "personalization"


def model_refused(session: Session, model_version: str, pack: Any) -> str | None:
    """Why the pack ``pack`` (a :class:`~governance.policy.LoadedPack`) may not serve ``model_version``, or None.

    The model's family (its run's ``family``, else its kind) must read only inputs the pack's allow-list admits
    (:func:`governance.family_inputs.family_input_verdict`, with the family parameters the run recorded), and
    no input its run recorded (``model_inputs``), nor a column it read one from (``input_sources``), may name a
    forbidden or audit-only attribute."""
    from recommender.family import families

    row = session.execute(
        select(ModelVersion.kind, TrainingRun.params)
        .join(TrainingRun, ModelVersion.training_run_id == TrainingRun.id)
        .where(ModelVersion.version_id == model_version)
    ).first()
    if row is None:
        return None  # not recorded: refused elsewhere
    params = row.params if isinstance(row.params, dict) else {}
    inner = getattr(pack, "pack", pack)
    purpose = _purpose(inner)
    forbidden = [*inner.minimization.forbidden_attributes, *inner.minimization.audit_only_attributes]
    recorded = [str(c) for c in params.get("model_inputs") or []]
    # and the columns the fit read them from (``--map value=religion_code``: the run's ``input_sources``)
    sources = params.get("input_sources")
    recorded += [str(c) for c in sources.values()] if isinstance(sources, dict) else []
    banned = sorted({c for c in recorded if named_attributes(c, forbidden)})
    if banned:
        return (f"model version {model_version!r} was trained on {', '.join(banned)}, which the pack's "
                "minimization.forbidden_attributes or audit_only_attributes name")  # fmt: skip
    family = families().get(str(params.get("family") or row.kind).removesuffix("-spark"))
    if family is None:
        return None  # a kind no family declares: its inputs are the recorded ones, checked above
    family_params = params.get("family_params") if isinstance(params.get("family_params"), dict) else None
    verdict = family_input_verdict(family, inner, purpose=purpose, params=family_params)
    if verdict["ok"]:
        return None
    parts = []
    if verdict["not_allowed"]:
        allowed = "none listed" if verdict["allowed"] is None else ", ".join(verdict["allowed"]) or "none"
        parts.append(f"reads {', '.join(verdict['not_allowed'])}, not on {verdict['path']} ({allowed})")
    if verdict["banned_attributes"]:
        parts.append(f"reads the forbidden or audit-only attribute(s) {', '.join(verdict['banned_attributes'])}")
    if verdict["banned_columns"]:
        parts.append("; ".join(verdict["banned_columns"]))
    return f"model version {model_version!r} (family {family.name}) " + "; ".join(parts)
