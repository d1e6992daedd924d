"""Compute the fairness facts of an audit from the dataset and the audited model's evaluation.

The offline evaluation (:func:`recommender.evaluate.evaluate_model`) keeps, for
every evaluated user, the top-k list and the per-user metrics. This module
joins them with the attributes the pack's fairness section names and reduces
them with :mod:`recommender.fairness` to plain figures
(:class:`~governance.facts.FairnessFacts`) that the fairness checks compare
with their thresholds.

Audit-only attributes (``fairness.audit_attributes``, e.g. gender) are read here
and nowhere else on the model's path: they group users for the audit and never
reach a model (the training path reads :data:`recommender.feedback.MODEL_INPUT_COLUMNS`
only).

Relevance, in disparate exposure, is each evaluated user's held-out test
positives: the share of a provider group in them is the demand the group
should be exposed in proportion to. Those positives come from logged data, so
a bias of the logging policy is in them too; an exposure ratio above 1 means
the model exposes the group beyond even the logged demand.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from governance.collect_literature import audit_cells, audit_groups, literature_facts, wants_groups
from governance.facts import (
    CalibrationFacts,
    ExposureFacts,
    FairnessFacts,
    GroupFigure,
    GroupGap,
    GroupMetricFacts,
    OutcomeFacts,
    ParityFacts,
    PopularityFacts,
    ProviderGroupFacts,
    StratumFacts,
)
from recommender import fairness as F
from recommender import metrics as M
from recommender.data import Dataset, InteractionMatrix
from recommender.errors import ConfigError, DataError

__all__ = [
    "fairness_facts", "attention_models", "NO_MATRICES", "MATRIX_MISMATCH", "UNKNOWN_SUBJECT", "EMPTY_ITEM_COLUMN",
]  # fmt: skip

NO_MATRICES = (
    "fairness_facts: give the train and test matrices the evaluation of {model!r} used "
    "(train=..., test=...); a ModelEvaluation does not keep them."
)
MATRIX_MISMATCH = (
    "fairness_facts: the {which} matrix given is not the one {model!r} was evaluated on "
    "(content hash {got} instead of {expected}); pass the matrices of that evaluation."
)
UNKNOWN_SUBJECT = "fairness_facts: model {subject!r} is not in the evaluation run; its models are: {known}."
EMPTY_ITEM_COLUMN = (
    "the items table's column {column!r} is empty for all {n} audited items (give an item table with --items)"
)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _ci(interval: Iterable[float] | None) -> tuple[float | None, float | None] | None:
    if interval is None:
        return None
    low, high = (_num(v) for v in interval)
    return None if low is None and high is None else (low, high)


def _seed(random_state: int, *parts: str) -> list[int]:
    """A seed per analysis, so that adding an attribute leaves the other intervals unchanged."""
    return [int(random_state), *(zlib.crc32(p.encode("utf-8")) for p in parts)]


def attention_models(pack: Any) -> list[tuple[str, float]]:
    """The attention models the pack's fairness rules use (``log`` always first)."""
    wanted: list[tuple[str, float]] = [("log", 0.8)]
    for rule in pack.fairness.rules:
        attention = getattr(rule.params, "attention", None)
        if attention is None:
            continue
        model = (attention, float(getattr(rule.params, "patience", 0.8)))
        if F.attention_key(*model) not in {F.attention_key(*m) for m in wanted}:
            wanted.append(model)
    return wanted


def _resolve(evaluation: Any, subject: str) -> tuple[Any, Any]:
    """(the ModelEvaluation, the EvaluationRun or None)."""
    comparison = getattr(evaluation, "comparison", None)
    if comparison is None:
        return evaluation, None
    try:
        return comparison.evaluations[subject], evaluation
    except KeyError:
        known = ", ".join(map(repr, comparison.evaluations))
        raise ConfigError(UNKNOWN_SUBJECT.format(subject=subject, known=known)) from None


