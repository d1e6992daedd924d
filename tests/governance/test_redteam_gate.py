"""Red team of the gate and its packs: rules that look binding but can never fail, groups left out of a
judgement without a word, and figures labelled as what they are not."""

from __future__ import annotations

import pytest

from governance.engine import evaluate
from governance.facts import AuditFacts
from governance.policy import PolicyError, parse_pack

HEAD = """\
apiVersion: recgov/v1
metadata: {name: redteam, version: 1.0.0, owner: tests}
"""


# -- non-finite numbers in a pack ---------------------------------------------------------------
NON_FINITE = [
    # (the pack's body with {v} for the number, the path refused, its line)
    ("data:\n  rules:\n    - {{id: dv, check: validation_findings, description: d, params: {{max_share: {{duplicate_events: {v}}}}}}}\n",
     "data.rules.0.params.max_share.duplicate_events", 5),
    ("quality:\n  rules:\n    - {{id: nov, check: metric_bound, description: d, params: {{metric: novelty, max: {v}}}}}\n",
     "quality.rules.0.params.max", 5),
    ("quality:\n  rules:\n    - {{id: cov, check: metric_bound, description: d, params: {{metric: coverage, min: {v}}}}}\n",
     "quality.rules.0.params.min", 5),
    ("training:\n  fairness: {{attribute: provider_group, side: provider, group_weights: {{indie: {v}}}}}\n",
     "training.fairness.group_weights.indie", 4),
    ("lifecycle:\n  canary:\n    guardrails:\n      - {{metric: provider_gap, max: {v}}}\n",
     "lifecycle.canary.guardrails.0.max", 6),
]


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
@pytest.mark.parametrize(("body", "path", "line"), NON_FINITE, ids=[path for _, path, _ in NON_FINITE])
def test_a_pack_holds_finite_numbers_only(body, path, line, value):
    """A NaN limit compares false with every figure: ``share > NaN`` never holds, so a validation rule with a
    NaN limit passed 90% duplicated rows; an infinite bound bounds nothing. Both are refused where they stand."""
    with pytest.raises(PolicyError) as caught:
        parse_pack(HEAD + body.format(v=value), "p.yaml")
    [issue] = [i for i in caught.value.issues if i.severity == "error"]
    assert (issue.path, issue.line) == (path, line)
    assert "finite number" in issue.message


def test_a_nan_limit_no_longer_passes_what_it_should_fail():
    """The case the refusal closes: a finite limit fails 90% duplicates, and a NaN one cannot be written."""
    body = NON_FINITE[0][0]
    facts = AuditFacts.model_validate({"validation": {"n_rows": 100, "findings": {"duplicate_events": {"count": 90, "share": 0.9}}}})
    assert evaluate(parse_pack(HEAD + body.format(v="0.01")), facts).result("dv").status.value == "fail"
    with pytest.raises(PolicyError):
        parse_pack(HEAD + body.format(v=".nan"))


def test_open_ended_bins_keep_their_infinite_edge():
    """Bins are the one place an infinite number means something: an open end."""
    pack = parse_pack(HEAD + "fairness:\n  audit_attributes: [age]\n  bins: {age: {edges: [0, 18, .inf], labels: [minor, adult]}}\n")
    assert pack.pack.fairness.bins["age"].edges == [0.0, 18.0, float("inf")]
    with pytest.raises(PolicyError, match="strictly increasing"):
        parse_pack(HEAD + "fairness:\n  audit_attributes: [age]\n  bins: {age: {edges: [.nan, 18, .inf], labels: [minor, adult]}}\n")
