"""``exposure_targets``: every group's attention share within a tolerance of its target, checked against brute force.

The step's lists are compared with an independent search over every ordered
choice of candidates on small instances (shares computed here with
``math.log2``, not the step's helpers); the pattern table with every sequence of
groups; the greedy completion test of long lists with the exact greedy; and the
pack side (located errors for bad params, warnings for windows that can never
be met) through ``parse_pack``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from governance.policy import PolicyError, parse_pack
from governance.rerank import Candidates, ExposureTargetsReranker, Pipeline, config_from_params, exposure_patterns
from governance.rerank import exposure_targets as et
from recommender.errors import ConfigError
from tests.governance.test_rerank import assert_valid_output, make_batch


def attention(rank: int) -> float:
    return 1.0 / math.log2(rank + 1)


def shares_of(groups: list[int], n_groups: int) -> list[float]:
    """Each group's share of the attention of a list whose places hold ``groups`` (independent of the step)."""
    held = [0.0] * n_groups
    for place, g in enumerate(groups, start=1):
        held[g] += attention(place)
    total = sum(attention(r) for r in range(1, len(groups) + 1))
    return [h / total for h in held]


def within(groups: list[int], targets: list[float], tol: float) -> bool:
    return all(abs(s - t) <= tol + 1e-9 for s, t in zip(shares_of(groups, len(targets)), targets))


@pytest.mark.parametrize(
    "k, targets, tol",
    [(4, [0.5, 0.5], 0.1), (6, [0.4, 0.3, 0.3], 0.05), (7, [0.25, 0.25, 0.25, 0.25], 0.1), (5, [0.7, 0.3], 0.0)],
)
def test_the_pattern_table_is_every_sequence_of_groups_within_the_window(k, targets, tol):
    brute = [list(p) for p in itertools.product(range(len(targets)), repeat=k) if within(list(p), targets, tol)]
    assert exposure_patterns(k, targets, tol).tolist() == brute


def brute_force(groups: list[int], targets: list[float], tol: float, k: int) -> tuple[float, list[list[int]]]:
    """The best objective over every ordered choice of ``k`` candidates within the window, and the lists reaching it."""
    best, lists = -1.0, []
    for perm in itertools.permutations(range(len(groups)), k):
        if not within([groups[j] for j in perm], targets, tol):
            continue
        value = sum(attention(i + 1) * attention(j + 1) for i, j in enumerate(perm))
        if value > best + 1e-12:
            best, lists = value, [list(perm)]
        elif value > best - 1e-12:
            lists.append(list(perm))
    return best, lists


@pytest.mark.parametrize("seed", range(25))
def test_optimal_is_the_best_list_within_the_window_and_greedy_the_first(seed):
    rng = np.random.default_rng(seed)
    c, k = 7, int(rng.integers(2, 5))
    n_groups = int(rng.integers(2, 4))
    group = rng.integers(0, n_groups, c)
    targets = list(rng.dirichlet(np.ones(n_groups)).round(2))
    targets[-1] = round(1.0 - sum(targets[:-1]), 2)
    tol = float(rng.choice([0.05, 0.1, 0.2]))
    cands = Candidates(items=np.arange(c)[None, :], scores=-np.arange(c, dtype=float)[None, :], item_group=group)
    best, lists = brute_force(group.tolist(), targets, tol, k)
    params = {"targets": dict(enumerate(targets[:-1])), "tolerance": tol}  # the last group is "the rest"
    optimal = ExposureTargetsReranker(**params)(cands, k)
    greedy = ExposureTargetsReranker(**params, algorithm="greedy")(cands, k)
    met = optimal.constraints_met["exposure_targets"][0]
    if not lists:  # the window cannot be reached with these candidates: reported, still a valid list
        assert not met and not greedy.constraints_met["exposure_targets"][0]
        assert_valid_output(optimal, cands, k)
        return
    assert met and optimal.items[0].tolist() in lists
    # greedy: the lexicographically first feasible list (every ordered choice is tried in that order)
    first = next(list(p) for p in itertools.permutations(range(c), k) if within([group[j] for j in p], targets, tol))
    if all((group == g).sum() >= k for g in range(n_groups)):  # enough of every group: the prefix test is exact
        assert greedy.items[0].tolist() == first
    assert greedy.constraints_met["exposure_targets"][0] == within(group[greedy.items[0]].tolist(), targets, tol)


