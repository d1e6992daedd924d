"""FA*IR: the m tables against published ones, the adjustment, the algorithm, and LensKit #938.

Sources of the expected tables:

* ``fairsearchcore`` (the FA*IR authors' Python library, fair-search/fairsearch-fair-python,
  ``tests/test_fair.py``): unadjusted and adjusted tables, failure probabilities
  and adjusted alphas for (k, p, alpha) = (10, 0.2, 0.15), (20, 0.25, 0.1), (30, 0.3, 0.05).
* the authors' Java library (fair-search/fairsearch-fair-java,
  ``src/test/resources/mtable_fixtures``): unadjusted tables for (80, 0.6, 0.1)
  and (100, 0.5, 0.3), and the FairTopK ranking fixtures (k=10, p=0.6, alpha=0.1).
* Zehlike et al. 2017, the table of example values of m(k) at alpha = 0.1 for
  p = 0.1 .. 0.7 and k = 1 .. 12 (transcribed from memory of the paper, not from its
  text; it equals binom.ppf, so the published library tables above are the check).

The values are data; no code of either library is used or required.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy.stats import binom

from governance.rerank import Candidates, FairStarConfig, FairStarReranker, Reason, build_pipeline
from governance.rerank.fair_star import adjusted_mtable, fail_probability, mtable, ranked_group_fair
from recommender.errors import ConfigError

# -- published tables ------------------------------------------------------------------
FAIRSEARCHCORE_UNADJUSTED = {
    (10, 0.2, 0.15): [0, 0, 0, 0, 0, 0, 0, 0, 1, 1],
    (20, 0.25, 0.1): [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3],
    (30, 0.3, 0.05): [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5],
}
FAIRSEARCHCORE_ADJUSTED = {
    (10, 0.2, 0.15): [0, 0, 0, 0, 0, 0, 0, 0, 1, 1],
    (20, 0.25, 0.1): [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2],
    (30, 0.3, 0.05): [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4],
}
FAIRSEARCHCORE_FAIL_PROB = {
    (10, 0.2, 0.15): 0.13421772800000065,
    (20, 0.25, 0.1): 0.10515247355215251,
    (30, 0.3, 0.05): 0.04877730797178359,
}
JAVA_UNADJUSTED = {
    (80, 0.6, 0.1): [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
        5,
        5,
        6,
        6,
        7,
        7,
        8,
        8,
        9,
        9,
        10,
        10,
        11,
        11,
        12,
        12,
        13,
        13,
        14,
        15,
        15,
        16,
        16,
        17,
        17,
        18,
        18,
        19,
        19,
        20,
        21,
        21,
        22,
        22,
        23,
        23,
        24,
        24,
        25,
        26,
        26,
        27,
        27,
        28,
        28,
        29,
        29,
        30,
        31,
        31,
        32,
        32,
        33,
        33,
        34,
        34,
        35,
        36,
        36,
        37,
        37,
        38,
        38,
        39,
        40,
        40,
        41,
        41,
        42,
        42,
    ],
    (100, 0.5, 0.3): [
        0,
        1,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
        5,
        5,
        6,
        6,
        6,
        7,
        7,
        8,
        8,
        9,
        9,
        10,
        10,
        11,
        11,
        12,
        12,
        13,
        13,
        14,
        14,
        15,
        15,
        15,
        16,
        16,
        17,
        17,
        18,
        18,
        19,
        19,
        20,
        20,
        21,
        21,
        22,
        22,
        23,
        23,
        24,
        24,
        25,
        25,
        26,
        26,
        27,
        27,
        27,
        28,
        28,
        29,
        29,
        30,
        30,
        31,
        31,
        32,
        32,
        33,
        33,
        34,
        34,
        35,
        35,
        36,
        36,
        37,
        37,
        38,
        38,
        39,
        39,
        40,
        40,
        41,
        41,
        42,
        42,
        43,
        43,
        43,
        44,
        44,
        45,
        45,
        46,
        46,
        47,
        47,
    ],
}
PAPER_ALPHA_01 = {  # p -> m(1..12) at alpha = 0.1
    0.1: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    0.2: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1],
    0.3: [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2],
    0.4: [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3],
    0.5: [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4],
    0.6: [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5],
    0.7: [0, 1, 1, 2, 2, 3, 3, 4, 5, 5, 6, 6],
}


@pytest.mark.parametrize("params", sorted(FAIRSEARCHCORE_UNADJUSTED))
def test_unadjusted_table_matches_fairsearchcore(params):
    assert mtable(*params).tolist() == FAIRSEARCHCORE_UNADJUSTED[params]


@pytest.mark.parametrize("params", sorted(JAVA_UNADJUSTED))
def test_unadjusted_table_matches_the_java_fixtures(params):
    assert mtable(*params).tolist() == JAVA_UNADJUSTED[params]


@pytest.mark.parametrize("p", sorted(PAPER_ALPHA_01))
def test_unadjusted_table_matches_the_paper(p):
    assert mtable(12, p, 0.1).tolist() == PAPER_ALPHA_01[p]


def test_unadjusted_table_p05_alpha01_to_k20_is_the_binomial_quantile():
    expected = [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 5, 6, 6, 7, 7]
    assert mtable(20, 0.5, 0.1).tolist() == expected
    assert binom.ppf(0.1, np.arange(1, 21), 0.5).astype(int).tolist() == expected


@pytest.mark.parametrize("params", sorted(FAIRSEARCHCORE_ADJUSTED))
def test_adjusted_table_matches_fairsearchcore(params):
    adjusted = adjusted_mtable(*params)
    assert adjusted.table.tolist() == FAIRSEARCHCORE_ADJUSTED[params]
    assert adjusted.fail_prob == pytest.approx(FAIRSEARCHCORE_FAIL_PROB[params], abs=1e-4)


@pytest.mark.parametrize("params", sorted(FAIRSEARCHCORE_ADJUSTED))
def test_fail_probability_of_the_published_adjusted_tables(params):
    p = params[1]
    assert fail_probability(FAIRSEARCHCORE_ADJUSTED[params], p) == pytest.approx(
        FAIRSEARCHCORE_FAIL_PROB[params], abs=1e-4
    )


@pytest.mark.parametrize(("params", "published_alpha_c"), [((10, 0.2, 0.15), 0.15), ((20, 0.25, 0.1), 0.078125)])
def test_published_alpha_c_gives_the_same_table(params, published_alpha_c):
    """fairsearchcore's adjusted alpha lies in the interval of alphas that give our table."""
    k, p, _ = params
    adjusted = adjusted_mtable(*params)
    assert published_alpha_c <= adjusted.alpha_c + 1e-12
    assert mtable(k, p, published_alpha_c).tolist() == adjusted.table.tolist()


