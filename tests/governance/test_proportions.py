"""Geyik et al.'s multi-group re-rankers, cross-checked against aif360's DeterministicReranking.

aif360 0.6.1 (``aif360.algorithms.postprocessing.DeterministicReranking``) runs
the same four algorithms on one ranked list in a ``RegressionDataset``. Two
things stand between it and a direct comparison, and the tests deal with both
in the open:

* it wraps its output in a new ``RegressionDataset``, which min-max rescales
  every column of the *output* rows (so a group value can change and fail
  aif360's own validation); the tests replace that wrapper with one that
  returns the output rows as they are, and read the items from their index;
* its below-minimum branch (and Greedy's below-maximum branch) takes
  ``max(enumerate(shortlist))``, so the *position in the shortlist* is counted
  as the group. :func:`test_aif360_counts_a_shortlist_position_as_the_group`
  shows the effect (an item listed twice); the Greedy, Conservative and Relaxed
  comparisons run aif360's own source with that one index mapped back to the
  group. DetConstSort has no such branch and is compared unpatched.
"""

from __future__ import annotations

import inspect
import logging
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.rerank import (
    Candidates,
    GroupProportionsConfig,
    GroupProportionsReranker,
    Pipeline,
    config_from_params,
    minimum_counts,
)
from recommender.errors import ConfigError
from tests.governance.test_rerank import assert_valid_output, make_batch

ALGORITHMS = {"greedy": "Greedy", "conservative": "Conservative", "relaxed": "Relaxed", "constrained": "Constrained"}


