"""The neural families (two_tower, ncf, session): shapes, determinism, watched training, save/load, int8, erasure.

Small data and few epochs: the whole file runs in well under a minute on two
cores. Without torch (the ``neural`` extra) the file is skipped, except under
``CI=true``, where that is a failure.
"""

from __future__ import annotations

import json
import math
import os
import zipfile

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recommender.errors import ConfigError, DataError
from recommender.training_health import HealthConfig, TrainingInstabilityError, TrainingLog, check_training

try:
    import torch
except ImportError as err:  # pragma: no cover - depends on the environment
    if os.environ.get("CI") == "true":
        pytest.fail(f"torch (the 'neural' extra) is missing under CI: {err}", pytrace=False)
    pytest.skip(f"torch (the 'neural' extra) is not installed: {err}", allow_module_level=True)

from recommender.data import InteractionMatrix  # noqa: E402
from recommender.families.neural_ncf import NCFRecommender, sample_negatives  # noqa: E402
from recommender.families.neural_session import SessionRecommender, sessions_from_events  # noqa: E402
from recommender.families.neural_two_tower import TwoTowerRecommender, quantize_two_tower  # noqa: E402
from recommender.family import ErasureKind, families, get_family, unavailable_families  # noqa: E402
from recommender.feedback import FeedbackConfig, to_implicit  # noqa: E402
from recommender.pipeline import item_categories_for  # noqa: E402
from recommender.synthetic import SyntheticSpec, generate  # noqa: E402

SMALL = {
    "two_tower": {"dim": 16, "hidden": 32, "epochs": 3, "batch_size": 128},
    "ncf": {"factors": 8, "layers": [16, 8], "epochs": 3, "batch_size": 512},
    "session": {"dim": 16, "hidden": 16, "epochs": 3, "batch_size": 64},
}


@pytest.fixture(scope="module")
def data():
    dataset = generate(SyntheticSpec(n_users=80, n_items=120, n_interactions=3_000, seed=11))
    train = to_implicit(dataset.events, FeedbackConfig())
    return {"dataset": dataset, "train": train, "events": dataset.events, "categories": item_categories_for(dataset, train)}


def build(name: str, data, **params):
    kinds = {"two_tower": TwoTowerRecommender, "ncf": NCFRecommender, "session": SessionRecommender}
    model = kinds[name](**{**SMALL[name], **params})
    side = {"two_tower": {"item_categories": data["categories"]}, "ncf": {}, "session": {"events": data["events"]}}[name]
    return model, side


@pytest.fixture(scope="module")
def fitted(data):
    out = {}
    for name in SMALL:
        model, side = build(name, data)
        out[name] = model.fit(data["train"], **side)
    return out


NAMES = sorted(SMALL)


# -- registry ------------------------------------------------------------------------
def test_the_neural_families_are_registered_with_their_extra_and_inputs():
    known = families()
    for name in NAMES:
        assert name in known, unavailable_families()
        fam = get_family(name)
        assert fam.extra == "neural" and fam.erasure is ErasureKind.retrain
        assert "interactions" in fam.inputs
    assert get_family("two_tower").inputs >= {"item_category"}
    assert get_family("session").inputs >= {"session_id", "timestamp"}
    assert not any(name.startswith("neural") for name in unavailable_families())


# -- shapes and serving --------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_lists_have_the_asked_shape_finite_scores_and_no_seen_items(fitted, data, name):
    model, train = fitted[name], data["train"]
    users = list(train.user_ids[:25])
    batch = model.recommend(users, k=7)
    assert batch.item_indices.shape == (25, 7) and batch.scores.shape == (25, 7)
    assert not batch.fallback.any()
    valid = batch.item_indices >= 0
    assert valid.all() and np.isfinite(batch.scores).all()
    assert (np.diff(batch.scores, axis=1) <= 1e-6).all(), "a list is not in descending score order"
    seen = train.matrix[train.user_index(users)].toarray() > 0
    assert not np.take_along_axis(seen, batch.item_indices, axis=1).any()
    unknown = model.recommend(["nobody"], k=3)
    assert unknown.fallback.all()


