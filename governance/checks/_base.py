"""Helpers shared by the check modules."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from governance.registry import CheckResult, Status

__all__ = ["CheckConfig", "skipped", "verdict"]


class CheckConfig(BaseModel):
    """Base of every check's ``params``: unknown keys rejected, field docstrings documented, numbers finite
    (a NaN bound compares false with every figure, so a rule judged against it could never fail; an infinite
    one bounds nothing)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True, allow_inf_nan=False)


def skipped(reason: str) -> CheckResult:
    """A result for a check that could not run on the facts at hand."""
    return CheckResult(status=Status.skipped, message=reason)


def verdict(ok: bool, message: str, **kwargs: object) -> CheckResult:
    """``pass`` or ``fail`` with the message and the measured figures."""
    return CheckResult(status=Status.passed if ok else Status.fail, message=message, **kwargs)  # type: ignore[arg-type]
