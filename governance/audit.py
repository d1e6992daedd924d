"""One audit of a model (or of logged slates) under a pack: facts in, results out, everything recorded before anyone is told.

``run_audit`` ties the pieces together: it resolves the audited model (a recorded
version, or one trained and recorded now), collects the facts, evaluates every
rule of the pack, applies the gate and writes the audit run, every result with
its evidence and the trail events to the store in one transaction. Only then
are the output files written. If the store cannot be written the audit fails
(exit 2 for the gate): a release never passes without its record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from governance.collect import bot_rules, collect_facts
from governance.suppressed import drop_erased_events
from governance.engine import AuditReport, evaluate
from governance.facts import AuditFacts, CarbonFacts
from governance.gate import GateDecision, GateDocument, check_outputs, decide, document, write_outputs
from governance.policy import LoadedPack
from recommender.data import Dataset
from recommender.errors import ConfigError
from governance.audit_inputs import (  # noqa: F401 - re-exported
    NO_EVENTS_TO_EVALUATE, NothingToEvaluate, _filtered_from, _with_store_facts, evaluation_events, recorded_model,
    reused_evaluation_events, training_filter_of,
)

__all__ = ["AuditOutcome", "OffPolicyInput", "audit_facts", "check_audit_columns", "check_baseline", "run_audit", "run_slate_audit"]


@dataclass(frozen=True)
class AuditOutcome:
    """A recorded audit and its gate decision."""

    report: AuditReport
    decision: GateDecision
    audit_id: int
    document: GateDocument
    outputs: dict[str, Path]
    facts: AuditFacts
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The gate document plus where its files are."""
        return {**self.document.model_dump(mode="json"), "outputs": {k: str(v) for k, v in self.outputs.items()}, "seconds": round(self.seconds, 3)}


def audit_facts(
    loaded: LoadedPack,
    dataset: Dataset,
    *,
    store: Any,
    model_version: str | None,
    train: bool,
    baseline: Dataset | None,
    models_dir: Path,
    actor: str | None,
    show_progress: bool,
) -> tuple[AuditFacts, str | None, str]:
    """Resolve the audited model and collect the facts: ``(facts, model_version, dataset_version)``."""
    pack = loaded.pack
    carbon: CarbonFacts | None = None
    params: dict[str, Any] | None = None
    dataset_version: str | None = None
    reused: tuple[Dataset, dict[str, int]] | None = None
    validation_report: Any = None
    if model_version is not None:
        # The audit may use other data than the training run did (a fresh
        # sample); its results carry the hash of the data it used.
        params, carbon, _ = recorded_model(store, model_version)
    elif train:
        from governance.training import train_and_record, with_pack_training

        trained = train_and_record(
            dataset,
            store=store,
            models_dir=models_dir,
            params=with_pack_training(None, pack) or None,  # the pack's training.fairness, even without consent rules
            tune=pack.quality.tune,
            country_iso_code=pack.carbon.country_iso_code,
            measure_carbon=pack.carbon.measure,
            actor=actor,
            show_progress=show_progress,
            # the pack whatever its consent section holds: its minimisation refuses a forbidden column before the fit
            pack=loaded,
            # validated with the pack's bot thresholds, as the audit validates: one report serves both
            bot_rules=bot_rules(pack),
            keep_events=True,
        )
        model_version = trained.model_version
        carbon = trained.carbon
        # The pack's training filter hashed this very data before filtering it: hashing 20
        # million events again would cost seconds for the same digest.
        dataset_version = _filtered_from(trained.exclusions)
        params = {k: v for k, v in trained.result.model.get_params().items() if k != "random_state"}
        # The run filtered the data under the rules the evaluation applies (and validated what it kept):
        # when retention left nothing out, its events and their report are the evaluation's.
        reused = reused_evaluation_events(trained.exclusions, trained.events)
        if reused is not None:
            validation_report = trained.validation_report
        del trained
    if dataset_version is None:
        dataset_version = dataset.content_hash()
    audited, left_out = reused if reused is not None else evaluation_events(loaded, dataset, store)
    del reused
    facts, _ = collect_facts(
        pack, audited, als_params=params, baseline=baseline, carbon=carbon, dataset_version=dataset_version,
        show_progress=show_progress, validation_report=validation_report, out_of_lists=_out_of_lists(pack, store),
    )  # fmt: skip
    if left_out:
        update = {"evaluation_events_left_out": left_out}
        if left_out.get("erased"):
            update["erased_events_left_out"] = left_out["erased"]
        facts = facts.model_copy(update={"dataset": {**facts.dataset, **update}})
    if model_version is not None and facts.evaluation is not None:
        # Offline figures come from the model's recipe refitted on a split of this
        # data (a model fitted on all of it cannot be evaluated on any of it).
        note = {"offline_evaluation": f"parameters of {model_version} refitted on the training part of a split of this data"}
        facts = facts.model_copy(update={"dataset": {**facts.dataset, **note}})
    return _with_store_facts(facts, store, model_version), model_version, dataset_version