def test_two_tower_scores_are_dot_products_of_unit_tower_outputs(fitted, data):
    model = fitted["two_tower"]
    assert model.user_vectors_.shape == (data["train"].n_users, 16)
    assert model.item_vectors_.shape == (data["train"].n_items, 16)
    np.testing.assert_allclose(np.linalg.norm(model.item_vectors_, axis=1), 1.0, atol=1e-5)
    rows = np.array([0, 3])
    np.testing.assert_allclose(model._score_rows(rows), model.user_vectors_[rows] @ model.item_vectors_.T, rtol=1e-6)
    # the tower vectors used for serving are what the network computes for those users
    net = model.module_
    m = data["train"].matrix
    hist = m.indices[m.indptr[3] : m.indptr[3 + 1]]
    with torch.no_grad():
        mean = net.history.weight[torch.from_numpy(hist.astype(np.int64))].mean(dim=0, keepdim=True)
        u = net.user_vectors(torch.tensor([3]), mean).numpy()
    np.testing.assert_allclose(model.user_vectors_[3], u[0], atol=1e-5)


def test_ncf_scoring_all_items_at_once_equals_scoring_each_pair(fitted, data):
    model = fitted["ncf"]
    n_items = data["train"].n_items
    rows = np.array([0, 5, 9])
    fast = model._score_rows(rows)
    with torch.no_grad():
        users = torch.from_numpy(np.repeat(rows, n_items))
        items = torch.from_numpy(np.tile(np.arange(n_items), len(rows)))
        slow = model.module_(users, items).numpy().reshape(len(rows), n_items)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)


def test_sampled_negatives_are_never_positives(data):
    binary = sp.csr_matrix((data["train"].matrix > 0).astype(np.float32))
    users = np.repeat(np.arange(binary.shape[0]), 3)
    negs = sample_negatives(binary, users, 4, torch.Generator().manual_seed(0))
    assert negs.shape == (len(users), 4)
    assert not (np.asarray(binary[np.repeat(users, 4), negs.ravel()]).ravel() > 0).any()


# -- determinism ---------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_weights_other_seed_other_model(fitted, data, name):
    again, side = build(name, data)
    again.fit(data["train"], **side)
    assert again.version_id_ == fitted[name].version_id_
    users = list(data["train"].user_ids[:10])
    np.testing.assert_array_equal(again.recommend(users, k=5).item_indices, fitted[name].recommend(users, k=5).item_indices)
    other, side = build(name, data, random_state=1)
    other.fit(data["train"], **side)
    assert other.version_id_ != fitted[name].version_id_


def test_training_leaves_the_callers_torch_state_alone(data):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    model, side = build("ncf", data, epochs=1)
    model.fit(data["train"], **side)
    assert torch.equal(torch.rand(3), expected)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, det)


# -- watched training ----------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_every_run_records_its_loss_and_gradient_norms(fitted, name):
    report = fitted[name].training_report()
    assert report["epochs"] == 3 and len(report["loss"]) == 3 and len(report["grad_norm_max"]) == 3
    assert all(isinstance(v, float) and v > 0 for v in report["loss"] + report["grad_norm_mean"])
    assert all(a <= b + 1e-9 for a, b in zip(report["grad_norm_mean"], report["grad_norm_max"]))
    assert report["unstable"] is False
    assert report["loss"][-1] < report["loss"][0], "training did not lower the loss"
    json.dumps(report)


@pytest.mark.parametrize("name", NAMES)
def test_a_huge_learning_rate_is_caught_as_unstable(data, name):
    model, side = build(name, data, optimizer="sgd", lr=1e7)
    with pytest.raises(TrainingInstabilityError) as info:
        model.fit(data["train"], **side)
    log = info.value.log
    assert log.unstable and log.instability.kind in {"non_finite", "exploding_gradients", "loss_divergence"}
    assert "lower the learning rate" in str(info.value) and log.instability.kind in str(info.value)
    assert not hasattr(model, "train_"), "a failed fit left a fitted model behind"


