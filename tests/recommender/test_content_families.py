"""The content-based (``content_tfidf``) and hybrid families, and the synthetic content they learn from."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recommender.data import InteractionMatrix
from recommender.errors import ConfigError, DataError
from recommender.families.content import ContentRecommender
from recommender.families.hybrid import HybridRecommender
from recommender.family import ErasureKind, get_family
from recommender.item_features import ItemFeaturizer
from recommender.synthetic import SyntheticSpec, generate

TEXT_ONLY = {"category_column": None, "price_column": None, "release_column": None}


def matrix(
    rows: list[list[float]], users: list[str] | None = None, items: list[str] | None = None
) -> InteractionMatrix:
    m = sp.csr_matrix(np.asarray(rows, dtype=np.float32))
    users = users or [f"u{i}" for i in range(m.shape[0])]
    items = items or [f"i{j}" for j in range(m.shape[1])]
    return InteractionMatrix(m, np.asarray(users, dtype=object), np.asarray(items, dtype=object))


def table(texts: dict[str, str], **columns: dict[str, object]) -> pd.DataFrame:
    frame = pd.DataFrame({"text": pd.Series(texts)})
    for name, values in columns.items():
        frame[name] = pd.Series(values)
    frame.index.name = "item_id"
    return frame


THREE = table({"i0": "dragon wizard", "i1": "dragon space", "i2": "space robot"})


# -- TF-IDF and cosine scores against a hand computation ---------------------------------


def _idf(n_docs: int, df: int) -> float:
    return math.log((1 + n_docs) / (1 + df)) + 1  # smoothed idf, as scikit-learn's default


def test_tfidf_vectors_match_a_hand_computation():
    f = ItemFeaturizer.fit(THREE, **TEXT_ONLY)
    x = f.transform(THREE).toarray()
    vocab = list(f.vocabulary)
    dragon, wizard = _idf(3, 2), _idf(3, 1)
    norm = math.hypot(dragon, wizard)
    assert x[0, vocab.index("dragon")] == pytest.approx(dragon / norm)
    assert x[0, vocab.index("wizard")] == pytest.approx(wizard / norm)
    assert x[1, vocab.index("dragon")] == pytest.approx(1 / math.sqrt(2))  # equal idf for dragon and space
    assert np.linalg.norm(x, axis=1) == pytest.approx([1.0, 1.0, 1.0])


def test_scores_are_cosines_to_the_weighted_profile_and_decompose_over_history():
    # u0 liked i0 once; u1 liked i0 (weight 1) and i2 (weight 2); i1 is unseen by both.
    train = matrix([[1, 0, 0], [1, 0, 2]])
    model = ContentRecommender(**TEXT_ONLY).fit(train, items=THREE)
    dragon, wizard, space, robot = _idf(3, 2), _idf(3, 1), _idf(3, 2), _idf(3, 1)
    a_dot_b = (dragon / math.hypot(dragon, wizard)) * (1 / math.sqrt(2))  # i0 . i1 (shared word: dragon)
    c_dot_b = (space / math.hypot(space, robot)) * (1 / math.sqrt(2))  # i2 . i1 (shared word: space)
    assert model.score_items(np.array([0]), np.array([1]))[0, 0] == pytest.approx(a_dot_b)
    norm = math.sqrt(1 + 4)  # i0 and i2 share no word: |x0 + 2 x2|^2 = 1 + 4
    expected = (a_dot_b + 2 * c_dot_b) / norm
    assert model.score_items(np.array([1]), np.array([1]))[0, 0] == pytest.approx(expected)
    [[tag]] = model.explain("u1", ["i1"])
    assert tag.kind == "shares_content" and tag.exact
    assert tag.evidence["contributions"] == pytest.approx({"i2": 2 * c_dot_b / norm, "i0": a_dot_b / norm}, abs=1e-6)
    assert sum(tag.evidence["contributions"].values()) == pytest.approx(tag.evidence["score"], abs=1e-5)
    assert tag.items == ("i2",) and "space" in tag.evidence["terms"] and "space" in tag.text
    batch = model.recommend(["u1"], k=1)
    assert list(batch.item_ids[0]) == ["i1"] and batch.scores[0, 0] == pytest.approx(expected, rel=1e-6)


# -- bad input ------------------------------------------------------------------------------


def test_a_missing_text_column_is_a_clear_error():
    with pytest.raises(DataError, match=r"no column 'keywords'.*columns are text"):
        ContentRecommender(text_columns=("text", "keywords")).fit(matrix([[1, 0, 0]]), items=THREE)


def test_all_empty_text_is_a_clear_error():
    empty = table({"i0": "", "i1": " ", "i2": None})
    with pytest.raises(DataError, match="every item's text is empty"):
        ContentRecommender(**TEXT_ONLY).fit(matrix([[1, 0, 0]]), items=empty)


def test_repeated_or_empty_item_ids_are_clear_errors():
    twice = pd.DataFrame({"text": ["a b", "c d"]}, index=pd.Index(["i0", "i0"], name="item_id"))
    with pytest.raises(DataError, match="item id 'i0' appears twice"):
        ContentRecommender(**TEXT_ONLY).fit(matrix([[1, 0, 0]]), items=twice)
    with pytest.raises(DataError, match="not a pandas DataFrame|as a pandas DataFrame"):
        ContentRecommender(**TEXT_ONLY).fit(matrix([[1, 0, 0]]), items=["dragon"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"text_columns": "text"}, "'text_columns' parameter"),
        ({"text_columns": ()}, "'text_columns' parameter"),
        ({"min_df": 0}, "'min_df' parameter"),
        ({"text_weight": -1.0}, "feature weights must be finite numbers >= 0"),
    ],
)
def test_bad_parameters_are_config_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        ContentRecommender(**{**TEXT_ONLY, **params}).fit(matrix([[1, 0, 0]]), items=THREE)


def test_add_items_refuses_known_items_and_broken_tables_and_changes_nothing():
    model = ContentRecommender(**TEXT_ONLY).fit(matrix([[1, 0, 0], [0, 1, 0]]), items=THREE)
    before = (model.version_id_, model.train_.n_items, model.item_vectors_.shape)
    with pytest.raises(DataError, match=r"add_items: 1 item id\(s\) are already in the model, e.g. 'i1'"):
        model.add_items(table({"i1": "dragon", "i9": "robot"}))
    with pytest.raises(DataError, match="add_items: the item table has no column 'text'"):
        model.add_items(pd.DataFrame({"words": ["robot"]}, index=pd.Index(["i9"], name="item_id")))
    with pytest.raises(DataError, match="empty item id"):
        model.add_items(pd.DataFrame({"text": ["robot"]}, index=pd.Index([""], name="item_id")))
    assert (model.version_id_, model.train_.n_items, model.item_vectors_.shape) == before


def test_explain_an_unknown_item_is_a_clear_error():
    model = ContentRecommender(**TEXT_ONLY).fit(matrix([[1, 0, 0]]), items=THREE)
    with pytest.raises(ConfigError, match=r"explain: 1 item id\(s\) are not in the model, e.g. 'nope'"):
        model.explain("u0", ["i1", "nope"])


# -- new items, fallbacks, erasure, storage --------------------------------------------------


def test_added_items_are_recommended_without_retraining():
    train = matrix([[1, 0, 0], [0, 0, 1]])
    model = ContentRecommender(**TEXT_ONLY).fit(train, items=THREE)
    vectors_before = model.item_vectors_.copy()
    model.add_items(table({"i9": "wizard wizard dragon"}))
    assert model.train_.n_items == 4 and model.popularity_[3] == 0
    assert (model.item_vectors_[:3] != vectors_before).nnz == 0  # the catalog's vectors are untouched
    assert model.recommend(["u0"], k=1).item_ids[0, 0] == "i9"
    [[tag]] = model.explain("u0", ["i9"])
    assert tag.items == ("i0",) and "wizard" in tag.evidence["terms"]


def test_items_without_content_fall_back_to_popularity_and_say_so():
    items = table({"i0": "dragon wizard", "i1": "", "i2": "dragon knight"})
    model = ContentRecommender(**TEXT_ONLY).fit(matrix([[1, 0, 0], [0, 1, 0], [0, 1, 0]]), items=items)
    assert not model.has_content_[1]
    [[no_content], [match]] = model.explain("u0", ["i1", "i2"])
    assert no_content.kind == "content_fallback" and no_content.evidence["fallback"] == "no_content"
    assert "nothing of this item's content" in no_content.text
    assert match.kind == "shares_content"
    # Without any item table every item lacks content: the lists are the popularity ranking.
    bare = ContentRecommender(**TEXT_ONLY).fit(matrix([[1, 0, 0], [0, 1, 0], [0, 1, 0]]))
    assert list(bare.recommend(["u0"], k=2).item_ids[0]) == ["i1", "i2"]
    assert bare.explain("u0", ["i1"])[0][0].evidence["fallback"] == "no_content"


def test_forget_is_exact_the_other_users_lists_equal_a_refit_without_the_subject():
    data = generate(SyntheticSpec(n_users=120, n_items=80, n_interactions=3000, seed=4))
    from recommender.feedback import to_implicit

    train = to_implicit(data.events)
    params = {"text_columns": ("text", "keywords")}
    model = ContentRecommender(**params).fit(train, items=data.items)
    gone = str(train.user_ids[5])
    outcome = model.forget([gone])
    assert outcome.kind is ErasureKind.exact and outcome.removed == (gone,) and outcome.residual == 0.0
    assert gone not in set(model.subjects())
    keep = np.flatnonzero(train.user_ids != gone)
    without = InteractionMatrix(sp.csr_matrix(train.matrix[keep]), train.user_ids[keep], train.item_ids)
    refit = ContentRecommender(**params).fit(without, items=data.items)
    others = list(without.user_ids)
    a, b = model.recommend(others, k=10), refit.recommend(others, k=10)
    assert np.array_equal(a.item_ids, b.item_ids) and np.allclose(a.scores, b.scores, equal_nan=True)
    assert model.recommend([gone]).fallback.all()


@pytest.mark.parametrize("family", ["content_tfidf", "content_embed"])
def test_forget_of_an_items_only_user_with_an_item_table_gives_the_refits_version(family, monkeypatch):
    # u1 alone touched "atlas" (in the catalogue, with content) and "ghost" (no table row): after the erasure
    # "ghost" is gone, "atlas" sits among the catalogue items without interactions, where a fit without u1 puts it
    if family == "content_embed":
        _embed_family()
    fam = get_family(family)
    params = {"text_columns": ("text",), **(TEXT_ONLY if family == "content_tfidf" else {})}
    data = matrix([[1, 0, 1, 0, 0], [0, 1, 0, 1, 1], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0]], items=["i0", "i1", "i2", "atlas", "ghost"])
    # the table lists "zebra" (never interacted with) before "atlas"
    items = table({"zebra": "striped horse", "i2": "space robot", "atlas": "maps of the world", "i1": "dragon space", "i0": "dragon wizard"})
    model = fam.create(**params).fit(data, items=items)
    outcome = model.forget(["u1"])
    assert outcome.kind is ErasureKind.exact
    keep = np.array([u != "u1" for u in data.user_ids])
    rest = sp.csr_matrix(data.matrix[keep])
    used = np.flatnonzero(rest.getnnz(axis=0) > 0)
    without = InteractionMatrix(sp.csr_matrix(rest[:, used]), data.user_ids[keep], data.item_ids[used])
    refit = fam.create(**params).fit(without, items=items)
    assert list(model.train_.item_ids) == list(refit.train_.item_ids) and "ghost" not in set(model.train_.item_ids)
    assert model.version_id_ == refit.version_id_


def test_save_load_round_trip_and_version_follows_content(tmp_path):
    data = generate(SyntheticSpec(n_users=80, n_items=60, n_interactions=2000, seed=2))
    from recommender.feedback import to_implicit

    train = to_implicit(data.events)
    model = ContentRecommender(text_columns=("text", "keywords")).fit(train, items=data.items)
    digest = model.save(tmp_path / "m.npz")
    assert len(digest) == 64
    loaded = ContentRecommender.load(tmp_path / "m.npz")
    users = list(train.user_ids[:20])
    assert np.array_equal(model.recommend(users).item_ids, loaded.recommend(users).item_ids)
    assert loaded.version_id_ == model.version_id_
    assert loaded.explain(users[0], list(model.recommend(users[:1]).item_ids[0][:3])) == model.explain(
        users[0], list(model.recommend(users[:1]).item_ids[0][:3])
    )
    before = model.version_id_
    model.add_items(
        pd.DataFrame({"text": ["a new story"], "keywords": ["classic"]}, index=pd.Index(["znew"], name="item_id"))
    )
    assert model.version_id_ != before
    loaded.add_items(
        pd.DataFrame({"text": ["a new story"], "keywords": ["classic"]}, index=pd.Index(["znew"], name="item_id"))
    )
    assert loaded.version_id_ == model.version_id_  # the transform was saved, so the new vector is the same
    with pytest.raises(DataError, match="not a recgov content model file"):
        ContentRecommender.load(tmp_path / "missing.npz")


def test_families_are_registered_with_their_declarations():
    content, hybrid = get_family("content_tfidf"), get_family("hybrid")
    assert content.erasure is ErasureKind.exact and "item_text" in content.inputs
    assert hybrid.erasure is ErasureKind.retrain and {"interactions", "item_text"} <= hybrid.inputs


# -- hybrid ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_world():
    data = generate(SyntheticSpec(n_users=300, n_items=150, n_interactions=12000, seed=7, n_new_items=15))
    from recommender.cold_start import cold_start_split

    new_ids = data.items.index[data.items["new_item"].to_numpy()]
    split = cold_start_split(data.events, new_ids, random_state=0)
    warm = data.items.loc[data.items.index.isin(split.train.item_ids.astype(str))]
    return data, split, warm, data.items.loc[new_ids]


HYB = {
    "als_params": {"factors": 8, "iterations": 8, "random_state": 0, "num_threads": 1},
    "content_params": {"text_columns": ("text", "keywords")},
}


@pytest.mark.parametrize("fusion", ["linear", "learned"])
def test_hybrid_scores_are_the_sum_of_their_parts_and_tags_give_the_shares(small_world, fusion, tmp_path):
    _, split, warm, new = small_world
    model = HybridRecommender(fusion=fusion, **HYB).fit(split.train, items=warm).add_items(new)
    users = np.arange(10)
    parts = model.parts(users)
    assert np.allclose(sum(parts.values()), model.score_items(users))
    batch = model.recommend(list(split.train.user_ids[:3]), k=5)
    tags = model.explain(str(batch.user_ids[0]), list(batch.item_ids[0]))
    assert len(tags) == 5
    for item_tags in tags:
        blend = item_tags[0]
        assert blend.kind == "hybrid_blend" and blend.text.startswith("Blend of")
        # exact only where every part's own decomposition is (the ALS part's is of another factor than served)
        assert blend.exact == (set(blend.evidence["exact_parts"]) == set(blend.evidence["parts"]))
        assert blend.evidence["served_score"] == pytest.approx(blend.evidence["score"], abs=1e-5)
        assert sum(blend.evidence["shares"].values()) == pytest.approx(1.0)
        assert sum(blend.evidence["parts"].values()) == pytest.approx(blend.evidence["score"], abs=1e-5)
    # New items are recommended: they are columns of the model, scored through the mapping.
    new_cols = model.train_.item_index(new.index)
    assert (new_cols >= 0).all() and np.isfinite(model.score_items(users, new_cols)).all()
    model.save(tmp_path / "h.npz")
    loaded = HybridRecommender.load(tmp_path / "h.npz")
    ids = list(split.train.user_ids[:20])
    assert np.array_equal(loaded.recommend(ids).item_ids, model.recommend(ids).item_ids)
    assert loaded.version_id_ == model.version_id_


def test_hybrid_forget_drops_the_subject_and_owes_a_retrain(small_world):
    _, split, warm, _ = small_world
    model = HybridRecommender(**HYB).fit(split.train, items=warm)
    gone = str(split.train.user_ids[3])
    before = model.version_id_
    outcome = model.forget([gone])
    assert outcome.kind is ErasureKind.retrain and outcome.retrain_required and outcome.removed == (gone,)
    assert gone not in set(model.subjects()) and model.version_id_ != before
    assert model.recommend([gone]).fallback.all()
    assert not model.recommend(list(split.train.user_ids[:3])).fallback.any()


def test_hybrid_bad_input_is_a_clear_error(small_world):
    _, split, warm, _ = small_world
    with pytest.raises(ConfigError, match="'fusion' parameter of HybridRecommender must be 'linear' or 'learned'"):
        HybridRecommender(fusion="magic").fit(split.train, items=warm)
    with pytest.raises(ConfigError, match="a parent got an unknown parameter"):
        HybridRecommender(als_params={"factor": 3}).fit(split.train, items=warm)
    with pytest.raises(DataError, match="no column 'keywords'"):
        HybridRecommender(**HYB).fit(split.train, items=warm.drop(columns=["keywords"]))


# -- the benchmark's claim on a small instance ------------------------------------------------


def test_bench_hybrid_ordering_on_a_small_instance():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import bench_hybrid

    report = bench_hybrid.run(users=500, items=300, events=25000, new_items=30, seed=0, factors=16, tolerance=0.02)
    r = report["results"]
    assert r["content_tfidf"]["new_items"]["ndcg"] > r["als"]["new_items"]["ndcg"]  # ALS cannot rank new items
    assert r["als"]["rest"]["ndcg"] > r["content_tfidf"]["rest"]["ndcg"]  # collaborative beats content on warm items
    for name in ("hybrid_linear", "hybrid_learned"):
        assert report["checks"][name] == {"beats_parents_on_new_items": True, "matches_als_on_rest": True}, (name, r)
    assert "NDCG@10 new" in bench_hybrid.table(report)


# -- the synthetic content ----------------------------------------------------------------------


def test_synthetic_keywords_follow_the_latent_factors():
    from recommender import _synthetic_world as world

    spec = SyntheticSpec(n_users=50, n_items=400, n_interactions=500, seed=3)
    data = generate(spec)
    catalog = world.make_catalog(spec, 5)
    # The dimension an item is strongest on names most of its topic words.
    dims = np.abs(catalog.factors).argmax(axis=1)
    sides = catalog.factors[np.arange(len(dims)), dims] >= 0
    hits = [
        sum(w in world.topic_vocabulary(spec.n_factors)[(int(d), bool(s))] for w in kw.split())
        for kw, d, s in zip(data.items["keywords"], dims, sides)
    ]
    assert np.mean(hits) > 1.5  # of 6 topic words; uniform over 16 vocabularies would give 0.375
    assert data.items["keywords"].str.split().map(len).eq(8).all()
    assert (data.items["price"] > 0).all() and (data.items["release_time"] < spec.start).all()
    assert not data.items["new_item"].any()


def test_new_items_change_nothing_else():
    base = generate(SyntheticSpec(n_users=100, n_items=60, n_interactions=2000, seed=5))
    marked = generate(SyntheticSpec(n_users=100, n_items=60, n_interactions=2000, seed=5, n_new_items=6))
    pd.testing.assert_frame_equal(base.events, marked.events)
    pd.testing.assert_frame_equal(base.items.drop(columns=["new_item"]), marked.items.drop(columns=["new_item"]))
    assert int(marked.items["new_item"].sum()) == 6
    assert "n_new_items" not in base.source and '"n_new_items":6' in marked.source
    with pytest.raises(ValueError, match="n_new_items must be below n_items"):
        SyntheticSpec(n_items=10, n_new_items=10)


# -- sentence embeddings (the content extra) ---------------------------------------------------


def _embed_family():
    from recommender.family import unavailable_families

    try:
        from recommender.families.content_embed import ContentEmbedRecommender
    except ImportError as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the content extra is missing under CI: {err} ({unavailable_families()})")
        pytest.skip(f"the content extra is not installed: {err}")
    return ContentEmbedRecommender


def test_content_embed_matches_meaning_offline_and_round_trips(tmp_path, monkeypatch):
    embed = _embed_family()
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("content_embed tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)  # the encoder is packaged: nothing is fetched
    items = table(
        {
            "i0": "a dragon and a wizard in an enchanted kingdom",
            "i1": "spaceships and robots on a distant planet",
            "i2": "sorcerers cast spells on the knights of a castle",
            "i3": "a romantic comedy about a chaotic wedding",
            "i4": "",
        }
    )
    train = matrix([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0]], items=list(items.index))
    model = embed().fit(train, items=items)
    assert model.recommend(["u0"], k=1).item_ids[0, 0] == "i2"  # no shared word with i0, the same meaning
    vectors = model.item_vectors_.toarray()
    assert np.linalg.norm(vectors[:4], axis=1) == pytest.approx(np.ones(4), abs=1e-5) and not vectors[4].any()
    assert model.score_items(np.array([0]), np.array([2]))[0, 0] == pytest.approx(
        float(vectors[0] @ vectors[2]), abs=1e-6
    )
    [[tag], [fallback]] = model.explain("u0", ["i2", "i4"])
    assert tag.kind == "shares_content" and tag.exact and tag.items == ("i0",)
    assert fallback.kind == "content_fallback" and fallback.evidence["fallback"] == "no_content"
    model.save(tmp_path / "e.npz")
    loaded = embed.load(tmp_path / "e.npz")
    assert loaded.version_id_ == model.version_id_
    model.add_items(table({"i9": "a young wizard learns magic spells"}))
    assert model.recommend(["u0"], k=1).item_ids[0, 0] == "i9"
    with pytest.raises(DataError, match="no column 'text'"):
        model.add_items(pd.DataFrame({"blurb": ["x"]}, index=pd.Index(["i10"], name="item_id")))


# -- in a comparison of families ------------------------------------------------------------------


def test_evaluate_families_gives_content_families_the_item_table():
    from recommender.feedback import FeedbackConfig
    from recommender.pipeline import content_inputs, run_evaluation
    from recommender.split import SplitConfig

    dataset = generate(SyntheticSpec(n_users=300, n_items=150, n_interactions=12000, seed=9))
    run = run_evaluation(
        dataset,
        split_config=SplitConfig(kind="random", test_fraction=0.2),
        feedback=FeedbackConfig(),
        tune=False,
        families=["content_tfidf", "hybrid"],
    )
    for name in ("content_tfidf", "hybrid"):
        tags = run.families[name]["tags"]
        assert tags["share_tagged"] == 1.0
        assert tags["tag_kinds"].get("shares_content", 0) > 0, tags  # content was read, not the no-content fallback
    model = run.models["content_tfidf"]
    assert model.train_.n_items == run.matrices.train.n_items  # the same items as every other model
    # A table without the text column the model reads: no content, and the tags say so.
    bare = dataset.items.drop(columns=["text"])
    assert (
        content_inputs(ContentRecommender(), dataset.__class__(events=dataset.events, items=bare), run.matrices.train)
        == {}
    )
    assert content_inputs(run.models["popularity"], dataset, run.matrices.train) == {}


def test_a_pack_must_allow_item_content_for_the_content_families():
    from governance.family_inputs import check_family_inputs
    from governance.packs import resolve_pack
    from governance.policy import load_pack

    eu = load_pack(resolve_pack("eu-gdpr-dsa"))
    for name in ("content_tfidf", "hybrid"):
        with pytest.raises(
            ConfigError,
            match=r"reads item_category, item_price, item_release, item_text, not on the personalization allow-list",
        ):
            check_family_inputs(get_family(name), eu)
    allowing = eu.pack.model_copy(deep=True)
    allowing.minimization.purposes["personalization"].allowed_inputs.extend(["text", "category", "price", "release"])
    for name in ("content_tfidf", "hybrid"):
        check_family_inputs(get_family(name), allowing)


def test_cold_start_split_keeps_new_items_out_of_training_and_refuses_bad_input(small_world):
    from recommender.cold_start import cold_start_split

    data, split, _, new = small_world
    assert not set(new.index) & set(split.train.item_ids.astype(str))
    on_new = data.events["item_id"].astype(str).isin(new.index)
    assert split.test_new.shape == (split.train.n_users, len(new)) and 0 < split.test_new.nnz <= int(on_new.sum())
    with pytest.raises(ConfigError, match="new_item_ids is empty"):
        cold_start_split(data.events, [])
    with pytest.raises(DataError, match="none of the 1 new items has an event"):
        cold_start_split(data.events, ["no-such-item"])
    with pytest.raises(DataError, match="every event is on a new item"):
        cold_start_split(data.events, data.items.index)
