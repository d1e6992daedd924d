"""A registry of components by stable snake_case name: checks, re-rankers.

A policy pack names a component by its registered name and gives its
parameters; it can never name an import path, so a pack cannot make recgov
import code. Registering validates the component (a snake_case name never
reused, a pydantic ``Config`` that rejects unknown keys); looking up an unknown
name fails with the list of known names (scikit-learn's scorer lookup does the
same).

>>> from pydantic import BaseModel, ConfigDict
>>> things = Registry("thing", "unknown thing {name!r}; the registered things are: {known}")
>>> @things.register
... class Spoon:
...     name = "spoon"
...     class Config(BaseModel):
...         model_config = ConfigDict(extra="forbid")
>>> things.get("spoon") is Spoon
True
>>> things.get("fork")
Traceback (most recent call last):
...
recommender.errors.ConfigError: unknown thing 'fork'; the registered things are: spoon
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from recommender.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Components of one kind by name.

    Parameters
    ----------
    kind
        What the components are, for messages (``"check"``, ``"re-ranker"``).
    unknown
        The message of an unknown name, with ``{name}`` and ``{known}``.
    """

    def __init__(self, kind: str, unknown: str) -> None:
        self.kind = kind
        self.unknown = unknown
        self._by_name: dict[str, T] = {}

    def register(self, cls: T) -> T:
        """Class decorator: add ``cls`` under its ``name``, after checking name and ``Config``."""
        name: Any = getattr(cls, "name", None)
        if not isinstance(name, str) or not name.isidentifier() or name.lower() != name:
            raise ConfigError(f"{self.kind} name {name!r} must be snake_case")
        known = self._by_name.get(name)
        if known is not None and known is not cls:
            raise ConfigError(f"{self.kind} name {name!r} is already registered by {known.__qualname__}")
        if cls.Config.model_config.get("extra") != "forbid":
            raise ConfigError(f"{cls.__qualname__}.Config must set extra='forbid'")
        self._by_name[name] = cls
        return cls

    def get(self, name: str) -> T:
        """The component registered as ``name``; an unknown name lists the known ones."""
        try:
            return self._by_name[name]
        except (KeyError, TypeError):
            raise ConfigError(self.unknown.format(name=name, known=", ".join(sorted(self._by_name)))) from None

    def all(self) -> dict[str, T]:
        """Every registered component by name (a copy, sorted by name)."""
        return dict(sorted(self._by_name.items()))
