"""Top-k lists of a factor model, scored in blocks of users with vectorised seen-item filtering.

Ranking every user of a factor model (evaluation, tuning) is one product per
block of users, ``U_block @ V.T`` in float32, followed by a top-k. What made it
slow before was the per-batch sparse row slicing that ``implicit.recommend``
needs to filter the items a user has already seen. Here the seen items are
masked in one vectorised step: the training matrix's CSR ``indptr`` and
``indices`` of the block's rows give, by index arithmetic alone (no loop per
user), the flat positions of the block's seen cells, which are set to ``-inf``.
The top-k is :func:`numpy.argpartition` followed by a sort of the ``k`` chosen;
on a wide catalogue the partition runs over the columns of each row's best
groups of columns only (group maxima are one vectorised reduction), because a
partition over every column costs more than the product itself.

The block size is chosen so that one block's score matrix stays within a memory
budget (64 MB by default): memory is bounded whatever the catalogue size.

Ties: within a list, equal scores are ordered by item index (ascending). When
several items tie at the ``k``-th place, which of them enters the list is
:func:`numpy.argpartition`'s choice; with real-valued factors such exact ties
practically never occur, and the lists equal ``implicit``'s (checked in the
tests on a seeded model).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recommender.base import Recommender
from recommender.errors import ConfigError

__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "block_rows",
    "factor_top_k",
    "mask_seen",
    "ranked_lists",
    "top_k_rows",
    "uses_factor_scores",
]

DEFAULT_BUDGET_BYTES = 64 * 2**20
"""Memory for one block's float32 score matrix (64 MB)."""


