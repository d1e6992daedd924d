"""Static analysis of re-ranking steps: a step that can never act, or whose constraint can never bind, is a located warning."""

from __future__ import annotations

import pytest

from governance.policy import parse_pack
from governance.rerank import mtable

HEAD = "apiVersion: recgov/v1\nmetadata: {name: p, version: 0.1.0, owner: tests}\nreranking:\n  enabled: true\n  steps:\n"


def warnings_of(step: str, quality: str = "") -> list:
    loaded = parse_pack(HEAD + f"    - {step}\n" + quality, "p.yaml")
    return [w for w in loaded.warnings if w.path.startswith("reranking.")]


@pytest.mark.parametrize(
    "step, path, words",
    [
        ("{name: fair_star, params: {p: 0.1, alpha: 0.1}}", "reranking.steps.0.params.p", "minimum-protected table is all zeros"),
        ("{name: exposure_cap, params: {max_share: 1.0}}", "reranking.steps.0.params.max_share", "caps no group"),
        ("{name: group_proportions, params: {targets: {0: 0.05, 1: 0.05}}}", "reranking.steps.0.params.targets", "guarantees no group a place"),
        ("{name: group_proportions, params: {targets: {}}}", "reranking.steps.0.params.targets", "no group has a positive target"),
        ("{name: amortised_exposure, params: {ndcg_budget: 0}}", "reranking.steps.0.params.ndcg_budget", "allows no change"),
        ("{name: amortised_exposure, params: {weight: 0}}", "reranking.steps.0.params.weight", "no say"),
        ("{name: mmr, params: {tradeoff: 0}}", "reranking.steps.0.params.tradeoff", "keeps the model's order"),
        ("{name: exploration, params: {epsilon: 0}}", "reranking.steps.0.params.epsilon", "explores no place"),
    ],
)
def test_a_step_that_cannot_act_is_a_located_warning(step, path, words):
    found = warnings_of(step)
    assert len(found) == 1, found
    assert found[0].path == path and found[0].severity == "warning" and words in found[0].message
    assert found[0].line == 6  # the step's own line in the pack


def test_steps_that_can_act_are_not_warned_about():
    for step in (
        "{name: fair_star, params: {p: 0.5, alpha: 0.1}}",
        "{name: exposure_cap, params: {max_share: 0.5}}",
        "{name: group_proportions, params: {targets: {0: 0.25, 1: 0.25}}}",
        "{name: amortised_exposure, params: {}}",
        "{name: mmr, params: {tradeoff: 0.3}}",
        "{name: exploration, params: {method: plackett_luce, epsilon: 0}}",  # epsilon does not drive Plackett-Luce
    ):
        assert warnings_of(step) == [], step


def test_fair_star_is_judged_at_the_packs_list_length():
    # p 0.1, alpha 0.1 unadjusted: zeros up to some length, then a minimum: the warning follows quality.k
    table = mtable(200, 0.1, 0.1)
    first = int(table.nonzero()[0][0]) + 1  # the first list length that owes a protected item a place
    step = "{name: fair_star, params: {p: 0.1, alpha: 0.1, adjust_alpha: false}}"
    assert warnings_of(step, f"quality: {{k: {first - 1}}}\n")
    assert not warnings_of(step, f"quality: {{k: {first}}}\n")


THREE_GROUPS = "fairness: {provider_group_codes: {major: 0, independent: 1, regional: 2}}\n"


def test_a_group_below_one_place_among_others_is_named():
    found = warnings_of("{name: group_proportions, params: {targets: {0: 0.5, 1: 0.45, 2: 0.05}}}", THREE_GROUPS)
    assert len(found) == 1 and "group(s) [2]" in found[0].message


@pytest.mark.parametrize("name", ["group_proportions", "amortised_exposure", "exposure_targets"])
def test_a_target_code_no_provider_group_carries_is_a_located_warning(name):
    # the default codes are 0 (others) and 1 (the protected group): code 5 is never produced, its target applies to nothing
    found = warnings_of(f"{{name: {name}, params: {{targets: {{0: 0.4, 5: 0.4}}}}}}")
    named = [w for w in found if "names no provider group" in w.message]
    assert len(named) == 1, found
    assert named[0].path == "reranking.steps.0.params.targets.5" and named[0].severity == "warning"
    assert named[0].line == 6 and "target code 5" in named[0].message and "0 = others, 1 = independent" in named[0].message


@pytest.mark.parametrize("name", ["group_proportions", "amortised_exposure", "exposure_targets"])
def test_target_codes_follow_the_packs_codes_map(name):
    step = f"{{name: {name}, params: {{targets: {{0: 0.3, 1: 0.3, 2: 0.3}}}}}}"
    assert not [w for w in warnings_of(step, THREE_GROUPS) if "names no provider group" in w.message]
    # without the map code 2 is never produced; with a map that dropped code 0, code 0 is the orphan
    assert [w.path for w in warnings_of(step) if "names no provider group" in w.message] == ["reranking.steps.0.params.targets.2"]
    renamed = "fairness: {provider_group_codes: {independent: 1, regional: 2}}\n"
    assert [w.path for w in warnings_of(step, renamed) if "names no provider group" in w.message] == ["reranking.steps.0.params.targets.0"]


def test_policy_validate_shows_the_unknown_code_warning(tmp_path):
    from typer.testing import CliRunner

    from governance.cli import app

    pack = tmp_path / "p.yaml"
    pack.write_text(HEAD + "    - {name: group_proportions, params: {targets: {5: 0.5}}}\n")
    out = CliRunner().invoke(app, ["policy", "validate", str(pack)])
    assert out.exit_code == 0, out.output
    assert f"{pack}:6:" in out.output and "target code 5" in out.output and "names no provider group" in out.output
