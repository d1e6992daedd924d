"""Fairness metrics of ranked lists: hand-worked tiny cases for every metric, and
cross-checks of the group figures against a plain pandas groupby and fairlearn, and
of disparate impact and parity against a hand computation and aif360."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from fairlearn.metrics import MetricFrame

from recommender import ConfigError, DataError
from recommender import fairness as F
from recommender import metrics as M

L2 = math.log2
W2 = 1 / L2(3)  # attention at rank 2 under the log model


def csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    """A 0/1 matrix with the listed columns set in each row."""
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


def gini_by_definition(x: np.ndarray) -> float:
    """Mean absolute difference over twice the mean (independent of recommender.metrics)."""
    x = np.asarray(x, dtype=float)
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean()))


# -- attention and labels ----------------------------------------------------------------------
def test_attention_models():
    np.testing.assert_allclose(F.attention_weights(3), [1.0, W2, 0.5])
    np.testing.assert_allclose(F.attention_weights(3, "geometric", 0.5), [1.0, 0.5, 0.25])
    np.testing.assert_allclose(F.attention_weights(3, "uniform"), [1.0, 1.0, 1.0])
    assert [F.attention_key("log"), F.attention_key("geometric", 0.9), F.attention_key("uniform")] == [
        "log",
        "geometric(0.9)",
        "uniform",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"attention": "exp"},
            "The 'attention' parameter of attention_weights must be one of log, geometric, uniform. Got 'exp' instead.",
        ),
        (
            {"attention": "geometric", "patience": 1.0},
            "The 'patience' parameter of attention_weights must be a float in the range (0, 1). Got 1.0 instead.",
        ),
    ],
)
def test_attention_errors(kwargs, message):
    with pytest.raises(ConfigError) as info:
        F.attention_weights(3, **kwargs)
    assert str(info.value) == message


def test_group_labels_sorts_and_names_missing():
    codes, names = F.group_labels(["M", "F", None, "F", np.nan])
    assert names == ("F", "M", "missing")
    assert codes.tolist() == [1, 0, 2, 0, 2]


# -- the bootstrap ------------------------------------------------------------------------------
def test_bootstrap_resamples_within_groups():
    """Constant groups: every resample of a group is that group's constant (no mixing of groups)."""
    values = np.array([1.0, 1.0, 1.0, 5.0, 5.0])
    draws = F.bootstrap_means(values, np.array([0, 0, 0, 1, 1]), 3, n_boot=200)
    assert draws.shape == (200, 3, 1)
    assert np.all(draws[:, 0, 0] == 1.0) and np.all(draws[:, 1, 0] == 5.0)
    assert np.all(np.isnan(draws[:, 2, 0]))  # an empty group


def test_bootstrap_leaves_missing_values_out_and_rows_coded_minus_one():
    values = np.array([[2.0, np.nan], [2.0, 4.0], [100.0, 100.0]])
    draws = F.bootstrap_means(values, np.array([0, 0, -1]), 1, n_boot=100)[:, 0, :]
    assert np.all(draws[:, 0] == 2.0)
    # one defined value (4.0) in the second column: its resamples would all be 4.0, a zero-width interval
    assert np.all(np.isnan(draws[:, 1]))
    draws = F.bootstrap_means(values[:, 1:], np.array([-1, 0, 0]), 1, n_boot=100)[:, 0, 0]
    assert set(draws.tolist()) <= {4.0, 52.0, 100.0} and len(set(draws.tolist())) > 1  # two values: resampled


def test_bootstrap_is_seeded_and_matches_normal_theory():
    rng = np.random.default_rng(1)
    values = rng.exponential(size=4000)
    a = F.bootstrap_means(values, n_boot=1000, random_state=7)[:, 0, 0]
    b = F.bootstrap_means(values, n_boot=1000, random_state=7)[:, 0, 0]
    np.testing.assert_array_equal(a, b)
    assert abs(a.mean() - values.mean()) < 0.01
    se = values.std() / np.sqrt(len(values))
    assert 0.9 < a.std() / se < 1.1
    low, high = F.percentile_interval(a[:, None])
    assert low[0] == pytest.approx(values.mean() - 1.96 * se, abs=0.4 * se)
    assert high[0] == pytest.approx(values.mean() + 1.96 * se, abs=0.4 * se)


