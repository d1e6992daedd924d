"""The audit of the configured re-ranking: the served lists are measured like the plain ones, side by side.

The last tests are the measured must-hold of the EU pack: on synthetic data with
its planted provider bias, the plain ALS lists fail the pack's exposure rule and
the lists its re-ranking serves pass it, for at most 5% of NDCG@10 and at least
half of the exposure gap. Every figure is computed here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from governance.collect import collect_facts
from governance.consent.state import ConsentRecord
from governance.engine import evaluate
from governance.facts import AuditFacts, FairnessFacts
from governance.policy import load_pack, parse_pack
from governance.rerank import Candidates, FairStarReranker, Reason
from governance.serving import ServeRequest, ServingEngine
from governance.tradeoff import (
    NO_MATRICES,
    NOT_ENABLED,
    NOT_SIDE_BY_SIDE,
    UNKNOWN_MODEL,
    RerankedEvaluation,
    exposure_gap,
    rerank_evaluation,
    rerank_side_arrays,
    tradeoff_summary,
)
from recommender import metrics as M
from recommender.errors import ConfigError, DataError
from recommender.feedback import FeedbackConfig
from recommender.pipeline import run_evaluation
from recommender.split import SplitConfig
from recommender.synthetic import SyntheticSpec, generate

EU = "policies/eu-gdpr-dsa.yaml"
HEAD = """apiVersion: recgov/v1
metadata: {name: tradeoff, version: 1.0.0, owner: tests}
fairness:
  audit_attributes: [gender]
  provider_attribute: provider_group
