"""The pack's ``lifecycle`` section: what monitoring watches, what opens a retrain, how a canary is judged, when a model retires.

Declared in the pack (policy is data), validated with the rest of it, so that a
bound is reviewed, hashed and stamped like any rule, and a mistake is reported
with its file, line and path (:func:`governance.located.validate_located`).

A trigger is one of a closed set of kinds (a discriminated union on ``kind``):
a pack names what to watch, never code. Each has a stable ``id`` that names the
tickets it opens and the alerting rule generated from it.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "MONITOR_METRICS",
    "CanaryPolicy",
    "Guardrail",
    "LifecycleSection",
    "RetirementPolicy",
    "Trigger",
]

TRIGGER_ID = r"^[a-z0-9][a-z0-9_.-]{0,63}$"

MonitorMetric = Literal[
    "click_rate",
    "conversion_rate",
    "coverage",
    "exposure_gini",
    "long_tail_share",
    "served_popularity",
    "non_profiling_share",
    "provider_gap",
    "harmful_share",
    "failure_rate",
    "input_drift_psi",
    "prediction_skew_ks",
    "prediction_skew_psi",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
]
MONITOR_METRICS: tuple[str, ...] = get_args(MonitorMetric)
"""Every figure a monitoring pass computes per model version and window (see :mod:`governance.monitoring`)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)  # finite numbers only


class _TriggerBase(_Strict):
    id: str = Field(pattern=TRIGGER_ID)
    """Stable name: it names the tickets this trigger opens and the alerting rule generated from it."""
    description: str = ""


class InputDriftTrigger(_TriggerBase):
    """The interactions recorded as feedback have drifted from the training data's profile."""

    kind: Literal["input_drift"]
    max_psi: float = Field(0.25, gt=0, le=10)
    """Population stability index of the events' spread over the training data's item-popularity deciles above which it fires."""
    min_events: int = Field(200, ge=1)
    """Fewer feedback events than this in the window decide nothing."""


class PerformanceTrigger(_TriggerBase):
    """Online performance is below the model's offline baseline, with confidence (one-sided binomial test)."""

    kind: Literal["performance_drop"]
    metric: Literal["click_rate", "conversion_rate"] = "click_rate"
    """Per served item: the share of served items clicked (or converted) by the subject they were served to."""
    min_drop: float = Field(0.2, gt=0, lt=1)
    """Relative drop below the offline baseline (hit rate at the served length) that matters: 0.2 is 20 % below."""
    confidence: float = Field(0.95, gt=0.5, lt=1)
    """Fires only if the rate is below ``baseline * (1 - min_drop)`` with this confidence."""
    min_served: int = Field(200, ge=1)
    """Fewer served items than this in the window decide nothing."""


class SkewTrigger(_TriggerBase):
    """Online scores differ from the scores the model gave in its offline evaluation."""

    kind: Literal["prediction_skew"]
    max_ks: float = Field(0.3, gt=0, le=1)
    """Two-sample Kolmogorov-Smirnov statistic of served scores against offline scores above which it fires."""
    min_scores: int = Field(100, ge=1)


class ExposureTrigger(_TriggerBase):
    """A fairness or exposure figure of the served lists has regressed past a bound."""

    kind: Literal["exposure_regression"]
    metric: Literal["provider_gap", "exposure_gini", "harmful_share", "long_tail_share", "coverage"] = "provider_gap"
    max: float | None = None
    """Fires when the figure is above this (for gaps, concentration, harm)."""
    min: float | None = None
    """Fires when the figure is below this (for shares and coverage)."""
    min_decisions: int = Field(100, ge=1)

    @model_validator(mode="after")
    def _one_bound(self) -> ExposureTrigger:
        if (self.max is None) == (self.min is None):
            raise ValueError(f"trigger {self.id}: give exactly one of 'max' or 'min' for {self.metric}")
        return self


class StalenessTrigger(_TriggerBase):
    """The production model was trained too long ago."""

    kind: Literal["staleness"]
    max_days: float = Field(gt=0, le=3660)


class ScheduleTrigger(_TriggerBase):
    """Retrain on a schedule, whatever the figures: at most once per period."""

    kind: Literal["schedule"]
    every_days: float = Field(gt=0, le=3660)


class ErasureTrigger(_TriggerBase):
    """Retrains owed to erasures (GDPR Art. 17) are open: a retrain without the erased subjects is due."""

    kind: Literal["erasure_retrains"]
    within_days: float = Field(7, ge=0, le=365)
    """Fires when an open erasure retrain's deadline is this close (0: only once it is overdue)."""


Trigger = Annotated[
    Union[InputDriftTrigger, PerformanceTrigger, SkewTrigger, ExposureTrigger, StalenessTrigger, ScheduleTrigger, ErasureTrigger],  # noqa: UP007
    Field(discriminator="kind"),
]


class Guardrail(_Strict):
    """A bound the canary must hold over its watch before it may be promoted."""

    metric: MonitorMetric
    max: float | None = None
    """The canary's figure must not exceed this."""
    min: float | None = None
    """The canary's figure must not fall below this."""

    @model_validator(mode="after")
    def _one_bound(self) -> Guardrail:
        if (self.max is None) == (self.min is None):
            raise ValueError(f"guardrail on {self.metric}: give exactly one of 'max' or 'min'")
        return self


class CanaryPolicy(_Strict):
    """How long a retrained model serves as canary, on how much traffic, and what it must hold."""

    hours: float = Field(24, gt=0, le=24 * 90)
    """The watch lasts this long from the move to canary (time as the decisions record it)."""
    share: float = Field(0.1, gt=0, lt=1)
    """Share of subjects served by the canary (the serving layer's canary bucket)."""
    min_decisions: int = Field(50, ge=1)
    """The canary must have served at least this many lists before it can be judged; fewer at the end of the watch rolls it back."""
    guardrails: list[Guardrail] = Field(default_factory=list)


class RetirementPolicy(_Strict):
    """When a deployed model is taken out of serving, whatever else holds."""

    max_age_days: float | None = Field(None, gt=0, le=3660)
    """Retire a model trained longer ago than this."""
    min_click_rate: float | None = Field(None, ge=0, le=1)
    """Retire a model whose click rate in the latest window is below this."""
    erasure_overdue: bool = True
    """Retire a model that an erasure retrain still owes past its deadline (it holds erased subjects' data)."""
    superseded_days: float | None = Field(None, ge=0, le=3660)
    """Retire a model displaced from production (kept in shadow for rollback) longer ago than this."""


class LifecycleSection(_Strict):
    """Monitoring windows, retrain triggers, the canary's watch and retirement criteria."""

    window_hours: float = Field(24, gt=0, le=24 * 90)
    """Each monitoring pass looks at the decisions and feedback of this many hours up to its time."""
    baseline_filter_seen: bool = True
    """Whether the offline baseline's lists leave out items the subject engaged with before, as served lists do;
    false where lists repeat them (repeat-consumption catalogues): the baseline must be measured as lists are served."""
    triggers: list[Trigger] = Field(default_factory=list)  # type: ignore[valid-type]
    canary: CanaryPolicy = Field(default_factory=CanaryPolicy)
    retirement: RetirementPolicy = Field(default_factory=RetirementPolicy)

    @model_validator(mode="after")
    def _unique_ids(self) -> LifecycleSection:
        ids = [t.id for t in self.triggers]
        if len(set(ids)) < len(ids):
            raise ValueError(f"lifecycle.triggers: ids must be unique, got {sorted({i for i in ids if ids.count(i) > 1})}")
        return self
