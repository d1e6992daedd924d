"""The pack's logging policy on the serving path: a seeded draw from the governed list, with its exact propensities.

:class:`~governance.serving.ServingEngine` asks the model and the re-ranking for a
governed list ``pool`` long (:meth:`LoggingHook.length`); this module draws the
served ``k`` from it with the pack's policy (:mod:`recommender.ope.policies`) and
returns what the decision record keeps under ``slate["logging"]``:

``policy``
    the policy as drawn (``{"kind": "deterministic"}`` when nothing was random);
``seed``
    the draw's seed: ``numpy.random.Generator(PCG64(seed))`` with
    :func:`recommender.ope.sample_slate` on the recorded pool gives the same slate;
``pool``
    the governed candidates in governed order with their recorded scores;
``positions``
    the pool index of each served item;
``slate_probability`` and ``prefix_probabilities``
    exact, from the recorded (rounded) scores;
``marginals``
    each served item's probability of being at its position, exact, for
    ``epsilon_slots`` (closed form). For Plackett-Luce they are null here and
    computed off the serving path, exactly, from what the record holds (pool
    scores, policy, positions determine them; ``recgov ope`` and ``POST /v1/ope``
    do it, :func:`recommender.ope.position_marginals`). The exact programme over
    the sets of items drawn so far visits ``C(n, t)`` sets at draw ``t`` for ``n``
    free pool items (pool 10, 10 slots: 1,023 sets, about 5 ms a list; pool 20:
    431,910 sets, 12 s a list, under load); past 5,000 sets they come from the
    exponential race, a deterministic quadrature of leave-one-out Poisson-binomial
    counts in ``O(Q n f^2)`` for ``f`` free slots and ``Q`` nodes (pool 15 or 20,
    10 slots: about 70 ms a list under load; equal to the programme to 1e-12 in
    the tests). Either is far over the serving path's budget (+0.1 ms for the
    whole logging policy), so it is never paid there; sampling would be cheap but
    not exact, and the estimators need exact propensities.

What the serving path pays: the draw itself (Gumbel-top-k and the per-position
probabilities, ``O(n log n)`` in plain Python, a few hundredths of a
millisecond), the re-ranking of a governed list ``pool`` long instead of ``k``,
and the explanation tags of the served items only (the governed list is explained
when its tags are read, for the items read: :class:`governance.serving.PoolTags`).
The draw's generator is this thread's, put in the state ``PCG64(seed)`` starts in
(:func:`seeded`), rather than a new one per request.

The pool only ever holds items the governed path allowed (blocks, consent,
context and the re-ranking ran before), so no draw can show anything else.
"""

from __future__ import annotations

import math
import threading
import uuid
from itertools import accumulate
from operator import mul
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from governance.explain import TAG_TEXT, Tag, TagKind
from recommender.ope.policies import SlatePolicy

__all__ = ["DETERMINISTIC", "LoggingHook", "decision_seed", "explored"]

DETERMINISTIC: dict[str, Any] = {"policy": {"kind": "deterministic"}, "slate_probability": 1.0}
"""What a list that was not drawn records (a non-personalized list under a pack with a logging policy)."""
_EXPLORATION_TAG = Tag(TagKind.exploration, TAG_TEXT[TagKind.exploration]).to_dict()
_EXPLORATION = TagKind.exploration.value


def decision_seed(decision_id: str | uuid.UUID) -> int:
    """The draw's seed: the top 52 bits of the decision's (random) UUID, recorded with the decision (a JSON
    number holds integers up to 2**53 exactly, and the canonical encoding refuses larger ones). ``decision_id``:
    its text, or the UUID itself (the serving path holds it, and need not parse its text again)."""
    return (decision_id if isinstance(decision_id, uuid.UUID) else uuid.UUID(decision_id)).int >> 76


# numpy's SeedSequence (the entropy pool's last mixing stage) and PCG64's seeding, as numpy defines them.
_M32, _M128 = 0xFFFFFFFF, (1 << 128) - 1
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645
_SEEDED = threading.local()


def _hash_constants() -> tuple[tuple[int, int, int], ...]:
    """``generate_state``'s hash constants for its 8 words: word ``i`` is pool word ``i % 4`` xor'ed with the
    running constant, then multiplied by the next one (the constants do not depend on the seed)."""
    h, out = _INIT_B, []
    for i in range(8):
        nxt = (h * _MULT_B) & _M32
        out.append((i & 3, h, nxt))
        h = nxt
    return tuple(out)


_GENERATE = _hash_constants()


