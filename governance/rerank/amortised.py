"""Amortised exposure: provider groups' exposure debt carried across requests (Biega et al. 2018).

One list cannot give four provider groups their share of attention without
costing a lot of relevance (the top place alone holds a fifth of a ten-item
list's attention), but a *sequence* of lists can: a group under-exposed in one
list is owed the difference, and later lists pay it where paying is cheap.
This step keeps that debt in an :class:`ExposureLedger` and re-ranks each list
to pay it down under a relevance budget.

Attention is the NDCG discount ``w_r = 1 / log2(r + 1)`` of rank ``r``, the
``log`` model of :func:`recommender.fairness.attention_weights` and of the
exposure metrics (:mod:`recommender.fairness._amortised`). A pack gives each
provider group (``item_group`` code) a target share ``p_g``; a list of ``n``
places gives out ``W_n = sum_{r<=n} w_r`` attention, so group ``g`` is owed
``p_g W_n`` and receives ``A_g``, the attention of the places its items hold.
The ledger's debt of ``g`` is the running sum of ``p_g W_n - A_g`` over the
lists served (``memory: amortised``), capped at ``max_debt`` full lists either
way so that a debt that could not be paid for a while (a group with no
candidates) does not swamp relevance once it can (anti-windup). With ``memory:
per_list`` nothing is carried: each list only pays its own running debt (the
per-list baseline, same machinery).

Place by place, the step takes the candidate maximising

    rel_j + weight * d_g(j) + item_weight * e_j

where ``rel`` is the candidate's score min-max scaled within the list (as the
other steps read relevance), ``d_g = (D_g + p_g W_{i} - A_g^{list}) / W_k`` is
the group's debt including this list's places so far (``W_i``: attention of
places ``1..i``), in units of one full list, and ``e_j`` the item's own debt
(``item_weight > 0``, Biega et al.'s equity of attention: an item is owed
attention in proportion to its relevance, ``rel_j / sum(rel) * W_n`` per list
it is a candidate of). Only candidates that keep the list within its
**relevance budget** are eligible: the list's DCG (gains ``rel``, discounts
``w_r``) must stay at least ``(1 - ndcg_budget)`` of the best DCG its candidates
allow, which the greedy checks at each place against the best completion of
the remaining places, so the model's next item is always eligible and the
bound always holds.

Requests are taken in row order, each on the ledger as the rows before it
left it, so a batch gives what the same requests served one by one give
(and the result does not depend on chunking). The exposure of the step's
``k`` choices is added to the ledger when :meth:`~AmortisedExposureReranker.order`
returns: put the step last in a pipeline (a later step that reorders changes
what is served, not what the ledger counted). The ledger holds group (and
item) exposure only, nothing about any user.

The constraint reported is the amortised target itself: after the list, every
targeted group's share of all attention served so far is within ``tolerance``
of its target. :meth:`~AmortisedExposureReranker.check` replays the lists it
is given on the ledger as it stood before the batch, without changing it.

Lists that are made but never shown (a shadow deployment's, ``shadow_of``) are
made within :func:`unserved_lists`: each is made on the ledger as it stands
(the rows of one batch carry their debt to each other, as served lists would)
but none of it is added to the ledger, which counts only what is served.

Deterministic given the ledger's state: the same state and candidates give the
same lists. Concurrent requests read the ledger under a lock and add their
exposure to it under the same lock, so no list's exposure is lost; two lists
made at the same time may both pay the same debt (it is paid back later).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from governance.rerank.base import Candidates, Reason, RerankConfig, Reranker, complete_order, identity_order, relevance
from governance.rerank.registry import register_reranker
from recommender.errors import DataError

__all__ = ["AmortisedExposureConfig", "AmortisedExposureReranker", "ExposureLedger", "LEDGER_VERSION", "unserved_lists"]

_UNSERVED: ContextVar[bool] = ContextVar("recgov_amortised_unserved", default=False)


@contextmanager
def unserved_lists() -> Iterator[None]:
    """Within: amortised steps make their lists on the live ledger but add nothing to it.

    For lists nobody is shown (a shadow deployment's): their exposure was never
    given, so counting it would let unseen lists pay the debt the served lists
    owe. Per thread (and per asyncio task): the production requests served
    meanwhile on other threads count as usual.
    """
    token = _UNSERVED.set(True)
    try:
        yield
    finally:
        _UNSERVED.reset(token)

_TOL = 1e-9
LEDGER_VERSION = 1
"""Version of :meth:`ExposureLedger.to_dict`'s layout (a stored state of another version is refused)."""


class AmortisedExposureConfig(RerankConfig):
    """Parameters of :class:`AmortisedExposureReranker`."""

    targets: dict[int, float] = Field(default_factory=lambda: {0: 0.5, 1: 0.5})
    """Target share of all attention served per ``item_group`` code (each in [0, 1], summing to at most 1);
    groups not named carry no debt. Empty: no targets (the model order)."""
    weight: float = Field(1.0, ge=0.0, le=1000.0)
    """How much one full list of group debt is worth against the relevance range of a list (0: the model order)."""
    ndcg_budget: float = Field(0.05, ge=0.0, le=1.0)
    """Largest relative loss of a list's DCG (min-max scaled scores as gains) the step may spend (0: the model order)."""
    memory: Literal["amortised", "per_list"] = "amortised"
    """``amortised`` carries each group's debt across requests; ``per_list`` pays each list's own debt only."""
    max_debt: float = Field(10.0, gt=0.0, le=1e6)
    """Cap of a group's carried debt, either way, in full lists of attention (anti-windup)."""
    item_weight: float = Field(0.0, ge=0.0, le=1000.0)
    """Weight of each item's own debt (attention owed in proportion to relevance, Biega et al. 2018); 0: groups only."""
    tolerance: float = Field(0.05, gt=0.0, le=1.0)
    """The constraint: every targeted group's share of all attention served is within this of its target."""

    @field_validator("targets")
    @classmethod
    def _shares(cls, value: dict[int, float]) -> dict[int, float]:
        for code, share in value.items():
            if code < 0:
                raise ValueError(f"group code {code} must be >= 0 (-1, the unknown group, takes no target)")
            if not 0.0 <= share <= 1.0 or not math.isfinite(share):
                raise ValueError(f"the share of group {code} must be in [0, 1]; got {share}")
        if sum(value.values()) > 1.0 + _TOL:
            raise ValueError(f"the shares must sum to at most 1; they sum to {sum(value.values()):g}")
        return value


def _attention(k: int) -> np.ndarray:
    """``1/log2(rank + 1)`` for ranks ``1..k`` (the NDCG discount; the exposure metrics' ``log`` model)."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


class ExposureLedger:
    """The exposure state of one amortised step: per targeted group its debt and the attention it received,
    the attention served in all, how many lists, and (optionally) per item its debt.

    Holds no user data: group codes, catalog item rows, sums of attention and a count.
    Every change goes through :meth:`apply` under the ledger's lock.
    """

    def __init__(self, codes: list[int]) -> None:
        self.codes = list(codes)
        self.lock = threading.Lock()
        self.debt = np.zeros(len(self.codes))
        self.received = np.zeros(len(self.codes))
        self.total = 0.0
        self.lists = 0
        self.item_debt: dict[int, float] = {}
        self.changes = 0
        """Lists applied since the state was last marked saved (:meth:`mark_saved`)."""

    # -- reading and changing ------------------------------------------------------------------
    def snapshot(self) -> tuple[np.ndarray, np.ndarray, float, int, dict[int, float]]:
        """A consistent copy of the state (read under the lock)."""
        with self.lock:
            return self.debt.copy(), self.received.copy(), self.total, self.lists, dict(self.item_debt)

    def apply(self, d_debt: np.ndarray, d_received: np.ndarray, d_total: float, d_lists: int, cap: float, d_items: dict[int, float]) -> None:
        """Add a batch's exposure (debts capped at ``+-cap`` after adding)."""
        with self.lock:
            self.debt = np.clip(self.debt + d_debt, -cap, cap)
            self.received = self.received + d_received
            self.total += d_total
            self.lists += d_lists
            for item, value in d_items.items():
                self.item_debt[item] = float(np.clip(self.item_debt.get(item, 0.0) + value, -cap, cap))
            self.changes += d_lists

    def mark_saved(self, lists: int) -> None:
        """The state was saved after ``lists`` lists: only changes since count as unsaved."""
        with self.lock:
            self.changes = max(0, self.lists - lists)

    # -- the stored form -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state (group codes as strings, items as catalog rows)."""
        with self.lock:
            return {
                "version": LEDGER_VERSION,
                "groups": {str(c): {"debt": float(d), "received": float(r)} for c, d, r in zip(self.codes, self.debt, self.received)},
                "total": float(self.total),
                "lists": int(self.lists),
                "items": {str(i): float(v) for i, v in sorted(self.item_debt.items()) if v != 0.0},
            }

    def load(self, state: dict[str, Any], *, keep_items: bool = True) -> None:
        """Replace the state by a stored one (:meth:`to_dict`); groups the pack no longer targets are dropped,
        new ones start at zero. ``keep_items=False`` drops item debts (their rows belong to another model)."""
        if not isinstance(state, dict) or state.get("version") != LEDGER_VERSION:
            raise DataError(f"stored exposure state has version {state.get('version') if isinstance(state, dict) else None!r}; "
                            f"this build reads version {LEDGER_VERSION}")  # fmt: skip
        groups = state.get("groups") or {}
        with self.lock:
            self.debt = np.array([float(groups.get(str(c), {}).get("debt", 0.0)) for c in self.codes])
            self.received = np.array([float(groups.get(str(c), {}).get("received", 0.0)) for c in self.codes])
            self.total = float(state.get("total", 0.0))
            self.lists = int(state.get("lists", 0))
            self.item_debt = {int(i): float(v) for i, v in (state.get("items") or {}).items()} if keep_items else {}
            if not all(map(math.isfinite, [self.total, *self.debt, *self.received, *self.item_debt.values()])):
                raise DataError("stored exposure state holds a non-finite number")
            self.changes = 0

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of :meth:`to_dict` (what the trail anchors)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def counts(self) -> dict[str, Any]:
        """What a trail event may say of the state: counts and each group's share, nothing per item."""
        with self.lock:
            shares = self.received / self.total if self.total > 0 else np.zeros(len(self.codes))
            return {
                "lists": int(self.lists),
                "groups": len(self.codes),
                "items_with_debt": sum(1 for v in self.item_debt.values() if v != 0.0),
                "shares": {str(c): round(float(s), 6) for c, s in zip(self.codes, shares)},
            }


@register_reranker
class AmortisedExposureReranker(Reranker):
    """Pays provider groups' exposure debt, carried across requests, under a per-list relevance budget."""

    name: ClassVar[str] = "amortised_exposure"
    Config: ClassVar[type[RerankConfig]] = AmortisedExposureConfig
    reason: ClassVar[Reason] = Reason.provider_fairness
    needs: ClassVar[tuple[str, ...]] = ("item_group",)
    stateful: ClassVar[bool] = True
    config: AmortisedExposureConfig

    def __init__(self, config: RerankConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.codes = sorted(self.config.targets)
        self.shares = np.array([self.config.targets[c] for c in self.codes], dtype=np.float64)
        self.ledger = ExposureLedger(self.codes)
        self._before = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        # A copy sent to another process (the service's compute process) has no lock to share: the
        # serving engine keeps a stateful pipeline in its own process (see Personalizer.stateful).
        raise TypeError("an amortised_exposure step holds live state and is not copied to another process")

    def _dense(self, cands: Candidates, items: np.ndarray) -> np.ndarray:
        """Each item's index into the targeted groups (``len(codes)``: untargeted or unknown)."""
        lookup = {c: i for i, c in enumerate(self.codes)}
        raw = cands.item_group
        table = np.full(int(max(self.codes, default=-1)) + 2, len(self.codes), dtype=np.int64)
        for c, i in lookup.items():
            table[c] = i
        g = raw[np.maximum(items, 0)]
        return np.where((g >= 0) & (g < len(table) - 1), table[np.clip(g, 0, len(table) - 1)], len(self.codes))

    # -- the greedy ----------------------------------------------------------------------------------
    def order(self, cands: Candidates, k: int) -> tuple[np.ndarray, None]:
        cfg = self.config
        n, c = cands.items.shape
        width = min(k, c)
        valid = cands.valid
        debt, received, total, lists, item_debt = self.ledger.snapshot()
        self._before.state = (debt.copy(), received.copy(), total, lists)
        neutral = not self.codes or (cfg.weight == 0.0 and cfg.item_weight == 0.0) or cfg.ndcg_budget == 0.0
        order = identity_order(cands) if neutral else None
        chosen = np.full((n, width), -1, dtype=np.int64)
        w = _attention(max(k, 1))
        w_full = float(w.sum())
        cap = cfg.max_debt * w_full
        group = self._dense(cands, cands.items)
        rel_all = relevance(cands.scores, valid)
        n_g = len(self.codes)
        start_debt, start_received, start_total = debt.copy(), received.copy(), total
        d_items: dict[int, float] = {}
        for r in range(n):
            m = int(valid[r].sum())
            places = min(width, m)
            if not places:
                continue
            rel = rel_all[r, :m]
            g = group[r, :m]
            carried = debt if cfg.memory == "amortised" else np.zeros(n_g)
            ids = cands.items[r, :m]
            if cfg.item_weight > 0:
                e = np.array([item_debt.get(int(i), 0.0) for i in ids]) / w_full
            if neutral:
                pick_seq = np.arange(places)
            elif cfg.item_weight == 0:
                pick_seq = self._greedy_heads(rel, g, carried, w, w_full, places)
            else:
                pick_seq = self._greedy(rel, g, carried, w, w_full, places, e if cfg.item_weight > 0 else None)
            chosen[r, :places] = pick_seq
            # what this list gave out
            a_list = np.zeros(n_g + 1)
            np.add.at(a_list, g[pick_seq], w[:places])
            w_n = float(w[:places].sum())
            owed = self.shares * w_n - a_list[:n_g]
            if cfg.memory == "amortised":
                debt = np.clip(debt + owed, -cap, cap)
            received = received + a_list[:n_g]
            total += w_n
            if cfg.item_weight > 0:
                rsum = float(rel.sum())
                target = rel / rsum * w_n if rsum > 0 else np.full(m, w_n / m)
                got = np.zeros(m)
                got[pick_seq] = w[:places]
                for i, delta in zip(ids.tolist(), (target - got).tolist()):
                    new = float(np.clip(item_debt.get(i, 0.0) + delta, -cap, cap))
                    d_items[i] = d_items.get(i, 0.0) + new - item_debt.get(i, 0.0)
                    item_debt[i] = new
        if not _UNSERVED.get():  # an unserved (shadow) list's exposure was never given: the ledger counts served lists only
            self.ledger.apply(debt - start_debt, received - start_received, total - start_total, int((valid.sum(axis=1) > 0).sum()), cap, d_items)
        if order is not None:
            return order, None
        available = valid.copy()
        picked = chosen >= 0
        available[np.repeat(np.arange(n), width)[picked.ravel()], chosen[picked]] = False
        return complete_order(chosen, available), None

    def _greedy(
        self, rel: np.ndarray, g: np.ndarray, carried: np.ndarray, w: np.ndarray, w_full: float, places: int, e: np.ndarray | None
    ) -> np.ndarray:
        """One list's places (positions into its ``m`` valid candidates)."""
        cfg = self.config
        m = len(rel)
        n_g = len(self.codes)
        ideal = float(np.sort(rel)[::-1][:places] @ w[:places])
        need = (1.0 - cfg.ndcg_budget) * ideal - _TOL
        available = np.ones(m, dtype=bool)
        a_list = np.zeros(n_g + 1)
        shares = np.append(self.shares, 0.0)
        carried = np.append(carried, 0.0)
        dcg = 0.0
        w_cum = np.cumsum(w)
        picks = np.empty(places, dtype=np.int64)
        for i in range(places):
            idx = np.flatnonzero(available)
            r_av = rel[idx]
            # the best completion of places i+1..places-1 without each candidate
            slots = places - 1 - i
            order = np.argsort(-r_av, kind="stable")
            s = r_av[order]
            ws = w[i + 1 : i + 1 + slots]
            top = s[:slots] @ ws if slots else 0.0
            completion = np.full(len(idx), top)
            if slots:
                q = np.minimum(np.arange(len(idx)), slots)  # rank q < slots: the rest shift up one place
                prefix = np.concatenate([[0.0], np.cumsum(s[:slots] * ws)])
                shifted = s[1 : slots + 1] * ws[: len(s[1 : slots + 1])]
                suffix = np.concatenate([np.cumsum(shifted[::-1])[::-1], [0.0]])
                within = np.arange(len(idx)) < slots
                completion_sorted = np.where(within, prefix[q] + suffix[np.minimum(q, len(suffix) - 1)], top)
                completion[order] = completion_sorted
            feasible = dcg + r_av * w[i] + completion >= need
            debt_now = (carried + shares * w_cum[i] - a_list) / w_full
            gain = r_av + cfg.weight * debt_now[g[idx]]
            if e is not None:
                gain = gain + cfg.item_weight * e[idx]
            gain = np.where(feasible, gain, -np.inf)
            top_gain = gain.max()
            j = idx[int(np.argmax(gain >= top_gain - 1e-12))]
            picks[i] = j
            available[j] = False
            dcg += rel[j] * w[i]
            a_list[g[j]] += w[i]
        return picks

    def _greedy_heads(self, rel: np.ndarray, g: np.ndarray, carried: np.ndarray, w: np.ndarray, w_full: float, places: int) -> np.ndarray:
        """:meth:`_greedy` without item debts, on each group's best remaining candidate only (the same picks).

        Without item debts a group's candidates differ in gain by relevance only, so its best is its
        most relevant remaining one; and the budget admits a top set by relevance (placing a more
        relevant item here never lowers the best reachable DCG: swap it with the less relevant one).
        So each place weighs one head per group: plain Python over a handful of values, several
        times faster than the full scan on a served list of ~100 candidates (tested equal).
        """
        cfg = self.config
        n_g = len(self.codes)
        rel_l = rel.tolist()
        g_l = g.tolist()
        w_l = w.tolist()
        ranked = sorted(range(len(rel_l)), key=lambda j: -rel_l[j])  # stable: ties keep the input order
        ideal = sum(rel_l[j] * w_l[t] for t, j in enumerate(ranked[:places]))
        need = (1.0 - cfg.ndcg_budget) * ideal - _TOL
        shares = self.shares.tolist() + [0.0]
        base = carried.tolist() + [0.0]
        held = [0.0] * (n_g + 1)
        dcg = 0.0
        w_cum = 0.0
        picks = []
        for i in range(places):
            w_cum += w_l[i]
            slots = places - 1 - i
            s = [rel_l[j] for j in ranked[: slots + 1]]
            ws = w_l[i + 1 : i + 1 + slots]
            top = sum(a * b for a, b in zip(s, ws))
            heads: dict[int, int] = {}
            for q, j in enumerate(ranked):
                if g_l[j] not in heads:
                    heads[g_l[j]] = q
                    if len(heads) == n_g + 1:
                        break
            scored = []
            for grp, q in heads.items():
                j = ranked[q]
                if q < slots:  # the rest shift up one place past it
                    completion = sum(a * b for a, b in zip(s[:q], ws[:q])) + sum(a * b for a, b in zip(s[q + 1 :], ws[q:]))
                else:
                    completion = top
                if dcg + rel_l[j] * w_l[i] + completion >= need:
                    scored.append((rel_l[j] + cfg.weight * (base[grp] + shares[grp] * w_cum - held[grp]) / w_full, j, q))
            top_gain = max(gain for gain, _, _ in scored)
            _, best, best_q = min((j, j, q) for gain, j, q in scored if gain >= top_gain - 1e-12)  # ties: the input order
            ranked.pop(best_q)
            picks.append(best)
            dcg += rel_l[best] * w_l[i]
            held[g_l[best]] += w_l[i]
        return np.array(picks, dtype=np.int64)

    # -- the constraint ------------------------------------------------------------------------------
    def check(self, items: np.ndarray, cands: Candidates) -> np.ndarray:
        """Per list, whether every targeted group's share of all attention served (the ledger as it stood
        before the batch, plus the lists up to this one) is within ``tolerance`` of its target. Pure."""
        n = items.shape[0]
        if not self.codes:
            return np.ones(n, dtype=bool)
        state = getattr(self._before, "state", None)
        if state is None:
            debt, received, total, lists, _ = self.ledger.snapshot()
        else:
            _, received, total, _ = state
        received = received.copy()
        k = items.shape[1]
        w = _attention(max(k, 1))
        filled = items >= 0
        group = self._dense(cands, items)
        out = np.ones(n, dtype=bool)
        n_g = len(self.codes)
        for r in range(n):
            a = np.zeros(n_g + 1)
            np.add.at(a, group[r][filled[r]], w[: k][filled[r]])
            received += a[:n_g]
            total += float(w[filled[r]].sum())
            if total > 0:
                out[r] = bool((np.abs(received / total - self.shares) <= self.config.tolerance + _TOL).all())
        return out
