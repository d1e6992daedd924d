"""The engine: evaluate every rule of a pack against the audit facts. Pure, no I/O.

Every rule runs, every result and every error is collected, and the decision is
taken at the end (Cedar evaluates all policies to collect all errors). A check
that raises becomes an ``error`` result, never a pass. A failed rule of severity
``warn`` is reported as ``warn``.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from governance.facts import AuditFacts
from governance.harm_vocabulary import vocabulary_result
from governance.registry import CheckResult, Status, get_check

__all__ = ["RuleResult", "AuditReport", "evaluate"]


class RuleResult(BaseModel):
    """The result of one rule, stamped with what produced it."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str
    section: str
    check: str
    description: str
    legal_reference: str | None = None
    severity: str
    status: Status
    message: str
    value: float | str | bool | None = None
    threshold: float | str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    line: int | None = None
    """Line of the rule in the pack file (for SARIF and located reports)."""


class AuditReport(BaseModel):
    """All results of one audit, with the pack, model and dataset that produced them."""

    model_config = ConfigDict(extra="forbid")

    pack: str
    pack_version: str
    pack_hash: str
    pack_source: str
    model_version: str | None = None
    dataset_version: str | None = None
    shadow: bool = False
    """Evaluated and recorded without enforcing."""
    results: list[RuleResult] = Field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of results per status (every status present, zeros included)."""
        c = Counter(r.status.value for r in self.results)
        return {s.value: c.get(s.value, 0) for s in Status}

    def result(self, rule_id: str) -> RuleResult:
        """The result of ``rule_id``."""
        for r in self.results:
            if r.rule_id == rule_id:
                return r
        raise KeyError(rule_id)


def _run(check_cls: Any, rule: Any, facts: AuditFacts, section: Any) -> CheckResult:
    missing = [need for need in check_cls.needs if getattr(facts, need, None) is None]
    try:
        result = check_cls().evaluate(rule.params, facts, section)
    except Exception as err:  # a crashed check is an error, never a pass
        return CheckResult(status=Status.error, message=f"check {check_cls.name!r} crashed: {type(err).__name__}: {err}")
    if missing and result.status not in (Status.skipped, Status.error):
        return CheckResult(status=Status.error, message=f"check {check_cls.name!r} returned {result.status.value} without its facts {missing}")
    if isinstance(result.value, float) and not math.isfinite(result.value):
        # NaN compares false with every bound, so a verdict on it means nothing; nor can the record hold it
        return CheckResult(status=Status.error, message=f"check {check_cls.name!r} measured a non-finite value ({result.value}): {result.message}")
    return result


def evaluate(
    loaded: Any, facts: AuditFacts, *, model_version: str | None = None, dataset_version: str | None = None, shadow: bool = False
) -> AuditReport:
    """Run every rule of ``loaded`` (a :class:`~governance.policy.LoadedPack`) on ``facts``."""
    pack = loaded.pack
    results = []
    for section_name, rule in pack.rules():
        section = getattr(pack, section_name)
        check_cls = get_check(rule.check)
        outcome = _run(check_cls, rule, facts, section)
        status = outcome.status
        if status == Status.fail and rule.severity == "warn":
            status = Status.warn
        position = loaded.rule_position(rule.id)
        results.append(
            RuleResult(
                rule_id=rule.id,
                section=section_name,
                check=rule.check,
                description=rule.description,
                legal_reference=rule.legal_reference,
                severity=rule.severity,
                status=status,
                message=outcome.message,
                value=outcome.value,
                threshold=outcome.threshold,
                evidence=outcome.evidence,
                line=position[0] if position else None,
            )
        )
    # Not a rule of the pack: item-table harm categories it does not know are an error of the data against its
    # vocabulary (a flag that would block nothing), reported and blocking whatever rules the pack has.
    vocabulary = vocabulary_result(pack, facts.dataset.get("item_harm_categories"))
    if vocabulary is not None:
        results.append(RuleResult(**vocabulary))
    return AuditReport(
        pack=loaded.name,
        pack_version=loaded.version,
        pack_hash=loaded.content_hash,
        pack_source=loaded.source,
        model_version=model_version,
        dataset_version=dataset_version,
        shadow=shadow,
        results=results,
    )
