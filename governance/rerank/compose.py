"""Running re-ranking steps in order: each step on the previous step's output.

Each step returns a full order of its input (its ``k`` choices first, then the
other candidates: in the order it received them, or re-sorted by a re-scoring
step), so a later step still sees every candidate; the final lists are cut to
``k``. Reasons of earlier moves are kept unless a later step promotes the item
again (see :mod:`governance.rerank.base`). Users are processed in chunks to
bound memory; every step is vectorized over the users of a chunk and loops only
over list places.

This module knows steps only by what they do (``order``, ``check``, ``needs``,
``reason``, ``states_constraint``), not by their class, so that the base class
can run itself as a one-step pipeline without an import cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from governance.rerank.candidates import MISSING_INPUT, Candidates, Reranked
from recommender.errors import DataError

__all__ = ["DEFAULT_CHUNK_SIZE", "Step", "promoted", "run_steps", "step_labels"]

DEFAULT_CHUNK_SIZE = 4096
"""Users per chunk (memory of the widest step is about ``chunk * c * 8`` bytes times a few)."""

_INT64_MAX = np.iinfo(np.int64).max


class Step(Protocol):
    """What running a step needs of it (every :class:`~governance.rerank.base.Reranker` is one)."""

    name: str
    needs: Any
    reason: Any

    def order(self, cands: Candidates, k: int) -> tuple[np.ndarray, np.ndarray | None]: ...

    def check(self, items: np.ndarray, cands: Candidates) -> np.ndarray | None: ...

    def states_constraint(self) -> bool: ...


def step_labels(steps: Sequence[Step]) -> tuple[str, ...]:
    """Each step's name, suffixed ``_2``, ``_3`` when a step is repeated."""
    seen: dict[str, int] = {}
    out = []
    for step in steps:
        seen[step.name] = seen.get(step.name, 0) + 1
        out.append(step.name if seen[step.name] == 1 else f"{step.name}_{seen[step.name]}")
    return tuple(out)


def promoted(order: np.ndarray) -> np.ndarray:
    """``(n, c)`` True where the step put an item before one ranked above it in its input.

    ``order`` holds input positions (``-1`` padding). The item at place ``j`` was
    the step's default choice iff its input position is the smallest among the
    places ``j`` onwards (``order`` covers every candidate).
    """
    pos = np.where(order >= 0, order, _INT64_MAX)
    suffix_min = np.minimum.accumulate(pos[:, ::-1], axis=1)[:, ::-1]
    return (order >= 0) & (pos > suffix_min)


def run_steps(
    steps: Sequence[Step], labels: tuple[str, ...], candidates: Candidates, k: int, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Reranked:
    """Re-rank every user of ``candidates`` to lists of ``k`` (a checked int) through ``steps``."""
    if not isinstance(candidates, Candidates):
        raise DataError(f"a pipeline re-ranks Candidates. Got {type(candidates).__name__} instead.")
    for step in steps:
        for name in step.needs:
            if getattr(candidates, name) is None:
                raise DataError(MISSING_INPUT.format(name=step.name, field=name))
    cands = candidates.validate()
    n = cands.n_users
    constrained = [label for label, step in zip(labels, steps) if step.states_constraint()]
    if 0 < n <= chunk_size:  # one chunk (a served request): its result is the answer, no copy into a frame
        out, checked = _run(steps, labels, cands, k)
        met = {label: np.ones(n, dtype=bool) for label in constrained}
        for label, value in checked.items():
            met[label][:] = value
        return Reranked(items=out.items, scores=out.scores, moves=out.moves, moved_by=out.moved_by, steps=labels, constraints_met=met)
    items = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), np.nan, dtype=np.float32)
    moves = np.zeros((n, k), dtype=np.int8)
    moved_by = np.full((n, k), -1, dtype=np.int8)
    met = {label: np.ones(n, dtype=bool) for label in constrained}
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        out, chunk_met = _run(steps, labels, cands.rows(start, stop), k)
        items[start:stop], scores[start:stop] = out.items, out.scores
        moves[start:stop], moved_by[start:stop] = out.moves, out.moved_by
        for label, value in chunk_met.items():
            met[label][start:stop] = value
    return Reranked(items=items, scores=scores, moves=moves, moved_by=moved_by, steps=labels, constraints_met=met)


def _run(steps: Sequence[Step], labels: tuple[str, ...], cands: Candidates, k: int) -> tuple[Reranked, dict[str, np.ndarray]]:
    n, c = cands.items.shape
    cands = cands._evolve(
        model_scores=cands.scores,
        reasons=np.zeros((n, c), dtype=np.int8),
        moved_by=np.full((n, c), -1, dtype=np.int8),
    )
    for index, step in enumerate(steps):
        if c == 0:
            break
        order, new_scores = step.order(cands, k)
        cands = _apply(cands, order, new_scores, step, index)
    width = min(k, c)
    items = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), np.nan, dtype=np.float32)
    moves = np.zeros((n, k), dtype=np.int8)
    moved_by = np.full((n, k), -1, dtype=np.int8)
    items[:, :width] = cands.items[:, :width]
    filled = items >= 0
    scores[:, :width] = cands.model_scores[:, :width]
    scores[~filled] = np.nan
    moves[:, :width] = np.where(filled[:, :width], cands.reasons[:, :width], 0)
    moved_by[:, :width] = np.where(filled[:, :width], cands.moved_by[:, :width], -1)
    met = {}
    for label, step in zip(labels, steps):
        value = step.check(items, cands)
        if value is not None:
            met[label] = value
    return Reranked(items, scores, moves, moved_by, labels, {}), met


def _apply(cands: Candidates, order: np.ndarray, new_scores: np.ndarray | None, step: Step, index: int) -> Candidates:
    """The candidates in the step's ``order``, with the step's reasons recorded."""
    safe = np.maximum(order, 0)
    pad = order < 0
    rows = np.arange(order.shape[0])[:, None]

    def take(a: np.ndarray, fill: Any) -> np.ndarray:
        out = a[rows, safe]  # take_along_axis on axis 1, without its per-call index building
        out[pad] = fill
        return out

    lift = promoted(order)
    reasons = take(cands.reasons, 0)
    reasons[lift] = int(step.reason)
    moved_by = take(cands.moved_by, -1)
    moved_by[lift] = index
    scores = cands.scores if new_scores is None else new_scores.astype(np.float32, copy=False)
    return cands._evolve(
        items=take(cands.items, -1),
        scores=take(scores, np.nan),
        model_scores=take(cands.model_scores, np.nan),
        reasons=reasons,
        moved_by=moved_by,
    )