def test_flag_mode_keeps_the_model_and_marks_it(data):
    model, side = build("ncf", data, optimizer="sgd", lr=1e7, health={"on_instability": "flag"})
    model.fit(data["train"], **side)
    assert model.training_log_.unstable and model.training_report()["unstable"] is True


def _log(losses, norms_per_epoch):
    log = TrainingLog()
    found = None
    for loss, norms in zip(losses, norms_per_epoch):
        log.add_epoch(np.array([loss]), np.array(norms))
        found = found or check_training(log, HealthConfig())
    return found


def test_the_instability_rules_on_hand_made_logs():
    assert _log([1.0, 0.8, 0.7, 0.65], [[1.0], [1.2], [0.9], [1.1]]) is None
    assert _log([1.0, math.nan], [[1.0], [1.0]]).kind == "non_finite"
    assert _log([1.0, 0.9], [[1.0], [math.inf]]).kind == "non_finite"
    found = _log([1.0, 0.9], [[1.0], [2e4]])
    assert found.kind == "exploding_gradients" and found.epoch == 1
    assert _log([1.0, 0.9], [[0.001], [5.0]]).kind == "exploding_gradients"  # 5000x the first epoch's median
    assert _log([1.0, 3.5], [[1.0], [1.0]]).kind == "loss_divergence"
    # three epochs in a row more than 10% above the best earlier loss
    found = _log([1.0, 0.5, 0.6, 0.6, 0.6], [[1.0]] * 5)
    assert found.kind == "loss_divergence" and found.epoch == 4
    assert _log([1.0, 0.5, 0.6, 0.6, 0.54], [[1.0]] * 5) is None  # back within 10%


# -- save and load -------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_give_the_same_lists_without_pickle(fitted, data, name, tmp_path):
    model = fitted[name]
    path = tmp_path / f"{name}.npz"
    digest = model.save(path)
    assert len(digest) == 64 and model.save(tmp_path / "again.npz") == digest, "saving is not deterministic"
    with np.load(path, allow_pickle=False) as npz:
        assert all(npz[key].dtype != object for key in npz.files)
    with zipfile.ZipFile(path) as zf:
        assert all(n.endswith(".npy") for n in zf.namelist())
    loaded = type(model).load(path)
    assert loaded.version_id_ == model.version_id_
    users = list(data["train"].user_ids[:15])
    a, b = model.recommend(users, k=6), loaded.recommend(users, k=6)
    np.testing.assert_array_equal(a.item_indices, b.item_indices)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    assert loaded.training_report()["loss"] == model.training_report()["loss"]
    assert loaded.explain(users[0], list(a.item_ids[0])) == model.explain(users[0], list(a.item_ids[0]))


