"""Silent evaluation failures as audit checks: a split that leaks the future, labels built wrongly.

Each fault is planted and must fail its check; the clean counterpart must pass.
The counts are checked against hand-computed cases first.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from governance.collect import collect_facts
from governance.collect_split import split_facts
from governance.engine import evaluate
from governance.facts import AuditFacts, LabelFacts
from governance.policy import parse_pack
from governance.registry import Status
from recommender.feedback import FeedbackConfig
from recommender.pipeline import run_evaluation
from recommender.split import SplitConfig, split, train_test_matrices
from recommender.split_audit import label_audit, positive_events, temporal_leakage
from recommender.synthetic import SyntheticSpec, generate

RULES = """data:
  rules:
    - {id: no-look-ahead, check: temporal_leakage, description: No training event after a test label.}
    - {id: own-look-ahead, check: temporal_leakage, description: None after its own label., params: {scope: per_user}}
    - {id: labels-as-declared, check: label_construction, description: Test labels as declared.}
"""


def pack(split_kind: str, rules: str = RULES) -> object:
    head = f"apiVersion: recgov/v1\nmetadata: {{name: integrity, version: 1.0.0, owner: tests}}\nquality:\n  split: {split_kind}\n  tune: false\n"
    return parse_pack(head + rules, "integrity.yaml")


def statuses(loaded: object, facts: AuditFacts) -> dict[str, Status]:
    return {r.rule_id: r.status for r in evaluate(loaded, facts).results}


@pytest.fixture(scope="module")
def dataset():
    return generate(SyntheticSpec(n_users=300, n_items=150, n_interactions=6000, seed=3))


# -- the measurements, by hand --------------------------------------------------------
def test_temporal_leakage_hand_case() -> None:
    train = pd.DataFrame({"user_id": ["a", "a", "b", "b", "c"], "item_id": list("xyxyz"), "timestamp": [1, 6, 2, 9, 7],
                          "event_type": "click"})  # fmt: skip
    test = pd.DataFrame({"user_id": ["a", "b", "b"], "item_id": list("zzx"), "timestamp": [5, 8, 3],
                         "event_type": ["click", "click", "view"]})  # fmt: skip
    test.loc[2, "event_type"] = "rating"  # a rating of 2: not a label, so b's earliest label is at 8
    test["value"] = [0.0, 0.0, 2.0]
    got = temporal_leakage(train, test, FeedbackConfig())
    # earliest label anywhere: 5 -> training events at 6, 9, 7 are after it; a's own label 5: 6; b's 8: 9; c has none
    assert (got["n_test_labels"], got["after_any_label"], got["after_own_label"]) == (2, 3, 2)
    assert got["after_any_label_share"] == pytest.approx(3 / 5)


def test_ties_are_not_leaks_and_nanosecond_times_stay_exact() -> None:
    t = pd.Timestamp("2026-01-01T00:00:00.000000001Z")
    train = pd.DataFrame({"user_id": ["a", "a", None], "item_id": ["x", "y", "z"], "event_type": "click",
                          "timestamp": [t, t + pd.Timedelta(1, "ns"), t + pd.Timedelta(5, "ns")]})  # fmt: skip
    test = pd.DataFrame({"user_id": ["a", None], "item_id": ["z", "x"], "event_type": "click", "timestamp": [t, t]})
    got = temporal_leakage(train, test, FeedbackConfig())
    # one nanosecond later is a leak, the tie is not; the user-less event leaks globally, never into a user's own label
    assert (got["after_any_label"], got["after_own_label"]) == (2, 1)


def test_positive_events_follow_the_declared_weights_and_threshold() -> None:
    ev = pd.DataFrame({"event_type": ["click", "rating", "rating", "wishlist", None], "value": [0, 4, 3.5, 1, 1]})
    assert positive_events(ev, FeedbackConfig()).tolist() == [True, True, False, False, False]
    assert positive_events(ev, FeedbackConfig(rating_threshold=3.0)).tolist() == [True, True, True, False, False]


def test_label_audit_counts_each_fault() -> None:
    train_ev = pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"], "event_type": "click"})
    test_ev = pd.DataFrame({"user_id": ["a", "a", "b", "b"], "item_id": ["x", "y", "z", "x"],
                            "event_type": ["click", "click", "view", "rating"], "value": [0, 0, 0, 2.0]})  # fmt: skip
    clean = train_test_matrices(train_ev, test_ev, FeedbackConfig())
    got = label_audit(test_ev, clean.train, clean.test, FeedbackConfig(), {"m": np.array([0, 1])})
    # a-x is seen (dropped), a-y and b-z are the labels; the rating of 2 is not one; c has no test event
    assert got == {"n_test_labels": 2, "test_labels_in_train": 0, "undeclared_labels": 0, "missing_labels": 0,
                   "users_without_labels": {"m": 0}, "users_counted": {"m": 2}}  # fmt: skip
    leaky = train_test_matrices(train_ev, test_ev, FeedbackConfig(rating_threshold=1.0), drop_seen=False)
    got = label_audit(test_ev, leaky.train, leaky.test, FeedbackConfig(), {"m": np.array([0, 1, 2])})
    assert got["test_labels_in_train"] == 1  # a-x
    assert got["undeclared_labels"] == 1  # b-x, from a rating of 2 under a threshold of 1
    assert got["users_without_labels"] == {"m": 1}  # c
    assert got["missing_labels"] == 0
    # a label the declared feedback makes, left out of the test matrix
    sparse = dataclasses.replace(clean.test, matrix=clean.test.matrix.multiply(clean.test.matrix > 1).tocsr())
    assert label_audit(test_ev, clean.train, sparse, FeedbackConfig())["missing_labels"] == 1  # b-z (view, weight 1)


# -- through the collector and the engine ------------------------------------------------
def test_a_global_time_split_passes_every_rule(dataset) -> None:
    loaded = pack("time")
    facts, _ = collect_facts(loaded.pack, dataset, als_params={"factors": 8, "iterations": 3})
    assert facts.temporal.after_any_label == 0 and facts.temporal.n_test_labels > 0
    assert statuses(loaded, facts) == {"no-look-ahead": Status.passed, "own-look-ahead": Status.passed,
                                       "labels-as-declared": Status.passed}  # fmt: skip
    assert facts.labels.n_test_labels > 0 and facts.labels.users_counted["als"] > 0


def test_a_random_split_leaks_and_fails(dataset) -> None:
    loaded = pack("random")
    facts, _ = collect_facts(loaded.pack, dataset, als_params={"factors": 8, "iterations": 3})
    got = statuses(loaded, facts)
    assert got["no-look-ahead"] == Status.fail and got["own-look-ahead"] == Status.fail
    assert got["labels-as-declared"] == Status.passed  # the labels themselves are built right
    # cross-checked: the share is that of training events later than the earliest test positive
    train, test = split(dataset.events, SplitConfig(kind="random", test_fraction=0.2, random_state=0))
    positive = test[positive_events(test, FeedbackConfig())]
    expected = (pd.to_datetime(train["timestamp"]) > pd.to_datetime(positive["timestamp"]).min()).mean()
    assert facts.temporal.after_any_label_share == pytest.approx(expected)


@pytest.mark.parametrize("fault", ["one missing timestamp", "an unreadable timestamp", "no timestamp column"])
def test_events_that_cannot_be_placed_in_time_fail_the_leakage_rule_and_the_labels_are_still_judged(dataset, fault) -> None:
    # a random split needs no time, so the evaluation runs; whether it looks ahead cannot be measured
    events = dataset.events.copy()
    if fault == "no timestamp column":
        events = events.drop(columns="timestamp")
    else:
        events["timestamp"] = events["timestamp"].astype(object)
        events.loc[events.index[5], "timestamp"] = None if fault == "one missing timestamp" else "not a time"
    broken = dataclasses.replace(dataset, events=events)
    loaded = pack("random")
    facts, _ = collect_facts(loaded.pack, broken, als_params={"factors": 8, "iterations": 3})
    t = facts.temporal
    assert t is not None and not t.measurable and t.after_any_label is None and t.after_any_label_share is None
    assert t.n_test_labels > 0 and t.n_train_events + len(split(events, SplitConfig(kind="random"))[1]) == len(events)
    expected = {"one missing timestamp": "1 event(s) have no timestamp", "an unreadable timestamp": "cannot be read as a time",
                "no timestamp column": "no timestamp column"}[fault]  # fmt: skip
    assert expected in t.reason
    results = {r.rule_id: r for r in evaluate(loaded, facts).results}
    for rule in ("no-look-ahead", "own-look-ahead"):
        assert results[rule].status == Status.fail, results[rule].message
        assert "cannot be ruled out" in results[rule].message and expected in results[rule].message
    assert results["labels-as-declared"].status == Status.passed and facts.labels.n_test_labels > 0
    assert json.dumps(t.model_dump())


def test_a_leave_last_split_leaks_across_users_only(dataset) -> None:
    loaded = pack("leave_last")
    facts, _ = collect_facts(loaded.pack, dataset, als_params={"factors": 8, "iterations": 3})
    got = statuses(loaded, facts)
    assert got["no-look-ahead"] == Status.fail and got["own-look-ahead"] == Status.passed


def test_planted_label_faults_fail_the_label_rule(dataset) -> None:
    loaded = pack("time")
    q = loaded.pack.quality
    # the evaluation ran with a threshold of 1 while the pack declares 4: ratings of 1 to 3 became labels
    run = run_evaluation(dataset, split_config=SplitConfig(kind="time"), feedback=FeedbackConfig(rating_threshold=1.0),
                         k=q.k, tune=False, als_params={"factors": 8, "iterations": 3})  # fmt: skip
    _, labels = split_facts(loaded.pack, dataset, run, {"labels"})
    assert labels.undeclared_labels > 0
    result = {r.rule_id: r for r in evaluate(loaded, AuditFacts(labels=labels)).results}["labels-as-declared"]
    assert result.status == Status.fail and "undeclared_labels" in result.message
    # seen items kept as test labels, and users counted with no label
    train_ev, test_ev = split(dataset.events, SplitConfig(kind="time"))
    mats = train_test_matrices(train_ev, test_ev, FeedbackConfig(), drop_seen=False)
    ev = run.comparison.evaluations["als"]
    everyone = dataclasses.replace(ev, user_index=np.arange(mats.train.n_users))
    fake = dataclasses.replace(run, matrices=mats, comparison=dataclasses.replace(run.comparison, evaluations={"als": everyone}))
    _, labels = split_facts(loaded.pack, dataset, fake, {"labels"})
    assert labels.test_labels_in_train > 0 and labels.users_without_labels["als"] > 0 and labels.undeclared_labels == 0
    result = {r.rule_id: r for r in evaluate(loaded, AuditFacts(labels=labels)).results}["labels-as-declared"]
    assert result.status == Status.fail
    assert set(result.evidence["over_limit"]) == {"test_labels_in_train", "users_without_labels"}


def test_tolerances_are_honoured() -> None:
    labels = LabelFacts(n_test_labels=10, test_labels_in_train=2, undeclared_labels=0, missing_labels=0)
    rules = RULES.replace("description: Test labels as declared.}", "description: Test labels as declared., params: {max_test_labels_in_train: 2}}")
    loaded = pack("time", rules)
    assert statuses(loaded, AuditFacts(labels=labels))["labels-as-declared"] == Status.passed
    with pytest.raises(Exception, match="max_share"):
        pack("time", RULES.replace("{scope: per_user}", "{scope: per_user, max_share: 2}"))
    assert json.dumps(labels.model_dump())  # facts are plain data
