"""A pack sets the thresholds of bot detection on its `validation_findings` rule: the defaults when it
says nothing, each threshold it names checked as `recgov data validate --bots` checks it, located."""

from __future__ import annotations

from pathlib import Path

import pytest

from governance.checks.data import ValidationFindings
from governance.policy import PolicyError, parse_pack
from recommender.bots import BotRules

BASELINE = (Path(__file__).resolve().parents[2] / "policies" / "baseline.yaml").read_text()
PARAMS = "      params:\n        default_max_share: 0.05\n"


def _with_bots(lines: str) -> str:
    assert PARAMS in BASELINE
    return BASELINE.replace(PARAMS, PARAMS + "        bots:\n" + lines, 1)


def _rule_params(text: str) -> ValidationFindings.Config:
    loaded = parse_pack(text, "pack.yaml")
    (rule,) = [rule for _, rule in loaded.pack.rules() if rule.check == ValidationFindings.name]
    return rule.params


def test_without_bots_the_rule_keeps_the_default_thresholds() -> None:
    assert _rule_params(BASELINE).bots == BotRules()
    assert ValidationFindings.Config().bots == BotRules()


def test_the_thresholds_a_pack_names_replace_the_defaults_and_only_those() -> None:
    bots = _rule_params(_with_bots("          min_events: 50\n          catalog_share: 0.8\n")).bots
    assert (bots.min_events, bots.catalog_share) == (50, 0.8)
    assert bots.model_copy(update={"min_events": 20, "catalog_share": 0.5}) == BotRules()


@pytest.mark.parametrize(
    ("lines", "wrong"),
    [("          min_event: 50\n", "min_event"), ("          min_events: 1\n", "min_events"), ("          regular_cv: -1\n", "regular_cv")],
)
def test_an_unknown_or_out_of_range_threshold_is_refused_where_it_is(lines: str, wrong: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_pack(_with_bots(lines), "pack.yaml")
    message = str(caught.value)
    assert "bots" in message and wrong in message and "pack.yaml" in message


def test_the_audit_validates_with_the_packs_bot_thresholds() -> None:
    from governance.collect import bot_rules

    pack = parse_pack(BASELINE.replace(PARAMS, PARAMS + "        bots:\n          min_events: 50\n"), "p.yaml").pack
    assert bot_rules(pack).min_events == 50
    assert bot_rules(parse_pack(BASELINE, "p.yaml").pack) == BotRules()
