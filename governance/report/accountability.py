"""What a DSA auditor asks for first, read from the store and the pack in force.

The report's lineage (:func:`governance.report.collect`) says how a model was
made; this module adds who answers for it and whether its safeguards work:

* the controller, the DPO and the model card, as the pack declares them;
* headline metrics with their baselines, from the audits' own results;
* timeliness: subject requests and notice-and-action cases against their deadlines;
* how often the non-profiling list (DSA Art. 38) was served, from the decision log;
* the systemic risks the pack declares (DSA Art. 34), each mapped to the
  mitigations in force (Art. 35) and the audit evidence that each one works.

Absent is never invented: a pack without a section yields None and a note in
``missing``, and a mitigation without stored evidence says so. Subjects appear
only as counts. Everything here is JSON-ready, so the report's document stays one
plain dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audits.models import DecisionRecord, EscalationCase, ItemBlock, SubjectRequest

__all__ = ["accountability", "decision_modes", "headline_metrics", "served_lists", "systemic_risks", "timeliness"]

OPEN_REQUEST = ("received", "in_progress")
OPEN_CASE = ("open", "triaged")
MECHANISM_EVIDENCE = {
    "item_blocks": "items blocked in force",
    "escalation": "notice-and-action cases and their timeliness",
    "non_profiling": "share of served lists not based on profiling",
    "exploration": "an exploration re-ranking step",
    "reranking": "the pack's re-ranking steps",
}


def _aware(moment: datetime | None) -> datetime | None:
    """The store's times are UTC; a driver may hand them back naive."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _tally(rows: Iterable[tuple[bool, datetime | None, datetime, bool]], now: datetime) -> dict[str, int]:
    """Count (closed, closed_at, due, failed) rows as on time, late, open, open overdue and failed."""
    out = {"total": 0, "on_time": 0, "late": 0, "open": 0, "open_overdue": 0, "failed": 0}
    for closed, closed_at, due, failed in rows:
        out["total"] += 1
        due_at = _aware(due)
        if failed:
            out["failed"] += 1
        elif not closed:
            out["open_overdue" if due_at is not None and due_at < now else "open"] += 1
        else:
            done = _aware(closed_at)
            out["late" if done is not None and due_at is not None and done > due_at else "on_time"] += 1
    return out


def timeliness(session: Session, now: datetime | None = None) -> dict[str, Any]:
    """Subject requests by kind, and notice-and-action cases, against their deadlines (store-wide counts)."""
    now = now or datetime.now(UTC)
    requests = session.execute(
        select(SubjectRequest.kind, SubjectRequest.status, SubjectRequest.completed_at, SubjectRequest.deadline)
    ).all()
    by_kind: dict[str, list[tuple[bool, datetime | None, datetime, bool]]] = {}
    for kind, status, completed_at, deadline in requests:
        by_kind.setdefault(kind, []).append((status not in OPEN_REQUEST, completed_at, deadline, status == "failed"))
    cases = session.execute(select(EscalationCase.status, EscalationCase.updated_at, EscalationCase.sla_due)).all()
    return {
        "as_of": now.isoformat(),
        "subject_requests": {kind: _tally(rows, now) for kind, rows in sorted(by_kind.items())},
        "notice_and_action": _tally(((s not in OPEN_CASE, at, due, False) for s, at, due in cases), now),
    }


def served_lists(query: Any) -> Any:
    """``query`` of decisions without the lists a shadow version made and nobody saw (``context.shadow_of``)."""
    return query.where(DecisionRecord.context["shadow_of"].as_string().is_(None))


def decision_modes(session: Session, model_version_id: str) -> dict[str, Any]:
    """How the lists served by this model were made, and the share not based on profiling (DSA Art. 38).

    A shadow version's lists are recorded but never served (:mod:`governance.shadow`): they are left out.
    """
    rows = session.execute(
        served_lists(select(DecisionRecord.mode, func.count()).where(DecisionRecord.model_version == model_version_id))
        .group_by(DecisionRecord.mode)
    ).all()
    by_mode = {str(mode): int(n) for mode, n in rows}
    total = sum(by_mode.values())
    return {
        "decisions": total,
        "by_mode": by_mode,
        "non_profiling": by_mode.get("non_profiling", 0),
        "non_profiling_share": by_mode.get("non_profiling", 0) / total if total else None,
    }


