"""A pipeline: re-rankers in order, built from configs or from a policy pack's steps.

How the steps run is :mod:`governance.rerank.compose`; this module checks the
steps, labels them, stamps their configuration's hash, and builds them by
registered name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from governance.rerank.base import Candidates, RerankConfig, Reranked, Reranker, check_k
from governance.rerank.compose import DEFAULT_CHUNK_SIZE, run_steps, step_labels
from governance.rerank.registry import config_from_params, reranker_for_config
from recommender.errors import ConfigError

__all__ = ["DEFAULT_CHUNK_SIZE", "Pipeline", "build_pipeline"]


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
        self.labels = step_labels(self.steps)

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
        return run_steps(self.steps, self.labels, candidates, check_k(k, "Pipeline"), chunk_size=self.chunk_size)


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
