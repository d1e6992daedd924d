"""In-training fairness beside post-processing: four lists on the same split, measured by the audit's code."""

from __future__ import annotations

import json

import pytest

from governance.collect_fairness import fairness_facts
from governance.fair_training_tradeoff import training_tradeoff
from governance.policy import parse_pack
from governance.tradeoff import exposure_gap
from recommender.errors import ConfigError
from recommender.feedback import FeedbackConfig
from recommender.pipeline import run_evaluation
from recommender.split import SplitConfig
from recommender.synthetic import SyntheticSpec, generate

PACK = """apiVersion: recgov/v1
metadata: {name: t, version: 1.0.0, owner: o}
minimization: {audit_only_attributes: [gender]}
fairness:
  audit_attributes: [gender]
  provider_attribute: provider_group
  protected_provider_group: independent
reranking:
  enabled: true
  candidates: 50
  steps:
    - {name: provider_calibration, params: {tradeoff: 0.7}}
"""


@pytest.fixture(scope="module")
def world():
    dataset = generate(SyntheticSpec(n_users=400, n_items=250, n_interactions=20_000, exposure_bias=3.0,
                                     group_provider_affinity={"X": 4.0}, seed=5))  # fmt: skip
    run = run_evaluation(
        dataset, split_config=SplitConfig(kind="random", test_fraction=0.2), feedback=FeedbackConfig(),
        k=10, tune=False, als_params={"factors": 16, "iterations": 5},
    )  # fmt: skip
    return dataset, run, parse_pack(PACK, "t.yaml")


def test_four_lists_side_by_side(world):
    dataset, run, pack = world
    out = training_tradeoff(run, dataset, pack, {"attribute": "gender", "strength": 1.0}, n_boot=20)
    assert set(out["rows"]) == {"als", "als+rerank", "als+fair", "als+fair+rerank"}
    plain = out["rows"]["als"]
    assert plain["ndcg"] == run.comparison.evaluations["als"].metrics["ndcg"]  # the audit's own evaluation
    mats = run.matrices
    facts = fairness_facts(dataset, run.comparison.evaluations["als"], pack, train=mats.train, test=mats.test, n_boot=20)
    assert plain["exposure_gap"] == pytest.approx(exposure_gap(facts))
    groups = facts.consumer["gender"]["ndcg"].groups
    assert plain["consumer_gap"] == pytest.approx(max(g.value for g in groups.values()) - min(g.value for g in groups.values()))
    fair = out["rows"]["als+fair"]
    assert fair["ndcg"] != plain["ndcg"]  # a different model
    closed = out["vs_plain"]["als+fair"]
    assert closed["consumer_gap_closed"] == pytest.approx(1 - fair["consumer_gap"] / plain["consumer_gap"])
    assert closed["ndcg_lost"] == pytest.approx(1 - fair["ndcg"] / plain["ndcg"])
    assert out["rows"]["als+fair+rerank"]["seconds"] > fair["seconds"] > 0
    # the pack's min_group_size applies as in a governed run: a group under it is left at 1, its multiplier not shown
    sizes = dataset.users.loc[dataset.users.index.astype(str).isin(run.matrices.train.user_ids), "gender"].astype(str).value_counts()
    big = {g for g, n in sizes.items() if n >= pack.pack.fairness.min_group_size}
    assert set(out["fairness_weights"]) == big and big < {"F", "M", "X"}


def test_strength_zero_reproduces_the_plain_rows(world):
    dataset, run, pack = world
    out = training_tradeoff(run, dataset, pack, "gender:0", n_boot=20)
    for key in ("ndcg", "consumer_gap", "exposure_gap"):
        assert out["rows"]["als+fair"][key] == out["rows"]["als"][key]
        assert out["rows"]["als+fair+rerank"][key] == out["rows"]["als+rerank"][key]


def test_an_undeclared_attribute_is_refused(world):
    dataset, run, pack = world
    with pytest.raises(ConfigError, match="'age_band' is not declared"):
        training_tradeoff(run, dataset, pack, "age_band")
    with pytest.raises(ConfigError, match="give a fairness_reweighting"):
        training_tradeoff(run, dataset, pack, None)  # type: ignore[arg-type]


def test_the_audit_of_a_reweighted_recipe_adds_the_in_training_comparison():
    """An audited reweighted recipe gets ``tradeoff.in_training``; the existing keys are unchanged."""
    from governance.collect import collect_facts

    dataset = generate(SyntheticSpec(n_users=300, n_items=200, n_interactions=12_000, exposure_bias=3.0,
                                     group_provider_affinity={"X": 4.0}, seed=7))  # fmt: skip
    pack = parse_pack(PACK, "t.yaml").pack
    params = {"factors": 8, "iterations": 4}
    plain, _ = collect_facts(pack, dataset, als_params=params)
    fair, _ = collect_facts(pack, dataset, als_params={**params, "fairness_reweighting": {"attribute": "gender"}})
    assert "in_training" not in plain.tradeoff
    assert set(fair.tradeoff) == set(plain.tradeoff) | {"in_training"}
    rows = fair.tradeoff["in_training"]["rows"]
    # the audit's own figures of the reweighted model are the in-training row's
    assert rows["als+fair"]["ndcg"] == pytest.approx(fair.tradeoff["accuracy"]["ndcg"]["plain"])
    assert rows["als"]["ndcg"] == pytest.approx(plain.tradeoff["accuracy"]["ndcg"]["plain"])
    assert rows["als+fair+rerank"]["ndcg"] == pytest.approx(fair.tradeoff["accuracy"]["ndcg"]["reranked"])
    json.loads(fair.model_dump_json())  # the facts, as recorded, hold it


def test_the_side_by_side_reads_the_packs_training_fairness(world):
    """A pack that declares training.fairness needs no reweighting argument: the comparison takes the pack's."""
    dataset, run, _ = world
    pack = parse_pack(PACK + "training:\n  fairness: {attribute: gender, strength: 1.0}\n", "t.yaml")
    from_pack = training_tradeoff(run, dataset, pack, n_boot=20)
    given = training_tradeoff(run, dataset, parse_pack(PACK, "t.yaml"), "gender:1.0", n_boot=20)
    assert from_pack["reweighting"] == given["reweighting"]
    assert from_pack["rows"]["als+fair"]["ndcg"] == given["rows"]["als+fair"]["ndcg"]


def test_the_audit_under_a_pack_with_training_fairness_adds_the_in_training_comparison():
    from governance.collect import collect_facts

    dataset = generate(SyntheticSpec(n_users=300, n_items=200, n_interactions=12_000, exposure_bias=3.0,
                                     group_provider_affinity={"X": 4.0}, seed=7))  # fmt: skip
    pack = parse_pack(PACK + "training:\n  fairness: {attribute: gender}\n", "t.yaml").pack
    facts, _ = collect_facts(pack, dataset, als_params={"factors": 8, "iterations": 4})
    assert facts.tradeoff["in_training"]["reweighting"]["attribute"] == "gender"