@pytest.mark.parametrize("seed", range(6))
def test_the_completion_greedy_of_long_lists_is_sound_and_mostly_the_exact_greedy(seed):
    """The long-list greedy's test is sufficient, not necessary: its lists always meet the window, the exact
    greedy's list is never later in input order, and at k = 10 the two mostly agree."""
    cands = make_batch(seed, n_users=200, c=40, n_items=120, short=False)
    step = ExposureTargetsReranker(targets={0: 0.4, 1: 0.3}, tolerance=0.05, algorithm="greedy")
    dense, shares, n_targeted = step._groups(cands)
    cand_group = dense[cands.items]
    exact, ok_exact = et._greedy(cand_group, cands.valid, step.patterns(10), n_targeted + 1)
    long, ok_long = et._greedy_completion(cand_group, cands.valid, shares, 0.05, 10)
    assert not (ok_long & ~ok_exact).any()  # what the sufficient test finds, the exact one finds
    for row, good in zip(long[ok_long], cand_group[ok_long]):
        assert within(np.take(good, row).tolist(), shares.tolist(), 0.05)
    for a, b in zip(exact[ok_long], long[ok_long]):
        assert a.tolist() <= b.tolist()  # the exact greedy is the lexicographically first feasible list
    assert (exact[ok_long] == long[ok_long]).all(axis=1).mean() > 0.75
    assert ok_long.mean() > 0.9


def test_lists_too_long_for_the_exact_search_still_meet_the_window():
    rng = np.random.default_rng(4)
    n, c = 40, 120
    group = rng.integers(0, 4, 500)
    items = np.stack([rng.permutation(500)[:c] for _ in range(n)])
    cands = Candidates(items=items, scores=-np.tile(np.arange(c, dtype=float), (n, 1)), item_group=group)
    step = ExposureTargetsReranker(targets={0: 0.25, 1: 0.25, 2: 0.25, 3: 0.25}, tolerance=0.05)
    with pytest.raises(ConfigError, match="more than"):
        step.patterns(20)
    out = step(cands, 20)
    assert_valid_output(out, cands, 20)
    got = np.array([shares_of(group[row].tolist(), 4) for row in out.items])
    assert (np.abs(got - 0.25) <= 0.05 + 1e-9).all()
    assert out.constraints_met["exposure_targets"].all()


def test_the_reported_constraint_is_the_window_computed_independently():
    cands = make_batch(3, n_users=200, c=12)
    step = ExposureTargetsReranker(targets={0: 0.5, 1: 0.3}, tolerance=0.08)
    out = step(cands, 6)
    for row, met in zip(out.items, out.constraints_met["exposure_targets"]):
        filled = row[row >= 0]
        if not len(filled):
            assert met
            continue
        codes = cands.item_group[filled]
        dense = [0 if g == 0 else 1 if g == 1 else 2 for g in codes]  # groups without a target: the rest (0.2)
        assert met == within(dense, [0.5, 0.3, 0.2], 0.08)


def test_a_group_without_candidates_gets_a_best_effort_reported_as_not_met():
    group = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    cands = Candidates(items=np.arange(8)[None, :], scores=-np.arange(8.0)[None, :], item_group=group)
    step = ExposureTargetsReranker(targets={0: 0.34, 1: 0.33, 2: 0.33}, tolerance=0.05)
    out = step(cands, 4)
    assert_valid_output(out, cands, 4)
    assert not out.constraints_met["exposure_targets"][0]
    assert set(group[out.items[0]].tolist()) == {0, 1}  # group 1 still placed by the fallback


