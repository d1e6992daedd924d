"""Bot detection: people in bursts are people; each planted bot style is caught, for its reason."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from recommender.bots import BOT_REASONS, BotRules, parse_bot_rules
from recommender.errors import ConfigError
from recommender.synthetic import SyntheticSpec, bot_labels, generate
from recommender.validate import validate_events

T0 = datetime(2024, 3, 1, tzinfo=UTC)
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _raters(n_users: int = 60, visits: int = 4, per_visit: int = 30) -> pd.DataFrame:
    """MovieLens-like people: each visit submits a page of ratings within one second, days apart."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(n_users):
        for v in range(visits):
            moment = T0 + timedelta(days=3 * v + u % 3, hours=int(rng.integers(0, 20)))
            items = rng.choice(400, size=per_visit, replace=False)
            rows += [(f"user{u}", f"m{i}", "rating", 4.0, moment) for i in items]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "value", "timestamp"])


def test_people_who_submit_a_page_of_ratings_in_one_second_are_not_bots() -> None:
    # Regression: the rule that counted same-second ratings one by one called 495 of
    # MovieLens-100K's 943 users bots (54% of the rows).
    report = validate_events(_raters(), now=NOW)
    assert report.ok, report.to_dict()["findings"]


@pytest.mark.parametrize(
    "style, reason",
    [("scraper", "fast"), ("crawler", "catalog_crawl"), ("click_farm", "repetition"), ("stealthy", "tireless")],
)
def test_every_planted_style_is_caught_for_its_reason(style: str, reason: str) -> None:
    spec = SyntheticSpec(
        n_users=300, n_items=600, n_interactions=12_000, seed=3, bot_users=3, bot_events_per_user=400, bot_styles=[style]
    )
    data = generate(spec)
    report = validate_events(data, now=NOW)
    finding = report.finding("bot_users")
    assert finding is not None and finding.details["n_users"] == 3
    assert finding.details[reason] == 3
    flagged = set(data.events.loc[report.row_flags["bot_users"], "user_id"].astype(str))
    assert flagged == set(bot_labels(spec))
    assert all(reason in example["reasons"] for example in finding.examples)


def test_bot_labels_give_each_bot_its_style_in_turn() -> None:
    spec = SyntheticSpec(n_users=10, n_items=50, n_interactions=100, bot_users=5, bot_styles=["crawler", "stealthy"])
    assert bot_labels(spec) == {
        "u000010": "crawler", "u000011": "stealthy", "u000012": "crawler", "u000013": "stealthy", "u000014": "crawler",
    }  # fmt: skip
    assert generate(spec).n_events == 100 + 5 * 2000


def test_machine_regular_gaps_are_a_bot_and_the_threshold_is_settable() -> None:
    people = _raters()
    regular = pd.DataFrame(
        {
            "user_id": "ticker",
            "item_id": [f"m{k % 300}" for k in range(80)],
            "event_type": "rating",
            "value": 3.0,
            "timestamp": [T0 + timedelta(seconds=90 * k) for k in range(80)],
        }
    )
    ev = pd.concat([people, regular], ignore_index=True)
    finding = validate_events(ev, now=NOW).finding("bot_users")
    assert finding.details["n_users"] == 1 and finding.details["regular"] == 1
    assert validate_events(ev, now=NOW, bot_rules={"regular_cv": 0}).ok
    report = validate_events(ev, now=NOW, bot_rules=BotRules(regular_min_events=100))
    assert report.ok and report.parameters["bots"]["regular_min_events"] == 100


def test_shorthand_parameters_override_the_rules() -> None:
    report = validate_events(_raters(), now=NOW, bot_rules={"min_events": 50}, bot_min_events=30)
    assert report.parameters["bots"]["min_events"] == 30
    assert set(report.parameters["bots"]) == set(BotRules.model_fields)


@pytest.mark.parametrize(
    "rules, message",
    [
        ({"regular_cv": -1}, "bot rules: regular_cv: Input should be greater than or equal to 0"),
        ({"catalog_share": 2}, "bot rules: catalog_share: Input should be less than or equal to 1"),
        ({"burst": 3}, "bot rules: burst: Extra inputs are not permitted"),
    ],
)
def test_bad_rules_are_a_config_error_naming_the_threshold(rules: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_bot_rules(rules)
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_events(_raters(n_users=2), bot_rules=rules)


def test_every_reason_is_counted_even_when_none_fires() -> None:
    ev = _raters()
    ev = pd.concat(
        [ev, pd.DataFrame({"user_id": "bot", "item_id": "m1", "timestamp": [T0 + timedelta(seconds=k / 10) for k in range(40)]})],
        ignore_index=True,
    )
    details = validate_events(ev, now=NOW).finding("bot_users").details
    assert set(details) == {"n_users", *BOT_REASONS}


def test_bot_styles_can_be_named_in_a_synthetic_data_argument() -> None:
    from recommender.loaders import load_data

    data = load_data("synthetic:n_users=10,n_items=50,n_interactions=100,bot_users=2,bot_events_per_user=30,bot_styles=crawler;stealthy")
    assert data.n_events == 160
    assert '"bot_styles":["crawler","stealthy"]' in data.source
