"""Ranking metrics over a whole batch of users, without a per-user Python loop.

Every function takes ``recommended``, an ``(n_users, k)`` integer array of item
indices, best first, with ``-1`` padding a short list, and (for accuracy)
``relevant``, a sparse ``(n_users, n_items)`` matrix whose stored positive entries
are each user's test positives, rows aligned with ``recommended``.

Accuracy (per user; binary relevance; ``h_i = 1`` when the item at rank ``i`` is
relevant; ``R`` = the user's number of relevant items; ``k`` = the list width,
padding counting as a miss):

=============  ==============================================================
precision@k    ``sum(h) / k``
recall@k       ``sum(h) / R``
NDCG@k         ``DCG / IDCG`` with ``DCG = sum_i h_i / log2(i + 1)`` and IDCG the
               DCG of ``min(k, R)`` hits in the first places
AP@k (MAP)     ``sum_i h_i * precision@i / min(k, R)``: precision at each hit,
               normalised by the most hits a list of ``k`` could hold (so a
               perfect list scores 1 even when ``R > k``)
hit rate@k     ``1`` if ``sum(h) > 0`` else ``0``
RR@k (MRR)     ``1 / rank`` of the first hit, ``0`` without one
=============  ==============================================================

Users with no relevant item are excluded: their per-user value is NaN and they
do not count in any mean (their recall and NDCG are undefined, and counting them
as zero would make a metric depend on how many such rows the caller passes).

Compared with :func:`implicit.evaluation.ranking_metrics_at_k` (implicit 0.7):
its ``ndcg`` and ``map`` are exactly our NDCG@k and MAP@k, averaged over users
with a test item. Its ``precision`` is *not* our precision: it is pooled over
users and divides by ``min(k, R)``, i.e. ``sum_u hits_u / sum_u min(k, R_u)``;
:func:`pooled_precision_at_k` computes that. It has no recall, hit rate or MRR,
and its ``auc`` has no counterpart here.

Beyond accuracy (over the lists only; padding ignored): catalog coverage,
exposure and its Gini coefficient (optionally position-weighted), novelty (mean
self-information under training popularity), average recommendation popularity
(ARP), long-tail share (head = most popular items making up 80% of training
interactions) and intra-list diversity by category; each function's docstring
gives its exact definition.

Lists are assumed to hold distinct items (every :class:`~recommender.base.Recommender`
guarantees it); a repeated relevant item would count as two hits, as in implicit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recommender.errors import ConfigError, DataError

__all__ = [
    "ACCURACY_METRICS",
    "RankingMetrics",
    "hit_matrix",
    "ranking_metrics",
    "defined_mean",
    "precision_at_k",
    "recall_at_k",
    "ndcg_at_k",
    "average_precision_at_k",
    "hit_rate_at_k",
    "reciprocal_rank_at_k",
    "pooled_precision_at_k",
    "item_popularity",
    "exposure",
    "catalog_coverage",
    "gini_index",
    "exposure_gini",
    "novelty",
    "average_popularity",
    "long_tail_items",
    "long_tail_share",
    "item_category_matrix",
    "intra_list_diversity",
]

ACCURACY_METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")
"""The per-user accuracy metrics of :func:`ranking_metrics`, in report order."""

BAD_K = "The 'k' parameter of {func} must be an int in the range [1, {width}]. Got {got!r} instead."
BAD_HEAD_SHARE = "The 'head_share' parameter of {func} must be a float in the range (0, 1]. Got {got!r} instead."
BAD_SHAPE = (
    "{func}: 'recommended' has {n_rec} rows but 'relevant' has {n_rel}; "
    "row u of both must be the same user."
)
BAD_ITEM = "{func}: 'recommended' holds item index {item}, outside the catalog of {n_items} items (0..{last}, -1 pads)."
BAD_RECOMMENDED = "{func}: 'recommended' must be a 2-D integer array (n_users, k). Got {got} instead."


# -- input checks ----------------------------------------------------------------
def _as_lists(recommended: np.ndarray, func: str, k: int | None = None, n_items: int | None = None) -> np.ndarray:
    rec = np.asarray(recommended)
    if rec.ndim != 2 or not (np.issubdtype(rec.dtype, np.integer) or rec.size == 0):
        raise DataError(BAD_RECOMMENDED.format(func=func, got=f"an array of shape {rec.shape} and dtype {rec.dtype}"))
    rec = rec.astype(np.int64, copy=False)
    width = rec.shape[1]
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= max(width, 1):
            raise ConfigError(BAD_K.format(func=func, width=width, got=k))
        rec = rec[:, :k]
    if n_items is not None and rec.size:
        top = int(rec.max())
        if top >= n_items or int(rec.min()) < -1:
            bad = top if top >= n_items else int(rec.min())
            raise DataError(BAD_ITEM.format(func=func, item=bad, n_items=n_items, last=n_items - 1))
    return rec


def _positives(relevant: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """Boolean CSR of the positive entries, indices sorted (what the lookup needs)."""
    rel = sp.csr_matrix(relevant) > 0
    rel = sp.csr_matrix(rel)
    rel.sort_indices()
    return rel


def _row_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean of each row over its valid entries; NaN for a row with none."""
    count = valid.sum(axis=1)
    total = np.where(valid, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def defined_mean(values: np.ndarray) -> float:
    """Mean of the defined (non-NaN) values; NaN when there are none (no warning)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


# -- accuracy ----------------------------------------------------------------------
def hit_matrix(recommended: np.ndarray, relevant: sp.spmatrix | sp.sparray) -> np.ndarray:
    """``(n_users, k)`` booleans: is the item at each rank relevant to its user?

    Vectorized sparse lookup: the positives become sorted keys ``row * n_items +
    item`` (CSR order with sorted indices is already key order) and every
    recommended ``(row, item)`` is found with one :func:`numpy.searchsorted`.
    Padding (``-1``) is never a hit.
    """
    return _hits(recommended, _positives(relevant), "hit_matrix")


def _hits(recommended: np.ndarray, rel: sp.csr_matrix, func: str) -> np.ndarray:
    """:func:`hit_matrix` on positives already made boolean with sorted indices."""
    n_items = rel.shape[1]
    rec = _as_lists(recommended, func, n_items=n_items)
    if rec.shape[0] != rel.shape[0]:
        raise DataError(BAD_SHAPE.format(func=func, n_rec=rec.shape[0], n_rel=rel.shape[0]))
    n_users = rec.shape[0]
    if rel.nnz == 0 or rec.size == 0:
        return np.zeros(rec.shape, dtype=bool)
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(rel.indptr))
    keys = rows * n_items + rel.indices.astype(np.int64)
    query = np.arange(n_users, dtype=np.int64)[:, None] * n_items + rec
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return (rec >= 0) & (keys[pos] == query)


@dataclass(frozen=True)
class RankingMetrics:
    """Per-user accuracy metrics of one batch of lists.

    Attributes
    ----------
    k:
        The list width the metrics are "at".
    n_relevant:
        ``(n_users,)`` relevant items per user.
    per_user:
        Metric name (:data:`ACCURACY_METRICS`) -> ``(n_users,)`` float64 values,
        NaN for users with no relevant item.
    pooled_precision:
        implicit's "precision" (see :func:`pooled_precision_at_k`).
    """

    k: int
    n_relevant: np.ndarray
    per_user: dict[str, np.ndarray] = field(repr=False)
    pooled_precision: float

    @property
    def evaluated(self) -> np.ndarray:
        """``(n_users,)`` True for the users that count (at least one relevant item)."""
        return self.n_relevant > 0

    def mean(self) -> dict[str, float]:
        """The mean of each metric over the evaluated users (NaN if there are none)."""
        return {name: defined_mean(values) for name, values in self.per_user.items()}


def ranking_metrics(
    recommended: np.ndarray, relevant: sp.spmatrix | sp.sparray, k: int | None = None
) -> RankingMetrics:
    """All accuracy metrics of the module docstring at once (one hit lookup).

    Parameters
    ----------
    recommended:
        ``(n_users, width)`` item indices, best first, ``-1`` padding.
    relevant:
        ``(n_users, n_items)`` sparse test positives (entries > 0).
    k:
        Cut the lists to their first ``k`` places (default: the full width).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> rel = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 0, 0, 0]]))
    >>> m = ranking_metrics(np.array([[2, 1], [0, 1]]), rel)
    >>> {name: round(v, 3) for name, v in m.mean().items()}
    {'precision': 0.5, 'recall': 0.5, 'ndcg': 0.613, 'map': 0.5, 'hit_rate': 1.0, 'mrr': 1.0}
    """
    func = "ranking_metrics"
    rec = _as_lists(recommended, func, k=k)
    k = rec.shape[1]
    rel = _positives(relevant)
    hits = _hits(rec, rel, func).astype(np.float64)
    n_rel = np.diff(rel.indptr).astype(np.int64)
    ok = n_rel > 0
    n_hits = hits.sum(axis=1)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    capped = np.minimum(n_rel, k)
    ideal = np.r_[np.nan, np.cumsum(discount)][capped]  # IDCG of min(k, R) hits; NaN when R = 0
    first = np.argmax(hits > 0, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_user = {
            "precision": n_hits / k,
            "recall": n_hits / n_rel,
            "ndcg": (hits @ discount) / ideal,
            "map": (hits * np.cumsum(hits, axis=1) / ranks).sum(axis=1) / capped,
            "hit_rate": (n_hits > 0).astype(np.float64),
            "mrr": np.where(n_hits > 0, 1.0 / (first + 1.0), 0.0),
        }
    for values in per_user.values():
        values[~ok] = np.nan
    denom = capped[ok].sum()
    pooled = float(n_hits[ok].sum() / denom) if denom else float("nan")
    return RankingMetrics(k=k, n_relevant=n_rel, per_user=per_user, pooled_precision=pooled)


def precision_at_k(recommended: np.ndarray, relevant: sp.spmatrix | sp.sparray, k: int | None = None) -> np.ndarray:
    """Per-user precision@k, ``hits / k`` (NaN without relevant items).

    Not implicit's "precision", which is :func:`pooled_precision_at_k`.
    """
    return ranking_metrics(recommended, relevant, k).per_user["precision"]


def recall_at_k(recommended: np.ndarray, relevant: sp.spmatrix | sp.sparray, k: int | None = None) -> np.ndarray:
    """Per-user recall@k, ``hits / n_relevant`` (NaN without relevant items).

    The denominator is all of the user's relevant items, so recall@k < 1 whenever
    ``n_relevant > k``.
    """
    return ranking_metrics(recommended, relevant, k).per_user["recall"]


def ndcg_at_k(recommended: np.ndarray, relevant: sp.spmatrix | sp.sparray, k: int | None = None) -> np.ndarray:
    """Per-user NDCG@k: binary gains, ``1/log2(rank+1)`` discount, ideal over ``min(k, n_relevant)``.

    Same definition as implicit's ``ndcg``.
    """
    return ranking_metrics(recommended, relevant, k).per_user["ndcg"]


def average_precision_at_k(
    recommended: np.ndarray, relevant: sp.spmatrix | sp.sparray, k: int | None = None
) -> np.ndarray:
    """Per-user AP@k, ``sum_i h_i * precision@i / min(k, n_relevant)``; its mean is MAP@k.

    Same normalisation as implicit's ``map``. (Dividing by ``n_relevant`` instead
    would cap a perfect list at ``k / n_relevant``.)
    """
    return ranking_metrics(recommended, relevant, k).per_user["map"]


def hit_rate_at_k(recommended: np.ndarray, relevant: sp.spmatrix | sp.sparray, k: int | None = None) -> np.ndarray:
    """Per-user hit rate@k: 1.0 when any of the ``k`` items is relevant, else 0.0."""
    return ranking_metrics(recommended, relevant, k).per_user["hit_rate"]


def reciprocal_rank_at_k(
    recommended: np.ndarray, relevant: sp.spmatrix | sp.sparray, k: int | None = None
) -> np.ndarray:
    """Per-user reciprocal rank of the first hit within ``k`` (0.0 without one); its mean is MRR@k."""
    return ranking_metrics(recommended, relevant, k).per_user["mrr"]


def pooled_precision_at_k(recommended: np.ndarray, relevant: sp.spmatrix | sp.sparray, k: int | None = None) -> float:
    """implicit's "precision": ``sum_u hits_u / sum_u min(k, n_relevant_u)``.

    Pooled over users (a micro average) and divided by the most hits a list could
    hold rather than by ``k``; it equals mean precision@k only when every user has
    at least ``k`` relevant items. Provided to compare with numbers produced by
    :func:`implicit.evaluation.ranking_metrics_at_k`.
    """
    return ranking_metrics(recommended, relevant, k).pooled_precision


# -- popularity and exposure --------------------------------------------------------
def item_popularity(train: sp.spmatrix | sp.sparray) -> np.ndarray:
    """Per item, how many training users have a positive entry (float64, ``(n_items,)``)."""
    pos = _positives(train)
    return np.bincount(pos.indices, minlength=pos.shape[1]).astype(np.float64)


def exposure(recommended: np.ndarray, n_items: int, *, position_weighted: bool = False) -> np.ndarray:
    """How often each item is shown, summed over all lists (``(n_items,)`` float64).

    With ``position_weighted`` an appearance at rank ``i`` counts ``1/log2(i+1)``
    (the NDCG discount: attention falls with rank) instead of 1.
    """
    rec = _as_lists(recommended, "exposure", n_items=n_items)
    valid = rec >= 0
    if position_weighted:
        weights = np.broadcast_to(1.0 / np.log2(np.arange(2, rec.shape[1] + 2, dtype=np.float64)), rec.shape)
    else:
        weights = np.ones(rec.shape)
    return np.bincount(rec[valid], weights=weights[valid], minlength=n_items).astype(np.float64)


def catalog_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Share of the catalog's ``n_items`` recommended to at least one user."""
    if n_items <= 0:
        return float("nan")
    return float((exposure(recommended, n_items) > 0).sum() / n_items)


