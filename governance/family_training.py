"""Governed training of any model family: the same filter, carbon and lineage as ALS.

``recgov train DATA --pack P --family NAME`` trains a family of
:mod:`recommender.families` through the governance ALS goes through
(:func:`governance.training.train_and_record`), so that what a team picked
changes nothing of what is proven about it:

1. the family's declared inputs are checked against the pack's minimisation
   allow-list (:func:`governance.family_inputs.check_family_inputs`), and its
   parameters against what the family takes, before any data is read;
2. training sees only the events the pack allows (consent, objections,
   erasures, retention: :func:`governance.training_filter.filter_training_events`;
   without a pack, every event but erased subjects' up to their erasure);
3. the fit is measured for energy and emissions (:func:`governance.carbon.measure`);
4. the artifact is written by the family's own ``save`` (``.npz`` with JSON
   meta, never pickle) under its content-addressed ``version_id_`` in the
   models directory;
5. in one transaction: the dataset version, the training run (the family, its
   parameters, its erasure kind, its inputs, the privacy filter and the
   erasures it saw) with its carbon, and the model version whose ``kind`` is
   the family's name, each with its trail event.

Nothing is recorded before the fit has succeeded: a parameter the family
refuses at fit time (a negative regularisation, say) leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from governance.carbon import measure
from governance.facts import CarbonFacts
from governance.family_inputs import renamed_columns_read
from governance.suppressed import ERASURES_SEEN, drop_erased_events
from recommender.data import Dataset, InteractionMatrix
from recommender.errors import ConfigError
from recommender.family import Family, GovernedModel, families, get_family
from recommender.feedback import MODEL_INPUT_COLUMNS, FeedbackConfig, to_implicit
from recommender.pipeline import content_inputs, family_side_inputs

__all__ = [
    "FAMILY_RUN_KEY",
    "FamilyTraining",
    "family_for_kind",
    "family_model_class",
    "family_of_run",
    "parse_params",
    "train_family_and_record",
]

FAMILY_RUN_KEY = "family"
"""The training-run parameter naming the family (with ``family_params``, ``erasure``, ``family_inputs`` (its declared
inputs) and ``model_inputs`` (the event fields the fit read, as an ALS run records them))."""

SIDE_FIELDS: dict[str, tuple[str, ...]] = {
    "items": ("item_text",),
    "item_categories": ("item_category",),
    "events": ("session_id", "timestamp"),
}
"""What each side input a fit takes (:func:`recommender.pipeline.family_side_inputs`) carries, in family inputs."""

NO_EVENTS = "no event may be used for training {why}: {excluded}"


def parse_params(pairs: list[str] | None, *, option: str = "--param") -> dict[str, Any]:
    """``key=value`` strings as parameters: a value reads as JSON (``10``, ``0.5``, ``true``, ``"bm25"``,
    ``["title","genre"]``), else as the text given. A pair without ``=``, an empty key or a key given twice is a :class:`ConfigError`."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = str(pair).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{option} {pair!r}: expected key=value (e.g. {option} regularization=250)")
        if key in params:
            raise ConfigError(f"{option} {key}: given twice")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)):
            raise ConfigError(f"{option} {key}={raw}: a parameter is a number, true/false, a word or a list of them")
        params[key] = value
    return params


def family_model_class(family: Family) -> type[GovernedModel]:
    """The model class of ``family`` (what reads its saved files)."""
    build = family.build
    if isinstance(build, type):
        return build
    return type(build(**family.default_params))


def family_for_kind(kind: str | None) -> Family | None:
    """The registered family a recorded model ``kind`` names, other than ALS (whose path is its own); else None."""
    if not kind or kind == "als":
        return None
    return families().get(kind)


def family_of_run(params: Any) -> str | None:
    """The family a training run's ``params`` name, or None (an ALS run of ``recgov train`` names none)."""
    if isinstance(params, dict) and isinstance(params.get(FAMILY_RUN_KEY), str):
        return params[FAMILY_RUN_KEY]
    return None


