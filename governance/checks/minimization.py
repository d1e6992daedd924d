"""Data minimization at training time: only allow-listed inputs, no forbidden attribute."""

from __future__ import annotations

from typing import Any, ClassVar

from governance.checks._base import CheckConfig, skipped, verdict
from governance.facts import AuditFacts
from governance.registry import Check, CheckResult, register
from recommender.attribute_names import named_attributes

__all__ = ["InputAllowlist"]


@register
class InputAllowlist(Check):
    """Every model input is on the purpose's allow-list, and no forbidden attribute is among them."""

    name: ClassVar[str] = "input_allowlist"
    section: ClassVar[str] = "minimization"
    needs: ClassVar[tuple[str, ...]] = ("minimization",)
    summary: ClassVar[str] = "Model inputs are a subset of the purpose's allowed_inputs and contain no forbidden or audit-only attribute."

    class Config(CheckConfig):
        purpose: str = "personalization"
        """The processing purpose whose allow-list applies (a key of minimization.purposes)."""

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        if facts.minimization is None:
            return skipped("no record of the model's inputs in the audit facts")
        purpose = section.purposes.get(config.purpose)
        if purpose is None:
            return skipped(f"purpose {config.purpose!r} has no allow-list in minimization.purposes")
        inputs = list(facts.minimization.model_inputs)
        allowed = set(purpose.allowed_inputs)
        forbidden = set(section.forbidden_attributes) | set(section.audit_only_attributes)
        # A mapped input is what its source column holds: `--map value=gender` feeds gender to the model, and so
        # does a recorded model fitted from such a column, whatever the data the audit is given. Column names are
        # compared as words (`Gender`, `user_gender`: recommender.attribute_names), as the fit's own check does.
        sources = facts.minimization.input_sources
        trained = facts.minimization.trained_input_sources
        columns = [*sources.values(), *trained.values()]
        banned = sorted((set(inputs) & forbidden) | {a for c in columns for a in named_attributes(c, sorted(forbidden))})
        not_allowed = sorted(set(inputs) - allowed - forbidden)
        ok = not not_allowed and not banned
        if ok:
            listed = ", ".join(inputs) if inputs else "none"
            message = f"all {len(inputs)} model input(s) are allowed for {config.purpose}: {listed}"
        else:
            parts = []
            if banned:
                parts.append(f"forbidden or audit-only attribute(s) reached the model: {', '.join(banned)}")
            if not_allowed:
                parts.append(f"input(s) not on the {config.purpose} allow-list: {', '.join(not_allowed)}")
            message = "; ".join(parts)
        return verdict(
            ok,
            message,
            value=len(not_allowed) + len(banned),
            threshold=0,
            evidence={"model_inputs": inputs, "input_sources": sources, "trained_input_sources": trained, "allowed": sorted(allowed), "forbidden_present": banned, "not_allowed": not_allowed},
        )
