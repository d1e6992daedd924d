"""The interface every model family meets, so that governance never depends on the family.

A *family* is a kind of model (ALS, EASE, content-based TF-IDF, two-tower, ...).
Each family is a :class:`~recommender.base.Recommender` that also declares what
governance needs to know about it:

* ``inputs``: the data it reads (``interactions`` always; ``item_text``,
  ``item_category``, ``item_price``, ``item_release``, ``session_id``, ``user_attributes``
  where used). The pack's minimisation allow-list is checked against them before
  a fit, and user attributes reach a model only where the pack allows.
* ``erasure``: how a subject is removed: ``exact`` (the model afterwards is the
  one trained without them), ``approximate`` (with a measured residual) or
  ``retrain`` (a retrain ticket is owed).
* ``explain``: explanation tags of the family's own kind for a served list, each
  saying whether the reason is exact (a decomposition of the score) or an
  approximation.
* ``subjects``: which subjects' data the fitted model contains.
* ``forget``: remove subjects, returning a :class:`ForgetOutcome`.
* ``save``/``load``: no pickle (``.npz`` with JSON metadata, or safetensors-like
  arrays), and ``version_id_``: a content address of what was saved.

Families are registered by name with :func:`register_family`; modules in
:mod:`recommender.families` are discovered on first use, and a family whose
optional dependencies (an extra such as ``neural`` or ``ann``) are missing is
listed as unavailable with the reason, never imported half-way.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from recommender.base import Recommender
from recommender.errors import ConfigError

__all__ = [
    "ErasureKind",
    "ModelTag",
    "ForgetOutcome",
    "GovernedModel",
    "Family",
    "register_family",
    "get_family",
    "families",
    "KNOWN_INPUTS",
    "unavailable_families",
]

KNOWN_INPUTS = frozenset(
    {
        "interactions",
        "item_text",
        "item_category",
        "item_price",
        "item_release",
        "session_id",
        "timestamp",
        "user_attributes",
    }
)
"""The inputs a family may declare; the minimisation allow-list speaks the same names."""


class ErasureKind(str, Enum):
    """How a family removes a subject."""

    exact = "exact"
    approximate = "approximate"
    retrain = "retrain"


@dataclass(frozen=True)
class ModelTag:
    """Why one item is in a list, in the family's own terms.

    ``kind`` is a stable snake_case name (``because_you_interacted``,
    ``similar_users``, ``shares_content``, ``hybrid_blend``, ``session_context``,
    ``latent_match``, ...); ``text`` the sentence a user reads; ``items`` the
    item ids it names (history items, matched items); ``exact`` is True when the
    reason is an exact decomposition of the score, False when it approximates it;
    ``evidence`` holds figures (shares, contributions, matched terms).
    """

    kind: str
    text: str
    items: tuple[str, ...] = ()
    exact: bool = False
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"kind": self.kind, "text": self.text, "items": list(self.items), "exact": self.exact, "evidence": self.evidence}


@dataclass(frozen=True)
class ForgetOutcome:
    """What removing subjects did to a fitted model."""

    kind: ErasureKind
    removed: tuple[str, ...]
    """The subject ids the model no longer contains (never logged: callers pseudonymise)."""
    residual: float | None = None
    """For ``approximate``: the measured residual influence (0 is exact)."""
    retrain_required: bool = False
    """True when only a retrain removes them (``kind == retrain``)."""
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict without subject ids (only their number)."""
        return {
            "kind": self.kind.value,
            "removed": len(self.removed),
            "residual": self.residual,
            "retrain_required": self.retrain_required,
            "detail": self.detail,
        }


class GovernedModel(Recommender):
    """A :class:`Recommender` with the declarations governance relies on.

    Subclasses set ``family``, ``inputs`` and ``erasure`` and implement
    :meth:`explain`, :meth:`forget`, :meth:`save` and :meth:`load` (besides the
    recommender's ``_fit``, ``_recommend_known`` and ``get_params``).
    """

    family: ClassVar[str] = "governed"
    inputs: ClassVar[frozenset[str]] = frozenset({"interactions"})
    erasure: ClassVar[ErasureKind] = ErasureKind.retrain

    version_id_: str

    def subjects(self) -> np.ndarray:
        """The subject ids whose data the fitted model contains."""
        self.check_fitted("subjects")
        return np.asarray(self.train_.user_ids, dtype=object)

    @abstractmethod
    def explain(self, user_id: str, item_ids: Sequence[str]) -> list[list[ModelTag]]:
        """Tags for each item of a list served to ``user_id`` (one list of tags per item)."""

    @abstractmethod
    def forget(self, user_ids: Sequence[str]) -> ForgetOutcome:
        """Remove ``user_ids`` from the fitted model as its ``erasure`` kind allows."""

    @abstractmethod
    def save(self, path: str | Path) -> str:
        """Write the fitted model without pickle and return the file's SHA-256."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> Self:
        """Read a model :meth:`save` wrote (``allow_pickle=False``)."""


@dataclass(frozen=True)
class Family:
    """A registered model family."""

    name: str
    build: Callable[..., GovernedModel]
    """``build(**params)`` -> an unfitted model."""
    description: str
    inputs: frozenset[str]
    erasure: ErasureKind
    extra: str | None = None
    """The optional extra it needs (``neural``, ``ann``, ``content``), or None."""
    default_params: dict[str, Any] = field(default_factory=dict)
    small_params: dict[str, Any] = field(default_factory=dict)
    """Parameters for quick runs (the contract suite, the demo)."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.inputs) - KNOWN_INPUTS)
        if unknown:
            raise ConfigError(f"family {self.name!r} declares unknown inputs {unknown}; known: {sorted(KNOWN_INPUTS)}")


_FAMILIES: dict[str, Family] = {}
_UNAVAILABLE: dict[str, str] = {}
_DISCOVERED = False


def register_family(family: Family) -> Family:
    """Add ``family`` to the registry (a name is registered once)."""
    if family.name in _FAMILIES and _FAMILIES[family.name] is not family:
        raise ConfigError(f"model family {family.name!r} is registered twice")
    _FAMILIES[family.name] = family
    return family


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    # imported by name: the families import this module, and a static import back would be a cycle
    package = importlib.import_module("recommender.families")

    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"recommender.families.{module.name}")
        except ImportError as exc:  # an optional extra is not installed
            _UNAVAILABLE[module.name] = f"{type(exc).__name__}: {exc}"


def families(*, available_only: bool = True) -> dict[str, Family]:
    """The registered families by name (discovering :mod:`recommender.families` first)."""
    _discover()
    return dict(sorted(_FAMILIES.items()))


def unavailable_families() -> dict[str, str]:
    """Modules of :mod:`recommender.families` that could not be imported, with why."""
    _discover()
    return dict(_UNAVAILABLE)


def get_family(name: str) -> Family:
    """The family called ``name``, or a :class:`ConfigError` listing the known ones."""
    known = families()
    if name not in known:
        missing = unavailable_families()
        hint = f"; not importable here: {missing}" if missing else ""
        raise ConfigError(f"unknown model family {name!r}; the families are: {', '.join(known) or 'none'}{hint}")
    return known[name]
