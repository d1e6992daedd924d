"""The metrics the fairness literature cites, cross-checked against their anchors.

Holistic AI's own functions (installed) for exposure entropy, KL, total
variation, aggregate diversity, Gini and MAD; for Elliot's PopREO, PopRSP, ACLT,
MAD and BiasDisparity and LensKit's RBP and ExposureGini (which do not install
beside this project's pandas) a per-user loop that follows the anchor's code
line by line, with sets; for Diaz et al.'s expected exposure and Biega et al.'s
equity of attention a dense brute force from the papers' definitions; and
hand-computed cases that fail when a formula is off by a constant.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp

from recommender import metrics as M
from recommender.errors import DataError
from recommender.fairness import (
    aclt,
    aggregate_diversity,
    bias_disparity,
    equity_of_attention,
    expected_exposure,
    exposure_entropy,
    exposure_kl,
    exposure_l1,
    item_mad,
    pop_reo,
    pop_rsp,
    rank_biased_precision,
    rank_weighted_exposure_gini,
    serendipity,
    user_mad,
)


def _random_case(seed: int, n_users: int = 40, n_items: int = 30, k: int = 6):
    rng = np.random.default_rng(seed)
    pop = rng.pareto(1.2, n_items) * 10
    hist = sp.csr_matrix(rng.random((n_users, n_items)) < 0.15)
    test = sp.csr_matrix((rng.random((n_users, n_items)) < 0.12).astype(int) * (hist.toarray() == 0))
    rec = np.array([rng.choice(n_items, size=k, replace=False) for _ in range(n_users)])
    rec[rng.random(n_users) < 0.1, -2:] = -1  # a few short lists
    return rng, pop, hist, test, rec


def _binary(rec: np.ndarray, n_items: int) -> np.ndarray:
    out = np.zeros((rec.shape[0], n_items))
    for u, row in enumerate(rec):
        out[u, row[row >= 0]] = 1
    return out


def _sets(matrix: sp.csr_matrix) -> list[set[int]]:
    return [set(matrix[u].indices.tolist()) for u in range(matrix.shape[0])]


# -- Holistic AI ------------------------------------------------------------------------------
@pytest.fixture
def holistic():
    """Holistic AI's recommender metrics (a test dependency; skipped where it is not installed)."""
    return pytest.importorskip("holisticai.bias.metrics")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exposure_distribution_metrics_match_holistic_ai(seed: int, holistic) -> None:
    _, _, _, _, rec = _random_case(seed)
    n_items = 30
    binary = _binary(rec, n_items)
    groups = np.where(np.arange(len(rec)) % 3 == 0, "a", "b")
    assert aggregate_diversity(rec, n_items) == pytest.approx(holistic.aggregate_diversity(binary, top=None, thresh=0.5))
    assert exposure_entropy(rec, n_items) == pytest.approx(holistic.exposure_entropy(binary, top=None, thresh=0.5))
    a, b = (groups == "a").astype(int), (groups == "b").astype(int)
    assert exposure_l1(rec, n_items, groups, "a", "b") == pytest.approx(holistic.exposure_l1(a, b, binary, top=None, thresh=0.5))
    ours_kl = exposure_kl(rec, n_items, groups, "a", "b")
    theirs_kl = holistic.exposure_kl(a, b, binary, top=None, thresh=0.5)
    assert ours_kl == pytest.approx(theirs_kl) or (math.isinf(ours_kl) and math.isinf(theirs_kl))
    # Holistic AI's Gini is the sample-corrected one, n/(n-1) times the plain coefficient LensKit uses
    plain = rank_weighted_exposure_gini(rec, n_items, attention="uniform")
    assert plain * n_items / (n_items - 1) == pytest.approx(holistic.gini_index(binary, top=None, thresh=0.5))


def test_exposure_kl_is_finite_when_supports_match_holistic(holistic) -> None:
    rec = np.array([[0, 1, 2], [2, 1, 0], [0, 2, 1], [1, 0, 2]])
    groups = ["a", "a", "b", "b"]
    binary = _binary(rec, 3)
    ours = exposure_kl(rec, 3, groups, "a", "b")
    assert ours == pytest.approx(holistic.exposure_kl(np.array([1, 1, 0, 0]), np.array([0, 0, 1, 1]), binary, thresh=0.5))
    assert ours == 0.0


def test_user_mad_matches_holistic_ai_mad_score_for_two_groups(holistic) -> None:
    rng = np.random.default_rng(5)
    scores = rng.random((12, 7))
    groups = np.array(["a"] * 5 + ["b"] * 7)
    theirs = holistic.mad_score((groups == "a").astype(int), (groups == "b").astype(int), scores)
    assert user_mad(scores.mean(axis=1), groups).value == pytest.approx(abs(theirs))