"""


def pack_with(*steps: str, head: str = HEAD) -> object:
    body = "reranking:\n  enabled: true\n  candidates: 40\n  steps:\n" + "".join(f"    - {s}\n" for s in steps)
    return parse_pack(head + body, "tradeoff.yaml")


@pytest.fixture(scope="module")
def small():
    dataset = generate(SyntheticSpec(n_users=400, n_items=250, n_interactions=20_000, exposure_bias=3.0, seed=5))
    run = run_evaluation(
        dataset, split_config=SplitConfig(kind="random", test_fraction=0.2), feedback=FeedbackConfig(),
        k=10, tune=False, als_params={"factors": 16, "iterations": 5},
    )  # fmt: skip
    return dataset, run


# -- the re-ranked evaluation -------------------------------------------------------------------
def test_a_neutral_reranking_is_the_plain_evaluation(small):
    dataset, run = small
    plain = run.comparison.evaluations["als"]
    out = rerank_evaluation(run, dataset, pack_with("{name: exposure_cap, params: {max_share: 1.0}}"))
    assert isinstance(out, RerankedEvaluation)
    assert (out.model, out.base_model, out.k, out.n_candidates) == ("als+rerank", "als", 10, 40)
    np.testing.assert_array_equal(out.user_index, plain.user_index)
    np.testing.assert_array_equal(out.recommended, plain.recommended)
    assert out.metrics == plain.metrics and out.beyond == plain.beyond and out.segments == plain.segments
    assert out.per_user.keys() == plain.per_user.keys()
    for name, values in plain.per_user.items():
        np.testing.assert_array_equal(out.per_user[name], values)
    assert not out.moves.any() and out.constraints_met["exposure_cap"].all()
    summary = tradeoff_summary(plain, out)
    assert {m: (v["change"], v["relative_change"]) for m, v in summary["accuracy"].items()} == {
        m: (0.0, 0.0) for m in M.ACCURACY_METRICS
    }
    assert summary["provider_exposure"] is None and summary["consumer_gap"] == {}
    assert summary["constraints_met"] == {"exposure_cap": {"plain": 1.0, "reranked": 1.0}}


def test_the_audited_lists_are_the_lists_the_serving_path_serves(small):
    dataset, run = small
    loaded = load_pack(EU)
    out = rerank_evaluation(run, dataset, loaded)
    engine = ServingEngine(loaded, run.models["als"], dataset.items)
    train = run.matrices.train
    granted = (ConsentRecord("personalization", "granted", "consent", "api", datetime(2025, 1, 1, tzinfo=UTC)),)
    moved = 0
    for j in range(0, len(out.user_index), 10):
        served = engine.serve(ServeRequest(str(train.user_ids[out.user_index[j]]), k=10, consent=granted))
        listed = out.recommended[j][out.recommended[j] >= 0]
        assert served.items == [str(i) for i in train.item_ids[listed]]
        moved += sum(any(t["kind"] == "provider_calibration" for t in tags) for tags in served.tags)
    assert moved == int((out.moves[::10] == Reason.provider_calibration).sum()) > 0


def test_every_constraint_is_checked_on_the_plain_and_the_reranked_lists(small):
    dataset, run = small
    pack = pack_with("{name: mmr, params: {tradeoff: 0.3}}", "{name: fair_star, params: {p: 0.7, alpha: 0.1}}")
    out = rerank_evaluation(run, dataset, pack)
    plain = run.comparison.evaluations["als"]
    assert out.steps == ("mmr", "fair_star") and list(out.constraints_met) == ["fair_star"]
    side = rerank_side_arrays(dataset, pack, run.matrices.train)
    cands = Candidates(items=plain.recommended, scores=np.ones(plain.recommended.shape), **side)
    expected = FairStarReranker(p=0.7, alpha=0.1).check(plain.recommended, cands.validate())
    np.testing.assert_array_equal(out.constraints_met_plain["fair_star"], expected)
    assert out.constraints_met["fair_star"].all() and not expected.all()
    summary = out.reranking_summary()
    assert summary["constraints_met"] == {"fair_star": {"plain": pytest.approx(expected.mean()), "reranked": 1.0}}
    assert summary["places_by_reason"]["provider_fairness"] == int((out.moves == Reason.provider_fairness).sum()) > 0
    assert sum(summary["places_by_reason"].values()) == int((out.recommended >= 0).sum())
    assert out.to_dict()["reranking"] == summary


def test_calibration_gets_each_users_history(small):
    dataset, run = small
    out = rerank_evaluation(run, dataset, pack_with("{name: calibration, params: {tradeoff: 0.5}}"))
    assert (out.moves == Reason.calibration).any()
    assert out.constraints_met == {} and out.reranking_summary()["constraints_met"] == {}


def test_side_arrays_follow_the_pack_and_the_items_table(small):
    dataset, run = small
    train = run.matrices.train
    groups = dataset.items["provider_group"].reindex(pd.Index(train.item_ids.astype(str))).to_numpy()
    side = rerank_side_arrays(dataset, pack_with("{name: exposure_cap}"), train)
    np.testing.assert_array_equal(side["item_group"], (groups == "independent").astype(np.int64))
    np.testing.assert_array_equal(side["item_popularity"], run.models["als"].popularity_)
    assert side["item_categories"].shape[0] == train.n_items and side["item_categories"].nnz > 0
    majors = pack_with("{name: exposure_cap}", head=HEAD + "  protected_provider_group: major\n")
    np.testing.assert_array_equal(
        rerank_side_arrays(dataset, majors, train)["item_group"], (groups == "major").astype(np.int64)
    )
    missing = train.item_ids[:3].astype(str)
    thinner = dataclasses.replace(dataset, items=dataset.items.drop(index=missing))
    codes = rerank_side_arrays(thinner, pack_with("{name: exposure_cap}"), train)["item_group"]
    assert codes[:3].tolist() == [-1, -1, -1] and (codes[3:] >= 0).all()


def test_bad_calls_are_clear_errors(small):
    dataset, run = small
    with pytest.raises(ConfigError) as info:
        rerank_evaluation(run, dataset, parse_pack(HEAD, "plain.yaml"))
    assert str(info.value) == NOT_ENABLED
    pack = pack_with("{name: exposure_cap}")
    with pytest.raises(ConfigError) as info:
        rerank_evaluation(run, dataset, pack, model="svd")
    assert str(info.value) == UNKNOWN_MODEL.format(model="svd", known="'als', 'item_knn', 'popularity', 'random'")
    with pytest.raises(ConfigError) as info:
        rerank_evaluation(dataclasses.replace(run, matrices=None), dataset, pack)
    assert str(info.value) == NO_MATRICES
    with pytest.raises(
        ConfigError,
        match=r"^The 'k' parameter of rerank_evaluation must be an int in the range \[1, inf\)\. Got 0 instead\.$",
    ):
        rerank_evaluation(run, dataset, pack, 0)
    other_k = rerank_evaluation(run, dataset, pack, 5)
    with pytest.raises(DataError) as info:
        tradeoff_summary(run.comparison.evaluations["als"], other_k)
    assert str(info.value) == NOT_SIDE_BY_SIDE.format(plain="als", reranked="als+rerank")


def test_collect_facts_audits_the_served_lists_only_when_the_pack_reranks(small):
    dataset, _ = small
    rule = "  rules:\n    - {id: exposure, check: provider_exposure, description: d, params: {min_ratio: 0.95, max_ratio: 1.05}}\n"
    quality = "quality:\n  tune: false\n"
    plain_pack = parse_pack(HEAD + rule + quality, "plain.yaml")
    facts, _ = collect_facts(plain_pack.pack, dataset, als_params={"factors": 16, "iterations": 5})
    assert facts.tradeoff is None and facts.evaluation.subject == "als" and facts.fairness.model == "als"
    served_pack = pack_with(
        "{name: exposure_cap, params: {max_share: 0.55, weighting: attention}}", head=HEAD + rule + quality
    )
    facts, run = collect_facts(served_pack.pack, dataset, als_params={"factors": 16, "iterations": 5})
    assert facts.evaluation.subject == "als+rerank" and "als" in facts.evaluation.models
    assert facts.fairness.model == "als+rerank"
    plain_fairness = FairnessFacts.model_validate(facts.tradeoff["plain_fairness"])
    assert plain_fairness.model == "als" and plain_fairness.n_users == facts.fairness.n_users
    gap = facts.tradeoff["provider_exposure"]["gap"]
    assert gap["plain"] == pytest.approx(exposure_gap(plain_fairness))
    assert gap["reranked"] == pytest.approx(exposure_gap(facts.fairness))
    ratios = [g.exposure_ratio for g in facts.fairness.exposure["log"].groups.values()]
    assert gap["reranked"] == pytest.approx(max(abs(r - 1) for r in ratios))
    assert facts.tradeoff["accuracy"]["ndcg"]["plain"] == pytest.approx(
        run.comparison.evaluations["als"].metrics["ndcg"]
    )
    assert facts.tradeoff["accuracy"]["ndcg"]["reranked"] == pytest.approx(
        facts.evaluation.models["als+rerank"].metrics["ndcg"]
    )
    assert set(facts.tradeoff["consumer_gap"]["gender"]) == {
        "ndcg", "recall", "hit_rate", "miscalibration", "provider_miscalibration",
    }  # fmt: skip
    text = facts.model_dump_json()
    assert "NaN" not in text and "Infinity" not in text
    assert AuditFacts.model_validate_json(text) == facts
    json.loads(text)


# -- the measured must-hold of the EU pack ------------------------------------------------------
PLANTED = {"exposure_bias": 3.0, "group_provider_affinity": {"X": 4.0}}
"""The planted provider bias: the logging policy exposed the majors 3x what their relevance justifies,
and users of gender X are drawn 4x as much as others to the independents (a small audience whose
tastes the amplified majors serve worst)."""


@pytest.fixture(
    scope="module",
    params=[{}, {"n_users": 3000, "n_interactions": 150_000}],
    ids=["default-2000-users", "3000-users"],
)
def eu_audit(request):
    """The EU pack's audit of default ALS on synthetic data with the planted provider bias."""
    dataset = generate(SyntheticSpec(**PLANTED, **request.param))
    loaded = load_pack(EU)
    facts, run = collect_facts(loaded.pack, dataset, als_params={})  # fixed parameters: no tuning
    return loaded, facts, run


