"""Red team: provider and category rules never pass on evidence that is not there.

Holes pinned here (each test fails on the code before the fix):

* a catalog whose provider column is empty (MovieLens-100K has no providers; an item table
  with blank cells) put every item in one group ``missing``, whose exposure is trivially
  in proportion to its relevance: ``provider_exposure`` passed;
* items without a provider formed a group ``missing`` that was judged as a provider group;
* a provider group of a handful of items was judged on the exposure of those few items;
* a category rule on a catalog with blank categories gave no reason for skipping.

How the gate treats a ``skipped`` rule is pinned too: never as a pass for a required rule.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import governance.checks  # noqa: F401  (registers the checks)
from governance.checks.exposure import NOT_A_PROVIDER, SMALL_PROVIDER
from governance.collect_fairness import EMPTY_ITEM_COLUMN, fairness_facts
from governance.engine import AuditReport, RuleResult, evaluate
from governance.facts import AuditFacts
from governance.gate import decide
from governance.policy import GateSection, PolicyPack, parse_pack
from governance.registry import Status, get_check
from recommender.als import ALSRecommender
from recommender.evaluate import evaluate_model
from recommender.split import SplitConfig, split, train_test_matrices
from recommender.synthetic import SyntheticSpec, generate

PACK = """apiVersion: recgov/v1
metadata: {name: fair, version: 0.1.0, owner: tests}
minimization:
  audit_only_attributes: [gender]
fairness:
  audit_attributes: [gender]
  provider_attribute: provider_group
  rules:
    - {id: exposure, check: provider_exposure, description: d, params: {min_ratio: 0.8, max_ratio: 1.25}}
    - {id: provider-calibration, check: consumer_gap, description: d,
       params: {attribute: gender, metric: provider_miscalibration, max_difference: 0.5}}
    - {id: genre-calibration, check: calibration, description: d, params: {max_kl: 4.0}}
