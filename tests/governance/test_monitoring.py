"""Monitoring's figures and triggers on tiny inputs whose answers are worked out by hand; the pack's lifecycle section."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from governance.cli.policy import SHIPPED
from governance.lifecycle_section import LifecycleSection
from governance.lifecycle.triggers import ModelFacts, evaluate_triggers, unticketed_erasures
from governance.located import PolicyError
from governance.monitoring import WindowInputs, categorical_psi, gini, popularity_deciles, window_figures
from governance.policy import content_hash, parse_pack
from recommender.synthetic import SyntheticSpec, generate

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_gini_matches_hand_computed_values_and_the_mean_absolute_difference() -> None:
    assert gini(np.array([1, 1, 1, 1])) == 0.0
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)  # (2*4 - 5) * 4 / (4 * 4)
    x = np.random.default_rng(3).poisson(3.0, 200).astype(float)
    by_pairs = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())
    assert gini(x) == pytest.approx(by_pairs)
    assert np.isnan(gini(np.zeros(3)))


def test_categorical_psi_by_hand() -> None:
    expected = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    assert categorical_psi(np.array([0.5, 0.5]), np.array([1, 3])) == pytest.approx(expected)
    assert categorical_psi(np.array([0.2, 0.8]), np.array([20, 80])) == pytest.approx(0.0)


def test_popularity_deciles_cut_events_not_items() -> None:
    events = pd.DataFrame({"item_id": ["a"] * 50 + ["b"] * 30 + ["c"] * 20})
    deciles, shares = popularity_deciles(events)
    # Cumulative shares from the least popular: c 0.2, b 0.5, a 1.0 -> deciles 1, 4, 9.
    assert deciles == {"c": 1, "b": 4, "a": 9}
    assert shares[1] == pytest.approx(0.2) and shares[4] == pytest.approx(0.3) and shares[9] == pytest.approx(0.5)


def _inputs(**overrides) -> WindowInputs:
    decisions = pd.DataFrame(
        {
            "decision_id": ["d1", "d2", "d3", "d4"],
            "decided_at": pd.to_datetime([NOW - timedelta(hours=h) for h in (3, 2, 1, 1)], utc=True),
            "mode": ["personalized", "personalized", "non_profiling", "personalized"],
            "model_version": ["m1", "m1", None, "m1"],
            "items": [["a", "b"], ["a", "c"], ["d", "a"], ["b", "d"]],
            "scores": [[0.9, 0.5], [0.8, 0.4], [None, None], [0.7, 0.6]],
            "shadow": [False, False, False, True],
        }
    )
    outcomes = pd.DataFrame(
        {
            "kind": ["click", "click", "conversion", "click", "rating"],
            "item_id": ["a", "c", "c", "b", "d"],
            "decision_id": ["d1", "d2", "d2", None, None],
            "position": [0, 1, 1, None, None],
            "attribution": ["decision_id", "window", "window", "item_not_served", "no_decision_before"],
            "occurred_at": pd.to_datetime([NOW] * 5, utc=True),
        }
    )
    items = pd.DataFrame({"provider_group": ["major", "independent", "independent", "independent"], "flags": ["", "harmful:spam", "", ""]}, index=["a", "b", "c", "d"])
    profile = {"deciles": {"a": 9, "b": 5, "c": 2}, "decile_share": [0.1] * 10, "offline_scores": [0.9, 0.8, 0.5, 0.4], "offline_hit_rate": 0.3}
    values = {"decisions": decisions, "outcomes": outcomes, "failed": 1, "unreadable": 1, "items": items, "profiles": {"m1": profile}}
    values.update(overrides)
    return WindowInputs(**values)


def test_window_figures_by_hand() -> None:
    figures = window_figures(_inputs())
    overall = figures["overall"]
    # d4 is a shadow list: never served, never counted. Three lists, one of them non-profiling; one failure.
    assert overall["lists"] == 3 and overall["shadow_lists"] == 1
    assert overall["non_profiling_share"] == pytest.approx(1 / 3, abs=1e-6)
    assert overall["failure_rate"] == pytest.approx(1 / 5)  # 1 failed of 3 served + 1 unreadable + 1 failed
    m1 = figures["models"]["m1"]
    # m1 served a, b (d1) and a, c (d2): clicks on d1:0 and d2:1, a conversion on d2:1.
    assert (m1["lists"], m1["served"], m1["clicks"], m1["conversions"]) == (2, 4, 2, 1)
    assert m1["click_rate"] == 0.5 and m1["conversion_rate"] == 0.25
    assert m1["coverage"] == 0.75  # a, b, c of a, b, c, d
    assert m1["exposure_gini"] == pytest.approx(gini(np.array([2, 1, 1, 0])))
    assert m1["long_tail_share"] == 0.5  # b (5) and c (2) below decile 8; a (9) twice is the head
    assert m1["served_popularity"] == pytest.approx((9 + 5 + 9 + 2) / 4 / 9, abs=1e-6)
    assert m1["provider_gap"] == pytest.approx(0.75 - 0.5)  # independent: 3 of 4 items, 2 of 4 slots
    assert m1["harmful_share"] == 0.25
    assert "m1" in figures["models"] and None not in figures["models"]
    # Every engaged feedback event counts for drift (a, c, c, b, d): deciles 9, 2, 2, 5, 0.
    assert m1["input_drift_psi"] == pytest.approx(categorical_psi(np.full(10, 0.1), np.bincount([9, 2, 2, 5, 0], minlength=10)))


def test_latency_percentiles_by_hand_over_the_lists_that_give_one() -> None:
    """m1's served lists give 1, 2, 3, 4, 100 ms and one gives none; the shadow's 1000 ms is never counted; m2 gives none."""
    decisions = pd.DataFrame(
        {
            "decision_id": [f"d{i}" for i in range(8)],
            "decided_at": pd.to_datetime([NOW - timedelta(hours=1)] * 8, utc=True),
            "mode": ["personalized"] * 8,
            "model_version": ["m1"] * 7 + ["m2"],
            "items": [["a"]] * 8,
            "scores": [[0.5]] * 8,
            "shadow": [False] * 5 + [True, False, False],
            "latency_ms": [4.0, 1.0, 100.0, 3.0, 2.0, 1000.0, np.nan, np.nan],
        }
    )
    figures = window_figures(_inputs(decisions=decisions))["models"]
    m1 = figures["m1"]
    assert m1["latency_lists"] == 5 and m1["lists"] == 6
    # Linear interpolation over the sorted 1, 2, 3, 4, 100: rank p/100 * 4.
    assert m1["latency_p50_ms"] == 3.0
    assert m1["latency_p95_ms"] == pytest.approx(4 + 0.8 * 96)  # rank 3.8
    assert m1["latency_p99_ms"] == pytest.approx(4 + 0.96 * 96)  # rank 3.96
    assert figures["m2"]["latency_lists"] == 0 and figures["m2"]["latency_p99_ms"] is None
    # Frames without the column (records from before latency was recorded) give None, never an error.
    assert window_figures(_inputs())["models"]["m1"]["latency_p50_ms"] is None


def test_a_latency_guardrail_is_accepted_and_a_bad_metric_is_located() -> None:
    section = _section("lifecycle:\n  canary:\n    guardrails:\n      - metric: latency_p99_ms\n        max: 50\n")
    assert section.canary.guardrails[0].metric == "latency_p99_ms" and section.canary.guardrails[0].max == 50
    with pytest.raises(PolicyError, match=r"p\.yaml:\d+:\d+: error: lifecycle\.canary\.guardrails\.0\.metric: .*'latency_p99_ms'.*got 'latency_p42_ms'"):
        _section("lifecycle:\n  canary:\n    guardrails:\n      - metric: latency_p42_ms\n        max: 50\n")


def test_figures_without_an_item_table_leave_provider_and_harm_out() -> None:
    m1 = window_figures(_inputs(items=None))["models"]["m1"]
    assert "provider_gap" not in m1 and "harmful_share" not in m1 and m1["coverage"] is None


def _section(text: str) -> LifecycleSection:
    return parse_pack((SHIPPED / "baseline.yaml").read_text() + text, "p.yaml").pack.lifecycle


def test_the_performance_trigger_fires_only_with_confidence() -> None:
    section = _section("lifecycle:\n  triggers:\n    - {id: perf, kind: performance_drop, min_drop: 0.5, confidence: 0.95, min_served: 100}\n")
    facts = ModelFacts("m1")

    def fired(clicks: int, served: int) -> bool:
        model = {"clicks": clicks, "served": served, "offline_hit_rate": 0.2}
        return bool(evaluate_triggers(section, {"models": {"m1": model}}, facts, NOW))

    # Bound 0.1. Fires when P(X <= clicks | n, 0.1) < 0.05 (computed here with the binomial CDF, not the test).
    n = 400
    threshold = max(c for c in range(n) if binom.cdf(c, n, 0.1) < 0.05)
    assert fired(threshold, n) and not fired(threshold + 1, n)
    assert not fired(0, 99)  # too few served items decide nothing


def test_triggers_name_their_evidence_and_skip_without_a_production_model() -> None:
    section = _section(
        "lifecycle:\n  triggers:\n"
        "    - {id: gap, kind: exposure_regression, metric: provider_gap, max: 0.2, min_decisions: 1}\n"
        "    - {id: stale, kind: staleness, max_days: 10}\n"
        "    - {id: erasures, kind: erasure_retrains, within_days: 2}\n"
    )
    figures = {"models": {"m1": {"provider_gap": 0.3, "lists": 5}}, "window_start": "s", "window_end": "e"}
    facts = ModelFacts("m1", trained_at=NOW - timedelta(days=11), erasure_retrains=[{"id": 7, "days_left": 1.5}, {"id": 8, "days_left": 9}])
    fired = {f.trigger_id: f for f in evaluate_triggers(section, figures, facts, NOW)}
    assert set(fired) == {"gap", "stale", "erasures"}
    assert fired["gap"].evidence["provider_gap"] == 0.3 and fired["gap"].identity == {"window_start": "s", "window_end": "e"}
    assert fired["erasures"].identity == {"retrain_requests": [7]}
    # With nothing in production no ticket could run (each retrains the production model): nothing fires, and the
    # due erasure retrains are named for `recgov retrain run` instead.
    idle = ModelFacts(None, erasure_retrains=[{"id": 7, "days_left": 0}, {"id": 8, "days_left": 9}])
    assert evaluate_triggers(section, figures, idle, NOW) == []
    assert unticketed_erasures(section, idle) == [7] and unticketed_erasures(section, facts) == []


BAD_LIFECYCLE = """lifecycle:
  window_hours: 0
  triggers:
    - id: drift
      kind: input_drift
    - id: drift
      kind: staleness
      max_days: 3
    - id: what
      kind: telepathy
  canary:
    guardrails:
      - metric: click_rate