def gini_index(values: np.ndarray) -> float:
    """Gini coefficient of non-negative ``values``: 0 when equal, ``(n-1)/n`` when one holds all.

    ``G = sum_i (2i - n - 1) x_(i) / (n * sum x)`` over the values sorted
    ascending (``i = 1..n``). NaN when the values sum to 0.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n, total = len(x), x.sum()
    if n == 0 or total <= 0:
        return float("nan")
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def exposure_gini(recommended: np.ndarray, n_items: int, *, position_weighted: bool = False) -> float:
    """Gini of :func:`exposure` over the whole catalog (never-shown items count as 0).

    High values mean exposure is concentrated on few items (popularity bias).
    """
    return gini_index(exposure(recommended, n_items, position_weighted=position_weighted))


def _lookup_items(recommended: np.ndarray, per_item: np.ndarray, func: str) -> tuple[np.ndarray, np.ndarray]:
    rec = _as_lists(recommended, func, n_items=len(per_item))
    valid = rec >= 0
    return per_item[np.maximum(rec, 0)] if len(per_item) else np.zeros(rec.shape), valid


def novelty(recommended: np.ndarray, popularity: np.ndarray, n_users: int) -> np.ndarray:
    """Per-user mean self-information ``-log2 p(item)`` of the listed items.

    ``p(item) = popularity / n_users``: the share of training users who have the
    item (Zhou et al. 2010). An item no training user has counts as had by one
    (``p = 1/n_users``, the rarest observable) so that the value stays finite.
    NaN for an empty list. Higher means less popular, more novel items.
    """
    pop = np.maximum(np.asarray(popularity, dtype=np.float64), 1.0)
    info = -np.log2(pop / max(int(n_users), 1))
    values, valid = _lookup_items(recommended, info, "novelty")
    return _row_mean(values, valid)


def average_popularity(recommended: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Per-user ARP: the mean training popularity (users per item) of the listed items.

    Abdollahpouri et al.'s average recommendation popularity; NaN for an empty list.
    """
    values, valid = _lookup_items(recommended, np.asarray(popularity, dtype=np.float64), "average_popularity")
    return _row_mean(values, valid)