@pytest.fixture(scope="module")
def aif360_reranking():
    """aif360's DeterministicReranking, its output wrapper replaced by the plain output rows, and a copy with the
    shortlist index mapped back to the group (see the module docstring)."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from aif360.algorithms.postprocessing import deterministic_reranking as module
            from aif360.datasets import RegressionDataset
    finally:
        logging.disable(logging.NOTSET)

    class Plain(pd.DataFrame):
        """The output rows (index = aif360's instance names), without the rescaling of a new RegressionDataset."""

        def __init__(self, df, **_: object) -> None:
            super().__init__(df)

    source = textwrap.dedent(inspect.getsource(module.DeterministicReranking))
    buggy = "next_group, next_item = max(enumerate(candidates_b{which}), key = lambda x: x[1][score_label])"
    fixed = "next_group, next_item = max(((g, candidates[g]) for g in below_{which}), key = lambda x: x[1][score_label])"
    for which in ("min", "max"):
        assert buggy.format(which=which) in source, "aif360's source changed: revisit this cross-check"
        source = source.replace(buggy.format(which=which), fixed.format(which=which))
    namespace = dict(vars(module))
    namespace["RegressionDataset"] = Plain
    exec(compile(source, module.__file__, "exec"), namespace)  # aif360's own code, one index mapped back
    original = dict(vars(module))
    original["RegressionDataset"] = Plain
    exec(compile(textwrap.dedent(inspect.getsource(module.DeterministicReranking)), module.__file__, "exec"), original)
    return RegressionDataset, original["DeterministicReranking"], namespace["DeterministicReranking"]


def _aif360(aif360_reranking, groups, scores, targets, k, algorithm, *, patched=True):
    regression_dataset, original, fixed = aif360_reranking
    n_groups = len(targets)
    # group codes 0..G-1 as values spread over [0, 1], so that aif360's min-max scaling leaves them unchanged
    values = np.linspace(0.0, 1.0, n_groups)
    df = pd.DataFrame({"g": values[groups], "s": scores})
    df.index = [str(i) for i in range(len(groups))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = regression_dataset(df, dep_var_name="s", protected_attribute_names=["g"], privileged_classes=[[1.0]])
        cls = fixed if patched else original
        dr = cls(unprivileged_groups=[{"g": float(v)} for v in values[:-1]], privileged_groups=[{"g": 1.0}])
        out = dr.fit_predict(ds, rec_size=k, target_prop=list(targets), rerank_type=ALGORITHMS[algorithm])
    return [int(i) for i in out.index]


def _ours(groups, scores, targets, k, algorithm):
    order = np.argsort(-scores, kind="stable")
    cands = Candidates(items=order[None, :], scores=scores[order][None, :].astype(np.float32), item_group=groups)
    step = GroupProportionsReranker(targets=dict(enumerate(targets)), algorithm=algorithm)
    return step(cands, k).items[0].tolist()


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_groups=st.integers(2, 4),
    k=st.integers(1, 12),
    algorithm=st.sampled_from(sorted(ALGORITHMS)),
)
def test_the_same_lists_as_aif360(aif360_reranking, seed, n_groups, k, algorithm):
    rng = np.random.default_rng(seed)
    per_group = k + 2  # aif360 reads every group's next item at every place: none may run out
    groups = np.repeat(np.arange(n_groups), per_group)
    rng.shuffle(groups)
    scores = rng.permutation(len(groups)).astype(np.float64) / len(groups)  # distinct scores: no tie to break
    targets = rng.dirichlet(np.ones(n_groups))
    ours = _ours(groups, scores, targets, k, algorithm)
    assert ours == _aif360(aif360_reranking, groups, scores, targets, k, algorithm)


def test_aif360_counts_a_shortlist_position_as_the_group(aif360_reranking):
    # group 0 has the best item; at place 2 only group 1 is below its minimum (floor(2 * .8) = 1), so the
    # shortlist is [1] and aif360 counts its item to group 0: group 1's pointer stays, and its item comes again
    groups = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    theirs = _aif360(aif360_reranking, groups, scores, [0.2, 0.8], 4, "greedy", patched=False)
    assert len(set(theirs)) < len(theirs), "aif360 lists an item twice"
    ours = _ours(groups, scores, [0.2, 0.8], 4, "greedy")
    assert ours == _aif360(aif360_reranking, groups, scores, [0.2, 0.8], 4, "greedy") == [0, 1, 3, 5]


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_every_prefix_keeps_each_groups_minimum_when_candidates_allow(algorithm):
    rng = np.random.default_rng(7)
    n_users, c, k = 50, 40, 10
    items = np.stack([rng.permutation(60)[:c] for _ in range(n_users)])
    group = rng.choice([0, 1, 2, 3], size=60, p=[0.7, 0.1, 0.1, 0.1])
    scores = np.sort(rng.random((n_users, c)), axis=1)[:, ::-1].copy()
    targets = {0: 0.4, 1: 0.2, 2: 0.2, 3: 0.2}
    step = GroupProportionsReranker(targets=targets, algorithm=algorithm)
    out = step(Candidates(items=items, scores=scores, item_group=group), k)
    floor_at, _ = minimum_counts(k, np.array(list(targets.values())))
    member = group[out.items][:, :, None] == np.arange(4)[None, None, :]
    enough = (group[items][:, :, None] == np.arange(4)).sum(axis=1) >= floor_at[-1]  # (n_users, G)
    feasible = enough.all(axis=1)
    prefix_ok = (np.cumsum(member, axis=1) >= floor_at[None]).all(axis=(1, 2))
    assert (prefix_ok[feasible]).all()
    assert (out.constraints_met["group_proportions"] == prefix_ok).all()
    assert feasible.mean() > 0.5


def test_an_infeasible_list_is_reported_not_hidden():
    items = np.array([[0, 1, 2, 3, 4]])
    group = np.array([0, 0, 0, 0, 1])  # one item of group 1, a target of half of 4 places
    out = GroupProportionsReranker(targets={0: 0.5, 1: 0.5})(Candidates(items=items, scores=-np.arange(5.0)[None], item_group=group), 4)
    assert out.items[0].tolist() == [0, 4, 1, 2]
    assert out.constraints_met["group_proportions"].tolist() == [False]
    assert out.summary()["constraints_met_share"] == {"group_proportions": 0.0}


def test_groups_without_a_target_share_the_rest():
    items = np.arange(8)[None, :]
    group = np.array([0, 0, 0, 0, 5, -1, 1, 1])  # 5 and -1 have no target: they share 1 - 0.5 - 0.25
    out = GroupProportionsReranker(targets={0: 0.5, 1: 0.25})(Candidates(items=items, scores=-np.arange(8.0)[None], item_group=group), 4)
    # place 2: group 0 is at its ceiling (1 of ceil(2 * .5)), so the best item below its ceiling is the rest's 4;
    # place 4: group 1 falls below its minimum (floor(4 * .25) = 1) and gets its best item, 6
    assert out.items[0].tolist() == [0, 4, 1, 6]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"targets": {0: 0.7, 1: 0.5}}, "sum to at most 1"),
        ({"targets": {0: 1.5}}, "must be in \\[0, 1\\]"),
        ({"targets": {-1: 0.5}}, "must be >= 0"),
        ({"algorithm": "optimal"}, "algorithm"),
        ({"target": {0: 1.0}}, "target"),
    ],
)
def test_bad_params_are_refused_with_the_reason(params, message):
    with pytest.raises(ConfigError, match=message):
        config_from_params("group_proportions", params)


