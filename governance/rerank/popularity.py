"""Long-tail / popularity de-biasing by inverse-popularity re-weighting.

Which method: score re-weighting, not xQuAD. Every candidate's relevance (the
list's scores scaled to ``[0, 1]``) is multiplied by ``(1 + popularity) ** -beta``
and the list is sorted by the result (ties keep the input order)::

    adjusted(i) = relevance(i) * (1 + popularity(i)) ** -beta

``beta = 0`` keeps the order; with ``beta = 1`` an item ten times as popular
needs about ten times the relevance to stay ahead. Only popularity *ratios*
matter, so the unit of ``item_popularity`` (counts, shares) does not. The
adjusted scores become the working scores of later steps (MMR, calibration and
Plackett-Luce exploration then trade off the de-biased relevance); the
``Reranked.scores`` still report the model's scores.

An item promoted over a candidate the input ranked higher gets reason
:attr:`~governance.rerank.base.Reason.popularity_debias`. The candidate ranked
last of a list has relevance 0 and stays last (min-max scaling).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from governance.rerank.base import Candidates, Reason, RerankConfig, Reranker, identity_order, relevance
from governance.rerank.registry import register_reranker

__all__ = ["PopularityDebiasConfig", "PopularityDebiasReranker"]


class PopularityDebiasConfig(RerankConfig):
    """Parameters of :class:`PopularityDebiasReranker`."""

    beta: float = Field(0.2, ge=0.0, le=10.0)
    """Exponent of the inverse-popularity weight ``(1 + popularity) ** -beta``: 0 keeps the order."""


@register_reranker
class PopularityDebiasReranker(Reranker):
    """Re-weights relevance by ``(1 + popularity) ** -beta`` and re-sorts."""

    name: ClassVar[str] = "popularity_debias"
    Config: ClassVar[type[RerankConfig]] = PopularityDebiasConfig
    reason: ClassVar[Reason] = Reason.popularity_debias
    needs: ClassVar[tuple[str, ...]] = ("item_popularity",)
    config: PopularityDebiasConfig

    def order(self, cands: Candidates, k: int) -> tuple[np.ndarray, np.ndarray | None]:
        valid = cands.valid
        if self.config.beta == 0.0:
            return identity_order(cands), None
        rel = relevance(cands.scores, valid)
        weight = (1.0 + cands.item_popularity[np.maximum(cands.items, 0)]) ** -self.config.beta
        adjusted = np.where(valid, rel * weight, -np.inf)
        order = np.argsort(-adjusted, axis=1, kind="stable")
        order = np.where(np.take_along_axis(valid, order, axis=1), order, -1)
        return order, np.where(valid, adjusted, np.nan)