# -- Elliot (line-by-line loop references) ----------------------------------------------------------
# Elliot iterates over the users it has recommendations for: a row of -1 alone (served nothing) is not one.
def _elliot_reo(rec, test_sets, train_sets, short_head, long_tail):
    num, den = [], []
    for u in range(len(rec)):
        rel = test_sets[u]
        if not rel or not (rec[u] >= 0).any():
            continue
        recommended = {i for i in rec[u] if i >= 0 and i in rel}
        num.append([len(recommended & short_head), len(recommended & long_tail)])
        den.append([len((short_head & rel) - train_sets[u]), len((long_tail & rel) - train_sets[u])])
    pr = np.sum(num, axis=0) / np.sum(den, axis=0)
    return np.std(pr) / np.mean(pr)


def _elliot_rsp(rec, train_sets, short_head, long_tail):
    num, den = [], []
    for u in range(len(rec)):
        recommended = {i for i in rec[u] if i >= 0}
        if not recommended:
            continue
        num.append([len(recommended & short_head), len(recommended & long_tail)])
        den.append([len(short_head - train_sets[u]), len(long_tail - train_sets[u])])
    pr = np.sum(num, axis=0) / np.sum(den, axis=0)
    return np.std(pr) / np.mean(pr)


@pytest.mark.parametrize("seed", [0, 3, 7])
@pytest.mark.parametrize("unserved", [False, True])
def test_pop_reo_rsp_aclt_match_elliot_loops(seed: int, unserved: bool) -> None:
    rng, pop, hist, test, rec = _random_case(seed)
    if unserved:  # some users were served nothing at all (their rows are padding only)
        rec[rng.random(len(rec)) < 0.25] = -1
        assert not (rec >= 0).any(axis=1).all()
    tail = M.long_tail_items(pop, 0.8)
    short_head, long_tail = set(np.flatnonzero(~tail).tolist()), set(np.flatnonzero(tail).tolist())
    train_sets, test_sets = _sets(hist), _sets(test)
    reo = pop_reo(rec, test, hist, popularity=pop)
    assert reo.value == pytest.approx(_elliot_reo(rec, test_sets, train_sets, short_head, long_tail))
    rsp = pop_rsp(rec, hist, popularity=pop)
    assert rsp.value == pytest.approx(_elliot_rsp(rec, train_sets, short_head, long_tail))
    assert rsp.users == reo.users == int((rec >= 0).any(axis=1).sum())
    served = [row for row in rec if (row >= 0).any()]
    expected_aclt = [len({i for i in row if i >= 0} & long_tail) if (row >= 0).any() else None for row in rec]
    ours = aclt(rec, pop)
    assert [None if math.isnan(v) else v for v in ours.tolist()] == expected_aclt
    assert M.defined_mean(ours) == pytest.approx(np.mean([len({i for i in r if i >= 0} & long_tail) for r in served]))


def test_pop_rsp_by_hand_leaves_out_a_user_served_nothing() -> None:
    # head items 0,1; tail 2,3. User 0 saw item 1 and got [0, 2]; user 1 (saw item 3) was served nothing.
    # User 0 alone: P(h) = 1 / |{0,1} - {1}| = 1, P(t) = 1 / |{2,3}| = 0.5; RSP = .25 / .75.
    hist = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 1]]))
    groups = ["h", "h", "t", "t"]
    rep = pop_rsp(np.array([[0, 2], [-1, -1]]), hist, item_groups=groups)
    assert rep.numerator == {"h": 1, "t": 1}
    assert rep.denominator == {"h": 1, "t": 2}  # counting user 1 too would give {h: 3, t: 3} and RSP 0
    assert rep.probability == {"h": 1.0, "t": 0.5}
    assert rep.value == pytest.approx(1 / 3)
    assert rep.users == 1
    alone = pop_rsp(np.array([[0, 2]]), hist[:1], item_groups=groups)
    assert (alone.value, alone.denominator) == (rep.value, rep.denominator)