def block_rows(n_items: int, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> int:
    """Users per block so that a ``(block, n_items)`` float32 matrix fits ``budget_bytes`` (at least 1)."""
    if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, (int, np.integer)) or budget_bytes < 1:
        raise ConfigError(
            "The 'budget_bytes' parameter of block_rows must be an int in the range [1, inf). "
            f"Got {budget_bytes!r} instead."
        )
    return max(1, int(budget_bytes) // (4 * max(int(n_items), 1)))


def mask_seen(scores: np.ndarray, seen: sp.csr_matrix, rows: np.ndarray) -> None:
    """Set ``scores[j, i]`` to ``-inf`` for every item ``i`` stored in row ``rows[j]`` of ``seen`` (in place).

    The flat positions come from the CSR arrays directly: each block row ``j``
    contributes the slice ``indptr[rows[j]]:indptr[rows[j] + 1]`` of ``indices``,
    gathered for all rows at once with a repeat and a cumulative offset.
    """
    starts = seen.indptr[rows]
    counts = seen.indptr[rows + 1] - starts
    total = int(counts.sum())
    if total == 0:
        return
    block_of = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
    # position of each gathered entry inside its row's slice: 0, 1, ..., count-1
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    cols = seen.indices[np.repeat(starts, counts) + offsets]
    if scores.flags.c_contiguous:
        scores.reshape(-1)[block_of * scores.shape[1] + cols] = -np.inf
    else:  # reshape(-1) of a Fortran-ordered block is a copy: the mask would be lost
        scores[block_of, cols] = -np.inf


def _grouped_candidates(scores: np.ndarray, k: int) -> np.ndarray | None:
    """Columns that hold every row's top ``k`` (``k * g`` per row, ``-1`` past the end), or None when not worth it.

    The columns are cut into groups of ``g``; a row's ``k`` best entries lie in
    its ``k`` groups with the largest maxima (an entry above the ``k``-th best is
    in a group whose maximum beats it, and at most ``k - 1`` groups can), up to
    ties at the ``k``-th place. Group ``j`` is the columns ``j, j + G, j + 2G, ...``
    (``G = n // g``; the last ``n - G * g`` columns form one more group), so the
    maxima are an element-wise maximum of ``g`` contiguous slices: one vectorised
    pass over the block. The selection then works on ``G + k * g`` entries per row
    instead of ``n``: with ``g`` near ``sqrt(n / k)``, a few hundred instead of thousands.
    """
    n_rows, n_cols = scores.shape
    g = max(1, int(np.sqrt(n_cols / k)))
    stride = n_cols // g
    rest = n_cols - stride * g
    n_groups = stride + (rest > 0)
    if n_groups <= 2 * k or g < 2:
        return None
    maxima = np.empty((n_rows, n_groups), dtype=scores.dtype)
    np.max(scores[:, : stride * g].reshape(n_rows, g, stride), axis=1, out=maxima[:, :stride])
    if rest:
        maxima[:, stride] = scores[:, stride * g :].max(axis=1)
    groups = np.argpartition(maxima, n_groups - k, axis=1)[:, n_groups - k :]
    steps = np.arange(g)
    cols = np.where(
        (groups < stride)[:, :, None],
        groups[:, :, None] + stride * steps[None, None, :],
        np.where(steps < rest, stride * g + steps, -1)[None, None, :],
    )
    return cols.reshape(n_rows, k * g)


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` columns of each row (best first; ties by column index); ``-1``/NaN where a row runs out.

    Entries at ``-inf`` (masked) are never returned. On wide rows the choice is
    made among the columns of each row's best groups (:func:`_grouped_candidates`).
    """
    n_rows, n_cols = scores.shape
    idx = np.full((n_rows, k), -1, dtype=np.int64)
    val = np.full((n_rows, k), np.nan, dtype=np.float32)
    k_eff = min(k, n_cols)
    if k_eff == 0 or n_rows == 0:
        return idx, val
    cols = _grouped_candidates(scores, k_eff)
    if cols is None:
        pool = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
        pool_scores = scores
    else:
        pool = cols
        pool_scores = np.take_along_axis(scores, np.maximum(cols, 0), axis=1)
        pool_scores[cols < 0] = -np.inf
    width = pool.shape[1]
    pick = np.argpartition(pool_scores, width - k_eff, axis=1)[:, width - k_eff :] if k_eff < width else None
    part = pool if pick is None else np.take_along_axis(pool, pick, axis=1)
    part_scores = pool_scores if pick is None else np.take_along_axis(pool_scores, pick, axis=1)
    # sort by score descending, then by item index ascending
    order = np.lexsort((part, -part_scores), axis=1)
    chosen = np.take_along_axis(part, order, axis=1).astype(np.int64)
    chosen_scores = np.take_along_axis(part_scores, order, axis=1).astype(np.float32)
    bad = ~np.isfinite(chosen_scores)
    chosen[bad] = -1
    chosen_scores[bad] = np.nan
    idx[:, :k_eff], val[:, :k_eff] = chosen, chosen_scores
    return idx, val


def factor_top_k(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    users: np.ndarray,
    k: int,
    *,
    seen: sp.csr_matrix | None = None,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` ``(items, scores)`` of ``user_factors[users] @ item_factors.T``, block by block.

    Parameters
    ----------
    user_factors, item_factors:
        ``(n_users, f)`` and ``(n_items, f)`` factors (scored in float32).
    users:
        Row indices of the users to rank (all known to the model).
    k:
        List length; lists with fewer eligible items are padded with ``-1``/NaN.
    seen:
        ``(n_users, n_items)`` CSR matrix whose stored cells are filtered out
        (the training interactions), or None to filter nothing.
    budget_bytes:
        Memory for one block's score matrix; sets the users per block.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"The 'k' parameter of factor_top_k must be an int in the range [1, inf). Got {k!r} instead.")
    users = np.asarray(users, dtype=np.int64)
    if len(users) and (users.min() < 0 or users.max() >= len(user_factors)):
        raise ConfigError(
            f"factor_top_k: user rows must be in 0..{len(user_factors) - 1}; got {users.min()}..{users.max()}."
        )
    items_t = np.ascontiguousarray(np.asarray(item_factors, dtype=np.float32).T)
    users_f = np.asarray(user_factors, dtype=np.float32)
    if seen is not None:
        seen = sp.csr_matrix(seen)
    step = block_rows(items_t.shape[1], budget_bytes)
    out_idx = np.empty((len(users), int(k)), dtype=np.int64)
    out_val = np.empty((len(users), int(k)), dtype=np.float32)
    for start in range(0, len(users), step):
        rows = users[start : start + step]
        scores = users_f[rows] @ items_t
        if seen is not None:
            mask_seen(scores, seen, rows)
        out_idx[start : start + len(rows)], out_val[start : start + len(rows)] = top_k_rows(scores, int(k))
    return out_idx, out_val


def uses_factor_scores(model: object) -> bool:
    """Whether ``model`` ranks by plain ``user_factors_ @ item_factors_.T``.

    True for a fitted recgov ALS model, not for a subclass that changes how it ranks.
    """
    from recommender.als import ALSRecommender

    return (
        isinstance(model, ALSRecommender)
        and type(model)._recommend_known is ALSRecommender._recommend_known
        and hasattr(model, "user_factors_")
        and hasattr(model, "train_")
    )


def ranked_lists(
    model: Recommender, rows: np.ndarray, k: int, *, batch_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` lists with seen items filtered for training rows ``rows``: ``(items, fallback)``.

    A plain ALS model is ranked by :func:`factor_top_k` (same lists as its
    ``recommend_index``, faster); any other model through ``recommend_index``
    in batches of ``batch_size`` users (default: :func:`block_rows`).
    """
    rows = np.asarray(rows, dtype=np.int64)
    if uses_factor_scores(model) and (len(rows) == 0 or rows.min() >= 0):
        idx, _ = factor_top_k(model.user_factors_, model.item_factors_, rows, k, seen=model.train_.matrix)
        return idx, np.zeros(len(rows), dtype=bool)
    step = batch_size or block_rows(model.train_.n_items)
    idx = np.full((len(rows), k), -1, dtype=np.int64)
    fallback = np.zeros(len(rows), dtype=bool)
    for start in range(0, len(rows), step):
        batch = rows[start : start + step]
        idx[start : start + len(batch)], _, fallback[start : start + len(batch)] = model.recommend_index(batch, k)
    return idx, fallback
