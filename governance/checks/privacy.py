"""Privacy checks that measure: proxy leakage of protected attributes through the model."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from governance.checks._base import CheckConfig, skipped, verdict
from governance.facts import AuditFacts
from governance.registry import Check, CheckResult, register

__all__ = ["ProxyLeakage"]


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
