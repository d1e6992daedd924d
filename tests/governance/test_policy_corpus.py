"""The malformed-pack corpus: every file in ``packs/`` is refused with every problem located.

Each entry of ``CORPUS`` names a file and the issues its load must raise, as
``(line, column, path, message)``. The list is complete: a file whose load
reports one issue more or one less fails, so several errors in one file are
proven to be reported at once. Messages are matched as substrings (most are
the whole message).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from governance.policy import PolicyError, load_pack
from governance.registry import UNKNOWN_CHECK, registered_checks

PACKS = Path(__file__).parent / "packs"

EXPECTED_PACK = "expected a YAML policy pack starting with 'apiVersion: recgov/v1'"
TOP_LEVEL = "expected a mapping at the top level (a YAML policy pack starting with 'apiVersion: recgov/v1'); found "
UNKNOWN_KEY = "unknown key; check the spelling against the schema (recgov policy schema)"
KNOWN = ", ".join(sorted(registered_checks()))
FORBIDDEN_FOR_EVERY_USE = "forbidden for every use; list it under minimization.audit_only_attributes to let audits read it"

Issue = tuple[int | None, int | None, str, str]

CORPUS: dict[str, list[Issue]] = {
    # -- not a YAML mapping -------------------------------------------------------
    "empty.yaml": [(1, 1, "", f"the file is empty; {EXPECTED_PACK}")],
    "comments-only.yaml": [(1, 1, "", TOP_LEVEL + "nothing")],
    "scalar.yaml": [(1, 1, "", TOP_LEVEL + "a single value")],
    "list-at-top.yaml": [(1, 1, "", TOP_LEVEL + "a list")],
    "nul-bytes.yaml": [(None, None, "", f"not a text file (it contains NUL bytes); {EXPECTED_PACK}")],
    "png-image.yaml": [(1, None, "", "not UTF-8 text (byte 0x89 at offset 0); a policy pack is UTF-8 YAML")],
    "latin-1.yaml": [(5, None, "", "not UTF-8 text (byte 0xc9 at offset 81); a policy pack is UTF-8 YAML")],
    "yaml-syntax-error.yaml": [(11, 44, "", "YAML syntax error: while parsing a flow sequence expected ',' or ']', but got '}'")],
    "tab-indent.yaml": [(5, 1, "", "YAML syntax error: while scanning for the next token found character '\\t' that cannot start any token")],
    "duplicate-key.yaml": [(10, 1, "", 'YAML syntax error: while constructing a mapping found duplicate key "quality"')],
    # -- the document header ------------------------------------------------------
    # A missing top-level key has nowhere to point: no line, no column.
    "no-api-version.yaml": [(None, None, "apiVersion", "required key is missing")],
    "wrong-api-version.yaml": [(1, 1, "apiVersion", "Input should be 'recgov/v1' (got 'recgov/v2')")],
    "bad-metadata.yaml": [
        (3, 3, "metadata.name", "String should match pattern '^[a-z0-9][a-z0-9-]{0,62}$' (got 'Corpus_Bad_Metadata')"),
        (3, 3, "metadata.owner", "required key is missing"),
        (4, 3, "metadata.version", "String should match pattern '^\\d+\\.\\d+\\.\\d+(-[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?$' (got 'v1.2')"),
    ],
    "float-version.yaml": [(4, 3, "metadata.version", "Input should be a valid string (got 1.0)")],
    # -- schema -------------------------------------------------------------------
    "wrong-types.yaml": [
        (7, 3, "metadata.jurisdictions", "Input should be a valid list (got 'EU')"),
        (9, 3, "carbon.measure", "Input should be a valid boolean, unable to interpret input (got 'sometimes')"),
        (15, 9, "carbon.rules.0.params.max_energy_kwh", "Input should be a valid number, unable to parse string as a number (got 'a lot')"),
        (17, 3, "quality.k", "Input should be a valid integer, unable to parse string as an integer (got 'ten')"),
        (22, 7, "quality.rules.0.severity", "Input should be 'block' or 'warn' (got 'fatal')"),
    ],
    "unknown-keys.yaml": [
        (6, 1, "polices", UNKNOWN_KEY),
        (8, 3, "quality.colour", UNKNOWN_KEY),
        (15, 9, "quality.rules.0.params.min_ration", UNKNOWN_KEY),
    ],
    "bad-params.yaml": [
        (9, 7, "carbon.rules.0.params", "give at least one of max_energy_kwh and max_emissions_kg"),
        (17, 7, "quality.rules.0.params", "min (0.3) is greater than max (0.1)"),
        (21, 15, "quality.rules.1.params.metric", "required key is missing"),
        (25, 16, "quality.rules.2.params.min_ratio", "Input should be less than or equal to 1 (got 1.5)"),
        (26, 7, "quality.rules.3.id", "String should match pattern '^[a-z0-9][a-z0-9_.-]{0,63}$' (got 'Q Lift')"),
        (28, 7, "quality.rules.3.description", "String should have at least 1 character (got '')"),
        (29, 7, "quality.rules.3.params", "Input should be a valid dictionary or instance of Config (got 1.2)"),
    ],
    "unknown-check.yaml": [
        (8, 7, "quality.rules.0", UNKNOWN_CHECK.format(name="ndcg_floor", known=KNOWN)),
        (12, 7, "quality.rules.1", UNKNOWN_CHECK.format(name="governance.checks.quality.MetricBound", known=KNOWN)),
    ],
    "wrong-section.yaml": [(8, 7, "data.rules.0", "check 'carbon_budget' belongs in section 'carbon', not 'data'")],
    # -- static analysis ----------------------------------------------------------
    "never-pass.yaml": [
        (13, 29, "data.rules.0.params.max_share.duplicate_events",
         "rule 'd-findings' can never pass: max_share.duplicate_events -0.01 is below the lowest possible value 0.0"),
        (22, 14, "quality.rules.0.params.min", "rule 'q-ndcg' can never pass: min 1.5 is above the highest possible value 1.0"),
        (26, 39, "quality.rules.1.params.max", "rule 'q-coverage' can never pass: max -0.2 is below the lowest possible value 0.0"),
    ],
    "contradictions.yaml": [
        (9, 42, "minimization.purposes.personalization.allowed_inputs.2",
         "attribute 'religion' is allowed as a model input for 'personalization' but listed in minimization.forbidden_attributes"),
        (9, 52, "minimization.purposes.personalization.allowed_inputs.3",
         "attribute 'age_band' is allowed as a model input for 'personalization' but listed in minimization.audit_only_attributes"),
        (13, 22, "fairness.audit_attributes.0", f"attribute 'gender' is required by the fairness audit but {FORBIDDEN_FOR_EVERY_USE}"),
        (20, 9, "quality.rules.0.params", f"rule 'q-gender-consistency' groups by 'gender', which is {FORBIDDEN_FOR_EVERY_USE}"),
    ],
    "duplicate-ids.yaml": [
        (14, 11, "quality.rules.0.id", "duplicate rule id 'budget' (first used at carbon.rules.0.id)"),
        (18, 11, "quality.rules.1.id", "duplicate rule id 'budget' (first used at carbon.rules.0.id)"),
    ],
    "gate-missing-rule.yaml": [
        (12, 28, "gate.required_rules.1", "gate requires rule 'q-lfit', which the pack does not define; known: q-lift"),
    ],
}  # fmt: skip

# Issues that are reported but do not by themselves reject a pack.
WARNINGS: dict[str, list[Issue]] = {
    "never-pass.yaml": [
        (14, 22, "data.rules.0.params.max_share.bot_users",
         "rule 'd-findings' can never fail: max_share.bot_users 1.0 is at or above the highest possible value 1.0"),
    ],
}  # fmt: skip


def _key(issue: Issue) -> tuple[int, int, str]:
    line, col, path, _ = issue
    return (-1 if line is None else line, -1 if col is None else col, path)


def _load_issues(name: str) -> list:
    path = PACKS / name
    with pytest.raises(PolicyError) as info:
        load_pack(path)
    issues = info.value.issues
    assert {i.file for i in issues} == {str(path)}
    return issues


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_malformed_pack_is_refused_with_every_issue_located(name):
    issues = _load_issues(name)
    for severity, expected in (("error", CORPUS[name]), ("warning", WARNINGS.get(name, []))):
        got = sorted(((i.line, i.column, i.path, i.message) for i in issues if i.severity == severity), key=_key)
        want = sorted(expected, key=_key)
        assert [i[:3] for i in got] == [w[:3] for w in want], f"{severity}s of {name}"
        for (_, _, path, message), (_, _, _, fragment) in zip(got, want):
            assert fragment in message, f"{name} {path}: {message!r} does not contain {fragment!r}"


def test_error_text_names_the_file_and_counts_the_errors():
    path = PACKS / "wrong-types.yaml"
    with pytest.raises(PolicyError) as info:
        load_pack(path)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{path}: 5 error(s)"
    assert f"  {path}:17:3: error: quality.k: Input should be a valid integer, unable to parse string as an integer (got 'ten')" in lines


def test_every_corpus_file_is_in_the_table():
    """A file dropped into packs/ without an expectation would be silently unchecked."""
    assert sorted(p.name for p in PACKS.iterdir()) == sorted(CORPUS)
