"""Audit facts: everything a check may read, as plain data.

Like a policy engine's input document, the facts are computed once from the
data, the model and the measurements (:mod:`governance.collect`), and the checks
only compare them with their thresholds. Because facts are data, a pack's fixture
cases (``recgov policy test``) can state them directly, and an audit's evidence is
exactly the facts its checks read.

Every group is optional; a check that needs a group that is absent is
``skipped`` with the reason.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ModelFacts",
    "EvaluationFacts",
    "ValidationFacts",
    "DriftFacts",
    "MinimizationFacts",
    "CarbonFacts",
    "PrivacyFacts",
    "AuditFacts",
]


class _Facts(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelFacts(_Facts):
    """Offline metrics of one model (or of logged slates)."""

    metrics: dict[str, float | None] = Field(default_factory=dict)
    """Accuracy means at k: precision, recall, ndcg, map, hit_rate, mrr."""
    beyond: dict[str, float | None] = Field(default_factory=dict)
    """Beyond-accuracy figures: coverage, exposure_gini, novelty, ..."""
    segments: dict[str, dict[str, dict[str, float | None]]] = Field(default_factory=dict)
    """Segment -> group -> metric -> mean (plus ``n_users``)."""
    n_test_users: int | None = None


class EvaluationFacts(_Facts):
    """The offline evaluation of the audited model next to its baselines."""

    k: int = 10
    subject: str = "als"
    """The label of the audited model among ``models``."""
    models: dict[str, ModelFacts] = Field(default_factory=dict)


class ValidationFacts(_Facts):
    """The raw-log validation report, reduced to counts and shares per finding."""

    n_rows: int
    findings: dict[str, dict[str, float]] = Field(default_factory=dict)
    """Finding code -> ``{"count": ..., "share": ...}``."""


class DriftFacts(_Facts):
    """Distribution shift of the current data against a baseline dataset version."""

    baseline: str = ""
    """The baseline's name or content hash."""
    features: dict[str, dict[str, float]] = Field(default_factory=dict)
    """Feature (``user_activity``, ``item_popularity``) -> ``{"psi": ..., "ks": ...}``."""


class MinimizationFacts(_Facts):
    """What the model was actually given, for the data-minimization checks."""

    purpose: str = "personalization"
    model_inputs: list[str] = Field(default_factory=list)
    """Every field the training path read into the model."""
    dataset_columns: list[str] = Field(default_factory=list)
    """Every column the dataset offers (events, user attributes, item metadata)."""


class CarbonFacts(_Facts):
    """Energy and emissions of the training (and audit) run, from codecarbon."""

    energy_kwh: float
    emissions_kg: float
    duration_s: float
    country_iso_code: str | None = None
    method: str = ""
    """How it was measured (codecarbon's tracking mode and power sources)."""


class PrivacyFacts(_Facts):
    """Privacy measurements: how much protected attributes leak through what the model learned."""

    proxy: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Attribute -> ``{"auc": ..., "n": ..., "groups": {...}}``: cross-validated AUC of
    predicting the attribute from the model's user factors."""


class AuditFacts(_Facts):
    """Everything an audit knows; each group is optional."""

    dataset: dict[str, Any] = Field(default_factory=dict)
    """Name, content hash and sizes of the audited dataset."""
    evaluation: EvaluationFacts | None = None
    validation: ValidationFacts | None = None
    drift: DriftFacts | None = None
    minimization: MinimizationFacts | None = None
    carbon: CarbonFacts | None = None
    privacy: PrivacyFacts | None = None
