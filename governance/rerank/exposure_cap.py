"""Exposure cap: no provider group takes more than a share of a list's exposure.

Per list, the exposure of a group is the sum of the weights of the places its
items hold: 1 per place (``weighting="positions"``: the share of places) or
``1 / log2(rank + 1)`` (``"attention"``: the NDCG discount, as in
:func:`recommender.metrics.exposure`), divided by the total weight of the list's
filled places. Place by place, the step takes the best remaining candidate whose
group would stay within ``max_share``; when none would, the candidate of the
least exposed group so far (the cap is then not met, and ``constraints_met``
says so). An item placed instead of a higher-ranked one of a capped group gets
reason :attr:`~governance.rerank.base.Reason.exposure_cap`.

Items are distinct within a list, so a per-*item* cap within one list is moot;
caps across lists (an item's share of all lists served) need a batch-level
quota and are not this step. Items of unknown group (``-1``) are never capped.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from governance.rerank.base import Candidates, Reason, RerankConfig, Reranker, complete_order, first_true
from governance.rerank.registry import register_reranker

__all__ = ["ExposureCapConfig", "ExposureCapReranker", "place_weights"]

_EPS = 1e-9


class ExposureCapConfig(RerankConfig):
    """Parameters of :class:`ExposureCapReranker`."""

    max_share: float = Field(0.5, gt=0.0, le=1.0)
    """Largest share of a list's exposure one group may take (1 = no cap)."""
    weighting: Literal["positions", "attention"] = "positions"
    """Exposure of a place: 1 (``positions``) or ``1 / log2(rank + 1)`` (``attention``)."""
    groups: list[int] | None = None
    """The ``item_group`` codes capped (default: every group but the unknown, ``-1``)."""


def place_weights(k: int, weighting: str) -> np.ndarray:
    """``(k,)`` exposure weight of the places ``1..k``."""
    if weighting == "attention":
        return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    return np.ones(k)


@register_reranker
class ExposureCapReranker(Reranker):
    """Caps each provider group's share of every list's exposure."""

    name: ClassVar[str] = "exposure_cap"
    Config: ClassVar[type[RerankConfig]] = ExposureCapConfig
    reason: ClassVar[Reason] = Reason.exposure_cap
    needs: ClassVar[tuple[str, ...]] = ("item_group",)
    config: ExposureCapConfig

    def _group_codes(self, cands: Candidates) -> tuple[np.ndarray, np.ndarray]:
        """Dense group index per catalog item (``n_groups`` for unknown) and which are capped.

        Remembered for the last ``item_group`` array seen (by identity, and the
        array is kept alive with it): a serving engine passes the same catalog
        array with every request, and ``np.unique`` over it is most of a
        one-list call.
        """
        raw = cands.item_group
        memo = getattr(self, "_codes_memo", None)
        if memo is not None and memo[0] is raw and memo[1] == raw.shape:
            return memo[2], memo[3]
        codes, dense = np.unique(raw, return_inverse=True)
        capped = codes >= 0
        if self.config.groups is not None:
            capped &= np.isin(codes, self.config.groups)
        dense = dense.astype(np.int64)
        dense.flags.writeable = False
        capped.flags.writeable = False
        self._codes_memo = (raw, raw.shape, dense, capped)
        return dense, capped

    def _limits(self, valid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n_out = np.minimum(valid.sum(axis=1), k)
        weights = place_weights(k, self.config.weighting)
        total = np.concatenate([[0.0], np.cumsum(weights)])[n_out]
        return weights, self.config.max_share * total + _EPS

    def order(self, cands: Candidates, k: int) -> tuple[np.ndarray, None]:
        n, c = cands.items.shape
        width = min(k, c)
        valid = cands.valid
        dense, capped = self._group_codes(cands)
        n_groups = len(capped)
        cand_group = dense[np.maximum(cands.items, 0)]
        cand_capped = capped[cand_group] & valid
        weights, limit = self._limits(valid, k)
        if n == 1:
            return self._order_one(valid[0], cand_group[0], cand_capped[0], weights, float(limit[0]), n_groups, width), None
        taken = np.zeros((n, n_groups))
        available = valid.copy()
        chosen = np.full((n, width), -1, dtype=np.int64)
        rows = np.arange(n)
        for i in range(width):
            load = np.take_along_axis(taken, cand_group, axis=1)
            over = cand_capped & (load + weights[i] > limit[:, None])
            pick = first_true(available & ~over)
            stuck = (pick < 0) & available.any(axis=1)
            if stuck.any():
                least = np.where(available[stuck], load[stuck], np.inf)
                pick[stuck] = np.argmin(least, axis=1)
            ok = pick >= 0
            chosen[:, i] = pick
            safe = np.maximum(pick, 0)
            available[rows[ok], safe[ok]] = False
            taken[rows[ok], cand_group[rows[ok], safe[ok]]] += weights[i]
        return complete_order(chosen, available), None

    @staticmethod
    def _order_one(
        valid: np.ndarray, group: np.ndarray, capped: np.ndarray, weights: np.ndarray, limit: float, n_groups: int, width: int
    ) -> np.ndarray:
        """:meth:`order` for a single list (the serving path), with the same greedy, place by place.

        The batch loop costs about 20 numpy calls per place whatever the batch
        size; for one list of ~100 candidates plain Python over the candidate
        row is several times faster. The result is the same (tested against
        the batch path).
        """
        available = valid.tolist()
        group_l = group.tolist()
        capped_l = capped.tolist()
        weight_l = weights.tolist()
        taken = [0.0] * n_groups
        chosen = np.full((1, width), -1, dtype=np.int64)
        remaining = sum(available)
        for i in range(width):
            if not remaining:
                break
            w = weight_l[i]
            pick = -1
            for j, free in enumerate(available):
                if free and not (capped_l[j] and taken[group_l[j]] + w > limit):
                    pick = j
                    break
            if pick < 0:  # every remaining candidate is capped: the least exposed group's best
                best = np.inf
                for j, free in enumerate(available):
                    if free and taken[group_l[j]] < best:
                        best, pick = taken[group_l[j]], j
            chosen[0, i] = pick
            available[pick] = False
            remaining -= 1
            taken[group_l[pick]] += w
        return complete_order(chosen, np.array([available], dtype=bool))

    def check(self, items: np.ndarray, cands: Candidates) -> np.ndarray:
        dense, capped = self._group_codes(cands)
        k = items.shape[1]
        filled = items >= 0
        weights, limit = self._limits(filled, k)
        group = dense[np.maximum(items, 0)]
        exposure = np.zeros((items.shape[0], len(capped)))
        w = np.where(filled, weights[None, :], 0.0)
        np.add.at(exposure, (np.repeat(np.arange(items.shape[0]), k), group.ravel()), w.ravel())
        return (exposure[:, capped] <= limit[:, None]).all(axis=1)
