"""The two-tower int8 retrieval path: fixed user quantisation, determinism, and served lists through the measured top-k."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recommender.families.neural_two_tower import RETRIEVAL_BLOCK, TwoTowerRecommender, quantize_two_tower  # noqa: E402
from recommender.feedback import FeedbackConfig  # noqa: E402
from recommender.scoring import mask_seen, top_k_rows  # noqa: E402
from recommender.split import SplitConfig, split, train_test_matrices  # noqa: E402
from recommender.synthetic import SyntheticSpec, generate  # noqa: E402


@pytest.fixture(scope="module")
def quantized():
    dataset = generate(SyntheticSpec(n_users=120, n_items=400, n_interactions=6000, seed=3))
    train_events, test_events = split(dataset.events, SplitConfig())
    train = train_test_matrices(train_events, test_events, FeedbackConfig()).train
    model = TwoTowerRecommender(dim=16, hidden=32, epochs=2, batch_size=256, random_state=0).fit(train)
    return quantize_two_tower(model)


def test_int8_scores_are_the_exact_product_of_the_codes(quantized):
    """fbgemm's result equals (7-bit user codes) x (int8 item codes) computed exactly: no int16 saturation inside the kernel."""
    q = quantized
    users = q.user_vectors(np.arange(q.model.train_.n_users))
    unscaled, factor = q._int8_unscaled(users)
    torch.testing.assert_close(factor, users.abs().amax(dim=1, keepdim=True))
    codes = torch.round(users / factor * 63.0)  # 1..127 after the zero point 64
    assert codes.abs().max() == 63
    exact = (codes.double() @ q.item_int8.double().T) * q.item_scales.double() / 63.0
    torch.testing.assert_close(unscaled.double(), exact, rtol=1e-5, atol=1e-5)
    # and it is really quantised: not the float product
    assert (unscaled * factor - users @ q.item_float.T).abs().max() > 1e-5


def test_8bit_user_codes_would_saturate_fbgemms_kernel(quantized):
    """Why 7 bits: with codes up to 255 (scale 2/255, zero point 128) the same call drifts from the exact product."""
    q = quantized
    users = q.user_vectors(np.arange(q.model.train_.n_users))
    x = users / users.abs().amax(dim=1, keepdim=True)
    eight_bit = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(x, 2.0 / 255.0, 128, q.packed)
    codes = torch.clamp(torch.round(x * 127.5) + 128, 0, 255) - 128
    exact = (codes.double() @ q.item_int8.double().T) * q.item_scales.double() * (2.0 / 255.0)
    drift = float((eight_bit.double() - exact).abs().max())
    if drift <= 0.01:
        pytest.skip(f"this CPU's fbgemm kernel does not saturate (largest drift {drift:.2g}; e.g. an AVX512-VNNI kernel)")
    assert drift > 0.01


def test_a_users_int8_results_do_not_depend_on_its_block(quantized):
    q = quantized
    users = q.user_vectors(np.arange(q.model.train_.n_users))
    assert users.shape[0] > RETRIEVAL_BLOCK
    alone_v, alone_i = q.top_k(users[:1], 10)
    mixed = torch.cat([users[:1], 7.0 * users[1:RETRIEVAL_BLOCK]])
    block_v, block_i = q.top_k(mixed, 10)
    assert torch.equal(alone_v[0], block_v[0]) and torch.equal(alone_i[0], block_i[0])
    np.testing.assert_array_equal(q.item_scores(users[:1]).numpy()[0], q.item_scores(mixed).numpy()[0])


@pytest.mark.parametrize("int8", [True, False])
def test_served_lists_are_the_best_unseen_items_of_the_measured_path(quantized, int8):
    q = quantized
    rows = np.arange(q.model.train_.n_users)
    full = np.array(q.scores(rows) if int8 else q.float_scores(rows), copy=True)
    mask_seen(full, q.model._binary_, rows)
    expected = top_k_rows(full, 10)[0]
    got = q.recommend_index(rows, 10, int8=int8)
    np.testing.assert_array_equal(got, expected)
    seen = q.model._binary_
    assert not any(set(got[j]) & set(seen.indices[seen.indptr[r] : seen.indptr[r + 1]]) for j, r in enumerate(rows))
    # asking for more items than the catalogue holds pads with -1 (checked below)
    assert q.recommend_index(rows[:2], q.model.train_.n_items + 5, int8=int8).shape == (2, q.model.train_.n_items + 5)