def test_bootstrap_batch_holds_the_resamples_drawn_not_the_whole_cell_budget(monkeypatch):
    """A group of 10 users and 100 resamples filled a batch of 2**22 ones (32 MB), 24 times in a 1M-event gate."""
    from recommender.fairness import _intervals

    sizes: list[int] = []
    real_ones = np.ones

    def ones(shape, *args, **kwargs):
        sizes.append(int(np.prod(shape)))
        return real_ones(shape, *args, **kwargs)

    values = np.arange(10, dtype=np.float64)
    with monkeypatch.context() as patch:
        patch.setattr(_intervals.np, "ones", ones)
        draws = F.bootstrap_means(values, n_boot=100, random_state=3)[:, 0, 0]
    assert max(sizes) <= 100 * 10
    # the same resamples as before: one batch of 100 draws of 10 rows, from the same stream
    picks = np.random.default_rng(3).integers(0, 10, size=100 * 10, dtype=np.int32).reshape(100, 10)
    np.testing.assert_allclose(draws, values[picks].mean(axis=1))


def test_bootstrap_errors():
    with pytest.raises(ConfigError) as info:
        F.bootstrap_means(np.ones(3), n_boot=0)
    assert (
        str(info.value)
        == "The 'n_boot' parameter of bootstrap_means must be an int in the range [1, inf). Got 0 instead."
    )
    with pytest.raises(DataError) as info:
        F.bootstrap_means(np.ones(3), np.zeros(2))
    assert str(info.value) == "bootstrap_means: 'codes' has 2 entries but 3 were expected (one per row)."


# -- consumer side -------------------------------------------------------------------------------
def test_compare_groups_hand_example():
    #   a: NDCG 1.0, 0.0, 0.5 -> 0.5      b: 0.2, 0.4 -> 0.3
    #   difference 0.5 - 0.3 = 0.2; ratio 0.3 / 0.5 = 0.6; overall 2.1 / 5 = 0.42
    out = F.compare_groups({"ndcg": np.array([1.0, 0.0, 0.5, 0.2, 0.4])}, list("aaabb"), n_boot=200)
    assert list(out) == ["ndcg"]
    g = out["ndcg"]
    assert g.by_group == pytest.approx({"a": 0.5, "b": 0.3})
    assert g.n_users == {"a": 3, "b": 2}
    assert (g.overall, g.difference, g.ratio) == pytest.approx((0.42, 0.2, 0.6))
    (pair,) = g.pairs
    assert (pair.higher, pair.lower) == ("a", "b")
    assert (pair.difference, pair.ratio) == pytest.approx((0.2, 0.6))
    assert g.by_group_ci["b"][0] >= 0.2 and g.by_group_ci["b"][1] <= 0.4  # a mean of values in [0.2, 0.4]
    assert pair.difference_ci[0] <= 0.2 <= pair.difference_ci[1]


