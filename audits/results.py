"""Recording an audit: the run, every rule's result with its evidence, and the trail event.

This module takes plain data (it knows nothing of the policy engine's types):
the caller passes the pack stamp, the results as dicts and the verdict. The
trail event of the audit carries a SHA-256 over the canonical JSON of every
result, so a result row changed later no longer matches the trail.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from audits.canonical import canonical_json
from audits.lineage import record_audit_run
from audits.models import AuditResult, AuditRun

__all__ = ["gate_mismatch", "record_audit_results", "results_digest", "verify_audit_results"]

RESULT_FIELDS = ("rule_id", "section", "check", "severity", "status", "message", "value", "threshold", "evidence", "legal_reference", "line")


def results_digest(results: list[dict[str, Any]]) -> str:
    """SHA-256 over the canonical JSON of the results (in order), domain separated."""
    plain = [{k: r.get(k) for k in RESULT_FIELDS} for r in results]
    return hashlib.sha256(b"recgov.audit-results.v1\x00" + canonical_json(plain)).hexdigest()


def gate_mismatch(gate: dict[str, Any] | None, run: AuditRun | None) -> str | None:
    """What in a stored gate document disagrees with the audit run it decided, or None when it all agrees.

    The document is a copy kept for reading back; the run (its verdict, its
    summary with the results' SHA-256, the counts, reasons and enforcement)
    is what the trail anchors. A document that cannot be checked (no run, no
    digest) is treated as a mismatch: never shown as a decision unverified.
    """
    summary = (run.summary or {}) if run is not None else {}
    if gate is None or run is None or summary.get("results_sha256") is None:
        return "there is no recorded digest to check it against"
    if results_digest(gate.get("results") or []) != summary["results_sha256"]:
        return "its results differ from the recorded ones"
    decision = gate.get("decision") or {}
    if run.verdict in ("pass", "fail") and decision.get("passed") is not (run.verdict == "pass"):
        return f"its decision differs from the recorded verdict {run.verdict!r}"
    for name, recorded in (("reasons", summary.get("reasons")), ("enforced", summary.get("enforced"))):
        if recorded is not None and decision.get(name) != recorded:
            return f"its decision's {name} differ from the recorded ones"
    if summary.get("counts") is not None and gate.get("counts") != summary["counts"]:
        return "its counts differ from the recorded ones"
    if gate.get("pack_hash") != run.policy_hash:
        return "its pack hash differs from the recorded one"
    return None


def record_audit_results(
    session: Session,
    *,
    pack: str,
    pack_version: str,
    pack_hash: str,
    model_version: str | None,
    dataset_version: Any,
    dataset_hash: str | None,
    verdict: str,
    results: list[dict[str, Any]],
    started_at: datetime,
    ended_at: datetime,
    summary: dict[str, Any] | None = None,
    actor: str | None = None,
) -> AuditRun:
    """Record the audit run (with its trail event) and one row per result.

    ``results`` are JSON-ready dicts with the keys of :data:`RESULT_FIELDS`.
    """
    digest = results_digest(results)
    run = record_audit_run(
        session,
        policy_pack=pack,
        policy_version=pack_version,
        policy_hash=pack_hash,
        verdict=verdict,
        started_at=started_at,
        ended_at=ended_at,
        model_version=model_version,
        dataset_version=dataset_version,
        summary={**(summary or {}), "n_results": len(results), "results_sha256": digest},
        actor=actor,
    )
    session.add_all(
        AuditResult(
            audit_run_id=run.id,
            rule_id=r["rule_id"],
            section=r["section"],
            check_name=r["check"],
            severity=r["severity"],
            status=r["status"],
            message=r["message"],
            value=r.get("value"),
            threshold=r.get("threshold"),
            evidence=r.get("evidence") or {},
            legal_reference=r.get("legal_reference"),
            pack_name=pack,
            pack_version=pack_version,
            pack_hash=pack_hash,
            model_version_id=model_version,
            dataset_hash=dataset_hash,
            pack_line=r.get("line"),
        )
        for r in results
    )
    session.flush()
    return run


def verify_audit_results(connection: Any) -> list[dict[str, Any]]:
    """Check every audit's stored results against the digest in its trail event; return the problems."""
    import orjson
    from sqlalchemy import select

    from audits.models import TrailEvent

    problems: list[dict[str, Any]] = []
    runs = connection.execute(select(AuditRun.id, AuditRun.trail_seq, AuditRun.verdict)).all()
    for run_id, seq, verdict in runs:
        payload = connection.execute(select(TrailEvent.payload).where(TrailEvent.seq == seq)).scalar_one_or_none()
        doc = orjson.loads(payload) if isinstance(payload, (str, bytes)) else (payload or {})
        summary = doc.get("summary") or {}
        expected = summary.get("results_sha256")
        if expected is None:
            continue  # an audit recorded without per-rule results
        if doc.get("verdict") != verdict:
            problems.append({"audit": run_id, "problem": f"the verdict is {verdict!r} but the trail recorded {doc.get('verdict')!r}"})
        columns = (
            AuditResult.rule_id, AuditResult.section, AuditResult.check_name, AuditResult.severity, AuditResult.status,
            AuditResult.message, AuditResult.value, AuditResult.threshold, AuditResult.evidence, AuditResult.legal_reference,
            AuditResult.pack_line,
        )  # fmt: skip
        query = select(*columns).where(AuditResult.audit_run_id == run_id).order_by(AuditResult.id)
        results = [dict(zip(RESULT_FIELDS, row, strict=True)) for row in connection.execute(query)]
        if len(results) != summary.get("n_results") or results_digest(results) != expected:
            problems.append({"audit": run_id, "problem": "the stored results no longer match the audit's SHA-256 (changed, added or deleted)"})
    return problems