def headline_metrics(audits: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each quality rule's latest measured figure, with the baseline it was held against when it names one."""
    latest: dict[str, dict[str, Any]] = {}
    for audit in audits:
        for r in audit["results"]:
            if r["section"] == "quality" and r["value"] is not None:
                ev = r["evidence"]
                latest[r["rule_id"]] = {
                    "rule_id": r["rule_id"],
                    "audit_id": audit["id"],
                    "pack": audit["policy_pack"],
                    "metric": ev.get("metric") or r["check"],
                    "value": ev.get("model_value", r["value"]),
                    "baseline": ev.get("baseline"),
                    "baseline_value": ev.get("baseline_value"),
                    "threshold": r["threshold"],
                    "status": r["status"],
                }
    return list(latest.values())


def _rule_evidence(rule_id: str, audits: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest audit result of ``rule_id`` over this model's audits, as evidence (None when never measured)."""
    for audit in reversed(audits):
        for r in audit["results"]:
            if r["rule_id"] == rule_id:
                ev = r["evidence"]
                before, after = ev.get("before"), ev.get("after")
                return {
                    "audit_id": audit["id"],
                    "pack": audit["policy_pack"],
                    "status": r["status"],
                    "value": r["value"],
                    "threshold": r["threshold"],
                    "message": r["message"],
                    "before_after": {"before": before, "after": after}
                    if isinstance(before, dict) and isinstance(after, dict)
                    else None,
                }
    return None


def _mechanism_evidence(
    name: str, pack: Any, modes: dict[str, Any], times: dict[str, Any], blocks: int, audits: Sequence[dict[str, Any]] = ()
) -> tuple[bool, str]:
    """(in force, what shows it works) for a mechanism or a re-ranker named as a mitigation."""
    steps = [s.name for s in pack.reranking.steps] if pack.reranking.enabled else []
    if name == "non_profiling":
        share = modes["non_profiling_share"]
        served = f"{modes['non_profiling']} of {modes['decisions']} served lists" if modes["decisions"] else "no list served yet"
        return True, f"offered on every request; {served} were not based on profiling" + (
            f" ({share:.1%})" if share is not None else ""
        )
    if name == "item_blocks":
        return bool(pack.harmful_content.blocked_categories) or blocks > 0, f"{blocks} item(s) blocked in force"
    if name == "escalation":
        n = times["notice_and_action"]
        return True, f"{n['total']} case(s): {n['on_time']} handled on time, {n['late']} late, {n['open_overdue']} open past due"
    if name in ("reranking", "exploration"):
        named = steps if name == "reranking" else [s for s in steps if s == "exploration"]
        return bool(named), f"steps in force: {', '.join(named)}" if named else "no such step is enabled in the pack"
    if name not in steps:
        return False, f"re-ranking step {name} is not enabled in the pack"
    return True, f"re-ranking step {name} is enabled; " + tradeoff_evidence(name, audits)


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def tradeoff_evidence(step: str, audits: Sequence[dict[str, Any]]) -> str:
    """What the latest audit that measured the re-ranking saw, plain lists against re-ranked (one sentence).

    The audit keeps the trade-off in its summary (:func:`governance.tradeoff.tradeoff_summary`):
    the provider exposure gap, the share of lists meeting ``step``'s constraint and
    the accuracy at k, each before and after re-ranking.
    """
    for audit in reversed(audits):
        trade = (audit.get("summary") or {}).get("tradeoff")
        if not trade:
            continue
        k = trade.get("k")
        parts = []
        gap = (trade.get("provider_exposure") or {}).get("gap")
        if gap:
            reduction = gap.get("reduction")
            parts.append(f"provider exposure gap {_fmt(gap['plain'])} → {_fmt(gap['reranked'])}"
                         + (f" ({_fmt(reduction, '.0%')} smaller)" if reduction is not None else ""))  # fmt: skip
        met = (trade.get("constraints_met") or {}).get(step)
        if isinstance(met, dict):
            parts.append(f"lists meeting its constraint {_fmt(met.get('plain'), '.0%')} → {_fmt(met.get('reranked'), '.0%')}")
        ndcg = (trade.get("accuracy") or {}).get("ndcg")
        if ndcg:
            parts.append(f"ndcg@{k} {_fmt(ndcg['plain'])} → {_fmt(ndcg['reranked'])}")
        if parts:
            return f"audit {audit['id']} ({audit['policy_pack']}), plain → re-ranked lists: " + "; ".join(parts)
    return "no audit of this model measured the re-ranking against the plain lists yet"


def systemic_risks(
    pack: Any, audits: Sequence[dict[str, Any]], modes: dict[str, Any], times: dict[str, Any], blocks: int
) -> list[dict[str, Any]]:
    """The pack's systemic risks, each mitigation with whether it is in force and the evidence it works."""
    rule_ids = {rule.id for _, rule in pack.rules()}
    out = []
    for risk in pack.systemic_risks or ():
        mitigations = []
        for name in risk.mitigations:
            if name in rule_ids:
                evidence = _rule_evidence(name, audits)
                mitigations.append({"name": name, "kind": "rule", "in_force": True, "evidence": evidence})
            else:
                in_force, said = _mechanism_evidence(name, pack, modes, times, blocks, audits)
                mitigations.append({"name": name, "kind": "mechanism", "in_force": in_force, "evidence": said})
        out.append({**risk.model_dump(exclude={"mitigations"}), "mitigations": mitigations})
    return out


def accountability(
    session: Session, model_version_id: str, audits: Sequence[dict[str, Any]], pack: Any | None
) -> dict[str, Any]:
    """The report's accountability part: who answers, the model card, timeliness, Art. 38 and Art. 34/35.

    ``pack`` is the :class:`~governance.policy.PolicyPack` in force, or None; each
    section the pack does not declare is None and named in ``missing``.
    """
    from governance.deploy import deployed_versions
    from governance.escalation import items_out_of_lists

    times = timeliness(session)
    modes = decision_modes(session, model_version_id)
    blocks = int(session.scalar(select(func.count()).select_from(ItemBlock).where(ItemBlock.blocked.is_(True))) or 0)
    declared = {
        "controller": None if pack is None or pack.controller is None else pack.controller.model_dump(),
        "dpo": None if pack is None or pack.dpo is None else pack.dpo.model_dump(),
        "model_card": None if pack is None or pack.model_card is None else pack.model_card.model_dump(),
    }
    risks = None if pack is None or pack.systemic_risks is None else systemic_risks(pack, audits, modes, times, blocks)
    missing = [name for name, value in {**declared, "systemic_risks": risks}.items() if value is None]
    return {
        **declared,
        "systemic_risks": risks,
        "missing": missing,
        "headline_metrics": headline_metrics(audits),
        "timeliness": times,
        "decisions": modes,
        "items_blocked": blocks,
        "items_kept_out": len(items_out_of_lists(session, pack)),
        "deployed": {stage: sorted(versions) for stage, versions in deployed_versions(session).items() if stage != "retired"},
    }