def test_compare_groups_cross_checks_pandas_and_fairlearn():
    rng = np.random.default_rng(3)
    n = 3000
    groups = rng.choice(np.array(["F", "M", "X", None], dtype=object), size=n, p=[0.45, 0.45, 0.07, 0.03])
    per_user = {"ndcg": rng.beta(2, 5, n), "recall": rng.beta(1, 3, n), "hit_rate": (rng.random(n) < 0.4).astype(float)}
    per_user["recall"][::11] = np.nan  # undefined values are left out
    out = F.compare_groups(per_user, groups, attribute="gender", n_boot=300)
    labels = pd.Series(groups, dtype="string").fillna("missing")
    for metric, values in per_user.items():
        frame = pd.DataFrame({"v": values, "g": labels}).dropna(subset=["v"])
        expected = frame.groupby("g")["v"].mean()
        assert out[metric].by_group == pytest.approx(expected.to_dict(), rel=1e-12), metric
        assert out[metric].n_users == frame.groupby("g").size().to_dict()
        # the gap and the ratio are between the groups of the attribute: MetricFrame's over the users who have it
        known = frame[frame["g"] != "missing"]
        mf = MetricFrame(
            metrics=lambda t, p: float(np.mean(t)), y_true=known["v"], y_pred=known["v"], sensitive_features=known["g"]
        )
        assert out[metric].difference == pytest.approx(mf.difference(), rel=1e-12)
        assert out[metric].ratio == pytest.approx(mf.ratio(), rel=1e-12)
        attributed = expected.drop("missing")
        assert out[metric].difference == pytest.approx(attributed.max() - attributed.min(), rel=1e-12)
        between = [p for p in out[metric].pairs if "missing" not in (p.higher, p.lower)]
        assert max(p.difference for p in between) == pytest.approx(out[metric].difference, rel=1e-12)
        assert min(p.ratio for p in between) == pytest.approx(out[metric].ratio, rel=1e-12)
        for g, (low, high) in out[metric].by_group_ci.items():
            assert low <= out[metric].by_group[g] <= high


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compare_groups_point_values_are_metricframes_to_the_last_bit(seed: int) -> None:
    """The point values are computed with numpy masks, not MetricFrame (too slow at platform scale): the same bits."""
    rng = np.random.default_rng(seed)
    n = 20_000
    names = np.array(["18-24", "25-34", "35-44", "45+", "F|25-34", "M|45+", None], dtype=object)
    groups = rng.choice(names, size=n, p=[0.3, 0.25, 0.2, 0.1, 0.1, 0.04, 0.01])
    per_user = {
        "ndcg": rng.beta(2, 5, n),
        "recall": np.where(rng.random(n) < 0.1, np.nan, rng.beta(1, 3, n)),
        "hit_rate": (rng.random(n) < 0.3).astype(float),
        "zero": np.zeros(n),  # min / max is 0 / 0: NaN, as fairlearn's
    }
    out = F.compare_groups(per_user, groups, attribute="age", n_boot=20)
    labels = pd.Series(groups, dtype="string").fillna("missing")
    for metric, values in per_user.items():
        ok = ~np.isnan(values)
        mf = MetricFrame(
            metrics=F.mean_of_values, y_true=values[ok], y_pred=values[ok],
            sensitive_features=pd.Series(labels[ok].to_numpy(dtype=object), name="age"),
        )  # fmt: skip
        assert out[metric].by_group == {str(g): float(v) for g, v in mf.by_group.items()}, metric
        assert list(out[metric].by_group) == [str(g) for g in mf.by_group.index]
        assert out[metric].overall == float(mf.overall)
        known = ok & pd.notna(groups)  # the gap and the ratio: between the groups of the attribute, not "missing"
        mf = MetricFrame(
            metrics=F.mean_of_values, y_true=values[known], y_pred=values[known],
            sensitive_features=pd.Series(labels[known].to_numpy(dtype=object), name="age"),
        )  # fmt: skip
        assert out[metric].difference == float(mf.difference())
        ratio = float(mf.ratio())
        assert out[metric].ratio == ratio or (np.isnan(ratio) and np.isnan(out[metric].ratio))


def test_group_intervals_agree_with_fairlearns_own_bootstrap():
    """fairlearn's bootstrap (a loop of MetricFrames over whole-sample resamples) gives about the same intervals."""
    rng = np.random.default_rng(5)
    n = 1500
    values, groups = rng.beta(2, 5, n), rng.choice(["a", "b"], size=n)
    ours = F.compare_groups({"ndcg": values}, groups, n_boot=1000)["ndcg"]
    theirs = MetricFrame(
        metrics=F.mean_of_values, y_true=values, y_pred=values, sensitive_features=groups,
        n_boot=100, ci_quantiles=[0.025, 0.975], random_state=0,
    )  # fmt: skip
    low, high = theirs.by_group_ci
    for g in ("a", "b"):
        width = ours.by_group_ci[g][1] - ours.by_group_ci[g][0]
        assert abs(ours.by_group_ci[g][0] - low[g]) < 0.25 * width
        assert abs(ours.by_group_ci[g][1] - high[g]) < 0.25 * width


def test_parity_hand_example_and_aif360():
    #   a: hits 1 1 1 0 -> 0.75 (privileged)   b: 1 0 0 0 -> 0.25   c: 1 1 0 0 -> 0.5
    #   b vs a: DI 0.25/0.75 = 1/3, SPD -0.5;  c vs a: DI 2/3, SPD -0.25
    #   pooled b+c: 3/8 -> DI 0.5, SPD -0.375
    hit = np.array([1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 0])
    groups = list("aaaabbbbcccc")
    rep = F.parity(hit, groups, privileged="a", n_boot=200)["a"]
    assert rep.positive_rate == pytest.approx({"a": 0.75, "b": 0.25, "c": 0.5})
    assert (rep.disparate_impact, rep.statistical_parity_difference) == pytest.approx((0.5, -0.375))
    assert rep.by_group["b"]["disparate_impact"] == pytest.approx(1 / 3)
    assert rep.by_group["b"]["statistical_parity_difference"] == pytest.approx(-0.5)
    assert rep.by_group["c"]["disparate_impact"] == pytest.approx(2 / 3)
    assert rep.by_group["c"]["statistical_parity_difference"] == pytest.approx(-0.25)
    every = F.parity(hit, groups, n_boot=50)
    assert list(every) == ["a", "b", "c"]
    assert every["b"].by_group["a"]["disparate_impact"] == pytest.approx(3.0)