@dataclass(frozen=True)
class FamilyTraining:
    """A recorded training run of a model family."""

    family: Family
    model: GovernedModel
    matrix: InteractionMatrix
    dataset_version: str
    training_run_id: int
    model_version: str
    artifact: Path
    artifact_hash: str
    carbon: CarbonFacts | None
    seconds: float
    reproduced: bool
    exclusions: dict[str, Any]
    inputs_given: frozenset[str] = frozenset({"interactions"})
    """The declared inputs the fit was given (a content family without item text in DATA runs without content)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the keys of the ALS run's summary, plus the family's declarations)."""
        return {
            "family": self.family.name,
            "erasure": self.family.erasure.value,
            "family_inputs": sorted(self.family.inputs),
            "inputs_given": sorted(self.inputs_given),
            "model_inputs": [*MODEL_INPUT_COLUMNS, *sorted(self.inputs_given - {"interactions"})],
            "model_version": self.model_version,
            "params": self.model.get_params(),
            "matrix": {"users": self.matrix.n_users, "items": self.matrix.n_items, "interactions": self.matrix.nnz},
            "tuning": None,
            "seconds": round(self.seconds, 3),
            "dataset_version": self.dataset_version,
            "training_run": self.training_run_id,
            "artifact": str(self.artifact),
            "artifact_hash": self.artifact_hash,
            "reproduced": self.reproduced,
            "privacy_filter": self.exclusions,
            "carbon": self.carbon.model_dump() if self.carbon else None,
        }


def _library_versions(model: GovernedModel) -> dict[str, str]:
    found = getattr(model, "library_versions_", None)
    if isinstance(found, dict) and found:
        return dict(found)
    import numpy
    import scipy

    return {"numpy": numpy.__version__, "scipy": scipy.__version__}


def _filtered(dataset: Dataset, store: Any, pack: Any, now: datetime | None) -> tuple[Dataset, dict[str, Any], bool]:
    """The events the run may learn from, the exclusions, and whether the pack's filter ran (its trail
    event is appended once the fit succeeded, by :func:`_record_filter`)."""
    if pack is not None and pack_has_consent(pack):
        from governance.training_filter import filter_training_events

        kept, exclusions = filter_training_events(dataset, pack, store, now=now, record=False)
        why = "under the pack"
        filtered = True
    else:
        kept, exclusions = drop_erased_events(dataset, store)
        why = "once the events of erased subjects are out"
        filtered = False
    if len(kept.events) == 0:
        excluded = ", ".join(f"{n:,} {reason}" for reason, n in exclusions["events"]["excluded"].items() if n)
        raise ConfigError(NO_EVENTS.format(why=why, excluded=excluded or "no event at all"))
    return kept, exclusions, filtered


def pack_has_consent(pack: Any) -> bool:
    """Whether the pack lists consent purposes (a pack without, such as the baseline, filters nothing by consent)."""
    inner = getattr(pack, "pack", pack)
    return bool(getattr(getattr(inner, "consent", None), "purposes", None))


