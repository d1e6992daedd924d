"""Composition: steps run in order, each on the previous step's output.

Each step returns a full order of its input (its ``k`` choices first, then the
other candidates: in the order it received them, or re-sorted by a re-scoring
step), so a later step still sees every candidate; the final lists are cut to ``k``. Reasons of earlier moves are
kept unless a later step promotes the item again (see :mod:`governance.rerank.base`).
Users are processed in chunks to bound memory; every step is vectorized over
the users of a chunk and loops only over list places.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from governance.rerank.base import (
    MISSING_INPUT,
    Candidates,
    RerankConfig,
    Reranked,
    Reranker,
    check_k,
    promoted,
)
from governance.rerank.registry import config_from_params, reranker_for_config
from recommender.errors import ConfigError, DataError

__all__ = ["DEFAULT_CHUNK_SIZE", "Pipeline", "build_pipeline"]

DEFAULT_CHUNK_SIZE = 4096
"""Users per chunk (memory of the widest step is about ``chunk * c * 8`` bytes times a few)."""


def _labels(steps: Sequence[Reranker]) -> tuple[str, ...]:
    seen: dict[str, int] = {}
    out = []
    for step in steps:
        seen[step.name] = seen.get(step.name, 0) + 1
        out.append(step.name if seen[step.name] == 1 else f"{step.name}_{seen[step.name]}")
    return tuple(out)


class Pipeline:
    """Re-rankers run in order. Call it with ``(candidates, k)``.

    Example
    -------
    >>> from governance.rerank import build_pipeline, MMRConfig, FairStarConfig
    >>> pipe = build_pipeline([MMRConfig(tradeoff=0.3), FairStarConfig(p=0.5, alpha=0.1)])
    >>> [s.name for s in pipe.steps]
    ['mmr', 'fair_star']
    """

    def __init__(self, steps: Sequence[Reranker], *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.steps = list(steps)
        for step in self.steps:
            if not isinstance(step, Reranker):
                raise ConfigError(f"a pipeline step must be a Reranker. Got {type(step).__name__} instead.")
        if len(self.steps) > 127:
            raise ConfigError(f"a pipeline holds at most 127 steps. Got {len(self.steps)} instead.")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigError(
                "The 'chunk_size' parameter of Pipeline must be an int in the range [1, inf). "
                f"Got {chunk_size!r} instead."
            )
        self.chunk_size = chunk_size
        self.labels = _labels(self.steps)

    def __repr__(self) -> str:
        return f"Pipeline({self.steps!r})"

    def describe(self) -> list[dict[str, Any]]:
        """The steps as JSON-ready ``{"name", "params"}`` (what a policy pack would say)."""
        return [{"name": s.name, "params": s.config.model_dump(mode="json")} for s in self.steps]

    @property
    def config_hash(self) -> str:
        """SHA-256 of the canonical JSON of :meth:`describe` (stamp it on decisions)."""
        text = json.dumps(self.describe(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def needs(self) -> set[str]:
        return {f for s in self.steps for f in s.needs}

    def __call__(self, candidates: Candidates, k: int) -> Reranked:
        """Re-rank every user of ``candidates`` to lists of ``k``."""
        k = check_k(k, "Pipeline")
        if not isinstance(candidates, Candidates):
            raise DataError(f"a pipeline re-ranks Candidates. Got {type(candidates).__name__} instead.")
        for step in self.steps:
            for name in step.needs:
                if getattr(candidates, name) is None:
                    raise DataError(MISSING_INPUT.format(name=step.name, field=name))
        cands = candidates.validate()
        n = cands.n_users
        if 0 < n <= self.chunk_size:  # one chunk (a served request): its result is the answer, no copy into a frame
            out, checked = self._run(cands, k)
            met = {
                self.labels[i]: np.ones(n, dtype=bool)
                for i, s in enumerate(self.steps)
                if type(s).check is not Reranker.check
            }
            for label, value in checked.items():
                met[label][:] = value
            return Reranked(
                items=out.items, scores=out.scores, moves=out.moves, moved_by=out.moved_by, steps=self.labels, constraints_met=met
            )
        items = np.full((n, k), -1, dtype=np.int64)
        scores = np.full((n, k), np.nan, dtype=np.float32)
        moves = np.zeros((n, k), dtype=np.int8)
        moved_by = np.full((n, k), -1, dtype=np.int8)
        met = {
            self.labels[i]: np.ones(n, dtype=bool)
            for i, s in enumerate(self.steps)
            if type(s).check is not Reranker.check
        }
        for start in range(0, n, self.chunk_size):
            stop = min(start + self.chunk_size, n)
            out, chunk_met = self._run(cands.rows(start, stop), k)
            items[start:stop], scores[start:stop] = out.items, out.scores
            moves[start:stop], moved_by[start:stop] = out.moves, out.moved_by
            for label, value in chunk_met.items():
                met[label][start:stop] = value
        return Reranked(
            items=items, scores=scores, moves=moves, moved_by=moved_by, steps=self.labels, constraints_met=met
        )

    def _run(self, cands: Candidates, k: int) -> tuple[Reranked, dict[str, np.ndarray]]:
        n, c = cands.items.shape
        cands = cands._evolve(
            model_scores=cands.scores,
            reasons=np.zeros((n, c), dtype=np.int8),
            moved_by=np.full((n, c), -1, dtype=np.int8),
        )
        for index, step in enumerate(self.steps):
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
        for label, step in zip(self.labels, self.steps):
            value = step.check(items, cands)
            if value is not None:
                met[label] = value
        return Reranked(items, scores, moves, moved_by, self.labels, {}), met


def _apply(
    cands: Candidates, order: np.ndarray, new_scores: np.ndarray | None, step: Reranker, index: int
) -> Candidates:
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


StepSpec = RerankConfig | Reranker | Mapping[str, Any]


def build_pipeline(steps: Sequence[StepSpec], *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Pipeline:
    """A :class:`Pipeline` from step configs, in order.

    Each step is a re-ranker config (e.g. ``FairStarConfig(p=0.5)``), a
    re-ranker, or a policy pack's ``{"name": <registered name>, "params": {...}}``.
    """
    built: list[Reranker] = []
    for i, spec in enumerate(steps):
        if isinstance(spec, Reranker):
            built.append(spec)
        elif isinstance(spec, RerankConfig):
            built.append(reranker_for_config(spec)(spec))
        elif isinstance(spec, Mapping):
            extra = set(spec) - {"name", "params"}
            if "name" not in spec or extra:
                raise ConfigError(
                    f"pipeline step {i} must be {{'name': <re-ranker>, 'params': {{...}}}}. "
                    f"Got keys {sorted(spec)} instead."
                )
            config = config_from_params(spec["name"], spec.get("params"))
            built.append(reranker_for_config(config)(config))
        else:
            raise ConfigError(
                f"pipeline step {i} must be a re-ranker config, a re-ranker or a {{'name', 'params'}} mapping. "
                f"Got {type(spec).__name__} instead."
            )
    return Pipeline(built, chunk_size=chunk_size)
