"""Governed training: train ALS and record the lineage of what produced it.

The recommender core trains; this module makes the run provable. It validates
the data, records the dataset version, measures energy and emissions around the
fit, saves the model artifact content-addressed, and records the training run
and the model version, each with its trail event, in one transaction. A run
whose records cannot be written fails: there is no model without its lineage.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from governance.carbon import measure, prepare as prepare_carbon
from governance.facts import CarbonFacts
from governance.suppressed import ERASURES_SEEN, drop_erased_events
from recommender.data import Dataset
from recommender.errors import ConfigError
from recommender.feedback import MODEL_INPUT_COLUMNS, FeedbackConfig
from recommender.pipeline import TrainingResult, train_als

__all__ = ["INPUT_SOURCES", "GovernedTraining", "has_consent_rules", "train_and_record", "dataset_schema", "with_pack_training"]


def record_dataset(session: Any, dataset: Dataset, *, content_hash: str, validation: dict[str, Any] | None, actor: str | None) -> Any:
    """Record ``dataset`` as a dataset version (idempotent on its content hash)."""
    from audits import record_dataset_version

    ev = dataset.events
    return record_dataset_version(
        session,
        content_hash=content_hash,
        name=dataset.name,
        source=dataset.source,
        n_events=int(len(ev)),
        n_users=int(ev["user_id"].nunique()),
        n_items=int(ev["item_id"].nunique()),
        schema=dataset_schema(dataset),
        validation=validation,
        actor=actor,
    )


def dataset_schema(dataset: Dataset) -> dict[str, Any]:
    """Column names and dtypes of the events, user and item tables."""
    def cols(frame: Any) -> dict[str, str]:
        return {} if frame is None else {str(c): str(t) for c, t in frame.dtypes.items()}

    return {"events": cols(dataset.events), "users": cols(dataset.users), "items": cols(dataset.items)}


@dataclass(frozen=True)
class GovernedTraining:
    """A recorded training run."""

    result: TrainingResult
    dataset_version: str
    training_run_id: int
    model_version: str
    artifact: Path
    artifact_hash: str
    carbon: CarbonFacts | None
    validation: dict[str, Any]
    reproduced: bool = False
    """True when this run reproduced an already recorded model version bit for bit."""
    exclusions: dict[str, Any] | None = None
    """What was kept out of training: the pack's consent and retention rules, or without a pack the
    events of erased subjects (:func:`governance.suppressed.drop_erased_events`)."""
    events: Dataset | None = field(default=None, repr=False, compare=False)
    """The events the run learned from (kept only when asked: ``train_and_record(keep_events=True)``), so
    that an audit of this run reuses them rather than reading the store and filtering the data again."""
    validation_report: Any = field(default=None, repr=False, compare=False)
    """The :class:`~recommender.validate.ValidationReport` of :attr:`events` behind :attr:`validation`
    (kept with :attr:`events`)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            **self.result.to_dict(),
            "dataset_version": self.dataset_version,
            "training_run": self.training_run_id,
            "artifact": str(self.artifact),
            "artifact_hash": self.artifact_hash,
            "reproduced": self.reproduced,
            "privacy_filter": self.exclusions,
            "model_inputs": list(MODEL_INPUT_COLUMNS),
            "carbon": self.carbon.model_dump() if self.carbon else None,
            "validation": {"n_rows": self.validation.get("n_rows"), "n_findings": len(self.validation.get("findings", []))},
        }


NO_EVENTS_UNDER_PACK = (
    "no event may be used for training under the pack: {excluded}; record consent (recgov consent set) or check the "
    "retention window"
)
NO_EVENTS_AFTER_ERASURES = (
    "no event is left to train on once the events of erased subjects are out ({excluded}); give data that holds "
    "events of other subjects"
)


def has_consent_rules(pack: Any) -> bool:
    """Whether ``pack`` (a :class:`~governance.policy.LoadedPack` or a policy) lists a consent purpose, so that
    its consent rules choose the events a model learns from; the baseline pack lists none."""
    from governance.privacy_common import pack_policy

    return bool(pack_policy(pack).consent.purposes)


