"""FA*IR: ranked group fairness with a binomial test (Zehlike et al., CIKM 2017).

A list of ``k`` passes *ranked group fairness* for a minimum protected share
``p`` at significance ``alpha`` when every prefix ``1..i`` holds at least
``m(i)`` protected items, where ``m(i) = F^-1(alpha_c; i, p)`` is the
``alpha_c`` quantile of the binomial distribution (``scipy.stats.binom.ppf``):
fewer protected items than that would be unlikely (probability below
``alpha_c``) if the list had been drawn by ``i`` Bernoulli(``p``) trials.

Multiple tests. Testing ``k`` prefixes at ``alpha`` each rejects a fair list
far more often than ``alpha``. The paper's adjustment picks ``alpha_c`` so that
the probability that a random fair list (``k`` Bernoulli(``p``) draws) fails
*any* prefix test is ``alpha``. That failure probability is computed exactly
here by dynamic programming over the number of protected items so far
(:func:`fail_probability`). Because ``m`` is a step function of ``alpha_c``,
there are finitely many tables: ``m_i`` jumps exactly where ``alpha_c`` passes a
binomial CDF value ``F(x; i, p)``. :func:`adjusted_mtable` enumerates those
breakpoints below ``alpha`` and, since the failure probability grows with
``alpha_c``, bisects over them for the two tables around ``alpha`` and takes the
one whose failure probability is nearest ``alpha`` (the rule of the authors'
``fairsearchcore`` library, whose bisection over the continuous ``alpha_c`` can
stop early on a worse table; this one cannot, and finds the same tables on its
published cases). ``at_most`` instead takes the largest table whose failure
probability does not exceed ``alpha``.

The greedy algorithm (the paper's FA*IR) fills places ``i = 1..k``: when
the protected items placed so far are fewer than ``m(i)``, the best remaining
protected candidate; otherwise the best remaining candidate of either group.
"Best" is the order the step receives (the model's, or the previous step's).

LensKit's FA*IR bug (lenskit/lkpy issue #938, "FA*IR favors unprotected items",
fixed by PR #939): its greedy loop took a protected item *only* when the table
required one, and otherwise always took the next unprotected item, even when a
protected item was ranked above it. So protected items were held back to the
minimum ``m(i)`` and ranked below worse unprotected items, which breaks the
paper's second utility condition (a more qualified candidate is ranked above a
less qualified one) and makes the step distort even lists that are already fair.
Here the non-required branch compares the two groups' best remaining candidates
and takes the better one, so a list that already passes the test comes back
unchanged (tested in ``tests/governance/test_fair_star.py``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar, Literal, NamedTuple

import numpy as np
from pydantic import Field
from scipy.stats import binom

from governance.rerank.base import Candidates, Reason, RerankConfig, Reranker, complete_order
from governance.rerank.registry import register_reranker
from recommender.errors import ConfigError

__all__ = [
    "FairStarConfig",
    "FairStarReranker",
    "mtable",
    "fail_probability",
    "adjusted_mtable",
    "AdjustedTable",
    "ranked_group_fair",
]


class FairStarConfig(RerankConfig):
    """Parameters of :class:`FairStarReranker` (FA*IR)."""

    p: float = Field(0.5, gt=0.0, lt=1.0)
    """Minimum share of protected items the test holds every prefix to (0 < p < 1)."""
    alpha: float = Field(0.1, gt=0.0, lt=1.0)
    """Significance: the probability of rejecting a fair list (0 < alpha < 1)."""
    adjust_alpha: bool = True
    """Correct for testing every prefix (the paper's adjusted ``alpha_c``); False tests each prefix at ``alpha``."""
    adjustment: Literal["nearest", "at_most"] = "nearest"
    """How ``alpha_c`` is chosen: the table whose overall failure probability is ``nearest`` alpha
    (``fairsearchcore``'s rule; it may exceed alpha slightly), or the largest one ``at_most`` alpha."""
    protected_group: int = Field(1, ge=0)
    """The ``item_group`` code of the protected group."""


def _cdf_table(k: int, p: float) -> np.ndarray:
    """``(k, k + 1)``: row ``i - 1`` holds ``F(x; i, p)`` for ``x = 0..k`` (1 beyond ``i``)."""
    trials = np.arange(1, k + 1)[:, None]
    return binom.cdf(np.arange(k + 1)[None, :], trials, p)


def _table_at(cdf: np.ndarray, alpha: float) -> np.ndarray:
    # m(i) = smallest x with F(x; i, p) >= alpha = number of x with F(x; i, p) < alpha
    return (cdf < alpha).sum(axis=1).astype(np.int64)


def mtable(k: int, p: float, alpha: float) -> np.ndarray:
    """The unadjusted table: ``m(i) = binom.ppf(alpha, i, p)`` for ``i = 1..k`` (``(k,)`` int64).

    >>> mtable(10, 0.5, 0.1).tolist()
    [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]
    """
    _check_params(k, p, alpha)
    return _table_at(_cdf_table(k, p), alpha)


def fail_probability(table: np.ndarray, p: float) -> float:
    """Probability that ``len(table)`` Bernoulli(``p``) draws fail some prefix test of ``table``.

    Exact: the distribution of the protected count over the lists that passed
    every prefix so far is advanced one place at a time, and the mass below
    ``m(i)`` removed.
    """
    table = np.asarray(table, dtype=np.int64)
    k = len(table)
    alive = np.zeros(k + 1)
    alive[0] = 1.0
    for i in range(k):
        nxt = alive * (1.0 - p)
        nxt[1:] += alive[:-1] * p
        nxt[: table[i]] = 0.0
        alive = nxt
    return float(max(0.0, 1.0 - alive.sum()))


class AdjustedTable(NamedTuple):
    """An adjusted ``m`` table and where it comes from."""

    table: np.ndarray
    """``(k,)`` int64 minimum protected counts of the prefixes ``1..k``."""
    alpha_c: float
    """The largest per-prefix significance that gives this table."""
    fail_prob: float
    """Probability that a random fair list fails some prefix test of the table."""


@lru_cache(maxsize=256)
def _adjusted(k: int, p: float, alpha: float, rule: str) -> tuple[tuple[int, ...], float, float]:
    cdf = _cdf_table(k, p)
    # each breakpoint b = F(x; i, p) < alpha ends an interval (previous b, b] of alpha_c with one
    # table; the tables grow with alpha_c, and so does their failure probability (monotone)
    candidates = np.append(np.unique(cdf[cdf < alpha]), alpha)
    cache: dict[int, tuple[np.ndarray, float]] = {}

    def at(i: int) -> tuple[np.ndarray, float]:
        if i not in cache:
            table = _table_at(cdf, float(candidates[i]))
            cache[i] = (table, fail_probability(table, p))
        return cache[i]

    lo, hi = -1, len(candidates) - 1  # find the last index whose failure probability is <= alpha
    if at(hi)[1] <= alpha:
        lo = hi
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if at(mid)[1] <= alpha:
                lo = mid
            else:
                hi = mid
    if rule == "at_most":
        best = max(lo, 0)
    else:  # nearest alpha; a tie goes to the smaller table
        near = [i for i in (lo, lo + 1) if 0 <= i < len(candidates)]
        best = min(near, key=lambda i: (abs(at(i)[1] - alpha), i))
    table, fail = at(best)
    return tuple(int(v) for v in table), float(candidates[best]), float(fail)


def adjusted_mtable(k: int, p: float, alpha: float, rule: Literal["nearest", "at_most"] = "nearest") -> AdjustedTable:
    """The table adjusted for testing all ``k`` prefixes (see the module docstring).

    Returns :class:`AdjustedTable` ``(table, alpha_c, fail_prob)``; ``alpha_c`` is
    the right end of the interval of significance levels that produce the table.

    >>> adjusted_mtable(20, 0.25, 0.1).table.tolist()
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]
    """
    _check_params(k, p, alpha)
    if rule not in ("nearest", "at_most"):
        raise ConfigError(
            f"The 'rule' parameter of adjusted_mtable must be 'nearest' or 'at_most'. Got {rule!r} instead."
        )
    table, alpha_c, fail = _adjusted(int(k), float(p), float(alpha), rule)
    return AdjustedTable(np.array(table, dtype=np.int64), alpha_c, fail)


def _check_params(k: int, p: float, alpha: float) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"The 'k' parameter of FA*IR must be an int in the range [1, inf). Got {k!r} instead.")
    if not 0 < p < 1:
        raise ConfigError(f"The 'p' parameter of FA*IR must be a float in the range (0, 1). Got {p!r} instead.")
    if not 0 < alpha < 1:
        raise ConfigError(f"The 'alpha' parameter of FA*IR must be a float in the range (0, 1). Got {alpha!r} instead.")