def test_exhaustive_search_is_nearer_than_a_stopped_binary_search():
    """For (30, 0.3, 0.15) fairsearchcore's binary search stops at alpha_c = 0.0796875, whose
    table fails a fair list with probability 0.166; a table with 0.147 exists and is ours."""
    k, p, alpha = 30, 0.3, 0.15
    ours = adjusted_mtable(k, p, alpha)
    theirs = fail_probability(mtable(k, p, 0.0796875), p)
    assert theirs == pytest.approx(0.16635, abs=1e-4)
    assert abs(ours.fail_prob - alpha) < abs(theirs - alpha)
    assert ours.fail_prob == pytest.approx(0.14674, abs=1e-4)


def test_adjusting_never_raises_the_table():
    for k, p, alpha in [(10, 0.5, 0.1), (20, 0.25, 0.1), (40, 0.3, 0.05), (12, 0.7, 0.2)]:
        assert (adjusted_mtable(k, p, alpha).table <= mtable(k, p, alpha)).all()


@pytest.mark.parametrize(("k", "p", "alpha"), [(10, 0.5, 0.1), (20, 0.25, 0.1), (15, 0.6, 0.05)])
def test_at_most_rule_keeps_the_failure_probability_at_or_below_alpha(k, p, alpha):
    strict = adjusted_mtable(k, p, alpha, "at_most")
    assert strict.fail_prob <= alpha
    assert (strict.table <= adjusted_mtable(k, p, alpha).table).all()


@pytest.mark.parametrize(("k", "p"), [(1, 0.5), (6, 0.3), (10, 0.5), (12, 0.7)])
def test_fail_probability_is_exact(k, p):
    """Against brute force over all 2**k protected/unprotected sequences."""
    table = mtable(k, p, 0.2)
    seqs = np.array(list(itertools.product([0, 1], repeat=k)))
    prob = np.prod(np.where(seqs == 1, p, 1 - p), axis=1)
    fails = (np.cumsum(seqs, axis=1) < table).any(axis=1)
    assert fail_probability(table, p) == pytest.approx(prob[fails].sum(), abs=1e-12)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 0.5, 0.1), "The 'k' parameter of FA*IR must be an int in the range [1, inf). Got 0 instead."),
        ((10, 1.0, 0.1), "The 'p' parameter of FA*IR must be a float in the range (0, 1). Got 1.0 instead."),
        ((10, 0.5, 0.0), "The 'alpha' parameter of FA*IR must be a float in the range (0, 1). Got 0.0 instead."),
    ],
)
def test_bad_table_parameters_are_named(args, message):
    with pytest.raises(ConfigError) as err:
        mtable(*args)
    assert str(err.value) == message