def _training_events(
    dataset: Dataset, store: Any, *, pack: Any, now: datetime | None, actor: str | None
) -> tuple[Dataset, dict[str, Any]]:
    """The events a run may learn from, and what was left out: the pack's rules with a pack
    (:func:`governance.privacy.filter_training_events`), else the erasures alone
    (:func:`governance.suppressed.drop_erased_events`). A pack that lists no consent purpose (the
    baseline) has no consent rules to choose events by: its runs keep what a run without a pack keeps,
    as ``recgov train`` and the audit's training do. Erased subjects' events from before their erasure
    never train again, with or without a pack."""
    if pack is not None and has_consent_rules(pack):
        from governance.training_filter import filter_training_events

        kept, exclusions = filter_training_events(dataset, pack, store, now=now, actor=actor, record_empty=False)
        message = NO_EVENTS_UNDER_PACK
    else:
        kept, exclusions = drop_erased_events(dataset, store)
        message = NO_EVENTS_AFTER_ERASURES
    if len(kept.events) == 0:
        excluded = ", ".join(f"{n:,} {reason}" for reason, n in exclusions["events"]["excluded"].items() if n)
        raise ConfigError(message.format(excluded=excluded or "no event at all"))
    return kept, exclusions


@dataclass(frozen=True)
class _Fit:
    """A fitted model, with when it was fitted and what the fit cost."""

    result: TrainingResult
    started: datetime
    ended: datetime
    carbon: CarbonFacts | None


def _fit(
    dataset: Dataset,
    *,
    feedback: FeedbackConfig,
    params: dict[str, Any] | None,
    tune: bool,
    random_state: int,
    show_progress: bool,
    country_iso_code: str,
    measure_carbon: bool,
) -> _Fit:
    """Train ALS on ``dataset``, measuring energy and emissions around the fit."""
    started = datetime.now(timezone.utc)
    with measure(country_iso_code, enabled=measure_carbon) as meter:
        result = train_als(dataset, feedback=feedback, params=params, tune=tune, random_state=random_state, show_progress=show_progress)
    ended = datetime.now(timezone.utc)
    return _Fit(result=result, started=started, ended=ended, carbon=meter.facts)


INPUT_SOURCES = "input_sources"
"""The key, in a training run's parameters, of what the fit read -> the column it read it from, for the columns
not read under their own name (``{"event field value": "gender"}``; see
:func:`governance.family_inputs.renamed_columns_read`). Runs recorded before it existed have none."""


def _input_sources(dataset: Dataset, params: dict[str, Any] | None, family: str = "als") -> dict[str, str]:
    """The renamed columns a fit of ``family`` on ``dataset`` reads (recorded with the run)."""
    from governance.family_inputs import renamed_columns_read
    from recommender.family import get_family

    return renamed_columns_read(get_family(family), dataset, params)


def _record_training(
    session: Any,
    dataset: Dataset,
    fit: _Fit,
    *,
    data_hash: str,
    report: dict[str, Any],
    feedback: FeedbackConfig,
    exclusions: dict[str, Any],
    input_sources: dict[str, str] | None = None,
    actor: str | None,
) -> Any:
    """Record the dataset version, the training run and its carbon; return the run's row.

    ``input_sources``: the columns the fit read under another name (:func:`_input_sources`), recorded so that an
    audit of the model judges what it was fitted on."""
    from audits import record_carbon, record_training_run

    dv = record_dataset(
        session,
        dataset,
        content_hash=data_hash,
        validation={"n_rows": report["n_rows"], "findings": {f["code"]: f["count"] for f in report.get("findings", [])}},
        actor=actor,
    )
    model = fit.result.model
    run = record_training_run(
        session,
        dataset_version=dv,
        params={
            **model.get_params(),
            "feedback": feedback.model_dump(),
            "model_inputs": list(MODEL_INPUT_COLUMNS),
            INPUT_SOURCES: dict(input_sources or {}),
            "privacy_filter": exclusions,
            ERASURES_SEEN: exclusions[ERASURES_SEEN],
            # the per-group multipliers of a fairness-reweighted run (group labels only, no subject's value)
            **({"fairness_weights": model.fairness_weights_} if getattr(model, "fairness_weights_", None) is not None else {}),
            # the groups left at weight 1 (under fairness.min_group_size, or missing) and why: no multiplier, no size
            **({"fairness_unweighted": model.fairness_unweighted_} if getattr(model, "fairness_unweighted_", None) else {}),
        },
        library_versions=model.library_versions_,
        started_at=fit.started,
        ended_at=fit.ended,
        actor=actor,
    )
    if fit.carbon is not None:
        record_carbon(
            session,
            training_run=run,
            energy_kwh=fit.carbon.energy_kwh,
            emissions_kg=fit.carbon.emissions_kg,
            carbon_method=fit.carbon.method,
            actor=actor,
        )
    return run