def run_audit(
    loaded: LoadedPack,
    dataset: Dataset,
    *,
    store: Any,
    out_dir: Path,
    models_dir: Path,
    model_version: str | None = None,
    train: bool = True,
    baseline: Dataset | None = None,
    shadow: bool = False,
    actor: str | None = None,
    show_progress: bool = False,
    spark: Any = None,
    off_policy: OffPolicyInput | None = None,
) -> AuditOutcome:
    """Audit ``dataset`` (and a model) against ``loaded``, record everything, write the outputs.

    With ``spark`` (a running SparkSession) the facts come from the Spark engine
    (:func:`governance.spark.gate.spark_audit_facts`) and the same checks and gate judge them.
    With ``off_policy`` the pack's off-policy rules are judged on the store's decision log
    (:func:`governance.ope.audit_off_policy`), estimated first: a log that cannot be read stops the audit
    before a model is trained or anything is recorded.
    """
    started_clock = time.perf_counter()
    started = datetime.now(timezone.utc)
    check_outputs(out_dir)  # before anything is trained or recorded
    check_baseline(baseline)
    check_audit_columns(loaded, dataset)
    estimated = _off_policy(loaded, store, off_policy)
    if spark is not None:
        from governance.spark.gate import spark_audit_facts

        facts, model_version, dataset_version = spark_audit_facts(
            loaded, dataset, store=store, model_version=model_version, train=train, baseline=baseline,
            models_dir=models_dir, actor=actor, spark=spark,
        )  # fmt: skip
        facts = _with_off_policy(facts, estimated)
        return _decide_and_record(loaded, dataset, facts, model_version, dataset_version, store, out_dir, shadow, actor, started, started_clock)
    facts, model_version, dataset_version = audit_facts(
        loaded, dataset, store=store, model_version=model_version, train=train, baseline=baseline,
        models_dir=models_dir, actor=actor, show_progress=show_progress,
    )  # fmt: skip
    facts = _with_off_policy(facts, estimated)
    return _decide_and_record(loaded, dataset, facts, model_version, dataset_version, store, out_dir, shadow, actor, started, started_clock)


def run_slate_audit(
    loaded: LoadedPack,
    dataset: Dataset,
    slates_path: Path,
    *,
    store: Any,
    out_dir: Path,
    baseline: Dataset | None = None,
    shadow: bool = False,
    actor: str | None = None,
    off_policy: OffPolicyInput | None = None,
) -> AuditOutcome:
    """Audit logged slates (no model artifact): the output-only checks run, the others skip."""
    from governance.slates import load_slates, slate_facts

    started_clock = time.perf_counter()
    started = datetime.now(timezone.utc)
    check_outputs(out_dir)
    check_baseline(baseline)
    estimated = _off_policy(loaded, store, off_policy)
    slates = load_slates(slates_path)
    dataset_version = dataset.content_hash()
    facts, _ = collect_facts(
        loaded.pack, dataset, baseline=baseline, dataset_version=dataset_version, evaluation=slate_facts(slates, dataset)
    )
    facts = _with_off_policy(_with_store_facts(facts, store, None), estimated)
    return _decide_and_record(loaded, dataset, facts, None, dataset_version, store, out_dir, shadow, actor, started, started_clock)


EMPTY_BASELINE = (
    "the baseline data set {name!r} holds no event: drift cannot be measured against it; give a baseline with "
    "events, or audit without --baseline"
)


def check_baseline(baseline: Dataset | None) -> None:
    """Refuse a baseline with no event before anything is trained or recorded (its drift is undefined: the
    audit failed at recording, on a NaN it could not store, after training the model)."""
    if baseline is not None and len(baseline.events) == 0:
        raise ConfigError(EMPTY_BASELINE.format(name=baseline.name))