def _matrices(
    dataset: Dataset, ev: Any, run: Any, train: Any, test: Any
) -> tuple[InteractionMatrix, InteractionMatrix]:
    if train is None or test is None:
        if run is None:
            raise ConfigError(NO_MATRICES.format(model=ev.model))
        from recommender.feedback import FeedbackConfig
        from recommender.split import SplitConfig, split, train_test_matrices

        split_config = SplitConfig(**{key: run.split[key] for key in SplitConfig.model_fields if key in run.split})
        mats = train_test_matrices(*split(dataset.events, split_config), FeedbackConfig(**run.feedback))
        train, test = mats.train, mats.test
    for which, matrix, expected in (("train", train, ev.train_hash), ("test", test, ev.test_hash)):
        got = matrix.content_hash()
        if got != expected:
            raise DataError(MATRIX_MISMATCH.format(which=which, model=ev.model, got=got[:12], expected=expected[:12]))
    return train, test


def _aligned(table: pd.DataFrame | None, column: str, ids: np.ndarray) -> np.ndarray | None:
    if table is None or column not in getattr(table, "columns", ()):
        return None
    return table[column].reindex(pd.Index(np.asarray(ids, dtype=object).astype(str))).to_numpy(dtype=object)


def _present(values: np.ndarray | None) -> np.ndarray | None:
    """``values`` with empty strings as missing; None when no item has a value (no evidence at all)."""
    if values is None:
        return None
    text = pd.Series(values, dtype=object).astype("string").str.strip()
    empty = (text.isna() | (text == "")).to_numpy(dtype=bool)
    if empty.all():
        return None
    out = np.asarray(values, dtype=object).copy()
    out[empty] = None
    return out


def _why_absent(dataset: Dataset, column: str, n_items: int) -> str:
    if column not in getattr(dataset.items, "columns", ()):
        return f"the items table has no {column!r} column" if column == "categories" else (
            f"the items table has no column {column!r}"
        )  # fmt: skip
    return EMPTY_ITEM_COLUMN.format(column=column, n=n_items)


def _group_metric(report: F.GroupComparison) -> GroupMetricFacts:
    return GroupMetricFacts(
        overall=_num(report.overall),
        groups={
            g: GroupFigure(
                n=report.n_users[g],
                value=_num(report.by_group[g]),
                ci=_ci(report.by_group_ci[g]),
                sd=_num(report.by_group_sd[g]),
            )
            for g in report.groups
        },
        difference=_num(report.difference),
        difference_ci=_ci(report.difference_ci),
        ratio=_num(report.ratio),
        ratio_ci=_ci(report.ratio_ci),
        pairs=[
            GroupGap(
                higher=p.higher,
                lower=p.lower,
                difference=_num(p.difference),
                difference_ci=_ci(p.difference_ci),
                ratio=_num(p.ratio),
                ratio_ci=_ci(p.ratio_ci),
            )
            for p in report.pairs
        ],
    )


def _parity(figures: dict[str, Any], groups: dict[str, ParityFacts] | None = None) -> ParityFacts:
    return ParityFacts(
        disparate_impact=_num(figures["disparate_impact"]),
        disparate_impact_ci=_ci(figures["disparate_impact_ci"]),
        statistical_parity_difference=_num(figures["statistical_parity_difference"]),
        statistical_parity_difference_ci=_ci(figures["statistical_parity_difference_ci"]),
        groups=groups or {},
    )


def _outcome(reports: dict[str, F.ParityReport]) -> OutcomeFacts:
    first = next(iter(reports.values()))
    parity = {
        privileged: _parity(vars(rep), {g: _parity(fig) for g, fig in rep.by_group.items()})
        for privileged, rep in reports.items()
    }
    return OutcomeFacts(
        positive_rate={
            g: GroupFigure(n=first.n_users[g], value=_num(first.positive_rate[g]), ci=_ci(first.positive_rate_ci[g]))
            for g in first.positive_rate
        },
        parity=parity,
    )


def _exposure(report: F.ExposureReport, with_groups: bool) -> ExposureFacts:
    groups = {}
    if with_groups:
        groups = {
            g: ProviderGroupFacts(
                n_items=report.n_items[g],
                item_share=_num(report.item_share[g]),
                exposure_share=_num(report.exposure_share[g]),
                exposure_share_ci=_ci(report.exposure_share_ci[g]),
                relevance_share=_num(report.relevance_share[g]),
                relevance_share_ci=_ci(report.relevance_share_ci[g]),
                exposure_ratio=_num(report.exposure_ratio[g]),
                exposure_ratio_ci=_ci(report.exposure_ratio_ci[g]),
                coverage=_num(report.coverage[g]),
                gini=_num(report.gini_by_group[g]),
            )
            for g in report.groups
        }
    return ExposureFacts(gini=_num(report.gini), coverage=_num(report.coverage_all), groups=groups)