def test_a_list_already_in_the_window_is_left_as_it_is():
    group = np.array([0, 1, 1, 0, 0, 1])  # the model's top 4: shares 0.56 / 0.44, within 0.1 of a half
    cands = Candidates(items=np.arange(6)[None, :], scores=-np.arange(6.0)[None, :], item_group=group)
    assert within(group[:4].tolist(), [0.5, 0.5], 0.1) and not within(group[:4].tolist(), [0.5, 0.5], 0.05)
    out = ExposureTargetsReranker(targets={0: 0.5, 1: 0.5}, tolerance=0.1)(cands, 4)
    assert out.items[0].tolist() == [0, 1, 2, 3] and (out.moves == 0).all()
    tighter = ExposureTargetsReranker(targets={0: 0.5, 1: 0.5}, tolerance=0.05)(cands, 4)
    assert not tighter.constraints_met["exposure_targets"].any()  # no split of 4 places' attention is within 5 points
    assert not et.window_reachable(4, [0.5, 0.5], 0.05)
    split_groups = np.array([0, 0, 0, 1, 1, 1])
    wider = Candidates(items=np.arange(6)[None, :], scores=-np.arange(6.0)[None, :], item_group=split_groups)
    moved = ExposureTargetsReranker(targets={0: 0.5, 1: 0.5}, tolerance=0.1)(wider, 4)
    # by hand: windows [0.4, 0.6] x 2.562; [0, 3, 1, 4] gives group 0 1.5 and group 1 1.062, agreement
    # 1 + 0.631 * 0.431 + 0.5 * 0.631 + 0.431 * 0.387 = 1.754, above [0, 3, 4, 1] (1.737) and every other split
    assert moved.items[0].tolist() == [0, 3, 1, 4] and moved.constraints_met["exposure_targets"].all()


def test_chunking_and_the_pipeline_do_not_change_the_lists():
    cands = make_batch(9, n_users=13, c=15)
    step = ExposureTargetsReranker(targets={0: 0.4, 1: 0.3, 2: 0.2}, tolerance=0.1)
    assert (Pipeline([step], chunk_size=3)(cands, 7).items == step(cands, 7).items).all()


@pytest.mark.parametrize(
    "params, message",
    [
        ({"targets": {0: 0.7, 1: 0.5}}, "sum to at most 1"),
        ({"targets": {0: 1.5}}, "must be in \\[0, 1\\]"),
        ({"targets": {-1: 0.5}}, "must be >= 0"),
        ({"tolerance": -0.1}, "tolerance"),
        ({"tolerance": 2}, "tolerance"),
        ({"algorithm": "constrained"}, "algorithm"),
        ({"window": 0.1}, "window"),
    ],
)
def test_bad_params_are_refused_with_the_reason(params, message):
    with pytest.raises(ConfigError, match=message):
        config_from_params("exposure_targets", params)


HEAD = "apiVersion: recgov/v1\nmetadata: {name: p, version: 0.1.0, owner: tests}\n"
FAIRNESS = (
    "fairness:\n  provider_attribute: provider_group\n  protected_provider_group: indie\n"
    "  provider_group_codes: {major: 0, indie: 1, regional: 2}\n"
)


def pack_with(params: str, quality: str = "") -> str:
    steps = "reranking:\n  enabled: true\n  steps:\n    - {name: exposure_targets, params: " + params + "}\n"
    return HEAD + FAIRNESS + steps + quality


@pytest.mark.parametrize(
    "params, path",
    [
        ("{tolerance: -0.1}", "reranking.steps.0.params.tolerance"),
        ("{targets: {0: 0.8, 1: 0.8}}", "reranking.steps.0.params.targets"),
        ("{algorithm: best}", "reranking.steps.0.params.algorithm"),
    ],
)
def test_bad_params_in_a_pack_are_located_errors(params, path):
    with pytest.raises(PolicyError) as info:
        parse_pack(pack_with(params), "p.yaml")
    issue = info.value.issues[0]
    assert issue.path.startswith(path) and issue.line == 10 and issue.severity == "error"


