"""``recgov audit`` and ``recgov gate`` with ``--engine spark``: the audit facts from Spark, judged by the same checks and gate.

:func:`spark_audit_facts` is the Spark counterpart of :func:`governance.audit.audit_facts` and
returns the same :class:`~governance.facts.AuditFacts`; the engine, the checks, the gate, the
audit record and its trail events are then the in-process ones. What runs where:

* on Spark: the pack's consent, erasure and retention filter and MLlib ALS of the trained model
  (:func:`governance.spark.batch.train_spark_and_record`, with the lineage and trail events of
  ``recgov train``); the refit of the audited parameters on the evaluation split, the popularity
  counts and every evaluated user's ranked list (:mod:`governance.spark.evaluate`);
* on the driver, by the in-process code: which events the evaluation may refit on
  (:func:`governance.audit.evaluation_events`: the pack's consent filter without the retention
  window, as in process), the split itself, validation, minimisation, drift, the
  per-user metrics and their reductions (segments, re-ranking, fairness with its bootstrap
  intervals, exposure, popularity bias, proxy leakage on MLlib's user factors), from the lists
  Spark ranked (``users x candidates`` numbers: the part of an audit that grows with the catalog
  stays on the executors);
* not at all: carbon measurement (codecarbon measures the machine it runs on, not a cluster),
  hyper-parameter tuning and the ``item_knn`` and ``random`` baselines.

A rule that needs what was not evaluated is ``skipped`` with the message ``not evaluated on the
spark engine: ...`` (:func:`mark_not_evaluated`): never a pass. The gate then judges it as the
pack judges missing evidence (``gate.block_on`` with ``skipped``, or the rule in
``gate.required_rules``, blocks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from governance.facts import AuditFacts
from governance.policy import LoadedPack
from recommender.data import Dataset
from recommender.errors import ConfigError

__all__ = ["NOT_EVALUATED_PREFIX", "mark_not_evaluated", "spark_audit_facts"]

NOT_EVALUATED_PREFIX = "not evaluated on the spark engine"
NO_CARBON = "codecarbon measures the machine it runs on, not a Spark cluster's executors"
NO_TUNING = "quality.tune is not run on the spark engine: recgov's default ALS parameters were used"
ALS_KEYS = ("factors", "regularization", "alpha", "iterations")


def spark_audit_facts(
    loaded: LoadedPack,
    dataset: Dataset,
    *,
    store: Any,
    model_version: str | None,
    train: bool,
    baseline: Dataset | None,
    models_dir: Path,
    actor: str | None,
    spark: Any,
) -> tuple[AuditFacts, str | None, str]:
    """:func:`governance.audit.audit_facts` on Spark: ``(facts, model_version, dataset_version)``.

    ``spark`` is a running session (the command starts it before it opens the store, so that a
    master that cannot be reached changes nothing). ``facts.dataset["engine"]`` says what ran on
    Spark, on which master, and what was not evaluated.
    """
    from governance.audit_inputs import _with_store_facts, evaluation_events, recorded_model
    from governance.collect import collect_facts
    from governance.spark.batch import train_spark_and_record
    from governance.spark.evaluate import NOT_ON_SPARK, spark_evaluation_run
    from recommender.feedback import FeedbackConfig

    pack = loaded.pack
    not_evaluated: dict[str, str] = dict(NOT_ON_SPARK)
    params: dict[str, Any] | None = None
    carbon = None
    if model_version is not None:
        params, carbon, _ = recorded_model(store, model_version)
    elif train:
        if not pack.consent.purposes:
            raise ConfigError(
                f"pack {loaded.name!r} names no consent purpose: the spark engine trains through the pack's consent filter; "
                "audit with --engine inprocess, or give a pack with a consent section"
            )
        run, model = train_spark_and_record(dataset, loaded, store, models_dir=models_dir, feedback=FeedbackConfig(), actor=actor, spark=spark)
        model_version = run.model_version
        params = {key: model.params[key] for key in ALS_KEYS}
        if pack.quality.tune:
            not_evaluated["tuning"] = NO_TUNING
    elif pack.quality.tune:
        not_evaluated["tuning"] = NO_TUNING
    if carbon is None and pack.carbon.measure and pack.carbon.rules:
        not_evaluated["carbon"] = NO_CARBON
    dataset_version = dataset.content_hash()
    # The refit is training: the same subjects as in process (consent as it stands, objections, erasures).
    audited, left_out = evaluation_events(loaded, dataset, store)
    evaluation_run, engine = spark_evaluation_run(spark, audited, loaded, als_params=params)
    facts, _ = collect_facts(pack, audited, als_params=params, baseline=baseline, carbon=carbon, dataset_version=dataset_version, run=evaluation_run)
    extra: dict[str, Any] = {
        "engine": {
            "name": "spark", "master": spark.sparkContext.master, "spark_version": spark.version, **engine,
            "not_evaluated": not_evaluated,
        },
    }  # fmt: skip
    if left_out:
        extra["evaluation_events_left_out"] = left_out
        if left_out.get("erased"):
            extra["erased_events_left_out"] = left_out["erased"]
    if model_version is not None and facts.evaluation is not None:
        extra["offline_evaluation"] = f"parameters of {model_version} refitted with MLlib ALS on Spark on the training part of a split of this data"
    facts = facts.model_copy(update={"dataset": {**facts.dataset, **extra}})
    return _with_store_facts(facts, store, model_version), model_version, dataset_version


def _models_named(rule: Any) -> set[str]:
    """The evaluation models a rule's parameters name (``baseline``, ``model``)."""
    params = getattr(rule, "params", None)
    return {str(v) for v in (getattr(params, "baseline", None), getattr(params, "model", None)) if v}


def mark_not_evaluated(report: Any, facts: AuditFacts, loaded: LoadedPack) -> Any:
    """Say, in every skipped rule that needed what the engine did not evaluate, that this is why.

    The status stays ``skipped`` (the gate judges it as the pack judges missing evidence); the
    message starts with :data:`NOT_EVALUATED_PREFIX` and the evidence names the engine. A report
    whose facts name no engine notes is returned as it is.
    """
    from governance.registry import Status, get_check

    engine = facts.dataset.get("engine") if isinstance(facts.dataset, dict) else None
    notes = (engine or {}).get("not_evaluated") or {}
    if not notes:
        return report
    rules = {rule.id: rule for _, rule in loaded.pack.rules()}
    results = []
    for r in report.results:
        why = None
        if r.status == Status.skipped:
            needs = getattr(get_check(r.check), "needs", ()) if r.rule_id in rules else ()
            whys = [notes[n] for n in needs if n in notes]
            whys += [notes[f"models.{m}"] for m in sorted(_models_named(rules.get(r.rule_id))) if f"models.{m}" in notes]
            why = "; ".join(whys) or None
        if why is None:
            results.append(r)
            continue
        results.append(
            r.model_copy(
                update={
                    "message": f"{NOT_EVALUATED_PREFIX}: {why}; {r.message}",
                    "evidence": {**r.evidence, "engine": engine.get("name", "spark"), "not_evaluated": why},
                }
            )
        )
    return report.model_copy(update={"results": results})
