"""What an audit reads from the store besides the data: recorded models, their training filter, the events
the offline evaluation may refit on, and the store-only facts; shared by the in-process and Spark audits."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from governance.facts import AuditFacts, CarbonFacts
from governance.policy import LoadedPack
from recommender.data import Dataset
from recommender.errors import ConfigError
from governance.suppressed import drop_erased_events

def training_filter_of(store: Any, model_version: str) -> dict[str, Any] | None:
    """The consent and retention filter recorded with a model version's training run (None if none ran)."""
    from audits.models import ModelVersion, TrainingRun

    with store.session() as session:
        model = session.get(ModelVersion, model_version)
        run = session.get(TrainingRun, model.training_run_id) if model else None
        return (run.params or {}).get("privacy_filter") if run else None


def recorded_model(store: Any, model_version: str) -> tuple[dict[str, Any], CarbonFacts | None, str]:
    """Parameters, carbon figures and dataset hash of a recorded model version."""
    from audits.models import DatasetVersion, ModelVersion, TrainingRun

    with store.session() as session:
        model = session.get(ModelVersion, model_version)
        if model is None:
            raise ConfigError(f"model version {model_version!r} is not in the store; train one with 'recgov train' or pass --train")
        run = session.get(TrainingRun, model.training_run_id)
        data = session.get(DatasetVersion, model.dataset_version_id)
        # The recipe the audit refits: a fairness-reweighted model is audited with its reweighting, or the offline
        # figures would be a plain model's.
        recipe = ("factors", "regularization", "alpha", "iterations", "fairness_reweighting")
        params = {k: v for k, v in (run.params or {}).items() if k in recipe}
        carbon = None
        if run.energy_kwh is not None and run.emissions_kg is not None and run.started_at and run.ended_at:
            carbon = CarbonFacts(
                energy_kwh=run.energy_kwh,
                emissions_kg=run.emissions_kg,
                duration_s=(run.ended_at - run.started_at).total_seconds(),
                method=run.carbon_method or "",
            )
        return params, carbon, data.content_hash


def recorded_model_kind(store: Any, model_version: str) -> tuple[str, list[str] | None]:
    """The family (``kind``) of a recorded model version and the fields its training run recorded (None if none).

    What the DSA Art. 27 disclosure of that model describes (:func:`governance.disclosure.disclosure`).
    """
    from audits.models import ModelVersion, TrainingRun

    with store.session() as session:
        model = session.get(ModelVersion, model_version)
        if model is None:
            raise ConfigError(f"model version {model_version!r} is not in the store; train one with 'recgov train' or pass --train")
        run = session.get(TrainingRun, model.training_run_id)
        inputs = (run.params or {}).get("model_inputs") if run is not None else None
        return model.kind, list(inputs) if isinstance(inputs, list) else None


def _filtered_from(exclusions: dict[str, Any] | None) -> str | None:
    """The content hash of the data a training filter started from, when its report holds one."""
    hashes = (exclusions or {}).get("dataset")
    return hashes.get("before") if isinstance(hashes, dict) else None


NO_EVENTS_TO_EVALUATE = (
    "no event may be used for the offline evaluation under the pack: {excluded}; record consent (recgov consent set "
    "or import)"
)


class NothingToEvaluate(ConfigError):
    """Under the pack, no event is left that the audit's offline evaluation may refit on (nobody may be profiled)."""


def evaluation_events(loaded: LoadedPack, dataset: Dataset, store: Any) -> tuple[Dataset, dict[str, int]]:
    """The events the audit's offline evaluation may refit the model's recipe on, and how many were left out per reason.

    Refitting is training: under a pack with consent rules it sees only the subjects a training run
    under that pack may learn from (:func:`governance.training_filter.filter_training_events`:
    consent for personalization as it stands today, objections, erasures), so that a subject who
    refused profiling is not profiled by the audit either; under a pack without them, every event
    but erased subjects' (:func:`governance.suppressed.drop_erased_events`, GDPR Art. 17). The
    retention window is not applied here: the pack's retention rule judges the data the audit was
    given and says so. Nothing is written to the trail: the audit's own record says what was left
    out.
    """
    if loaded.pack.consent.purposes:
        from governance.training_filter import filter_training_events

        policy = loaded.pack
        unwindowed = policy.model_copy(update={"minimization": policy.minimization.model_copy(update={"retention_days": None})})
        kept, report = filter_training_events(dataset, unwindowed, store, record=False)
    else:
        kept, report = drop_erased_events(dataset, store)
    left_out = {reason: int(n) for reason, n in report["events"]["excluded"].items() if n}
    if len(kept.events) == 0:
        excluded = ", ".join(f"{n:,} {reason}" for reason, n in left_out.items())
        raise NothingToEvaluate(NO_EVENTS_TO_EVALUATE.format(excluded=excluded or "no event at all"))
    return kept, left_out


def reused_evaluation_events(exclusions: dict[str, Any] | None, events: Dataset | None) -> tuple[Dataset, dict[str, int]] | None:
    """What :func:`evaluation_events` would return, taken from a training run just made for this audit; None when it cannot.

    The audit trains under the same rules :func:`evaluation_events` applies (the pack's
    consent rules with :func:`governance.training_filter.filter_training_events` when it has
    consent purposes, else :func:`governance.suppressed.drop_erased_events`), plus the
    retention window, which only ever marks events that every other rule kept. So when the
    run's filter left no event out for retention, the events it learned from are exactly
    the events the evaluation may refit on, from the same reading of the store, and its
    counts are the evaluation's: reading the store and filtering the data a second time
    would give the same events. ``exclusions`` and ``events`` are the run's
    (:attr:`governance.training.GovernedTraining.exclusions` and ``events``).
    """
    if events is None or not exclusions:
        return None
    excluded = (exclusions.get("events") or {}).get("excluded")
    if not isinstance(excluded, dict) or excluded.get("retention"):
        return None
    # (a run that kept no event failed before it was recorded: there is no empty set to reuse)
    return events, {reason: int(n) for reason, n in excluded.items() if n}


def trained_input_sources(store: Any, model_version: str) -> dict[str, str]:
    """The columns the model version's training run recorded reading under another name (``params.input_sources``)."""
    from audits.models import ModelVersion, TrainingRun

    with store.session() as session:
        model = session.get(ModelVersion, model_version)
        run = session.get(TrainingRun, model.training_run_id) if model is not None else None
        recorded = (run.params or {}).get("input_sources") if run is not None else None
    return {str(k): str(v) for k, v in recorded.items()} if isinstance(recorded, dict) else {}


def _with_store_facts(facts: AuditFacts, store: Any, model_version: str | None) -> AuditFacts:
    """Add what only the store knows: the training run's consent filter and overdue subject requests."""
    from audits.models import REQUEST_KINDS
    from audits.requests import count_requests
    from governance.facts import PrivacyFacts

    moment = datetime.now(timezone.utc)  # one moment for every kind
    with store.session() as session:  # counts in the database: no request is read
        overdue = {kind: count_requests(session, kind=kind, overdue_at=moment) for kind in REQUEST_KINDS}
    privacy = facts.privacy or PrivacyFacts()
    if model_version is not None and facts.minimization is not None:
        trained = trained_input_sources(store, model_version)
        if trained:
            facts = facts.model_copy(update={"minimization": facts.minimization.model_copy(update={"trained_input_sources": trained})})
    privacy = privacy.model_copy(
        update={
            "training_filter": training_filter_of(store, model_version) if model_version else None,
            "model_trained": model_version is not None,
            "overdue_requests": overdue,
        }
    )
    return facts.model_copy(update={"privacy": privacy})


