"""What a provider hands its independent auditor (DSA Art. 37), laid out as the audit report's template.

Commission Delegated Regulation (EU) 2024/436 fixes the template of the
independent audit report (its Annex I): general information on the audited
provider and on the auditing organisation, the scope of the audit, and for
each obligation audited the audit criteria, the procedures performed, the
evidence obtained, a conclusion (positive, positive with comments, negative)
and recommendations; with a part on the risk assessment and the mitigation
measures of Art. 34 and 35.

recgov is not the auditor. :func:`dsa_audit_export` fills, from the regulator's
report document (:func:`governance.report.collect`), only the parts a provider
holds the facts for: who the provider is (the pack's controller and DPO), which
model and pack are audited, and for each obligation recgov evidences (Art. 27,
Art. 38, Art. 34/35, Art. 16/20, and Art. 28 when the pack assesses a risk to
minors) the store's evidence: audit ids with their rule results, counts from
the decision log and the case and request tables, and the trail's head and
signed checkpoint. Every other part holds :data:`FOR_AUDITOR`, and
``parts_for_the_auditor`` lists where they are, so the document can be read
without guessing which sentence is the provider's and which the auditor's.

The document is a pydantic model (:class:`DsaAuditExport`, versioned by
:data:`DSA_AUDIT_SCHEMA`), so its JSON Schema is generated, never written by
hand (``schemas/dsa-audit-export.schema.json``, see :func:`dsa_audit_json_schema`).
:func:`render_markdown` prints it for a person. Subjects appear only as counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = [
    "DSA_AUDIT_SCHEMA",
    "FOR_AUDITOR",
    "DsaAuditExport",
    "dsa_audit_export",
    "dsa_audit_json_schema",
    "render_markdown",
]

DSA_AUDIT_SCHEMA = "recgov.dsa-audit-export/v1"
FOR_AUDITOR = "for the auditor"
"""The value of every part the provider cannot fill: the auditor writes it."""
TEMPLATE = "Commission Delegated Regulation (EU) 2024/436, Annex I (template for the audit report, DSA Art. 37)"
Conclusion = Literal["for the auditor", "positive", "positive with comments", "negative"]
_ARTICLE = re.compile(r"Art\.\s*(\d+)")


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Provider(_Part):
    """The audited provider, as the pack in force declares its controller and DPO."""

    name: str = Field(description="The controller's name (GDPR Art. 4(7)), or 'for the auditor'.")
    address: str
    contact: str
    dpo_name: str
    dpo_contact: str


class AuditedService(_Part):
    """What the evidence is about: one model version under one pack."""

    model_version: str
    current_stage: str | None = Field(description="The model's deployment stage now (production serves it).")
    pack: str | None = Field(description="The pack in force (name), None when no pack in force was found.")
    pack_version: str | None
    pack_hash: str | None = Field(description="The pack's content hash (SHA-256 of its normal form).")


class Auditor(_Part):
    """The auditing organisation: always the auditor's to fill."""

    name: str = FOR_AUDITOR
    address: str = FOR_AUDITOR
    team: str = FOR_AUDITOR
    independence_declaration: str = FOR_AUDITOR
    audit_period: str = FOR_AUDITOR


class GeneralInformation(_Part):
    """Part 1 of the template: who is audited, by whom, and when."""

    audited_provider: Provider
    audited_service: AuditedService
    auditor: Auditor = Field(default_factory=Auditor)
    evidence_period: dict[str, str | None] = Field(
        description="First and last time the store recorded an audit of this model ('from', 'to'), and when this export was made ('generated_at')."
    )


