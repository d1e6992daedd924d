"""Groups as a pack declares them: bins, intersections, many values, the minimum size, item-table groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recommender import metrics as M
from recommender.errors import ConfigError, DataError
from recommender.fairness import (
    Binning,
    GroupingSpec,
    attention_weights,
    bin_values,
    census,
    compare_groups,
    groups_for,
    intersect,
    item_groups,
    membership_exposure,
    multi_membership,
    provider_exposure,
)
from recommender.item_table import ItemMapping, load_item_table

AGE = Binning("age", (0, 18, 25, 35, 50, float("inf")), ("<18", "18-24", "25-34", "35-49", "50+"))


def test_binning_edges_are_half_open_and_out_of_range_is_missing() -> None:
    values = [0, 17.999, 18, 24, 25, 49.5, 50, 120, -1, np.nan, "abc", None]
    assert bin_values(values, AGE).tolist() == [
        "<18", "<18", "18-24", "18-24", "25-34", "35-49", "50+", "50+", None, None, None, None,
    ]  # fmt: skip
    closed = Binning("age", (0, 18, 65), ("0-18", "19-65"), right=True)
    assert bin_values([0, 18, 18.5, 65, 66], closed).tolist() == [None, "0-18", "19-65", "19-65", None]


@pytest.mark.parametrize(
    "edges, labels, problem",
    [
        ((18,), (), "at least two edges"),
        ((18, 18, 30), ("a", "b"), "strictly increasing"),
        ((30, 18), ("a",), "strictly increasing"),
        ((0, 18, 30), ("a",), "2 bins need 2 labels"),
        ((0, 18, 30), ("a", "a"), "distinct"),
        ((0, 18, 30), ("a", "missing"), "distinct"),
        ((0, 18, 30), ("a", " Missing"), "in any case"),
    ],
)
def test_bad_binning_is_a_located_config_error(edges, labels, problem) -> None:
    with pytest.raises(ConfigError, match=problem) as err:
        Binning("age", edges, labels)
    assert "binning of 'age'" in str(err.value)


def test_intersection_labels_and_missing_parts() -> None:
    labels = intersect({"gender": ["F", "M", None, "F"], "band": ["18-24", None, "25-34", "25-34"]})
    assert labels.tolist() == ["F x 18-24", None, None, "F x 25-34"]


def test_intersection_refuses_ambiguous_labels() -> None:
    with pytest.raises(DataError, match="separator"):
        intersect({"a": ["p x q", "p"], "b": ["r", "q x r"]})


def test_pack_declared_intersections_feed_the_group_comparison() -> None:
    rng = np.random.default_rng(0)
    n = 400
    users = pd.DataFrame({"gender": rng.choice(["F", "M", "X"], n, p=[0.48, 0.48, 0.04]), "age": rng.integers(10, 80, n)})
    users.loc[::37, "gender"] = None
    spec = GroupingSpec(attributes=("gender",), bins={"age": AGE}, intersections=(("gender", "age"),), min_size=20)
    groups = groups_for(users, spec)
    assert set(groups) == {"gender", "gender_x_age"}  # only what the pack declared: no "age" alone
    ndcg = rng.random(n)
    out = compare_groups({"ndcg": ndcg}, groups["gender_x_age"], n_boot=20)["ndcg"]
    frame = pd.DataFrame({"g": pd.Series(groups["gender_x_age"]).fillna("missing"), "v": ndcg})
    expected = frame.groupby("g")["v"].mean().to_dict()
    assert out.by_group == pytest.approx(expected)
    c = census(groups["gender_x_age"], spec.min_size)
    assert c.n == frame.groupby("g").size().to_dict()
    small = [g for g in c.groups if 0 < c.n[g] < 20 and g != "missing"]
    assert small, "the synthetic X group is small in every age band"
    for g in small:
        assert not c.judged[g] and "fewer than the minimum of 20" in c.reason[g]
    assert not c.judged["missing"] and "missing" in c.reason["missing"]
    assert all(c.judged[g] for g in c.judged_groups())
    assert c.as_dict()["groups"][small[0]]["judged"] is False


def test_census_rejects_a_bad_minimum() -> None:
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="min_size"):
            census(["a"], bad)


def test_unknown_attribute_names_the_known_ones() -> None:
    with pytest.raises(DataError, match="no attribute 'region'; the table has: gender"):
        groups_for(pd.DataFrame({"gender": ["F"]}), GroupingSpec(attributes=("region",)))


def test_item_table_gives_provider_region_and_category_groups(tmp_path) -> None:
    path = tmp_path / "items.csv"
    path.write_text(
        "sku,label,region,genres,year\n"
        "a,Major,EU,drama|comedy,1994\n"
        "b,Indie,US,drama,2003\n"
        "c,Indie,EU,,2011\n"
        "d,Major,US,comedy|horror,1999\n"
    )
    table = load_item_table(path, ItemMapping(item_id="sku", provider="label", category="genres", release="year"))
    cols = ["d", "c", "b", "a", "zz"]  # the model's item columns; zz has no row in the table
    provider = item_groups(table, cols, "provider")
    region = item_groups(table, cols, "region")
    assert provider.tolist() == ["Major", "Indie", "Indie", "Major", None]
    assert intersect({"provider": provider, "region": region}).tolist() == [
        "Major x US", "Indie x EU", "Indie x US", "Major x EU", None,
    ]  # fmt: skip
    assert item_groups(table, cols, "release_decade").tolist() == ["1990s", "2010s", "2000s", "1990s", None]
    years = Binning("release_year", (1990, 2000, 2020), ("90s", "00s-10s"))
    assert item_groups(table, cols, "release_year", binning=years).tolist() == ["90s", "00s-10s", "00s-10s", "90s", None]
    matrix, names = item_groups(table, cols, "categories")
    assert names == ("comedy", "drama", "horror")
    assert matrix.toarray().tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]]
    # intersectional provider groups go straight into the provider exposure report
    rel = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [0, 0, 1, 1, 0]]))
    rep = provider_exposure(np.array([[0, 1], [2, 3]]), intersect({"p": provider, "r": region}), rel, n_boot=10)
    assert set(rep.groups) == {"Major x US", "Indie x EU", "Indie x US", "Major x EU", "missing"}


def test_membership_exposure_matches_a_loop() -> None:
    rng = np.random.default_rng(3)
    cats = ["|".join(rng.choice(list("abcd"), rng.integers(0, 3), replace=False)) for _ in range(20)]
    membership = multi_membership(cats)
    rec = np.array([rng.choice(20, 5, replace=False) for _ in range(30)])
    w = attention_weights(5, "log")
    got = membership_exposure(rec, membership, w)
    total, per = 0.0, {}
    for row in rec:
        for r, i in enumerate(row):
            total += w[r]
            for c in {x for x in cats[i].split("|") if x}:
                per[c] = per.get(c, 0.0) + w[r]
    assert got == pytest.approx({c: v / total for c, v in per.items()})
    assert M.catalog_coverage(rec, 20) > 0


def test_an_intersection_may_not_take_the_name_of_an_attribute() -> None:
    # groups_for keys labels by name: gender x age under "gender_x_age" would replace that attribute's own groups
    with pytest.raises(ConfigError, match="intersections.0: \\['gender', 'age'\\] is labelled 'gender_x_age'"):
        GroupingSpec(attributes=("gender", "gender_x_age"), intersections=(("gender", "age"),))
    with pytest.raises(ConfigError, match="intersections.1"):
        GroupingSpec(intersections=(("a", "b_x_c"), ("a", "b", "c")))


# -- a group of one, a value named like the missing group, empty intersection cells --------------------------


def test_a_group_of_one_user_has_no_interval_never_a_zero_width_one() -> None:
    """One user resamples to itself: a zero-width interval would claim a certainty no single user gives."""
    from fairlearn.metrics import MetricFrame
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    ndcg = np.array([0.2, 0.4, 0.6, 0.3, 0.5, 0.9])
    groups = ["a", "a", "a", "b", "b", "c"]
    out = compare_groups({"ndcg": ndcg}, groups, n_boot=200)["ndcg"]
    frame = MetricFrame(metrics=lambda y, p: float(np.mean(y)), y_true=ndcg, y_pred=ndcg, sensitive_features=groups)
    assert out.by_group == pytest.approx(frame.by_group.to_dict()) and out.difference == pytest.approx(frame.difference())
    assert out.n_users["c"] == 1
    assert all(np.isnan(end) for end in out.by_group_ci["c"])
    low, high = out.by_group_ci["a"]
    assert high - low > 0  # groups of two and more keep theirs
    assert all(np.isnan(end) for end in (*out.difference_ci, *out.ratio_ci))  # the gap holds c's value fixed
    by_pair = {(p.higher, p.lower): p for p in out.pairs}
    with_c = [p for p in out.pairs if "c" in (p.higher, p.lower)]
    assert with_c and all(np.isnan(end) for p in with_c for end in p.difference_ci)
    a_b = by_pair.get(("a", "b")) or by_pair[("b", "a")]
    welch = CompareMeans(DescrStatsW(ndcg[:3]), DescrStatsW(ndcg[3:5])).tconfint_diff(alpha=0.05, usevar="unequal")
    sign = 1 if a_b.higher == "a" else -1
    assert a_b.difference_ci == pytest.approx(tuple(sorted(sign * np.asarray(welch))))
    every_one_alone = compare_groups({"ndcg": np.array([0.1, 0.7])}, ["x", "y"], n_boot=50)["ndcg"]
    intervals = [*every_one_alone.by_group_ci.values(), every_one_alone.difference_ci, every_one_alone.ratio_ci]
    assert all(np.isnan(end) for ci in intervals for end in ci)  # was (0.6, 0.6): a zero-width gap


def test_a_value_named_like_the_missing_group_is_refused_where_it_is() -> None:
    from recommender.fairness import group_labels

    for value in ("missing", " Missing ", "MISSING"):
        with pytest.raises(DataError, match=r"entry 1 holds the value .*'missing'.*one group"):
            group_labels(["F", value, None])
        with pytest.raises(DataError, match="entry 2"):
            compare_groups({"ndcg": np.array([0.1, 0.2, 0.3])}, ["a", None, value], n_boot=5)
        with pytest.raises(DataError, match="entry 0"):
            census([value, "a"])
    users = pd.DataFrame({"gender": ["F", "missing", None], "age": [20, 30, 40]}, index=["u1", "u2", "u3"])
    with pytest.raises(DataError, match=r"user attributes: column 'gender', row 'u2' holds the value 'missing'"):
        groups_for(users, GroupingSpec(attributes=("gender",)))
    with pytest.raises(DataError, match="row 'u2'"):
        groups_for(users, GroupingSpec(bins={"age": AGE}, intersections=(("gender", "age"),)))
    codes, names = group_labels(["b", None, "a", "missed"])
    assert names == ("a", "b", "missed", "missing") and codes.tolist() == [1, 3, 0, 2]  # the missing group as before


def test_the_census_lists_empty_intersection_cells_with_no_members() -> None:
    from recommender.fairness import cells_for, intersection_cells

    users = pd.DataFrame(
        {"gender": ["F", "F", "M", "M", None, "X"], "age": [20, 40, 20, 22, 30, 41]}, index=[f"u{j}" for j in range(6)]
    )
    spec = GroupingSpec(bins={"age": Binning("age", (18, 35, 120), ("18-34", "35+"))}, intersections=(("gender", "age"),), min_size=1)
    labels = groups_for(users, spec)["gender_x_age"]
    cells = cells_for(users, spec)["gender_x_age"]
    assert cells == intersection_cells({"gender": ["F", "M", "X"], "age": ["18-34", "35+"]})
    assert cells == ("F x 18-34", "F x 35+", "M x 18-34", "M x 35+", "X x 18-34", "X x 35+")
    c = census(labels, 1, cells)
    assert c.groups == (*cells, "missing")
    assert {g: c.n[g] for g in c.groups} == {
        "F x 18-34": 1, "F x 35+": 1, "M x 18-34": 2, "M x 35+": 0, "X x 18-34": 0, "X x 35+": 1, "missing": 1,
    }  # fmt: skip
    for empty in ("M x 35+", "X x 18-34"):
        assert not c.judged[empty] and "no members" in c.reason[empty]
        assert c.as_dict()["groups"][empty] == {"n": 0, "judged": False, "reason": c.reason[empty]}
    assert "M x 35+" not in c.judged_groups() and "M x 18-34" in c.judged_groups()
    assert census(labels, 1).groups == tuple(g for g in c.groups if c.n[g])  # without cells: as before


def test_the_gap_and_the_ratio_leave_the_missing_group_out_its_own_figures_stay() -> None:
    """The users without the attribute are no group of it: a gap or ratio with them would read as one between groups.

    By hand: a = (0.6, 0.4) -> 0.5, b = (0.3, 0.1) -> 0.2, missing = (0.9, 1.0) -> 0.95. Between a and b the gap is
    0.3 and the ratio 0.4 (with missing they would be 0.75 and 0.2 / 0.95); fairlearn's MetricFrame over the users
    with the attribute agrees."""
    from fairlearn.metrics import MetricFrame

    ndcg = np.array([0.6, 0.4, 0.3, 0.1, 0.9, 1.0])
    groups = ["a", "a", "b", "b", None, None]
    out = compare_groups({"ndcg": ndcg}, groups, n_boot=200)["ndcg"]
    assert out.groups == ("a", "b", "missing") and out.n_users["missing"] == 2
    assert out.by_group == pytest.approx({"a": 0.5, "b": 0.2, "missing": 0.95})
    assert (out.difference, out.ratio) == pytest.approx((0.3, 0.4))
    known = slice(0, 4)  # the users with the attribute
    frame = MetricFrame(
        metrics=lambda y, p: float(np.mean(y)), y_true=ndcg[known], y_pred=ndcg[known], sensitive_features=groups[known]
    )
    assert (out.difference, out.ratio) == pytest.approx((frame.difference(), frame.ratio()))
    assert 0.0 <= out.difference_ci[0] <= 0.3 <= out.difference_ci[1] <= 0.5  # a's and b's resamples only
    assert out.ratio_ci[1] <= 1.0
    assert any("missing" in (p.higher, p.lower) for p in out.pairs)  # its pairs are reported, named
    one_group = compare_groups({"ndcg": ndcg}, ["a", "a", None, None, None, None], n_boot=50)["ndcg"]
    assert (one_group.difference, one_group.ratio) == (0.0, 1.0)  # as MetricFrame with one group
    none = compare_groups({"ndcg": ndcg}, [None] * 6, n_boot=50)["ndcg"]
    assert none.by_group == pytest.approx({"missing": float(ndcg.mean())})
    assert all(np.isnan(x) for x in (none.difference, none.ratio, *none.difference_ci, *none.ratio_ci))