def check_audit_columns(loaded: LoadedPack, dataset: Dataset) -> None:
    """Refuse, before anything is fitted or recorded, data whose column mapping feeds a model a column naming a
    forbidden or audit-only attribute of the pack (``--map value=gender``): the model an audit trains, and the
    refit of a recorded model's parameters on a split of the data, read the mapped columns. The
    ``input_allowlist`` rule judging it afterwards was too late: the model was fitted, and recorded."""
    from governance.family_inputs import refuse_banned_columns
    from recommender.family import get_family

    refuse_banned_columns(get_family("als"), loaded, dataset=dataset)


def _out_of_lists(pack: Any, store: Any) -> set[str] | None:
    """The items the store keeps out of lists (blocked, under review, unavailable in any region), read only
    when the pack judges ANN candidates: the index is measured leaving them out."""
    from governance.collect_ann import ann_rule_params

    if ann_rule_params(pack) is None:
        return None
    from audits.availability import unavailable_items
    from governance.escalation import items_out_of_lists

    with store.session() as session:
        unavailable = unavailable_items(session)
        out = items_out_of_lists(session, pack) | set(unavailable.everywhere)
    for items in unavailable.by_region.values():
        out |= set(items)
    return out


@dataclass(frozen=True)
class OffPolicyInput:
    """What an audit needs to judge a pack's off-policy rules: the pack the logged lists were served under
    (the store's decision log is the logged data) and, for ``off_policy_exposure``, the provider groups' items."""

    logged: LoadedPack
    provider_groups: dict[str, frozenset[str]] | None = None
    n_bootstrap: int = 1000
    seed: int = 0


def _off_policy(loaded: LoadedPack, store: Any, given: OffPolicyInput | None) -> tuple[Any, dict[str, Any]] | None:
    """The off-policy facts and their summary, or None without a logged pack (the rules then skip, as before)."""
    if given is None:
        return None
    from governance.ope import audit_off_policy

    return audit_off_policy(store, given.logged, loaded, provider_groups=given.provider_groups, n_bootstrap=given.n_bootstrap, seed=given.seed)


def _with_off_policy(facts: AuditFacts, estimated: tuple[Any, dict[str, Any]] | None) -> AuditFacts:
    if estimated is None:
        return facts
    off_policy, summary = estimated
    return facts.model_copy(update={"off_policy": off_policy, "dataset": {**facts.dataset, "off_policy": summary}})


def _decide_and_record(
    loaded: LoadedPack, dataset: Dataset, facts: AuditFacts, model_version: str | None, dataset_version: str,
    store: Any, out_dir: Path, shadow: bool, actor: str | None, started: datetime, started_clock: float,
) -> AuditOutcome:  # fmt: skip
    from audits.results import record_audit_results
    from governance.training import record_dataset

    from governance.spark.gate import mark_not_evaluated

    report = evaluate(loaded, facts, model_version=model_version, dataset_version=dataset_version, shadow=shadow)
    report = mark_not_evaluated(report, facts, loaded)  # what an engine did not evaluate is said, never passed
    decision = decide(report, loaded.pack.gate)
    ended = datetime.now(timezone.utc)
    validation = facts.validation.model_dump() if facts.validation else None
    with store.session() as session:
        data_row = record_dataset(session, dataset, content_hash=dataset_version, validation=validation, actor=actor)
        run = record_audit_results(
            session,
            pack=report.pack,
            pack_version=report.pack_version,
            pack_hash=report.pack_hash,
            model_version=model_version,
            dataset_version=data_row,
            dataset_hash=dataset_version,
            verdict="shadow" if shadow else ("pass" if decision.passed else "fail"),
            results=[r.model_dump(mode="json") for r in report.results],
            started_at=started,
            ended_at=ended,
            summary={
                "counts": report.counts(), "reasons": decision.reasons, "enforced": decision.enforced, "dataset": facts.dataset,
                # the plain lists beside the re-ranked ones: the evidence that each re-ranking step works
                "tradeoff": facts.tradeoff,
                "engine": (facts.dataset.get("engine") or {}).get("name", "inprocess"),
            },  # fmt: skip
            actor=actor,
        )
        audit_id = run.id
    doc = document(report, decision, audit_id=str(audit_id), engine=(facts.dataset.get("engine") or {}).get("name", "inprocess"))
    outputs = write_outputs(doc, out_dir)
    return AuditOutcome(report, decision, audit_id, doc, outputs, facts, time.perf_counter() - started_clock)
