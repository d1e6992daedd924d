"""The regulator's lineage report: which data, under which consent, made which model,
which checks it passed, what it emitted, and the trail that proves nothing was rewritten.

:func:`collect` reads the store into one JSON-ready document (counts only for
subjects: no raw id and no pseudonym ever enters it); :func:`render_html` turns it
into a self-contained page and :func:`openlineage_events` into OpenLineage run events.
The document opens with an executive summary (:mod:`governance.report.summary`)
and carries what a DSA auditor asks for first (:mod:`governance.report.accountability`):
controller and DPO, model card, timeliness, the non-profiling option and the
systemic risks with their mitigations.

Example
-------
>>> with store.session() as session:                                  # doctest: +SKIP
...     doc = collect(session, "als-66329e...", loaded_pack)
>>> Path("report.html").write_text(render_html(doc))                   # doctest: +SKIP
"""

from __future__ import annotations

from datetime import UTC, datetime
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audits.lineage import lineage_of
from audits.models import AuditResult, EscalationCase, SubjectRequest
from audits.trail import read_head
from governance.experiments.lifecycle import experiments_of_model
from governance.report.lifecycle import lifecycle_evidence
from governance.report.tradeoff_section import tradeoff_evidence
from governance.report.accountability import accountability
from governance.report.summary import executive_summary
from governance.report.trail_proof import checkpoint_evidence
from governance.report.integrity import record_integrity

__all__ = ["REPORT_SCHEMA", "collect", "openlineage_events", "render_html"]

REPORT_SCHEMA = "recgov.report/v1"


def _results(session: Session, audit_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(select(AuditResult).where(AuditResult.audit_run_id == audit_id).order_by(AuditResult.id))
    return [
        {
            "rule_id": r.rule_id,
            "section": r.section,
            "check": r.check_name,
            "severity": r.severity,
            "status": r.status,
            "message": r.message,
            "value": r.value,
            "threshold": r.threshold,
            "legal_reference": r.legal_reference,
            "evidence": r.evidence or {},
        }
        for r in rows
    ]


def _counts(session: Session, column: Any, *where: Any) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).where(*where).group_by(column)).all()
    return {str(key): int(n) for key, n in rows}


def _policy_history(audits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per distinct (pack, version, hash), in the order the audits first used it."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for a in audits:
        key = (a["policy_pack"], a["policy_version"], a["policy_hash"])
        if key not in seen:
            seen[key] = {"pack": key[0], "version": key[1], "hash": key[2], "first_used": a["ended_at"], "audits": 0}
        seen[key]["audits"] += 1
        seen[key]["last_used"] = a["ended_at"]
    return list(seen.values())


def collect(
    session: Session, model_version_id: str, pack: Any | None = None, *, trusted_keys: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Everything the report shows, as one JSON-ready dict.

    ``pack`` is a :class:`governance.policy.LoadedPack` (the pack in force) or
    None (the disclosure is then left out with a note). Subjects appear only as
    counts. ``trusted_keys`` (key id -> Ed25519 public key; default: the
    installation's keys folder, :func:`audits.keys.installation_public_keys`) are
    the keys a checkpoint must verify with to be shown as proof
    (:mod:`governance.report.trail_proof`). Raises
    :class:`recommender.errors.ConfigError` for an unknown model version (from
    :func:`audits.lineage.lineage_of`).
    """
    from audits.keys import installation_public_keys

    from governance.disclosure import disclosure

    chain = lineage_of(session, model_version_id)
    run = chain["training_run"]
    params = run["params"] or {}
    audits = [{**a, "results": _results(session, a["id"])} for a in chain["audit_runs"]]
    head_seq, head_hash = read_head(session.connection())
    proof, verification = checkpoint_evidence(session, installation_public_keys() if trusted_keys is None else trusted_keys)
    in_force = None
    if pack is not None:
        model_params = {k: v for k, v in params.items() if k not in ("feedback", "model_inputs", "privacy_filter")}
        in_force = {
            "pack": pack.name,
            "version": pack.version,
            "hash": pack.content_hash,
            "disclosure": disclosure(
                pack.pack, model_params, model_kind=chain["model_version"]["kind"], model_inputs=params.get("model_inputs")
            ),
            "audited": any(a["policy_hash"] == pack.content_hash for a in audits),
            "consent_purposes": {name: c.model_dump() for name, c in pack.pack.consent.purposes.items()},
        }
    document = {
        "schema": REPORT_SCHEMA,
        "generated_at": datetime.now(UTC).isoformat(),
        "model_version": chain["model_version"],
        "training_run": run,
        "dataset_version": chain["dataset_version"],
        "privacy_filter": params.get("privacy_filter"),
        "model_inputs": params.get("model_inputs"),
        "policy": in_force,
        "policy_history": _policy_history(audits),
        "audit_runs": audits,
        "deployments": chain["deployments"],
        "current_stage": chain.get("current_stage"),
        "experiments": experiments_of_model(session, model_version_id),
        "escalations": {
            "by_status": _counts(session, EscalationCase.status),
            "by_severity": _counts(session, EscalationCase.severity),
        },
        "subject_requests": {
            kind: _counts(session, SubjectRequest.status, SubjectRequest.kind == kind)
            for kind in ("erasure", "access", "objection", "retrain")
        },
        "trail": {
            "head_seq": head_seq,
            "head_hash": head_hash,
            "events": chain["trail"],
            # the latest checkpoint signed by a trusted key (never one the database alone vouches for), and
            # whether the latest stored one verifies
            "checkpoint": proof,
            "checkpoint_verification": verification,
            "n_checkpoints": verification["n_checkpoints"],
            # whether each record shown still says what its trail event recorded: a row edited in place leaves the
            # chain and its checkpoint intact, so the checkpoint alone does not vouch for the figures above
            "records": record_integrity(session, model_version_id),
        },
        "accountability": accountability(session, model_version_id, audits, None if pack is None else pack.pack),
        "lifecycle": lifecycle_evidence(session, model_version_id),
        "tradeoff": tradeoff_evidence(session, model_version_id),
    }
    document["executive_summary"] = executive_summary(document, document["accountability"])
    return document


def render_html(document: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (see :mod:`governance.report.html`)."""
    from governance.report.html import render_html as render

    return render(document)


def openlineage_events(document: dict[str, Any]) -> list[dict[str, Any]]:
    """OpenLineage run events (see :mod:`governance.report.openlineage`)."""
    from governance.report.openlineage import openlineage_events as events

    return events(document)
