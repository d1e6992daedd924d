"""The re-rankers: a contract every one passes, then each one's own behaviour, then composition.

The contract (after LensKit's ``BasicComponentTests`` and scikit-learn's
``parametrize_with_checks``): default construction, config round trip, unknown
keys rejected, documented fields, and on random batches (hypothesis) outputs
that are permutations of a subset of the candidates (no invented items, no
duplicates, padding only at the end, ``k`` respected), neutral parameters
returning the model order, reproducibility and independence from chunking.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from governance.rerank import (
    UNKNOWN_RERANKER,
    CalibrationConfig,
    CalibrationReranker,
    Candidates,
    ExplorationConfig,
    ExplorationReranker,
    ExposureCapConfig,
    ExposureCapReranker,
    FairStarConfig,
    MMRConfig,
    MMRReranker,
    Pipeline,
    PopularityDebiasConfig,
    PopularityDebiasReranker,
    Reason,
    Reranker,
    build_pipeline,
    config_from_params,
    get_reranker,
    history_category_distribution,
    registered_rerankers,
)
from governance.rerank.base import BAD_K, MISSING_INPUT
from recommender.base import RecommendationBatch
from recommender.errors import ConfigError, DataError

RERANKERS = registered_rerankers()

NEUTRAL_PARAMS: dict[str, dict] = {
    "fair_star": {"p": 0.01, "alpha": 0.01},  # a table of zeros at these sizes: nothing to enforce
    "mmr": {"tradeoff": 0.0},
    "calibration": {"tradeoff": 0.0},
    "provider_calibration": {"tradeoff": 0.0},
    "popularity_debias": {"beta": 0.0},
    "exposure_cap": {"max_share": 1.0},
    "exploration": {"epsilon": 0.0},
    "group_proportions": {"targets": {}},  # no targets: the model order
    "amortised_exposure": {"weight": 0.0},  # debt weighs nothing: the model order (the ledger still counts)
    "exposure_targets": {"targets": {}},  # no targets: the model order
}
ACTIVE_PARAMS: dict[str, dict] = {
    "fair_star": {"p": 0.6, "alpha": 0.1},
    "mmr": {"tradeoff": 0.6},
    "calibration": {"tradeoff": 0.5},
    "provider_calibration": {"tradeoff": 0.75},
    "popularity_debias": {"beta": 1.0},
    "exposure_cap": {"max_share": 0.4, "weighting": "attention"},
    "exploration": {"epsilon": 0.5},
    "group_proportions": {"targets": {0: 0.3, 1: 0.4, 2: 0.3}, "algorithm": "constrained"},
    "amortised_exposure": {"targets": {0: 0.3, 1: 0.4, 2: 0.3}, "weight": 2.0, "ndcg_budget": 0.3, "item_weight": 0.5},
    "exposure_targets": {"targets": {0: 0.4, 1: 0.3, 2: 0.2}, "tolerance": 0.1},
}


def test_the_registry_holds_the_known_rerankers():
    assert sorted(RERANKERS) == sorted(NEUTRAL_PARAMS) == sorted(ACTIVE_PARAMS)


# -- a random batch ------------------------------------------------------------------------
def make_batch(
    seed: int,
    n_users: int = 4,
    c: int = 12,
    n_items: int = 30,
    n_cat: int = 5,
    sorted_scores: bool = True,
    short: bool = True,
) -> Candidates:
    rng = np.random.default_rng(seed)
    n_items = max(n_items, c)
    items = np.stack([rng.permutation(n_items)[:c] for _ in range(n_users)]).astype(np.int64)
    if short:
        lengths = rng.integers(0, c + 1, n_users)
        items[np.arange(c)[None, :] >= lengths[:, None]] = -1
    scores = rng.normal(size=(n_users, c)).astype(np.float32)
    if sorted_scores:
        scores = np.sort(scores, axis=1)[:, ::-1].copy()
    cats = sp.random(n_items, n_cat, density=0.35, random_state=rng, format="csr")
    group = rng.choice([-1, 0, 1, 2], size=n_items, p=[0.05, 0.5, 0.3, 0.15])
    popularity = rng.pareto(1.2, n_items) * 10
    user_dist = rng.dirichlet(np.ones(n_cat), size=n_users)
    seeds = rng.integers(0, 2**31, n_users)
    return Candidates(
        items=items,
        scores=scores,
        item_group=group,
        item_popularity=popularity,
        item_categories=cats,
        user_category_dist=user_dist,
        user_group_dist=rng.dirichlet(np.ones(max(2, int(group.max()) + 1)), size=n_users),  # one per code
        seeds=seeds,
    )


def assert_valid_output(out, cands: Candidates, k: int) -> None:
    n = cands.n_users
    assert out.items.shape == out.scores.shape == out.moves.shape == out.moved_by.shape == (n, k)
    assert out.moves.dtype == np.int8 and out.moved_by.dtype == np.int8
    for u in range(n):
        row = out.items[u]
        filled = row >= 0
        given = cands.items[u][cands.items[u] >= 0]
        n_out = int(filled.sum())
        assert n_out == min(k, len(given)), "k respected, no candidate lost while places remain"
        assert filled[:n_out].all() and not filled[n_out:].any(), "padding only at the end"
        assert len(set(row[filled].tolist())) == n_out, "no duplicates"
        assert set(row[filled].tolist()) <= set(given.tolist()), "no invented items"
        # model scores travel with their items
        lookup = dict(zip(cands.items[u].tolist(), cands.scores[u].tolist()))
        assert np.allclose(out.scores[u][filled], [lookup[i] for i in row[filled]])
        assert np.isnan(out.scores[u][~filled]).all()
        assert (out.moves[u][~filled] == 0).all() and (out.moved_by[u][~filled] == -1).all()
        assert ((out.moves[u] == 0) == (out.moved_by[u] == -1)).all()
        assert set(out.moves[u].tolist()) <= {int(r) for r in Reason}
    for met in out.constraints_met.values():
        assert met.shape == (n,) and met.dtype == bool


# -- the contract --------------------------------------------------------------------------
@pytest.fixture(params=sorted(RERANKERS))
def reranker(request) -> type[Reranker]:
    return RERANKERS[request.param]


def test_name_is_snake_case_and_registered_under_itself(reranker):
    assert reranker.name.isidentifier() and reranker.name == reranker.name.lower()
    assert get_reranker(reranker.name) is reranker


def test_default_construction_and_config_round_trip(reranker):
    step = reranker()
    dumped = step.config.model_dump(mode="json")
    assert reranker.Config.model_validate(json.loads(json.dumps(dumped))) == step.config
    assert config_from_params(reranker.name, dumped) == step.config


def test_config_rejects_unknown_keys(reranker):
    with pytest.raises(ValidationError):
        reranker.Config(no_such_param=1)
    with pytest.raises(ConfigError, match=f"invalid params for re-ranker '{reranker.name}': no_such_param"):
        config_from_params(reranker.name, {"no_such_param": 1})
    with pytest.raises(ConfigError, match="invalid parameters"):
        reranker(no_such_param=1)


def test_every_config_field_is_documented_and_the_schema_builds(reranker):
    schema = reranker.Config.model_json_schema()
    for name, field in reranker.Config.model_fields.items():
        assert field.description, f"{reranker.Config.__name__}.{name} needs a docstring"
        assert schema["properties"][name].get("description")


def test_config_is_frozen(reranker):
    config = reranker.Config()
    with pytest.raises(ValidationError):
        config.__setattr__(next(iter(reranker.Config.model_fields)), None)


def test_wrong_config_type_is_refused(reranker):
    other = next(cls for name, cls in RERANKERS.items() if name != reranker.name)
    with pytest.raises(ConfigError, match=f"needs a {reranker.Config.__name__}"):
        reranker(other.Config())


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_users=st.integers(1, 5),
    c=st.integers(1, 16),
    k=st.integers(1, 20),
    active=st.booleans(),
    sorted_scores=st.booleans(),
)
def test_outputs_are_permutations_of_a_subset_of_the_candidates(seed, n_users, c, k, active, sorted_scores):
    cands = make_batch(seed, n_users=n_users, c=c, sorted_scores=sorted_scores)
    for name, cls in RERANKERS.items():
        out = cls(**(ACTIVE_PARAMS if active else NEUTRAL_PARAMS)[name])(cands, k)
        assert_valid_output(out, cands, k)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(1, 20),
    steps=st.permutations(sorted(ACTIVE_PARAMS)),
    n_steps=st.integers(1, 6),
)
def test_any_composition_gives_valid_lists(seed, k, steps, n_steps):
    cands = make_batch(seed, n_users=4, c=18, sorted_scores=False)
    pipe = build_pipeline([{"name": name, "params": ACTIVE_PARAMS[name]} for name in steps[:n_steps]], chunk_size=3)
    out = pipe(cands, k)
    assert_valid_output(out, cands, k)
    assert (out.moved_by < n_steps).all()
    for u, j in zip(*np.nonzero(out.moved_by >= 0)):
        assert out.moves[u, j] == pipe.steps[out.moved_by[u, j]].reason


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_users=st.integers(1, 5), c=st.integers(1, 16), k=st.integers(1, 20))
def test_neutral_parameters_return_the_model_order(seed, n_users, c, k):
    cands = make_batch(seed, n_users=n_users, c=c)
    width = min(k, c)
    for name, cls in RERANKERS.items():
        out = cls(**NEUTRAL_PARAMS[name])(cands, k)
        assert (out.items[:, :width] == cands.items[:, :width]).all(), name
        assert (out.moves == 0).all(), name


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), c=st.integers(1, 16), k=st.integers(1, 12))
def test_neutral_steps_are_no_ops_anywhere_in_a_pipeline(seed, c, k):
    cands = make_batch(seed, c=c, sorted_scores=False)
    active = build_pipeline([PopularityDebiasConfig(beta=1.0), FairStarConfig(p=0.6)])(cands, k)
    neutral = [{"name": n, "params": p} for n, p in NEUTRAL_PARAMS.items()]
    padded = build_pipeline([*neutral, PopularityDebiasConfig(beta=1.0), *neutral, FairStarConfig(p=0.6), *neutral])(
        cands, k
    )
    assert (padded.items == active.items).all()
    assert (padded.moves == active.moves).all()


def test_results_are_reproducible_and_independent_of_chunking(reranker):
    cands = make_batch(3, n_users=9, c=15)
    step = reranker(**ACTIVE_PARAMS[reranker.name])
    # a stateful step (its ledger carries exposure across requests) is reproducible given its state: a fresh one
    fresh = (lambda: reranker(**ACTIVE_PARAMS[reranker.name])) if getattr(reranker, "stateful", False) else (lambda: step)
    whole = Pipeline([step])(cands, 6)
    again = Pipeline([fresh()])(cands, 6)
    chunked = Pipeline([fresh()], chunk_size=2)(cands, 6)
    for out in (again, chunked):
        assert (out.items == whole.items).all() and (out.moves == whole.moves).all()
        assert (out.scores[out.items >= 0] == whole.scores[whole.items >= 0]).all() and (out.moved_by == whole.moved_by).all()
        assert list(out.constraints_met) == list(whole.constraints_met)  # same keys, same order
        for key in whole.constraints_met:
            assert out.constraints_met[key].dtype == whole.constraints_met[key].dtype == bool
            assert (out.constraints_met[key] == whole.constraints_met[key]).all()


def test_no_users_gives_an_empty_result(reranker):
    cands = make_batch(3, n_users=1, c=6)
    none = Candidates(**{**cands.__dict__, "items": cands.items[:0], "scores": cands.scores[:0], "seeds": cands.seeds[:0],
                         "user_category_dist": cands.user_category_dist[:0], "user_group_dist": cands.user_group_dist[:0]})  # fmt: skip
    out = Pipeline([reranker(**ACTIVE_PARAMS[reranker.name])])(none, 4)
    assert out.items.shape == (0, 4) and out.scores.shape == (0, 4)


def test_k_larger_than_the_candidates_pads(reranker):
    cands = make_batch(4, n_users=3, c=5, short=False)
    out = reranker(**ACTIVE_PARAMS[reranker.name])(cands, 9)
    assert_valid_output(out, cands, 9)
    assert (out.items[:, 5:] == -1).all()


def test_an_empty_candidate_list_gives_padding(reranker):
    cands = make_batch(5, n_users=2, c=4, short=False)
    empty = Candidates(
        **{**cands.__dict__, "items": np.full((2, 4), -1), "reasons": None, "moved_by": None, "model_scores": None}
    )
    out = reranker(**ACTIVE_PARAMS[reranker.name])(empty, 3)
    assert (out.items == -1).all() and np.isnan(out.scores).all()


def test_bad_k_is_refused_with_the_documented_message(reranker):
    with pytest.raises(ConfigError) as err:
        reranker()(make_batch(0), 0)
    assert str(err.value) == BAD_K.format(func="Pipeline", got=0)


@pytest.mark.parametrize("name", sorted(n for n, r in RERANKERS.items() if r.needs))
def test_missing_side_data_is_named(name):
    reranker = RERANKERS[name]
    cands = make_batch(0)
    bare = Candidates(items=cands.items, scores=cands.scores)
    with pytest.raises(DataError) as err:
        reranker()(bare, 5)
    assert str(err.value) == MISSING_INPUT.format(name=reranker.name, field=reranker.needs[0])


# -- registry and pipeline building ----------------------------------------------------------
def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        get_reranker("fair")
    assert str(err.value) == UNKNOWN_RERANKER.format(name="fair", known=", ".join(sorted(RERANKERS)))


def test_build_pipeline_from_configs_mappings_and_rerankers():
    pipe = build_pipeline(
        [
            MMRConfig(tradeoff=0.2),
            {"name": "fair_star", "params": {"p": 0.4}},
            {"name": "mmr"},
            ExplorationReranker(epsilon=0.0),
        ]
    )
    assert pipe.labels == ("mmr", "fair_star", "mmr_2", "exploration")
    assert pipe.describe()[1] == {"name": "fair_star", "params": FairStarConfig(p=0.4).model_dump(mode="json")}
    assert pipe.config_hash == build_pipeline(pipe.describe()).config_hash
    assert pipe.config_hash != build_pipeline([MMRConfig(tradeoff=0.3)]).config_hash


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "nope"}, "unknown re-ranker 'nope'"),
        ({"name": "mmr", "params": {"tradeoff": 2}}, "invalid params for re-ranker 'mmr': tradeoff"),
        ({"name": "mmr", "extra": 1}, "pipeline step 0 must be {'name': <re-ranker>, 'params': {...}}"),
        ("mmr", "pipeline step 0 must be a re-ranker config"),
    ],
)
def test_build_pipeline_errors_say_what_and_where(spec, message):
    with pytest.raises(
        ConfigError, match=message.replace("{", r"\{").replace("}", r"\}").replace("(", r"\(").replace(".", r"\.")
    ):
        build_pipeline([spec])


# -- candidates validation -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("items", "scores", "message"),
    [
        ([[0, -1, 1]], [[1.0, 0.0, 0.5]], "Candidates: row 0 has a candidate after a -1 pad"),
        ([[0, 1], [2, 2]], [[1.0, 0.5], [1.0, 0.5]], "Candidates: row 1 lists item 2 more than once"),
        ([[0, 9]], [[1.0, 0.5]], "Candidates: row 0 holds item index 9, outside the catalog of 4 items"),
        ([[0, 1]], [[1.0, np.nan]], "Candidates: row 0 has a non-finite score at position 1 for item 1"),
    ],
)
def test_bad_candidates_are_named(items, scores, message):
    cands = Candidates(items=np.array(items), scores=np.array(scores), item_group=np.zeros(4, dtype=int))
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        build_pipeline([FairStarConfig()])(cands, 2)


def test_candidates_must_be_two_dimensional_and_aligned():
    with pytest.raises(DataError, match="'items' must have shape"):
        Candidates(items=np.arange(3), scores=np.arange(3))
    with pytest.raises(DataError, match="'scores' must have shape"):
        Candidates(items=np.zeros((2, 3), dtype=int), scores=np.zeros((2, 2)))
    with pytest.raises(DataError, match="'items' must hold integer item indices. Got dtype float64 instead"):
        Candidates(items=np.zeros((2, 3)), scores=np.zeros((2, 3)))


def test_candidates_from_a_recommendation_batch():
    batch = RecommendationBatch(
        user_ids=np.array(["a", "b"], dtype=object),
        item_indices=np.array([[2, 0, 1], [1, -1, -1]]),
        item_ids=np.array([["i2", "i0", "i1"], ["i1", None, None]], dtype=object),
        scores=np.array([[0.9, 0.5, 0.1], [0.3, np.nan, np.nan]], dtype=np.float32),
        fallback=np.array([False, False]),
        model="test",
    )
    cands = Candidates.from_batch(batch, item_group=np.array([0, 1, 0]))
    out = build_pipeline([FairStarConfig(p=0.5, alpha=0.1)])(cands, 3)
    assert out.items.tolist() == [[2, 0, 1], [1, -1, -1]]


# -- MMR -----------------------------------------------------------------------------------
def _mmr_reference(items, scores, cats, lam, similarity, k):
    """Carbonell & Goldstein's greedy MMR for one list, plainly."""
    valid = [i for i in range(len(items)) if items[i] >= 0]
    s = np.array([scores[i] for i in valid], dtype=np.float64)
    rel = (s - s.min()) / (s.max() - s.min()) if len(s) and s.max() > s.min() else np.ones(len(s))
    sets = [set(np.flatnonzero(cats[items[i]].toarray().ravel())) for i in valid]

    def sim(a, b):
        inter = len(sets[a] & sets[b])
        if similarity == "jaccard":
            union = len(sets[a] | sets[b])
            return inter / union if union else 0.0
        denom = np.sqrt(len(sets[a]) * len(sets[b]))
        return inter / denom if denom else 0.0

    chosen: list[int] = []
    for _ in range(min(k, len(valid))):
        best, best_gain = None, -np.inf
        for j in range(len(valid)):
            if j in chosen:
                continue
            penalty = max((sim(j, c) for c in chosen), default=0.0)
            gain = (1 - lam) * rel[j] - lam * penalty
            if gain > best_gain + 1e-12:
                best, best_gain = j, gain
        chosen.append(best)
    return [int(items[valid[j]]) for j in chosen]


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    lam=st.sampled_from([0.1, 0.3, 0.7, 1.0]),
    similarity=st.sampled_from(["jaccard", "cosine"]),
    k=st.integers(1, 10),
)
def test_mmr_equals_the_plain_algorithm(seed, lam, similarity, k):
    cands = make_batch(seed, n_users=3, c=10, n_cat=70)  # 70 categories: two mask words
    out = MMRReranker(tradeoff=lam, similarity=similarity)(cands, k)
    for u in range(3):
        expected = _mmr_reference(cands.items[u], cands.scores[u], cands.item_categories, lam, similarity, k)
        assert [int(i) for i in out.items[u] if i >= 0] == expected


