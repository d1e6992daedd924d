"""Target proportions of many provider groups: Geyik, Ambler & Kenthapadi (KDD 2019).

A pack gives each provider group (an ``item_group`` code) a target share
``p_g`` of every list. Geyik et al.'s four deterministic algorithms fill the
list place by place; at place ``i`` (1-based) a group is *below its minimum*
when it holds fewer than ``floor(i * p_g)`` items and *below its maximum* when
it holds fewer than ``ceil(i * p_g)``:

``greedy`` (DetGreedy)
    if any group is below its minimum, the best next item among those groups;
    otherwise the best next item among the groups below their maximum.
``conservative`` (DetCons)
    as greedy, but among the groups below their maximum, the group that will
    reach its next minimum soonest, ``min_g ceil(i p_g) / p_g`` (ties: the
    better next item).
``relaxed`` (DetRelaxed)
    as conservative with the key rounded up, ``ceil(ceil(i p_g) / p_g)``, so
    that groups due at the same place compete on their next item.
``constrained`` (DetConstSort)
    the paper's Algorithm 3: whenever a group's minimum count grows (at ``i``
    where ``floor(i p_g)`` steps up), its next item is inserted at the end and
    bubbled up past worse items whose latest allowed place (the ``i`` at which
    they were inserted) permits, so every prefix keeps its minimums and better
    items rise.

"Best" is the order the step receives (the model's, or the previous step's),
as for FA*IR. ``floor`` and ``ceil`` are taken with a tolerance of ``1e-9`` so
that ``10 * 0.3`` is 3, not 4. Items of groups without a target (and of the
unknown group ``-1``) form one group with target ``1 - sum(p)``; when it is 0
they are used only when no targeted group can fill a place (a group runs out
of candidates), and so is the best remaining candidate of any group.

Attention weighting (``weighting: attention``, greedy only) is the same greedy
rule on attention instead of places: with ``A_g`` the attention a group's items
hold so far and ``W_i`` the total attention of places ``1..i`` (``1/log2(rank +
1)`` each), a group is below its minimum when ``A_g + w_i <= p_g W_i`` (it is
owed a whole place even if it takes this one) and below its maximum when ``A_g
< p_g W_i``. With ``w = 1`` these are exactly ``count < floor(i p_g)`` and ``count
< ceil(i p_g)``: the paper's rule. It targets each group's share of a list's
exposure rather than of its places (the top place is worth more than the
tenth), which the place-counting algorithms leave to the model's order.

The constraint reported (``constraints_met``) is Geyik et al.'s feasibility
condition on the final list: every prefix ``1..i`` holds at least
``floor(i p_g)`` items of every targeted group. With attention weighting it is
the whole list's: every group is less than the last place's attention short of
its share, ``A_g(k) + w_k > p_g W_k`` (prefixes are not tested: with attention
falling off, a short prefix cannot give four groups a place each). Lists whose candidates cannot
meet it (too few items of a group) are reported as not meeting it.

Cross-checked against aif360's ``DeterministicReranking`` on the same inputs
(``tests/governance/test_proportions.py``). aif360 0.6.1 indexes the groups of
its below-minimum (and Greedy's below-maximum) branch by their position in
the shortlist rather than by group, so it counts an item to the wrong group
whenever the shortlist does not start at group 0 (and may then repeat an item);
the tests show that case and agree with aif360 once that index is mapped back.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from governance.rerank.base import Candidates, Reason, RerankConfig, Reranker, complete_order
from governance.rerank.registry import register_reranker

__all__ = ["GroupProportionsConfig", "GroupProportionsReranker", "minimum_counts"]

_TOL = 1e-9
ALGORITHMS = ("greedy", "conservative", "relaxed", "constrained")


class GroupProportionsConfig(RerankConfig):
    """Parameters of :class:`GroupProportionsReranker` (Geyik et al. 2019)."""

    targets: dict[int, float] = Field(default_factory=lambda: {0: 0.5, 1: 0.5})
    """Target share of every list per ``item_group`` code (each in [0, 1], summing to at most 1); groups
    not named share the rest. Empty: no targets (the model order)."""
    algorithm: Literal["greedy", "conservative", "relaxed", "constrained"] = "greedy"
    """Geyik et al.'s algorithm: ``greedy`` (DetGreedy), ``conservative`` (DetCons), ``relaxed``
    (DetRelaxed) or ``constrained`` (DetConstSort)."""
    weighting: Literal["positions", "attention"] = "positions"
    """What the shares count: places (the paper's) or attention ``1/log2(rank + 1)``, so that a group's
    share of a list's *exposure* follows its target (``greedy`` only; see the module docstring)."""

    @model_validator(mode="after")
    def _attention_with_greedy(self) -> GroupProportionsConfig:
        if self.weighting == "attention" and self.algorithm != "greedy":
            raise ValueError("weighting 'attention' is defined for algorithm 'greedy' only")
        return self

    @field_validator("targets")
    @classmethod
    def _shares(cls, value: dict[int, float]) -> dict[int, float]:
        for code, share in value.items():
            if code < 0:
                raise ValueError(f"group code {code} must be >= 0 (-1, the unknown group, takes no target)")
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"the share of group {code} must be in [0, 1]; got {share}")
        if sum(value.values()) > 1.0 + _TOL:
            raise ValueError(f"the shares must sum to at most 1; they sum to {sum(value.values()):g}")
        return value