def test_parity_cross_checks_aif360_and_numpy_on_random_data():
    from aif360.datasets import BinaryLabelDataset
    from aif360.metrics import BinaryLabelDatasetMetric

    rng = np.random.default_rng(11)
    n = 5000
    codes = rng.choice(3, size=n, p=[0.5, 0.4, 0.1])
    hit = (rng.random(n) < np.array([0.5, 0.4, 0.3])[codes]).astype(float)
    names = np.array(["F", "M", "X"])
    reports = F.parity(hit, names[codes], privileged="M", n_boot=500)
    rep = reports["M"]
    ds = BinaryLabelDataset(
        df=pd.DataFrame({"y": hit, "g": codes.astype(float)}), label_names=["y"], protected_attribute_names=["g"],
        favorable_label=1.0, unfavorable_label=0.0,
    )  # fmt: skip
    aif = BinaryLabelDatasetMetric(ds, unprivileged_groups=[{"g": 0.0}, {"g": 2.0}], privileged_groups=[{"g": 1.0}])
    rates = {g: hit[codes == i].mean() for i, g in enumerate(names)}
    pooled = hit[codes != 1].mean()
    assert rep.disparate_impact == pytest.approx(aif.disparate_impact(), rel=1e-12)
    assert rep.disparate_impact == pytest.approx(pooled / rates["M"], rel=1e-12)
    assert rep.statistical_parity_difference == pytest.approx(aif.statistical_parity_difference(), rel=1e-12)
    assert rep.statistical_parity_difference == pytest.approx(pooled - rates["M"], rel=1e-12)
    for g in ("F", "X"):
        assert rep.by_group[g]["disparate_impact"] == pytest.approx(rates[g] / rates["M"], rel=1e-12)
        low, high = rep.by_group[g]["disparate_impact_ci"]
        assert low < rates[g] / rates["M"] < high
    # the interval of a rate matches the normal approximation of a binomial proportion
    se = math.sqrt(rates["F"] * (1 - rates["F"]) / (codes == 0).sum())
    low, high = rep.positive_rate_ci["F"]
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_parity_unknown_privileged_group():
    with pytest.raises(ConfigError) as info:
        F.parity(np.array([1, 0]), ["F", "M"], privileged="W")
    assert str(info.value) == "parity: privileged group 'W' is not among the groups (F, M)."


# -- provider side -------------------------------------------------------------------------------
# Four items: 0 and 1 by provider group "a", 2 and 3 by "b".
#   user 0: list [0, 1]   positives {0, 1}
#   user 1: list [0, 2]   positives {2, 3}
#   user 2: list [3, -1]  no positive (left out of the shares)
ITEM_GROUPS = ["a", "a", "b", "b"]
LISTS = np.array([[0, 1], [0, 2], [3, -1]])
POSITIVES = csr([[0, 1], [2, 3], []], 4)


def test_provider_exposure_hand_example_log_attention():
    # user 0: all attention on a -> share a = 1
    # user 1: a gets 1, b gets 1/log2(3) -> share a = 1 / (1 + W2)
    # exposure share a = (1 + 1/(1 + W2)) / 2; relevance share a = (1 + 0) / 2 = 0.5
    rep = F.provider_exposure(LISTS, ITEM_GROUPS, POSITIVES, n_boot=100)
    share_a = (1 + 1 / (1 + W2)) / 2
    assert rep.attention == "log" and rep.n_users == 2
    assert rep.exposure_share == pytest.approx({"a": share_a, "b": 1 - share_a})
    assert rep.relevance_share == pytest.approx({"a": 0.5, "b": 0.5})
    assert rep.exposure_ratio == pytest.approx({"a": 2 * share_a, "b": 2 * (1 - share_a)})
    # item exposure over all lists (user 2 counts here): [2, W2, W2, 1]
    assert rep.gini == pytest.approx(gini_by_definition(np.array([2, W2, W2, 1])))
    assert rep.gini_by_group["a"] == pytest.approx(gini_by_definition(np.array([2, W2])))
    assert rep.coverage == {"a": 1.0, "b": 1.0} and rep.coverage_all == 1.0
    assert rep.n_items == {"a": 2, "b": 2} and rep.item_share == {"a": 0.5, "b": 0.5}