def _popularity(report: F.PopularityReport) -> PopularityFacts:
    return PopularityFacts(
        arp=_num(report.arp),
        profile_popularity=_num(report.profile_popularity),
        catalog_popularity=_num(report.catalog_popularity),
        arp_ratio=_num(report.arp_ratio),
        arp_ratio_ci=_ci(report.arp_ratio_ci),
        arp_catalog_ratio=_num(report.arp_catalog_ratio),
        long_tail_share=_num(report.long_tail_share),
        long_tail_share_ci=_ci(report.long_tail_share_ci),
        profile_long_tail_share=_num(report.profile_long_tail_share),
        strata={
            name: StratumFacts(
                n_items=int(s["n_items"]),
                n_positives=int(s["n_positives"]),
                n_hits=int(s["n_hits"]),
                recall=_num(s["recall"]),
                recall_ci=_ci((s["recall_low"], s["recall_high"])),
            )
            for name, s in report.strata.items()
        },
        recall_gap=_num(report.recall_gap),
        recall_gap_ci=_ci(report.recall_gap_ci),
    )


@dataclass(frozen=True)
class _Bootstrap:
    """The bootstrap behind every interval, seeded per analysis."""

    n_boot: int
    confidence: float
    random_state: int

    def seed(self, *parts: str) -> list[int]:
        """The seed of one analysis (see :func:`_seed`)."""
        return _seed(self.random_state, *parts)

    @property
    def options(self) -> dict[str, Any]:
        """``n_boot`` and ``confidence``, as the :mod:`recommender.fairness` reductions take them."""
        return {"n_boot": self.n_boot, "confidence": self.confidence}


@dataclass(frozen=True)
class _Lists:
    """The audited model's lists, beside what each evaluated user had and wanted."""

    evaluation: Any
    """The :class:`~recommender.evaluate.ModelEvaluation` of the audited model."""
    train: InteractionMatrix
    rows: np.ndarray
    """The evaluated users' rows in the train and test matrices."""
    recommended: np.ndarray
    history: Any
    """The evaluated users' training interactions (sparse rows)."""
    relevant: Any
    """The evaluated users' held-out test positives (sparse rows)."""


@dataclass(frozen=True)
class _ItemLabels:
    """What the items table says of each item, aligned with the matrices' items (None: no evidence)."""

    provider: str | None
    groups: np.ndarray | None
    categories: np.ndarray | None


@dataclass(frozen=True)
class _ConsumerFacts:
    """How the lists serve each group of users, per audit attribute."""

    consumer: dict[str, dict[str, GroupMetricFacts]]
    outcomes: dict[str, OutcomeFacts]
    unavailable: dict[str, str]


def _lists(dataset: Dataset, evaluation: Any, subject: str, train: Any, test: Any) -> _Lists:
    ev, run = _resolve(evaluation, subject)
    train, test = _matrices(dataset, ev, run, train, test)
    rows = np.asarray(ev.user_index, dtype=np.int64)
    return _Lists(
        evaluation=ev,
        train=train,
        rows=rows,
        recommended=np.asarray(ev.recommended),
        history=train.matrix[rows],
        relevant=test.matrix[rows],
    )


def _refuse_reserved(values: np.ndarray | None, ids: np.ndarray, table: str, column: str, whose: str) -> None:
    """Refuse a value that reads as the missing group's name (it would be reported with it, as one group)."""
    at = None if values is None else F.reserved_label(values)
    if at is not None:
        where = f"column {column!r}, {whose} {str(ids[at])!r}"
        raise DataError(F.RESERVED_LABEL.format(what=f"the {table} table", where=where, value=values[at], missing=F.MISSING_GROUP))


def _item_labels(dataset: Dataset, provider: str | None, train: InteractionMatrix) -> _ItemLabels:
    groups = _present(_aligned(dataset.items, provider, train.item_ids) if provider else None)
    _refuse_reserved(groups, train.item_ids, "items", provider or "", "item")
    return _ItemLabels(
        provider=provider,
        groups=groups,
        categories=_present(_aligned(dataset.items, "categories", train.item_ids)),
    )


def _miscalibration(lists: _Lists, labels: np.ndarray) -> np.ndarray:
    """Per user, the KL divergence of the list's mix of ``labels`` from the history's."""
    return F.calibration_kl(
        lists.recommended, lists.history, [None if pd.isna(x) else str(x) for x in labels], alpha=F.CALIBRATION_ALPHA
    )