def _record_model(session: Any, model: Any, *, run: Any, artifact: Path, artifact_hash: str, actor: str | None) -> bool:
    """Record the model version of ``run``; True when it reproduced a recorded version bit for bit.

    The same data, parameters and libraries make the same version id: a recorded
    version with the same artifact hash is reproduced (the run is recorded, the
    model version is the existing one); one with another hash means the training
    is not reproducible here, and is refused rather than recorded under the same version.
    """
    from audits import ModelVersion, record_model_version

    existing = session.get(ModelVersion, model.version_id_)
    if existing is None:
        record_model_version(
            session,
            version_id=model.version_id_,
            kind="als",
            training_run=run,
            artifact_hash=artifact_hash,
            artifact_location=str(artifact),
            actor=actor,
        )
        return False
    if existing.artifact_hash != artifact_hash:
        raise ConfigError(
            f"model version {existing.version_id} is recorded with artifact {existing.artifact_hash[:16]}... but this "
            f"run produced {artifact_hash[:16]}... from the same data, parameters and libraries; the training is not "
            "reproducible on this machine, refusing to record it under the same version"
        )
    return True


def with_pack_training(params: dict[str, Any] | None, pack: Any, where: str = "fairness_reweighting") -> dict[str, Any]:
    """``params`` with the pack's ``training.fairness`` re-weighting applied (a copy; without one, unchanged).

    A run that gives its own ``fairness_reweighting`` must give the pack's: a governed run may not train
    otherwise than its pack says (a :class:`~recommender.errors.ConfigError` naming both). Either way the
    re-weighting takes the pack's ``fairness.min_group_size`` (:func:`with_pack_minimum`).
    """
    from recommender.fair_training import parse_fair_reweighting

    out = dict(params or {})
    inner = getattr(pack, "pack", pack)
    given = with_pack_minimum(parse_fair_reweighting(out.get("fairness_reweighting"), where=where), inner)
    declared = with_pack_minimum(inner.training_reweighting(), inner) if inner is not None and hasattr(inner, "training_reweighting") else None
    if declared is None:
        if given is not None:
            out["fairness_reweighting"] = given.model_dump()
        return out
    if given is not None and given != declared:
        raise ConfigError(
            f"{where}: {given.model_dump()} differs from the pack's training.fairness "
            f"{declared.model_dump()}; a governed run trains as its pack says (drop the option, or change the pack)"
        )
    out["fairness_reweighting"] = declared.model_dump()
    return out


def with_pack_minimum(config: Any, pack: Any) -> Any:
    """``config`` (a ``FairReweighting`` or None) with ``pack``'s ``fairness.min_group_size`` when it sets none.

    The size under which the pack's fairness checks leave a group unjudged is the size under which training
    leaves it at weight 1: a group of a few people gets no extreme weight, and no recorded multiplier that
    would disclose their activity.
    """
    inner = getattr(pack, "pack", pack)
    minimum = getattr(getattr(inner, "fairness", None), "min_group_size", None)
    if config is None or config.min_group_size is not None or minimum is None:
        return config
    return config.model_copy(update={"min_group_size": int(minimum)})