def test_provider_exposure_geometric_attention_and_unshown_items():
    lists = np.array([[0, 2], [1, 0]])
    rep = F.provider_exposure(
        lists, ["a", "a", "b", None], csr([[2], [0, 1]], 4), attention="geometric", patience=0.5, n_boot=50
    )
    # user 0: a 1, b 0.5 -> a 2/3;  user 1: a 1.5 -> a 1.  relevance: user 0 b, user 1 a.
    assert rep.attention == "geometric(0.5)"
    assert rep.groups == ("a", "b", "missing")
    assert rep.exposure_share == pytest.approx({"a": 5 / 6, "b": 1 / 6, "missing": 0.0})
    assert rep.relevance_share == pytest.approx({"a": 0.5, "b": 0.5, "missing": 0.0})
    assert math.isnan(rep.exposure_ratio["missing"])
    assert rep.coverage == {"a": 1.0, "b": 1.0, "missing": 0.0}


def test_provider_exposure_checks_its_inputs():
    with pytest.raises(DataError) as info:
        F.provider_exposure(LISTS, ITEM_GROUPS, POSITIVES[:2])
    assert (
        str(info.value)
        == "provider_exposure: 'relevant' has 2 rows but 'recommended' has 3; row u of both must be the same user."
    )
    with pytest.raises(DataError) as info:
        F.provider_exposure(np.array([[0, 4]]), ITEM_GROUPS, POSITIVES[:1])
    assert (
        str(info.value)
        == "provider_exposure: 'recommended' holds item index 4, outside the catalog of 4 items (0..3, -1 pads)."
    )


def test_popularity_strata():
    # cumulative share before each item (total 15): 0, .4, .6, .8, .93 -> head, mid, mid (tied), tail, tail
    assert F.popularity_strata(np.array([6.0, 3.0, 3.0, 2.0, 1.0, 0.0])).tolist() == [0, 1, 1, 2, 2, 2]
    # a tie straddling a cut joins the stratum of its first item: 4, 4 both head
    assert F.popularity_strata(np.array([1.0, 4.0, 4.0, 1.0])).tolist() == [2, 0, 0, 2]
    assert F.popularity_strata(np.zeros(3)).tolist() == [2, 2, 2]
    with pytest.raises(ConfigError) as info:
        F.popularity_strata(np.ones(3), cuts=(0.5,))
    assert str(info.value) == (
        "The 'cuts' parameter of popularity_strata must be increasing shares in (0, 1), one fewer than the labels (3). "
        "Got (0.5,) instead."
    )


def test_popularity_bias_hand_example():
    # popularity [6, 3, 3, 2, 1, 0] -> strata head {0}, mid {1, 2}, tail {3, 4, 5}
    # long tail (head_share 0.8): the head covers 12 of 15 interactions -> {0, 1, 2}; tail {3, 4, 5}
    pop = np.array([6.0, 3.0, 3.0, 2.0, 1.0, 0.0])
    lists = np.array([[0, 1], [0, 4]])
    history = csr([[3, 4], [1, 2]], 6)  # profile popularity: (2+1)/2 = 1.5 and (3+3)/2 = 3 -> mean 2.25
    positives = csr([[1, 5], [0, 4, 3]], 6)  # hits: user 0 item 1 (mid); user 1 items 0 (head), 4 (tail)
    rep = F.popularity_bias(lists, history, positives, pop, n_boot=100)
    assert rep.arp == pytest.approx(((6 + 3) / 2 + (6 + 1) / 2) / 2)  # 4.0
    assert rep.profile_popularity == pytest.approx(2.25)
    assert rep.arp_ratio == pytest.approx(4.0 / 2.25)
    assert rep.catalog_popularity == pytest.approx(2.5)
    assert rep.arp_catalog_ratio == pytest.approx(4.0 / 2.5)
    assert rep.long_tail_share == pytest.approx((0 + 0.5) / 2)
    assert rep.profile_long_tail_share == pytest.approx((1.0 + 0.0) / 2)  # history {3, 4} all tail; {1, 2} none
    assert {s: (v["n_items"], v["n_positives"], v["n_hits"]) for s, v in rep.strata.items()} == {
        "head": (1, 1, 1),
        "mid": (2, 1, 1),
        "tail": (3, 3, 1),
    }
    assert {s: v["recall"] for s, v in rep.strata.items()} == pytest.approx({"head": 1.0, "mid": 1.0, "tail": 1 / 3})
    assert rep.recall_gap == pytest.approx(2 / 3)