def test_loading_refuses_tampered_weights_other_families_and_junk(fitted, tmp_path):
    path = tmp_path / "m.npz"
    fitted["ncf"].save(path)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    key = next(k for k in arrays if k.startswith("w:gmf_item"))
    arrays[key] = arrays[key] + 0.01
    np.savez(tmp_path / "tampered.npz", **arrays)
    with pytest.raises(DataError, match="do not match the saved version id"):
        NCFRecommender.load(tmp_path / "tampered.npz")
    with pytest.raises(DataError, match="unsupported model format"):
        TwoTowerRecommender.load(path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a recgov neural model file"):
        NCFRecommender.load(tmp_path / "junk.npz")


# -- int8 ----------------------------------------------------------------------------
def test_int8_two_tower_stays_close_to_float(fitted, data):
    model = fitted["two_tower"]
    q = quantize_two_tower(model)
    rows = np.arange(data["train"].n_users)
    f, i = q.float_scores(rows), q.scores(rows)
    # the float path is the fitted model's scoring
    np.testing.assert_allclose(f, model._score_rows(rows), atol=1e-5)
    assert np.abs(f - i).max() < 0.05
    # ... and the int8 path really is quantised: not the float scores, but the (int8 items x 8-bit users) product
    assert np.abs(f - i).max() > 1e-5
    top_f, top_i = q.recommend_index(rows, 10, int8=False), q.recommend_index(rows, 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top_f, top_i)])
    assert overlap >= 0.9
    # NDCG@10 of the int8 lists against the float lists' items as the relevant set, computed by hand
    discounts = 1.0 / np.log2(np.arange(2, 12))
    ndcg = [sum(discounts[r] for r, item in enumerate(b) if item in set(a)) / discounts.sum() for a, b in zip(top_f, top_i)]
    assert np.mean(ndcg) >= 0.95
    sizes = q.size_bytes()
    assert sizes["int8"] < sizes["float32"] / 3


def test_int8_two_tower_uses_an_int8_item_matrix_with_per_item_scales(fitted):
    from recommender.families.neural_two_tower import quantize_item_rows

    model = fitted["two_tower"]
    q = quantize_two_tower(model)
    n_items, dim = model.item_vectors_.shape
    assert q.item_int8.dtype == torch.int8 and q.item_int8.shape == (n_items, dim)
    assert q.item_scales.shape == (n_items,)
    # the packed fbgemm weight holds exactly these codes and scales (per output channel = per item)
    weight, bias = torch.ops.quantized.linear_unpack(q.packed)
    assert bias is None and weight.dtype == torch.qint8 and weight.qscheme() == torch.per_channel_affine
    assert torch.equal(weight.int_repr(), q.item_int8)
    np.testing.assert_allclose(weight.q_per_channel_scales().numpy(), q.item_scales.numpy(), rtol=1e-6)
    # per-row scale: each item's largest code is +-127, and decoding recovers the vector to half a step
    assert (q.item_int8.abs().amax(dim=1) == 127).all()
    decoded = q.item_int8.float().numpy() * q.item_scales.numpy()[:, None]
    assert (np.abs(decoded - model.item_vectors_) <= q.item_scales.numpy()[:, None] / 2 + 1e-7).all()
    # int8 scores are the decoded item matrix against the (8-bit) user vectors: within the users' quantisation error
    u = q.user_vectors(np.arange(5))
    scores = q.item_scores(u).numpy()
    assert scores.dtype == np.float32
    # per-row user quantisation: a step of 1/63 on u / max|u| (7-bit codes), i.e. max|u| / 63 on u
    step = u.abs().amax(dim=1).numpy()[:, None] / 63
    bound = step / 2 * np.abs(decoded).sum(axis=1)[None, :] + 1e-5
    assert (np.abs(scores - u.numpy() @ decoded.T) <= bound).all()
    # ... so a user's int8 scores do not depend on the other users of its call
    np.testing.assert_array_equal(q.item_scores(u[:1]).numpy(), scores[:1])
    np.testing.assert_array_equal(q.item_scores(torch.cat([u[:1], 10 * u[1:]])).numpy()[0], scores[0])
    # a zero row gets scale 1 and zero codes
    codes, scales = quantize_item_rows(np.array([[0.0, 0.0], [0.5, -0.25]], dtype=np.float32))
    assert codes.tolist() == [[0, 0], [127, -64]] and scales[0] == 1.0
    # top_k on both paths returns the catalogue's k best, across several user blocks
    from recommender.families.neural_two_tower import RETRIEVAL_BLOCK

    everyone = q.user_vectors(np.arange(model.train_.n_users))
    assert everyone.shape[0] > RETRIEVAL_BLOCK
    ref = np.argsort(-(everyone.numpy() @ model.item_vectors_.T), axis=1, kind="stable")[:, :10]
    _, idx = q.top_k(everyone, 10, int8=False)
    assert idx.shape == ref.shape and (np.sort(idx.numpy(), axis=1) == np.sort(ref, axis=1)).all()
    vals_i, idx_i = q.top_k(everyone, 10)
    full_i = q.item_scores(everyone).numpy()
    np.testing.assert_allclose(vals_i.numpy(), np.take_along_axis(full_i, idx_i.numpy(), axis=1), rtol=1e-6)
    np.testing.assert_allclose(vals_i.numpy(), -np.sort(-full_i, axis=1)[:, :10], rtol=1e-6)


