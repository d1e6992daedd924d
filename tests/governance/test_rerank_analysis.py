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


def test_a_group_below_one_place_among_others_is_named():
    found = warnings_of("{name: group_proportions, params: {targets: {0: 0.5, 1: 0.45, 2: 0.05}}}")
    assert len(found) == 1 and "group(s) [2]" in found[0].message