def test_mmr_promotes_a_different_category_for_diversity():
    cats = sp.csr_matrix(np.array([[1, 0], [1, 0], [1, 0], [0, 1]]))
    cands = Candidates(items=np.array([[0, 1, 2, 3]]), scores=np.array([[1.0, 0.9, 0.8, 0.7]]), item_categories=cats)
    out = MMRReranker(tradeoff=0.5)(cands, 3)
    assert out.items.tolist() == [[0, 3, 1]]
    assert out.moves.tolist() == [[Reason.model, Reason.diversity, Reason.model]]


# -- calibration ------------------------------------------------------------------------------
def _calibration_reference(items, scores, cats, p, lam, a, k):
    """Steck's greedy calibrated re-ranking for one list, plainly."""
    valid = [i for i in range(len(items)) if items[i] >= 0]
    if not valid:
        return []
    s = np.array([scores[i] for i in valid], dtype=np.float64)
    rel = (s - s.min()) / (s.max() - s.min()) if s.max() > s.min() else np.ones(len(s))
    rows = np.array([cats[items[i]].toarray().ravel() != 0 for i in valid], dtype=float).reshape(len(valid), -1)
    split = np.divide(
        rows, rows.sum(axis=1, keepdims=True), out=np.zeros_like(rows), where=rows.sum(axis=1, keepdims=True) > 0
    )

    def kl(chosen):
        parts = [split[j] for j in chosen if split[j].sum() > 0]
        q = np.sum(parts, axis=0) / len(parts) if parts else np.zeros(len(p))
        qt = (1 - a) * q + a * p
        mask = p > 0
        return float(np.sum(p[mask] * np.log(p[mask] / qt[mask])))

    chosen: list[int] = []
    for _ in range(min(k, len(valid))):
        gains = np.array(
            [((1 - lam) * rel[j] - lam * kl([*chosen, j])) if j not in chosen else -np.inf for j in range(len(valid))]
        )
        chosen.append(int(np.flatnonzero(gains >= gains.max() - 1e-12)[0]))  # near ties: the higher-ranked
    return [int(items[valid[j]]) for j in chosen]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lam=st.sampled_from([0.05, 0.3, 0.9, 1.0]), k=st.integers(1, 10))