def test_served_lists_run_out_with_minus_one(quantized):
    q = quantized
    n_items = q.model.train_.n_items
    lists = q.recommend_index(np.arange(3), n_items, int8=True)
    seen = q.model._binary_
    for j in range(3):
        n_unseen = n_items - (seen.indptr[j + 1] - seen.indptr[j])
        assert (lists[j, :n_unseen] >= 0).all() and (lists[j, n_unseen:] == -1).all()
        assert len(set(lists[j, :n_unseen])) == n_unseen


@pytest.mark.parametrize("n_cols", [4096, 5003, 20000])
def test_grouped_selection_equals_a_full_topk(n_cols):
    """select_top_k on a wide row (grouped path, with and without a partial last group) picks the same entries as torch.topk."""
    from recommender.families.neural_two_tower import GROUPED_FROM, GROUPED_FROM_CELLS, select_top_k

    assert n_cols >= GROUPED_FROM and 40 * n_cols >= GROUPED_FROM_CELLS
    gen = torch.Generator().manual_seed(n_cols)
    scores = torch.randn(40, n_cols, generator=gen)
    scores[0, -3:] = torch.tensor([50.0, 52.0, 51.0])  # the best items, past the last full group (when there is one)
    scores[1, :] = -float("inf")
    scores[1, 17] = 1.0  # one finite entry
    scores[2, ::2] = -float("inf")  # half the row masked
    for k in (1, 10, 50):
        values, cols = select_top_k(scores, k)
        expected_values, expected_cols = torch.topk(scores, k, dim=1)
        torch.testing.assert_close(values, expected_values)
        finite = torch.isfinite(expected_values)
        assert torch.equal(cols[finite], expected_cols[finite])
        torch.testing.assert_close(torch.gather(scores, 1, cols), values)


@pytest.fixture()
def grouped_everywhere(monkeypatch):
    """Every catalogue takes select_top_k's grouped path (the fixture's 400 items are below GROUPED_FROM)."""
    import recommender.families.neural_two_tower as tt

    monkeypatch.setattr(tt, "GROUPED_FROM", 16)
    monkeypatch.setattr(tt, "GROUPED_FROM_CELLS", 0)


@pytest.mark.parametrize("int8", [True, False])
def test_served_lists_through_the_grouped_selection(quantized, grouped_everywhere, int8):
    q = quantized
    rows = np.arange(q.model.train_.n_users)
    full = np.array(q.scores(rows) if int8 else q.float_scores(rows), copy=True)
    mask_seen(full, q.model._binary_, rows)
    expected = top_k_rows(full, 10)[0]
    for batch in (1, 7, RETRIEVAL_BLOCK + 5):
        got = np.vstack([q.recommend_index(rows[s : s + batch], 10, int8=int8) for s in range(0, len(rows), batch)])
        np.testing.assert_array_equal(got, expected)


def test_int8_lists_match_float_lists_and_never_hold_seen_items(quantized):
    """The int8 lists are the float lists up to near-ties: at least 95% of each top-10 in common on average, no seen item, no short list."""
    q = quantized
    rows = np.arange(q.model.train_.n_users)
    seen = q.model._binary_
    n_items = q.model.train_.n_items
    for batch in (1, RETRIEVAL_BLOCK, len(rows)):
        lists_i = np.vstack([q.recommend_index(rows[s : s + batch], 10) for s in range(0, len(rows), batch)])
        lists_f = q.recommend_index(rows, 10, int8=False)
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(lists_i, lists_f)])
        assert overlap >= 0.95, overlap
        for j, r in enumerate(rows):
            history = set(seen.indices[seen.indptr[r] : seen.indptr[r + 1]])
            assert not set(lists_i[j]) & history
            assert (lists_i[j] >= 0).all() == (n_items - len(history) >= 10)
            assert len(set(lists_i[j][lists_i[j] >= 0])) == int((lists_i[j] >= 0).sum())


