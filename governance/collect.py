"""Compute the audit facts of a pack from a dataset, a model configuration and measurements.

This is where the ML core meets the policy engine: the offline evaluation runs
with the pack's quality settings, the validation report and drift statistics
are reduced to figures, and the model's inputs are read off the code path that
built them. The checks then only compare figures with thresholds.

The offline evaluation audits the model's *training recipe*: the audited
version's parameters are refitted on the training part of a split of the same
data and evaluated on the held-out part (a model fitted on all the data cannot
be evaluated on any of it without leakage).

When the pack re-ranks served lists (``reranking.enabled`` with steps), the
audited subject is what is served: the evaluation facts' subject is the
re-ranked lists (``als+rerank``, :func:`governance.tradeoff.rerank_evaluation`)
next to the plain ``als`` and the baselines, and the fairness facts are those of
the re-ranked lists. The fairness facts of the plain lists are computed too and
kept, with the side-by-side figures of :func:`governance.tradeoff.tradeoff_summary`,
in ``AuditFacts.tradeoff``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from governance.facts import (
    AuditFacts,
    CarbonFacts,
    DriftFacts,
    EvaluationFacts,
    FairnessFacts,
    MinimizationFacts,
    ModelFacts,
    PrivacyFacts,
    ValidationFacts,
)
from recommender.data import Dataset
from recommender.drift import drift_statistics
from recommender.feedback import MODEL_INPUT_COLUMNS, FeedbackConfig
from recommender.split import SplitConfig

__all__ = ["collect_facts", "dataset_columns", "evaluation_facts", "validation_facts"]


def dataset_columns(dataset: Dataset) -> list[str]:
    """Every field the dataset offers: event columns, user attributes, item metadata."""
    cols = list(dataset.events.columns)
    if dataset.users is not None:
        cols += [str(c) for c in dataset.users.columns]
    if dataset.items is not None:
        cols += [str(c) for c in dataset.items.columns]
    return sorted(set(cols))


def _harm_categories(dataset: Dataset) -> dict[str, Any]:
    """``{"item_harm_categories": {category: items}}`` when the item table flags items harmful, else nothing."""
    from governance.harm_vocabulary import item_harm_categories

    items = dataset.items
    if items is None or "flags" not in items.columns:
        return {}
    categories = item_harm_categories(items["flags"])
    return {"item_harm_categories": categories} if categories else {}


def validation_facts(report: Any) -> ValidationFacts:
    """Reduce a :class:`~recommender.validate.ValidationReport` to counts and shares."""
    doc = report.to_dict()
    findings = {}
    for f in doc.get("findings", []):
        findings[f["code"]] = {"count": float(f["count"]), "share": float(f["share"])}
    return ValidationFacts(n_rows=int(doc["n_rows"]), findings=findings)


def evaluation_facts(run: Any, subject: str = "als", *, extra: Mapping[str, Any] | None = None) -> EvaluationFacts:
    """The per-model figures of an :class:`~recommender.pipeline.EvaluationRun`.

    ``extra`` adds evaluations made outside the run on its split (label ->
    :class:`~recommender.evaluate.ModelEvaluation`), such as the re-ranked lists.
    """
    models = {}
    for label, ev in {**run.comparison.evaluations, **(extra or {})}.items():
        d = ev.to_dict()
        models[label] = ModelFacts(metrics=d["metrics"], beyond=d["beyond"], segments=d["segments"], n_test_users=d["n_test_users"])
    return EvaluationFacts(k=run.comparison.k, subject=subject, models=models)


@dataclass(frozen=True)
class _Evaluated:
    """The offline evaluation behind an audit: the run (None when none was needed or the
    figures came from elsewhere), the re-ranked lists when the pack re-ranks, and the figures."""

    run: Any
    reranked: Any
    facts: EvaluationFacts | None


@dataclass(frozen=True)
class _Fairness:
    """The fairness facts of the audited lists, and with re-ranking their side-by-side with the plain lists."""

    facts: FairnessFacts | None = None
    tradeoff: dict[str, Any] | None = None


def _evaluate(
    pack: Any,
    dataset: Dataset,
    needs: set[str],
    *,
    als_params: dict[str, Any] | None,
    evaluation: EvaluationFacts | None,
    random_state: int,
    show_progress: bool,
    run: Any = None,
) -> _Evaluated:
    """Run the offline evaluation the pack's checks need, with its quality settings (and re-ranking);
    ``run``: an evaluation run made elsewhere (the Spark engine's), reduced here like one made here."""
    from governance.tradeoff import rerank_evaluation, reranking_enabled
    from recommender.pipeline import run_evaluation

    q = pack.quality
    rerank = reranking_enabled(pack)
    if evaluation is not None or not (rerank or needs & {"evaluation", "fairness", "privacy", "ann", "temporal", "labels"}):
        return _Evaluated(run=None, reranked=None, facts=evaluation)
    run = run if run is not None else run_evaluation(
        dataset,
        split_config=SplitConfig(kind=q.split, test_fraction=q.test_fraction, random_state=random_state),
        feedback=FeedbackConfig(rating_threshold=q.rating_threshold),
        k=q.k,
        tune=q.tune and als_params is None,
        als_params=als_params,
        random_state=random_state,
        show_progress=show_progress,
    )
    if not rerank:
        return _Evaluated(run=run, reranked=None, facts=evaluation_facts(run))
    reranked = rerank_evaluation(run, dataset, pack, q.k, show_progress=show_progress)
    return _Evaluated(
        run=run, reranked=reranked, facts=evaluation_facts(run, subject=reranked.model, extra={reranked.model: reranked})
    )


def _fairness(pack: Any, dataset: Dataset, evaluated: _Evaluated, needs: set[str], random_state: int) -> _Fairness:
    """The fairness facts of what is served: the re-ranked lists when the pack re-ranks, else the plain ones."""
    run, reranked = evaluated.run, evaluated.reranked
    if run is None or ("fairness" not in needs and reranked is None):
        return _Fairness()
    from governance.collect_fairness import fairness_facts
    from governance.tradeoff import tradeoff_summary

    mats = run.matrices
    train, test = (mats.train, mats.test) if mats else (None, None)
    fairness = fairness_facts(dataset, run, pack, train=train, test=test, random_state=random_state)
    if reranked is None:
        return _Fairness(facts=fairness)
    served = fairness_facts(dataset, reranked, pack, train=train, test=test, random_state=random_state)
    tradeoff = {
        **tradeoff_summary(run.comparison.evaluations[reranked.base_model], reranked, fairness, served),
        "plain_fairness": fairness.model_dump(mode="json"),
    }
    reweighted = getattr(run.models.get(reranked.base_model), "fairness_reweighting", None) is not None
    declared = getattr(getattr(pack, "pack", pack), "training_reweighting", lambda: None)()
    if reweighted or declared is not None:
        # The audited model was trained with fairness reweighting, or the pack declares it (training.fairness):
        # in-training and post-processing side by side.
        from governance.fair_training_tradeoff import training_tradeoff

        tradeoff["in_training"] = training_tradeoff(run, dataset, pack, random_state=random_state)
    return _Fairness(facts=served, tradeoff=tradeoff)


def _minimization(dataset: Dataset) -> MinimizationFacts:
    """The model's inputs as read off the code path that builds them, and where each came from."""
    return MinimizationFacts(
        purpose="personalization",
        model_inputs=[c for c in MODEL_INPUT_COLUMNS if c in dataset.events.columns],
        input_sources={c: src for c, src in (dataset.columns_from or {}).items() if c in MODEL_INPUT_COLUMNS and src != c},
        dataset_columns=dataset_columns(dataset),
    )


def _dataset_summary(dataset: Dataset, dataset_version: str | None) -> dict[str, Any]:
    """The audited data's name, version and size (and its items' harm categories, when flagged)."""
    ev = dataset.events
    return {
        "name": dataset.name,
        "version": dataset_version,
        "n_events": int(len(ev)),
        "n_users": int(ev["user_id"].nunique()),
        "n_items": int(ev["item_id"].nunique()),
        **_harm_categories(dataset),
    }


def collect_facts(
    pack: Any,
    dataset: Dataset,
    *,
    als_params: dict[str, Any] | None = None,
    baseline: Dataset | None = None,
    carbon: CarbonFacts | None = None,
    validation_report: Any = None,
    dataset_version: str | None = None,
    evaluation: EvaluationFacts | None = None,
    random_state: int = 0,
    show_progress: bool = False,
    run: Any = None,
    out_of_lists: Collection[str] | None = None,
) -> tuple[AuditFacts, Any]:
    """Everything the pack's checks may read, and the evaluation run behind it.

    Parameters
    ----------
    pack:
        The :class:`~governance.policy.PolicyPack` (its quality settings drive the evaluation).
    dataset:
        The audited data.
    als_params:
        The audited model's parameters; None tunes them on a validation split
        when the pack's ``quality.tune`` is set, else uses the defaults.
    baseline:
        A baseline dataset for the drift checks.
    carbon:
        The measured training run, if any.
    validation_report:
        A validation report already computed (else it is computed here).
    evaluation:
        Evaluation facts computed elsewhere (a slate audit); no model is evaluated then.
    run:
        An :class:`~recommender.pipeline.EvaluationRun` made elsewhere (the Spark engine's,
        :func:`governance.spark.evaluate.spark_evaluation_run`): reduced to facts here, not run again.
    out_of_lists:
        Item ids the store keeps out of every list (blocked, under review, unavailable): the ANN
        facts measure that the index leaves them out (None: no store, a planted sample instead).
    """
    from recommender.validate import validate_events

    needs = {n for _, rule in pack.rules() for n in _needs(rule.check)}
    evaluated = _evaluate(
        pack, dataset, needs, als_params=als_params, evaluation=evaluation, random_state=random_state,
        show_progress=show_progress, run=run,
    )  # fmt: skip
    run = evaluated.run
    validation = None
    if "validation" in needs:
        report = validation_report if validation_report is not None else validate_events(dataset, bot_rules=bot_rules(pack))
        validation = validation_facts(report)
    drift = None
    if baseline is not None:
        drift = DriftFacts(baseline=baseline.name, features=drift_statistics(baseline.events, dataset.events))
    fairness = _fairness(pack, dataset, evaluated, needs, random_state)
    privacy = None
    if "privacy" in needs and run is not None:
        privacy = privacy_facts(pack, dataset, run, random_state=random_state)
    from governance.collect_ann import ann_facts
    from governance.collect_split import split_facts

    ann = ann_facts(pack, run, random_state=random_state, out_of_lists=out_of_lists) if "ann" in needs else None
    temporal, labels = split_facts(pack, dataset, run, needs, random_state=random_state)
    facts = AuditFacts(
        dataset=_dataset_summary(dataset, dataset_version),
        evaluation=evaluated.facts,
        validation=validation,
        drift=drift,
        minimization=_minimization(dataset),
        carbon=carbon,
        privacy=privacy,
        fairness=fairness.facts,
        tradeoff=fairness.tradeoff,
        ann=ann,
        temporal=temporal,
        labels=labels,
    )
    return facts, run


def bot_rules(pack: Any) -> Any:
    """The bot thresholds of the pack's (first) ``validation_findings`` rule; None leaves the defaults."""
    from governance.checks.data import ValidationFindings

    for _, rule in pack.rules():
        if rule.check == ValidationFindings.name:
            return rule.params.bots
    return None


def privacy_facts(pack: Any, dataset: Dataset, run: Any, *, random_state: int = 0) -> PrivacyFacts:
    """Proxy leakage of every attribute a ``proxy_leakage`` rule names, from the ALS user factors.

    The attribute is read from the users table here, by the audit, and compared
    with what the model learned; it never reaches the model itself.
    """
    from recommender.errors import DataError
    from recommender.leakage import attribute_predictability

    attributes = sorted({rule.params.attribute for _, rule in pack.rules() if rule.check == "proxy_leakage"})
    model = run.models.get("als")
    out: dict[str, dict[str, Any]] = {}
    for attribute in attributes:
        users = dataset.users
        if model is None or users is None or attribute not in getattr(users, "columns", []):
            out[attribute] = {"auc": None, "error": f"the users table has no column {attribute!r}" if model is not None else "no ALS model"}
            continue
        ids = pd.Index(model.train_.user_ids.astype(str))
        labels = users[attribute].reindex(ids)
        known = labels.notna().to_numpy()
        try:
            out[attribute] = attribute_predictability(
                model.user_factors_[known], labels[known].astype(str).to_numpy(), random_state=random_state
            )
        except DataError as err:
            out[attribute] = {"auc": None, "error": str(err)}
    return PrivacyFacts(proxy=out)


def _needs(check_name: str) -> tuple[str, ...]:
    from governance.registry import get_check

    return get_check(check_name).needs