def test_calibration_equals_the_plain_algorithm(seed, lam, k):
    cands = make_batch(seed, n_users=3, c=10).validate()
    out = CalibrationReranker(tradeoff=lam, smoothing=0.01)(cands, k)
    for u in range(3):
        expected = _calibration_reference(
            cands.items[u], cands.scores[u], cands.item_categories, cands.user_category_dist[u], lam, 0.01, k
        )
        assert [int(i) for i in out.items[u] if i >= 0] == expected


def test_calibration_brings_the_users_category_into_the_list():
    cats = sp.csr_matrix(np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1]]))
    cands = Candidates(
        items=np.array([[0, 1, 2, 3, 4]]),
        scores=np.array([[1.0, 0.9, 0.8, 0.7, 0.6]]),
        item_categories=cats,
        user_category_dist=np.array([[0.5, 0.5]]),
    )
    out = CalibrationReranker(tradeoff=0.9)(cands, 4)
    chosen = out.items[0].tolist()
    assert chosen == [0, 3, 1, 4]
    assert [m for i, m in zip(chosen, out.moves[0]) if i in (3, 4)] == [Reason.calibration] * 2


def test_history_category_distribution():
    cats = sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]]))
    history = sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 5], [2, 0, 0]]))
    dist = history_category_distribution(history, cats)
    assert np.allclose(dist, [[0.25, 0.25, 0.5], [0, 0, 0], [0.5, 0.5, 0]])