def _per_user_calibration(lists: _Lists, labels: _ItemLabels) -> dict[str, np.ndarray]:
    """Per-user miscalibration, compared across user groups like the accuracy metrics: which users'
    lists stray furthest from their own tastes' mix of genres (``miscalibration``), and of providers
    (``provider_miscalibration``). A figure without its item labels is left out."""
    per_user = {}
    if labels.categories is not None:
        per_user["miscalibration"] = _miscalibration(lists, labels.categories)
    if labels.groups is not None:
        per_user["provider_miscalibration"] = _miscalibration(lists, labels.groups)
    return per_user


def _consumer_facts(
    dataset: Dataset, attributes: Iterable[str], lists: _Lists, calibration: dict[str, np.ndarray], boot: _Bootstrap,
    labelled: dict[str, np.ndarray] | None = None,
) -> _ConsumerFacts:
    """Accuracy and calibration by user group, and parity of hits, for every audit attribute
    (``labelled``: the evaluated users' labels the pack's bins and intersections made, by attribute)."""
    ev = lists.evaluation
    consumer, outcomes, unavailable = {}, {}, {}
    for attribute in attributes:
        if labelled is not None:
            if attribute not in labelled:
                continue  # unavailable: said by the grouping
            labels = labelled[attribute]
        else:
            labels = _aligned(dataset.users, attribute, lists.train.user_ids)
            if labels is None:
                unavailable[attribute] = f"the users table has no column {attribute!r}"
                continue
            labels = labels[lists.rows]
            _refuse_reserved(labels, lists.train.user_ids[lists.rows], "users", attribute, "user")
        per_user = {m: ev.per_user[m] for m in F.CONSUMER_METRICS if m in ev.per_user}
        per_user.update({m: values for m, values in calibration.items() if np.isfinite(values).any()})
        compared = F.compare_groups(
            per_user, labels, attribute=attribute, random_state=boot.seed("consumer", attribute), **boot.options
        )
        consumer[attribute] = {metric: _group_metric(report) for metric, report in compared.items()}
        if "hit_rate" in ev.per_user:
            reports = F.parity(
                ev.per_user["hit_rate"],
                labels,
                attribute=attribute,
                random_state=boot.seed("parity", attribute),
                **boot.options,
            )
            outcomes[attribute] = _outcome(reports)
    return _ConsumerFacts(consumer=consumer, outcomes=outcomes, unavailable=unavailable)


def _provider_absence(dataset: Dataset, labels: _ItemLabels, n_items: int) -> str | None:
    """Why provider exposure cannot be grouped, or None when it can."""
    if labels.provider is None:
        return "fairness.provider_attribute is not set"
    if labels.groups is None:
        return _why_absent(dataset, labels.provider, n_items)
    return None


def _exposure_facts(pack: Any, lists: _Lists, groups: np.ndarray | None, boot: _Bootstrap) -> dict[str, ExposureFacts]:
    """Exposure of the provider groups under each attention model the pack's rules use."""
    n_items = lists.train.n_items
    groups_or_one = groups if groups is not None else np.full(n_items, "all", dtype=object)
    exposure = {}
    for attention, patience in attention_models(pack):
        key = F.attention_key(attention, patience)
        report = F.provider_exposure(
            lists.recommended, groups_or_one, lists.relevant, attention=attention, patience=patience,
            confidence=boot.confidence,
            n_boot=boot.n_boot if groups is not None else 1,  # without providers only the Gini is used
            random_state=boot.seed("exposure", key),
        )  # fmt: skip
        exposure[key] = _exposure(report, with_groups=groups is not None)
    return exposure


def _calibration_facts(
    dataset: Dataset, kl: np.ndarray | None, n_items: int, boot: _Bootstrap
) -> tuple[CalibrationFacts | None, str | None]:
    """The mean miscalibration of the lists' genres with its interval, or why there is none."""
    if kl is None:
        return None, _why_absent(dataset, "categories", n_items)
    defined = int((~np.isnan(kl)).sum())
    if not defined:
        return None, "no evaluated user has a categorised item in both history and list"
    mean, ci = F.mean_with_interval(kl, random_state=boot.seed("calibration"), **boot.options)
    return CalibrationFacts(mean_kl=_num(mean), mean_kl_ci=_ci(ci), alpha=F.CALIBRATION_ALPHA, n_users=defined), None