def test_popularity_bias_reuses_recommender_metrics():
    rng = np.random.default_rng(2)
    n_users, n_items = 300, 80
    pop = np.sort(rng.pareto(1.2, n_items))[::-1] * 10
    lists = np.stack([rng.choice(n_items, 10, replace=False) for _ in range(n_users)])
    history = sp.csr_matrix((rng.random((n_users, n_items)) < 0.1).astype(float))
    positives = sp.csr_matrix((rng.random((n_users, n_items)) < 0.05).astype(float))
    rep = F.popularity_bias(lists, history, positives, pop, n_boot=50)
    assert rep.arp == pytest.approx(np.nanmean(M.average_popularity(lists, pop)))
    assert rep.long_tail_share == pytest.approx(np.nanmean(M.long_tail_share(lists, pop)))
    hits = M.hit_matrix(lists, positives)
    strata = F.popularity_strata(pop)
    total = sum(v["n_hits"] for v in rep.strata.values())
    assert total == hits.sum()
    for s, label in enumerate(F.POPULARITY_STRATA):
        positives_in = positives[:, strata == s].sum()
        assert rep.strata[label]["n_positives"] == positives_in


def kl_by_loop(lists, history, categories, alpha=0.01):
    """Steck's KL one user at a time, with dicts (the reference for the vectorized version)."""
    out = []
    for items, hist in zip(lists, history):

        def mix(chosen):
            dist = {}
            for i in chosen:
                cats = [c for c in categories[i].split("|") if c] if categories[i] else []
                for c in cats:
                    dist[c] = dist.get(c, 0.0) + 1 / len(cats)
            total = sum(dist.values())
            return {c: v / total for c, v in dist.items()} if total else None

        p, q = mix(hist), mix([i for i in items if i >= 0])
        if p is None or q is None:
            out.append(float("nan"))
            continue
        out.append(sum(pv * math.log(pv / ((1 - alpha) * q.get(c, 0.0) + alpha * pv)) for c, pv in p.items()))
    return np.array(out)


def test_calibration_hand_example():
    # items: 0 {a}, 1 {b}, 2 {a, b}, 3 none
    cats = ["a", "b", "a|b", None]
    history = csr([[0, 1], [2], [3], [0]], 4)
    lists = np.array([[0, 3], [1, 2], [0, 1], [3, -1]])
    # user 0: p = (1/2, 1/2) from items 0 and 1; q = (1, 0) (item 3 has no category)
    kl = F.calibration_kl(lists, history, cats)
    q_b = 0.01 * 0.5  # smoothed q(b) = 0.99 * 0 + 0.01 * 0.5
    expected_0 = 0.5 * math.log(0.5 / (0.99 * 1 + 0.005)) + 0.5 * math.log(0.5 / q_b)
    # user 1: p = (1/2, 1/2) from item 2; q from [1, 2] = (1/4, 3/4)
    expected_1 = 0.5 * math.log(0.5 / (0.99 * 0.25 + 0.005)) + 0.5 * math.log(0.5 / (0.99 * 0.75 + 0.005))
    assert kl[0] == pytest.approx(expected_0) and kl[1] == pytest.approx(expected_1)
    assert math.isnan(kl[2])  # a history without categories
    assert math.isnan(kl[3])  # a list without categories
    # disjoint categories reach the bound log(1 / alpha)
    disjoint = F.calibration_kl(np.array([[1]]), csr([[0]], 4), cats)
    assert disjoint[0] == pytest.approx(math.log(100))