# -- popularity de-biasing ---------------------------------------------------------------------
def test_popularity_debias_sorts_by_reweighted_relevance():
    cands = Candidates(
        items=np.array([[0, 1, 2, 3]]),
        scores=np.array([[4.0, 3.0, 2.0, 1.0]]),
        item_popularity=np.array([1000.0, 1.0, 10.0, 0.0]),
    )
    out = PopularityDebiasReranker(beta=1.0)(cands, 4)
    rel = np.array([1.0, 2 / 3, 1 / 3, 0.0])
    expected = np.argsort(-(rel * (1 + np.array([1000.0, 1.0, 10.0, 0.0])) ** -1.0), kind="stable")
    assert out.items[0].tolist() == expected.tolist() == [1, 2, 0, 3]
    assert out.moves[0].tolist() == [Reason.popularity_debias, Reason.popularity_debias, 0, 0]
    assert out.scores[0].tolist() == [3.0, 2.0, 4.0, 1.0]  # the model's scores, carried


# -- exposure cap ---------------------------------------------------------------------------------
def test_exposure_cap_on_positions():
    groups = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    cands = Candidates(items=np.arange(8)[None, :], scores=-np.arange(8.0)[None, :], item_group=groups)
    out = ExposureCapReranker(max_share=0.5)(cands, 6)
    assert out.items[0].tolist() == [0, 1, 2, 5, 6, 7]
    assert out.moves[0].tolist() == [0, 0, 0, Reason.exposure_cap, Reason.exposure_cap, Reason.exposure_cap]
    assert out.constraints_met["exposure_cap"].tolist() == [True]


