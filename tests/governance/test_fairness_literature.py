"""A pack that declares bins, intersections, a minimum group size and the literature metrics, end to end.

The audit's figures for the declared groups are checked against a plain pandas
groupby of the evaluation's own per-user values, the literature figures against
:mod:`recommender.fairness` called directly, and a pack without the new keys
against the figures it gave before (nothing changes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from governance.analysis import analyse
from governance.collect_fairness import fairness_facts
from governance.collect_literature import audit_groups
from governance.engine import evaluate
from governance.facts import AuditFacts
from governance.policy import PolicyError, parse_pack
from recommender import fairness as F
from recommender import metrics as M
from recommender.als import ALSRecommender
from recommender.errors import ConfigError, DataError
from recommender.evaluate import evaluate_model
from recommender.split import SplitConfig, split, train_test_matrices
from recommender.synthetic import SyntheticSpec, generate

HEAD = "apiVersion: recgov/v1\nmetadata: {name: fair, version: 0.1.0, owner: tests}\n"
BASE = """
minimization:
  audit_only_attributes: [gender, age]
fairness:
  audit_attributes: [gender, age]
  provider_attribute: provider_group
"""
DECLARED = """
  bins:
    age: {edges: [18, 35, 55, .inf], labels: ["18-34", "35-54", "55+"]}
  intersections: [[gender, age]]
  min_group_size: 120
  literature_metrics: true
  rules:
    - {id: joint-gap, check: consumer_gap, description: d, params: {attribute: gender_x_age, max_difference: 0.5}}