def test_pop_reo_and_aclt_by_hand_leave_out_a_user_served_nothing() -> None:
    # Test positives: user 0 {0, 2} (list [0, 1] hits 0), user 1 {1, 3} but served nothing.
    # User 0 alone: P(h) = 1/1, P(t) = 0/1; REO = std([1, 0]) / mean = .5 / .5 = 1.
    # Counting user 1's positives would give P(h) = 1/2, P(t) = 0/2 (the same REO by luck), so check the parts.
    rel = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 0, 1]]))
    rep = pop_reo(np.array([[0, 1], [-1, -1]]), rel, sp.csr_matrix((2, 4)), item_groups=["h", "h", "t", "t"])
    assert rep.denominator == {"h": 1, "t": 1} and rep.numerator == {"h": 1, "t": 0}
    assert rep.probability == {"h": 1.0, "t": 0.0} and rep.value == pytest.approx(1.0)
    # A third user served [3] with positive {3}: P(t) = 1/2 over users 0 and 2, not 1/3 with user 1's item 3.
    rel3 = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 0, 1]]))
    rep3 = pop_reo(np.array([[0, 1], [-1, -1], [3, -1]]), rel3, sp.csr_matrix((3, 4)), item_groups=["h", "h", "t", "t"])
    assert rep3.probability == {"h": 1.0, "t": 0.5} and rep3.users == 2
    assert rep3.value == pytest.approx(1 / 3)  # std([1, .5]) / mean
    # ACLT: tail = items 2, 3 (popularity 1 and 0 of 16 fall outside the 80% head)
    per_user = aclt(np.array([[0, 2], [-1, -1], [2, 3]]), np.array([10.0, 5.0, 1.0, 0.0]))
    assert per_user[0] == 1.0 and math.isnan(per_user[1]) and per_user[2] == 2.0
    assert M.defined_mean(per_user) == pytest.approx(1.5)  # not 1.0 with the unserved user as a zero


def test_pop_reo_by_hand_fails_off_by_a_constant() -> None:
    # head items 0,1; tail 2,3. Test positives: user 0 {0, 2}, user 1 {1, 3}; lists hit 0 and 1 and 3.
    rel = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 0, 1]]))
    rep = pop_reo(np.array([[0, 1], [1, 3]]), rel, sp.csr_matrix((2, 4)), item_groups=["h", "h", "t", "t"])
    assert rep.probability == {"h": 1.0, "t": 0.5}
    # std([1, .5]) / mean = .25 / .75 (population std, as Elliot's np.std)
    assert rep.value == pytest.approx(1 / 3)


def test_bias_disparity_matches_elliot_loop() -> None:
    _, _, hist, _, rec = _random_case(11)
    n_users, n_items = hist.shape
    rng = np.random.default_rng(11)
    user_group = rng.integers(0, 3, n_users)
    item_cat = rng.integers(0, 4, n_items)
    out = bias_disparity(rec, hist, user_group, item_cat)

    def elliot(pairs):
        cat_sum, total = np.zeros((3, 4)), np.zeros(3)
        for u, i in pairs:
            cat_sum[user_group[u], item_cat[i]] += 1
            total[user_group[u]] += 1
        pc = np.array([np.sum(item_cat == c) / n_items for c in range(4)])
        return ((cat_sum.T / total).T) / pc

    bs = elliot([(u, i) for u in range(n_users) for i in hist[u].indices])
    br = elliot([(u, i) for u in range(n_users) for i in rec[u] if i >= 0])
    np.testing.assert_allclose(out.bs, bs)
    np.testing.assert_allclose(out.br, br)
    np.testing.assert_allclose(out.bd, (br - bs) / bs)


def test_item_and_user_mad_match_elliot_loops() -> None:
    _, _, _, test, rec = _random_case(4)
    n_items = test.shape[1]
    item_group = np.arange(n_items) % 3
    count, gain = {}, {}
    test_sets = _sets(test)
    for u, row in enumerate(rec):
        for i in row[row >= 0]:
            count[i] = count.get(i, 0) + 1
            gain[i] = gain.get(i, 0) + (1 if i in test_sets[u] else 0)
    sums, ns = np.zeros(3), np.zeros(3)
    for i in gain:
        sums[item_group[i]] += gain[i] / count[i]
        ns[item_group[i]] += 1
    avg = sums / ns
    expected = np.average([abs(avg[i] - avg[j]) for i in range(3) for j in range(i + 1, 3)])
    assert item_mad(rec, test, item_group).value == pytest.approx(expected)
    ndcg = M.ndcg_at_k(rec, test)
    user_group = np.arange(len(rec)) % 4
    ok = ~np.isnan(ndcg)
    means = [ndcg[ok & (user_group == g)].mean() for g in range(4)]
    expected_u = np.mean([abs(a - b) for a, b in itertools.combinations(means, 2)])
    assert user_mad(ndcg, user_group).value == pytest.approx(expected_u)