def train_and_record(
    dataset: Dataset,
    *,
    store: Any,
    models_dir: Path,
    feedback: FeedbackConfig | None = None,
    params: dict[str, Any] | None = None,
    tune: bool = False,
    country_iso_code: str = "USA",
    measure_carbon: bool = True,
    random_state: int = 0,
    actor: str | None = None,
    show_progress: bool = False,
    pack: Any = None,
    now: datetime | None = None,
    bot_rules: Any = None,
    keep_events: bool = False,
) -> GovernedTraining:
    """Validate, train, save and record. ``store`` is an open :class:`audits.Store`.

    With a policy ``pack``, training sees only the events the pack allows
    (:func:`governance.privacy.filter_training_events`: subjects whose consent
    state allows profiling, events within the retention window); without one,
    all events but those of erased subjects from before their erasure
    (:func:`governance.suppressed.drop_erased_events`). The exclusions, and up to
    which trail event erasures were honoured (``params.erasures_seen``, which
    serving reads), are recorded with the training run.

    ``bot_rules`` are the bot thresholds the training data is validated with (a
    pack's ``validation_findings`` rule's, :func:`governance.collect.bot_rules`;
    None: the defaults). With ``keep_events``, the result keeps the events the run
    learned from and their validation report (:attr:`GovernedTraining.events`),
    for an audit that evaluates the same events.
    """
    from recommender.validate import validate_events

    feedback = feedback or FeedbackConfig()
    from recommender.fair_training import check_attribute_allowed, parse_fair_reweighting

    # The pack's training.fairness applies to every run under it. Checked before anything is read or
    # recorded: a bad, conflicting or forbidden reweighting changes nothing.
    params = with_pack_training(params, pack)
    check_attribute_allowed(parse_fair_reweighting(params.get("fairness_reweighting")), pack)
    if pack is not None:  # the ALS family's inputs against the pack's minimisation allow-list, before any fit
        from governance.family_inputs import check_family_inputs
        from recommender.family import get_family

        check_family_inputs(get_family("als"), pack, dataset=dataset, params=params)
    sources = _input_sources(dataset, params)  # read off the data as given: the filtered copy may not keep its mapping
    # The tracker's CPU detection (a child process) runs while the events are filtered and validated.
    prepare_carbon(enabled=measure_carbon)
    dataset, exclusions = _training_events(dataset, store, pack=pack, now=now, actor=actor)
    validation = validate_events(dataset, bot_rules=bot_rules)
    report = validation.to_dict()
    # The pack's filter already hashed the data it kept (its trail event names it): the same digest.
    hashes = exclusions.get("dataset")
    data_hash = hashes["after"] if isinstance(hashes, dict) and hashes.get("after") else dataset.content_hash()
    fit = _fit(
        dataset, feedback=feedback, params=params, tune=tune, random_state=random_state, show_progress=show_progress,
        country_iso_code=country_iso_code, measure_carbon=measure_carbon,
    )  # fmt: skip
    result = fit.result
    models_dir.mkdir(parents=True, exist_ok=True)
    artifact = models_dir / f"{result.model.version_id_}.npz"
    # Write beside the final name and move into place only once the records
    # are committed: a failed run never replaces a recorded artifact.
    # unique per call: two trainings of the same version (threads of one process, or two processes) must not
    # write through one temporary file, which one of them would move away under the other
    pending = models_dir / f".{result.model.version_id_}.{os.getpid()}.{uuid.uuid4().hex[:12]}.pending.npz"
    artifact_hash = result.model.save(pending)
    try:
        with store.session() as session:
            run = _record_training(
                session, dataset, fit, data_hash=data_hash, report=report, feedback=feedback, exclusions=exclusions,
                input_sources=sources, actor=actor,
            )  # fmt: skip
            reproduced = _record_model(
                session, result.model, run=run, artifact=artifact, artifact_hash=artifact_hash, actor=actor
            )
            run_id = run.id
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    os.replace(pending, artifact)
    return GovernedTraining(
        result=result,
        dataset_version=data_hash,
        training_run_id=run_id,
        model_version=result.model.version_id_,
        artifact=artifact,
        artifact_hash=hashlib.sha256(artifact.read_bytes()).hexdigest(),
        carbon=fit.carbon,
        validation=report,
        reproduced=reproduced,
        exclusions=exclusions,
        events=dataset if keep_events else None,
        validation_report=validation if keep_events else None,
    )
