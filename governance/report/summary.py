"""The executive summary at the top of the regulator's report: plain sentences built from the store.

A reader who stops after one paragraph should know what is deployed, stage by
stage; under which gating pack (name, version, content hash); what failed in
the audits of the model and what was done about it (a re-audit that passed, a
promotion the gate refused, a rollback); and what is in force around it (item
blocks, requests past their deadline). Every sentence is built from figures
the rest of the report shows in full, so the summary can be checked against
them and never says more than the store holds.
"""

from __future__ import annotations

from typing import Any

__all__ = ["executive_summary"]


def _short(digest: str | None) -> str:
    return (digest or "")[:12] or "unknown"


def _deployment_sentences(document: dict[str, Any]) -> list[str]:
    """What is deployed, each move with the pack and audit that allowed it, and any rollback."""
    version = document["model_version"]["version_id"]
    moves = document["deployments"]
    if not moves:
        return [f"Model {version} has never been deployed: it serves no one."]
    out = [f"Model {version} is now in {document['current_stage']}."]
    for move in moves:
        came_from = move["previous_stage"] or "new"
        gate = move.get("gate")
        how = (
            f"gated by pack {gate['pack']} {gate['pack_version']} (hash {_short(gate['pack_hash'])})"
            + (f" on audit #{gate['audit_id']}" if gate.get("audit_id") else "")
            if gate
            else "not gated (a shadow is never served)"
            if move["stage"] == "shadow" and came_from == "new"
            else "without a recorded gate"
        )
        if move["stage"] == "retired" and came_from == "production":
            out.append(f"On {move['changed_at']} it was rolled back: retired from production.")
        elif came_from == "production" and move["stage"] == "shadow":
            out.append(f"On {move['changed_at']} a newer version displaced it from production back to shadow.")
        else:
            out.append(f"On {move['changed_at']} it moved from {came_from} to {move['stage']}, {how}.")
    return out


def _installation_sentence(deployed: dict[str, list[str]]) -> str:
    """Which model versions the installation serves now, stage by stage."""
    stages = "; ".join(f"{stage}: {', '.join(versions) or 'none'}" for stage, versions in deployed.items())
    return f"Deployed in this installation now, stage by stage: {stages}."


def _gating_sentence(document: dict[str, Any]) -> str:
    """The pack that gated the current stage, and whether it is the pack the report discloses."""
    gates = [m["gate"] for m in document["deployments"] if m.get("gate")]
    policy = document.get("policy")
    if not gates:
        return "No gated stage has been reached, so no pack has gated this model's service."
    gate = gates[-1]
    sentence = f"Its current stage was gated by pack {gate['pack']} {gate['pack_version']}, content hash {gate['pack_hash']}."
    if policy and policy["hash"] != gate["pack_hash"]:
        sentence += f" The pack this report discloses is {policy['pack']} {policy['version']} (hash {_short(policy['hash'])}), not that one."
    return sentence


def _audit_sentences(audits: list[dict[str, Any]], deployments: list[dict[str, Any]]) -> list[str]:
    """How many audits passed; for each failed one, the failing rules and what followed it."""
    if not audits:
        return ["The model has never been audited."]
    failed = [a for a in audits if a["verdict"] != "pass"]
    out = [f"It was audited {len(audits)} time(s): {len(audits) - len(failed)} passed and {len(failed)} did not."]
    gated_on = {m["gate"]["audit_id"] for m in deployments if m.get("gate") and m["gate"].get("audit_id")}
    for audit in failed:
        rules = [r["rule_id"] for r in audit["results"] if r["status"] in ("fail", "error")]
        what = f"failed rules {', '.join(rules)}" if rules else f"verdict {audit['verdict']}"
        later = [a for a in audits if a["id"] > audit["id"] and a["verdict"] == "pass"]
        # The same pack is the same content (its hash): a pack of that name whose rules changed is another rule book.
        passed = next((a for a in later if a["policy_hash"] == audit["policy_hash"]), None)
        same_name = next((a for a in later if a["policy_pack"] == audit["policy_pack"]), None)
        if passed is not None:
            then = f"it was re-audited under the same pack (content hash {_short(passed['policy_hash'])}) and audit #{passed['id']} passed"
        elif audit["id"] in gated_on:
            then = "a move was nevertheless recorded on it"
        else:
            then = f"no stage was reached on it (the gate refuses a failed audit) and no passing re-audit under that pack (content hash {_short(audit['policy_hash'])}) is recorded"
        if passed is None and same_name is not None:
            then += (
                f"; audit #{same_name['id']} passed under pack {same_name['policy_pack']} {same_name['policy_version']}"
                f" (content hash {_short(same_name['policy_hash'])}): other content than the failed audit's pack"
            )
        out.append(f"Audit #{audit['id']} under pack {audit['policy_pack']} {audit['policy_version']} {what}; {then}.")
    return out


def _in_force_sentences(extra: dict[str, Any], document_policy: dict[str, Any] | None) -> list[str]:
    """Item blocks, requests past their deadline, and the pack sections the report could not show."""
    kept, blocked = extra.get("items_kept_out", extra["items_blocked"]), extra["items_blocked"]
    out = [
        f"{kept} item(s) are kept out of every list now: {blocked} blocked by an escalation decision"
        + (f", {kept - blocked} under review in an open case or flagged in a category the pack blocks." if kept > blocked else ".")
    ]
    requests = extra["timeliness"]["subject_requests"]
    late = sum(c["late"] for c in requests.values())
    overdue = sum(c["open_overdue"] for c in requests.values())
    on_time = sum(c["on_time"] for c in requests.values())
    out.append(
        f"Of the data subject requests, {on_time} were completed on time, {late} late, and {overdue} are open past their deadline."
    )
    if extra["missing"] and document_policy is None:
        out.append(f"No pack in force was found, so the report cannot show: {', '.join(extra['missing'])}.")
    elif extra["missing"]:
        out.append(f"The pack in force does not declare: {', '.join(extra['missing'])}; the report shows them as missing.")
    return out


def executive_summary(document: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    """The summary's sentences, from the report's document and its accountability part (see the module)."""
    return [
        *_deployment_sentences(document),
        _installation_sentence(extra["deployed"]),
        _gating_sentence(document),
        *_audit_sentences(document["audit_runs"], document["deployments"]),
        *_in_force_sentences(extra, document.get("policy")),
    ]