def test_exposure_cap_with_attention_weights_caps_the_head():
    groups = np.array([0] * 6 + [1] * 6)
    cands = Candidates(items=np.arange(12)[None, :], scores=-np.arange(12.0)[None, :], item_group=groups)
    out = ExposureCapReranker(max_share=0.6, weighting="attention")(cands, 8)
    w = 1 / np.log2(np.arange(2, 10))
    share = w[groups[out.items[0]] == 0].sum() / w.sum()
    assert share <= 0.6 + 1e-9 and w[groups[out.items[0]] == 1].sum() / w.sum() <= 0.6 + 1e-9
    assert out.constraints_met["exposure_cap"].tolist() == [True]


def test_exposure_cap_infeasible_is_reported_not_hidden():
    cands = Candidates(items=np.arange(5)[None, :], scores=-np.arange(5.0)[None, :], item_group=np.zeros(5, dtype=int))
    out = ExposureCapReranker(max_share=0.5)(cands, 4)
    assert out.items[0].tolist() == [0, 1, 2, 3]
    assert out.constraints_met["exposure_cap"].tolist() == [False]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    c=st.integers(1, 40),
    k=st.integers(1, 25),
    max_share=st.floats(0.05, 1.0),
    weighting=st.sampled_from(["positions", "attention"]),
    capped=st.sampled_from([None, [0], [1, 2]]),
)
def test_exposure_cap_one_list_path_equals_the_batch_path(seed, c, k, max_share, weighting, capped):
    # A single list takes a plain-Python path (the serving case); a batch takes the vectorized one.
    cands = make_batch(seed, n_users=6, c=c)
    step = ExposureCapReranker(max_share=max_share, weighting=weighting, groups=capped)
    batch = Pipeline([step])(cands, k)
    for u in range(cands.n_users):
        one = Pipeline([step])(cands.rows(u, u + 1), k)
        assert one.items[0].tolist() == batch.items[u].tolist()
        assert one.moves[0].tolist() == batch.moves[u].tolist()
        assert one.constraints_met["exposure_cap"][0] == batch.constraints_met["exposure_cap"][u]