def test_quantize_two_tower_refuses_other_models(fitted):
    with pytest.raises(ConfigError, match="TwoTowerRecommender"):
        quantize_two_tower(fitted["ncf"])
    with pytest.raises(Exception, match="quantize_two_tower"):
        quantize_two_tower(TwoTowerRecommender(**SMALL["two_tower"]))


# -- bad input -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, params, needle",
    [
        ("two_tower", {"dim": 0}, "'dim'"),
        ("two_tower", {"temperature": 0.0}, "'temperature'"),
        ("two_tower", {"lr": -1.0}, "'lr'"),
        ("two_tower", {"lr": float("nan")}, "'lr'"),
        ("two_tower", {"use_categories": 1}, "'use_categories'"),
        ("ncf", {"optimizer": "rmsprop"}, "'optimizer'"),
        ("ncf", {"layers": [15, 8]}, "'layers'"),
        ("ncf", {"epochs": 1.5}, "'epochs'"),
        ("ncf", {"health": {"max_grad_norm": -1}}, "health.max_grad_norm"),
        ("ncf", {"health": {"nonsense": 1}}, "health.nonsense"),
        ("session", {"max_len": 1}, "'max_len'"),
        ("session", {"session_gap_minutes": 0}, "'session_gap_minutes'"),
        ("session", {"sequences": "all"}, "'sequences'"),
    ],
)
def test_bad_parameters_are_clear_config_errors_before_training(data, name, params, needle):
    model, side = build(name, data, **params)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("'", "'")):
        model.fit(data["train"], **side)
    assert not hasattr(model, "train_")


def test_bad_side_inputs_are_clear_errors(data):
    with pytest.raises(ConfigError, match="item_categories has 3 entries"):
        TwoTowerRecommender(**SMALL["two_tower"]).fit(data["train"], item_categories=["a", "b", "c"])
    with pytest.raises(DataError, match="miss column"):
        SessionRecommender(**SMALL["session"]).fit(data["train"], events=data["events"].drop(columns=["timestamp"]))
    with pytest.raises(ConfigError, match="must be a pandas DataFrame"):
        SessionRecommender(**SMALL["session"]).fit(data["train"], events=[1, 2])
    with pytest.raises(ConfigError, match="not in the model's catalogue"):
        NCFRecommender(**{**SMALL["ncf"], "epochs": 1}).fit(data["train"]).explain(str(data["train"].user_ids[0]), ["no-such-item"])


# -- tags ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_every_listed_item_gets_a_tag_of_the_family_kind(fitted, data, name):
    model, train = fitted[name], data["train"]
    kind = {"two_tower": "latent_match", "ncf": "latent_match", "session": "session_context"}[name]
    for user in train.user_ids[:5]:
        batch = model.recommend([user], k=5)
        tags = model.explain(str(user), list(batch.item_ids[0]))
        assert len(tags) == 5
        for item_tags in tags:
            assert item_tags and item_tags[0].kind == kind and item_tags[0].text and item_tags[0].exact is False
            json.dumps(item_tags[0].to_dict())
        if name != "session":
            row = int(train.user_index(str(user))[0])
            history = set(train.item_ids[train.matrix.indices[train.matrix.indptr[row] : train.matrix.indptr[row + 1]]])
            assert all(set(t[0].items) <= history and t[0].items for t in tags)
    fallback = model.explain("nobody", list(model.recommend(["nobody"], k=2).item_ids[0]))
    assert all(t[0].kind == "popularity_fallback" and t[0].exact for t in fallback)


