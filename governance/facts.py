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

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ModelFacts",
    "EvaluationFacts",
    "ValidationFacts",
    "DriftFacts",
    "MinimizationFacts",
    "CarbonFacts",
    "PrivacyFacts",
    "OffPolicyFacts",
    "OffPolicyFigure",
    "AuditFacts",
    "AnnFacts",
    "AnnBlocking",
    "TemporalFacts",
    "LabelFacts",
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
    input_sources: dict[str, str] = Field(default_factory=dict)
    """Model input -> the source column it was read from, where a column mapping renamed it."""
    trained_input_sources: dict[str, str] = Field(default_factory=dict)
    """What the audited model's fit read -> the column it read it from, as its training run recorded them (the
    renamed columns and the item-table columns its parameters name): the model was fitted on those, whatever
    the data given to the audit. Empty for a run recorded before runs kept them."""
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
    training_filter: dict[str, Any] | None = None
    """The consent and retention filter applied to the audited model's training data
    (:func:`governance.privacy.filter_training_events`: pack, cutoff, counts kept and
    excluded by reason); None when the model was trained without one."""
    model_trained: bool = False
    """Whether the audit concerns a trained model (the filter facts are meaningful)."""
    overdue_requests: dict[str, int] | None = None
    """Subject requests past their deadline, by kind (``erasure``, ``access``, ``objection``, ``retrain``)."""


Interval = tuple[float | None, float | None]
"""A bootstrap confidence interval ``[low, high]`` (None where undefined)."""


class GroupFigure(_Facts):
    """A figure of one group, with its bootstrap confidence interval."""

    n: int
    """Users in the group."""
    value: float | None
    ci: Interval | None = None
    sd: float | None = None
    """Sample standard deviation (``ddof=1``) of the group's per-user values: with ``n`` and ``value``,
    what the test of a gap between two groups reads (facts written by hand may leave it out; the
    standard error then comes from ``ci``)."""


class GroupGap(_Facts):
    """The gap between two user groups on one metric; ``higher`` has the larger value."""

    higher: str
    lower: str
    difference: float | None
    """``value(higher) - value(lower)``."""
    difference_ci: Interval | None = None
    ratio: float | None
    """``value(lower) / value(higher)`` (None when both are 0)."""
    ratio_ci: Interval | None = None


class GroupMetricFacts(_Facts):
    """One per-user metric across the groups of one audit attribute (fairlearn MetricFrame)."""

    overall: float | None = None
    groups: dict[str, GroupFigure] = Field(default_factory=dict)
    difference: float | None = None
    """``max - min`` over the groups of the attribute (``missing``, the users without it, left out)."""
    difference_ci: Interval | None = None
    ratio: float | None = None
    """``min / max`` over the groups of the attribute (``missing`` left out)."""
    ratio_ci: Interval | None = None
    pairs: list[GroupGap] = Field(default_factory=list)
    """Every pair of groups (a rule judges the pairs of groups large enough)."""


class ParityFacts(_Facts):
    """Disparate impact and statistical parity difference against one privileged group (aif360)."""

    disparate_impact: float | None = None
    """``P(hit | every other group) / P(hit | privileged)``."""
    disparate_impact_ci: Interval | None = None
    statistical_parity_difference: float | None = None
    """``P(hit | every other group) - P(hit | privileged)``."""
    statistical_parity_difference_ci: Interval | None = None
    groups: dict[str, "ParityFacts"] = Field(default_factory=dict)
    """The same figures for each other group alone (their own ``groups`` stay empty)."""


class OutcomeFacts(_Facts):
    """The binary outcome "a relevant item in the top k" across the groups of one audit attribute."""

    positive_rate: dict[str, GroupFigure] = Field(default_factory=dict)
    parity: dict[str, ParityFacts] = Field(default_factory=dict)
    """Privileged group -> parity of the other groups against it."""


class ProviderGroupFacts(_Facts):
    """Exposure of one provider group under one attention model."""

    n_items: int
    item_share: float | None = None
    exposure_share: float | None = None
    """Mean over users of the share of their attention on the group's items."""
    exposure_share_ci: Interval | None = None
    relevance_share: float | None = None
    """Mean over users of the share of their test positives among the group's items."""
    relevance_share_ci: Interval | None = None
    exposure_ratio: float | None = None
    """``exposure_share / relevance_share``: 1 is exposure in proportion to relevance."""
    exposure_ratio_ci: Interval | None = None
    coverage: float | None = None
    """Share of the group's items shown to at least one user."""
    gini: float | None = None
    """Gini of item exposure within the group."""


class ExposureFacts(_Facts):
    """Item exposure under one attention model."""

    gini: float | None = None
    """Gini of item exposure over the catalog."""
    coverage: float | None = None
    groups: dict[str, ProviderGroupFacts] = Field(default_factory=dict)
    """Provider group -> figures (empty without a provider attribute)."""