class Evidence(_Part):
    """One piece of evidence from the store: an audit result, or a count with where it comes from."""

    source: Literal["audit_result", "decision_log", "escalation_cases", "subject_requests", "item_blocks", "pack", "trail"]
    reference: str = Field(description="Where to find it in the store, e.g. 'audit #3, rule eu-consent-coverage'.")
    audit_id: int | None = None
    rule_id: str | None = None
    status: str | None = Field(None, description="The rule's result (pass, warn, fail, error, skipped) for an audit result.")
    value: JsonValue = Field(None, description="The measured figure, as the check recorded it (a number, or a structure).")
    threshold: JsonValue = Field(None, description="What the figure was held against, as the pack states it (a number or an expression).")
    legal_reference: str | None = None
    figures: dict[str, int | float | str | None] = Field(default_factory=dict, description="Counts and shares, by name.")


class Obligation(_Part):
    """One audited obligation: the provider's evidence, and the auditor's parts of the template."""

    article: str = Field(description="The DSA provision, e.g. 'Art. 38'.")
    title: str
    provider_statement: str = Field(description="What the provider says it does, built from what is in force.")
    evidence: list[Evidence]
    audit_criteria: str = FOR_AUDITOR
    procedures_performed: str = FOR_AUDITOR
    conclusion: Conclusion = FOR_AUDITOR
    recommendations: str = FOR_AUDITOR


class Mitigation(_Part):
    """One Art. 35 mitigation of a risk: in force or not, and the evidence it works."""

    name: str
    kind: Literal["rule", "mechanism"]
    in_force: bool
    evidence: Evidence | str | None = Field(description="An audit result for a rule; a sentence for a mechanism; None when never measured.")


class Risk(_Part):
    """One systemic risk as the provider assessed it (Art. 34), with its mitigations (Art. 35)."""

    id: str
    category: str
    description: str
    likelihood: str
    severity: str
    mitigations: list[Mitigation]
    auditor_assessment: str = FOR_AUDITOR


class TrailEvidence(_Part):
    """The audit trail's head and its latest signed checkpoint: every count above is covered by them."""

    head_seq: int
    head_hash: str
    checkpoint: dict[str, Any] | None = Field(
        description="seq, hash, time and key_id of the latest checkpoint that verifies with a trusted key, or None."
    )
    n_checkpoints: int
    checkpoint_verification: dict[str, Any] | None = Field(
        None,
        description="Which keys were trusted (installation: the operator's keys folder; database: the keys the database "
        "holds, where the installation holds none), how many checkpoints verify, and the latest stored checkpoint with "
        "whether it verifies and, if not, why.",
    )
    records: dict[str, Any] | None = Field(
        None,
        description="Whether each record this export's evidence is read from (data set, training run, model, audits "
        "with their results, deployment moves) still says what the trail event that wrote it recorded: scope, "
        "checked, problems (record, problem), sound. A checkpoint proves the chain, not rows edited in place.",
    )


class DsaAuditExport(_Part):
    """The provider's part of a DSA Art. 37 audit report, in the template's order (see the module)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"title": "recgov DSA audit export"})

    schema_: Literal["recgov.dsa-audit-export/v1"] = Field(DSA_AUDIT_SCHEMA, alias="schema")
    template: str = TEMPLATE
    generated_at: str
    for_auditor_marker: Literal["for the auditor"] = Field(FOR_AUDITOR, description="The value of every part the auditor fills.")
    general_information: GeneralInformation
    scope: str = Field(description="The obligations the provider's evidence covers, and what it leaves out.")
    obligations: list[Obligation]
    obligations_not_evidenced: list[str] = Field(description="Obligations the template lists that recgov holds no evidence for.")
    risk_assessment: list[Risk] | None = Field(description="Art. 34/35; None when the pack in force declares no systemic risks.")
    trail: TrailEvidence
    overall_opinion: Conclusion = FOR_AUDITOR
    parts_for_the_auditor: list[str] = Field(description="Dotted paths of every part holding 'for the auditor'.")


def dsa_audit_json_schema() -> dict[str, Any]:
    """The JSON Schema of the export (``schemas/dsa-audit-export.schema.json`` is this, generated)."""
    schema = DsaAuditExport.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://recgov.dev/schemas/dsa-audit-export-v1.json"
    return schema


# -- evidence from the report's document ----------------------------------------------------
def _dsa_articles(reference: str | None) -> set[int]:
    """The DSA articles a rule's legal reference names ('GDPR Art. 5(1)(c); DSA Art. 38' -> {38})."""
    found: set[int] = set()
    for part in (reference or "").split(";"):
        if part.strip().startswith("DSA"):
            found |= {int(n) for n in _ARTICLE.findall(part)}
    return found