def _exact_row_top_k(row: np.ndarray, k: int) -> np.ndarray:
    order = np.lexsort((np.arange(len(row)), -row))
    return order[: min(k, len(row))]


@pytest.mark.parametrize("n_cols", [7, 400, 4096, 5003, 56448])
def test_row_selection_is_exact_ties_included(n_cols):
    """select_row_top_k (one user per call) returns the k best by value, ties by column index, over any row."""
    from recommender.families.neural_two_tower import select_row_top_k

    rng = np.random.default_rng(n_cols)
    rows = [
        rng.standard_normal(n_cols).astype(np.float32),
        np.round(rng.standard_normal(n_cols) * 3).astype(np.float32),  # many ties, at the k-th place too
        np.zeros(n_cols, dtype=np.float32),  # every entry tied
    ]
    tail = rng.standard_normal(n_cols).astype(np.float32)
    tail[-3:] = [50.0, 52.0, 51.0]  # the best, past the last full group when there is one
    rows.append(tail)
    masked = rng.standard_normal(n_cols).astype(np.float32)
    masked[::2] = -np.inf  # half the row seen
    rows.append(masked)
    few = np.full(n_cols, -np.inf, dtype=np.float32)
    few[[0, n_cols // 2]] = [1.0, 2.0]  # fewer than k unseen
    rows.append(few)
    for row in rows:
        for k in (1, 10, 50, n_cols + 3):
            values, cols = select_row_top_k(row, k)
            expected = _exact_row_top_k(row, k)
            np.testing.assert_array_equal(cols, expected)
            np.testing.assert_array_equal(values, row[expected])


@pytest.mark.parametrize("int8", [True, False])
def test_one_user_per_call_gives_the_batched_lists(quantized, int8):
    """The one-user path (its own scoring call and selection) serves the lists of the batched path, up to ties at the k-th place."""
    q = quantized
    rows = np.arange(q.model.train_.n_users)
    batched = q.recommend_index(rows, 10, int8=int8)
    full = np.array(q.scores(rows) if int8 else q.float_scores(rows), copy=True)
    mask_seen(full, q.model._binary_, rows)
    for j, r in enumerate(rows):
        alone = q.recommend_index(rows[j : j + 1], 10, int8=int8)[0]
        if int8:  # the same codes and the same fbgemm call: the same scores, so the same lists unless the 10th place is tied
            kth = np.sort(full[j])[::-1][9]
            if (full[j] == kth).sum() == 1:
                np.testing.assert_array_equal(alone, batched[j])
            np.testing.assert_array_equal(full[j][alone], full[j][batched[j]])
        else:  # sgemv for one row and sgemm for a block may round differently: near-ties aside
            assert len(set(alone) & set(batched[j])) >= 9
    # and one user's int8 list is the exact best 10 of its own scores (the row path breaks ties by column index)
    user = q.user_vectors(rows[:1])
    values, cols = q.top_k(user, 10, int8=int8, seen_rows=rows[:1])
    own = q.item_scores(user, int8=int8).numpy()[0].copy()
    own[q.model._binary_.indices[q.model._binary_.indptr[0] : q.model._binary_.indptr[1]]] = -np.inf
    np.testing.assert_array_equal(cols.numpy()[0], _exact_row_top_k(own, 10))


@pytest.mark.parametrize("batch", [1, 3])
def test_one_user_lists_run_out_with_minus_one(quantized, batch):
    """No short list while k unseen items exist, -1 after that, no seen item: the same at one user per call as in a batch."""
    q = quantized
    n_items = q.model.train_.n_items
    seen = q.model._binary_
    for k in (10, n_items - 5, n_items + 5):
        lists = np.vstack([q.recommend_index(np.arange(s, s + batch), k) for s in range(0, 6, batch)])
        assert lists.shape == (6, k)
        for j in range(6):
            history = set(seen.indices[seen.indptr[j] : seen.indptr[j + 1]])
            n_unseen = n_items - len(history)
            assert (lists[j, : min(k, n_unseen)] >= 0).all() and (lists[j, min(k, n_unseen) :] == -1).all()
            assert not set(lists[j]) & history
            assert len(set(lists[j][lists[j] >= 0])) == min(k, n_unseen)