def _pcg64_state(seed: int) -> dict[str, Any]:
    """The state ``numpy.random.PCG64(seed)`` starts in: the entropy pool from ``SeedSequence(seed)`` (numpy's
    own mixing), its four 64-bit words drawn as ``SeedSequence.generate_state(4, uint64)`` draws them, and PCG64's
    ``srandom`` on them, without building the sequence's arrays and the bit generator per draw."""
    pool = np.random.SeedSequence(seed).pool.tolist()
    words = [((pool[i] ^ h) * nxt) & _M32 for i, h, nxt in _GENERATE]
    words = [v ^ (v >> 16) for v in words]
    initstate = ((words[0] | words[1] << 32) << 64) | words[2] | words[3] << 32
    initseq = ((words[4] | words[5] << 32) << 64) | words[6] | words[7] << 32
    inc = ((initseq << 1) | 1) & _M128
    state = (((inc + initstate) & _M128) * _PCG_MULT + inc) & _M128
    return {"bit_generator": "PCG64", "state": {"state": state, "inc": inc}, "has_uint32": 0, "uinteger": 0}


def seeded(seed: int) -> np.random.Generator:
    """``numpy.random.Generator(numpy.random.PCG64(seed))``, in the state that constructor gives, without building
    one per request: this thread's generator is put in that state. Checked against numpy's own constructor the
    first time in each thread (a numpy whose seeding differs gets its own constructor instead), so a recorded
    seed always replays the same draw."""
    generator = getattr(_SEEDED, "generator", None)
    if generator is None:
        bits = np.random.PCG64(0)
        agrees = all(_pcg64_state(s)["state"] == np.random.PCG64(s).state["state"] for s in (0, 1, 2**52 - 1, 0x9E3779B97F4A7))
        generator = _SEEDED.generator = np.random.Generator(bits) if agrees else False
    if generator is False:
        return np.random.Generator(np.random.PCG64(seed))
    generator.bit_generator.state = _pcg64_state(seed)
    return generator


@dataclass(frozen=True)
class LoggingHook:
    """A pack's ``logging_policy`` section, ready for the serving path."""

    kind: str
    pool: int
    temperature: float = 1.0
    epsilon: float = 0.0
    explore: tuple[int, ...] = ()
    """0-based."""
    fixed: tuple[int, ...] = ()
    """0-based."""
    _policies: dict[tuple[int, int], SlatePolicy] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)
    """The policies made so far, by pool and list length (:meth:`policy_for`)."""

    @classmethod
    def from_section(cls, section: Any) -> LoggingHook | None:
        """The hook of a pack's ``logging_policy`` (None: the pack declares none)."""
        if section is None:
            return None
        return cls(
            kind=section.kind, pool=section.pool, temperature=section.temperature, epsilon=section.epsilon,
            explore=tuple(s - 1 for s in section.explore_slots), fixed=tuple(s - 1 for s in section.fixed_slots),
        )  # fmt: skip

    def length(self, k: int) -> int:
        """How long the governed list must be for a list of ``k``."""
        return max(k, self.pool)

    def policy_for(self, m: int, k: int) -> SlatePolicy:
        """The policy for a pool of ``m`` and a list of ``k``: positions past the list are dropped, and
        exploration slots beyond what the pool can fill are left out (deterministic when nothing is left).
        Made once per hook, pool and list length (a policy is immutable; its checks need not run per request)."""
        policy = self._policies.get((m, k))
        if policy is None:
            policy = self._policies[(m, k)] = _policy_for(self, m, k)
        return policy

    def _make_policy(self, m: int, k: int) -> SlatePolicy:
        if self.kind == "plackett_luce":
            fixed = tuple(p for p in self.fixed if p < k)
            if len(fixed) >= k:
                return SlatePolicy()
            return SlatePolicy("plackett_luce", temperature=self.temperature, fixed=fixed)
        explore = tuple(p for p in sorted(self.explore) if p < k)[: max(0, m - k)]
        return SlatePolicy("epsilon_slots", epsilon=self.epsilon, explore=explore)

    def draw(
        self,
        items: list[str],
        scores: list[float | None],
        tags: list[list[dict[str, Any]]],
        k: int,
        decision_id: str,
        *,
        seed: int | None = None,
    ) -> tuple[list[int], dict[str, Any]]:
        """The pool indices of the ``k`` items to serve, and the record of the draw (see the module docstring).

        ``items``, ``scores``, ``tags``: the governed list (the pool), in governed order. ``seed``: the
        decision's :func:`decision_seed` when the caller has it already (the serving path makes it from the
        UUID it holds, rather than parsing ``decision_id`` again); None: from ``decision_id``.
        """
        m = len(items)
        k = min(k, m)
        if k == 0:
            return [], dict(DETERMINISTIC)
        policy = self.policy_for(m, k)
        if seed is None:
            seed = decision_seed(decision_id)
        # Plain Python throughout: for a pool of a few dozen items numpy's per-call overhead costs more than the
        # arithmetic (the products below are the same left-to-right products numpy's cumprod makes).
        if policy.deterministic:
            positions: list[int] = list(range(k))
            prefix = [1.0] * k
            marginals: list[float] | None = [1.0] * k
        elif policy.kind == "plackett_luce":
            values = scores if None not in scores else [0.0 if s is None else s for s in scores]
            positions, steps = _plackett_luce(values, k, policy, seeded(seed))
            prefix, marginals = list(accumulate(steps, mul)), None
        else:
            positions, steps, marginals = _epsilon_slots(m, k, policy, seeded(seed))
            prefix = list(accumulate(steps, mul))
        prob = float(prefix[-1])
        record = {
            "policy": policy.to_dict(),  # a new dict per record
            "seed": seed,
            "pool": {"items": list(items), "scores": list(scores)},
            "positions": positions,
            "slate_probability": prob,
            "prefix_probabilities": prefix,
            "marginals": marginals,
        }
        return list(positions), record


