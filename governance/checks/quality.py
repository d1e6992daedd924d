"""Quality checks: metric bounds, lift over the popularity baseline, consistency across segments."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from governance.checks._base import CheckConfig, skipped, verdict
from governance.facts import AuditFacts
from governance.registry import Check, CheckResult, register

__all__ = ["MetricBound", "BaselineLift", "SegmentConsistency"]

ACCURACY = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")
BEYOND = ("coverage", "exposure_gini", "exposure_gini_weighted", "novelty", "intra_list_diversity", "average_popularity", "long_tail_share")
Metric = Literal[
    "precision", "recall", "ndcg", "map", "hit_rate", "mrr",
    "coverage", "exposure_gini", "exposure_gini_weighted", "novelty", "intra_list_diversity", "average_popularity", "long_tail_share",
]  # fmt: skip
UNIT_RANGE = set(ACCURACY) | {"coverage", "exposure_gini", "exposure_gini_weighted", "intra_list_diversity", "long_tail_share"}
MISSING_SEGMENT = "missing"
"""The evaluation's group of users whose segment attribute is missing (:mod:`recommender.evaluate`): never judged."""
NO_EVALUATION = "no offline evaluation in the audit facts (audit with a dataset, or give evaluation facts)"


def metric_value(facts: AuditFacts, model: str | None, metric: str) -> tuple[float | None, str]:
    """The value of ``metric`` for ``model`` (the audited model when None)."""
    ev = facts.evaluation
    assert ev is not None
    label = model or ev.subject
    figures = ev.models.get(label)
    if figures is None:
        return None, label
    value = figures.metrics.get(metric, figures.beyond.get(metric))
    return value, label


def not_measured(facts: AuditFacts, label: str, metric: str) -> str:
    """Why ``metric`` of model ``label`` has no value: the model is not in the evaluation, it was measured on no test
    user (too little data for the split to hold any test positive), or the metric itself is missing."""
    ev = facts.evaluation
    figures = ev.models.get(label) if ev is not None else None
    if figures is not None and figures.n_test_users == 0:
        return (f"model {label!r} was evaluated on no test user (the split held no test positive: too little data); "
                f"metric {metric!r} is not measured")
    return f"metric {metric!r} of model {label!r} is not in the evaluation"


@register
class MetricBound(Check):
    """An offline metric of the audited model stays within bounds."""

    name: ClassVar[str] = "metric_bound"
    section: ClassVar[str] = "quality"
    needs: ClassVar[tuple[str, ...]] = ("evaluation",)
    summary: ClassVar[str] = "A metric of the audited model (or a named one) is at least `min` and at most `max`."

    class Config(CheckConfig):
        metric: Metric
        """The metric at the pack's k (accuracy) or over all lists (beyond accuracy)."""
        min: float | None = None
        """Lowest acceptable value."""
        max: float | None = None
        """Highest acceptable value."""
        model: str | None = None
        """The model label; default: the audited model."""

        @model_validator(mode="after")
        def _one_bound(self) -> "MetricBound.Config":
            if self.min is None and self.max is None:
                raise ValueError("give at least one of min and max")
            if self.min is not None and self.max is not None and self.min > self.max:
                raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
            return self

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        if facts.evaluation is None:
            return skipped(NO_EVALUATION)
        value, label = metric_value(facts, config.model, config.metric)
        if value is None:
            return skipped(not_measured(facts, label, config.metric))
        low_ok = config.min is None or value >= config.min
        high_ok = config.max is None or value <= config.max
        bound = " and ".join(
            part for part in (f">= {config.min}" if config.min is not None else "", f"<= {config.max}" if config.max is not None else "") if part
        )
        name = f"{config.metric}@{facts.evaluation.k}" if config.metric in ACCURACY else config.metric
        return verdict(
            low_ok and high_ok,
            f"{name} of {label} is {value:.4f}; required {bound}",
            value=value,
            threshold=bound,
            evidence={"model": label, "metric": config.metric, "k": facts.evaluation.k},
        )

    @classmethod
    def threshold_bounds(cls, config: Config) -> list[tuple[str, float, float, float]]:
        if config.metric not in UNIT_RANGE:
            return []
        out = []
        if config.min is not None:
            out.append(("min", config.min, 0.0, 1.0))
        if config.max is not None:
            out.append(("max", config.max, 0.0, 1.0))
        return out