"""


@pytest.fixture(scope="module")
def audited() -> tuple[Any, Any, Any]:
    dataset = generate(SyntheticSpec(n_users=400, n_items=200, n_interactions=10_000, seed=1))
    mats = train_test_matrices(*split(dataset.events, SplitConfig(kind="random", test_fraction=0.2)))
    model = ALSRecommender(factors=8, iterations=3, random_state=0).fit(mats.train)
    return dataset, mats, evaluate_model(model, mats.train, mats.test, 10)


def results(audited: Any, items: pd.DataFrame) -> dict[str, Any]:
    dataset, mats, ev = audited
    loaded = parse_pack(PACK, "fair.yaml")
    bare = dataset.__class__(events=dataset.events, users=dataset.users, items=items)
    facts = fairness_facts(bare, ev, loaded, train=mats.train, test=mats.test, n_boot=50)
    return {r.rule_id: r for r in evaluate(loaded, AuditFacts(fairness=facts)).results}


def test_an_empty_provider_column_skips_every_provider_rule(audited):
    """Hole: MovieLens-like items (a provider column with no value) passed provider_exposure."""
    items = audited[0].items.copy()
    items["provider_group"] = pd.array([pd.NA] * len(items), dtype="string")
    found = results(audited, items)
    why = EMPTY_ITEM_COLUMN.format(column="provider_group", n=audited[1].train.n_items)
    assert (found["exposure"].status, found["exposure"].message) == (
        Status.skipped,
        f"the fairness facts have no provider groups ({why})",
    )
    assert found["provider-calibration"].status == Status.skipped
    assert found["provider-calibration"].message.endswith(f"({why})")


def test_blank_categories_skip_the_category_rules_with_the_reason(audited):
    """Blank strings are no categories: the calibration rule is skipped and says why."""
    items = audited[0].items.copy()
    items["categories"] = ""
    found = results(audited, items)
    why = EMPTY_ITEM_COLUMN.format(column="categories", n=audited[1].train.n_items)
    assert (found["genre-calibration"].status, found["genre-calibration"].message) == (
        Status.skipped,
        f"the fairness facts have no calibration ({why})",
    )


def test_items_without_a_provider_are_reported_not_judged(audited):
    """Hole: the items without a provider were judged as a provider group of their own."""
    items = audited[0].items.copy()
    items.loc[items.index[::3], "provider_group"] = pd.NA
    dataset, mats, ev = audited
    facts = fairness_facts(
        dataset.__class__(events=dataset.events, users=dataset.users, items=items),
        ev,
        parse_pack(PACK, "fair.yaml"),
        train=mats.train,
        test=mats.test,
        n_boot=50,
    )
    assert "missing" in facts.exposure["log"].groups
    assert facts.items_without_provider == int(items["provider_group"].reindex(mats.train.item_ids).isna().sum())
    result = run("provider_exposure", {"min_ratio": 0.0001}, facts.model_dump())
    assert result.evidence["not_judged"]["missing"] == NOT_A_PROVIDER.format(
        n=facts.exposure["log"].groups["missing"].n_items
    )
    assert result.status == Status.passed
    assert "missing" not in result.message
    named = run("provider_exposure", {"group": "missing", "max_ratio": 10.0}, facts.model_dump())
    assert named.status == Status.skipped


EXPOSURE = {
    "k": 10,
    "provider_attribute": "provider_group",
    "exposure": {
        "log": {
            "gini": 0.5,
            "groups": {
                "major": {"n_items": 300, "exposure_share": 0.5, "relevance_share": 0.5, "exposure_ratio": 1.0,
                          "gini": 0.5},
                "tiny": {"n_items": 3, "exposure_share": 0.25, "relevance_share": 0.05, "exposure_ratio": 5.0,
                         "gini": 0.9},
                "missing": {"n_items": 40, "exposure_share": 0.25, "relevance_share": 0.45, "exposure_ratio": 0.5556,
                            "gini": 0.2},
            },
        }
    },
}  # fmt: skip


def run(check: str, params: dict[str, Any], fairness: dict[str, Any]) -> Any:
    cls = get_check(check)
    section = PolicyPack.model_fields[cls.section].default_factory()
    facts = AuditFacts.model_validate({"fairness": fairness})
    return cls().evaluate(cls.Config.model_validate(params), facts, section)


def test_exposure_rules_judge_only_groups_of_min_group_size_items():
    """Hole: a group of 3 items (ratio 5.0) and the items without a provider failed the rule on their own."""
    result = run("provider_exposure", {"min_ratio": 0.8, "max_ratio": 1.25}, EXPOSURE)
    assert (result.status, result.value) == (Status.passed, 1.0)
    assert result.evidence["min_group_size"] == 10
    assert result.evidence["not_judged"] == {
        "tiny": SMALL_PROVIDER.format(group="tiny", n=3, size=10),
        "missing": NOT_A_PROVIDER.format(n=40),
    }
    judged = run("provider_exposure", {"min_ratio": 0.8, "max_ratio": 1.25, "min_group_size": 3}, EXPOSURE)
    assert (judged.status, judged.value) == (Status.fail, 5.0)
    small = run("provider_exposure", {"group": "tiny", "max_ratio": 1.25}, EXPOSURE)
    assert (small.status, small.message) == (Status.skipped, SMALL_PROVIDER.format(group="tiny", n=3, size=10))
    gini = run("exposure_gini", {"group": "tiny", "max": 0.5}, EXPOSURE)
    assert (gini.status, gini.message) == (Status.skipped, SMALL_PROVIDER.format(group="tiny", n=3, size=10))
    only_small = {**EXPOSURE, "exposure": {"log": {"groups": {"tiny": EXPOSURE["exposure"]["log"]["groups"]["tiny"]}}}}
    none = run("provider_exposure", {"max_ratio": 1.25}, only_small)
    assert (none.status, none.message) == (Status.skipped, "no provider group has 10+ items to judge (tiny: 3)")


def _report(status: Status) -> AuditReport:
    rule = RuleResult(rule_id="exposure", section="fairness", check="provider_exposure", description="d",
                      severity="block", status=status, message="the fairness facts have no provider groups (...)")  # fmt: skip
    return AuditReport(pack="p", pack_version="1", pack_hash="h", pack_source="p.yaml", results=[rule])


def test_the_gate_never_counts_a_skipped_required_rule_as_a_pass():
    """A skipped rule blocks when the pack requires it, or lists ``skipped`` in block_on; otherwise it is
    reported (JUnit ``skipped``, SARIF ``notApplicable``) and does not block."""
    skipped = _report(Status.skipped)
    assert decide(skipped, GateSection(required_rules=["exposure"])).passed is False
    assert decide(skipped, GateSection(block_on=["fail", "error", "skipped"])).passed is False
    assert decide(skipped, GateSection()).passed is True
    assert decide(_report(Status.passed), GateSection(required_rules=["exposure"])).passed is True


def test_the_users_without_the_attribute_are_never_judged_as_a_group_nor_a_reference():
    """Hole: the users whose attribute is missing formed a group 'missing' that consumer_gap and disparate_impact
    judged like a group of the attribute (the census says it is reported, never judged): a rule failed because the
    users nobody knows the gender of were served worse than men."""
    consumer = {"model": "als", "k": 10, "n_users": 900, "consumer": {"gender": {"ndcg": {
        "overall": 0.3, "difference": 0.26, "ratio": 0.16, "pairs": [],
        "groups": {"F": {"n": 400, "value": 0.30, "sd": 0.2}, "M": {"n": 400, "value": 0.31, "sd": 0.2},
                   "missing": {"n": 100, "value": 0.05, "sd": 0.2}}}}}}  # fmt: skip
    gap = run("consumer_gap", {"attribute": "gender", "max_difference": 0.1}, consumer)
    assert gap.status == Status.passed and gap.value == pytest.approx(0.01)
    assert "missing" in gap.evidence["excluded_groups"] and "the attribute is missing" in gap.message
    assert all("missing" not in (p["higher"], p["lower"]) for p in gap.evidence["tests"]["hypotheses"])

    def di(value: float, ci: list[float]) -> dict[str, Any]:
        return {"disparate_impact": value, "disparate_impact_ci": ci, "statistical_parity_difference": value - 1,
                "statistical_parity_difference_ci": [c - 1 for c in ci]}  # fmt: skip

    outcomes = {"model": "als", "k": 10, "n_users": 900, "outcomes": {"gender": {
        "positive_rate": {"F": {"n": 400, "value": 0.5}, "M": {"n": 400, "value": 0.5}, "missing": {"n": 100, "value": 0.1}},
        "parity": {"M": {**di(0.9, [0.8, 1.0]), "groups": {"F": di(1.0, [0.9, 1.1]), "missing": di(0.2, [0.1, 0.3])}},
                   "missing": {**di(5.0, [4.0, 6.0]), "groups": {"F": di(5.0, [4.0, 6.0])}}}}}}  # fmt: skip
    result = run("disparate_impact", {"attribute": "gender", "privileged": "M"}, outcomes)
    assert result.status == Status.passed and set(result.evidence["judged"]) == {"F"}
    assert result.evidence["excluded_groups"] == ["missing"]
    reference = run("disparate_impact", {"attribute": "gender", "privileged": "missing", "max_ratio": 1.25}, outcomes)
    assert reference.status == Status.skipped and "never judged" in reference.message
