"""A pack means what its author wrote: no boolean read as a number, no limit keyed by a misspelt finding code.

Regressions: pydantic's lax mode read ``quality.k: true`` as a cut-off of 1 and ``max_share: {duplicate_events:
true}`` as a limit of 100%; ``max_share: {duplicate_evnts: 0.01}`` loaded, and the duplicates it meant to bound were
judged by ``default_max_share`` instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from governance.cli import app
from governance.analysis import ALLOWLIST_PURPOSE_UNLISTED
from governance.located import BOOLEAN_FOR_NUMBER
from governance.policy import MAX_RETENTION_DAYS, PolicyError, parse_pack
from recommender.validation_report import CODES
from tests.governance.test_redteam_gate import HEAD, NON_FINITE

POLICIES = Path(__file__).resolve().parents[2] / "policies"

BOOLEANS = [
    *NON_FINITE,
    # a section's own number, a list of numbers, a check's nested number
    ("quality:\n  k: {v}\n", "quality.k", 4),
    ("consent:\n  tcf:\n    purposes: [{v}, 5, 6]\n", "consent.tcf.purposes.0", 5),
    ("data:\n  rules:\n    - {{id: dv, check: validation_findings, description: d, params: {{bots: {{min_gap: {v}}}}}}}\n",
     "data.rules.0.params.bots.min_gap", 5),
]


@pytest.mark.parametrize("value", ["true", "True"])
@pytest.mark.parametrize(("body", "path", "line"), BOOLEANS, ids=[path for _, path, _ in BOOLEANS])
def test_a_boolean_is_not_a_number(body: str, path: str, line: int, value: str) -> None:
    """``true`` is read as 1, which each of these fields accepts as a number: only its type refuses it."""
    with pytest.raises(PolicyError) as caught:
        parse_pack(HEAD + body.format(v=value), "p.yaml")
    [issue] = caught.value.issues
    assert (issue.path, issue.line) == (path, line), issue
    assert issue.message == BOOLEAN_FOR_NUMBER.format(got="true"), issue


def test_false_is_not_a_limit_of_zero() -> None:
    body = NON_FINITE[0][0]
    with pytest.raises(PolicyError) as caught:
        parse_pack(HEAD + body.format(v="false"), "p.yaml")
    assert [(i.path, i.message) for i in caught.value.issues] == [(NON_FINITE[0][1], BOOLEAN_FOR_NUMBER.format(got="false"))]


def test_a_boolean_where_a_pack_expects_one_still_loads() -> None:
    pack = parse_pack(HEAD + "quality:\n  tune: false\n  k: 5\ncarbon:\n  measure: true\n", "p.yaml").pack
    assert (pack.quality.tune, pack.quality.k, pack.carbon.measure) == (False, 5, True)


def test_the_cli_refuses_a_boolean_limit_located(tmp_path: Path) -> None:
    pack = tmp_path / "p.yaml"
    pack.write_text((POLICIES / "eu-gdpr-dsa.yaml").read_text().replace("duplicate_events: 0.01", "duplicate_events: true", 1))
    result = CliRunner().invoke(app, ["policy", "validate", str(pack)])
    assert result.exit_code == 2, result.output
    assert f"{pack}:21:" in result.output and "data.rules.0.params.max_share.duplicate_events: expected a number, got the boolean true" in result.output


VALIDATION = "data:\n  rules:\n    - {{id: dv, check: validation_findings, description: d, params: {{max_share: {{{codes}}}}}}}\n"


def test_a_misspelt_finding_code_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_pack(HEAD + VALIDATION.format(codes="duplicate_events: 0.01, duplicate_evnts: 0.01, Bot_Users: 0.1"), "p.yaml")
    [issue] = caught.value.issues
    assert (issue.path, issue.line) == ("data.rules.0.params.max_share", 5)
    assert issue.message == f"unknown finding code(s) 'duplicate_evnts', 'Bot_Users'; the codes are {', '.join(CODES)}"


def test_every_finding_code_is_a_limit_a_pack_may_set() -> None:
    codes = ", ".join(f"{code}: 0.5" for code in CODES)
    rule = parse_pack(HEAD + VALIDATION.format(codes=codes), "p.yaml").pack.data.rules[0]
    assert dict(rule.params.max_share) == dict.fromkeys(CODES, 0.5)


def test_a_retention_window_reaching_before_year_one_is_refused_at_load() -> None:
    """Regression: ``retention_days: 1000000`` loaded, then every training run and audit under the pack failed with a
    date overflow traceback (exit 1, read by CI as a blocking finding)."""
    body = "minimization:\n  retention_days: {v}\n"
    with pytest.raises(PolicyError) as caught:
        parse_pack(HEAD + body.format(v=1_000_000), "p.yaml")
    assert [(i.path, i.line, i.message) for i in caught.value.issues] == [
        ("minimization.retention_days", 4, f"Input should be less than or equal to {MAX_RETENTION_DAYS} (got 1000000)")
    ]
    assert parse_pack(HEAD + body.format(v=MAX_RETENTION_DAYS), "p.yaml").pack.minimization.retention_days == MAX_RETENTION_DAYS


ALLOWLIST = """minimization:
  purposes:
    personalisation: {{allowed_inputs: [user_id, item_id]}}
  rules:
    - id: min-inputs
      check: input_allowlist
      description: Only interaction fields.
{params}"""


@pytest.mark.parametrize(
    ("params", "path", "line"),
    [("", "minimization.rules.0", 7), ("      params: {purpose: personalization}\n", "minimization.rules.0.params.purpose", 10)],
    ids=["default-purpose", "named-purpose"],
)
def test_an_allowlist_rule_judging_an_unlisted_purpose_is_refused(params: str, path: str, line: int) -> None:
    """Regression: a pack listing ``personalisation`` under minimization.purposes, with an input_allowlist rule judging
    ``personalization``, loaded; the rule was then skipped in every audit, which the default gate does not block on."""
    with pytest.raises(PolicyError) as caught:
        parse_pack(HEAD + ALLOWLIST.format(params=params), "p.yaml")
    assert [(i.path, i.line, i.message) for i in caught.value.issues] == [
        (path, line, ALLOWLIST_PURPOSE_UNLISTED.format(rule="min-inputs", purpose="personalization", listed="personalisation"))
    ]
    fixed = ALLOWLIST.replace("personalisation:", "personalization:").format(params=params)
    assert parse_pack(HEAD + fixed, "p.yaml").warnings == []


def test_an_allowlist_rule_in_a_pack_listing_no_purpose_still_loads() -> None:
    text = ALLOWLIST.replace("  purposes:\n    personalisation: {{allowed_inputs: [user_id, item_id]}}\n", "").format(params="")
    assert parse_pack(HEAD + text, "p.yaml").warnings == []