class StratumFacts(_Facts):
    """Recall on the test positives of one popularity stratum (pooled over users)."""

    n_items: int
    n_positives: int
    n_hits: int
    recall: float | None = None
    recall_ci: Interval | None = None


class PopularityFacts(_Facts):
    """Popularity bias of the audited model's lists."""

    arp: float | None = None
    """Average recommendation popularity (training users per listed item)."""
    profile_popularity: float | None = None
    """The same over the users' own training positives."""
    catalog_popularity: float | None = None
    """Mean training popularity of a catalog item."""
    arp_ratio: float | None = None
    """``arp / profile_popularity``."""
    arp_ratio_ci: Interval | None = None
    arp_catalog_ratio: float | None = None
    """``arp / catalog_popularity``."""
    long_tail_share: float | None = None
    long_tail_share_ci: Interval | None = None
    profile_long_tail_share: float | None = None
    strata: dict[str, StratumFacts] = Field(default_factory=dict)
    """``head``, ``mid``, ``tail`` -> recall on their test positives."""
    recall_gap: float | None = None
    """``max - min`` stratified recall."""
    recall_gap_ci: Interval | None = None


class CalibrationFacts(_Facts):
    """Steck's miscalibration of the lists against the users' histories, over item categories."""

    mean_kl: float | None = None
    mean_kl_ci: Interval | None = None
    alpha: float = 0.01
    n_users: int = 0


class FairnessFacts(_Facts):
    """The fairness audit of the audited model's ranked lists (:mod:`governance.collect_fairness`)."""

    model: str = ""
    k: int = 10
    n_users: int = 0
    """Evaluated users (those with a test positive)."""
    confidence: float = 0.95
    n_boot: int = 1000
    relevance: str = "test_positives"
    """What "relevance" means in disparate exposure: each user's held-out test positives."""
    consumer: dict[str, dict[str, GroupMetricFacts]] = Field(default_factory=dict)
    """Audit attribute -> metric (``ndcg``, ``recall``, ``hit_rate``) -> figures by group."""
    outcomes: dict[str, OutcomeFacts] = Field(default_factory=dict)
    """Audit attribute -> the hit outcome by group, disparate impact and parity."""
    provider_attribute: str | None = None
    items_without_provider: int = 0
    """Catalog items with no value of the provider attribute: their exposure is reported under the
    group ``missing`` and never judged as a provider group's."""
    exposure: dict[str, ExposureFacts] = Field(default_factory=dict)
    """Attention model (``log``, ``uniform``, ``geometric(0.8)``) -> exposure figures."""
    popularity: PopularityFacts | None = None
    calibration: CalibrationFacts | None = None
    unavailable: dict[str, str] = Field(default_factory=dict)
    """What could not be computed (an attribute, ``provider``, ``calibration``) -> why."""
    groups: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """When the pack declares bins, intersections or literature metrics: audit attribute (or
    intersection) -> the census of its groups (size, judged or not, and why not)."""
    literature: dict[str, Any] | None = None
    """When the pack asks (``fairness.literature_metrics``): the metrics the literature cites, by name
    (:mod:`governance.collect_literature`)."""


class OffPolicyFigure(_Facts):
    """One off-policy figure: a value with its interval, or a refusal with its reason (refused: missing evidence)."""

    value: float | None = None
    ci: Interval | None = None
    refused: bool = False
    reason: str | None = None


class OffPolicyFacts(_Facts):
    """A candidate pack estimated off-policy on the lists served under the logged pack (:mod:`governance.ope`)."""

    logged_pack: str
    """``name version`` of the pack the logged lists were served under."""
    target_pack: str
    """``name version`` of the candidate."""
    decisions_used: int = 0
    confidence: float = 0.95
    logged: dict[str, OffPolicyFigure] = Field(default_factory=dict)
    """Outcome kind -> the logged policy's mean outcomes per list (what was served)."""
    differences: dict[str, dict[str, OffPolicyFigure]] = Field(default_factory=dict)
    """Outcome kind -> estimator -> the candidate's mean outcomes per list minus the logged policy's, with a paired
    bootstrap interval over the logged lists (or the estimate's refusal)."""
    exposure: dict[str, dict[str, OffPolicyFigure]] = Field(default_factory=dict)
    """Provider group -> ``logged_policy``, ``target`` (its estimated share of attention under the candidate) and
    ``difference`` (target - logged)."""


class AnnBlocking(_Facts):
    """Which items the audited ANN lists had to leave out, so ``blocked_returned`` is a measurement, not a given."""

    measured_on: Literal["store", "planted_sample"]
    """``store``: the store's blocked, under-review and unavailable items the model knows; ``planted_sample``: a
    seeded sample of the model's items (``share`` of them) planted as blocked, when the store gave none."""
    n_blocked: int
    """Items the index had to leave out of every list."""
    share: float
    """``n_blocked`` over the model's items."""