def ranked_group_fair(protected: np.ndarray, filled: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Per row, whether every filled prefix holds at least ``table[i]`` protected items.

    ``protected`` and ``filled`` are ``(n, k)`` booleans; prefixes beyond a short
    list's end are not tested.
    """
    counts = np.cumsum(protected & filled, axis=1)
    return ((counts >= table[None, : protected.shape[1]]) | ~filled).all(axis=1)


@register_reranker
class FairStarReranker(Reranker):
    """FA*IR (Zehlike et al. 2017): every prefix passes the ranked group fairness test where candidates allow.

    Vectorized over users; loops over the ``k`` places only. The constraint
    reported (``constraints_met``) is the ranked group fairness test of the
    final list with the same table.
    """

    name: ClassVar[str] = "fair_star"
    Config: ClassVar[type[RerankConfig]] = FairStarConfig
    reason: ClassVar[Reason] = Reason.provider_fairness
    needs: ClassVar[tuple[str, ...]] = ("item_group",)
    config: FairStarConfig

    def table(self, k: int) -> np.ndarray:
        """The ``m`` table this step uses for lists of ``k``."""
        cfg = self.config
        if cfg.adjust_alpha:
            return adjusted_mtable(k, cfg.p, cfg.alpha, cfg.adjustment).table
        return mtable(k, cfg.p, cfg.alpha)

    def _protected(self, items: np.ndarray, cands: Candidates) -> np.ndarray:
        group = cands.item_group[np.maximum(items, 0)]
        return (group == self.config.protected_group) & (items >= 0)

    def order(self, cands: Candidates, k: int) -> tuple[np.ndarray, None]:
        n, c = cands.items.shape
        width = min(k, c)
        table = self.table(k)
        valid = cands.valid
        prot = self._protected(cands.items, cands)
        # each group's candidate positions in input order, sentinel c after the last
        prot_pos = np.argsort(~prot, axis=1, kind="stable")
        prot_pos = np.where(np.take_along_axis(prot, prot_pos, axis=1), prot_pos, c)
        other = valid & ~prot
        other_pos = np.argsort(~other, axis=1, kind="stable")
        other_pos = np.where(np.take_along_axis(other, other_pos, axis=1), other_pos, c)
        sentinel = np.full((n, 1), c, dtype=np.int64)
        prot_pos = np.hstack([prot_pos, sentinel])
        other_pos = np.hstack([other_pos, sentinel])
        rows = np.arange(n)
        next_p = np.zeros(n, dtype=np.int64)
        next_o = np.zeros(n, dtype=np.int64)
        chosen = np.full((n, width), -1, dtype=np.int64)
        for i in range(width):
            head_p = prot_pos[rows, next_p]
            head_o = other_pos[rows, next_o]
            need = next_p < table[i]  # protected placed so far = next_p
            take_p = (head_p < c) & (need | (head_p < head_o))  # #938: the better head wins when not required
            take_o = ~take_p & (head_o < c)
            chosen[:, i] = np.where(take_p, head_p, np.where(take_o, head_o, -1))
            next_p += take_p
            next_o += take_o
        available = valid.copy()
        picked = chosen >= 0
        available[np.repeat(rows, width)[picked.ravel()], chosen[picked]] = False
        return complete_order(chosen, available), None

    def check(self, items: np.ndarray, cands: Candidates) -> np.ndarray:
        table = self.table(items.shape[1])
        return ranked_group_fair(self._protected(items, cands), items >= 0, table)