def test_session_tags_name_items_of_the_last_session_with_their_influence(fitted, data):
    model = fitted["session"]
    row = int(np.flatnonzero(model.context_lengths_ >= 2)[0])
    user = str(data["train"].user_ids[row])
    session = {str(data["train"].item_ids[c]) for c in model.context_[row, : model.context_lengths_[row]]}
    items = model.recommend([user], k=3).item_ids[0]
    for (tag,) in model.explain(user, list(items)):
        assert set(tag.items) <= session and tag.items
        assert tag.evidence["influence"] == sorted(tag.evidence["influence"], reverse=True)
        assert tag.evidence["sessions_from"] == "session_id"


# -- sessions ------------------------------------------------------------------------
def _tiny_train():
    m = sp.csr_matrix(np.ones((2, 4), dtype=np.float32))
    return InteractionMatrix(m, np.array(["a", "b"], dtype=object), np.array(["i0", "i1", "i2", "i3"], dtype=object))


def test_sessions_come_from_session_ids_or_a_time_gap():
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    minutes = [0, 5, 6, 120, 121, 0, 1]
    events = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "a", "b", "b"],
            "item_id": ["i0", "i1", "i1", "i2", "i3", "i3", "i0"],
            "timestamp": [t0 + pd.Timedelta(minutes=m) for m in minutes],
        }
    )
    users, items, codes, source = sessions_from_events(events, _tiny_train(), gap_minutes=30)
    assert source == "time_gap"
    # a: [i0, i1 (twice in a row -> once)] then, 2 hours later, [i2, i3]; b: [i3, i0]
    assert users.tolist() == [0, 0, 0, 0, 1, 1]
    assert items.tolist() == [0, 1, 2, 3, 3, 0]
    assert codes.tolist() == [0, 0, 1, 1, 2, 2]
    events["session_id"] = ["s1", "s1", "s2", "s2", "s2", "s3", "s3"]
    users, items, codes, source = sessions_from_events(events, _tiny_train(), gap_minutes=30)
    assert source == "session_id"
    assert items.tolist() == [0, 1, 1, 2, 3, 3, 0] and codes.tolist() == [0, 0, 1, 1, 1, 2, 2]


def test_user_sequences_are_cut_into_overlapping_windows_and_serve_the_latest_items(data):
    model = SessionRecommender(**{**SMALL["session"], "epochs": 1, "max_len": 3, "sequences": "user"})
    model._set_sessions(np.array([0] * 7 + [1] * 2 + [2]), np.arange(10), np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 4]), "session_id")
    starts, ends = model._training_spans()
    # user 0: items 0..6 -> windows [0, 4) and [3, 7) (every step after the first is a target once); user 1: [7, 9)
    assert starts.tolist() == [0, 3, 7] and ends.tolist() == [4, 7, 9]
    model.fit(data["train"], events=data["events"])
    row = int(np.argmax(model.context_lengths_))
    assert model.context_lengths_[row] == 3  # the latest max_len items across sessions
    assert "among your latest items" in model.explain(str(data["train"].user_ids[row]), [str(data["train"].item_ids[0])])[0][0].text


def test_recommend_session_ranks_items_for_an_anonymous_session(fitted, data):
    model = fitted["session"]
    session = [str(i) for i in data["train"].item_ids[:3]]
    items, scores = model.recommend_session(session, k=5)
    assert len(items) == 5 and not set(items) & set(session)
    assert (np.diff(scores) <= 1e-6).all()
    with pytest.raises(ConfigError, match="'k'"):
        model.recommend_session(session, k=0)


