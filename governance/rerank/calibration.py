"""Calibrated recommendations (Steck, RecSys 2018).

The list's category distribution ``q`` should match the user's history ``p``.
Place by place, take the candidate ``i`` maximizing the greedy objective::

    (1 - tradeoff) * relevance(i) - tradeoff * KL(p || q~(I + i))

where ``I`` is what is placed so far, ``relevance`` the list's scores scaled to
``[0, 1]``, ``q(g | I) = mean over the categorised items of I of p(g | i)`` with
``p(g | i) = 1 / |categories(i)|`` for each of the item's categories (Steck's
uniform split; uniform item weights), and ``q~ = (1 - smoothing) q + smoothing p``
so that the divergence stays finite. Items without a category leave ``q``
unchanged. Since ``sum_{i in I} relevance(i)`` only grows by ``relevance(i)``,
this is the paper's marginal gain; ``tradeoff`` is its lambda.

Only the categories of the candidate change the divergence, so the gain of every
candidate is computed from the user's current ``q`` plus a correction over the
candidate's own (few) categories: ``(users, c, max categories per item)`` work
per place, not ``(users, c, n_categories)``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from governance.rerank.base import (
    TIE_TOLERANCE,
    Candidates,
    Reason,
    RerankConfig,
    Reranker,
    best_of,
    n_provider_groups,
    complete_order,
    identity_order,
    relevance,
)
from governance.rerank.registry import register_reranker
from recommender.errors import DataError

__all__ = [
    "CalibrationConfig",
    "CalibrationReranker",
    "ProviderCalibrationConfig",
    "ProviderCalibrationReranker",
    "history_category_distribution",
    "history_group_distribution",
    "item_category_split",
    "provider_categories",
]

_TINY = 1e-300


class _CalibrationParams(RerankConfig):
    """The parameters both calibrations share."""

    tradeoff: float = Field(0.5, ge=0.0, le=1.0)
    """Weight of calibration against relevance (the paper's lambda): 0 keeps the input order."""
    smoothing: float = Field(0.01, gt=0.0, lt=1.0)
    """Share of ``p`` mixed into ``q`` (the paper's alpha, 0.01) so that KL stays finite."""


class CalibrationConfig(_CalibrationParams):
    """Parameters of :class:`CalibrationReranker`."""


def item_category_split(item_categories: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Per item, its categories padded to the widest item, and ``p(g | i) = 1 / |categories|``.

    Returns ``(codes, weights)``, both ``(n_items, max_categories)``; padding
    has code ``n_categories`` (a dummy column) and weight 0.
    """
    cats = sp.csr_matrix(sp.csr_matrix(item_categories) != 0)
    cats.sort_indices()
    n_items, n_cat = cats.shape
    counts = np.diff(cats.indptr)
    width = max(1, int(counts.max()) if n_items else 1)
    codes = np.full((n_items, width), n_cat, dtype=np.int64)
    weights = np.zeros((n_items, width))
    rows = np.repeat(np.arange(n_items), counts)
    slot = np.arange(cats.nnz) - np.repeat(cats.indptr[:-1], counts)
    codes[rows, slot] = cats.indices
    weights[rows, slot] = 1.0 / counts[rows]
    return codes, weights


def history_category_distribution(
    history: sp.spmatrix | sp.sparray, item_categories: sp.spmatrix | sp.sparray
) -> np.ndarray:
    """Each user's ``p(g | u)``: the mean of ``p(g | i)`` over the items in their history.

    ``history`` is ``(n_users, n_items)`` (entries > 0 count, weighted by their
    value as in Steck's ``w_ui``); returns ``(n_users, n_categories)`` rows
    summing to 1 (0 for a user with no categorised item).
    """
    cats = sp.csr_matrix(sp.csr_matrix(item_categories) != 0, dtype=np.float64)
    counts = np.asarray(cats.sum(axis=1)).ravel()
    split = sp.diags(np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)) @ cats
    hist = sp.csr_matrix(history, dtype=np.float64)
    hist.data = np.maximum(hist.data, 0.0)
    dist = np.asarray((hist @ split).todense())
    total = dist.sum(axis=1, keepdims=True)
    return np.divide(dist, total, out=np.zeros_like(dist), where=total > 0)


@register_reranker
class CalibrationReranker(Reranker):
    """Steck's calibrated re-ranking of categories."""

    name: ClassVar[str] = "calibration"
    Config: ClassVar[type[RerankConfig]] = CalibrationConfig
    reason: ClassVar[Reason] = Reason.calibration
    needs: ClassVar[tuple[str, ...]] = ("item_categories", "user_category_dist")
    config: CalibrationConfig

    def order(self, cands: Candidates, k: int) -> tuple[np.ndarray, None]:
        n, c = cands.items.shape
        width = min(k, c)
        valid = cands.valid
        lam, a = self.config.tradeoff, self.config.smoothing
        rel = relevance(cands.scores, valid)
        available = valid.copy()
        chosen = np.full((n, width), -1, dtype=np.int64)
        rows = np.arange(n)
        if lam == 0.0:
            return identity_order(cands), None
        codes, weights = item_category_split(cands.item_categories)
        n_cat = cands.item_categories.shape[1]
        safe = np.maximum(cands.items, 0)
        cand_codes = codes[safe]  # (n, c, L)
        cand_w = weights[safe]
        categorised = cand_w[:, :, 0] > 0
        p = np.zeros((n, n_cat + 1))
        p[:, :n_cat] = cands.user_category_dist
        p_log_p = np.where(p > 0, p * np.log(np.maximum(p, _TINY)), 0.0).sum(axis=1)
        flat_codes = cand_codes.reshape(n, -1)
        p_at = np.take_along_axis(p, flat_codes, axis=1).reshape(cand_codes.shape)
        sums = np.zeros((n, n_cat + 1))  # sum of p(g|i) over placed categorised items
        n_cat_items = np.zeros(n)  # how many categorised items are placed
        base_gain = (1.0 - lam) * rel
        for i in range(width):
            # q~ if an uncategorised item is added: unchanged
            q0 = (1 - a) * sums / np.maximum(n_cat_items, 1.0)[:, None] + a * p
            kl0 = p_log_p - (p * np.log(np.maximum(q0, _TINY))).sum(axis=1)
            # q~ if a categorised item is added: denominators grow by one, then its categories
            d1 = (n_cat_items + 1.0)[:, None]
            q1 = (1 - a) * sums / d1 + a * p
            log_q1 = np.log(np.maximum(q1, _TINY))
            kl1 = p_log_p - (p * log_q1).sum(axis=1)
            q1_at = np.take_along_axis(q1, flat_codes, axis=1).reshape(cand_codes.shape)
            log_q1_at = np.take_along_axis(log_q1, flat_codes, axis=1).reshape(cand_codes.shape)
            bump = (1 - a) * cand_w / d1[:, :, None]
            delta = (p_at * (np.log(np.maximum(q1_at + bump, _TINY)) - log_q1_at)).sum(axis=2)
            kl = np.where(categorised, kl1[:, None] - delta, kl0[:, None])
            gain = np.where(available, base_gain - lam * kl, -np.inf)
            pick = best_of(gain)
            ok = available[rows, pick]
            chosen[:, i] = np.where(ok, pick, -1)
            available[rows[ok], pick[ok]] = False
            add = ok & categorised[rows, pick]
            r = rows[add]
            np.add.at(
                sums,
                (np.repeat(r, cand_codes.shape[2]), cand_codes[r, pick[add]].ravel()),
                cand_w[r, pick[add]].ravel(),
            )
            n_cat_items += add
        return complete_order(chosen, available), None


def provider_categories(item_group: np.ndarray) -> sp.csr_matrix:
    """``(n_items, n_groups)`` indicator of each item's provider group: column ``g`` for code ``g``
    (``n_groups`` is the largest code + 1, at least 2); an item of unknown group (code -1) has none."""
    group = np.asarray(item_group, dtype=np.int64)
    known = np.flatnonzero(group >= 0)
    return sp.csr_matrix(
        (np.ones(len(known)), (known, group[known])), shape=(len(group), n_provider_groups(group)), dtype=np.float64
    )


def _non_increasing(values: np.ndarray) -> bool:
    """Whether ``values`` never increase: then, within one outcome, the most relevant remaining
    candidate is also the earliest, and the one-list path makes the batch loop's choices."""
    return bool(np.all(values[1:] <= values[:-1]))


def history_group_distribution(history: sp.spmatrix | sp.sparray, item_group: np.ndarray) -> np.ndarray:
    """Each user's provider mix in their history, ``(n_users, n_groups)`` over the codes of
    :func:`provider_categories`: the share of the distinct items the user engaged with (entries > 0)
    that belong to each group, every item counting once, as the audit's ``provider_miscalibration``
    counts them, so that the re-ranker aims at what the audit measures. Items of unknown group are
    left out; a user with none gets an all-zero row.

    One item has one group, so this is a count per (user, group): one ``bincount`` over the
    history's entries, which is what keeps a single request's re-ranking cheap.
    """
    group = np.asarray(item_group, dtype=np.int64)
    hist = history if type(history) is sp.csr_matrix else sp.csr_matrix(history)
    if hist.shape[1] != len(group):
        raise DataError(
            f"history_group_distribution: the history has {hist.shape[1]} item columns but item_group "
            f"gives {len(group)} items"
        )
    return _group_shares(hist.indptr, hist.indices, np.asarray(hist.data), group)


def history_group_distribution_of_row(
    indices: np.ndarray, data: np.ndarray, item_group: np.ndarray, n_groups: int | None = None
) -> np.ndarray:
    """:func:`history_group_distribution` of one user, as a ``(1, n_groups)`` row, from the row's item
    indices and values (a served request's history, read from the model's matrix without building a
    sparse row). ``n_groups``: :func:`n_provider_groups` of ``item_group``, when the caller knows it
    (a serving engine computes it once rather than scanning the catalog per request)."""
    group = np.asarray(item_group, dtype=np.int64)
    if n_groups is None:
        n_groups = n_provider_groups(group)
    indices = np.asarray(indices)
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= len(group)):
        raise DataError(f"history_group_distribution: the history names items outside the {len(group)} of item_group")
    codes = group[indices]
    counts = np.bincount(codes[(codes >= 0) & (np.asarray(data) > 0)], minlength=n_groups).astype(np.float64)
    if len(counts) != n_groups:
        raise DataError(f"history_group_distribution: item_group holds codes beyond the {n_groups} groups given")
    total = counts.sum()
    return (counts / total if total > 0 else counts)[None, :]


def _group_shares(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, group: np.ndarray) -> np.ndarray:
    n_groups = n_provider_groups(group)
    n_users = len(indptr) - 1
    codes = group[indices]
    rows = np.repeat(np.arange(n_users), np.diff(indptr))
    keep = (codes >= 0) & (data > 0)
    dist = np.bincount(rows[keep] * n_groups + codes[keep], minlength=n_users * n_groups).astype(np.float64)
    dist = dist.reshape(n_users, n_groups)
    total = dist.sum(axis=1, keepdims=True)
    return np.divide(dist, total, out=np.zeros_like(dist), where=total > 0)


class ProviderCalibrationConfig(_CalibrationParams):
    """Parameters of :class:`ProviderCalibrationReranker` (the same as :class:`CalibrationConfig`'s)."""


@register_reranker
class ProviderCalibrationReranker(CalibrationReranker):
    """Steck's calibrated re-ranking over provider groups instead of item categories.

    Each list's mix of provider groups (the ``item_group`` codes) is pulled towards
    the mix of the user's own history, with the same greedy objective and ``tradeoff``
    as :class:`CalibrationReranker` (one category per group; items of unknown group
    leave the mix unchanged). It reads no user attribute, only the
    user's history and the items' provider groups.

    Why it serves provider and consumer fairness at once: a model trained on a log
    that over-exposed one provider group amplifies that group in every list, and the
    users whose own tastes lean to the other providers get the least calibrated
    lists (their served mix is furthest from their history's). Calibrating each list
    to its user's mix removes that amplification user by user, so the aggregate
    attention moves towards the groups' share of the users' demand, and the users
    the amplification served worst gain the most.
    """

    name: ClassVar[str] = "provider_calibration"
    Config: ClassVar[type[RerankConfig]] = ProviderCalibrationConfig
    reason: ClassVar[Reason] = Reason.provider_calibration
    needs: ClassVar[tuple[str, ...]] = ("item_group", "user_group_dist")
    config: ProviderCalibrationConfig

    def order(self, cands: Candidates, k: int) -> tuple[np.ndarray, None]:
        # The same greedy objective as CalibrationReranker.order, specialised to one category per
        # item: adding an item of group g changes q in one known way, so each place needs the KL of
        # n_groups + 1 outcomes per user instead of one per candidate and category.
        n, c = cands.items.shape
        width = min(k, c)
        lam, a = self.config.tradeoff, self.config.smoothing
        if lam == 0.0:
            return identity_order(cands), None
        valid = cands.valid
        p = np.asarray(cands.user_group_dist, dtype=np.float64)
        if n == 1:  # a served request: the one-list path, when the list is in relevance order
            one = self._try_one(cands, valid[0], p[0], width)
            if one is not None:
                return one, None
        rel = relevance(cands.scores, valid)
        n_groups = p.shape[1]
        codes = np.where(valid, np.asarray(cands.item_group)[np.maximum(cands.items, 0)], -1)
        p_log_p = np.where(p > 0, p * np.log(np.maximum(p, _TINY)), 0.0).sum(axis=1)
        grouped = codes >= 0
        safe_codes = np.maximum(codes, 0)
        eye = np.eye(n_groups)
        counts = np.zeros((n, n_groups))  # placed items per group
        placed = np.zeros(n)  # placed items with a group
        base_gain = (1.0 - lam) * rel
        available = valid.copy()
        chosen = np.full((n, width), -1, dtype=np.int64)
        rows = np.arange(n)
        for i in range(width):
            q0 = (1 - a) * counts / np.maximum(placed, 1.0)[:, None] + a * p
            kl0 = p_log_p - (p * np.log(np.maximum(q0, _TINY))).sum(axis=1)
            q_add = (1 - a) * (counts[:, None, :] + eye[None, :, :]) / (placed + 1.0)[:, None, None] + a * p[:, None, :]
            kl_add = p_log_p[:, None] - (p[:, None, :] * np.log(np.maximum(q_add, _TINY))).sum(axis=2)  # (n, groups)
            kl = np.where(grouped, np.take_along_axis(kl_add, safe_codes, axis=1), kl0[:, None])
            gain = np.where(available, base_gain - lam * kl, -np.inf)
            pick = best_of(gain)
            ok = available[rows, pick]
            chosen[:, i] = np.where(ok, pick, -1)
            available[rows[ok], pick[ok]] = False
            add = ok & grouped[rows, pick]
            np.add.at(counts, (rows[add], codes[rows[add], pick[add]]), 1.0)
            placed += add
        return complete_order(chosen, available), None

    def _try_one(self, cands: Candidates, valid: np.ndarray, p: np.ndarray, width: int) -> np.ndarray | None:
        """:meth:`_order_one` for the one list of ``cands``, or None when its relevance increases somewhere
        along the list (then the batch loop decides). The relevance, codes and ``sum p log p`` are the
        batch's values, computed on the one row."""
        scores = cands.scores[0].astype(np.float64)
        present = scores[valid]
        rel = np.zeros(len(scores))
        if present.size:
            lo, hi = present.min(), present.max()
            span = hi - lo
            rel[valid] = (present - lo) / span if span > 0 else 1.0  # relevance(): min-max within the list
            if not _non_increasing(rel[valid]):
                return None
        codes = np.full(len(scores), -1, dtype=np.int64)
        codes[valid] = np.asarray(cands.item_group)[cands.items[0][valid]]
        p_log_p = float(np.where(p > 0, p * np.log(np.maximum(p, _TINY)), 0.0).sum())
        return self._order_one(rel, valid, codes, p, p_log_p, width)

    def _order_one(
        self, rel: np.ndarray, valid: np.ndarray, codes: np.ndarray, p: np.ndarray, p_log_p: float, width: int
    ) -> np.ndarray:
        """The batch loop for one list (a served request), without the per-user axis's overhead.

        Within one outcome (an item of group g, or of no group) every candidate changes the
        divergence alike, so the best candidate of a place is the most relevant remaining one of
        some outcome: each place weighs the heads of ``n_groups + 1`` queues. Ties go to the earlier
        position, as in :func:`best_of`; that is the batch loop's choice only while relevance does not
        increase along the list (the model's order), so :meth:`order` takes this path only then (an
        earlier step that reorders a list without changing its scores sends it to the batch loop).
        """
        lam, a = self.config.tradeoff, self.config.smoothing
        n_groups = len(p)
        # Relevance never increases along the valid positions (the caller checked), so the ranking
        # by relevance with ties by position is the positions themselves.
        ranked = np.flatnonzero(valid)
        outcome = codes[ranked]
        outcome[outcome < 0] = n_groups
        # No more than ``width`` of one outcome can be placed: each queue is cut there.
        queues = [ranked[outcome == o][:width].tolist() for o in range(n_groups + 1)]
        heads = [0] * (n_groups + 1)
        relevance_of = rel.tolist()
        # The terms of the divergence with p(g) > 0 (the others add exactly 0 in the batch's sum).
        terms = [(g, p_g, a * p_g) for g, p_g in enumerate(p.tolist()) if p_g > 0]
        keep, log = 1 - a, math.log
        counts = [0.0] * n_groups
        placed = 0.0
        chosen: list[int] = []
        weight = 1.0 - lam
        outcomes = range(n_groups + 1)
        for _ in range(width):
            options = []
            for o in outcomes:
                queue, head = queues[o], heads[o]
                if head == len(queue):
                    continue
                # The divergence after adding one item of group o (o = n_groups: an item of no group).
                denominator = placed + 1.0 if o < n_groups else (placed if placed > 1.0 else 1.0)
                cross = 0.0
                for g, p_g, a_p_g in terms:
                    q_g = keep * (counts[g] + 1.0 if g == o else counts[g]) / denominator + a_p_g
                    cross += p_g * log(q_g if q_g > _TINY else _TINY)
                options.append((weight * relevance_of[queue[head]] - lam * (p_log_p - cross), queue[head], o))
            if not options:
                break
            # The best gain, ties (within the tolerance) to the earliest position: max and min by hand, for the
            # few options a place has (a generator per place costs more than the comparisons).
            top = options[0][0]
            for option in options:
                if option[0] > top:
                    top = option[0]
            top -= TIE_TOLERANCE
            pick = -1
            for gain, item, outcome in options:
                if gain >= top and (pick < 0 or item < pick):
                    pick, o = item, outcome
            chosen.append(pick)
            heads[o] += 1
            if o < n_groups:
                counts[o] += 1.0
                placed += 1.0
        # complete_order for one list: the chosen, then the valid positions not chosen in input order,
        # then padding (a list that ran out of candidates chose every valid one).
        c = len(valid)
        order = np.full((1, c), -1, dtype=np.int64)
        order[0, : len(chosen)] = chosen
        rest = valid.copy()
        rest[chosen] = False
        rest = np.flatnonzero(rest)
        order[0, len(chosen) : len(chosen) + len(rest)] = rest
        return order