def _attention(k: int) -> np.ndarray:
    """``1/log2(rank + 1)`` for ranks ``1..k`` (the NDCG discount)."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def minimum_counts(k: int, shares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(k, G)`` ``floor(i p_g)`` and ``ceil(i p_g)`` for ``i = 1..k`` (with the 1e-9 tolerance)."""
    ip = np.arange(1, k + 1, dtype=np.float64)[:, None] * np.asarray(shares, dtype=np.float64)[None, :]
    return np.floor(ip + _TOL).astype(np.int64), np.ceil(ip - _TOL).astype(np.int64)


@register_reranker
class GroupProportionsReranker(Reranker):
    """Geyik et al.'s (2019) deterministic re-rankers toward target proportions of many provider groups.

    Vectorized over users; loops over the ``k`` places (and, for
    ``constrained``, over the places an inserted item bubbles up).
    """

    name: ClassVar[str] = "group_proportions"
    Config: ClassVar[type[RerankConfig]] = GroupProportionsConfig
    reason: ClassVar[Reason] = Reason.provider_fairness
    needs: ClassVar[tuple[str, ...]] = ("item_group",)
    config: GroupProportionsConfig

    # -- groups ------------------------------------------------------------------------------
    def _groups(self, cands: Candidates) -> tuple[np.ndarray, np.ndarray, int]:
        """Dense group of every catalog item (targeted groups ``0..G-1`` in code order, the rest ``G``),
        the ``(G + 1,)`` shares, and ``G``."""
        codes = sorted(self.config.targets)
        shares = np.array([self.config.targets[c] for c in codes] + [max(0.0, 1.0 - sum(self.config.targets.values()))])
        lookup = np.full(int(max(codes, default=-1)) + 2, len(codes), dtype=np.int64)
        lookup[codes] = np.arange(len(codes))
        raw = cands.item_group
        dense = np.where((raw >= 0) & (raw < len(lookup) - 1), lookup[np.clip(raw, 0, len(lookup) - 1)], len(codes))
        return dense, shares, len(codes)

    def _heads(self, cand_group: np.ndarray, valid: np.ndarray, n_groups: int) -> np.ndarray:
        """``(n, n_groups, c + 1)`` each group's candidate positions in input order, sentinel ``c`` after."""
        n, c = cand_group.shape
        out = np.full((n, n_groups, c + 1), c, dtype=np.int64)
        for g in range(n_groups):
            member = valid & (cand_group == g)
            pos = np.argsort(~member, axis=1, kind="stable")
            out[:, g, :c] = np.where(np.take_along_axis(member, pos, axis=1), pos, c)
        return out

    # -- the algorithms ------------------------------------------------------------------------
    def order(self, cands: Candidates, k: int) -> tuple[np.ndarray, None]:
        n, c = cands.items.shape
        width = min(k, c)
        valid = cands.valid
        dense, shares, n_targeted = self._groups(cands)
        n_groups = n_targeted + 1
        cand_group = np.where(valid, dense[np.maximum(cands.items, 0)], n_targeted)
        heads = self._heads(cand_group, valid, n_groups)
        if self.config.algorithm == "constrained":
            chosen = self._constrained(heads, shares, n_targeted, width, c, valid)
        elif self.config.weighting == "attention":
            chosen = self._greedy_attention(heads, shares, width, c)
        else:
            chosen = self._greedy_family(heads, shares, width, c, valid)
        available = valid.copy()
        picked = chosen >= 0
        available[np.repeat(np.arange(n), width)[picked.ravel()], chosen[picked]] = False
        return complete_order(chosen, available), None

    def _greedy_family(
        self, heads: np.ndarray, shares: np.ndarray, width: int, c: int, valid: np.ndarray
    ) -> np.ndarray:
        n, n_groups, _ = heads.shape
        rows = np.arange(n)
        floor_at, ceil_at = minimum_counts(max(width, 1), shares)
        counts = np.zeros((n, n_groups), dtype=np.int64)
        chosen = np.full((n, width), -1, dtype=np.int64)
        algorithm = self.config.algorithm
        with np.errstate(divide="ignore", invalid="ignore"):
            due = ceil_at / shares[None, :]  # when each group's next minimum falls due (inf without a share)
        if algorithm == "relaxed":
            due = np.ceil(due - _TOL)
        for i in range(width):
            head = np.take_along_axis(heads, counts[:, :, None], axis=2)[:, :, 0]  # (n, G) next position
            has = head < c
            below_min = has & (counts < floor_at[i][None, :])
            below_max = has & ~below_min & (counts < ceil_at[i][None, :])
            big = np.iinfo(np.int64).max
            best_min = np.where(below_min, head, big).argmin(axis=1)
            if algorithm == "greedy":
                best_max = np.where(below_max, head, big).argmin(axis=1)
            else:
                key = np.where(below_max, due[i][None, :], np.inf)
                soonest = key.min(axis=1, keepdims=True)
                best_max = np.where(below_max & (key <= soonest + _TOL), head, big).argmin(axis=1)
            any_best = np.where(has, head, big).argmin(axis=1)  # no group due: the best remaining candidate
            group = np.where(below_min.any(axis=1), best_min, np.where(below_max.any(axis=1), best_max, any_best))
            ok = has[rows, group]
            chosen[:, i] = np.where(ok, head[rows, group], -1)
            counts[rows[ok], group[ok]] += 1
        return chosen

    def _greedy_attention(self, heads: np.ndarray, shares: np.ndarray, width: int, c: int) -> np.ndarray:
        """DetGreedy on attention (see the module docstring): ``A_g + w_i <= p W_i`` is below the minimum."""
        n, n_groups, _ = heads.shape
        rows = np.arange(n)
        w = _attention(max(width, 1))
        total = np.cumsum(w)
        held = np.zeros((n, n_groups))
        counts = np.zeros((n, n_groups), dtype=np.int64)
        chosen = np.full((n, width), -1, dtype=np.int64)
        big = np.iinfo(np.int64).max
        for i in range(width):
            owed = shares[None, :] * total[i]
            head = np.take_along_axis(heads, counts[:, :, None], axis=2)[:, :, 0]
            has = head < c
            below_min = has & (held + w[i] <= owed + _TOL)
            below_max = has & ~below_min & (held < owed - _TOL)
            best_min = np.where(below_min, head, big).argmin(axis=1)
            best_max = np.where(below_max, head, big).argmin(axis=1)
            any_best = np.where(has, head, big).argmin(axis=1)
            group = np.where(below_min.any(axis=1), best_min, np.where(below_max.any(axis=1), best_max, any_best))
            ok = has[rows, group]
            chosen[:, i] = np.where(ok, head[rows, group], -1)
            counts[rows[ok], group[ok]] += 1
            held[rows[ok], group[ok]] += w[i]
        return chosen

    def _constrained(
        self, heads: np.ndarray, shares: np.ndarray, n_targeted: int, width: int, c: int, valid: np.ndarray
    ) -> np.ndarray:
        """DetConstSort (Geyik et al. Algorithm 3), every user at once; places left empty are filled afterwards."""
        n, n_groups, _ = heads.shape
        rows = np.arange(n)
        ranked = np.full((n, width), -1, dtype=np.int64)  # input positions; smaller is better
        max_index = np.zeros((n, width), dtype=np.int64)
        counts = np.zeros((n, n_groups), dtype=np.int64)
        last = np.zeros(n, dtype=np.int64)
        targeted = shares[:n_targeted]
        prev = np.zeros(n_targeted, dtype=np.int64)
        positive = targeted[targeted > 0]
        # sum_g floor(i p_g) >= width once i >= (width + G) / sum(p): then every minimum is due
        i_max = int(np.ceil((width + n_targeted) / positive.sum())) + 1 if positive.size else 0
        for i in range(1, i_max + 1):
            now = np.floor(i * targeted + _TOL).astype(np.int64)
            changed = np.flatnonzero(now > prev)
            prev = now
            if not changed.size:
                continue
            # the changed groups' next items, best first (exhausted groups last, skipped)
            head = np.take_along_axis(heads[:, changed, :], counts[:, changed, None], axis=2)[:, :, 0]
            order = np.argsort(head, axis=1, kind="stable")
            for j in range(len(changed)):
                g = changed[order[:, j]]
                pos = head[rows, order[:, j]]
                insert = (pos < c) & (last < width)
                if not insert.any():
                    continue
                r = rows[insert]
                ranked[r, last[r]] = pos[insert]
                max_index[r, last[r]] = i - 1
                counts[r, g[insert]] += 1
                cur = last.copy()
                moving = insert.copy()
                while moving.any():
                    s = np.maximum(cur, 1)
                    prev_pos = ranked[rows, s - 1]
                    this_pos = ranked[rows, np.minimum(cur, width - 1)]
                    moving &= (cur > 0) & (max_index[rows, s - 1] >= cur) & (prev_pos > this_pos)
                    m = rows[moving]
                    if not m.size:
                        break
                    a, b = cur[m] - 1, cur[m]
                    ranked[m, a], ranked[m, b] = ranked[m, b], ranked[m, a].copy()
                    max_index[m, a], max_index[m, b] = max_index[m, b], max_index[m, a].copy()
                    cur[m] -= 1
                last[insert] += 1
            if (last >= width).all():
                break
        # places the targets could not fill (a group ran out, or shares below 1): the best remaining candidates
        short = last < width
        if short.any():
            available = valid.copy()
            filled = ranked >= 0
            available[np.repeat(rows, width)[filled.ravel()], ranked[filled]] = False
            rest = np.argsort(~available, axis=1, kind="stable")
            rest = np.where(np.take_along_axis(available, rest, axis=1), rest, -1)
            fill_at = np.arange(width)[None, :] - last[:, None]
            take = (fill_at >= 0) & (fill_at < rest.shape[1])
            ranked = np.where(take, np.take_along_axis(rest, np.clip(fill_at, 0, rest.shape[1] - 1), axis=1), ranked)
            # a row with fewer candidates than places keeps -1 at the end
            ranked = np.where(np.arange(width)[None, :] < valid.sum(axis=1, keepdims=True), ranked, -1)
        return ranked

    # -- the constraint ---------------------------------------------------------------------------
    def check(self, items: np.ndarray, cands: Candidates) -> np.ndarray:
        dense, shares, n_targeted = self._groups(cands)
        filled = items >= 0
        if not n_targeted or not items.shape[1]:
            return np.ones(items.shape[0], dtype=bool)
        group = np.where(filled, dense[np.maximum(items, 0)], n_targeted)
        member = group[:, :, None] == np.arange(n_targeted)[None, None, :]
        if self.config.weighting == "attention":
            w = _attention(items.shape[1])
            held_w = np.cumsum(member * w[None, :, None], axis=1)  # (n, k, G)
            owed = np.cumsum(w)[None, :, None] * shares[None, None, :n_targeted]
            n_filled = filled.sum(axis=1)
            last = np.maximum(n_filled - 1, 0)
            rows = np.arange(items.shape[0])
            ok_end = held_w[rows, last] + w[last][:, None] > owed[0, last] + _TOL  # (n, G) the whole list
            return ok_end.all(axis=1) | (n_filled == 0)
        else:
            floor_at, _ = minimum_counts(items.shape[1], shares[:n_targeted])
            ok = np.cumsum(member, axis=1) >= floor_at[None, :, :]  # (n, k, G)
        # prefixes beyond a short list's end are not tested (as FA*IR's)
        return (ok | ~filled[:, :, None]).all(axis=(1, 2))