def test_targets_from_a_yaml_pack_read_as_group_codes():
    cfg = config_from_params("group_proportions", {"targets": {"0": 0.5, "1": 0.5}, "algorithm": "relaxed"})
    assert cfg == GroupProportionsConfig(targets={0: 0.5, 1: 0.5}, algorithm="relaxed")


def test_floor_and_ceil_do_not_trip_on_rounding():
    floor_at, ceil_at = minimum_counts(10, np.array([0.3, 0.7]))
    assert floor_at[-1].tolist() == [3, 7] and ceil_at[-1].tolist() == [3, 7]


def test_attention_weighting_on_places_of_equal_worth_is_the_papers_greedy(monkeypatch):
    import governance.rerank.proportions as P

    rng = np.random.default_rng(2)
    items = np.stack([rng.permutation(40)[:30] for _ in range(20)])
    group = rng.integers(0, 3, 40)
    cands = Candidates(items=items, scores=-np.tile(np.arange(30.0), (20, 1)), item_group=group)
    targets = {0: 0.5, 1: 0.3, 2: 0.2}
    paper = GroupProportionsReranker(targets=targets)(cands, 10)
    monkeypatch.setattr(P, "_attention", lambda k: np.ones(k))  # every place worth 1: counting places
    flat = GroupProportionsReranker(targets=targets, weighting="attention")(cands, 10)
    assert (flat.items == paper.items).all()
    # the attention constraint is tested on the whole list only: what the paper's prefixes hold, it holds
    assert flat.constraints_met["group_proportions"][paper.constraints_met["group_proportions"]].all()


def test_attention_weighting_brings_exposure_shares_to_their_targets():
    rng = np.random.default_rng(5)
    n, c, k = 300, 60, 10
    items = np.stack([rng.permutation(200)[:c] for _ in range(n)])
    group = np.where(np.arange(200) < 50, 0, rng.integers(1, 4, 200))  # group 0: the model's favourite, on top
    scores = -np.arange(c, dtype=float)[None, :] + 50.0 * (group[items] == 0)
    order = np.argsort(-scores, axis=1, kind="stable")
    cands = Candidates(items=np.take_along_axis(items, order, 1), scores=np.take_along_axis(scores, order, 1), item_group=group)
    w = 1.0 / np.log2(np.arange(2, k + 2))

    def exposure_gap(out):
        g = group[out.items]
        shares = np.stack([(w[None, :] * (g == j)).sum(axis=1) / w.sum() for j in range(4)], axis=1)
        return np.abs(shares - 0.25).max(axis=1)

    places = GroupProportionsReranker(targets={j: 0.25 for j in range(4)})(cands, k)
    attention = GroupProportionsReranker(targets={j: 0.25 for j in range(4)}, weighting="attention")(cands, k)
    assert (exposure_gap(attention) <= 0.05).mean() > (exposure_gap(places) <= 0.05).mean() + 0.5
    assert attention.constraints_met["group_proportions"].mean() > 0.95