"""


@pytest.fixture(scope="module")
def audited() -> tuple[Any, Any, Any]:
    dataset = generate(SyntheticSpec(n_users=900, n_items=400, n_interactions=30_000, exposure_bias=2.0, seed=4))
    rng = np.random.default_rng(4)
    low = dataset.users["age_band"].astype(str).str.slice(0, 2).astype(int)
    users = dataset.users.assign(age=(low + rng.integers(0, 7, len(low))).astype(float))
    users.loc[users.index[::50], "age"] = np.nan  # some users without an age: the missing group
    dataset = dataset.__class__(events=dataset.events, users=users, items=dataset.items)
    mats = train_test_matrices(*split(dataset.events, SplitConfig(kind="random", test_fraction=0.2)))
    model = ALSRecommender(factors=16, iterations=6, random_state=0).fit(mats.train)
    return dataset, mats, evaluate_model(model, mats.train, mats.test, 10)


def _facts(audited, pack_text: str):
    dataset, mats, ev = audited
    return fairness_facts(dataset, ev, parse_pack(pack_text, "fair.yaml"), train=mats.train, test=mats.test, n_boot=50)


def test_declared_groups_reach_the_audit_figures(audited):
    dataset, mats, ev = audited
    facts = _facts(audited, HEAD + BASE + DECLARED)
    users = dataset.users.reindex(pd.Index(mats.train.user_ids.astype(str))).iloc[ev.user_index]
    band = pd.cut(users["age"], [18, 35, 55, np.inf], right=False, labels=["18-34", "35-54", "55+"]).astype(object)
    joint = (users["gender"].astype(str) + " x " + band.astype(str)).where(band.notna(), "missing")
    frame = pd.DataFrame({"g": joint.to_numpy(), "ndcg": ev.per_user["ndcg"]})
    got = facts.consumer["gender_x_age"]["ndcg"].groups
    assert {g: v.value for g, v in got.items()} == pytest.approx(frame.groupby("g")["ndcg"].mean().to_dict(), rel=1e-12)
    assert set(facts.consumer["age"]["ndcg"].groups) == {"18-34", "35-54", "55+", "missing"}
    census = facts.groups["gender_x_age"]["groups"]
    assert {g: c["n"] for g, c in census.items()} == frame.groupby("g").size().to_dict()
    for g, c in census.items():
        assert c["judged"] == (g != "missing" and c["n"] >= 120)
        assert c["judged"] or "reported, not judged" in c["reason"]
    assert any(not c["judged"] and g != "missing" for g, c in census.items()), "a small group is reported, not judged"
    report = evaluate(parse_pack(HEAD + BASE + DECLARED, "fair.yaml"), AuditFacts(fairness=facts))
    assert {r.rule_id: r.status.value for r in report.results}["joint-gap"] in {"pass", "fail"}


def test_literature_figures_are_those_of_the_library(audited):
    dataset, mats, ev = audited
    facts = _facts(audited, HEAD + BASE + DECLARED)
    lit = facts.literature
    rows = np.asarray(ev.user_index)
    history, relevant = mats.train.matrix[rows], mats.test.matrix[rows]
    pop = M.item_popularity(mats.train.matrix)
    rec = np.asarray(ev.recommended)
    assert lit["pop_reo"]["value"] == pytest.approx(F.pop_reo(rec, relevant, history, popularity=pop).value)
    assert lit["pop_rsp"]["value"] == pytest.approx(F.pop_rsp(rec, history, popularity=pop).value)
    assert lit["aclt"] == pytest.approx(M.defined_mean(F.aclt(rec, pop)))
    assert lit["aggregate_diversity"] == pytest.approx(F.aggregate_diversity(rec, mats.train.n_items))
    groups = dataset.items["provider_group"].reindex(pd.Index(mats.train.item_ids.astype(str))).to_numpy(dtype=object)
    assert lit["item_mad"]["value"] == pytest.approx(F.item_mad(rec, relevant, groups).value)
    gender = dataset.users["gender"].reindex(pd.Index(mats.train.user_ids.astype(str))).to_numpy(dtype=object)[rows]
    judged_gender = {g for g, c in facts.groups["gender"]["groups"].items() if c["judged"]}
    keep = np.isin(gender.astype(str), list(judged_gender))  # small groups are reported, left out of the gap
    expected = F.user_mad(ev.per_user["ndcg"][keep], gender[keep]).value
    assert lit["by_attribute"]["gender"]["user_mad_ndcg"]["value"] == pytest.approx(expected)
    joint = lit["by_attribute"]["gender_x_age"]
    judged = {g for g, c in facts.groups["gender_x_age"]["groups"].items() if c["judged"]}
    assert set(joint["judged_groups"]) == judged and set(joint["user_mad_ndcg"]["by_group"]) == judged
    cats = dataset.items["categories"].reindex(pd.Index(mats.train.item_ids.astype(str))).to_numpy(dtype=object)
    shares = F.membership_exposure(rec, F.multi_membership(cats), F.attention_weights(10, "log"))
    assert {g: v["exposure_share"] for g, v in lit["category_exposure"].items()} == pytest.approx(shares)
    assert sum(v["exposure_share"] for v in lit["category_exposure"].values()) >= 0.99  # multi-valued: may pass 1
    assert AuditFacts.model_validate_json(AuditFacts(fairness=facts).model_dump_json()).fairness == facts


def test_a_pack_without_the_new_keys_gives_the_figures_it_gave(audited):
    plain = _facts(audited, HEAD + BASE)
    assert plain.groups == {} and plain.literature is None
    dataset, mats, ev = audited
    assert set(plain.consumer) == {"gender", "age"}
    # raw ages: one group per distinct value, as before bins existed
    assert len(plain.consumer["age"]["ndcg"].groups) > 20


@pytest.mark.parametrize(
    ("fairness", "message"),
    [
        ("  bins:\n    height: {edges: [0, 1], labels: [a]}\n", "'height' is not one of fairness.audit_attributes"),
        ("  bins:\n    age: {edges: [30, 18], labels: [a]}\n", "strictly increasing"),
        ("  bins:\n    age: {edges: [0, 18, 30], labels: [a]}\n", "2 bins need 2 labels"),
        ("  intersections: [[gender, region]]\n", "['region'] not in fairness.audit_attributes"),
        ("  intersections: [[gender]]\n", "two or more distinct attributes"),
        ("  min_group_size: 0\n", "min_group_size"),
    ],
)
def test_bad_group_declarations_are_located_errors(fairness, message):
    with pytest.raises(PolicyError) as err:
        parse_pack(HEAD + BASE + fairness, "fair.yaml")
    assert message in str(err.value) and "fairness" in str(err.value)


def test_static_analysis_reads_an_intersection_through_its_parts():
    loaded = parse_pack(HEAD + BASE + DECLARED, "fair.yaml")
    pack = loaded.pack
    ok = analyse(pack, {}, "fair.yaml", dataset_columns=["gender", "age", "item_id"])
    assert not [i for i in ok if "not in the dataset" in i.message]
    missing = analyse(pack, {}, "fair.yaml", dataset_columns=["gender", "item_id"])
    assert any("attribute 'age' is not in the dataset" in i.message for i in missing)


CLASHING = """
minimization:
  audit_only_attributes: [gender, age_band, age, region, gender_x_age, age_x_region]
fairness:
  audit_attributes: [gender, age_band, age, region, gender_x_age, age_x_region]