class AnnFacts(_Facts):
    """Approximate nearest-neighbour candidates against exact search (:mod:`governance.collect_ann`)."""

    recall_at_k: float | None
    """Share of the exact filtered top-k items (seen items removed) that the ANN lists hold, pooled over users; an
    item whose score ties the exact k-th score counts as one of them (:func:`recommender.ann.recall_with_ties`)."""
    k: int
    index: str
    """``hnsw``, ``ivf_flat`` or ``flat``."""
    n_items: int
    n_queries: int = 0
    """Test users whose lists were compared."""
    params: dict[str, Any] = Field(default_factory=dict)
    """The index's parameters (``hnsw_m``, ``ef_search``, ``nlist``, ``nprobe``, ...)."""
    speedup: float | None = None
    """Exact search time over ANN search time on the same queries (indicative: small audits favour exact search)."""
    short_lists: int = 0
    """ANN lists shorter than the exact list of the same user (filtering that failed to refill)."""
    blocked_returned: int = 0
    """Blocked items returned by the ANN lists."""
    exact_fallbacks: int = 0
    """Users whose list the index could not fill (filtering left too few candidates after every round), so exact
    search answered: ``recall_at_k`` counts those lists, exact by construction, as the index's."""
    index_recall_at_k: float | None = None
    """Recall@k over the users the index answered itself (None when exact search answered every one)."""
    blocking: AnnBlocking | None = None
    """The blocked items the lists were measured with (None: none, so ``blocked_returned`` says nothing)."""


class TemporalFacts(_Facts):
    """Training events dated after the test labels they are evaluated against (:mod:`recommender.split_audit`)."""

    split: str
    """The split protocol of the evaluation (``random``, ``time``, ``leave_last``)."""
    n_train_events: int
    n_test_labels: int
    """Test events that are positives of the declared feedback."""
    after_any_label: int | None = None
    """Training events strictly after the earliest test label of any user (cross-user look-ahead)."""
    after_own_label: int | None = None
    """Training events strictly after their own user's earliest test label."""
    after_any_label_share: float | None = None
    after_own_label_share: float | None = None
    first_label_time: str | None = None
    measurable: bool = True
    """False when the events' times cannot place them (a missing or unreadable timestamp, no timestamp
    column): the counts are then None and look-ahead cannot be ruled out."""
    reason: str | None = None
    """Why the leakage is not measurable (None when it is)."""


class LabelFacts(_Facts):
    """The evaluation's test labels against the declared feedback (:func:`recommender.split_audit.label_audit`)."""

    n_test_labels: int
    """(user, item) labels of the test matrix."""
    test_labels_in_train: int
    """Test labels that are training positives."""
    undeclared_labels: int
    """Test labels the declared event weights and rating threshold do not make of the test events."""
    missing_labels: int
    """Declared positives (known user and item, not a training positive) absent from the test matrix."""
    users_without_labels: dict[str, int] = Field(default_factory=dict)
    """Model -> users counted in its metrics with an empty label set."""
    users_counted: dict[str, int] = Field(default_factory=dict)
    """Model -> users counted in its metrics."""


class AuditFacts(_Facts):
    """Everything an audit knows; each group is optional."""

    dataset: dict[str, Any] = Field(default_factory=dict)
    """Name, content hash and sizes of the audited dataset."""
    evaluation: EvaluationFacts | None = None
    validation: ValidationFacts | None = None
    drift: DriftFacts | None = None
    minimization: MinimizationFacts | None = None
    carbon: CarbonFacts | None = None
    fairness: FairnessFacts | None = None
    privacy: PrivacyFacts | None = None
    off_policy: OffPolicyFacts | None = None
    """A candidate pack estimated on the decision log (``recgov ope --gate``, ``POST /v1/ope``)."""
    tradeoff: dict[str, Any] | None = None
    """When the pack re-ranks served lists: the re-ranking's trade-off side by side with the plain
    model's lists (:func:`governance.tradeoff.tradeoff_summary`: accuracy, beyond-accuracy, provider
    exposure, consumer gaps, constraints met), plus ``plain_fairness``, the fairness facts of the plain
    lists (``fairness`` then holds those of the served, re-ranked lists)."""
    ann: AnnFacts | None = None
    """When the pack judges ANN candidates (an ``ann_recall`` rule): the index's recall against exact search."""
    temporal: TemporalFacts | None = None
    """When the pack judges the split (a ``temporal_leakage`` rule): training events dated after test labels."""
    labels: LabelFacts | None = None
    """When the pack judges the labels (a ``label_construction`` rule): the test labels against the declared feedback."""