# -- the algorithm ------------------------------------------------------------------------
def _run(groups_in_order, k, **params):
    """Re-rank one list whose candidate i (best first) is item i of group groups_in_order[i]."""
    n = len(groups_in_order)
    cands = Candidates(
        items=np.arange(n)[None, :],
        scores=np.linspace(1.0, 0.0, n, dtype=np.float32)[None, :],
        item_group=np.asarray(groups_in_order, dtype=np.int64),
    )
    return FairStarReranker(**params)(cands, k)


def _java_fixture(np_docs, p_docs, k):
    """The Java FairTopK fixtures: doc ids with scores; unprotected and protected queues."""
    docs = sorted([(s, d, 0) for d, s in np_docs] + [(s, d, 1) for d, s in p_docs], reverse=True)
    ids = [d for _, d, _ in docs]
    out = _run([g for _, _, g in docs], k, p=0.6, alpha=0.1, adjust_alpha=False)
    return [ids[i] for i in out.items[0] if i >= 0]


def test_java_fixture_ten_elements():
    ranking = _java_fixture([(1, 10), (3, 9), (5, 8), (7, 7), (9, 6)], [(2, 5), (4, 4), (6, 3), (8, 2), (10, 1)], 10)
    assert ranking == [1, 3, 2, 5, 4, 7, 6, 9, 8, 10]


def test_java_fixture_few_protected():
    np_docs = [(1, 10), (3, 9), (5, 8), (7, 7), (9, 6), (2, 5), (4, 4)]
    ranking = _java_fixture(np_docs, [(6, 3), (8, 2), (10, 1)], 10)
    assert ranking == [1, 3, 6, 5, 8, 7, 10, 9, 2, 4]


def test_java_fixture_no_protected():
    np_docs = [(1, 10), (3, 9), (5, 8), (7, 7), (9, 6), (2, 5), (4, 4), (6, 3), (8, 2), (10, 1)]
    assert _java_fixture(np_docs, [], 10) == [1, 3, 5, 7, 9, 2, 4, 6, 8, 10]


def test_java_fixture_k_larger_than_the_list_pads():
    ranking = _java_fixture([(1, 10), (3, 9), (5, 8), (7, 7), (9, 6)], [(2, 5), (4, 4), (6, 3), (8, 2), (10, 1)], 20)
    assert ranking == [1, 3, 2, 5, 4, 7, 6, 9, 8, 10]


def test_regression_lenskit_938_protected_item_ranked_first_stays_first():
    """LensKit #938: protected items were used only when the table required one, so a
    protected item ranked above unprotected ones was pushed below them."""
    out = _run([1, 0, 0, 1, 0, 0, 1, 0, 0, 1], 10, p=0.3, alpha=0.1)
    assert out.items[0].tolist() == list(range(10))
    assert out.moves[0].tolist() == [0] * 10
    assert out.constraints_met["fair_star"].tolist() == [True]


def test_regression_lenskit_938_fair_list_is_unchanged():
    groups = [0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0]
    out = _run(groups, 12, p=0.5, alpha=0.1)
    assert out.items[0].tolist() == list(range(12))


def test_promotions_are_recorded_as_provider_fairness():
    out = _run([0] * 8 + [1] * 4, 10, p=0.5, alpha=0.1, adjust_alpha=False)
    table = mtable(10, 0.5, 0.1)
    protected = out.items[0] >= 8
    assert (np.cumsum(protected) >= table).all()
    assert (out.moves[0][protected] == Reason.provider_fairness).all()
    assert (out.moves[0][~protected] == Reason.model).all()
    assert (out.moved_by[0][protected] == 0).all()


def test_constraint_fails_when_candidates_lack_protected_items():
    out = _run([0] * 12, 10, p=0.5, alpha=0.1)
    assert out.constraints_met["fair_star"].tolist() == [False]


def test_unknown_group_is_not_protected_and_other_protected_code_works():
    out = _run([-1, -1, -1, -1, 2, 2, 2, 2], 8, p=0.5, alpha=0.1, adjust_alpha=False, protected_group=2)
    assert (np.cumsum(out.items[0] >= 4) >= mtable(8, 0.5, 0.1)).all()


