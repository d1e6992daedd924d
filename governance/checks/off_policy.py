"""Off-policy gate checks: a candidate pack judged on what it would have done on the lists already served.

The facts come from :mod:`governance.ope` (``recgov ope --gate``, ``POST /v1/ope``, or an audit given the logged
pack: ``recgov audit|gate --ope-logged-pack``):
the candidate's estimated outcomes minus the logged policy's, with a paired
bootstrap interval over the logged lists, and each provider group's estimated
share of attention under the candidate. Both checks judge on the interval, never
the point estimate: non-inferiority on the lower bound of the difference, a
share floor on the lower bound, a ceiling on the upper bound. A refused estimate
(the logs do not overlap the candidate: a deterministic logger, probability on
lists the logger never shows, too few effective samples) is missing evidence
and fails, with the estimator's reason; so does an estimate without an interval.
Without off-policy facts at all (an audit of a dataset) the checks are
``skipped``: list them in ``gate.required_rules`` to block a release that was
not estimated off-policy.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from governance.checks._base import CheckConfig, skipped, verdict
from governance.facts import AuditFacts, OffPolicyFigure
from governance.registry import Check, CheckResult, Status, register

__all__ = ["OffPolicyExposure", "OffPolicyNonInferiority"]

NO_OFF_POLICY = "no off-policy estimate in the audit facts (give the audit the logged pack: recgov audit|gate --ope-logged-pack PACK; or estimate the candidate with 'recgov ope --gate' or POST /v1/ope)"


def _missing(what: str, figure: OffPolicyFigure | None) -> CheckResult | None:
    """A failing result when ``figure`` is absent, refused or has no interval: missing evidence never passes."""
    if figure is None:
        return CheckResult(status=Status.fail, message=f"{what} was not estimated; missing evidence is not a pass")
    if figure.refused or figure.value is None:
        return CheckResult(
            status=Status.fail,
            message=f"{what} was refused ({figure.reason}); missing evidence is not a pass",
            evidence={"refused": True, "reason": figure.reason},
        )
    if figure.ci is None or figure.ci[0] is None or figure.ci[1] is None:
        return CheckResult(status=Status.fail, message=f"{what} has no interval (bootstrap 0) to judge on; missing evidence is not a pass")
    return None


@register
class OffPolicyNonInferiority(Check):
    """The candidate's estimated primary outcome is not worse than the logged policy's by more than a margin."""

    name: ClassVar[str] = "off_policy_non_inferiority"
    section: ClassVar[str] = "quality"
    needs: ClassVar[tuple[str, ...]] = ("off_policy",)
    summary: ClassVar[str] = "The lower bound of the interval of (candidate - logged) outcomes per list is at least `-margin`."

    class Config(CheckConfig):
        outcome: Literal["impression", "click", "conversion", "dwell", "rating"] = "click"
        """The primary outcome kind (outcome events joined to the served lists)."""
        estimator: Literal["slate_standard_ips", "slate_independent_ips", "slate_cascade_ips"] = "slate_standard_ips"
        """The slate estimator (standard: no assumption on the reward; independent: item-position model; cascade:
        top-down reading)."""
        margin: float = Field(0.0, ge=0, allow_inf_nan=False)
        """How much worse per list the candidate may be (in the outcome's units, e.g. clicks per list); 0: not worse."""

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        ope = facts.off_policy
        if ope is None:
            return skipped(NO_OFF_POLICY)
        what = f"the {config.estimator} difference in {config.outcome}s per list ({ope.target_pack} - {ope.logged_pack})"
        figure = ope.differences.get(config.outcome, {}).get(config.estimator)
        if (refusal := _missing(what, figure)) is not None:
            return refusal
        assert figure is not None and figure.ci is not None
        low, high = figure.ci
        logged = ope.logged.get(config.outcome)
        return verdict(
            low >= -config.margin,
            f"{what} is {figure.value:+.4f}, {ope.confidence:.0%} interval [{low:+.4f}, {high:+.4f}]; judged on the lower bound, "
            f"required >= {-config.margin:+.4f}",
            value=low,
            threshold=-config.margin,
            evidence={
                "estimate": figure.value, "ci": [low, high], "confidence": ope.confidence, "decisions_used": ope.decisions_used,
                "logged_policy_mean": None if logged is None else logged.value, "judged_on": "lower bound of the difference",
            },
        )  # fmt: skip


@register
class OffPolicyExposure(Check):
    """A provider group's estimated share of attention under the candidate holds its bounds."""

    name: ClassVar[str] = "off_policy_exposure"
    section: ClassVar[str] = "fairness"
    needs: ClassVar[tuple[str, ...]] = ("off_policy",)
    summary: ClassVar[str] = (
        "The group's estimated attention share under the candidate: lower bound >= `min_share`, upper bound <= `max_share`, "
        "and lower bound of (candidate - logged) >= `-max_drop`."
    )

    class Config(CheckConfig):
        group: str = Field(min_length=1)
        """The provider group (its items are given to the estimate, e.g. ``--provider-group NAME=FILE``)."""
        min_share: float | None = Field(None, ge=0, le=1)
        """Smallest acceptable share of attention (judged on the interval's lower bound)."""
        max_share: float | None = Field(None, ge=0, le=1)
        """Largest acceptable share of attention (judged on the interval's upper bound)."""
        max_drop: float | None = Field(None, ge=0, le=1)
        """How far below the logged share the candidate's may fall (judged on the lower bound of the difference)."""

        @model_validator(mode="after")
        def _one_bound(self) -> "OffPolicyExposure.Config":
            if self.min_share is None and self.max_share is None and self.max_drop is None:
                raise ValueError("give at least one of min_share, max_share and max_drop")
            if self.min_share is not None and self.max_share is not None and self.min_share > self.max_share:
                raise ValueError(f"min_share ({self.min_share}) is greater than max_share ({self.max_share})")
            return self

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        ope = facts.off_policy
        if ope is None:
            return skipped(NO_OFF_POLICY)
        figures = ope.exposure.get(config.group)
        if figures is None:
            known = ", ".join(sorted(ope.exposure)) or "none"
            return CheckResult(status=Status.fail, message=f"provider group {config.group!r} was not estimated (groups estimated: {known}); missing evidence is not a pass")
        what = f"the estimated attention share of {config.group!r} under {ope.target_pack}"
        target, diff = figures.get("target"), figures.get("difference")
        if (refusal := _missing(what, target)) is not None:
            return refusal
        assert target is not None and target.ci is not None
        failures, parts = [], []
        low, high = target.ci
        if config.min_share is not None:
            parts.append(f"lower bound {low:.4f} >= {config.min_share}")
            failures += [] if low >= config.min_share else [parts[-1]]
        if config.max_share is not None:
            parts.append(f"upper bound {high:.4f} <= {config.max_share}")
            failures += [] if high <= config.max_share else [parts[-1]]
        evidence: dict[str, Any] = {"estimate": target.value, "ci": [low, high], "confidence": ope.confidence}
        logged = figures.get("logged_policy")
        evidence["logged_share"] = None if logged is None else logged.value
        if config.max_drop is not None:
            if (refusal := _missing(f"the difference in {config.group!r}'s share", diff)) is not None:
                return refusal
            assert diff is not None and diff.ci is not None
            parts.append(f"difference's lower bound {diff.ci[0]:+.4f} >= {-config.max_drop:+.4f}")
            failures += [] if diff.ci[0] >= -config.max_drop else [parts[-1]]
            evidence["difference"] = {"estimate": diff.value, "ci": list(diff.ci)}
        message = f"{what} is {target.value:.4f}, {ope.confidence:.0%} interval [{low:.4f}, {high:.4f}]; required " + "; ".join(parts)
        if failures:
            message += f" (not met: {'; '.join(failures)})"
        return verdict(not failures, message, value=target.value, evidence=evidence)
