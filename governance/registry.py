"""The Check protocol and the registry of checks by name.

A check is a small unit with a stable snake_case ``name`` (never reused), the
policy-pack ``section`` it belongs to, a pydantic ``Config`` (its ``params`` in a
pack, validated on load with unknown keys rejected), and an ``evaluate`` method
that reads the audit facts it needs and returns a :class:`CheckResult`.

A policy file names checks by registered name only, never by import path: a pack
cannot make recgov import code.

Checks do no I/O: everything they read arrives in
:class:`~governance.facts.AuditFacts`. A check whose facts are missing returns
``skipped`` with the reason; a check that raises is turned into ``error`` by the
engine, never a pass.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from governance.named import Registry

__all__ = ["Status", "CheckResult", "Check", "register", "get_check", "registered_checks", "UNKNOWN_CHECK"]

UNKNOWN_CHECK = "unknown check {name!r}; the registered checks are: {known}"


class Status(str, Enum):
    """The outcome of one rule."""

    passed = "pass"
    warn = "warn"
    fail = "fail"
    error = "error"
    skipped = "skipped"


class CheckResult(BaseModel):
    """What a check found. The engine adds the rule id, pack and model stamps."""

    model_config = ConfigDict(extra="forbid")

    status: Status
    message: str
    """One plain sentence: what was measured against what."""
    value: float | str | bool | None = None
    """The measured value (None when nothing could be measured)."""
    threshold: float | str | None = None
    """The bound the value was held to."""
    evidence: dict[str, Any] = Field(default_factory=dict)
    """The facts behind the verdict (per-model or per-group figures, counts, CIs)."""


class Check:
    """Base class of every check.

    Subclasses set ``name``, ``section``, ``Config`` and ``needs`` and implement
    :meth:`evaluate`. ``metric_range`` (lowest, highest possible value of what
    the check compares) lets static analysis find thresholds that can never
    pass or never fail.
    """

    name: ClassVar[str]
    section: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    needs: ClassVar[tuple[str, ...]] = ()
    """Fact groups the check reads (attributes of AuditFacts); missing -> skipped."""
    summary: ClassVar[str] = ""

    def evaluate(self, config: Any, facts: Any, section: Any) -> CheckResult:  # pragma: no cover - interface
        """Judge ``facts`` against ``config`` (the rule's params); ``section`` is the rule's pack section."""
        raise NotImplementedError

    @classmethod
    def threshold_bounds(cls, config: Any) -> list[tuple[str, float, float, float]]:
        """``(field, threshold, lowest, highest)`` for thresholds with a known metric range.

        Used by static analysis to report rules that can never pass or never fail.
        """
        return []

    @classmethod
    def attributes(cls, config: Any) -> list[str]:
        """User or item attributes the rule refers to (for schema checks and contradictions)."""
        return []


_CHECKS: Registry[type[Check]] = Registry("check", UNKNOWN_CHECK)


def register(cls: type[Check]) -> type[Check]:
    """Class decorator: add a check to the registry under its ``name``."""
    return _CHECKS.register(cls)


def get_check(name: str) -> type[Check]:
    """The check registered as ``name``; an unknown name lists the known ones."""
    return _CHECKS.get(name)


def registered_checks() -> dict[str, type[Check]]:
    """All registered checks by name (a copy)."""
    return _CHECKS.all()