def test_a_window_no_list_of_the_packs_length_can_reach_is_a_located_warning():
    # equal quarters at 0 tolerance: the top place alone holds 22% of 10 places' attention
    loaded = parse_pack(pack_with("{targets: {0: 0.25, 1: 0.25, 2: 0.25, 3: 0.25}, tolerance: 0}"), "p.yaml")
    # code 3 is no provider group of this pack's codes map (0-2): warned about on its own
    found = [w for w in loaded.warnings if w.path.startswith("reranking.")]
    assert [w.path for w in found if "names no provider group" in w.message] == ["reranking.steps.0.params.targets.3"]
    found = [w for w in found if "names no provider group" not in w.message]
    assert len(found) == 1 and found[0].path == "reranking.steps.0.params.tolerance" and found[0].line == 10
    assert "can never be met on lists of 10" in found[0].message
    ok = parse_pack(pack_with("{targets: {0: 0.25, 1: 0.25, 2: 0.25, 3: 0.25}, tolerance: 0.05}"), "p.yaml")
    assert not [w for w in ok.warnings if w.path.startswith("reranking.") and "names no provider group" not in w.message]
    # the same window at another list length follows quality.k
    assert not et.window_reachable(10, [0.25] * 4, 0.0)
    assert et.window_reachable(10, [0.25] * 4, 0.05)


def test_a_group_with_fewer_items_than_its_floor_needs_is_a_warning_with_the_catalog():
    text = pack_with("{targets: {0: 0.7, 1: 0.2, 2: 0.1}, tolerance: 0.05}")
    items = pd.DataFrame({"provider_group": ["major"] * 5 + ["indie"] * 30 + ["regional"] * 30})
    found = [w for w in parse_pack(text, "p.yaml", item_table=items).warnings if w.path.startswith("reranking.")]
    assert len(found) == 1 and found[0].path == "reranking.steps.0.params.targets"
    assert "group 0 has 5 item(s), needs at least 6" in found[0].message  # 0.65 of 10 places' attention: places 1-6
    enough = items.assign(provider_group=["major"] * 6 + ["indie"] * 29 + ["regional"] * 30)
    assert not [w for w in parse_pack(text, "p.yaml", item_table=enough).warnings if w.path.startswith("reranking.")]
    assert et.minimum_items(10, [0.7, 0.2, 0.1, 0.0], 0.05)[0] == 6


def test_a_pack_without_the_step_keeps_its_hash():
    base = HEAD + FAIRNESS
    assert parse_pack(base, "p.yaml").content_hash == parse_pack(base, "q.yaml").content_hash


def test_the_catalog_check_counts_items_per_group_as_the_rerankers_code_them():
    """Bug pinned: the check counted 'major ' items apart from 'major' (as no group of the pack), while the
    re-rankers (provider_codes) code them as major: it warned of a floor the catalog meets."""
    from governance.rerank.groups import provider_codes

    text = pack_with("{targets: {0: 0.7, 1: 0.2, 2: 0.1}, tolerance: 0.05}")
    labels = ["major"] * 4 + ["major ", " major"] + ["indie"] * 29 + ["regional"] * 30
    items = pd.DataFrame({"provider_group": labels})
    codes = provider_codes(items["provider_group"].astype("string"), "indie", {"major": 0, "indie": 1, "regional": 2})
    assert (codes == 0).sum() == et.minimum_items(10, [0.7, 0.2, 0.1, 0.0], 0.05)[0] == 6
    assert not [w for w in parse_pack(text, "p.yaml", item_table=items).warnings if w.path.startswith("reranking.")]