def _reference_fair_star(groups_row: list[int], k: int, table: np.ndarray) -> list[int]:
    """The paper's algorithm, one list, plainly: positions of the chosen candidates."""
    prot = [i for i, g in enumerate(groups_row) if g == 1]
    other = [i for i, g in enumerate(groups_row) if g != 1]
    out, tp = [], 0
    for i in range(min(k, len(groups_row))):
        if prot and (tp < table[i] or not other or prot[0] < other[0]):
            out.append(prot.pop(0))
            tp += 1
        elif other:
            out.append(other.pop(0))
    return out


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_users=st.integers(1, 6),
    c=st.integers(1, 25),
    k=st.integers(1, 20),
    p=st.sampled_from([0.2, 0.3, 0.5, 0.7]),
    alpha=st.sampled_from([0.05, 0.1, 0.2]),
    adjust=st.booleans(),
)
def test_vectorized_fair_star_equals_the_plain_algorithm(seed, n_users, c, k, p, alpha, adjust):
    rng = np.random.default_rng(seed)
    n_items = c + 10
    item_group = rng.choice([-1, 0, 1], size=n_items, p=[0.1, 0.6, 0.3])
    items = np.stack([rng.permutation(n_items)[:c] for _ in range(n_users)])
    lengths = rng.integers(0, c + 1, n_users)
    items[np.arange(c)[None, :] >= lengths[:, None]] = -1
    scores = np.sort(rng.random((n_users, c)), axis=1)[:, ::-1].astype(np.float32)
    cands = Candidates(items=items, scores=scores, item_group=item_group)
    step = FairStarReranker(p=p, alpha=alpha, adjust_alpha=adjust)
    out = step(cands, k)
    table = step.table(k)
    for u in range(n_users):
        row = items[u][items[u] >= 0]
        expected = [int(row[i]) for i in _reference_fair_star([int(item_group[i]) for i in row], k, table)]
        got = [int(i) for i in out.items[u] if i >= 0]
        assert got == expected
        protected = item_group[out.items[u][out.items[u] >= 0]] == 1
        enough = (item_group[row] == 1).sum() >= table[len(got) - 1] if got else True
        if enough:  # with enough protected candidates every prefix passes
            assert out.constraints_met["fair_star"][u]
        assert out.constraints_met["fair_star"][u] == bool((np.cumsum(protected) >= table[: len(got)]).all())


def test_ranked_group_fair_ignores_places_beyond_a_short_list():
    table = np.array([0, 1, 1, 2])
    protected = np.array([[False, True, False, False]])
    filled = np.array([[True, True, True, False]])
    assert ranked_group_fair(protected, filled, table).tolist() == [True]


def test_config_rejects_unknown_keys_and_out_of_range_values():
    with pytest.raises(ValidationError):
        FairStarConfig(p=0.5, alhpa=0.1)
    with pytest.raises(ValidationError):
        FairStarConfig(p=1.5)
    with pytest.raises(ValidationError):
        FairStarConfig(alpha=0.0)


def test_pipeline_uses_the_table_of_the_requested_k():
    """LensKit fixes n at training time and warns when called with another; here the table follows k."""
    step = FairStarReranker(p=0.5, alpha=0.1)
    assert len(step.table(7)) == 7 and len(step.table(25)) == 25
    out = build_pipeline([FairStarConfig(p=0.5, alpha=0.1)])(
        Candidates(
            items=np.arange(30)[None, :],
            scores=np.zeros((1, 30)),
            item_group=np.r_[np.zeros(20), np.ones(10)].astype(int),
        ),
        25,
    )
    assert out.constraints_met["fair_star"].tolist() == [True]


@pytest.mark.parametrize(
    ("k", "p", "alpha"),
    [(10, 0.2, 0.15), (20, 0.25, 0.1), (30, 0.3, 0.05), (30, 0.3, 0.15), (25, 0.5, 0.1), (40, 0.7, 0.3)],
)
@pytest.mark.parametrize("rule", ["nearest", "at_most"])
def test_bisection_finds_the_table_an_exhaustive_search_finds(k, p, alpha, rule):
    cdf = binom.cdf(np.arange(k + 1)[None, :], np.arange(1, k + 1)[:, None], p)
    alphas = np.append(np.unique(cdf[cdf < alpha]), alpha)
    tables = [(cdf < a).sum(axis=1) for a in alphas]
    fails = np.array([fail_probability(t, p) for t in tables])
    assert (np.diff(fails) >= 0).all(), "the failure probability grows with alpha_c"
    if rule == "nearest":
        best = int(np.argmin(np.abs(fails - alpha)))
    else:
        best = int(np.flatnonzero(fails <= alpha)[-1])
    got = adjusted_mtable(k, p, alpha, rule)
    assert got.table.tolist() == tables[best].tolist()
    assert got.alpha_c == pytest.approx(alphas[best])


def test_a_long_list_adjusts_quickly():
    import time

    start = time.perf_counter()
    adjusted = adjusted_mtable(400, 0.4, 0.1)
    assert time.perf_counter() - start < 5
    assert abs(adjusted.fail_prob - 0.1) < 0.05
