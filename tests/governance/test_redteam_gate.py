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


# -- provider exposure: a group shown with no test positive --------------------------------------
def _exposure_facts(recommended, item_groups, positives):
    """Fairness facts as the audit makes them: ``recommender.fairness.provider_exposure`` on the lists, then the
    audit's conversion (``governance.collect_fairness``), which stores no infinity."""
    import numpy as np
    import scipy.sparse as sp

    from governance.collect_fairness import _exposure
    from governance.facts import FairnessFacts
    from recommender.fairness import provider_exposure

    report = provider_exposure(np.array(recommended), item_groups, sp.csr_matrix(np.array(positives)), attention="uniform", n_boot=50)
    return AuditFacts(fairness=FairnessFacts(k=len(recommended[0]), provider_attribute="provider", exposure={"uniform": _exposure(report, True)}))


EXPOSURE_PACK = HEAD + """\
fairness:
  provider_attribute: provider
  rules:
    - {id: no-over-exposure, check: provider_exposure, description: d, params: {attention: uniform, min_group_size: 2, %s}}
"""
# Four users, items 0-1 major, 2-3 indie, 4-5 promo. Every list shows a major item and a promo item; the test
# positives are all major or indie: the promo group holds half the attention and none of the demand.
LISTS = [[0, 4], [1, 5], [0, 5], [1, 4]]
GROUPS = ["major", "major", "indie", "indie", "promo", "promo"]
POSITIVES = [[1, 0, 1, 0, 0, 0], [0, 1, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0]]


def test_a_provider_group_shown_without_any_test_positive_is_over_exposed():
    """By hand: promo's exposure share is 1/2, its relevance share 0, so its ratio exposure / relevance is
    infinite. The facts store it as null; the rule used to leave such a group out of its judgement without a
    word and pass on the others (major 0.5 / 0.75 = 0.667, indie 0 / 0.25 = 0)."""
    facts = _exposure_facts(LISTS, GROUPS, POSITIVES)
    promo = facts.fairness.exposure["uniform"].groups["promo"]
    assert (promo.exposure_share, promo.relevance_share, promo.exposure_ratio) == (0.5, 0.0, None)
    assert facts.fairness.exposure["uniform"].groups["major"].exposure_ratio == pytest.approx(0.5 / 0.75)

    result = evaluate(parse_pack(EXPOSURE_PACK % "max_ratio: 1.5"), facts).result("no-over-exposure")
    assert result.status.value == "fail"
    assert result.evidence["failing"] == ["promo"] and result.evidence["shown_without_relevance"] == ["promo"]
    assert "promo shown without any test positive (ratio unbounded)" in result.message
    assert result.value is None  # no infinity in a gate document (JSON has none)


def test_a_group_shown_without_demand_is_never_under_exposed_and_its_share_is_judged():
    facts = _exposure_facts(LISTS, GROUPS, POSITIVES)
    under = evaluate(parse_pack(EXPOSURE_PACK % "min_ratio: 0.5"), facts).result("no-over-exposure")
    assert (under.status.value, under.evidence["failing"]) == ("fail", ["indie"])  # indie: 0 / 0.25; promo is not under
    share = evaluate(parse_pack(EXPOSURE_PACK % "max_share: 0.4"), facts).result("no-over-exposure")
    assert (share.status.value, share.evidence["failing"]) == ("fail", ["major", "promo"])  # 0.5 each


def test_a_group_neither_shown_nor_relevant_is_said_not_judged():
    groups = ["major", "major", "indie", "indie", "idle", "idle"]
    lists = [[0, 2], [1, 3], [0, 3], [1, 2]]
    facts = _exposure_facts(lists, groups, POSITIVES)
    result = evaluate(parse_pack(EXPOSURE_PACK % "max_ratio: 2.5"), facts).result("no-over-exposure")
    assert result.status.value == "pass"  # major 0.5 / 0.75, indie 0.5 / 0.25 = 2
    assert "neither shown nor has test positives" in result.evidence["not_judged"]["idle"]
