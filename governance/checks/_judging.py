"""How fairness rules judge a figure against its bound: point or interval, and how the evidence reads.

Shared by the consumer-side checks (:mod:`governance.checks.fairness`) and the
exposure checks (:mod:`governance.checks.exposure`).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from governance.facts import AuditFacts, FairnessFacts

NO_FAIRNESS = (
    "no fairness audit in the audit facts (audit with a dataset and a fairness section, or give fairness facts)"
)
ATTRIBUTE = r"^[A-Za-z_][A-Za-z0-9_]*$"

Judge = Literal["point", "ci"]
Attention = Literal["log", "geometric", "uniform"]


# -- shared helpers --------------------------------------------------------------------------
def _f(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci_text(ci: Any, digits: int = 4) -> str:
    return "n/a" if ci is None else f"[{_f(ci[0], digits)}, {_f(ci[1], digits)}]"


def _ends(value: float, ci: Any) -> tuple[float, float]:
    """The interval's ends; without an interval, the point value.

    An interval with one end missing is unbounded on that side (a ratio's upper end
    when the reference group's rate can be 0, stored as null since JSON holds no
    infinity): the interval reaches past every bound there, so it is never wholly
    beyond one. Falling back to the point value made such an interval as strict as
    the point judgement.
    """
    if ci is None or (ci[0] is None and ci[1] is None):
        return value, value
    low = ci[0] if ci[0] is not None else -math.inf
    high = ci[1] if ci[1] is not None else math.inf
    return low, high


def above(value: float | None, ci: Any, bound: float | None, judge: str) -> bool:
    """Is ``value`` above ``bound``? With ``ci``: is the whole interval above it? (No value or bound: no.)"""
    if value is None or bound is None:
        return False
    return (_ends(value, ci)[0] if judge == "ci" else value) > bound


def below(value: float | None, ci: Any, bound: float | None, judge: str) -> bool:
    """Is ``value`` below ``bound``? With ``ci``: is the whole interval below it? (No value or bound: no.)"""
    if value is None or bound is None:
        return False
    return (_ends(value, ci)[1] if judge == "ci" else value) < bound


def _judged_on(judge: str, confidence: float) -> str:
    return "the point estimate" if judge == "point" else f"the whole {confidence:.0%} CI"


def _required(*parts: tuple[str, float | None]) -> str:
    return " and ".join(f"{text} {bound:g}" for text, bound in parts if bound is not None)


def _threshold(required: str, *bounds: float | None) -> float | str:
    """The bound as a number when the rule has one, else the readable conjunction."""
    present = [b for b in bounds if b is not None]
    return float(present[0]) if len(present) == 1 else required


def _fairness(facts: AuditFacts) -> FairnessFacts | None:
    return facts.fairness
