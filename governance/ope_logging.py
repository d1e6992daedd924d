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
    each served item's probability of being at its position, exact; for a
    Plackett-Luce pool whose exact programme is larger than :data:`RECORD_MAX_STATES`
    they are left null here (the serving path keeps its time bound) and
    ``recgov ope`` computes them exactly from the recorded pool.

The pool only ever holds items the governed path allowed (blocks, consent,
context and the re-ranking ran before), so no draw can show anything else.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from math import comb
from typing import Any

import numpy as np

from governance.explain import TAG_TEXT, Tag, TagKind
from recommender.ope.policies import SlatePolicy, position_marginals, sample_slate, slate_probabilities

__all__ = ["DETERMINISTIC", "RECORD_MAX_STATES", "LoggingHook", "decision_seed"]

DETERMINISTIC: dict[str, Any] = {"policy": {"kind": "deterministic"}, "slate_probability": 1.0}
"""What a list that was not drawn records (a non-personalized list under a pack with a logging policy)."""
RECORD_MAX_STATES = 2_000
"""The largest exact Plackett-Luce marginals programme run while serving (sets of drawn items)."""
_EXPLORATION_TAG = Tag(TagKind.exploration, TAG_TEXT[TagKind.exploration]).to_dict()


def decision_seed(decision_id: str) -> int:
    """The draw's seed: the top 52 bits of the decision's (random) UUID, recorded with the decision (a JSON
    number holds integers up to 2**53 exactly, and the canonical encoding refuses larger ones)."""
    return uuid.UUID(decision_id).int >> 76


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
        exploration slots beyond what the pool can fill are left out (deterministic when nothing is left)."""
        if self.kind == "plackett_luce":
            fixed = tuple(p for p in self.fixed if p < k)
            if len(fixed) >= k:
                return SlatePolicy()
            return SlatePolicy("plackett_luce", temperature=self.temperature, fixed=fixed)
        explore = tuple(p for p in sorted(self.explore) if p < k)[: max(0, m - k)]
        return SlatePolicy("epsilon_slots", epsilon=self.epsilon, explore=explore)

    def draw(
        self, items: list[str], scores: list[float | None], tags: list[list[dict[str, Any]]], k: int, decision_id: str
    ) -> tuple[list[int], dict[str, Any]]:
        """The pool indices of the ``k`` items to serve, and the record of the draw (see the module docstring).

        ``items``, ``scores``, ``tags``: the governed list (the pool), in governed order.
        """
        m = len(items)
        k = min(k, m)
        if k == 0:
            return [], dict(DETERMINISTIC)
        policy = self.policy_for(m, k)
        values = np.array([0.0 if s is None else s for s in scores], dtype=np.float64)
        seed = decision_seed(decision_id)
        if policy.deterministic:
            positions = np.arange(k)
            prob, prefix = 1.0, np.ones(k)
            marginals: list[float] | None = [1.0] * k
        else:
            positions = sample_slate(policy, values, k, np.random.Generator(np.random.PCG64(seed)))
            prob, prefix = slate_probabilities(policy, values, positions)
            marginals = None
            if policy.kind == "epsilon_slots" or _pl_states(m, k, policy) <= RECORD_MAX_STATES:
                marginals = position_marginals(policy, values, k)[np.arange(k), positions].tolist()
        record = {
            "policy": policy.to_dict(),
            "seed": seed,
            "pool": {"items": list(items), "scores": list(scores)},
            "positions": positions.tolist(),
            "slate_probability": prob,
            "prefix_probabilities": prefix.tolist(),
            "marginals": marginals,
        }
        return positions.tolist(), record


def _pl_states(m: int, k: int, policy: SlatePolicy) -> int:
    """The largest number of drawn sets the exact marginals programme visits for this pool and list."""
    free_items = m - len(policy.fixed)
    free_slots = k - len(policy.fixed)
    return max((comb(free_items, t) for t in range(max(free_slots, 1))), default=1)


def explored(tags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An item's tags with the exploration tag first (once): it is where it is because of the draw."""
    if any(t.get("kind") == TagKind.exploration.value for t in tags):
        return tags
    return [dict(_EXPLORATION_TAG), *tags]
