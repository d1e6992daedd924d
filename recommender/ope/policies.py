"""Stochastic slate policies over a governed candidate pool, and their exact probabilities.

A *pool* is the governed path's candidates for one request, in governed order,
with their governed scores: every item in it already passed the blocks, the
consent and context filters and the re-ranking, so a policy that draws only from
the pool cannot show anything the governed path would not. A policy fills ``k``
positions from the pool:

* ``deterministic``: the pool's first ``k`` (what a governed list is without a
  logging policy). Every other slate has probability 0.
* ``plackett_luce``: positions not listed in ``fixed`` are filled top down by
  Plackett-Luce draws without replacement over ``exp(score / temperature)``
  among the pool items not fixed elsewhere; a fixed position keeps the governed
  item ``pool[j]`` (probability 1). Sampled exactly by the Gumbel-top-k trick.
* ``epsilon_slots``: the governed first ``k``, except that each position listed
  in ``explore`` is, with probability ``epsilon``, replaced by an item drawn
  uniformly (without repeats, top down) from the pool beyond the first ``k``.

What estimators need, exactly: the whole-slate probability and the top-k prefix
probabilities (products of the per-position draw probabilities, ``O(k * m)``),
the per item-and-position marginals (``epsilon_slots`` and ``deterministic`` in
closed form; Plackett-Luce by an exact dynamic programme over the *sets* of items
drawn so far: the next draw depends only on that set, so ``P(item i at draw t) =
sum_S P(S drawn first) e_i / (E - e(S))`` over sets ``S`` of size ``t - 1``; it
visits ``C(m, t - 1)`` sets, and refuses (:class:`ExactBoundError`) past
``max_states``), and the pairwise (item, position) probabilities the
pseudo-inverse estimator needs, by enumerating every slate with positive
probability (refused past ``max_slates``). Nothing is estimated by sampling.

Cells are numbered ``position * m + pool_index`` (``D = k * m`` cells).
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Literal

import numpy as np

from recommender.errors import ConfigError, DataError
from recommender.ope._common import plain

__all__ = [
    "DEFAULT_MAX_SLATES",
    "DEFAULT_MAX_STATES",
    "ExactBoundError",
    "SlatePolicy",
    "enumerate_slates",
    "first_position",
    "pairwise_probabilities",
    "position_marginals",
    "sample_slate",
    "slate_probabilities",
    "support_mask",
]

DEFAULT_MAX_STATES = 200_000
"""Sets of drawn items the exact Plackett-Luce marginals may visit per draw."""
DEFAULT_MAX_SLATES = 50_000
"""Slates the exact pairwise probabilities may enumerate."""
MAX_POOL = 62
"""Items a pool may hold (the marginals' programme keeps a set of drawn items as the bits of an int64)."""


class ExactBoundError(ConfigError):
    """An exact probability would take more work than its declared bound (no approximation is offered instead)."""


@dataclass(frozen=True)
class SlatePolicy:
    """One slate policy over a pool (see the module docstring)."""

    kind: Literal["deterministic", "plackett_luce", "epsilon_slots"] = "deterministic"
    temperature: float = 1.0
    """Plackett-Luce: scores are divided by it (small: close to the governed order; large: close to uniform)."""
    fixed: tuple[int, ...] = ()
    """Plackett-Luce: 0-based positions that keep the governed item."""
    epsilon: float = 0.0
    """epsilon_slots: the probability that an exploration position shows an exploration item."""
    explore: tuple[int, ...] = ()
    """epsilon_slots: 0-based positions that may explore."""

    def __post_init__(self) -> None:
        if self.kind not in ("deterministic", "plackett_luce", "epsilon_slots"):
            raise ConfigError(f"unknown slate policy {self.kind!r}; expected deterministic, plackett_luce or epsilon_slots")
        if self.kind == "plackett_luce" and not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"temperature must be a number > 0, got {plain(self.temperature)!r}")
        if self.kind == "epsilon_slots" and not 0 <= self.epsilon <= 1:
            raise ConfigError(f"epsilon must be in [0, 1], got {plain(self.epsilon)!r}")
        for name in ("fixed", "explore"):
            positions = getattr(self, name)
            if any(p < 0 for p in positions) or len(set(positions)) != len(positions):
                raise ConfigError(f"{name} must be distinct 0-based positions, got {list(positions)}")

    @property
    def deterministic(self) -> bool:
        """Whether the policy always shows the same slate for the same pool."""
        return (
            self.kind == "deterministic"
            or (self.kind == "epsilon_slots" and (self.epsilon == 0 or not self.explore))
        )

    def to_dict(self) -> dict[str, object]:
        """The policy as the decision record stores it."""
        if self.deterministic:
            return {"kind": "deterministic"}
        if self.kind == "plackett_luce":
            return {"kind": "plackett_luce", "temperature": self.temperature, "fixed": list(self.fixed)}
        return {"kind": "epsilon_slots", "epsilon": self.epsilon, "explore": list(self.explore)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> SlatePolicy:
        """The policy a decision record stored (:meth:`to_dict`)."""
        kind = data.get("kind")
        if kind == "plackett_luce":
            return cls("plackett_luce", temperature=float(data["temperature"]), fixed=tuple(int(p) for p in data.get("fixed", ())))  # type: ignore[arg-type, union-attr]
        if kind == "epsilon_slots":
            return cls("epsilon_slots", epsilon=float(data["epsilon"]), explore=tuple(int(p) for p in data.get("explore", ())))  # type: ignore[arg-type, union-attr]
        if kind == "deterministic":
            return cls()
        raise DataError(f"unknown slate policy {kind!r} in a record; expected deterministic, plackett_luce or epsilon_slots")


def _check(policy: SlatePolicy, m: int, k: int) -> None:
    if k < 1 or k > m:
        raise DataError(f"a slate of {k} needs 1 to {m} positions from a pool of {m}")
    if m > MAX_POOL and policy.kind == "plackett_luce":
        raise ExactBoundError(f"a Plackett-Luce pool holds at most {MAX_POOL} items for exact marginals, got {m}")
    if policy.kind == "epsilon_slots" and any(p >= k for p in policy.explore):
        raise DataError(f"explore positions {list(policy.explore)} must be below the slate length {k}")
    if policy.kind == "epsilon_slots" and not policy.deterministic and m - k < len(policy.explore):
        raise DataError(f"epsilon_slots needs at least {len(policy.explore)} pool items beyond the first {k}, the pool has {m - k}")


def _weights(scores: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.asarray(scores, dtype=np.float64) / temperature
    return np.exp(logits - logits.max())


def _free(policy: SlatePolicy, m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Plackett-Luce: the free positions (in order) and the free pool items."""
    if not policy.fixed:
        return np.arange(k), np.arange(m)
    fixed = np.array(sorted(p for p in policy.fixed if p < k), dtype=np.int64)
    positions = np.setdiff1d(np.arange(k), fixed)
    items = np.setdiff1d(np.arange(m), fixed)
    return positions, items


def sample_slate(policy: SlatePolicy, scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one slate: ``k`` pool indices in position order."""
    m = len(scores)
    _check(policy, m, k)
    slate = np.arange(k)
    if policy.deterministic:
        return slate
    if policy.kind == "plackett_luce":
        positions, items = _free(policy, m, k)
        logits = np.asarray(scores, dtype=np.float64)[items] / policy.temperature
        # Gumbel-top-k: the order of logits + Gumbel noise is an exact Plackett-Luce draw (Yellott 1977).
        order = np.argsort(-(logits + rng.gumbel(size=len(items))), kind="stable")[: len(positions)]
        slate[positions] = items[order]
        return slate
    pool = np.arange(k, m)
    explore = sorted(policy.explore)
    replace = rng.random(len(explore)) < policy.epsilon
    picks = rng.permutation(pool)[: int(replace.sum())]
    slate[np.array(explore, dtype=np.int64)[replace]] = picks
    return slate


def slate_probabilities(policy: SlatePolicy, scores: np.ndarray, slate: np.ndarray) -> tuple[float, np.ndarray]:
    """The probability of ``slate`` (pool indices in position order) and its top-k prefix probabilities.

    ``prefix[j]`` is the probability that positions ``0..j`` show exactly ``slate[0..j]``;
    ``prefix[-1]`` is the slate's probability. 0 for a slate the policy cannot show.
    """
    m = len(scores)
    slate = np.asarray(slate, dtype=np.int64)
    k = len(slate)
    _check(policy, m, k)
    if len(set(slate.tolist())) != k or slate.min() < 0 or slate.max() >= m:
        return _probabilities_of_any(policy, scores, slate)
    step = np.ones(k)
    if policy.deterministic:
        step = (slate == np.arange(k)).astype(np.float64)
    elif policy.kind == "plackett_luce":
        positions, items = _free(policy, m, k)
        if policy.fixed:
            fixed = np.setdiff1d(np.arange(k), positions)
            if (slate[fixed] != fixed).any() or np.isin(slate[positions], fixed).any():
                return _probabilities_of_any(policy, scores, slate)
        e = np.zeros(m)
        e[items] = _weights(np.asarray(scores)[items], policy.temperature)
        chosen = e[slate[positions]]
        undrawn = np.ones(m, dtype=bool)
        undrawn[slate] = False
        # the mass left before each draw: the never-drawn items' plus the chosen ones from that draw on
        # (sums of positive terms only, so a small remaining mass keeps its relative precision)
        step[positions] = chosen / (e[undrawn].sum() + np.cumsum(chosen[::-1])[::-1])
    else:
        explore = np.array(sorted(policy.explore), dtype=np.int64)
        others = np.setdiff1d(np.arange(k), explore)
        shown = slate[explore]
        kept = shown == explore
        if (slate[others] != others).any() or not np.all(kept | (shown >= k)):
            return _probabilities_of_any(policy, scores, slate)
        replaced_before = np.concatenate(([0], np.cumsum(~kept)[:-1]))
        r = m - k
        step[explore] = np.where(kept, 1.0 - policy.epsilon, policy.epsilon / (r - replaced_before))
    prefix = np.cumprod(step)
    return float(prefix[-1]), prefix


def _probabilities_of_any(policy: SlatePolicy, scores: np.ndarray, slate: np.ndarray) -> tuple[float, np.ndarray]:
    """:func:`slate_probabilities` of a slate the policy cannot show whole: position by position, so that the
    prefixes before the first impossible position keep their probability (cascade estimators need them)."""
    m, k = len(scores), len(slate)
    steps = np.zeros(k)
    used: set[int] = set()
    fixed, explore = set(policy.fixed), set(policy.explore)
    e = np.zeros(m)
    if policy.kind == "plackett_luce" and not policy.deterministic:
        _, items = _free(policy, m, k)
        e[items] = _weights(np.asarray(scores)[items], policy.temperature)
    remaining, replaced = float(e.sum()), 0
    for j, a in enumerate(int(x) for x in slate):
        if a < 0 or a >= m or a in used:
            break
        if policy.deterministic:
            step = 1.0 if a == j else 0.0
        elif policy.kind == "plackett_luce":
            if j in fixed:
                step = 1.0 if a == j else 0.0
            else:
                step = 0.0 if e[a] == 0 else e[a] / remaining
                remaining -= e[a]
        elif j not in explore:
            step = 1.0 if a == j else 0.0
        elif a == j:
            step = 1.0 - policy.epsilon
        elif a >= k:
            step = policy.epsilon / (m - k - replaced)
            replaced += 1
        else:
            step = 0.0
        if step == 0.0:
            break
        steps[j] = step
        used.add(a)
    prefix = np.cumprod(steps)
    return float(prefix[-1]), prefix


def position_marginals(policy: SlatePolicy, scores: np.ndarray, k: int, *, max_states: int = DEFAULT_MAX_STATES) -> np.ndarray:
    """``(k, m)``: the probability that pool item ``i`` is shown at position ``j``, exactly (see the module docstring)."""
    m = len(scores)
    _check(policy, m, k)
    out = np.zeros((k, m))
    if policy.deterministic:
        out[np.arange(k), np.arange(k)] = 1.0
        return out
    if policy.kind == "epsilon_slots":
        out[np.arange(k), np.arange(k)] = 1.0
        explore = np.array(sorted(policy.explore), dtype=np.int64)
        out[explore, explore] = 1.0 - policy.epsilon
        out[explore[:, None], np.arange(k, m)[None, :]] = policy.epsilon / (m - k)
        return out
    positions, items = _free(policy, m, k)
    fixed = np.setdiff1d(np.arange(k), positions)
    out[fixed, fixed] = 1.0
    out[positions[:, None], items[None, :]] = _pl_draw_marginals(_weights(np.asarray(scores)[items], policy.temperature), len(positions), max_states)
    return out


QUADRATURE_FROM_STATES = 5_000
"""Above this many drawn sets the Plackett-Luce marginals come from :func:`_pl_race_marginals` (the programme over
drawn sets grows as ``sum_t C(m, t)``: 431,910 sets for a pool of 20 and 10 draws, seconds a list)."""
RACE_STEP = 0.1
"""Step of the trapezoid rule over log-time in :func:`_pl_race_marginals` (error below 1e-13 against the programme
over drawn sets in the tests; the rule converges exponentially in the step for this analytic integrand)."""


def _pl_race_marginals(e: np.ndarray, draws: int, h: float = RACE_STEP) -> np.ndarray:
    """``(draws, m)``: P(item i is the t-th Plackett-Luce draw) by the exponential race, in ``O(Q m draws^2)``.

    Plackett-Luce with weights ``e`` is the order of independent arrival times ``T_l ~ Exp(e_l)``
    (Luce's choice axiom as a race), so item ``i`` is the ``t``-th draw exactly when ``t`` of the
    others arrive before it: ``P = int_0^inf e_i exp(-e_i s) P(exactly t others before s) ds``. The
    count of the others is a Poisson-binomial whose distribution a prefix and a suffix programme
    give for every left-out item (``O(m draws^2)`` per node); the integral is the trapezoid rule over
    ``x = log s`` (an entire integrand decaying at both ends, where the rule converges exponentially
    fast: a deterministic quadrature to rounding error, not a sample).
    """
    e = np.asarray(e, dtype=np.float64)
    m = len(e)
    x = np.arange(np.log(1e-18 / e.max()), np.log(60.0 / e.min()) + h, h)
    t = np.exp(x)
    arrived = -np.expm1(-np.outer(t, e))  # (Q, m): P(T_l < s)
    waiting = 1.0 - arrived
    q, k = len(t), draws
    pre = np.zeros((m + 1, q, k))
    pre[0, :, 0] = 1.0
    for l in range(m):  # counts among items < l (truncated at draws - 1)
        pre[l + 1] = pre[l] * waiting[:, l, None]
        pre[l + 1, :, 1:] += pre[l, :, :-1] * arrived[:, l, None]
    suf = np.zeros((m + 1, q, k))
    suf[m, :, 0] = 1.0
    for l in range(m - 1, -1, -1):  # counts among items > l
        suf[l] = suf[l + 1] * waiting[:, l, None]
        suf[l, :, 1:] += suf[l + 1, :, :-1] * arrived[:, l, None]
    density = e[None, :] * np.exp(-np.outer(t, e)) * (t * h)[:, None]  # (Q, m): e_i exp(-e_i s) ds
    out = np.zeros((k, m))
    for i in range(m):
        a, b = pre[i], suf[i + 1]
        others = np.stack([(a[:, : c + 1] * b[:, c::-1]).sum(axis=1) for c in range(k)], axis=1)  # (Q, k)
        out[:, i] = others.T @ density[:, i]
    return out


def _pl_draw_marginals(e: np.ndarray, draws: int, max_states: int) -> np.ndarray:
    """``(draws, m)``: P(item i is the t-th Plackett-Luce draw), by the exact programme over drawn sets, or by the
    exponential race (:func:`_pl_race_marginals`) when the programme would visit more than
    :data:`QUADRATURE_FROM_STATES` sets."""
    m = len(e)
    if sum(math.comb(m, t) for t in range(draws)) > QUADRATURE_FROM_STATES:
        return _pl_race_marginals(e, draws)
    bits = np.left_shift(np.int64(1), np.arange(m, dtype=np.int64))
    total = float(e.sum())
    states = np.zeros(1, dtype=np.int64)
    probs = np.ones(1)
    mass = np.zeros(1)
    out = np.zeros((draws, m))
    for t in range(draws):
        inside = (states[:, None] & bits[None, :]) != 0
        p_next = np.where(inside, 0.0, probs[:, None] * e[None, :] / (total - mass)[:, None])
        out[t] = p_next.sum(axis=0)
        if t + 1 == draws:
            break
        grow = ~inside
        nxt = (states[:, None] | bits[None, :])[grow]
        uniq, inverse = np.unique(nxt, return_inverse=True)
        if len(uniq) > max_states:
            raise ExactBoundError(
                f"exact Plackett-Luce marginals would visit {len(uniq)} sets of drawn items at draw {t + 2} "
                f"(bound {max_states}); declare a smaller pool or fewer free positions"
            )
        probs = np.bincount(inverse, weights=p_next[grow], minlength=len(uniq))
        states = uniq
        mass = ((states[:, None] & bits[None, :]) != 0) @ e
    return out


def enumerate_slates(policy: SlatePolicy, scores: np.ndarray, k: int, *, max_slates: int = DEFAULT_MAX_SLATES) -> tuple[np.ndarray, np.ndarray]:
    """Every slate with positive probability (``(N, k)`` pool indices) and its probability, exactly."""
    m = len(scores)
    _check(policy, m, k)
    if policy.deterministic:
        return np.arange(k)[None, :], np.ones(1)
    slates = np.zeros((1, 0), dtype=np.int64)
    probs = np.ones(1)
    if policy.kind == "plackett_luce":
        positions, items = _free(policy, m, k)
        e = np.zeros(m)
        e[items] = _weights(np.asarray(scores)[items], policy.temperature)
    explore = set(policy.explore)
    for j in range(k):
        n = len(slates)
        if policy.kind == "plackett_luce" and j in positions:
            used = np.zeros((n, m), dtype=bool)
            used[np.repeat(np.arange(n), j), slates.ravel()] = True
            p = np.where(used, 0.0, e[None, :])
            p = p / p.sum(axis=1, keepdims=True)
            rows, cols = np.nonzero(p > 0)
            step = p[rows, cols]
        elif policy.kind == "epsilon_slots" and j in explore:
            used = np.zeros((n, m), dtype=bool)
            used[np.repeat(np.arange(n), j), slates.ravel()] = True
            free = ~used[:, k:]
            n_free = free.sum(axis=1)
            p = np.zeros((n, m))
            p[:, j] = 1.0 - policy.epsilon
            p[:, k:] = np.where(free, policy.epsilon / np.maximum(n_free, 1)[:, None], 0.0)
            rows, cols = np.nonzero(p > 0)
            step = p[rows, cols]
        else:
            rows, cols, step = np.arange(n), np.full(n, j), np.ones(n)
        if len(rows) > max_slates:
            raise ExactBoundError(f"exact pairwise probabilities would enumerate more than {max_slates} slates; declare a smaller pool or fewer free positions")
        slates = np.concatenate((slates[rows], cols[:, None]), axis=1)
        probs = probs[rows] * step
    return slates, probs


def pairwise_probabilities(policy: SlatePolicy, scores: np.ndarray, k: int, *, max_slates: int = DEFAULT_MAX_SLATES) -> np.ndarray:
    """``Gamma = E[1_s 1_s']`` over the ``k * m`` (position, item) cells (``position * m + item``), exactly."""
    m = len(scores)
    slates, probs = enumerate_slates(policy, scores, k, max_slates=max_slates)
    cells = slates + (np.arange(k) * m)[None, :]
    gamma = np.zeros((k * m, k * m))
    np.add.at(gamma, (np.repeat(cells, k, axis=1).ravel(), np.tile(cells, (1, k)).ravel()), np.repeat(probs, k * k))
    return gamma


def support_mask(policy: SlatePolicy, m: int, k: int) -> np.ndarray:
    """``(k, m)`` bool: the (position, item) cells the policy can show, from its structure alone (no probabilities).

    A target that puts probability on a cell outside it is outside the logger's support; for these
    policies a slate is possible exactly when all its cells are (and its items are distinct), so a
    target with positive mass on some impossible slate always has positive mass on some impossible cell.
    """
    _check(policy, m, k)
    mask = np.zeros((k, m), dtype=bool)
    if policy.deterministic:
        mask[np.arange(k), np.arange(k)] = True
    elif policy.kind == "plackett_luce":
        positions, items = _free(policy, m, k)
        fixed = np.setdiff1d(np.arange(k), positions)
        mask[fixed, fixed] = True
        mask[positions[:, None], items[None, :]] = True
    else:
        mask[np.arange(k), np.arange(k)] = True
        explore = np.array(sorted(policy.explore), dtype=np.int64)
        mask[explore[:, None], np.arange(k, m)[None, :]] = True
    return mask


def first_position(policy: SlatePolicy, scores: np.ndarray, k: int) -> np.ndarray:
    """``(m,)``: the probability of each pool item at the first position (the single-action view), exactly and cheaply."""
    m = len(scores)
    _check(policy, m, k)
    if policy.kind == "plackett_luce" and not policy.deterministic and 0 not in policy.fixed:
        _, items = _free(policy, m, k)
        out = np.zeros(m)
        e = _weights(np.asarray(scores)[items], policy.temperature)
        out[items] = e / e.sum()
        return out
    if policy.kind == "epsilon_slots" and not policy.deterministic and 0 in policy.explore:
        out = np.zeros(m)
        out[0] = 1.0 - policy.epsilon
        out[k:] = policy.epsilon / (m - k)
        return out
    out = np.zeros(m)
    out[0] = 1.0
    return out
