"""Silent failures of the offline evaluation: a split that leaks the future, labels built wrongly.

Both make the figures wrong without an error. The audit measures them from
the evaluation's own split (:mod:`governance.collect_split`, with
:mod:`recommender.split_audit`'s independent code) and these checks hold the
counts to zero, or to the pack's stated tolerance.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from governance.checks._base import CheckConfig, skipped, verdict
from governance.facts import AuditFacts
from governance.registry import Check, CheckResult, register

__all__ = ["LabelConstruction", "TemporalLeakage"]


@register
class TemporalLeakage(Check):
    """No training event is dated after the test labels the model is evaluated against."""

    name: ClassVar[str] = "temporal_leakage"
    section: ClassVar[str] = "data"
    needs: ClassVar[tuple[str, ...]] = ("temporal",)
    summary: ClassVar[str] = "Training events dated after test labels (the split looks ahead) stay within `max_share`."

    class Config(CheckConfig):
        scope: Literal["global", "per_user"] = "global"
        """``global``: no training event after the earliest test label of anybody (a global time split; what
        claims about the future need). ``per_user``: none after its own user's earliest test label (tolerates
        a leave-last split's cross-user look-ahead)."""
        max_share: float = Field(0.0, ge=0, le=1)
        """Largest acceptable share of training events dated after the labels in scope."""

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        t = facts.temporal
        if t is None:
            return skipped("no split measurement in the audit facts")
        if t.n_test_labels == 0:
            return skipped(f"the {t.split} split has no test label to leak into")
        if not t.measurable or t.after_any_label_share is None or t.after_own_label_share is None:
            message = f"look-ahead cannot be ruled out ({t.split} split): {t.reason or 'the events cannot be placed in time'}"
            return verdict(False, message, threshold=config.max_share, evidence=t.model_dump(mode="json"))
        count, share = (
            (t.after_any_label, t.after_any_label_share) if config.scope == "global" else (t.after_own_label, t.after_own_label_share)
        )
        whose = "the earliest test label" if config.scope == "global" else "their user's earliest test label"
        message = (
            f"{count:,} of {t.n_train_events:,} training events ({share:.4%}) are dated after {whose} "
            f"({t.split} split); allowed {config.max_share:.4%}"
        )
        return verdict(share <= config.max_share, message, value=share, threshold=config.max_share, evidence=t.model_dump(mode="json"))

    @classmethod
    def threshold_bounds(cls, config: Config) -> list[tuple[str, float, float, float]]:
        return [("max_share", float(config.max_share), 0.0, 1.0)] if config.max_share > 0 else []


@register
class LabelConstruction(Check):
    """The test labels are what the declared feedback makes of the test events, none is a training positive,
    and no user is counted in the metrics without one."""

    name: ClassVar[str] = "label_construction"
    section: ClassVar[str] = "data"
    needs: ClassVar[tuple[str, ...]] = ("labels",)
    summary: ClassVar[str] = (
        "Test labels: none in training, none from other event types or thresholds, none missing, no user counted without one."
    )

    class Config(CheckConfig):
        max_test_labels_in_train: int = Field(0, ge=0)
        """Test labels that are training positives (a seen item rewarded)."""
        max_undeclared_labels: int = Field(0, ge=0)
        """Test labels the declared event weights and rating threshold do not make."""
        max_missing_labels: int = Field(0, ge=0)
        """Declared positives of known users and items left out of the test labels."""
        max_users_without_labels: int = Field(0, ge=0)
        """Users counted in a model's metrics with an empty label set (they drag every mean down)."""

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        lab = facts.labels
        if lab is None:
            return skipped("no label measurement in the audit facts")
        worst_empty = max(lab.users_without_labels.values(), default=0)
        figures = {
            "test_labels_in_train": (lab.test_labels_in_train, config.max_test_labels_in_train),
            "undeclared_labels": (lab.undeclared_labels, config.max_undeclared_labels),
            "missing_labels": (lab.missing_labels, config.max_missing_labels),
            "users_without_labels": (worst_empty, config.max_users_without_labels),
        }
        over = {name: {"count": v, "limit": lim} for name, (v, lim) in figures.items() if v > lim}
        if over:
            message = f"{len(over)} label fault(s) over {lab.n_test_labels:,} test labels: " + ", ".join(
                f"{name} {v['count']:,} > {v['limit']:,}" for name, v in over.items()
            )
        else:
            message = f"{lab.n_test_labels:,} test labels as declared: none in training, none undeclared or missing, every counted user has one"
        return verdict(
            not over, message, value=sum(v["count"] for v in over.values()), threshold=0,
            evidence={"over_limit": over, **lab.model_dump(mode="json")},
        )  # fmt: skip