# -- LensKit (formula references) -------------------------------------------------------------------
def test_rbp_matches_lenskit_definition_and_hand_case() -> None:
    _, _, _, test, rec = _random_case(2)
    test_sets = _sets(test)
    p = 0.85
    for normalize in (False, True):
        ours = rank_biased_precision(rec, test, patience=p, normalize=normalize)
        for u, row in enumerate(rec):
            row = row[row >= 0]
            if not test_sets[u]:
                assert np.isnan(ours[u])
                continue
            w = p ** np.arange(len(rec[u]))  # LensKit weights every rank of the (padded) cutoff
            good = np.array([i in test_sets[u] for i in row] + [False] * (len(rec[u]) - len(row)))
            norm = w[: min(len(test_sets[u]), len(rec[u]))].sum() if normalize else 1 / (1 - p)
            assert ours[u] == pytest.approx(w[good].sum() / norm)
    # hand case (Moffat & Zobel): relevant at ranks 1 and 3, p = 0.5 -> (1 - .5)(1 + .25) = .625
    rel = sp.csr_matrix(np.array([[1, 0, 1]]))
    assert rank_biased_precision(np.array([[0, 1, 2]]), rel, patience=0.5)[0] == 0.625


def test_rank_weighted_gini_matches_lenskit_formula() -> None:
    _, _, _, _, rec = _random_case(8)
    n_items, p = 30, 0.85
    exp = np.zeros(n_items)
    for row in rec:
        for r, i in enumerate(row):
            if i >= 0:
                exp[i] += p**r
    xs = np.sort(exp)
    n = len(xs)
    ranks = 2 * np.arange(1, n + 1) - (n + 1)
    assert rank_weighted_exposure_gini(rec, n_items, patience=p) == pytest.approx(max((xs * ranks).sum() / (n * xs.sum()), 0))


def test_serendipity_by_hand() -> None:
    rel = sp.csr_matrix(np.array([[1, 1, 0, 1], [0, 0, 1, 0]]))
    rec = np.array([[0, 1, 3, -1], [2, 3, 0, 1]])
    pm = np.array([[0, -1], [1, 2]])
    # user 0: relevant 0, 1, 3; 0 expected -> 2 of 3 listed; user 1: 2 relevant but expected -> 0 of 4
    assert serendipity(rec, rel, pm).tolist() == [2 / 3, 0.0]


# -- amortised exposure (papers' definitions, dense brute force) -----------------------------------
def _dense_ee(users, rec, rel, hist, p):
    n_users, n_items = rel.shape
    k = rec.shape[1]
    w = p ** np.arange(k)
    R, H = rel.toarray() > 0, hist.toarray() > 0
    R &= ~H
    per_list, per_user = [], []
    eps_u, cnt = np.zeros((n_users, n_items)), np.zeros(n_users)
    targets = np.zeros((n_users, n_items))
    for u in range(n_users):
        m = R[u].sum()
        cand = ~H[u]
        order = np.zeros(n_items)
        # Diaz et al.: ideal policy shuffles within relevance levels; expected exposure = mean over the level's ranks
        exposures = np.concatenate([w, np.zeros(max(cand.sum() - k, 0))])[: cand.sum()]
        order[R[u]] = exposures[:m].mean() if m else 0
        others = cand & ~R[u]
        order[others] = exposures[m:].mean() if others.sum() else 0
        targets[u] = order
    for u, row in zip(users, rec):
        if R[u].sum() == 0:
            continue
        e = np.zeros(n_items)
        e[row[row >= 0]] = w[: (row >= 0).sum()]
        per_list.append(((e - targets[u]) ** 2).sum())
        eps_u[u] += e
        cnt[u] += 1
    served = cnt > 0
    eps_u[served] /= cnt[served, None]
    per_user = [((eps_u[u] - targets[u]) ** 2).sum() for u in np.flatnonzero(served)]
    pooled_e = (eps_u * cnt[:, None]).sum(axis=0) / cnt.sum()
    pooled_t = (targets * cnt[:, None]).sum(axis=0) / cnt.sum()
    return np.mean(per_list), np.mean(per_user), ((pooled_e - pooled_t) ** 2).sum()


@pytest.mark.parametrize("seed", [0, 1])
def test_expected_exposure_matches_dense_definition(seed: int) -> None:
    rng, _, hist, test, rec = _random_case(seed, n_users=12, n_items=15, k=5)
    users = rng.integers(0, 12, 60)  # the same users served repeatedly
    lists = np.array([rng.choice(15, 5, replace=False) for _ in users])
    out = expected_exposure(users, lists, test, hist, patience=0.7)
    per_list, per_user, pooled = _dense_ee(users, lists, test, hist, 0.7)
    assert out.ee_l.per_list == pytest.approx(per_list)
    assert out.ee_l.per_user == pytest.approx(per_user)
    assert out.ee_l.pooled == pytest.approx(pooled)
    assert out.n_requests + out.n_left_out == len(users)


