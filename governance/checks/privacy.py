"""Privacy checks: proxy leakage of protected attributes through the model, consent coverage and
retention of the training data, and subject requests (and the retrains erasures call for) within their deadlines."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from governance.checks._base import CheckConfig, skipped, verdict
from governance.facts import AuditFacts
from governance.registry import Check, CheckResult, register

__all__ = ["ProxyLeakage", "ConsentCoverage", "RetentionWindow", "ErasureDeadline"]

RequestKind = Literal["access", "erasure", "objection", "retrain"]
"""The kinds of subject request the store keeps (``audits.models.REQUEST_KINDS``)."""


@register
class ProxyLeakage(Check):
    """A protected attribute cannot be predicted well from the model's user factors."""

    name: ClassVar[str] = "proxy_leakage"
    section: ClassVar[str] = "minimization"
    needs: ClassVar[tuple[str, ...]] = ("privacy",)
    summary: ClassVar[str] = "Cross-validated AUC of predicting an attribute from the user factors is at most `max_auc`."

    class Config(CheckConfig):
        attribute: str = "gender"
        """The protected (audit-only) attribute; it is read by the audit only, never by the model."""
        max_auc: float = Field(0.65, ge=0.5, le=1.0)
        """Largest acceptable ROC AUC (0.5 = the factors say nothing about the attribute)."""

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        if facts.privacy is None:
            return skipped("no proxy-leakage measurement in the audit facts (audit with a model and a users table)")
        figures = facts.privacy.proxy.get(config.attribute)
        if figures is None or figures.get("auc") is None:
            reason = (figures or {}).get("error", "not measured")
            return skipped(f"proxy leakage of {config.attribute!r} was not measured: {reason}")
        auc = float(figures["auc"])
        return verdict(
            auc <= config.max_auc,
            f"{config.attribute} is predicted from the user factors with AUC {auc:.3f} over {figures.get('n', 0):,} users; required <= {config.max_auc}",
            value=auc,
            threshold=config.max_auc,
            evidence=figures,
        )

    @classmethod
    def threshold_bounds(cls, config: Config) -> list[tuple[str, float, float, float]]:
        return [("max_auc", config.max_auc, 0.5, 1.0)]

    @classmethod
    def attributes(cls, config: Config) -> list[str]:
        return [config.attribute]


@register
class ConsentCoverage(Check):
    """The audited model learned only from subjects with a checked lawful basis."""

    name: ClassVar[str] = "consent_coverage"
    section: ClassVar[str] = "consent"
    needs: ClassVar[tuple[str, ...]] = ("privacy",)
    summary: ClassVar[str] = "The model's training data went through this pack's consent filter: no profiled subject without a lawful basis."

    class Config(CheckConfig):
        purpose: str = "personalization"
        """The processing purpose the training served."""

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        p = facts.privacy
        if p is None or not p.model_trained:
            return skipped("no trained model in the audit: there is no training data to check")
        f = p.training_filter
        if not f:
            return verdict(
                False,
                "the model was trained without the consent filter: no check that every profiled subject had a lawful basis",
                value=None,
                threshold="filtered by the pack",
                evidence={},
            )
        ok = f.get("purpose") == config.purpose and config.purpose in section.purposes
        events = f.get("events", {})
        filtered = (
            f"after the {f.get('pack')} {f.get('pack_version')} consent filter for {f.get('purpose')}"
            if f.get("purpose")
            else "with no pack's consent filter (only erasures and refusals were left out: no lawful basis was checked)"
        )  # a filter of no pack has no pack version and no purpose to name
        return verdict(
            ok,
            f"training kept {events.get('kept', 0):,} of {events.get('total', 0):,} events {filtered}; excluded: "
            + (", ".join(f"{n:,} {r}" for r, n in events.get("excluded", {}).items() if n) or "none"),
            value=events.get("kept"),
            threshold=f"filtered for {config.purpose}",
            evidence={k: f.get(k) for k in ("pack", "pack_version", "pack_hash", "purpose", "lawful_basis", "model", "events", "subjects")},
        )


@register
class RetentionWindow(Check):
    """No training event is older than the pack's retention window."""

    name: ClassVar[str] = "retention_window"
    section: ClassVar[str] = "minimization"
    needs: ClassVar[tuple[str, ...]] = ("privacy",)
    summary: ClassVar[str] = "The training filter's retention cutoff is at least as strict as minimization.retention_days."

    class Config(CheckConfig):
        pass

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        p = facts.privacy
        if section.retention_days is None:
            return skipped("the pack sets no retention window (minimization.retention_days)")
        if p is None or not p.model_trained:
            return skipped("no trained model in the audit: there is no training data to check")
        f = p.training_filter or {}
        used = f.get("retention_days")
        ok = used is not None and used <= section.retention_days
        return verdict(
            ok,
            (f"training used events newer than {f.get('cutoff')} ({used} days); required at most {section.retention_days} days")
            if used is not None
            else f"training applied no retention window; required at most {section.retention_days} days",
            value=used,
            threshold=section.retention_days,
            evidence={"cutoff": f.get("cutoff"), "excluded_for_retention": (f.get("events", {}).get("excluded", {}) or {}).get("retention")},
        )


@register
class ErasureDeadline(Check):
    """No erasure (or other subject) request, nor the retrain an erasure calls for, is past its deadline."""

    name: ClassVar[str] = "erasure_deadline"
    section: ClassVar[str] = "consent"
    needs: ClassVar[tuple[str, ...]] = ("privacy",)
    summary: ClassVar[str] = "Open subject requests of the listed kinds past their deadline are at most `max_overdue`."

    class Config(CheckConfig):
        kinds: list[RequestKind] = Field(default_factory=lambda: ["erasure"], min_length=1)
        """Request kinds held to their deadline: access, erasure, objection, and retrain (the full
        retrain that replaces every model trained on an erased subject's data). Each deadline is
        the pack's ``consent.requests`` days in force when the request was opened."""
        max_overdue: int = Field(0, ge=0)
        """Largest acceptable number of overdue requests."""

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        p = facts.privacy
        if p is None or p.overdue_requests is None:
            return skipped("no record of subject requests in the audit facts (audit with a store)")
        overdue = {k: int(p.overdue_requests.get(k, 0)) for k in config.kinds}
        total = sum(overdue.values())
        message = f"{total} {'/'.join(config.kinds)} request(s) past their deadline; required at most {config.max_overdue}"
        if overdue.get("retrain"):
            message += (
                f"; {overdue['retrain']} retrain(s) overdue: model versions trained on erased subjects' data were not "
                f"replaced within {section.requests.retrain_days} days (recgov retrain due, recgov retrain run DATA)"
            )
        return verdict(
            total <= config.max_overdue,
            message,
            value=total,
            threshold=config.max_overdue,
            evidence={"overdue": overdue},
        )