"""


def test_a_bad_lifecycle_section_is_refused_with_every_problem_located() -> None:
    text = (SHIPPED / "baseline.yaml").read_text()
    offset = text.count("\n")
    with pytest.raises(PolicyError) as caught:
        parse_pack(text + BAD_LIFECYCLE, "p.yaml")
    message = str(caught.value)
    assert f"p.yaml:{offset + 2}:" in message and "window_hours" in message
    assert "telepathy" in message and "input_drift" in message  # the unknown kind, and the kinds it could be
    assert "give exactly one of 'max' or 'min'" in message


def test_a_pack_without_a_lifecycle_section_keeps_its_hash() -> None:
    loaded = parse_pack((SHIPPED / "baseline.yaml").read_text())
    assert "lifecycle" not in loaded.pack.model_dump(mode="json")
    assert content_hash(loaded.pack) == loaded.content_hash


def test_the_taste_shift_moves_every_engagement_after_it_within_its_provider_group() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    shift = start + timedelta(days=20)
    plain = generate(SyntheticSpec(n_users=60, n_items=40, n_interactions=3000, seed=2, start=start, end=start + timedelta(days=30)))
    moved = generate(SyntheticSpec(n_users=60, n_items=40, n_interactions=3000, seed=2, start=start, end=start + timedelta(days=30), taste_shift_at=shift))
    before = plain.events["timestamp"] < pd.Timestamp(shift)
    a, b = plain.events["item_id"].astype(str), moved.events["item_id"].astype(str)
    assert (a[before] == b[before]).all()
    assert (a[~before] != b[~before]).all()  # one cycle per group: no item keeps its place
    group = plain.items["provider_group"].astype(str)
    assert (group.reindex(a[~before]).to_numpy() == group.reindex(b[~before]).to_numpy()).all()
    mapping = pd.DataFrame({"a": a[~before], "b": b[~before]}).drop_duplicates()
    assert not mapping["a"].duplicated().any()  # a function: one fixed permutation