def long_tail_items(popularity: np.ndarray, head_share: float = 0.8) -> np.ndarray:
    """Boolean ``(n_items,)``: True for items in the long tail.

    The head is the smallest set of most popular items that together account for
    at least ``head_share`` of all training interactions (popularity summed over
    items); items tied with the least popular head item join the head. Every other
    item, including those nobody interacted with, is in the tail.
    """
    if isinstance(head_share, bool) or not isinstance(head_share, (int, float)) or not 0 < head_share <= 1:
        raise ConfigError(BAD_HEAD_SHARE.format(func="long_tail_items", got=head_share))
    pop = np.asarray(popularity, dtype=np.float64)
    total = pop.sum()
    if total <= 0:
        return np.ones(len(pop), dtype=bool)
    ranked = np.sort(pop)[::-1]
    share = np.cumsum(ranked) / total
    n_head = min(int(np.searchsorted(share, head_share, side="left")) + 1, len(pop))
    threshold = ranked[n_head - 1]
    return ~((pop >= threshold) & (pop > 0))


def long_tail_share(recommended: np.ndarray, popularity: np.ndarray, head_share: float = 0.8) -> np.ndarray:
    """Per-user share of listed items in the long tail (see :func:`long_tail_items`); NaN for an empty list."""
    tail = long_tail_items(popularity, head_share).astype(np.float64)
    values, valid = _lookup_items(recommended, tail, "long_tail_share")
    return _row_mean(values, valid)


