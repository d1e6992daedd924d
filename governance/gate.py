"""The pre-deployment gate: decide from an audit report, and write it for machines and people.

``decide`` applies the pack's gate conditions; the writers give the full result
(passed checks too) as JSON with a published schema, JUnit XML for CI systems, a
short Markdown summary and SARIF 2.1.0 pointing at each rule's line in the pack.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from governance.engine import AuditReport, RuleResult
from governance.registry import Status
from recommender.errors import ConfigError

__all__ = [
    "GateDecision", "GateDocument", "OUTPUT_FILES", "check_outputs", "decide", "write_outputs", "to_junit", "to_markdown",
    "to_sarif", "gate_json_schema",
]  # fmt: skip

GATE_SCHEMA_VERSION = "recgov.gate/v1"


class GateDecision(BaseModel):
    """Whether the release may proceed, and why."""

    model_config = ConfigDict(extra="forbid")

    passed: bool
    enforced: bool = True
    """False in shadow mode: recorded, not enforced."""
    reasons: list[str] = Field(default_factory=list)
    """Why the gate blocks (empty when it passes)."""


class GateDocument(BaseModel):
    """The JSON document ``recgov gate`` writes (schema: ``recgov gate --schema``)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal["recgov.gate/v1"] = GATE_SCHEMA_VERSION
    decision: GateDecision
    audit_id: str | None = None
    pack: str
    pack_version: str
    pack_hash: str
    pack_source: str
    model_version: str | None
    dataset_version: str | None
    counts: dict[str, int]
    results: list[RuleResult]
    engine: str | None = None
    """The engine that computed the audit facts (``inprocess`` or ``spark``); None in documents made without one."""


def decide(report: AuditReport, gate: Any) -> GateDecision:
    """Apply the pack's ``gate`` section to ``report``."""
    # A crashed check is never a pass, whatever the pack's block_on says.
    block_on = set(gate.block_on) | {"error"}
    reasons = [f"{r.rule_id} ({r.section}) is {r.status.value}: {r.message}" for r in report.results if r.status.value in block_on]
    by_id = {r.rule_id: r for r in report.results}
    for rule_id in gate.required_rules:
        r = by_id.get(rule_id)
        if r is None:
            reasons.append(f"required rule {rule_id} did not run")
        elif r.status != Status.passed and r.status.value not in block_on:
            reasons.append(f"required rule {rule_id} is {r.status.value}: {r.message}")
    n_warn = sum(r.status == Status.warn for r in report.results)
    if gate.max_warnings is not None and n_warn > gate.max_warnings:
        reasons.append(f"{n_warn} warnings exceed the gate's limit of {gate.max_warnings}")
    if report.shadow:
        return GateDecision(passed=True, enforced=False, reasons=[f"shadow mode, not enforced: {r}" for r in reasons])
    return GateDecision(passed=not reasons, reasons=reasons)


def document(report: AuditReport, decision: GateDecision, audit_id: str | None = None, engine: str | None = None) -> GateDocument:
    """The full gate result as one document (``engine``: what computed the facts, when known)."""
    return GateDocument(
        decision=decision,
        audit_id=audit_id,
        pack=report.pack,
        pack_version=report.pack_version,
        pack_hash=report.pack_hash,
        pack_source=report.pack_source,
        model_version=report.model_version,
        dataset_version=report.dataset_version,
        counts=report.counts(),
        results=report.results,
        engine=engine,
    )