@register
class BaselineLift(Check):
    """The audited model beats a baseline by a factor."""

    name: ClassVar[str] = "baseline_lift"
    section: ClassVar[str] = "quality"
    needs: ClassVar[tuple[str, ...]] = ("evaluation",)
    summary: ClassVar[str] = "metric(audited model) / metric(baseline) is at least `min_ratio`."

    class Config(CheckConfig):
        metric: Literal["precision", "recall", "ndcg", "map", "hit_rate", "mrr"] = "ndcg"
        """The accuracy metric compared."""
        baseline: str = "popularity"
        """The baseline model label (``popularity`` or ``random``)."""
        min_ratio: float = Field(1.0, gt=0)
        """Smallest acceptable ratio model / baseline."""

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        if facts.evaluation is None:
            return skipped(NO_EVALUATION)
        value, label = metric_value(facts, None, config.metric)
        base, _ = metric_value(facts, config.baseline, config.metric)
        if value is None or base is None:
            missing = label if value is None else config.baseline
            return skipped(not_measured(facts, missing, config.metric))
        if base <= 0:
            ok = value > 0
            return verdict(ok, f"{config.baseline} scores 0 on {config.metric}; {label} scores {value:.4f}", value=None, threshold=config.min_ratio,
                           evidence={"model": value, "baseline": base})
        ratio = value / base
        return verdict(
            ratio >= config.min_ratio,
            f"{config.metric}@{facts.evaluation.k} of {label} is {ratio:.3f}x {config.baseline}'s ({value:.4f} vs {base:.4f}); required >= {config.min_ratio}x",
            value=ratio,
            threshold=config.min_ratio,
            evidence={"model": label, "baseline": config.baseline, "model_value": value, "baseline_value": base},
        )


@register
class SegmentConsistency(Check):
    """A metric is consistent across the groups of a user segment."""

    name: ClassVar[str] = "segment_consistency"
    section: ClassVar[str] = "quality"
    needs: ClassVar[tuple[str, ...]] = ("evaluation",)
    summary: ClassVar[str] = "The worst group's metric is at least `min_ratio` of the best group's, and the gap at most `max_gap`."

    class Config(CheckConfig):
        metric: Literal["precision", "recall", "ndcg", "map", "hit_rate", "mrr"] = "ndcg"
        """The accuracy metric compared across groups."""
        segment: str = "activity"
        """The segment: ``activity`` (light/medium/heavy) or a user attribute."""
        min_ratio: float | None = Field(None, ge=0, le=1)
        """Smallest acceptable worst/best ratio."""
        max_gap: float | None = Field(None, ge=0, le=1)
        """Largest acceptable best - worst difference."""
        min_group_size: int = Field(20, ge=1)
        """Groups with fewer evaluated users are left out (too noisy to judge)."""

        @model_validator(mode="after")
        def _one_bound(self) -> "SegmentConsistency.Config":
            if self.min_ratio is None and self.max_gap is None:
                raise ValueError("give at least one of min_ratio and max_gap")
            return self

    def evaluate(self, config: Config, facts: AuditFacts, section: Any) -> CheckResult:
        if facts.evaluation is None:
            return skipped(NO_EVALUATION)
        ev = facts.evaluation
        figures = ev.models.get(ev.subject)
        groups = (figures.segments if figures else {}).get(config.segment)
        if not groups:
            return skipped(f"segment {config.segment!r} is not in the evaluation of {ev.subject!r}")
        values = {
            g: v[config.metric]
            for g, v in groups.items()
            if v.get(config.metric) is not None and (v.get("n_users") or 0) >= config.min_group_size
            and g != MISSING_SEGMENT  # the users without the attribute: reported, never judged as a group
        }
        if len(values) < 2:
            return skipped(f"segment {config.segment!r} has fewer than two groups with {config.min_group_size}+ users")
        best_group = max(values, key=values.__getitem__)
        worst_group = min(values, key=values.__getitem__)
        best, worst = values[best_group], values[worst_group]
        ratio = worst / best if best > 0 else 1.0
        gap = best - worst
        ok = (config.min_ratio is None or ratio >= config.min_ratio) and (config.max_gap is None or gap <= config.max_gap)
        required = " and ".join(
            p for p in (f"ratio >= {config.min_ratio}" if config.min_ratio is not None else "", f"gap <= {config.max_gap}" if config.max_gap is not None else "") if p
        )
        return verdict(
            ok,
            f"{config.metric}@{ev.k} by {config.segment}: worst {worst_group} {worst:.4f}, best {best_group} {best:.4f} "
            f"(ratio {ratio:.3f}, gap {gap:.4f}); required {required}",
            value=ratio if config.min_ratio is not None else gap,
            threshold=required,
            evidence={"segment": config.segment, "groups": values, "worst": worst_group, "best": best_group},
        )

    @classmethod
    def attributes(cls, config: Config) -> list[str]:
        return [] if config.segment == "activity" else [config.segment]