# -- categories and diversity ---------------------------------------------------------
def item_category_matrix(
    categories: Sequence[Iterable[object] | str | None] | sp.spmatrix | sp.sparray, n_items: int | None = None
) -> sp.csr_matrix:
    """A boolean ``(n_items, n_categories)`` indicator matrix of item categories.

    ``categories`` is either already a sparse matrix (returned as boolean CSR), or
    one entry per item column: a set (any iterable) of category labels, a
    ``"|"``-separated string as in the ``categories`` item column, or ``None``.
    """
    if sp.issparse(categories):
        out = sp.csr_matrix(sp.csr_matrix(categories) > 0)
    else:
        per_item = [
            [] if c is None or (isinstance(c, float) and np.isnan(c))
            else [p for p in c.split("|") if p] if isinstance(c, str) else list(c)
            for c in categories
        ]
        lengths = np.fromiter((len(c) for c in per_item), dtype=np.int64, count=len(per_item))
        labels = [label for c in per_item for label in c]
        codes, uniques = pd.factorize(pd.Series(labels, dtype=object)) if labels else (np.zeros(0, np.int64), [])
        rows = np.repeat(np.arange(len(per_item)), lengths)
        out = sp.csr_matrix(
            (np.ones(len(codes), dtype=bool), (rows, codes)), shape=(len(per_item), max(len(uniques), 0))
        )
        out = sp.csr_matrix(out > 0)
    if n_items is not None and out.shape[0] != n_items:
        raise DataError(
            f"item categories cover {out.shape[0]} items but the catalog has {n_items}; "
            "give one entry per item column of the training matrix."
        )
    return out