def _result_evidence(audit: dict[str, Any], result: dict[str, Any]) -> Evidence:
    return Evidence(
        source="audit_result",
        reference=f"audit #{audit['id']} ({audit['policy_pack']} {audit['policy_version']}), rule {result['rule_id']}",
        audit_id=audit["id"],
        rule_id=result["rule_id"],
        status=result["status"],
        value=result["value"],
        threshold=result["threshold"],
        legal_reference=result["legal_reference"],
    )


def _latest_results(audits: Sequence[dict[str, Any]], articles: set[int]) -> list[Evidence]:
    """Each rule's latest result, over the model's audits, whose legal reference names one of ``articles``."""
    latest: dict[str, Evidence] = {}
    for audit in audits:
        for result in audit["results"]:
            if _dsa_articles(result["legal_reference"]) & articles:
                latest[result["rule_id"]] = _result_evidence(audit, result)
    return list(latest.values())


def _mitigation_evidence(raw: Any, audits: Sequence[dict[str, Any]], name: str) -> Evidence | str | None:
    """A rule mitigation's evidence as the audit result it cites; a mechanism's stays its sentence."""
    if not isinstance(raw, dict):
        return raw
    audit = next(a for a in audits if a["id"] == raw["audit_id"])
    result = next(r for r in audit["results"] if r["rule_id"] == name)
    return _result_evidence(audit, result)


def _risks(extra: dict[str, Any], audits: Sequence[dict[str, Any]]) -> list[Risk] | None:
    if extra["systemic_risks"] is None:
        return None
    return [
        Risk(
            **{k: risk[k] for k in ("id", "category", "description", "likelihood", "severity")},
            mitigations=[
                Mitigation(name=m["name"], kind=m["kind"], in_force=m["in_force"], evidence=_mitigation_evidence(m["evidence"], audits, m["name"]))
                for m in risk["mitigations"]
            ],
        )
        for risk in extra["systemic_risks"]
    ]


def _art27(document: dict[str, Any], audits: Sequence[dict[str, Any]]) -> Obligation:
    policy = document["policy"]
    said = policy["disclosure"] if policy else None
    evidence = _latest_results(audits, {27})
    if said is not None:
        evidence.insert(0, Evidence(
            source="pack",
            reference=f"pack {policy['pack']} {policy['version']} (hash {policy['hash']}): the disclosure derived from it",
            figures={"main_parameters": len(said["signals"]), "post_processing_steps": len(said["post_processing"]),
                     "user_options": len(said["options"]), "inputs": len(said["inputs"])},
        ))  # fmt: skip
    statement = (
        "The main parameters, their weights and the users' options are derived from the pack in force and the model's "
        "configuration (the report's disclosure), so they cannot drift from the system that serves."
        if said is not None
        else "No pack in force was found for this model: the disclosure could not be derived."
    )
    return Obligation(article="Art. 27", title="Recommender system transparency", provider_statement=statement, evidence=evidence)


def _art38(extra: dict[str, Any], audits: Sequence[dict[str, Any]]) -> Obligation:
    modes = extra["decisions"]
    evidence = [Evidence(
        source="decision_log",
        reference="decisions served by this model, by mode",
        figures={"decisions": modes["decisions"], "non_profiling": modes["non_profiling"],
                 "non_profiling_share": modes["non_profiling_share"], **{f"mode.{m}": n for m, n in modes["by_mode"].items()}},
    ), *_latest_results(audits, {38})]  # fmt: skip
    return Obligation(
        article="Art. 38",
        title="An option of the recommender not based on profiling",
        provider_statement="Every request may get a list not based on profiling; it is served to anyone without a lawful basis to profile, "
        "and every served list records its mode in the decision log.",
        evidence=evidence,
    )


