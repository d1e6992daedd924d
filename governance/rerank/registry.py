"""The registry of re-rankers by snake_case name, so that policy packs can name them.

A pack names a re-ranker by its registered name and gives its parameters; it can
never name an import path. An unknown name is an error listing the known names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from governance.named import Registry
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

_RERANKERS: Registry[type[Reranker]] = Registry("re-ranker", UNKNOWN_RERANKER)


def register_reranker(cls: type[Reranker]) -> type[Reranker]:
    """Class decorator: add a re-ranker to the registry under its ``name``."""
    if any(other.Config is getattr(cls, "Config", None) for other in _RERANKERS.all().values() if other is not cls):
        raise ConfigError(f"{cls.Config.__qualname__} is already the config of another re-ranker")
    return _RERANKERS.register(cls)


def get_reranker(name: str) -> type[Reranker]:
    """The re-ranker registered as ``name``; an unknown name lists the known ones."""
    return _RERANKERS.get(name)


def registered_rerankers() -> dict[str, type[Reranker]]:
    """All registered re-rankers by name (a copy, sorted by name)."""
    return _RERANKERS.all()


def reranker_for_config(config: RerankConfig) -> type[Reranker]:
    """The re-ranker whose ``Config`` ``config`` is."""
    registered = _RERANKERS.all()
    for cls in registered.values():
        if type(config) is cls.Config:
            return cls
    known = ", ".join(f"{c.Config.__name__} ({n})" for n, c in registered.items())
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