"""


@pytest.mark.parametrize(
    ("intersections", "message"),
    [
        # judged as gender_x_age, the name of a declared attribute: its groups would replace the attribute's
        ("[[gender, age]]", "intersections.0: ['gender', 'age'] is judged under the name 'gender_x_age', which is "
         "already an attribute of fairness.audit_attributes"),
        # gender x (age_x_region) and gender x age x region are different groupings under one name
        ("[[gender, age_x_region], [gender, age, region]]", "intersections.1: ['gender', 'age', 'region'] is judged "
         "under the name 'gender_x_age_x_region', which is already the name of intersections.0"),
        ("[[gender, age_band], [age_band, gender]]", "intersections.1: ['age_band', 'gender'] repeats intersections.0"),
    ],
)
def test_an_intersection_whose_name_is_taken_is_refused_with_its_location(intersections, message):
    with pytest.raises(PolicyError) as err:
        parse_pack(HEAD + CLASHING + f"  intersections: {intersections}\n", "fair.yaml")
    text = str(err.value)
    assert message in text and "fair.yaml:" in text and "fairness" in text


def test_intersection_names_that_do_not_clash_are_accepted_and_kept_apart():
    loaded = parse_pack(HEAD + CLASHING + "  intersections: [[gender, age_band], [gender, age_x_region]]\n", "f.yaml")
    section = loaded.pack.fairness
    assert section.intersection_names() == ["gender_x_age_band", "gender_x_age_x_region"]
    users = pd.DataFrame(
        {"gender": ["F", "M"], "age_band": ["18-24", "25-34"], "age": [20, 30], "region": ["n", "s"],
         "gender_x_age": ["own-a", "own-b"], "age_x_region": ["p", "q"]},
        index=["u1", "u2"],
    )
    labels, unavailable = audit_groups(users, section, np.array(["u1", "u2"]), np.array([0, 1]))
    assert not unavailable
    assert labels["gender_x_age"].tolist() == ["own-a", "own-b"]  # the attribute's own groups, untouched
    assert labels["gender_x_age_x_region"].tolist() == ["F x p", "M x q"]


def test_audit_groups_refuses_a_clash_in_a_section_that_skipped_validation():
    # defence in depth: a section built without the pack's validation still never replaces an attribute's groups
    loaded = parse_pack(HEAD + CLASHING, "f.yaml")
    section = loaded.pack.fairness.model_copy(update={"intersections": [["gender", "age"]]})
    users = pd.DataFrame({"gender": ["F"], "age_band": ["a"], "age": [20], "region": ["n"],
                          "gender_x_age": ["own"], "age_x_region": ["p"]}, index=["u1"])
    with pytest.raises(ConfigError, match="'gender_x_age', a name already taken"):
        audit_groups(users, section, np.array(["u1"]), np.array([0]))


def test_an_empty_combination_of_declared_values_is_in_the_census_with_no_members(audited):
    dataset, mats, ev = audited
    users = dataset.users.copy()
    first = sorted(users["gender"].dropna().astype(str).unique())[0]
    mine = (users["gender"].astype(str) == first) & users["age"].notna()
    users.loc[mine, "age"] = 20.0  # nobody of the first gender is 35 or older now
    emptied = (dataset.__class__(events=dataset.events, users=users, items=dataset.items), mats, ev)
    facts = _facts(emptied, HEAD + BASE + DECLARED)
    census = facts.groups["gender_x_age"]["groups"]
    for band in ("35-54", "55+"):
        cell = census[f"{first} x {band}"]
        assert cell["n"] == 0 and cell["judged"] is False and "no members" in cell["reason"]
        assert f"{first} x {band}" not in facts.consumer["gender_x_age"]["ndcg"].groups  # no figure for nobody
    assert census[f"{first} x 18-34"]["n"] > 0


def test_an_attribute_value_named_like_the_missing_group_is_refused_naming_its_table_and_entity(audited):
    dataset, mats, ev = audited
    evaluated = mats.train.user_ids[ev.user_index]
    users = dataset.users.copy()
    users["gender"] = users["gender"].astype(object)
    assert str(evaluated[3]) in set(users.index.astype(str))
    users.loc[users.index.astype(str) == str(evaluated[3]), "gender"] = "Missing"
    renamed = (dataset.__class__(events=dataset.events, users=users, items=dataset.items), mats, ev)
    with pytest.raises(DataError, match=rf"the users table: column 'gender', user '{evaluated[3]}' holds the value 'Missing'"):
        _facts(renamed, HEAD + BASE)
    with pytest.raises(DataError, match=rf"user attributes: column 'gender', row '{evaluated[3]}'"):
        _facts(renamed, HEAD + BASE + DECLARED)
    items = dataset.items.copy()
    items["provider_group"] = items["provider_group"].astype(object)
    item = str(mats.train.item_ids[2])
    assert item in set(items.index.astype(str))
    items.loc[items.index.astype(str) == item, "provider_group"] = "missing"
    providers = (dataset.__class__(events=dataset.events, users=dataset.users, items=items), mats, ev)
    with pytest.raises(DataError, match=rf"the items table: column 'provider_group', item '{item}'"):
        _facts(providers, HEAD + BASE)
    model = ALSRecommender(factors=4, iterations=2, random_state=0).fit(mats.train)
    segment = np.array(["a"] * mats.train.n_users, dtype=object)
    segment[5] = "missing"
    with pytest.raises(DataError, match=rf"segment 'gender': user '{mats.train.user_ids[5]}' holds the value 'missing'"):
        evaluate_model(model, mats.train, mats.test, 10, segments={"gender": segment})