def _art34_35(extra: dict[str, Any], audits: Sequence[dict[str, Any]], risks: list[Risk] | None) -> Obligation:
    evidence = _latest_results(audits, {34, 35})
    if risks is not None:
        n_mitigations = sum(len(r.mitigations) for r in risks)
        evidence.insert(0, Evidence(
            source="pack", reference="the pack's systemic_risks section (see risk_assessment)",
            figures={"risks": len(risks), "mitigations": n_mitigations,
                     "mitigations_in_force": sum(m.in_force for r in risks for m in r.mitigations)},
        ))  # fmt: skip
    statement = (
        "The risks are assessed in the pack in force, each mapped to its mitigations and to the audit evidence that each works."
        if risks is not None
        else "The pack in force declares no systemic risks: recgov holds no risk assessment for this model."
    )
    return Obligation(article="Art. 34, Art. 35", title="Risk assessment and mitigation of risks", provider_statement=statement, evidence=evidence)


def _art16_20(document: dict[str, Any], extra: dict[str, Any]) -> Obligation:
    cases = extra["timeliness"]["notice_and_action"]
    esc = document["escalations"]
    evidence = [
        Evidence(source="escalation_cases", reference="notice-and-action cases against their deadlines (store-wide)", figures=dict(cases)),
        Evidence(source="escalation_cases", reference="cases by status and by severity",
                 figures={**{f"status.{k}": v for k, v in esc["by_status"].items()}, **{f"severity.{k}": v for k, v in esc["by_severity"].items()}}),
        Evidence(source="item_blocks", reference="items blocked from every list now", figures={"items_blocked": extra["items_blocked"]}),
    ]  # fmt: skip
    return Obligation(
        article="Art. 16, Art. 20",
        title="Notice and action, and its timely handling",
        provider_statement="Notices and flags open cases with a deadline; a decision to block removes the item from every list.",
        evidence=evidence,
    )


def _art28(risks: list[Risk] | None) -> Obligation | None:
    minors = [r for r in risks or () if r.category == "public_health_and_minors"]
    if not minors:
        return None
    evidence = [m.evidence for r in minors for m in r.mitigations if isinstance(m.evidence, Evidence)]
    return Obligation(
        article="Art. 28",
        title="Online protection of minors",
        provider_statement=f"The pack assesses {len(minors)} risk(s) to minors: {', '.join(r.id for r in minors)} (see risk_assessment).",
        evidence=evidence,
    )