def test_exposure_cap_only_on_the_named_groups():
    groups = np.array([0, 0, 0, 1, 1, 1, -1])
    cands = Candidates(items=np.array([[3, 4, 5, 6, 0, 1, 2]]), scores=-np.arange(7.0)[None, :], item_group=groups)
    out = ExposureCapReranker(max_share=0.34, groups=[1])(cands, 6)
    assert (groups[out.items[0]] == 1).sum() == 2
    assert out.constraints_met["exposure_cap"].tolist() == [True]


# -- exploration ------------------------------------------------------------------------------------
def test_epsilon_one_fills_every_place_from_the_tail():
    cands = make_batch(1, n_users=5, c=20, short=False)
    out = ExplorationReranker(epsilon=1.0)(cands, 5)
    for u in range(5):
        assert not set(out.items[u].tolist()) & set(cands.items[u, :5].tolist())
    assert (out.moves == Reason.exploration).all()


def test_epsilon_explores_about_epsilon_of_the_places():
    cands = make_batch(2, n_users=2000, c=30, short=False)
    out = ExplorationReranker(epsilon=0.2, random_state=7)(cands, 10)
    share = np.mean([np.isin(out.items[u], cands.items[u, 10:]).mean() for u in range(2000)])
    assert abs(share - 0.2) < 0.015  # 20,000 Bernoulli(0.2) places: sd 0.003
    assert share == pytest.approx((out.moves == Reason.exploration).mean())