def intra_list_diversity(
    recommended: np.ndarray,
    item_categories: Sequence[Iterable[object] | str | None] | sp.spmatrix | sp.sparray,
    *,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Per-user share of item pairs in the list that share no category.

    For each list, over all pairs of distinct positions whose items both have at
    least one category: ``(pairs with disjoint categories) / (pairs)``. Items
    without a category, and padding, take part in no pair; a list with fewer than
    two categorised items gets NaN. 1 means no two items share a category.

    Categories are packed into 64-bit masks, so the pair test is a bitwise AND
    over a ``(users, k, k)`` block, processed in chunks of users.
    """
    cats = item_category_matrix(item_categories)
    n_items, n_cats = cats.shape
    rec = _as_lists(recommended, "intra_list_diversity", n_items=n_items)
    n_users, k = rec.shape
    n_words = max(1, -(-n_cats // 64))
    masks = np.zeros((n_items, n_words), dtype=np.uint64)
    coo = cats.tocoo()
    np.bitwise_or.at(masks, (coo.row, coo.col // 64), np.left_shift(np.uint64(1), (coo.col % 64).astype(np.uint64)))
    categorised = np.diff(cats.indptr) > 0
    upper = np.triu(np.ones((k, k), dtype=bool), 1)
    out = np.full(n_users, np.nan)
    step = chunk_size or max(1, 2**22 // max(k * k * n_words, 1))
    for start in range(0, n_users, step):
        block = rec[start : start + step]
        safe = np.maximum(block, 0)
        usable = (block >= 0) & (categorised[safe] if n_items else False)
        pair = usable[:, :, None] & usable[:, None, :] & upper
        shared = np.zeros(pair.shape, dtype=bool)
        for w in range(n_words):
            m = masks[safe, w]
            shared |= (m[:, :, None] & m[:, None, :]) != 0
        n_pairs = pair.sum(axis=(1, 2))
        n_apart = (pair & ~shared).sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + step] = np.where(n_pairs > 0, n_apart / np.maximum(n_pairs, 1), np.nan)
    return out
