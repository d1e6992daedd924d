"""The base class every re-ranker shares, and the helpers of their greedy choices.

A re-ranker works per user on a model's candidate list
(:class:`~governance.rerank.candidates.Candidates`). Every re-ranker is a *step*: it returns a
new order of the candidate positions in which its first ``k`` places are its
choice and the rest follow in the order it received them, so the next step of a
:class:`~governance.rerank.pipeline.Pipeline` still sees every candidate.

Provenance ("moves"). A step chooses greedily, place by place. The *default*
choice at a place is the best remaining candidate in the order the step received
(the previous step's order, or the model's). When a step puts any other item
there, that item was *promoted* by the step: it gets the step's :class:`Reason`
code and the step's index. An item the step left in its relative order keeps
the reason and step it already had. So the final ``moves`` say, for every place,
which step put that item above items that were ranked before it, and why.

Relevance. Steps that trade relevance against something else (MMR, calibration,
popularity de-biasing, Plackett-Luce exploration) read it from the candidates'
working ``scores``, min-max scaled to ``[0, 1]`` within each list (so a trade-off
weight means the same for every model). Popularity de-biasing writes its
re-weighted scores back as the working scores; the other steps keep each item's
score. A step that weighs relevance placed *after* a step that only reorders
(FA*IR, exposure cap, epsilon exploration) may therefore undo that order: put
constraint steps last. ``Reranked.constraints_met`` is evaluated on the final
lists, so such a pipeline shows up there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from governance.rerank.candidates import (
    BAD_K,
    MISSING_INPUT,
    Candidates,
    CheckedCatalog,
    Reason,
    Reranked,
    check_k,
    n_provider_groups,
)
from governance.rerank.compose import promoted, run_steps, step_labels
from recommender.errors import ConfigError

__all__ = [
    "Reason",
    "Candidates",
    "CheckedCatalog",
    "Reranked",
    "RerankConfig",
    "Reranker",
    "BAD_K",
    "MISSING_INPUT",
    "best_of",
    "check_k",
    "complete_order",
    "first_true",
    "identity_order",
    "n_provider_groups",
    "promoted",
    "relevance",
]


class RerankConfig(BaseModel):
    """Base of every re-ranker's config: unknown keys rejected, field docstrings documented."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True, allow_inf_nan=False)  # finite numbers only


# -- helpers the steps share ------------------------------------------------------------
def relevance(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Scores min-max scaled to ``[0, 1]`` within each list (1 where a list's scores are all equal).

    Padding gets 0; callers mask it out of every choice.
    """
    s = scores.astype(np.float64)
    lo = np.where(valid, s, np.inf).min(axis=1, keepdims=True)
    hi = np.where(valid, s, -np.inf).max(axis=1, keepdims=True)
    span = hi - lo
    with np.errstate(invalid="ignore"):
        rel = np.where(span > 0, (s - lo) / np.where(span > 0, span, 1.0), 1.0)
    return np.where(valid, rel, 0.0)


def complete_order(chosen: np.ndarray, available: np.ndarray) -> np.ndarray:
    """A full order of candidate positions: the ``chosen`` first, then the rest in input order.

    ``chosen`` is ``(n, j)`` positions (``-1`` where nothing could be chosen, only
    at the end of a row); ``available`` is ``(n, c)`` True for valid positions not
    chosen. Returns ``(n, c)`` positions with ``-1`` padding at the end.
    """
    c = available.shape[1]
    j = chosen.shape[1]
    if j >= c:
        return chosen[:, :c]
    # a row that chose fewer than j places ran out of candidates, so its rest is all padding
    rest = np.argsort(~available, axis=1, kind="stable")[:, : c - j]
    rest = np.where(np.take_along_axis(available, rest, axis=1), rest, -1)
    return np.concatenate([chosen, rest], axis=1)


def identity_order(cands: Candidates) -> np.ndarray:
    """The input order unchanged (what a step with neutral parameters returns)."""
    positions = np.broadcast_to(np.arange(cands.width, dtype=np.int64), cands.items.shape)
    return np.where(cands.valid, positions, -1)


TIE_TOLERANCE = 1e-12
"""Gains this close to a list's best count as ties, won by the candidate ranked higher in the input."""


def best_of(gain: np.ndarray) -> np.ndarray:
    """Per row, the first index whose gain is within :data:`TIE_TOLERANCE` of the row's best.

    Rounding differences between equal objectives then never decide a place:
    the input order does.
    """
    top = gain.max(axis=1, keepdims=True)
    return np.argmax(gain >= top - TIE_TOLERANCE, axis=1)


def first_true(mask: np.ndarray) -> np.ndarray:
    """Per row, the index of the first True (``-1`` when none)."""
    idx = np.argmax(mask, axis=1)
    return np.where(mask[np.arange(mask.shape[0]), idx], idx, -1)


class Reranker(ABC):
    """Base class of the re-rankers (each one a pipeline step).

    Subclasses set ``name`` (stable snake_case, never reused), ``Config``,
    ``reason`` and ``needs`` (the Candidates fields they read), and implement
    :meth:`order`; a step that states a constraint implements :meth:`check`.
    Calling a re-ranker runs it as a one-step pipeline.
    """

    name: ClassVar[str]
    Config: ClassVar[type[RerankConfig]]
    reason: ClassVar[Reason]
    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: RerankConfig | None = None, **params: Any) -> None:
        if config is None:
            try:
                config = self.Config(**params)
            except ValidationError as err:
                raise ConfigError(f"invalid parameters for re-ranker {self.name!r}: {err}") from err
        elif params:
            raise ConfigError(f"give {type(self).__name__} either a config or keyword parameters, not both")
        elif not isinstance(config, self.Config):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.Config.__name__}. Got {type(config).__name__} instead."
            )
        self.config = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    @abstractmethod
    def order(self, cands: Candidates, k: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Re-rank ``cands``: ``(order, new_scores)``.

        ``order`` is ``(n, c)`` input positions covering every valid candidate,
        ``-1`` padding at the end: the step's ``k`` choices first; a greedy step
        leaves the others in input order, a re-scoring step sorts them too. With
        neutral parameters a step returns its input order unchanged.
        ``new_scores`` is ``(n, c)`` per *input* position, or ``None`` to keep them.
        """

    def check(self, items: np.ndarray, cands: Candidates) -> np.ndarray | None:
        """Per user, whether the final ``items`` meet this step's constraint (``None``: states none)."""
        return None

    def states_constraint(self) -> bool:
        """Whether this step states a constraint (implements :meth:`check`)."""
        return type(self).check is not Reranker.check

    def __call__(self, candidates: Candidates, k: int) -> Reranked:
        """Re-rank with this step alone (a one-step pipeline)."""
        return run_steps([self], step_labels([self]), candidates, check_k(k, "Pipeline"))