def test_a_users_list_depends_on_their_seed_only():
    cands = make_batch(3, n_users=6, c=20, short=False)
    step = ExplorationReranker(method="plackett_luce", temperature=0.5, random_state=1)
    whole = step(cands, 8)
    one = cands.rows(4, 5)
    alone = step(Candidates(**{**one.__dict__, "row_offset": 0}), 8)
    assert alone.items[0].tolist() == whole.items[4].tolist()
    other_seed = ExplorationReranker(method="plackett_luce", temperature=0.5, random_state=2)(cands, 8)
    assert (other_seed.items != whole.items).any()


def test_plackett_luce_prefers_relevant_items():
    n = 3000
    items = np.tile(np.arange(10), (n, 1))
    scores = np.tile(np.linspace(1, 0, 10, dtype=np.float32), (n, 1))
    cands = Candidates(items=items, scores=scores, seeds=np.arange(n))
    out = ExplorationReranker(method="plackett_luce", temperature=0.25)(cands, 1)
    counts = np.bincount(out.items[:, 0], minlength=10) / n
    expected = np.exp(np.linspace(1, 0, 10) / 0.25)
    expected /= expected.sum()
    assert np.abs(counts - expected).max() < 0.03


# -- composition ------------------------------------------------------------------------------------
def test_reasons_of_earlier_steps_are_kept_unless_overridden():
    groups = np.array([0, 0, 0, 0, 1, 1])
    pop = np.array([100.0, 100.0, 100.0, 1.0, 100.0, 100.0])
    cands = Candidates(
        items=np.arange(6)[None, :], scores=-np.arange(6.0)[None, :], item_group=groups, item_popularity=pop
    )
    out = build_pipeline([PopularityDebiasConfig(beta=2.0), FairStarConfig(p=0.5, alpha=0.1, adjust_alpha=False)])(
        cands, 5
    )
    items, moves, by = out.items[0].tolist(), out.moves[0].tolist(), out.moved_by[0].tolist()
    assert items[0] == 3 and moves[0] == Reason.popularity_debias and by[0] == 0
    for i, m, b in zip(items, moves, by):
        if groups[i] == 1 and m:
            assert m == Reason.provider_fairness and b == 1
    assert out.constraints_met["fair_star"].tolist() == [True]
    assert out.steps == ("popularity_debias", "fair_star")


def test_constraints_are_judged_on_the_final_lists():
    """A diversity step after FA*IR may undo its order; the report shows it."""
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    cats = sp.csr_matrix(np.array([[1, 0]] * 4 + [[0, 1]] * 4))
    cands = Candidates(
        items=np.arange(8)[None, :], scores=-np.arange(8.0)[None, :], item_group=groups, item_categories=cats
    )
    fair_last = build_pipeline([MMRConfig(tradeoff=0.01), FairStarConfig(p=0.8, alpha=0.1)])(cands, 6)
    fair_first = build_pipeline([FairStarConfig(p=0.8, alpha=0.1), MMRConfig(tradeoff=0.01)])(cands, 6)
    assert fair_last.constraints_met["fair_star"].tolist() == [True]
    assert fair_first.constraints_met["fair_star"].tolist() == [False]


def test_all_steps_composed_on_a_larger_batch():
    cands = make_batch(11, n_users=300, c=40, n_items=200, n_cat=8)
    pipe = build_pipeline(
        [
            PopularityDebiasConfig(beta=0.3),
            MMRConfig(tradeoff=0.3),
            CalibrationConfig(tradeoff=0.2),
            ExplorationConfig(epsilon=0.1),
            ExposureCapConfig(max_share=0.7),
            FairStarConfig(p=0.3),
        ],
        chunk_size=64,
    )
    out = pipe(cands, 10)
    assert_valid_output(out, cands, 10)
    summary = out.summary()
    assert sum(summary["places_by_reason"].values()) == int((out.items >= 0).sum())
    assert set(summary["constraints_met_share"]) == {"exposure_cap", "fair_star"}
    json.dumps(summary)