def fairness_facts(
    dataset: Dataset,
    evaluation: Any,
    pack: Any,
    *,
    train: InteractionMatrix | None = None,
    test: InteractionMatrix | None = None,
    subject: str = "als",
    n_boot: int = 1000,
    confidence: float = 0.95,
    head_share: float = 0.8,
    random_state: int = 0,
) -> FairnessFacts:
    """The fairness facts of the audited model's lists.

    Parameters
    ----------
    dataset:
        The audited data: its users table holds the audit attributes, its items
        table the provider attribute and ``categories``.
    evaluation:
        The :class:`~recommender.evaluate.ModelEvaluation` of the audited model,
        or an :class:`~recommender.pipeline.EvaluationRun` (its model ``subject``).
    pack:
        The :class:`~governance.policy.PolicyPack` (or a loaded pack): its
        ``fairness`` section names the audit attributes, the provider attribute
        and (through its rules) the attention models to measure.
    train, test:
        The matrices the evaluation used (checked against its content hashes).
        Without them, an ``EvaluationRun``'s split is rebuilt from the dataset
        with the run's own split and feedback settings.
    subject:
        The audited model's label in an ``EvaluationRun``.
    n_boot, confidence, random_state:
        The bootstrap behind every interval (seeded per analysis).
    head_share:
        Defines the long tail (as in the evaluation).

    Raises
    ------
    ConfigError
        When the matrices are missing for a bare ``ModelEvaluation``, or the
        subject is not in the run.
    DataError
        When the matrices are not those of the evaluation.
    """
    pack = getattr(pack, "pack", pack)
    section = pack.fairness
    boot = _Bootstrap(n_boot=n_boot, confidence=confidence, random_state=random_state)
    lists = _lists(dataset, evaluation, subject, train, test)
    n_items = lists.train.n_items
    labels = _item_labels(dataset, section.provider_attribute, lists.train)
    per_user_calibration = _per_user_calibration(lists, labels)
    grouped = wants_groups(section)
    labelled, no_group = audit_groups(dataset.users, section, lists.train.user_ids, lists.rows) if grouped else (None, {})
    attributes = [*section.audit_attributes, *section.intersection_names()] if grouped else section.audit_attributes
    consumer = _consumer_facts(dataset, attributes, lists, per_user_calibration, boot, labelled)
    exposure = _exposure_facts(pack, lists, labels.groups, boot)
    popularity = F.popularity_bias(
        lists.recommended, lists.history, lists.relevant, M.item_popularity(lists.train.matrix),
        head_share=head_share, random_state=boot.seed("popularity"), **boot.options,
    )  # fmt: skip
    calibration, no_calibration = _calibration_facts(
        dataset, per_user_calibration.get("miscalibration"), n_items, boot
    )
    absent = {"provider": _provider_absence(dataset, labels, n_items), "calibration": no_calibration}
    unavailable = {**consumer.unavailable, **no_group, **{what: why for what, why in absent.items() if why is not None}}
    ev, item_groups = lists.evaluation, labels.groups
    cells = audit_cells(dataset.users, section, lists.train.user_ids, lists.rows) if grouped else {}
    census = {name: F.census(values, section.min_group_size, cells.get(name, ())) for name, values in (labelled or {}).items()}
    literature = literature_facts(
        lists.recommended, lists.history, lists.relevant, M.item_popularity(lists.train.matrix),
        ev.per_user.get("ndcg"), labelled or {}, census, item_groups, item_categories=labels.categories,
        head_share=head_share,
    ) if section.literature_metrics else None  # fmt: skip
    return FairnessFacts(
        model=ev.model,
        k=ev.k,
        n_users=len(lists.rows),
        confidence=confidence,
        n_boot=n_boot,
        relevance="test_positives",
        consumer=consumer.consumer,
        outcomes=consumer.outcomes,
        provider_attribute=labels.provider if item_groups is not None else None,
        items_without_provider=0 if item_groups is None else int(pd.isna(item_groups).sum()),
        exposure=exposure,
        popularity=_popularity(popularity),
        calibration=calibration,
        unavailable=unavailable,
        groups={name: c.as_dict() for name, c in census.items()},
        literature=literature,
    )