def test_the_eu_reranking_passes_the_exposure_and_consumer_gap_rules_the_plain_lists_fail(eu_audit):
    loaded, facts, _ = eu_audit
    plain_fairness = FairnessFacts.model_validate(facts.tradeoff["plain_fairness"])
    plain = evaluate(loaded, AuditFacts(fairness=plain_fairness))
    served = evaluate(loaded, facts)
    for rule in ("eu-fair-provider-exposure", "eu-fair-gender-calibration"):
        assert (plain.result(rule).status.value, served.result(rule).status.value) == ("fail", "pass"), rule
    # The users the amplified majors served worst are the ones the calibration moves most.
    gap = facts.tradeoff["consumer_gap"]["gender"]["provider_miscalibration"]
    assert gap["reranked"] <= gap["plain"] / 3
    # The NDCG rule holds on both lists: the re-ranking does not buy calibration with a quality gap.
    assert plain.result("eu-fair-gender-ndcg").status.value == "pass"
    assert served.result("eu-fair-gender-ndcg").status.value == "pass"
    assert served.result("eu-quality-lift").status.value == "pass"


def test_the_eu_reranking_costs_at_most_5_percent_of_ndcg_and_halves_the_exposure_gap(eu_audit):
    _, facts, run = eu_audit
    ndcg = facts.tradeoff["accuracy"]["ndcg"]
    before = run.comparison.evaluations["als"].metrics["ndcg"]
    after = facts.evaluation.models["als+rerank"].metrics["ndcg"]
    assert (ndcg["plain"], ndcg["reranked"]) == (pytest.approx(before), pytest.approx(after))
    assert (after - before) / before >= -0.05
    gap_before = exposure_gap(FairnessFacts.model_validate(facts.tradeoff["plain_fairness"]))
    gap_after = exposure_gap(facts.fairness)
    assert gap_after <= gap_before / 2
    assert facts.tradeoff["provider_exposure"]["gap"]["reduction"] == pytest.approx(1 - gap_after / gap_before)
    assert math.isfinite(facts.tradeoff["beyond"]["coverage"]["change"])