def test_without_seeds_the_row_number_seeds_and_chunking_does_not_matter():
    cands = make_batch(8, n_users=7, c=20, short=False)
    unseeded = Candidates(**{**cands.__dict__, "seeds": None})
    step = ExplorationReranker(epsilon=0.5)
    whole = Pipeline([step])(unseeded, 6)
    chunked = Pipeline([step], chunk_size=3)(unseeded, 6)
    assert (whole.items == chunked.items).all()
    assert (whole.items != step(cands, 6).items).any()


# -- a catalog checked once ----------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(1, 12),
    steps=st.permutations(sorted(ACTIVE_PARAMS)),
    n_steps=st.integers(1, 4),
)
def test_candidates_over_a_checked_catalog_rerank_as_plain_ones(seed, k, steps, n_steps):
    from governance.rerank import CheckedCatalog

    plain = make_batch(seed, n_users=3, c=14, sorted_scores=bool(seed % 2))
    catalog = CheckedCatalog.check(item_group=plain.item_group, item_popularity=plain.item_popularity, item_categories=plain.item_categories)
    over = catalog.candidates(
        items=plain.items, scores=plain.scores, user_category_dist=plain.user_category_dist,
        user_group_dist=plain.user_group_dist, seeds=plain.seeds,
    )  # fmt: skip
    spec = [{"name": name, "params": ACTIVE_PARAMS[name]} for name in steps[:n_steps]]
    a, b = build_pipeline(spec)(plain, k), build_pipeline(spec)(over, k)  # two pipelines: a stateful step starts fresh in each
    assert np.array_equal(a.items, b.items) and np.array_equal(a.moves, b.moves) and np.array_equal(a.moved_by, b.moved_by)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.constraints_met.keys() == b.constraints_met.keys()
    assert all(np.array_equal(a.constraints_met[key], b.constraints_met[key]) for key in a.constraints_met)


def test_a_checked_catalog_refuses_what_validate_refuses_and_keeps_its_own_copies():
    from dataclasses import replace

    from governance.rerank import CheckedCatalog

    with pytest.raises(DataError, match="'item_group' holds codes below -1"):
        CheckedCatalog.check(item_group=np.array([0, -2, 1]))
    with pytest.raises(DataError, match="'item_popularity' must be finite and non-negative"):
        CheckedCatalog.check(item_group=np.array([0, 1, 1]), item_popularity=np.array([1.0, np.nan, 2.0]))
    with pytest.raises(DataError, match="'item_popularity' must have shape"):
        CheckedCatalog.check(item_group=np.array([0, 1, 1]), item_popularity=np.array([1.0, 2.0]))
    group = np.array([0, 1, 1, 0])
    catalog = CheckedCatalog.check(item_group=group, item_popularity=np.ones(4))
    assert catalog.n_items == 4 and catalog.n_groups == 2
    group[1] = -7  # the caller's array changes; the catalog's copy does not
    assert catalog.item_group.tolist() == [0, 1, 1, 0]
    with pytest.raises(ValueError, match="read-only"):
        catalog.item_group[0] = 5
    import pickle

    copied = pickle.loads(pickle.dumps(catalog))  # as another process receives it: read-only there too
    with pytest.raises(ValueError, match="read-only"):
        copied.item_group[0] = 5
    assert copied.n_groups == 2 and copied.item_group.tolist() == [0, 1, 1, 0]
    # each list's own rows are still checked
    with pytest.raises(DataError, match="row 0 holds item index 4, outside the catalog of 4 items"):
        catalog.candidates(items=np.array([[4, 0]]), scores=np.array([[1.0, 0.5]])).validate()
    with pytest.raises(DataError, match="row 0 lists item 2 more than once"):
        catalog.candidates(items=np.array([[2, 2]]), scores=np.array([[1.0, 0.5]])).validate()
    with pytest.raises(DataError, match="'user_group_dist' must have shape"):
        catalog.candidates(items=np.array([[2, 0]]), scores=np.array([[1.0, 0.5]]), user_group_dist=np.ones((1, 3))).validate()
    # other side arrays swapped in: they are checked again
    swapped = replace(catalog.candidates(items=np.array([[2, 0]]), scores=np.array([[1.0, 0.5]])), item_group=np.array([0, 1, -3, 0]))
    with pytest.raises(DataError, match="holds codes below -1"):
        swapped.validate()