def test_calibration_matches_a_per_user_loop():
    rng = np.random.default_rng(4)
    n_users, n_items = 200, 60
    labels = list("abcdefg")
    cats = ["|".join(rng.choice(labels, rng.integers(0, 3), replace=False)) for _ in range(n_items)]
    lists = np.stack([rng.choice(n_items, 8, replace=False) for _ in range(n_users)])
    lists[::9, -2:] = -1
    history = sp.csr_matrix((rng.random((n_users, n_items)) < 0.1).astype(float))
    hist_rows = [history[u].indices.tolist() for u in range(n_users)]
    expected = kl_by_loop(lists, hist_rows, cats)
    got = F.calibration_kl(lists, history, cats, chunk_size=37)
    np.testing.assert_allclose(got, expected, rtol=1e-10, equal_nan=True)


def test_calibration_bad_alpha():
    with pytest.raises(ConfigError) as info:
        F.calibration_kl(np.array([[0]]), csr([[0]], 1), ["a"], alpha=0)
    assert (
        str(info.value) == "The 'alpha' parameter of calibration_kl must be a float in the range (0, 1). Got 0 instead."
    )


def test_hundred_thousand_users_take_seconds():
    """Vectorized over users: no per-user Python loop (a loop would take minutes here)."""
    rng = np.random.default_rng(0)
    n, n_items, k = 100_000, 5_000, 10
    lists = rng.integers(0, n_items, size=(n, k))
    rows = np.repeat(np.arange(n), 5)
    positives = sp.csr_matrix((np.ones(5 * n), (rows, rng.integers(0, n_items, 5 * n))), shape=(n, n_items))
    history = sp.csr_matrix((np.ones(5 * n), (rows, rng.integers(0, n_items, 5 * n))), shape=(n, n_items))
    cats = [f"c{i % 19}|c{i % 7}" for i in range(n_items)]
    groups = np.where(np.arange(n_items) % 3 == 0, "major", "independent")
    started = time.perf_counter()
    F.provider_exposure(lists, groups, positives, n_boot=20)
    F.popularity_bias(lists, history, positives, M.item_popularity(history), n_boot=20)
    F.calibration_kl(lists, history, cats)
    F.bootstrap_means(rng.random((n, 3)), rng.integers(0, 3, n), n_boot=100)
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize("seed", range(5))
def test_parity_figures_are_aif360s_to_the_last_bit(seed):
    """DI and SPD, pooled and per group, for every privileged group, equal aif360's exactly (including a
    group with no hit, whose DI as the privileged side is undefined, NaN on both sides)."""
    import logging

    logging.disable(logging.WARNING)
    try:
        from aif360.datasets import BinaryLabelDataset
        from aif360.metrics import BinaryLabelDatasetMetric
    finally:
        logging.disable(logging.NOTSET)

    rng = np.random.default_rng(seed)
    n = 3000
    codes = rng.choice(4, size=n, p=[0.45, 0.35, 0.15, 0.05])
    hit = (rng.random(n) < np.array([0.53, 0.41, 0.29, 0.0])[codes]).astype(float)
    names = np.array(["A", "B", "C", "D"])
    ds = BinaryLabelDataset(
        df=pd.DataFrame({"y": hit, "g": codes.astype(float)}), label_names=["y"], protected_attribute_names=["g"],
        favorable_label=1.0, unfavorable_label=0.0,
    )  # fmt: skip

    def theirs(privileged, unprivileged):
        metric = BinaryLabelDatasetMetric(
            ds, unprivileged_groups=[{"g": float(g)} for g in unprivileged], privileged_groups=[{"g": float(privileged)}]
        )
        with np.errstate(all="ignore"):
            values = (float(metric.disparate_impact()), float(metric.statistical_parity_difference()))
        return tuple(v if np.isfinite(v) else float("nan") for v in values)

    reports = F.parity(hit, names[codes], n_boot=20)
    for p, name in enumerate(names):
        rep = reports[name]
        others = [g for g in range(4) if g != p]
        ours = (rep.disparate_impact, rep.statistical_parity_difference)
        np.testing.assert_array_equal(ours, theirs(p, others))
        for g in others:
            fig = rep.by_group[names[g]]
            np.testing.assert_array_equal(
                (fig["disparate_impact"], fig["statistical_parity_difference"]), theirs(p, [g])
            )


def test_an_interval_end_among_infinite_draws_is_unbounded_not_undefined():
    """Regression: a ratio whose resampled reference rate can be 0 has infinite draws, and interpolating
    between two infinities made the upper end NaN, which the facts store as "no end" and a rule judging
    the interval then replaced by the point value."""
    low, high = F.percentile_interval(np.array([[0.5], [1.0], [np.inf], [np.inf], [np.nan]]), 0.5)
    assert (low[0], high[0]) == (0.875, np.inf)
    low, high = F.percentile_interval(np.array([[-np.inf], [0.0], [0.0], [0.0]]), 0.5)
    assert low[0] == -np.inf and high[0] == 0.0


