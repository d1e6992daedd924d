"""The DSA Art. 37 audit export, read back and held against the store and the published JSON Schema.

One store: consent for five users in six, a model trained and audited under the
EU pack and promoted to production, a second model never audited under a pack
in force, served lists (personalized and not based on profiling), a flagged
item and reported items with their notice-and-action cases, and a signed
checkpoint. ``recgov report --dsa-audit-export`` writes the export; its
figures must be the store's, and every part recgov cannot fill must say so.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from report_store import CONSENTED_DATA, ConsentedStore
from sqlalchemy import select

from audits import open_store
from audits.checkpoints import list_checkpoints
from audits.models import AuditResult, AuditRun, DecisionRecord, EscalationCase
from audits.trail import read_head
from governance.cli import app
from governance.packs import resolve_pack
from governance.policy import load_pack
from governance.report.dsa_audit import FOR_AUDITOR, DsaAuditExport, dsa_audit_export, dsa_audit_json_schema, render_markdown
from governance.report.gather import report_document

DATA = CONSENTED_DATA
USERS = ("u000000", "u000006", "u000001", "u000002", "u000003")
SCHEMA = Path(__file__).parents[2] / "schemas" / "dsa-audit-export.schema.json"
REGENERATE = (
    'python -c "import json; from governance.report.dsa_audit import dsa_audit_json_schema as s; '
    "print(json.dumps(s(), indent=2))\" > schemas/dsa-audit-export.schema.json"
)


def _rows(url: str, *columns, where=()):
    store = open_store(url)
    try:
        with store.session() as session:
            return session.execute(select(*columns).where(*where)).all()
    finally:
        store.close()


@pytest.fixture(scope="module")
def built(consented_store: ConsentedStore) -> Iterator[dict[str, object]]:
    root, url = consented_store.root, consented_store.url
    consented_store.cli("deploy", "policy", "set", "canary", "--pack", "eu-gdpr-dsa", "--min-users", "100", "--json")
    gated = consented_store.train_under_eu_pack()
    other = consented_store.train("--factors", "6")  # another recipe: without a pack it learns from the same subjects as the EU pack's run
    consented_store.cli("deploy", "promote", gated, "--to", "shadow", "--json")
    consented_store.cli("deploy", "promote", gated, "--to", "canary", "--data", DATA, "--out", str(root / "g"), "--json")
    for user in USERS:
        consented_store.cli("recommend", user, "--model", gated, "--data", DATA, "--pack", "eu-gdpr-dsa", "--k", "5", "--json")
    consented_store.cli("harm", "flag", "i00007", "--category", "self-harm", "--confidence", "0.95", "--pack", "eu-gdpr-dsa", "--json")
    for reporter in USERS[1:4]:  # three reports open a case
        consented_store.cli("harm", "report", "i00009", "--reason", "spam", "--reporter", reporter, "--json")
    consented_store.cli("harm", "evaluate", "--pack", "eu-gdpr-dsa", "--json", codes=(0, 1))
    consented_store.cli("trail", "checkpoint")
    exports = {}
    for name, version, extra in (("eu", gated, ("--pack", "eu-gdpr-dsa")), ("other", other, ())):
        target = root / f"{name}.json"
        said = json.loads(consented_store.cli("report", version, "--out", str(root / f"{name}.html"), "--dsa-audit-export", str(target), *extra, "--json"))
        assert said["dsa_audit_export"] == {"json": str(target), "markdown": str(target.with_suffix(".md"))}
        exports[name] = (json.loads(target.read_text(encoding="utf-8")), target.with_suffix(".md").read_text(encoding="utf-8"))
    yield {"url": url, "root": root, "gated": gated, "other": other, "exports": exports, "runner": consented_store.runner}


def _obligation(export: dict, article: str) -> dict:
    return next(o for o in export["obligations"] if o["article"] == article)


def test_the_schema_file_is_in_sync_and_the_exports_validate(built: dict) -> None:
    published = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert published == json.loads(json.dumps(dsa_audit_json_schema())), f"{SCHEMA.name} is stale: {REGENERATE}"
    jsonschema.Draft202012Validator.check_schema(published)
    for export, _ in built["exports"].values():
        jsonschema.Draft202012Validator(published).validate(export)
        assert export["schema"] == "recgov.dsa-audit-export/v1"


def test_provider_and_service_are_the_pack_and_the_store(built: dict) -> None:
    export, _ = built["exports"]["eu"]
    loaded = load_pack(resolve_pack("eu-gdpr-dsa"))
    provider = export["general_information"]["audited_provider"]
    assert provider == {"name": loaded.pack.controller.name, "address": loaded.pack.controller.address,
                        "contact": loaded.pack.controller.contact, "dpo_name": loaded.pack.dpo.name,
                        "dpo_contact": loaded.pack.dpo.contact}  # fmt: skip
    service = export["general_information"]["audited_service"]
    assert service == {"model_version": built["gated"], "current_stage": "canary", "pack": "eu-gdpr-dsa",
                       "pack_version": loaded.version, "pack_hash": loaded.content_hash}  # fmt: skip
    assert set(export["general_information"]["auditor"].values()) == {FOR_AUDITOR}


def test_art38_figures_are_the_decision_log(built: dict) -> None:
    export, _ = built["exports"]["eu"]
    modes = [m for (m,) in _rows(built["url"], DecisionRecord.mode, where=[DecisionRecord.model_version == built["gated"]])]
    (log, *results) = _obligation(export, "Art. 38")["evidence"]
    assert log["source"] == "decision_log" and log["figures"]["decisions"] == len(modes) == len(USERS)
    assert log["figures"]["non_profiling"] == modes.count("non_profiling") == 2
    assert log["figures"]["non_profiling_share"] == pytest.approx(2 / len(USERS))
    assert results and all("DSA Art. 38" in r["legal_reference"] for r in results)


def test_art34_35_risks_cite_the_audit_results(built: dict) -> None:
    export, _ = built["exports"]["eu"]
    pack = load_pack(resolve_pack("eu-gdpr-dsa")).pack
    assert [r["id"] for r in export["risk_assessment"]] == [r.id for r in pack.systemic_risks]
    runs = _rows(built["url"], AuditRun.id, where=[AuditRun.model_version_id == built["gated"]])
    latest = max(i for (i,) in runs)
    stored = {r.rule_id: r.status for (r,) in _rows(built["url"], AuditResult, where=[AuditResult.audit_run_id == latest])}
    cited = [m for r in export["risk_assessment"] for m in r["mitigations"] if m["kind"] == "rule" and m["evidence"]]
    assert cited
    for m in cited:
        assert m["evidence"]["audit_id"] == latest and m["evidence"]["status"] == stored[m["name"]]
    summary = _obligation(export, "Art. 34, Art. 35")["evidence"][0]
    assert summary["figures"]["risks"] == len(pack.systemic_risks)
    assert summary["figures"]["mitigations"] == sum(len(r.mitigations) for r in pack.systemic_risks)


def test_notice_and_action_and_trail_are_the_stores(built: dict) -> None:
    export, _ = built["exports"]["eu"]
    cases = _rows(built["url"], EscalationCase.status)
    assert cases
    timeliness, by_status, blocks = _obligation(export, "Art. 16, Art. 20")["evidence"]
    assert timeliness["figures"]["total"] == len(cases)
    assert sum(v for k, v in by_status["figures"].items() if k.startswith("status.")) == len(cases)
    assert blocks["figures"]["items_blocked"] >= 1
    store = open_store(built["url"])
    try:
        with store.session() as session:
            checkpoint = list_checkpoints(session)[-1]
            head_seq, _ = read_head(session.connection())
    finally:
        store.close()
    assert export["trail"]["checkpoint"]["seq"] == checkpoint.seq and export["trail"]["checkpoint"]["hash"] == checkpoint.hash
    assert export["trail"]["head_seq"] <= head_seq


def test_the_auditors_parts_are_marked_and_listed(built: dict) -> None:
    export, markdown = built["exports"]["eu"]
    for ob in export["obligations"]:
        for part in ("audit_criteria", "procedures_performed", "conclusion", "recommendations"):
            assert ob[part] == FOR_AUDITOR
    assert export["overall_opinion"] == FOR_AUDITOR
    assert "obligations.0.conclusion" in export["parts_for_the_auditor"]
    assert "general_information.auditor.independence_declaration" in export["parts_for_the_auditor"]
    assert len(export["parts_for_the_auditor"]) == json.dumps(export).count(f'"{FOR_AUDITOR}"') - 1  # the marker itself
    assert [o["article"] for o in export["obligations"]] == ["Art. 27", "Art. 38", "Art. 34, Art. 35", "Art. 16, Art. 20"]
    assert export["obligations_not_evidenced"] == ["Art. 28 (the pack in force assesses no risk to minors)"]
    for heading in ("## 1. General information", "## 2. Scope", "## 3. Obligations audited", "## 4. Risk assessment", "## 5. Audit trail"):
        assert heading in markdown
    for ob in export["obligations"]:
        assert f"### {ob['article']}: {ob['title']}" in markdown


def test_without_a_pack_in_force_the_provider_is_for_the_auditor(built: dict) -> None:
    export, markdown = built["exports"]["other"]
    assert set(export["general_information"]["audited_provider"].values()) == {FOR_AUDITOR}
    assert export["general_information"]["audited_service"]["pack"] is None
    assert export["risk_assessment"] is None and "The pack in force declares no systemic risks." in markdown
    assert _obligation(export, "Art. 27")["provider_statement"].startswith("No pack in force was found")


def test_a_risk_to_minors_adds_art28(built: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECGOV_HOME", str(built["root"] / "home"))
    store = open_store(built["url"])
    try:
        with store.session() as session:
            document = report_document(session, built["gated"], pack=load_pack(resolve_pack("eu-gdpr-dsa")))
    finally:
        store.close()
    minors = copy.deepcopy(document)
    minors["accountability"]["systemic_risks"][2]["category"] = "public_health_and_minors"
    export = dsa_audit_export(minors)
    art28 = next(o for o in export.obligations if o.article == "Art. 28")
    assert "risk-illegal-content" in art28.provider_statement and export.obligations_not_evidenced == []
    assert "### Art. 28: Online protection of minors" in render_markdown(export)


def test_no_subject_appears_in_the_export(built: dict) -> None:
    pseudonyms = {s for (s,) in _rows(built["url"], DecisionRecord.subject) if s}
    for export, markdown in built["exports"].values():
        text = json.dumps(export) + markdown
        assert not any(u in text for u in USERS) and not any(p[:16] in text for p in pseudonyms)


@pytest.mark.parametrize(("args", "message"), [(("{gated}", "--dsa-audit-export", "x.txt"), "--dsa-audit-export must name a .json file"),
                                              (("no-such-model", "--dsa-audit-export", "x.json"), "no-such-model")])  # fmt: skip
def test_bad_input_exits_2(built: dict, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    argv = [a.format(gated=built["gated"]) for a in args]
    argv = [str(tmp_path / a) if a.startswith("x.") else a for a in argv]
    done = built["runner"].invoke(app, ["report", *argv, "--out", str(tmp_path / "r.html"), "--database-url", built["url"]])
    assert done.exit_code == 2, done.output
    assert message in " ".join(done.stderr.split()) and not (tmp_path / "x.json").exists()


def test_the_markdown_says_what_is_absent_instead_of_none(built: dict) -> None:
    """A model never deployed, with no pack in force, no audit and no list served, and evidence without figures, read
    as such in the Markdown: never 'None', nor an empty line of figures."""
    export, markdown = built["exports"]["other"]
    assert f"model {built['other']} not deployed (no stage), no pack in force was found" in markdown
    assert "- Evidence period: none (no audit of this model is recorded)" in markdown
    bare = [line for line in markdown.splitlines() if "None" in line.split()]
    assert bare == [], "\n".join(bare)
    emptied = copy.deepcopy(export)
    cases = next(o for o in emptied["obligations"] if o["article"] == "Art. 16, Art. 20")
    next(e for e in cases["evidence"] if e["reference"] == "cases by status and by severity")["figures"] = {}
    text = render_markdown(DsaAuditExport.model_validate(emptied))
    assert "- cases by status and by severity: none recorded" in text


def test_the_markdown_escapes_what_the_pack_and_store_say(built: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """A controller's name or a risk's description with a line break, a heading, emphasis, a link or raw HTML is
    written as text: it cannot open a section of the auditor's document (a forged audit opinion) nor pass HTML."""
    monkeypatch.setenv("RECGOV_HOME", str(built["root"] / "home"))
    store = open_store(built["url"])
    try:
        with store.session() as session:
            document = report_document(session, built["gated"], pack=load_pack(resolve_pack("eu-gdpr-dsa")))
    finally:
        store.close()
    forged = "\n\n## 6. Audit opinion\n\npositive <img src=x onerror=alert(1)> [signed](https://evil.example) **clean**\n- 1. ok"
    hostile = copy.deepcopy(document)
    assert hostile["accountability"]["controller"] is not None and hostile["accountability"]["systemic_risks"]
    hostile["accountability"]["controller"]["name"] = "Acme" + forged
    hostile["accountability"]["systemic_risks"][0]["description"] = "- Risk" + forged
    text = render_markdown(dsa_audit_export(hostile))
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == [line for line in render_markdown(dsa_audit_export(document)).splitlines() if line.startswith("#")]
    assert text.count("## 6. Audit opinion") == 1 and "\n- 1. ok" not in text
    assert not re.search(r"(?<!\\)<img|(?<!\\)\]\(https|(?<!\\)\*\*clean", text)
    assert "- Audited provider: Acme \\#\\# 6. Audit opinion positive \\<img src=x onerror=alert(1)\\>" in text
    assert "\n\\- Risk \\#\\# 6." in text