def test_attention_weighting_is_for_greedy_only():
    with pytest.raises(ConfigError, match="'greedy' only"):
        config_from_params("group_proportions", {"algorithm": "constrained", "weighting": "attention"})


def test_a_pack_targets_several_provider_groups_through_their_codes():
    import pandas as pd

    from governance.policy import PolicyError, parse_pack
    from governance.rerank import build_pipeline
    from governance.tradeoff import rerank_side_arrays
    from recommender.split import SplitConfig, split, train_test_matrices
    from recommender.synthetic import SyntheticSpec, generate

    head = "apiVersion: recgov/v1\nmetadata: {name: p, version: 0.1.0, owner: tests}\n"
    fairness = (
        "fairness:\n  provider_attribute: provider_group\n  protected_provider_group: indie_a\n"
        "  provider_group_codes: {major: 0, indie_a: 1, indie_b: 2, indie_c: 3}\n"
    )
    steps = "reranking:\n  enabled: true\n  steps:\n    - {name: group_proportions, params: {targets: {0: 0.25, 1: 0.25, 2: 0.25, 3: 0.25}}}\n"
    pack = parse_pack(head + fairness + steps, "p.yaml")
    groups = ("major", "indie_a", "indie_b", "indie_c")
    dataset = generate(SyntheticSpec(n_users=150, n_items=200, n_interactions=4000, seed=3,
                                     provider_groups={g: 0.25 for g in groups}, favoured_group="major", exposure_bias=3.0))  # fmt: skip
    train = train_test_matrices(*split(dataset.events, SplitConfig(kind="random", test_fraction=0.2))).train
    side = rerank_side_arrays(dataset, pack, train)
    names = dataset.items["provider_group"].reindex(pd.Index(train.item_ids.astype(str))).to_numpy(dtype=object)
    assert side["item_group"].tolist() == [groups.index(n) for n in names]
    rng = np.random.default_rng(0)
    items = np.stack([rng.permutation(train.n_items)[:40] for _ in range(30)])
    out = build_pipeline([{"name": s.name, "params": s.params.model_dump()} for s in pack.pack.reranking.steps])(
        Candidates(items=items, scores=-np.tile(np.arange(40.0), (30, 1)), **side), 8
    )
    counts = np.stack([(side["item_group"][out.items] == j).sum(axis=1) for j in range(4)], axis=1)
    assert (counts == 2).all()  # a quarter of 8 places each
    default = parse_pack(head + fairness.replace("  provider_group_codes: {major: 0, indie_a: 1, indie_b: 2, indie_c: 3}\n", ""), "p.yaml")
    assert set(rerank_side_arrays(dataset, default, train)["item_group"].tolist()) <= {0, 1}  # unchanged default
    with pytest.raises(PolicyError, match="must keep code 1"):
        parse_pack(head + fairness.replace("indie_a: 1, indie_b: 2", "indie_a: 2, indie_b: 1"), "p.yaml")
    with pytest.raises(PolicyError, match="distinct"):
        parse_pack(head + fairness.replace("indie_c: 3", "indie_c: 2"), "p.yaml")


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_users=st.integers(1, 5),
    c=st.integers(1, 16),
    k=st.integers(1, 20),
    variant=st.sampled_from([(a, "positions") for a in ALGORITHMS] + [("greedy", "attention")]),
)
def test_every_variant_passes_the_contract_on_random_batches(seed, n_users, c, k, variant):
    cands = make_batch(seed, n_users=n_users, c=c, sorted_scores=bool(seed % 2))
    algorithm, weighting = variant
    step = GroupProportionsReranker(targets={0: 0.3, 1: 0.3, 2: 0.2}, algorithm=algorithm, weighting=weighting)
    out = step(cands, k)
    assert_valid_output(out, cands, k)
    chunked = Pipeline([step], chunk_size=2)(cands, k)
    assert (chunked.items == out.items).all()