def test_parity_intervals_are_the_score_intervals_statsmodels_computes():
    """Wilson's interval of each rate, Newcombe's of the parity difference, Katz's log interval of the
    disparate impact (half a count added when a group has no hit), against statsmodels."""
    from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

    rng = np.random.default_rng(5)
    for n_a, n_b, x_a, x_b in [(30, 30, 0, 3), (30, 40, 2, 1), (50, 200, 50, 120), (31, 45, 7, 0), *(
        (int(n1), int(n2), int(rng.integers(0, n1 + 1)), int(rng.integers(0, n2 + 1)))
        for n1, n2 in rng.integers(2, 300, size=(20, 2)))]:  # fmt: skip
        hit = np.r_[np.arange(n_a) < x_a, np.arange(n_b) < x_b].astype(float)
        rep = F.parity(hit, ["a"] * n_a + ["b"] * n_b, privileged="a", confidence=0.9)["a"]
        for g, x, n in (("a", x_a, n_a), ("b", x_b, n_b)):
            assert rep.positive_rate_ci[g] == pytest.approx(proportion_confint(x, n, alpha=0.1, method="wilson"), abs=1e-12)
        spd = confint_proportions_2indep(x_b, n_b, x_a, n_a, method="newcomb", compare="diff", alpha=0.1)
        assert rep.statistical_parity_difference_ci == pytest.approx(spd, abs=1e-12)
        method = "log-adjusted" if 0 in (x_a, x_b) else "log"
        low, high = confint_proportions_2indep(x_b, n_b, x_a, n_a, method=method, compare="ratio", alpha=0.1)
        assert rep.disparate_impact_ci == pytest.approx((low, high if x_a else np.inf), rel=1e-12)
        assert rep.by_group["b"]["disparate_impact_ci"] == rep.disparate_impact_ci



@pytest.mark.parametrize(
    "lists",
    [np.full((2, 3), -1), np.zeros((0, 3), dtype=np.int64)],
    ids=["every list empty", "no user"],
)
def test_measures_of_no_measurable_user_are_undefined_not_an_index_error(lists):
    """Regression: the bootstrap of a table without rows had no group, and taking its one group's draws
    raised IndexError in provider_exposure, popularity_bias and mean_with_interval."""
    n = lists.shape[0]
    positives = csr([[0], [1]][:n], 4)
    rep = F.provider_exposure(lists, ["a", "b", "a", "b"], positives, n_boot=20)
    assert rep.n_users == 0 and all(math.isnan(v) for v in rep.exposure_share.values())
    assert all(math.isnan(low) and math.isnan(high) for low, high in rep.exposure_share_ci.values())
    pop = F.popularity_bias(lists, positives, positives, np.array([3.0, 2.0, 1.0, 0.0]), n_boot=20)
    assert math.isnan(pop.arp)
    mean, (low, high) = F.mean_with_interval(np.full(n, np.nan), n_boot=20)
    assert math.isnan(mean) and math.isnan(low) and math.isnan(high)


def test_pooled_parity_leaves_out_the_users_without_the_attribute():
    """The pooled DI and SPD compare the privileged group with the groups of the attribute: the users whose label is
    missing were pooled with them, so their hit rate moved a figure about groups they are not in."""
    rng = np.random.default_rng(3)
    labels = np.array(rng.choice(["A", "B", None], size=600, p=[0.45, 0.35, 0.2]), dtype=object)
    hit = (rng.random(600) < np.where(labels == None, 0.05, 0.5)).astype(float)  # noqa: E711
    known = np.array([lab is not None for lab in labels])
    rep = F.parity(hit, labels, privileged="A", n_boot=10)["A"]
    without = F.parity(hit[known], labels[known], privileged="A", n_boot=10)["A"]
    assert (rep.disparate_impact, rep.statistical_parity_difference) == (without.disparate_impact, without.statistical_parity_difference)
    assert rep.disparate_impact_ci == without.disparate_impact_ci
    assert "missing" in rep.by_group and rep.n_users["missing"] == int((~known).sum())  # still reported
