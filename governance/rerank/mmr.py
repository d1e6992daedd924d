"""Maximal marginal relevance for diversity (Carbonell & Goldstein, SIGIR 1998).

Place by place, take the remaining candidate maximizing::

    (1 - tradeoff) * relevance(i) - tradeoff * max_{j already placed} sim(i, j)

with relevance the list's scores scaled to ``[0, 1]`` and ``sim`` the Jaccard
(or binary cosine) similarity of the items' category sets. ``tradeoff`` is the
paper's ``1 - lambda``: 0 keeps the input order, 1 picks the least similar
item each time. Items without a category are similar to nothing.

Categories are packed into 64-bit masks per item, so a similarity row is a
bitwise AND and a popcount over ``(users, c)``; loops over the ``k`` places only.
"""

from __future__ import annotations

from typing import ClassVar, Literal

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

__all__ = ["MMRConfig", "MMRReranker", "category_masks"]


class MMRConfig(RerankConfig):
    """Parameters of :class:`MMRReranker`."""

    tradeoff: float = Field(0.3, ge=0.0, le=1.0)
    """Weight of diversity against relevance (the paper's 1 - lambda): 0 keeps the input order."""
    similarity: Literal["jaccard", "cosine"] = "jaccard"
    """Similarity of two category sets: ``jaccard`` (|A & B| / |A or B|) or binary ``cosine`` (|A & B| / sqrt(|A| |B|))."""


def category_masks(item_categories: sp.csr_matrix) -> np.ndarray:
    """``(n_items, n_words)`` uint64 bit masks of each item's categories (bit ``g % 64`` of word ``g // 64``)."""
    cats = sp.csr_matrix(item_categories)
    n_items, n_cats = cats.shape
    n_words = max(1, -(-n_cats // 64))
    masks = np.zeros((n_items, n_words), dtype=np.uint64)
    coo = cats.tocoo()
    keep = coo.data != 0
    rows, cols = coo.row[keep], coo.col[keep].astype(np.int64)
    np.bitwise_or.at(masks, (rows, cols // 64), np.left_shift(np.uint64(1), (cols % 64).astype(np.uint64)))
    return masks


@register_reranker
class MMRReranker(Reranker):
    """MMR diversification over item categories."""

    name: ClassVar[str] = "mmr"
    Config: ClassVar[type[RerankConfig]] = MMRConfig
    reason: ClassVar[Reason] = Reason.diversity
    needs: ClassVar[tuple[str, ...]] = ("item_categories",)
    config: MMRConfig

    def order(self, cands: Candidates, k: int) -> tuple[np.ndarray, None]:
        lam = self.config.tradeoff
        if lam == 0.0:
            return identity_order(cands), None
        n, c = cands.items.shape
        width = min(k, c)
        valid = cands.valid
        rel = relevance(cands.scores, valid)
        masks = category_masks(cands.item_categories)
        cand_masks = masks[np.maximum(cands.items, 0)]  # (n, c, words)
        sizes = np.bitwise_count(cand_masks).sum(axis=2, dtype=np.int64)
        max_sim = np.zeros((n, c))
        available = valid.copy()
        chosen = np.full((n, width), -1, dtype=np.int64)
        rows = np.arange(n)
        base = (1.0 - lam) * rel
        for i in range(width):
            gain = np.where(available, base - lam * max_sim, -np.inf)
            pick = best_of(gain)
            ok = available[rows, pick]
            chosen[:, i] = np.where(ok, pick, -1)
            available[rows[ok], pick[ok]] = False
            if i == width - 1:
                continue
            sel = cand_masks[rows, pick]  # (n, words)
            inter = np.bitwise_count(cand_masks & sel[:, None, :]).sum(axis=2, dtype=np.int64)
            sel_size = sizes[rows, pick][:, None]
            if self.config.similarity == "jaccard":
                denom = sizes + sel_size - inter
            else:
                denom = np.sqrt((sizes * sel_size).astype(np.float64))
            sim = np.divide(inter, denom, out=np.zeros((n, c)), where=denom > 0)
            sim[~ok] = 0.0
            np.maximum(max_sim, sim, out=max_sim)
        return complete_order(chosen, available), None
