"""Every pack under ``policies/`` loads, matches the published JSON Schema and passes its fixture cases.

The JSON Schemas under ``schemas/`` are generated; after changing a pack model
or the gate document, regenerate them with:

    recgov policy schema pack > schemas/policy-pack.schema.json && recgov policy schema gate > schemas/gate-result.schema.json
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from governance.gate import gate_json_schema
from governance.policy import PolicyError, load_pack, pack_json_schema
from governance.policytest import cases_path_for, load_cases, run_cases

ROOT = Path(__file__).parents[2]
POLICIES = ROOT / "policies"
SCHEMAS = ROOT / "schemas"
REGENERATE = "regenerate the schemas with the command at the top of tests/governance/test_shipped_packs.py"

PACKS = sorted(p for p in POLICIES.glob("*.yaml") if not p.name.endswith(".test.yaml"))


def _schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


# -- the generated schemas ----------------------------------------------------------------
@pytest.mark.parametrize(("name", "generate"), [("policy-pack.schema.json", pack_json_schema), ("gate-result.schema.json", gate_json_schema)])
def test_schema_file_is_in_sync_with_the_code(name, generate):
    assert _schema(name) == json.loads(json.dumps(generate())), f"schemas/{name} is stale: {REGENERATE}"
    jsonschema.Draft202012Validator.check_schema(_schema(name))


# -- every shipped pack -------------------------------------------------------------------
def test_the_shipped_packs_are_found():
    assert [p.name for p in PACKS] == ["baseline.yaml", "california-ccpa.yaml", "eu-gdpr-dsa.yaml"]


@pytest.fixture(params=PACKS, ids=lambda p: p.stem)
def pack_path(request) -> Path:
    return request.param


def test_pack_loads_cleanly(pack_path):
    loaded = load_pack(pack_path)
    assert loaded.warnings == []
    assert loaded.name == pack_path.stem
    assert loaded.pack.gate.required_rules, "a shipped pack names the rules its gate requires"
    assert all(rule.description.strip() for _, rule in loaded.pack.rules())


def test_pack_validates_against_the_json_schema(pack_path):
    data = YAML(typ="safe", pure=True).load(pack_path.read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft202012Validator(_schema("policy-pack.schema.json")).iter_errors(data), key=str)
    assert [e.message for e in errors] == []


def test_pack_passes_its_fixture_cases(pack_path):
    outcomes = run_cases(load_pack(pack_path), cases_path_for(pack_path))
    wrong = [f"{o.case} / {o.rule_id}: expected {o.expected}, got {o.actual} ({o.message})" for o in outcomes if not o.ok]
    assert not wrong, "\n".join(wrong)


def test_fixture_cases_exercise_every_rule_every_way(pack_path):
    """Each rule is seen passing, failing (or warning, for a warn rule) and skipped."""
    loaded = load_pack(pack_path)
    seen: dict[str, set[str]] = defaultdict(set)
    for case in load_cases(cases_path_for(pack_path)).cases:
        for rule_id, expected in case.expect.items():
            seen[rule_id].add(expected)
    for _, rule in loaded.pack.rules():
        failing = "warn" if rule.severity == "warn" else "fail"
        missing = {"pass", failing, "skipped"} - seen[rule.id]
        assert not missing, f"{pack_path.name}: no case where {rule.id} ends {sorted(missing)}"


def test_first_case_is_a_clean_audit_that_passes_every_rule(pack_path):
    loaded = load_pack(pack_path)
    first = load_cases(cases_path_for(pack_path)).cases[0]
    assert first.expect == {rule.id: "pass" for _, rule in loaded.pack.rules()}


# -- the fixture-case runner ----------------------------------------------------------------
def test_a_case_naming_an_unknown_rule_is_refused(tmp_path):
    cases = tmp_path / "baseline.test.yaml"
    cases.write_text("cases:\n  - name: typo\n    facts: {}\n    expect: {min-input: skipped}\n", encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        run_cases(load_pack(POLICIES / "baseline.yaml"), cases)
    assert [(i.path, i.message) for i in info.value.issues] == [("cases.0.expect.min-input", "rule 'min-input' is not in pack 'baseline'")]


def test_malformed_facts_are_located(tmp_path):
    cases = tmp_path / "baseline.test.yaml"
    cases.write_text(
        "cases:\n"
        "  - name: a misspelt fact group\n"
        "    facts:\n"
        "      carbn: {energy_kwh: 1.0}\n"
        "    expect: {carbon-budget: passed}\n",
        encoding="utf-8",
    )
    with pytest.raises(PolicyError) as info:
        run_cases(load_pack(POLICIES / "baseline.yaml"), cases)
    assert [(i.line, i.column, i.path, i.message) for i in info.value.issues] == [
        (4, 7, "cases.0.facts.carbn", "unknown key; check the spelling against the schema (recgov policy schema)"),
        (5, 14, "cases.0.expect.carbon-budget", "Input should be 'pass', 'warn', 'fail', 'error' or 'skipped' (got 'passed')"),
    ]


def test_a_missing_cases_file_is_refused(tmp_path):
    with pytest.raises(PolicyError) as info:
        run_cases(load_pack(POLICIES / "baseline.yaml"), tmp_path / "none.test.yaml")
    assert info.value.issues[0].message == "no such file; expected fixture cases (<pack>.test.yaml)"


def test_cases_path_for():
    assert cases_path_for("policies/eu-gdpr-dsa.yaml") == Path("policies/eu-gdpr-dsa.test.yaml")