def test_the_consumer_gap_of_the_tradeoff_is_between_groups_of_the_attribute_never_with_missing(small):
    """The users without the attribute (group ``missing``) keep their own figures in the facts; the report's gap is
    between the groups of the attribute (by hand: a 0.5, b 0.2 -> 0.3; with missing's 0.95 it would read 0.75)."""
    from governance.collect_fairness import _group_metric
    from recommender.fairness import compare_groups

    dataset, run = small
    plain = run.comparison.evaluations["als"]
    out = rerank_evaluation(run, dataset, pack_with("{name: exposure_cap, params: {max_share: 1.0}}"))
    ndcg = np.array([0.6, 0.4, 0.3, 0.1, 0.9, 1.0])
    figures = _group_metric(compare_groups({"ndcg": ndcg}, ["a", "a", "b", "b", None, None], n_boot=50)["ndcg"])
    assert figures.groups["missing"].value == pytest.approx(0.95) and figures.groups["missing"].n == 2
    fairness = FairnessFacts(consumer={"gender": {"ndcg": figures}})
    gap = tradeoff_summary(plain, out, fairness, fairness)["consumer_gap"]["gender"]["ndcg"]
    assert (gap["plain"], gap["reranked"], gap["change"]) == (pytest.approx(0.3), pytest.approx(0.3), 0.0)
