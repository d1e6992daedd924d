"""The registry of re-rankers by snake_case name, so that policy packs can name them.

A pack names a re-ranker by its registered name and gives its parameters; it can
never name an import path. An unknown name is an error listing the known names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from governance.rerank.base import RerankConfig, Reranker
from recommender.errors import ConfigError

__all__ = [
    "register_reranker",
    "get_reranker",
    "registered_rerankers",
    "reranker_for_config",
    "config_from_params",
    "UNKNOWN_RERANKER",
]

UNKNOWN_RERANKER = "unknown re-ranker {name!r}; the registered re-rankers are: {known}"
UNKNOWN_CONFIG = "no registered re-ranker takes a {config}; give one of: {known}"

_REGISTRY: dict[str, type[Reranker]] = {}


def register_reranker(cls: type[Reranker]) -> type[Reranker]:
    """Class decorator: add a re-ranker to the registry under its ``name``."""
    name = cls.name
    if not name.isidentifier() or name.lower() != name:
        raise ConfigError(f"re-ranker name {name!r} must be snake_case")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ConfigError(f"re-ranker name {name!r} is already registered by {_REGISTRY[name].__qualname__}")
    if cls.Config.model_config.get("extra") != "forbid":
        raise ConfigError(f"{cls.__qualname__}.Config must set extra='forbid'")
    if any(other.Config is cls.Config for other in _REGISTRY.values() if other is not cls):
        raise ConfigError(f"{cls.Config.__qualname__} is already the config of another re-ranker")
    _REGISTRY[name] = cls
    return cls


def get_reranker(name: str) -> type[Reranker]:
    """The re-ranker registered as ``name``; an unknown name lists the known ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(UNKNOWN_RERANKER.format(name=name, known=", ".join(sorted(_REGISTRY)))) from None


def registered_rerankers() -> dict[str, type[Reranker]]:
    """All registered re-rankers by name (a copy, sorted by name)."""
    return dict(sorted(_REGISTRY.items()))


def reranker_for_config(config: RerankConfig) -> type[Reranker]:
    """The re-ranker whose ``Config`` ``config`` is."""
    for cls in _REGISTRY.values():
        if type(config) is cls.Config:
            return cls
    known = ", ".join(f"{c.Config.__name__} ({n})" for n, c in sorted(_REGISTRY.items()))
    raise ConfigError(UNKNOWN_CONFIG.format(config=type(config).__name__, known=known))


def config_from_params(name: str, params: Mapping[str, Any] | None = None) -> RerankConfig:
    """Validate a policy pack's ``params`` for the re-ranker ``name`` into its config.

    Raises :class:`~recommender.errors.ConfigError` for an unknown name or bad
    parameters (the pydantic error chained as the cause).
    """
    cls = get_reranker(name)
    try:
        return cls.Config.model_validate(dict(params or {}))
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(params)'}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"invalid params for re-ranker {name!r}: {problems}") from err