def test_session_model_without_events_reads_the_matrix_and_says_so(data):
    model = SessionRecommender(**{**SMALL["session"], "epochs": 1}).fit(data["train"])
    assert model.sessions_source_ == "matrix" and model.training_report()["sessions_from"] == "matrix"


# -- erasure -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ncf", "session"])
def test_forget_retrains_into_the_model_trained_without_the_subject(data, name):
    train = data["train"]
    model, side = build(name, data, epochs=2)
    model.fit(train, **side)
    before = model.version_id_
    gone = str(train.user_ids[4])
    with pytest.raises(ConfigError, match="not in the fitted model"):
        model.forget([gone, "never-seen"])
    assert model.version_id_ == before, "a refused request changed the model"
    outcome = model.forget([gone])
    assert outcome.kind is ErasureKind.retrain and outcome.removed == (gone,) and outcome.retrain_required
    assert outcome.detail["retrained"] and outcome.detail["version_id"] != before
    assert gone not in set(model.subjects())
    assert model.recommend([gone], k=3).fallback.all()
    keep = np.arange(train.n_users) != 4
    reduced = InteractionMatrix(train.matrix[keep], train.user_ids[keep], train.item_ids)
    reference, side = build(name, data, epochs=2)
    if name == "session":
        side = {"events": data["events"][data["events"]["user_id"].astype(str) != gone]}
    reference.fit(reduced, **side)
    assert reference.version_id_ == model.version_id_
    users = list(reduced.user_ids[:10])
    np.testing.assert_array_equal(reference.recommend(users, k=5).item_indices, model.recommend(users, k=5).item_indices)
    assert "removed" in outcome.to_dict() and gone not in json.dumps(outcome.to_dict())


# -- the evaluation pipeline -----------------------------------------------------------
def test_evaluating_families_feeds_each_the_side_inputs_it_declares(data):
    from recommender.pipeline import run_evaluation
    from recommender.split import SplitConfig

    run = run_evaluation(
        data["dataset"], split_config=SplitConfig(), feedback=FeedbackConfig(), tune=False, families=["two_tower", "session", "ncf"]
    )
    two_tower, session = run.models["two_tower"], run.models["session"]
    assert two_tower.category_matrix_.shape[1] > 0, "the two-tower model got no item categories"
    assert session.sessions_source_ == "session_id", "the session model got no events"
    # the categories are the dataset's, aligned with the training items
    expected = item_categories_for(data["dataset"], two_tower.train_)
    got = two_tower._fit_categories()
    assert [None if e is None else sorted(e.split("|")) for e in expected] == [None if g is None else sorted(g.split("|")) for g in got]


def test_two_tower_forget_of_an_items_only_user_drops_the_item_and_its_categories():
    # u5 alone touched i12: the retrain is the fit without u5, whose item universe (and category rows) lacks i12
    rng = np.random.default_rng(0)
    dense = (rng.random((30, 12)) < 0.3).astype(np.float32)
    dense[dense.sum(axis=1) == 0, 0] = 1.0
    dense = np.hstack([dense, np.zeros((30, 1), dtype=np.float32)])
    dense[5, -1] = 1.0
    items = np.array([f"i{i}" for i in range(13)], dtype=object)
    users = np.array([f"u{u}" for u in range(30)], dtype=object)
    categories = [f"c{i % 3}|d{i % 2}" for i in range(13)]
    params = {"dim": 8, "hidden": 8, "epochs": 2, "batch_size": 32}
    model = TwoTowerRecommender(**params).fit(InteractionMatrix(sp.csr_matrix(dense), users, items), item_categories=categories)
    model.forget(["u5"])
    keep = np.arange(30) != 5
    reference = TwoTowerRecommender(**params).fit(
        InteractionMatrix(sp.csr_matrix(dense[keep][:, :12]), users[keep], items[:12]), item_categories=categories[:12]
    )
    assert "i12" not in set(model.train_.item_ids) and model.category_matrix_.shape == reference.category_matrix_.shape
    assert model.version_id_ == reference.version_id_
