"""The model side of an erasure: which models hold the subject, unlearning them, recording the new versions.

:func:`models_for` lists every recorded model version with whether its
training data includes the subject, read from its artifact where it can be.
:func:`unlearn_models` is the unlearning step of :func:`governance.privacy.erasure.erase_subject`:
it unlearns the subject from each model artifact the caller names and, with
``unlearn_recorded``, from every recorded artifact that holds them
(:func:`recommender.unlearning.forget_users`), and measures the residual
influence against a retrain on models small enough (:data:`RESIDUAL_MAX_INTERACTIONS`).
:func:`record_unlearned_models` records each new version's lineage in the store
with its standing: a provisional stand-in until the full retrain replaces it,
and whether recgov can run that retrain (a recorded recipe).

Nothing here writes the raw subject id: reports name model versions and paths,
which the erasure checks with :func:`governance.privacy.common.guard`.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from audits import record_dataset_version, record_model_version, record_training_run
from audits._common import in_values
from audits.models import DatasetVersion, ModelVersion
from governance.privacy.common import erased_since, iso, plain
from governance.privacy.family_erasure import exactly_replaced_by
from governance.privacy.retrains import training_recipe
from recommender.errors import ConfigError, DataError
from recommender.family import model_user_ids
from recommender.feedback import MODEL_INPUT_COLUMNS

__all__ = [
    "MODEL_NOT_FOUND",
    "NOT_LOADED",
    "OLDER_REPLACED_ACTION",
    "RESIDUAL_MAX_INTERACTIONS",
    "SUPERSEDED_ACTION",
    "WHY_NO_RECIPE",
    "WHY_UNRECORDED",
    "UnlearnedModel",
    "UnlearningOptions",
    "UnlearningReport",
    "delete_older_artifacts",
    "erased_since",
    "model_paths",
    "models_for",
    "older_holding",
    "record_unlearned_models",
    "refuse_erased_meanwhile",
    "replace_in_serving",
    "replace_older_versions",
    "unlearn_models",
]

RESIDUAL_MAX_INTERACTIONS = 200_000
"""Measure residual influence (which needs a full retrain to compare with) only below this many interactions."""

MODEL_NOT_FOUND = "model artifact {path} does not exist; expected a .npz file written by `recgov train`"
WHY_UNRECORDED = "the model it was unlearned from ({source}) is not recorded in this store, so its training recipe is unknown"
WHY_NO_RECIPE = "the store does not record how its lineage was trained (no ALS parameters in the training run of {source})"


@dataclass(frozen=True)
class UnlearningOptions:
    """How the unlearning step treats each artifact (the erasure's keyword options of the same names)."""

    out_dir: Path | None = None
    """Folder for the unlearned artifacts; None: beside each previous artifact."""
    delete_previous: bool = False
    """Delete each previous artifact the caller named, once the erasure is committed."""
    measure_residual: bool = True
    propagate: int = 1
    unlearn_recorded: bool = True
    """Also unlearn from every recorded artifact that holds the subject, not only those named."""
    exact: bool = True
    """Erase from ALS models exactly (:func:`recommender.unlearning.refit_without_users`: the model trained without
    the subject replaces the version it came from); False: fast unlearning
    (:func:`recommender.unlearning.forget_users`), a provisional stand-in until the full retrain."""


@dataclass(frozen=True)
class UnlearnedModel:
    """One model the subject was unlearned from: its report, the unlearning result, the new artifact, and when."""

    report: dict[str, Any]
    result: Any
    target: Path
    artifact_hash: str
    started: datetime
    ended: datetime

    @property
    def provisional(self) -> bool:
        """Whether a retrain is still owed (fast unlearning); an exact erasure's model is the one trained without them."""
        return not self.result.exact

    @property
    def previous_version(self) -> str:
        """The version the subject was removed from."""
        return self.result.previous_version

    @property
    def version(self) -> str:
        """The version made without the subject."""
        return self.result.version


@dataclass(frozen=True)
class UnlearningReport:
    """What the unlearning step did: one JSON-ready report per model tried (``steps``), and the models unlearned."""

    steps: list[dict[str, Any]]
    unlearned: list[UnlearnedModel]
    families: list[Any] = field(default_factory=list)
    """The other families' models the subject was removed from (:class:`governance.privacy.family_erasure.ForgottenModel`)."""
    older: dict[str, str] = field(default_factory=dict)
    """Older ALS versions of a lineage an exact erasure refit that list the subject too (made before an approximate
    erasure of someone else, which kept them), each with the refit that replaces them (:func:`replace_older_versions`)."""

    @property
    def new_versions(self) -> set[str]:
        """The model versions this erasure created."""
        return {u.result.version for u in self.unlearned} | {f.version for f in self.families}

    @property
    def sources(self) -> set[str]:
        """The model versions the subject was unlearned from."""
        return {u.result.previous_version for u in self.unlearned} | {f.previous_version for f in self.families}

    @property
    def settled(self) -> set[str]:
        """The versions an exact erasure replaced by the model trained without the subject: no retrain is owed for them."""
        return {m.previous_version for m in self.replacing if not m.provisional} | set(self.older)

    @property
    def provisional(self) -> list[str]:
        """The new versions, in order: provisional stand-ins the full retrain must replace (an exact erasure's
        version is the model trained without the subject: none is owed)."""
        return [m.version for m in self.replacing if m.provisional]

    @property
    def replacing(self) -> list[Any]:
        """Every model made without the subject, ALS and other families alike (each with ``previous_version``,
        ``version``, ``provisional``, ``report``, ``target``)."""
        return [*self.unlearned, *self.families]


def _artifact_membership(location: str, artifact_hash: str, subject: str) -> tuple[str, str]:
    """Whether the recorded artifact holds the subject: (``includes``|``does_not_include``|``may_include``, why)."""
    path = Path(location)
    try:
        data = path.read_bytes()
    except OSError:
        return (
            "may_include",
            "the artifact is not readable at its recorded location; the store records data set versions, not who is in them",
        )
    if hashlib.sha256(data).hexdigest() != artifact_hash.removeprefix("sha256:"):
        return "may_include", "the file at the recorded location is not the recorded artifact (its hash differs)"
    try:
        # an ALS artifact names its rows user_ids, a model family's (recommender.family.train_arrays) train_user_ids,
        # and a hybrid's rows are those of the parts' files it holds
        user_ids = model_user_ids(io.BytesIO(data))
    except DataError:
        return "may_include", "the artifact is not a readable recgov model file"
    if user_ids is None:
        return "may_include", "the artifact names no training rows a reader knows"
    if bool((user_ids.astype(str) == subject).any()):
        return "includes", "the recorded artifact's training rows include the subject"
    return "does_not_include", "the recorded artifact's training rows do not include the subject"


REPLACED_FILE_GONE = (
    "an exact erasure replaced this version by {new} (trained without the erased subject) and deleted its file: "
    "no artifact of it holds anyone"
)


def models_for(
    store: Any, subject: str, *, dataset_hash: str | None = None, subject_in_dataset: bool = False
) -> list[dict[str, Any]]:
    """Every recorded model version with whether its training data includes the subject.

    The store keeps data set versions (hashes and counts), not who is in them,
    so membership is read from each model's artifact when it is still at its
    recorded location with its recorded hash; else, if ``dataset_hash`` is the
    model's data set version, from the data given; else ``may_include``. The
    artifacts are read after the (short) transaction that lists the models.
    """
    with store.session() as session:
        rows = session.execute(
            select(
                ModelVersion.version_id,
                ModelVersion.kind,
                ModelVersion.created_at,
                ModelVersion.artifact_location,
                ModelVersion.artifact_hash,
                DatasetVersion.content_hash,
                DatasetVersion.name,
            )
            .join(DatasetVersion, ModelVersion.dataset_version_id == DatasetVersion.id)
            .order_by(ModelVersion.created_at, ModelVersion.version_id)
        ).all()
        replaced = exactly_replaced_by(session)
    out = []
    for version_id, kind, created_at, location, artifact_hash, data_hash, data_name in rows:
        membership, why = _artifact_membership(location, artifact_hash, subject)
        if membership == "may_include" and version_id in replaced and not Path(location).exists():
            membership, why = "does_not_include", REPLACED_FILE_GONE.format(new=replaced[version_id])
        if membership == "may_include" and dataset_hash is not None and data_hash == dataset_hash:
            membership = "includes" if subject_in_dataset else "does_not_include"
            why = "trained on the data set version of the data given, " + (
                "which holds the subject's events" if subject_in_dataset else "which holds no event of the subject"
            )
        out.append(
            {
                "version_id": version_id,
                "kind": kind,
                "created_at": iso(created_at),
                "dataset_version": data_hash,
                "dataset_name": data_name,
                "membership": membership,
                "why": why,
            }
        )
    return out


def model_paths(model_path: str | Path | Sequence[str | Path] | None) -> list[Path]:
    """The model artifacts named (one path or several), each checked to exist."""
    if model_path is None:
        return []
    paths = [Path(model_path)] if isinstance(model_path, (str, Path)) else [Path(p) for p in model_path]
    for path in paths:
        if not path.is_file():
            raise ConfigError(MODEL_NOT_FOUND.format(path=path))
    return paths


def _unlearn(
    model: Any,
    path: Path,
    out_dir: Path,
    subject: str,
    *,
    measure_residual: bool,
    delete_previous: bool,
    propagate: int = 1,
    exact: bool = True,
    also: Sequence[str] = (),
) -> tuple[dict[str, Any], Any, Path | None, str | None]:
    """Remove the subject from one loaded model; save the new artifact. Returns (report, result, new path, hash).

    ``exact``: the model trained without the subject (:func:`recommender.unlearning.refit_without_users`); else the
    fast update (:func:`recommender.unlearning.forget_users`, ``propagate`` sweeps). ``also``: the rows of subjects
    erased since the model's data was read (:func:`erased_since`), which the exact refit leaves out too."""
    from recommender.als import ALSRecommender
    from recommender.unlearning import forget_users, refit_without_users, residual_influence

    report: dict[str, Any] = {"previous_version": model.version_id_, "n_interactions": model.train_.nnz}
    if model.train_.user_index([subject])[0] < 0:
        report.update(
            status="not_in_model", note="the model's training rows do not include the subject: nothing to unlearn"
        )
        return report, None, None, None
    erased = [subject, *(s for s in also if s != subject)]
    result = refit_without_users(model, erased) if exact else forget_users(model, [subject], propagate=propagate)
    report.update(status="unlearned", **plain(result.as_dict()))
    if len(erased) > 1:  # the figures are the subject's own: whom else the refit left out is not theirs to read
        own = int(model.train_.matrix[int(model.train_.user_index([subject])[0])].nnz)
        report.update(n_users_removed=1, n_interactions_removed=own, also_left_out=ALSO_LEFT_OUT)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{result.version}.npz"
    # unique per call: two erasures in one process (the API's threads) may make the same version at once
    pending = out_dir / f".{result.version}.{os.getpid()}.{uuid.uuid4().hex[:12]}.pending.npz"
    try:
        artifact_hash = result.model.save(pending)
        saved = ALSRecommender.load(pending)
        if saved.train_.user_index([subject])[0] >= 0:  # belt and braces: the saved file must not hold them
            raise DataError(f"the unlearned artifact {target} still lists the subject among its users; not saved")
        existing = ALSRecommender.load(target) if target.exists() else None
        if existing is not None and existing.version_id_ == result.version and existing.train_.user_index([subject])[0] < 0:
            # The same model minus the same rows was unlearned before (the version id is derived from
            # them): keep the file already there, which its recorded version points at, rather than
            # replace it with a copy whose bytes may differ in the last bits of a float.
            artifact_hash = hashlib.sha256(target.read_bytes()).hexdigest()
            report["artifact_reused"] = True
        else:
            os.replace(pending, target)
    finally:
        pending.unlink(missing_ok=True)
    report.update(artifact=str(target), artifact_hash=artifact_hash)

    if result.exact:
        report["residual_influence"] = {"measured": False, "reason": EXACT_RESIDUAL}
    elif not measure_residual:
        report["residual_influence"] = {"measured": False, "reason": "not asked for"}
    elif model.train_.nnz >= RESIDUAL_MAX_INTERACTIONS:
        report["residual_influence"] = {
            "measured": False,
            "reason": (
                f"the model holds {model.train_.nnz:,} interactions, at or above {RESIDUAL_MAX_INTERACTIONS:,}: "
                "measuring needs a full retrain without the subject to compare with; skipped"
            ),
        }
    else:
        started = time.perf_counter()
        retrained = ALSRecommender(**model.get_params(), num_threads=model.num_threads).fit(result.model.train_)
        # A constant score row makes a correlation NaN (reported as null), with a RuntimeWarning: not news.
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            figures = residual_influence(result.model, retrained, original=model, forgotten=[subject])
        report["residual_influence"] = {"measured": True, "seconds": time.perf_counter() - started, **plain(figures)}

    report["previous_artifact"] = str(path)
    if delete_previous:
        # Deleted by the caller once the new model is recorded: a failed recording
        # must not leave the recorded version pointing at a deleted file.
        report["previous_artifact_deleted"] = True
    else:
        report["previous_artifact_deleted"] = False
        report["previous_artifact_note"] = (
            "the previous artifact still holds the subject: delete it (delete_previous / --delete-previous) "
            "once the new one is deployed"
        )
    return report, result, target, artifact_hash


ALSO_LEFT_OUT = (
    "the refit also leaves out the subjects erased since this version read their data, as a training now would"
)
EXACT_RESIDUAL = "exact erasure: the model is the one trained without the subject, nothing of them is left to measure"

NOT_LOADED = "the recorded artifact {path} holds the subject but could not be loaded ({cause}); retrain without them and retire it"


SUPERSEDED_ACTION = (
    "withdrawn from serving for the subject (it read its data before the erasure); versions were unlearned from "
    "it since, and the newest of its lineage is the one to unlearn: retire it"
)


def _lineage(session: Session) -> dict[str, str]:
    """Each recorded unlearned version with the version it was derived from (``params.unlearning.from``)."""
    from audits.models import TrainingRun

    parents = {}
    rows = session.execute(
        select(ModelVersion.version_id, TrainingRun.params).join(ModelVersion, ModelVersion.training_run_id == TrainingRun.id)
    )
    for version, params in rows:
        unlearning = params.get("unlearning") if isinstance(params, Mapping) else None
        if isinstance(unlearning, Mapping) and isinstance(unlearning.get("from"), str):
            parents[version] = unlearning["from"]
    return parents


def _superseded(session: Session) -> set[str]:
    """The recorded versions an unlearned version was derived from (``params.unlearning.from``).

    An erasure unlearns only the newest version of each lineage: unlearning the
    older ones too would double the recorded versions with every erasure, and
    serving already withdraws every version that read its data before an
    erasure from the erased subject (:func:`governance.serving.erasure_decision`).
    """
    return set(_lineage(session).values())


def older_holding(version: str, parents: Mapping[str, str], holding: set[str]) -> list[str]:
    """The versions ``version`` derives from (newest first, through ``parents``) that are in ``holding``."""
    out, seen = [], {version}
    current = parents.get(version)
    while current is not None and current not in seen:
        seen.add(current)
        if current in holding:
            out.append(current)
        current = parents.get(current)
    return out


def _older_holding_all(parents: Mapping[str, str], holding: set[str]) -> set[str]:
    """The versions that list the subject and have a newer version of their lineage that lists them too."""
    return {older for v in holding for older in older_holding(v, parents, holding)}


def _holding(catalogue: list[dict[str, Any]]) -> set[str]:
    """The catalogue's versions whose artifact lists the subject."""
    return {e["version_id"] for e in catalogue if e["membership"] == "includes"}


def _recorded_models_holding(
    store: Any, catalogue: list[dict[str, Any]], *, skip: set[str], exact: bool = False
) -> tuple[list[tuple[Path, Any]], list[dict[str, Any]]]:
    """The newest recorded model versions of their lineage whose artifact (read at its recorded location,
    with its recorded hash) lists the subject, loaded for unlearning, except the versions in ``skip``; and a
    report entry for each such artifact that could not be loaded. The older versions they replace are
    marked in ``catalogue`` (:data:`SUPERSEDED_ACTION`).

    ``exact``: the newest version of each lineage that lists the subject, so that a version whose newer
    versions were made without the subject (by an approximate erasure of them) is refit, not left holding
    them; its older versions that list them too are replaced by that refit (:func:`replace_older_versions`)."""
    from recommender.als import ALSRecommender

    with store.session() as session:
        if exact:
            superseded = _older_holding_all(_lineage(session), _holding(catalogue))
        else:
            superseded = _superseded(session)
    for entry in catalogue:
        if entry["membership"] == "includes" and entry["version_id"] in superseded:
            entry["action"] = SUPERSEDED_ACTION
    from governance.privacy.family_erasure import family_for_kind

    versions = [
        e["version_id"]
        for e in catalogue
        if e["membership"] == "includes" and e["version_id"] not in skip | superseded and family_for_kind(e.get("kind")) is None
    ]
    if not versions:
        return [], []
    with store.session() as session:
        rows = session.execute(
            select(ModelVersion.version_id, ModelVersion.artifact_location).where(in_values(session, ModelVersion.version_id, versions))
        ).all()
    loaded, unreadable = [], []
    for version, location in sorted(rows):
        path = Path(location)
        try:
            model = ALSRecommender.load(path)
        except (OSError, ValueError, KeyError, ConfigError, DataError) as err:
            unreadable.append({"previous_version": version, "status": "not_unlearned", "note": NOT_LOADED.format(path=path, cause=type(err).__name__)})
            continue
        if model.version_id_ == version:
            loaded.append((path, model))
    return loaded, unreadable


def _record_unlearned(
    session: Session,
    report: dict[str, Any],
    result: Any,
    target: Path,
    artifact_hash: str,
    request_id: int,
    started: datetime,
    ended: datetime,
    actor: str | None,
    standing: Mapping[str, Any] | None = None,
) -> None:
    """Record the unlearned model's lineage, with its ``standing``, when the model it came from is recorded."""
    from recommender.unlearning import EXACT_METHOD, UNLEARNING_METHOD

    already = session.get(ModelVersion, result.version)
    same_file = already is not None and already.artifact_location == str(target) and already.artifact_hash == artifact_hash
    if already is not None and (same_file or result.exact):  # an exact erasure's model is the one its data trains
        # recorded by an earlier erasure that removed the same rows from the same model
        report["recorded"] = True
        report["training_run"] = already.training_run_id
        report["recorded_note"] = f"the same unlearned model was recorded before (training run {already.training_run_id}); reused"
        return
    previous = session.get(ModelVersion, result.previous_version)
    if previous is None:
        report["recorded"] = False
        report["recorded_note"] = (
            "the model it came from is not recorded in this store; record the new model before serving it"
        )
        return
    source = session.get(DatasetVersion, previous.dataset_version_id)
    train = result.model.train_
    data = record_dataset_version(
        session,
        content_hash=result.model.data_hash_,
        name=f"{source.name} after unlearning"[:200],
        source=f"interaction matrix of model {result.previous_version} minus the rows removed for erasure request {request_id}",
        n_events=train.nnz,
        n_users=train.n_users,
        n_items=train.n_items,
        schema={
            "kind": "interaction matrix (n_events counts stored user-item pairs)",
            "derived_from": source.content_hash,
        },
        validation=None,
        actor=actor,
    )
    run = record_training_run(
        session,
        dataset_version=data,
        params={
            **result.model.get_params(),
            "unlearning": {
                "method": EXACT_METHOD if result.exact else UNLEARNING_METHOD,
                **({"kind": "exact"} if result.exact else {}),
                "from": result.previous_version,
                "refresh_items": result.refresh_items,
                "propagate": result.propagate,
                "subject_request": request_id,
                **({"standing": dict(standing)} if standing is not None else {}),
            },
            "model_inputs": list(MODEL_INPUT_COLUMNS),
        },
        library_versions=result.model.library_versions_,
        started_at=started,
        ended_at=ended,
        actor=actor,
    )
    record_model_version(
        session,
        version_id=result.version,
        kind="als",
        training_run=run,
        artifact_hash=artifact_hash,
        artifact_location=str(target),
        actor=actor,
    )
    report["recorded"] = True
    report["training_run"] = run.id


EXACT_STANDING = {
    "standing": "final",
    "retrain_required": False,
    "reason": "exact erasure: the model is the one trained without the subject (its recipe on the matrix without them)",
}
"""The standing an exact erasure records with its model: no retrain owed (serving treats it as trained)."""


def _provisional_standing(retrain: Mapping[str, Any] | None) -> dict[str, Any]:
    """An unlearned model's standing as recorded with it: provisional until the erasure's retrain replaces it.

    The erasure does not run the held-out-half protocol, so the decision is
    :func:`recommender.unlearning_quality.unlearned_model_standing` without a
    verdict: provisional, retrain required (measured, such models stay outside
    the range of retrains; BENCHMARKS.md).
    """
    from recommender.unlearning_quality import unlearned_model_standing

    decided = unlearned_model_standing(None)
    return {
        "standing": "provisional" if decided.provisional else "final",
        "retrain_required": decided.retrain_required,
        "reason": decided.reason,
        "retrain_request": None if retrain is None else retrain["id"],
        "deadline": None if retrain is None else retrain["deadline"],
    }


def _retrainability(session: Session, report: Mapping[str, Any], result: Any, standing: Mapping[str, Any]) -> dict[str, Any]:
    """The standing with whether recgov can run the retrain (a recorded recipe), and why not."""
    why = None
    if not report.get("recorded"):
        why = WHY_UNRECORDED.format(source=result.previous_version)
    elif training_recipe(session, result.version) is None:
        why = WHY_NO_RECIPE.format(source=result.previous_version)
    return {**standing, "retrainable": why is None, "why_not": why}


def unlearn_models(
    store: Any,
    subject: str,
    models: Sequence[tuple[Path, Any]],
    catalogue: list[dict[str, Any]],
    options: UnlearningOptions,
    say: Callable[[str], None],
) -> UnlearningReport:
    """Unlearn the subject from each model given and, with ``unlearn_recorded``, each recorded model holding them.

    ``catalogue`` is :func:`governance.privacy.erasure.models_for`, read before
    any artifact is deleted. A recorded artifact that cannot be loaded is
    reported (:data:`NOT_LOADED`), not unlearned; the previous artifact is marked
    for deletion only for models the caller named.
    """
    unlearned: list[UnlearnedModel] = []
    reports: list[dict[str, Any]] = []
    recorded: list[tuple[Path, Any]] = []
    if options.unlearn_recorded:
        named = {model.version_id_ for _path, model in models}
        recorded, unreadable = _recorded_models_holding(store, catalogue, skip=named, exact=options.exact)
        reports.extend(unreadable)
    for path, model, named_by_caller in [*((p, m, True) for p, m in models), *((p, m, False) for p, m in recorded)]:
        say(f"unlearning the subject from {path.name}")
        also: list[str] = []
        if options.exact:  # the model trained without the subject is trained without everyone erased since, too
            with store.session() as session:
                also = erased_since(session, model.version_id_, model.train_.user_ids)
        t0 = datetime.now(UTC)
        report, result, target, artifact_hash = _unlearn(
            model,
            path,
            options.out_dir or path.parent,
            subject,
            measure_residual=options.measure_residual,
            propagate=options.propagate,
            delete_previous=options.delete_previous and named_by_caller,
            exact=options.exact,
            also=also,
        )
        reports.append(report)
        if result is not None:
            ended = t0 + timedelta(seconds=result.seconds)  # the unlearning itself, not the measurement
            unlearned.append(UnlearnedModel(report, result, target, artifact_hash, t0, ended))
    forgotten: list[Any] = []
    if options.unlearn_recorded:  # the other families' recorded models, each as its erasure kind says
        from governance.privacy.family_erasure import forget_family_models

        with store.session() as session:
            parents = _lineage(session)
            # exact: as for ALS, the newest version of each lineage that lists the subject (its older ones that list
            # them too are replaced by what is made from it, below); approximate: the newest of each lineage
            superseded = _older_holding_all(parents, _holding(catalogue)) if options.exact else _superseded(session)
        family_reports, forgotten = forget_family_models(
            store, subject, catalogue, out_dir=options.out_dir, superseded=superseded, say=say, exact=options.exact
        )
        reports.extend(family_reports)
    older: dict[str, str] = {}
    made = [u for u in unlearned if not u.provisional] + [f for f in forgotten if not f.provisional]
    if options.exact and made:
        with store.session() as session:
            parents = _lineage(session)
        holding = _holding(catalogue)
        for m in made:
            for version in older_holding(m.previous_version, parents, holding):
                older.setdefault(version, m.version)
    return UnlearningReport(steps=reports, unlearned=unlearned, families=forgotten, older=older)


def record_unlearned_models(
    session: Session,
    unlearning: UnlearningReport,
    retrain: Mapping[str, Any] | None,
    request_id: int,
    actor: str | None,
) -> None:
    """Record each unlearned version with its standing, and add the standing to its report.

    The standing is provisional until ``retrain`` (the erasure's retrain
    request, if any) replaces the version; it says whether recgov can run that
    retrain (a recorded recipe) and why not.
    """
    for u in unlearning.unlearned:
        standing = EXACT_STANDING if u.result.exact else _provisional_standing(retrain)
        _record_unlearned(
            session, u.report, u.result, u.target, u.artifact_hash, request_id, u.started, u.ended, actor, standing
        )
        # an exact erasure owes no retrain: whether recgov could run one does not matter
        u.report["standing"] = {**standing, "retrainable": True, "why_not": None} if u.result.exact else _retrainability(session, u.report, u.result, standing)
    if unlearning.families:
        from governance.privacy.family_erasure import record_forgotten_models

        record_forgotten_models(session, unlearning.families, retrain, request_id, actor)


OLDER_REPLACED_ACTION = (
    "exactly erased by this request: it lists the subject, like the newer version of its lineage refit without "
    "them, and model version {new}, that refit, replaces it (in its deployment stage, if it had one and {new} "
    "had none); this version is retired and its file deleted"
)


def replace_older_versions(session: Session, unlearning: UnlearningReport, request_id: int, actor: str | None) -> None:
    """In the erasure's transaction: each older version of a lineage an exact erasure refit that lists the subject
    too (``unlearning.older``) gives its stage to the refit and is retired (:func:`governance.deploy.replace_after_erasure`,
    with its ``model.replaced_by_erasure`` event); its file is marked for deletion (:func:`delete_older_artifacts`,
    once the transaction is committed). Oldest first."""
    for old, new in reversed(list(unlearning.older.items())):
        _replace_older(session, unlearning, old, new, request_id, actor)


def _replace_older(session: Session, unlearning: UnlearningReport, old: str, new: str, request_id: int, actor: str | None) -> None:
    from governance.deploy import replace_after_erasure

    by_new = {m.version: m for m in unlearning.replacing if not m.provisional}
    u = by_new[new]
    row = session.get(ModelVersion, old)
    if row is None or not u.report.get("recorded") or session.get(ModelVersion, new) is None:
        return
    moved = replace_after_erasure(session, old=old, new=new, erasure_request=request_id, actor=actor)
    u.report.setdefault("older_versions_replaced", []).append(
        {
            "version": old, "artifact": row.artifact_location, "stage": moved["stage"], "artifact_deleted": True,
            **({"stage_not_kept": moved["not_kept"], "note": moved["note"]} if moved["not_kept"] else {}),
        }  # fmt: skip
    )


_RANK = {"production": 0, "canary": 1, "shadow": 2}


def replace_in_serving(session: Session, unlearning: UnlearningReport, request_id: int, actor: str | None) -> None:
    """In the erasure's transaction: every version an exact erasure replaced, the one it refit
    (:func:`governance.privacy.family_erasure.replace_exactly_erased`) and the older ones of its lineage that list
    the subject too (:func:`replace_older_versions`), in the order of the stages they hold: production first, then
    canary, then shadow, then the rest (oldest first), so that the refit, which holds one stage, takes the highest
    one they held and each stage it could not take is named (never production left empty)."""
    from governance.deploy import deployed_versions
    from governance.privacy.family_erasure import replace_exactly_erased

    stage_of = {v: stage for stage, versions in deployed_versions(session).items() for v in versions}
    tasks: list[tuple[int, int, Callable[[], None]]] = []
    for i, (old, new) in enumerate(reversed(list(unlearning.older.items()))):
        tasks.append((_RANK.get(stage_of.get(old, ""), 3), i, lambda old=old, new=new: _replace_older(session, unlearning, old, new, request_id, actor)))
    for j, m in enumerate(unlearning.replacing, start=len(tasks)):
        tasks.append((_RANK.get(stage_of.get(m.previous_version, ""), 3), j, lambda m=m: replace_exactly_erased(session, [m], request_id, actor)))
    for _rank, _i, task in sorted(tasks, key=lambda t: t[:2]):
        task()


OLDER_NOT_DELETED = (
    "the artifact {path} of model version {version} still lists the subject: recgov could not delete it ({cause}); "
    "the version is retired and serves nobody: delete the file"
)


def delete_older_artifacts(unlearning: UnlearningReport) -> list[str]:
    """Delete the files :func:`replace_older_versions` marked (after the commit: a failed erasure keeps them); what
    could not be deleted, each with what to do."""
    failed = []
    for u in unlearning.replacing:
        for entry in u.report.get("older_versions_replaced", []):
            try:
                Path(entry["artifact"]).unlink(missing_ok=True)
            except OSError as err:
                entry["artifact_deleted"] = False
                failed.append(OLDER_NOT_DELETED.format(path=entry["artifact"], version=entry["version"], cause=type(err).__name__))
    return failed


ERASED_MEANWHILE = (
    "model version {version}, made by this erasure from {source}, lists a subject another erasure erased while this "
    "one ran; nothing was recorded: run the erasure again (it leaves out everyone erased before it)"
)
RECORDED_MEANWHILE = (
    "model version {version}, recorded while this erasure ran, lists the subject; nothing was "
    "recorded: run the erasure again (it removes the subject from every version that lists them)"
)


def refuse_erased_meanwhile(session: Session, unlearning: UnlearningReport, subject: str, catalogue: list[dict[str, Any]]) -> None:
    """In the erasure's transaction, after :func:`audits.trail.lock_head`: refuse to record when an erasure running
    beside this one committed between this one's listing and its recording, so that neither leaves a version holding
    whom the other erased: a version this one made (the newest of a lineage, a family's refit, or the refit that
    replaces older versions) that lists a subject erased since its source read their data; or a version recorded
    since this one listed the models (the other's refit of a version this one did not reach) that lists the subject."""
    for m in unlearning.replacing:
        if m.provisional:
            continue
        rows = m.result.model.train_.user_ids if hasattr(m, "result") else m.model.subjects()
        if erased_since(session, m.previous_version, rows):
            raise DataError(ERASED_MEANWHILE.format(version=m.version, source=m.previous_version))
    listed = {e["version_id"] for e in catalogue} | unlearning.new_versions
    recorded = session.execute(select(ModelVersion.version_id, ModelVersion.artifact_location, ModelVersion.artifact_hash)).all()
    for version, location, artifact_hash in recorded:
        if version not in listed and _artifact_membership(location, artifact_hash, subject)[0] == "includes":
            raise DataError(RECORDED_MEANWHILE.format(version=version))
