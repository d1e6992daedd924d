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

from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from governance.rerank.base import (
    Candidates,
    Reason,
    RerankConfig,
    Reranker,
    best_of,
    complete_order,
    identity_order,
    relevance,
)
from governance.rerank.registry import register_reranker

__all__ = ["CalibrationConfig", "CalibrationReranker", "history_category_distribution", "item_category_split"]

_TINY = 1e-300


class CalibrationConfig(RerankConfig):
    """Parameters of :class:`CalibrationReranker`."""

    tradeoff: float = Field(0.5, ge=0.0, le=1.0)
    """Weight of calibration against relevance (the paper's lambda): 0 keeps the input order."""
    smoothing: float = Field(0.01, gt=0.0, lt=1.0)
    """Share of ``p`` mixed into ``q`` (the paper's alpha, 0.01) so that KL stays finite."""


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