def test_amortisation_lowers_expected_exposure_loss_when_lists_rotate() -> None:
    # one user, three relevant items, lists rotating them: ideal over time, not in any one list
    rel = sp.csr_matrix(np.array([[1, 1, 1, 0, 0, 0]]))
    lists = np.array([[0, 1, 2], [1, 2, 0], [2, 0, 1]])
    out = expected_exposure(np.zeros(3, dtype=int), lists, rel)
    assert out.ee_l.per_user == pytest.approx(0.0, abs=1e-12)
    assert out.ee_l.per_list > 0.1


def _dense_equity(users, rec, rel, p, groups=None):
    n_items = rel.shape[1]
    groups = np.arange(n_items) if groups is None else groups
    n_g = groups.max() + 1
    R = rel.toarray() > 0
    w = p ** np.arange(rec.shape[1])
    A, P, per_list, by_user = [], [], [], {}
    for u, row in zip(users, rec):
        if not R[u].any():
            continue
        a, rho = np.zeros(n_g), np.zeros(n_g)
        ok = row >= 0
        np.add.at(a, groups[row[ok]], w[: ok.sum()] / w[: ok.sum()].sum())
        np.add.at(rho, groups[np.flatnonzero(R[u])], 1 / R[u].sum())
        per_list.append(np.abs(a - rho).sum())
        A.append(a)
        P.append(rho)
        by_user.setdefault(u, []).append((a, rho))
    pooled = np.abs(np.sum(A, axis=0) - np.sum(P, axis=0)).sum() / len(A)
    per_user = np.mean([np.abs(np.mean([x[0] for x in v], axis=0) - np.mean([x[1] for x in v], axis=0)).sum() for v in by_user.values()])
    return np.mean(per_list), per_user, pooled


@pytest.mark.parametrize("grouped", [False, True])
def test_equity_of_attention_matches_dense_definition(grouped: bool) -> None:
    rng, _, _, test, _ = _random_case(6, n_users=10, n_items=12, k=4)
    users = rng.integers(0, 10, 50)
    lists = np.array([rng.choice(12, 4, replace=False) for _ in users])
    lists[::7, -1] = -1
    groups = np.arange(12) % 4 if grouped else None
    out = equity_of_attention(users, lists, test, item_groups=groups, patience=0.6)
    per_list, per_user, pooled = _dense_equity(users, lists, test, 0.6, groups)
    assert out.unfairness.per_list == pytest.approx(per_list)
    assert out.unfairness.per_user == pytest.approx(per_user)
    assert out.unfairness.pooled == pytest.approx(pooled)
    if grouped:
        assert sum(out.pooled_attention_share.values()) == pytest.approx(1.0)
        assert out.level == "provider"


def test_bad_inputs_give_located_errors() -> None:
    rel = sp.csr_matrix(np.eye(3))
    with pytest.raises(DataError, match="users"):
        expected_exposure(np.array([0, 5]), np.array([[0], [1]]), rel)
    with pytest.raises(DataError, match="item_groups"):
        pop_reo(np.array([[0]] * 3), rel, rel, item_groups=["a", "b"])
    with pytest.raises(DataError, match="popularity"):
        pop_rsp(np.array([[0]] * 3), rel)
    with pytest.raises(DataError, match="no user is in group 'z'"):
        exposure_l1(np.array([[0]] * 3), 3, ["a", "b", "b"], "a", "z")


def test_nothing_shown_is_undefined_not_zero() -> None:
    empty = np.full((3, 4), -1)
    assert math.isnan(exposure_entropy(empty, 5))
    assert math.isnan(exposure_kl(empty, 5, ["a", "b", "a"], "a", "b"))
    assert math.isnan(exposure_l1(empty, 5, ["a", "b", "a"], "a", "b"))
    assert math.isnan(rank_weighted_exposure_gini(empty, 5))
    assert aggregate_diversity(empty, 5) == 0.0
    rel = sp.csr_matrix((3, 5))
    assert math.isnan(pop_rsp(empty, rel, popularity=np.ones(5)).value)
    assert not any(pop_rsp(empty, rel, popularity=np.ones(5)).denominator.values())  # nobody counted
    some = sp.csr_matrix(np.eye(3, 5))
    assert math.isnan(pop_reo(empty, some, rel, popularity=np.ones(5)).value)
    assert np.isnan(aclt(empty, np.ones(5))).all()
    with pytest.raises(DataError, match="one int user row per request"):
        expected_exposure(np.array([0.5]), np.zeros((1, 3), dtype=int), rel)
