"""Controlled randomness against feedback loops, reproducible per user.

Two methods:

``epsilon``
    Place by place, with probability ``epsilon`` the place is filled by a
    candidate drawn uniformly from the *tail* of the list (the remaining
    candidates the input ranked below the first ``k``); otherwise by the best
    remaining candidate. Without a tail (``c <= k``) nothing is explored.
``plackett_luce``
    The whole list is sampled without replacement from the Plackett-Luce model
    ``P(i) ~ exp(relevance(i) / temperature)`` (relevance: the scores scaled to
    ``[0, 1]`` within the list), by the Gumbel-top-k trick. ``temperature = 0``
    keeps the relevance order.

Draws are counter-based hashes of the user's seed (``Candidates.seeds``) and
``random_state`` (see :mod:`governance.rerank._random`): the same seed gives the
same list whatever else is in the batch. Every item placed out of the input
order gets reason :attr:`~governance.rerank.base.Reason.exploration`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from governance.rerank._random import uniform
from governance.rerank.base import (
    Candidates,
    Reason,
    RerankConfig,
    Reranker,
    complete_order,
    first_true,
    identity_order,
    relevance,
)
from governance.rerank.registry import register_reranker

__all__ = ["ExplorationConfig", "ExplorationReranker"]

_EXPLORE, _WHICH, _GUMBEL = 1, 2, 3  # independent streams per purpose


class ExplorationConfig(RerankConfig):
    """Parameters of :class:`ExplorationReranker`."""

    method: Literal["epsilon", "plackett_luce"] = "epsilon"
    """``epsilon``: explore single places from the tail; ``plackett_luce``: sample the whole list."""
    epsilon: float = Field(0.1, ge=0.0, le=1.0)
    """(``epsilon``) Probability that a place is filled from the tail: 0 keeps the order."""
    temperature: float = Field(0.1, ge=0.0, le=100.0)
    """(``plackett_luce``) Softmax temperature on relevance in [0, 1]: 0 keeps the input order."""
    random_state: int = Field(0, ge=0, lt=2**63)
    """Seed of the step, combined with each user's seed."""


@register_reranker
class ExplorationReranker(Reranker):
    """Epsilon exploration from the tail, or Plackett-Luce sampling."""

    name: ClassVar[str] = "exploration"
    Config: ClassVar[type[RerankConfig]] = ExplorationConfig
    reason: ClassVar[Reason] = Reason.exploration
    config: ExplorationConfig

    def order(self, cands: Candidates, k: int) -> tuple[np.ndarray, None]:
        if self.config.method == "plackett_luce":
            return self._plackett_luce(cands), None
        return self._epsilon(cands, k), None

    def _epsilon(self, cands: Candidates, k: int) -> np.ndarray:
        n, c = cands.items.shape
        eps = self.config.epsilon
        if eps == 0.0 or c <= k:
            return identity_order(cands)
        width = min(k, c)
        seeds = cands.user_seeds()
        explore = uniform(seeds, self.config.random_state, _EXPLORE, width) < eps
        which = uniform(seeds, self.config.random_state, _WHICH, width)
        available = cands.valid.copy()
        tail = available & (np.arange(c) >= k)[None, :]
        chosen = np.full((n, width), -1, dtype=np.int64)
        rows = np.arange(n)
        for i in range(width):
            pick = first_true(available)
            n_tail = tail.sum(axis=1)
            go = explore[:, i] & (n_tail > 0)
            if go.any():
                r = np.minimum((which[go, i] * n_tail[go]).astype(np.int64), n_tail[go] - 1)
                pick[go] = np.argmax(np.cumsum(tail[go], axis=1) > r[:, None], axis=1)
            ok = pick >= 0
            chosen[:, i] = pick
            available[rows[ok], pick[ok]] = False
            tail[rows[ok], pick[ok]] = False
        return complete_order(chosen, available)

    def _plackett_luce(self, cands: Candidates) -> np.ndarray:
        t = self.config.temperature
        if t == 0.0:
            return identity_order(cands)
        valid = cands.valid
        rel = relevance(cands.scores, valid)
        u = uniform(cands.user_seeds(), self.config.random_state, _GUMBEL, cands.width)
        gumbel = -np.log(-np.log(np.clip(u, 1e-300, 1.0 - 2**-53)))
        keys = np.where(valid, rel / t + gumbel, -np.inf)
        order = np.argsort(-keys, axis=1, kind="stable")
        return np.where(np.take_along_axis(valid, order, axis=1), order, -1)