def _for_auditor(value: Any, path: str = "") -> Iterable[str]:
    """Dotted paths of every string equal to :data:`FOR_AUDITOR` (the marker itself excluded)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key != "for_auditor_marker":
                yield from _for_auditor(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _for_auditor(item, f"{path}.{index}")
    elif value == FOR_AUDITOR:
        yield path


def dsa_audit_export(document: dict[str, Any]) -> DsaAuditExport:
    """The export, from the regulator's report document of one model (see the module)."""
    extra = document["accountability"]
    audits = document["audit_runs"]
    policy = document["policy"]
    controller, dpo = extra["controller"] or {}, extra["dpo"] or {}
    risks = _risks(extra, audits)
    obligations = [_art27(document, audits), _art38(extra, audits), _art34_35(extra, audits, risks), _art16_20(document, extra)]
    minors = _art28(risks)
    not_evidenced = ["Art. 28 (the pack in force assesses no risk to minors)"] if minors is None else []
    obligations += [minors] if minors is not None else []
    trail = document["trail"]
    export = DsaAuditExport(
        generated_at=document["generated_at"],
        general_information=GeneralInformation(
            audited_provider=Provider(
                name=controller.get("name", FOR_AUDITOR),
                address=controller.get("address", FOR_AUDITOR),
                contact=controller.get("contact", FOR_AUDITOR),
                dpo_name=dpo.get("name", FOR_AUDITOR),
                dpo_contact=dpo.get("contact", FOR_AUDITOR),
            ),
            audited_service=AuditedService(
                model_version=document["model_version"]["version_id"],
                current_stage=document["current_stage"],
                pack=policy and policy["pack"],
                pack_version=policy and policy["version"],
                pack_hash=policy and policy["hash"],
            ),
            evidence_period={
                "from": audits[0]["ended_at"] if audits else None,
                "to": audits[-1]["ended_at"] if audits else None,
                "generated_at": document["generated_at"],
            },
        ),
        scope="The recommender system of the audited service, one model version under the pack in force: "
        + ", ".join(o.article for o in obligations)
        + ". Every other obligation of the provider is outside what this export evidences.",
        obligations=obligations,
        obligations_not_evidenced=not_evidenced,
        risk_assessment=risks,
        trail=TrailEvidence(
            head_seq=trail["head_seq"], head_hash=trail["head_hash"], checkpoint=trail["checkpoint"], n_checkpoints=trail["n_checkpoints"],
            checkpoint_verification=trail.get("checkpoint_verification"), records=trail.get("records"),
        ),
        parts_for_the_auditor=[],
    )
    export.parts_for_the_auditor = list(_for_auditor(export.model_dump(mode="json", by_alias=True)))
    return export


# -- Markdown ---------------------------------------------------------------------------------
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|!~&])")
_MD_LINE_START = re.compile(r"^(\s*)([-+=])|^(\s*\d+)([.)])(?=\s|$)")
_LINE_BREAKS = re.compile(r"[\r\n\t\f\v\x1c-\x1e\x85\u2028\u2029]+")


def _md(value: Any) -> str:
    """``value`` as inline Markdown text: one line (a line break in a pack's or store's text cannot open a heading or
    a section of its own), with every character that would format, link or pass raw HTML escaped."""
    text = _LINE_BREAKS.sub(" ", str(value))
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return _MD_LINE_START.sub(lambda m: f"{m.group(1)}\\{m.group(2)}" if m.group(2) else f"{m.group(3)}\\{m.group(4)}", text)


def _evidence_line(ev: Evidence) -> str:
    if ev.source == "audit_result":
        return f"- {_md(ev.reference)}: **{_md(ev.status)}** (value {_md(ev.value)}, threshold {_md(ev.threshold)}; {_md(ev.legal_reference)})"
    figures = ", ".join(f"{_md(k)} {'not measured' if v is None else _md(v)}" for k, v in ev.figures.items()) or "none recorded"
    return f"- {_md(ev.reference)}: {figures}"


def _obligation_lines(ob: Obligation) -> list[str]:
    lines = [f"### {_md(ob.article)}: {_md(ob.title)}", "", f"**Provider's statement.** {_md(ob.provider_statement)}", "", "**Evidence obtained.**", ""]
    lines += [_evidence_line(ev) for ev in ob.evidence] or ["- none in the store"]
    lines += ["", f"**Audit criteria.** {_md(ob.audit_criteria)}", "", f"**Procedures performed.** {_md(ob.procedures_performed)}", ""]
    lines += [f"**Conclusion.** {_md(ob.conclusion)}", "", f"**Recommendations.** {_md(ob.recommendations)}", ""]
    return lines


def _risk_lines(risks: list[Risk] | None) -> list[str]:
    if risks is None:
        return ["The pack in force declares no systemic risks.", ""]
    lines: list[str] = []
    for risk in risks:
        lines += [f"### {_md(risk.id)} ({_md(risk.category)}; likelihood {_md(risk.likelihood)}, severity {_md(risk.severity)})", "", _md(risk.description), ""]
        for m in risk.mitigations:
            said = _evidence_line(m.evidence)[2:] if isinstance(m.evidence, Evidence) else _md(m.evidence or "never measured")
            lines.append(f"- {_md(m.name)} ({_md(m.kind)}, {'in force' if m.in_force else 'not in force'}): {said}")
        lines += ["", f"**Auditor's assessment.** {_md(risk.auditor_assessment)}", ""]
    return lines