@lru_cache(maxsize=256)
def _policy_for(hook: LoggingHook, m: int, k: int) -> SlatePolicy:
    return hook._make_policy(m, k)


def _epsilon_slots(m: int, k: int, policy: SlatePolicy, rng: np.random.Generator) -> tuple[list[int], list[float], list[float]]:
    """:func:`~recommender.ope.sample_slate` for epsilon slots (the same generator calls, so the same list), with
    each position's draw probability and marginal in plain Python (closed forms, see :mod:`recommender.ope.policies`)."""
    explore = sorted(policy.explore)
    replace = (rng.random(len(explore)) < policy.epsilon).tolist()
    picks = rng.permutation(np.arange(k, m))[: sum(replace)].tolist()
    slate, steps, marginals = list(range(k)), [1.0] * k, [1.0] * k
    beyond, replaced = m - k, 0
    for j, swap in zip(explore, replace):
        if swap:
            slate[j] = picks[replaced]
            steps[j] = policy.epsilon / (beyond - replaced)
            marginals[j] = policy.epsilon / beyond
            replaced += 1
        else:
            steps[j] = marginals[j] = 1.0 - policy.epsilon
    return slate, steps, marginals


def _plackett_luce(values: list[float], k: int, policy: SlatePolicy, rng: np.random.Generator) -> tuple[list[int], list[float]]:
    """:func:`~recommender.ope.sample_slate` and the per-position draw probabilities of
    :func:`~recommender.ope.slate_probabilities` for Plackett-Luce, in plain Python: for a pool of a few
    dozen items a handful of float operations cost less than numpy's per-call overhead. The same Gumbel
    draws in the same order give the same slate (the tests hold the two to it)."""
    if not any(p < k for p in policy.fixed):  # the common case: every position drawn
        return _plackett_luce_free(values, k, policy.temperature, rng)
    fixed = {p for p in policy.fixed if p < k}
    items = [i for i in range(len(values)) if i not in fixed]
    slots = [j for j in range(k) if j not in fixed]
    logits = [values[i] / policy.temperature for i in items]
    noise = rng.gumbel(size=len(items)).tolist()
    order = sorted(range(len(items)), key=lambda t: -(logits[t] + noise[t]))[: len(slots)]
    top = max(logits)
    weights = [math.exp(x - top) for x in logits]
    drawn = set(order)
    left = math.fsum(w for t, w in enumerate(weights) if t not in drawn)
    slate, steps = list(range(k)), [1.0] * k
    for j, t in zip(reversed(slots), reversed(order)):  # the mass left before each draw, from the last draw up
        left += weights[t]
        steps[j] = weights[t] / left
        slate[j] = items[t]
    return slate, steps


def _plackett_luce_free(values: list[float], k: int, temperature: float, rng: np.random.Generator) -> tuple[list[int], list[float]]:
    """:func:`_plackett_luce` without fixed positions: the same Gumbel draws, order and probabilities, with the
    index bookkeeping of fixed positions left out (the sort key is the same sum, so ties fall the same way)."""
    # v / 1.0 is v exactly: at temperature 1 the scores are the logits
    logits = values if temperature == 1.0 else [v / temperature for v in values]
    noise = rng.gumbel(size=len(logits)).tolist()
    keyed = [-(a + b) for a, b in zip(logits, noise)]
    order = sorted(range(len(keyed)), key=keyed.__getitem__)[:k]
    top = max(logits)
    exp = math.exp
    weights = [exp(x - top) for x in logits]
    undrawn = weights.copy()
    for i in order:
        undrawn[i] = 0.0  # fsum of the undrawn weights: exact zeros change no bit of the sum
    left = math.fsum(undrawn)
    steps = [1.0] * k
    for j in range(len(order) - 1, -1, -1):  # the mass left before each draw, from the last draw up
        w = weights[order[j]]
        left += w
        steps[j] = w / left
    if len(order) < k:
        return order + list(range(len(order), k)), steps
    return order, steps


def explored(tags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An item's tags with the exploration tag first (once): it is where it is because of the draw."""
    for t in tags:
        if t.get("kind") == _EXPLORATION:
            return tags
    return [dict(_EXPLORATION_TAG), *tags]