def train_family_and_record(
    dataset: Dataset,
    family_name: str,
    *,
    store: Any,
    models_dir: Path,
    params: dict[str, Any] | None = None,
    feedback: FeedbackConfig | None = None,
    pack: Any = None,
    country_iso_code: str = "USA",
    measure_carbon: bool = True,
    random_state: int = 0,
    now: datetime | None = None,
    actor: str | None = None,
    show_progress: bool = False,
) -> FamilyTraining:
    """Check, filter, fit, measure, save and record a model of ``family_name``. ``store`` is an open :class:`audits.Store`.

    ``pack`` (a :class:`~governance.policy.LoadedPack`) supplies the minimisation allow-list (checked first,
    with its located error) and, when it lists consent purposes, the training filter. ``params`` override the
    family's defaults; a name the family does not take is a :class:`ConfigError` before anything is read.
    """
    from audits import ModelVersion, record_carbon, record_model_version, record_training_run
    from governance.training import INPUT_SOURCES, record_dataset
    from recommender.validate import validate_events

    family = get_family(family_name)
    chosen = {**family.default_params, **(params or {})}
    if pack is not None:
        from governance.family_inputs import check_family_inputs

        attributes = [] if dataset.users is None else [str(c) for c in dataset.users.columns if c != "user_id"]
        check_family_inputs(family, pack, user_attributes=attributes, dataset=dataset, params=chosen)
    if "random_state" in (family.parameter_names() or []) and "random_state" not in (params or {}):
        chosen["random_state"] = random_state
    model = family.create(**chosen)  # an unknown parameter name: refused here, before any data is read
    feedback = feedback or FeedbackConfig()
    sources = renamed_columns_read(family, dataset, chosen)  # off the data as given, before the filter copies it
    kept, exclusions, filtered = _filtered(dataset, store, pack, now)
    report = validate_events(kept).to_dict()
    matrix = to_implicit(kept.events, feedback)
    # what the family declared besides the interactions, as `recgov evaluate --families` gives it
    side = {**content_inputs(model, kept, matrix), **family_side_inputs(model, kept, matrix, kept.events)}
    fed = {"interactions", *(name for key in side for name in SIDE_FIELDS.get(key, ()))} & set(family.inputs)
    started = datetime.now(timezone.utc)
    with measure(country_iso_code, enabled=measure_carbon) as meter:
        model.fit(matrix, show_progress=show_progress, **side)
    ended = datetime.now(timezone.utc)
    carbon = meter.facts
    before_hash = dataset.content_hash() if filtered else None
    data_hash = kept.content_hash()
    if filtered:
        from governance.training_filter import record_filtering

        record_filtering(store, pack, before_hash, data_hash, exclusions, actor=actor)
    version = model.version_id_
    models_dir.mkdir(parents=True, exist_ok=True)
    artifact = models_dir / f"{version}.npz"
    # unique per call: two trainings of the same version (threads of one process, or two processes) must not
    # write through one temporary file, which one of them would move away under the other
    pending = models_dir / f".{version}.{os.getpid()}.{uuid.uuid4().hex[:12]}.pending.npz"
    artifact_hash = model.save(pending)
    try:
        with store.session() as session:
            dv = record_dataset(
                session, kept, content_hash=data_hash,
                validation={"n_rows": report["n_rows"], "findings": {f["code"]: f["count"] for f in report.get("findings", [])}},
                actor=actor,
            )  # fmt: skip
            run = record_training_run(
                session,
                dataset_version=dv,
                params={
                    FAMILY_RUN_KEY: family.name,
                    "family_params": model.get_params(),
                    "erasure": family.erasure.value,
                    "family_inputs": sorted(family.inputs),
                    "inputs_given": sorted(fed),
                    # the fields the fit read, as for ALS: the event columns of the conversion, and the side inputs
                    "model_inputs": [*MODEL_INPUT_COLUMNS, *sorted(fed - {"interactions"})],
                    INPUT_SOURCES: sources,
                    "feedback": feedback.model_dump(),
                    "privacy_filter": exclusions,
                    ERASURES_SEEN: exclusions.get(ERASURES_SEEN),
                },
                library_versions=_library_versions(model),
                started_at=started,
                ended_at=ended,
                actor=actor,
            )
            if carbon is not None:
                record_carbon(
                    session, training_run=run, energy_kwh=carbon.energy_kwh, emissions_kg=carbon.emissions_kg,
                    carbon_method=carbon.method, actor=actor,
                )  # fmt: skip
            existing = session.get(ModelVersion, version)
            reproduced = existing is not None
            if existing is None:
                record_model_version(
                    session, version_id=version, kind=family.name, training_run=run, artifact_hash=artifact_hash,
                    artifact_location=str(artifact), actor=actor,
                )  # fmt: skip
            elif existing.artifact_hash != artifact_hash:
                raise ConfigError(
                    f"model version {version} is recorded with artifact {existing.artifact_hash[:16]}... but this run "
                    f"produced {artifact_hash[:16]}... from the same content; refusing to record it under the same version"
                )
            run_id = run.id
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    os.replace(pending, artifact)
    return FamilyTraining(
        family=family,
        model=model,
        matrix=matrix,
        dataset_version=data_hash,
        training_run_id=run_id,
        model_version=version,
        artifact=artifact,
        artifact_hash=hashlib.sha256(artifact.read_bytes()).hexdigest(),
        carbon=carbon,
        seconds=(ended - started).total_seconds(),
        reproduced=reproduced,
        exclusions=exclusions,
        inputs_given=frozenset(fed),
    )