def _unverified_lines(verification: dict[str, Any] | None) -> list[str]:
    """The latest stored checkpoint when it does not verify, and keys trusted only because the database holds them."""
    if not verification:
        return []
    lines = []
    if verification.get("trusted_keys") == "database":
        lines.append("- Checked with the keys the database holds only: this installation holds no key of its own")
    latest = verification.get("latest")
    if latest and not latest.get("verified"):
        lines.append(f"- Latest stored checkpoint NOT verified: seq {latest['seq']}, key {_md(latest['key_id'])}: {_md(latest['reason'])}")
    return lines


def _record_lines(records: dict[str, Any] | None) -> list[str]:
    """Whether the records the evidence is read from still match the trail, and each that does not."""
    if not records:
        return []
    if records.get("sound"):
        return [f"- Records held against the trail: {records.get('checked')}, each still as its trail event recorded it"]
    return [
        f"- Records that NO LONGER MATCH the trail ({len(records.get('problems') or [])} of {records.get('checked')} checked); "
        "the evidence read from them is not proven by the trail:",
        *(f"  - {_md(p.get('record'))}: {_md(p.get('problem'))}" for p in records.get("problems") or []),
    ]


def render_markdown(export: DsaAuditExport) -> str:
    """The export as Markdown, in the template's order."""
    info = export.general_information
    p, s, a = info.audited_provider, info.audited_service, info.auditor
    checkpoint = export.trail.checkpoint
    period = info.evidence_period
    lines = [
        f"# DSA independent audit: the provider's evidence ({export.schema_})",
        "",
        f"Template: {export.template}. Generated {export.generated_at}. Parts marked *{FOR_AUDITOR}* are the auditor's.",
        "",
        "## 1. General information",
        "",
        f"- Audited provider: {_md(p.name)}, {_md(p.address)} ({_md(p.contact)}); DPO {_md(p.dpo_name)} ({_md(p.dpo_contact)})",
        f"- Audited service: model {_md(s.model_version)} {f'in {_md(s.current_stage)}' if s.current_stage else 'not deployed (no stage)'}, "
        + (f"pack {_md(s.pack)} {_md(s.pack_version)} (hash {_md(s.pack_hash)})" if s.pack else "no pack in force was found"),
        "- Evidence period: "
        + (f"{period['from']} to {period['to']}" if period.get("from") else "none (no audit of this model is recorded)"),
        f"- Auditor: {_md(a.name)}; team: {_md(a.team)}; independence: {_md(a.independence_declaration)}; audit period: {_md(a.audit_period)}",
        "",
        "## 2. Scope",
        "",
        _md(export.scope),
        "",
        *(f"- Not evidenced: {_md(item)}" for item in export.obligations_not_evidenced),
        "",
        "## 3. Obligations audited",
        "",
    ]
    for ob in export.obligations:
        lines += _obligation_lines(ob)
    lines += ["## 4. Risk assessment and mitigation (Art. 34, Art. 35)", "", *_risk_lines(export.risk_assessment)]
    lines += [
        "## 5. Audit trail",
        "",
        f"- Head: seq {export.trail.head_seq}, hash {export.trail.head_hash}",
        "- Latest verified checkpoint: "
        + ("none" if checkpoint is None else f"seq {checkpoint['seq']}, hash {checkpoint['hash']}, key {checkpoint['key_id']}"),
        *_unverified_lines(export.trail.checkpoint_verification),
        *_record_lines(export.trail.records),
        "",
        f"## 6. Audit opinion\n\n{_md(export.overall_opinion)}",
        "",
    ]
    return "\n".join(lines)