def gate_json_schema() -> dict[str, Any]:
    """The JSON Schema of the gate document."""
    schema = GateDocument.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://recgov.dev/schemas/gate-result-v1.json"
    return schema


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters XML 1.0 cannot hold, escaped or not (control characters, lone surrogates, U+FFFE and U+FFFF)."""


def _xml(text: Any) -> str:
    """``text`` as XML can hold it: a character XML 1.0 has no place for is written ``\\xNN`` (``\\uNNNN``).

    Messages name groups and labels read from the data (a provider group, an attribute's value): one holding a
    control character made the whole ``junit.xml`` unreadable to every JUnit parser, and a CI job that cannot read
    its report does not show the failure."""
    return _NOT_XML.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def to_junit(doc: GateDocument) -> str:
    """JUnit XML: one test suite for the pack, one test case per rule (text XML cannot hold is escaped)."""
    counts = doc.counts
    suite = ET.Element(
        "testsuite",
        name=_xml(f"recgov:{doc.pack}"),
        tests=str(len(doc.results)),
        failures=str(counts.get("fail", 0)),
        errors=str(counts.get("error", 0)),
        skipped=str(counts.get("skipped", 0)),
    )
    props = ET.SubElement(suite, "properties")
    for key in ("pack", "pack_version", "pack_hash", "model_version", "dataset_version", "audit_id"):
        ET.SubElement(props, "property", name=key, value=_xml(_fmt(getattr(doc, key))))
    ET.SubElement(props, "property", name="decision", value="pass" if doc.decision.passed else "block")
    for r in doc.results:
        case = ET.SubElement(suite, "testcase", classname=_xml(f"{doc.pack}.{r.section}"), name=_xml(r.rule_id))
        text = _xml(f"{r.description}\n{r.message}" + (f"\nlegal reference: {r.legal_reference}" if r.legal_reference else ""))
        message = _xml(r.message)
        if r.status == Status.fail:
            ET.SubElement(case, "failure", message=message, type=r.check).text = text
        elif r.status == Status.error:
            ET.SubElement(case, "error", message=message, type=r.check).text = text
        elif r.status == Status.skipped:
            ET.SubElement(case, "skipped", message=message)
        else:
            ET.SubElement(case, "system-out").text = f"{r.status.value.upper()}: {text}"
    root = ET.Element("testsuites", name="recgov gate")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


_ICON = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "error": "ERROR", "skipped": "SKIP"}


def _cell(text: str) -> str:
    """``text`` as one Markdown table cell: pipes escaped, line breaks (a label read from the data may hold one)
    made spaces, or the row would end there and the rest of the message fall out of the table."""
    return " ".join(text.replace("|", "\\|").split())


def to_markdown(doc: GateDocument) -> str:
    """A short Markdown summary for a pull request or a CI job page."""
    verdict = "passed" if doc.decision.passed else "BLOCKED"
    if not doc.decision.enforced:
        verdict += " (shadow mode, not enforced)"
    lines = [
        f"## recgov gate: {verdict}",
        "",
        f"Pack `{doc.pack}` {doc.pack_version} (`{doc.pack_hash[:12]}`), model `{doc.model_version or '-'}`, dataset `{(doc.dataset_version or '-')[:12]}`"
        + (f", facts computed by the `{doc.engine}` engine." if doc.engine else "."),
        "",
        " · ".join(f"{k}: {v}" for k, v in doc.counts.items()),
        "",
        "| status | rule | section | measured | threshold | message |",
        "|---|---|---|---|---|---|",
    ]
    for r in doc.results:
        message = _cell(r.message)
        lines.append(f"| {_ICON[r.status.value]} | `{r.rule_id}` | {r.section} | {_fmt(r.value)} | {_cell(_fmt(r.threshold))} | {message} |")
    if doc.decision.reasons:
        lines += ["", "**Why:**", ""] + [f"- {' '.join(reason.split())}" for reason in doc.decision.reasons]
    return "\n".join(lines) + "\n"


def to_sarif(doc: GateDocument) -> dict[str, Any]:
    """SARIF 2.1.0: every rule as a reporting descriptor, every result located in the pack."""
    # SARIF 2.1.0 §3.27.10: a result whose kind is not "fail" must have level "none".
    level = {"fail": "error", "error": "error", "warn": "warning", "skipped": "none", "pass": "none"}
    rules = []
    results = []
    for r in doc.results:
        rules.append(
            {
                "id": r.rule_id,
                "name": r.check,
                "shortDescription": {"text": r.description},
                "help": {"text": r.description + (f" ({r.legal_reference})" if r.legal_reference else "")},
                "properties": {"section": r.section, "severity": r.severity, "legal_reference": r.legal_reference},
            }
        )
        location = {"physicalLocation": {"artifactLocation": {"uri": doc.pack_source}}}
        if r.line:
            location["physicalLocation"]["region"] = {"startLine": r.line}
        results.append(
            {
                "ruleId": r.rule_id,
                "level": level[r.status.value],
                "kind": "pass" if r.status == Status.passed else ("notApplicable" if r.status == Status.skipped else "fail"),
                "message": {"text": r.message},
                "locations": [location],
                "properties": {"status": r.status.value, "value": r.value, "threshold": r.threshold},
            }
        )
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "recgov", "informationUri": "https://recgov.dev", "rules": rules}},
                "results": results,
                "properties": {"pack": doc.pack, "pack_version": doc.pack_version, "pack_hash": doc.pack_hash, "model_version": doc.model_version},
            }
        ],
    }


OUTPUT_FILES = {"json": "gate.json", "junit": "junit.xml", "markdown": "summary.md", "sarif": "gate.sarif"}
"""The files :func:`write_outputs` writes into the output folder."""
OUT_NOT_A_FOLDER = "the gate's output folder {out} is {what}; give a folder (or a path to create one) for {files}"
OUT_NOT_WRITABLE = "the gate's output folder {out} cannot be written ({why}); give a folder this user may write to"
OUT_FAILED = "audit #{audit_id} is recorded, but its outputs could not be written to {out}: {why}"


def check_outputs(out_dir: str | Path) -> None:
    """Refuse, before anything is trained or recorded, an output folder the gate's files could not be written to.

    A file in the folder's place (or a folder in a file's place) failed only once the audit was recorded, with a
    traceback and exit 1, which CI reads as a blocking finding. Nothing is created here.
    """
    out = Path(out_dir)
    files = ", ".join(OUTPUT_FILES.values())
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        what = "a file, not a folder" if existing == out else f"under {existing}, a file"
        raise ConfigError(OUT_NOT_A_FOLDER.format(out=out, what=what, files=files))
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(OUT_NOT_WRITABLE.format(out=out, why=f"{existing} is not writable"))
    for name in OUTPUT_FILES.values():
        if (out / name).is_dir():
            raise ConfigError(OUT_NOT_A_FOLDER.format(out=out, what=f"holding a folder named {name}", files=files))


def write_outputs(doc: GateDocument, out_dir: str | Path) -> dict[str, Path]:
    """Write ``gate.json``, ``junit.xml``, ``summary.md`` and ``gate.sarif`` into ``out_dir``.

    Raises :class:`~recommender.errors.ConfigError` naming the recorded audit when a file cannot be written (a
    folder that changed since :func:`check_outputs`)."""
    out = Path(out_dir)
    paths = {kind: out / name for kind, name in OUTPUT_FILES.items()}
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_files(doc, paths)
    except OSError as err:
        raise ConfigError(OUT_FAILED.format(audit_id=doc.audit_id, out=out, why=err.strerror or err)) from err
    return paths


def _write_files(doc: GateDocument, paths: dict[str, Path]) -> None:
    paths["json"].write_text(json.dumps(doc.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    paths["junit"].write_text(to_junit(doc), encoding="utf-8")
    paths["markdown"].write_text(to_markdown(doc), encoding="utf-8")
    paths["sarif"].write_text(json.dumps(to_sarif(doc), indent=2) + "\n", encoding="utf-8")
