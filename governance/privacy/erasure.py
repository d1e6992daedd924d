"""Erasure (GDPR Art. 17): unlearn the subject, list what may still hold them, record it, then shred.

:func:`erase_subject` unlearns the subject from the model artifacts given
(:func:`_unlearn`), records the unlearned versions and their standing
(:func:`_record_unlearned`), lists the recorded models that may still hold the
subject (:func:`models_for`, also read by the access export), optionally runs
the full retrain at once (:mod:`governance.privacy.retrains`), and only then
crypto-shreds the subject's pseudonym secret.

An erasure writes a suppression record (:mod:`audits.suppression`), found by a
keyed hash of the raw id, so that what it settled survives crypto-shredding:
the opt-outs and objections in force stay in force at serving and training,
and the subject's events from before the erasure are never trained on again.
Nothing here writes a raw subject id anywhere (:func:`governance.privacy.common.guard`).
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audits import (
    effective_consent,
    open_request,
    record_dataset_version,
    record_model_version,
    record_training_run,
    shred_subject,
    update_request,
)
from audits._common import actor_name, in_values
from audits.models import ConsentRecordRow, DatasetVersion, DecisionRecord, ModelVersion, SubjectRequest, TrailEvent
from audits.suppression import SUPPRESSED_STATUSES, suppress_subject
from governance.policy import LoadedPack, PolicyPack
from governance.privacy.common import (
    as_subject,
    fail_request,
    guard,
    iso,
    pack_policy,
    pack_stamp,
    pending_erasure,
    plain,
    request_deadline,
    scrubbed,
)
from governance.privacy.retrains import (
    CANNOT_RETRAIN,
    check_not_in_artifact,
    check_retrain_data,
    run_retrains,
    training_recipe,
)
from recommender.data import Dataset
from recommender.errors import ConfigError, DataError
from recommender.feedback import MODEL_INPUT_COLUMNS

__all__ = [
    "ERASURE_FAILED",
    "MODEL_NOT_FOUND",
    "NOT_LOADED",
    "RESIDUAL_MAX_INTERACTIONS",
    "RETRAIN_AFTER_ERASURE_FAILED",
    "SUPERSEDED_ACTION",
    "WHY_NO_RECIPE",
    "WHY_UNRECORDED",
    "erase_subject",
    "models_for",
]

RESIDUAL_MAX_INTERACTIONS = 200_000
"""Measure residual influence (which needs a full retrain to compare with) only below this many interactions."""

# What an erasure answers when it cannot go on.
MODEL_NOT_FOUND = "model artifact {path} does not exist; expected a .npz file written by `recgov train`"
ERASURE_FAILED = "the erasure request {id} failed and the subject was NOT shredded: {cause}"
RETRAIN_AFTER_ERASURE_FAILED = (
    "erasure request {erasure} is complete and the subject is shredded, but the retrain failed: {cause}; "
    "retrain request {id} stays open until {deadline}: run `recgov retrain run DATA` once the cause is fixed"
)
WHY_UNRECORDED = "the model it was unlearned from ({source}) is not recorded in this store, so its training recipe is unknown"
WHY_NO_RECIPE = "the store does not record how its lineage was trained (no ALS parameters in the training run of {source})"


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
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            user_ids = npz["user_ids"]
    except (OSError, ValueError, KeyError):
        return "may_include", "the artifact is not a readable recgov model file"
    if bool((user_ids.astype(str) == subject).any()):
        return "includes", "the recorded artifact's training rows include the subject"
    return "does_not_include", "the recorded artifact's training rows do not include the subject"


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
    out = []
    for version_id, kind, created_at, location, artifact_hash, data_hash, data_name in rows:
        membership, why = _artifact_membership(location, artifact_hash, subject)
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


def _count_by_subject(session: Session, pseudonym: str) -> dict[str, int]:
    def count(column: Any) -> int:
        return int(session.scalar(select(func.count()).where(column == pseudonym)) or 0)

    return {
        "consent_records": count(ConsentRecordRow.subject),
        "subject_requests": count(SubjectRequest.subject),
        "decisions": count(DecisionRecord.subject),
        "trail_events": count(TrailEvent.subject),
    }


def _model_paths(model_path: str | Path | Sequence[str | Path] | None) -> list[Path]:
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
) -> tuple[dict[str, Any], Any, Path | None, str | None]:
    """Remove the subject from one loaded model; save the new artifact. Returns (report, result, new path, hash)."""
    from recommender.als import ALSRecommender
    from recommender.unlearning import forget_users, residual_influence

    report: dict[str, Any] = {"previous_version": model.version_id_, "n_interactions": model.train_.nnz}
    if model.train_.user_index([subject])[0] < 0:
        report.update(
            status="not_in_model", note="the model's training rows do not include the subject: nothing to unlearn"
        )
        return report, None, None, None
    result = forget_users(model, [subject], propagate=propagate)
    report.update(status="unlearned", **plain(result.as_dict()))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{result.version}.npz"
    pending = out_dir / f".{result.version}.{os.getpid()}.pending.npz"
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

    if not measure_residual:
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


NOT_LOADED = "the recorded artifact {path} holds the subject but could not be loaded ({cause}); retrain without them and retire it"


SUPERSEDED_ACTION = (
    "withdrawn from serving for the subject (it read its data before the erasure); versions were unlearned from "
    "it since, and the newest of its lineage is the one to unlearn: retire it"
)


def _superseded(session: Session) -> set[str]:
    """The recorded versions an unlearned version was derived from (``params.unlearning.from``).

    An erasure unlearns only the newest version of each lineage: unlearning the
    older ones too would double the recorded versions with every erasure, and
    serving already withdraws every version that read its data before an
    erasure from the erased subject (:func:`governance.serving.erasure_decision`).
    """
    from audits.models import TrainingRun

    parents = set()
    for (params,) in session.execute(select(TrainingRun.params).join(ModelVersion, ModelVersion.training_run_id == TrainingRun.id)):
        unlearning = params.get("unlearning") if isinstance(params, Mapping) else None
        if isinstance(unlearning, Mapping) and isinstance(unlearning.get("from"), str):
            parents.add(unlearning["from"])
    return parents


def _recorded_models_holding(
    store: Any, catalogue: list[dict[str, Any]], *, skip: set[str]
) -> tuple[list[tuple[Path, Any]], list[dict[str, Any]]]:
    """The newest recorded model versions of their lineage whose artifact (read at its recorded location,
    with its recorded hash) lists the subject, loaded for unlearning, except the versions in ``skip``; and a
    report entry for each such artifact that could not be loaded. The older versions they replace are
    marked in ``catalogue`` (:data:`SUPERSEDED_ACTION`)."""
    from recommender.als import ALSRecommender

    with store.session() as session:
        superseded = _superseded(session)
    for entry in catalogue:
        if entry["membership"] == "includes" and entry["version_id"] in superseded:
            entry["action"] = SUPERSEDED_ACTION
    versions = [
        e["version_id"] for e in catalogue if e["membership"] == "includes" and e["version_id"] not in skip | superseded
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
    from recommender.unlearning import UNLEARNING_METHOD

    already = session.get(ModelVersion, result.version)
    if already is not None and already.artifact_location == str(target) and already.artifact_hash == artifact_hash:
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
                "method": UNLEARNING_METHOD,
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


def erase_subject(
    store: Any,
    subject_id: str | int,
    *,
    pack: LoadedPack | PolicyPack,
    model_path: str | Path | Sequence[str | Path] | None = None,
    models_dir: str | Path | None = None,
    delete_previous: bool = False,
    measure_residual: bool = True,
    propagate: int = 1,
    retrain_data: Dataset | None = None,
    retrain_models_dir: str | Path | None = None,
    measure_carbon: bool = True,
    actor: str | None = None,
    progress: Callable[[str], None] | None = None,
    unlearn_recorded: bool = True,
) -> dict[str, Any]:
    """Erase a subject (GDPR Art. 17): list what holds them, unlearn, record, shred, and retrain.

    Steps, in this order:

    1. Check the input (the pack, each model file, that no path recgov would
       record names the subject; with ``retrain_data``, that a training set
       is left once the subject's events are out) before anything is stored.
    2. Open an ``erasure`` request (deadline: the pack's
       ``consent.requests.erasure_days``) and move it to ``in_progress``.
    3. List every recorded model version and whether its training data
       includes the subject: read from its artifact when that is still at its
       recorded location with its recorded hash, otherwise ``may_include`` (the
       store records data set versions, not who is in them).
    4. For each model artifact given (``model_path``: one path or several):
       remove the subject with :func:`recommender.unlearning.forget_users`
       (their row and factor go, the items they touched are re-solved, and
       ``propagate`` sweeps re-solve the users sharing those items and the
       items again: at MovieLens-100K scale one sweep costs ~40 ms and halves
       what a heavy user leaves in the model), save the new artifact content-addressed in ``models_dir`` (default: the
       artifact's folder), check that the saved file does not list them, and,
       when the model is small (fewer than :data:`RESIDUAL_MAX_INTERACTIONS`
       interactions), measure :func:`~recommender.unlearning.residual_influence`
       against a retrain without them. The previous file is deleted only with
       ``delete_previous``. With ``unlearn_recorded`` (default), every recorded
       model version whose artifact recgov can open at its recorded location
       (with its recorded hash) and whose rows include the subject is unlearned
       the same way (its previous file is never deleted: it may be deployed),
       so that an erasure reaches the models that serve, not only the files a
       caller names; serving gives the subject the non-profiling list from
       every version that read its data before the erasure
       (:func:`governance.serving.erasure_decision`).
    5. In ONE transaction: record each new model's lineage (data set version
       of the reduced matrix, training run naming the unlearning, model
       version) when the model it came from is recorded; count what stays
       under the pseudonym (consent records, requests, decisions, trail
       events: kept, unlinkable, as the proof of lawful processing, GDPR Art.
       17(3)(e)); crypto-shred the pseudonym secret
       (:func:`audits.shred_subject`), last of everything that needs the
       pseudonym; complete the request with the results. In the same
       transaction, before the shredding: open a ``retrain`` request (deadline:
       ``consent.requests.retrain_days``) listing the model versions that
       include or may include the subject, and always every unlearned one
       (recorded or not): fast unlearning approximates a retrain, and the
       held-out-half protocol found such models outside the retrain range
       (:func:`recommender.unlearning_quality.unlearned_model_standing`), so
       each is recorded as ``provisional`` (``params.unlearning.standing``:
       why, the retrain request, its deadline), which serving stamps on every
       decision and enforces once the retrain is overdue
       (:func:`governance.serving.standing_decision`); one whose recipe the
       store cannot tell is reported with what to do (:data:`CANNOT_RETRAIN`); and write a
       suppression record (:func:`audits.suppression.suppress_subject`)
       keeping the restrictions in force (opt-outs, objections, refusals,
       withdrawals) and the erasure time, so that neither serving nor a later
       training run undoes the erasure.
    6. With ``retrain_data``: run the retrain at once (:func:`run_retrains`
       for this request only), which completes the retrain request. If it
       fails, the erasure stands and the retrain request stays open, with its
       deadline; the error says so.

    A failure before step 5 commits marks the request failed (with a message
    that names no subject) and leaves the subject unshredded; the error is
    re-raised (ConfigError and DataError with the request id). Files already
    written stay: an unlearned artifact holds no trace of the subject. The
    trail verifies afterwards either way.

    Returns a JSON-ready report (no raw id): the request, each model's
    unlearning figures, the recorded models and what to do about each, what
    became unlinkable, the former pseudonym, the retrain request and run, the
    suppression record, and what recgov could not do.
    """
    from recommender.als import ALSRecommender

    subject = as_subject(subject_id)
    policy = pack_policy(pack)
    say = progress or (lambda _step: None)
    paths = _model_paths(model_path)
    models = [(path, ALSRecommender.load(path)) for path in paths]
    out_dir = Path(models_dir) if models_dir is not None else None
    for path, _model in models:
        where = {"previous_artifact": str(path), "artifact_location": str((out_dir or path.parent).resolve())}
        guard(where, "the erasure record", subject)
    if retrain_data is not None:
        check_retrain_data(retrain_data, subject, pack, store, retrain_models_dir)
    deadline_days, deadline_basis = request_deadline(pack, "erasure")
    retrain_days, retrain_basis = request_deadline(pack, "retrain")

    started = time.perf_counter()
    with store.session() as session:
        # An erasure a withdrawal already asked for (erase_on_withdrawal) is carried out, not opened twice.
        request = pending_erasure(session, subject) or open_request(
            session, subject_id=subject, kind="erasure", deadline_days=deadline_days, actor=actor
        )
        update_request(session, request.id, status="in_progress", actor=actor)
        request_id, who, deadline = request.id, request.subject, request.deadline

    steps: dict[str, Any] = {}
    try:
        say("listing the model versions that may hold the subject")
        catalogue = models_for(store, subject)  # before unlearning: an artifact deleted below is still read here
        unlearned: list[tuple[dict[str, Any], Any, Path, str, datetime, datetime]] = []
        reports = []
        recorded: list[tuple[Path, Any]] = []
        if unlearn_recorded:
            named = {model.version_id_ for _path, model in models}
            recorded, unreadable = _recorded_models_holding(store, catalogue, skip=named)
            reports.extend(unreadable)
        for path, model, named_by_caller in [*((p, m, True) for p, m in models), *((p, m, False) for p, m in recorded)]:
            say(f"unlearning the subject from {path.name}")
            t0 = datetime.now(UTC)
            report, result, target, artifact_hash = _unlearn(
                model,
                path,
                out_dir or path.parent,
                subject,
                measure_residual=measure_residual,
                propagate=propagate,
                delete_previous=delete_previous and named_by_caller,
            )
            reports.append(report)
            if result is not None:
                ended = t0 + timedelta(seconds=result.seconds)  # the unlearning itself, not the measurement
                unlearned.append((report, result, target, artifact_hash, t0, ended))
        steps["unlearning"] = reports

        new_versions = {r.version for _, r, *_ in unlearned}
        unlearned_from = {r.previous_version for _, r, *_ in unlearned}
        for entry in catalogue:
            if entry.get("action") == SUPERSEDED_ACTION and entry["version_id"] not in unlearned_from:
                continue
            if entry["version_id"] in new_versions:
                entry["action"] = "new: unlearned by this request"
            elif entry["membership"] == "does_not_include":
                entry["action"] = "none"
            elif entry["version_id"] in unlearned_from:
                entry["action"] = "unlearned by this request; retire this version and serve the new one"
            else:
                entry["action"] = "unlearn it (recgov subject erase ... --model ARTIFACT) or retrain and retire it"
        steps["models"] = {
            "note": (
                "membership is read from each model's artifact where it is still at its recorded location with its "
                "recorded hash; otherwise the store cannot tell (it records data set versions, not who is in them) "
                "and the model is listed as may_include"
            ),
            "versions": [e for e in catalogue if e["membership"] != "does_not_include"],
            "n_checked": len(catalogue),
        }

        say("recording and crypto-shredding")
        with store.session() as session:
            holding = [e["version_id"] for e in catalogue if e["membership"] != "does_not_include"]
            # every unlearned model is a provisional stand-in, recorded or not: the retrain must replace it
            provisional = [r.version for _report, r, *_ in unlearned]
            holding += [v for v in provisional if v not in holding]
            retrain = None
            if holding:
                retrain_row = open_request(
                    session,
                    subject_id=subject,
                    kind="retrain",
                    deadline_days=retrain_days,
                    details={
                        "erasure_request": request_id,
                        "models": holding,
                        "provisional": provisional,
                        "deadline_basis": retrain_basis,
                        "policy": pack_stamp(pack),
                    },
                    actor=actor,
                )
                retrain = {
                    "id": retrain_row.id,
                    "kind": "retrain",
                    "status": retrain_row.status,
                    "deadline": iso(retrain_row.deadline),
                    "deadline_basis": retrain_basis,
                    "models": holding,
                    "provisional": provisional,
                }
            for report, result, target, artifact_hash, t0, t1 in unlearned:
                standing = _provisional_standing(retrain)
                _record_unlearned(session, report, result, target, artifact_hash, request_id, t0, t1, actor, standing)
                report["standing"] = _retrainability(session, report, result, standing)
            denied = {
                purpose: {"status": record["status"], "lawful_basis": record["lawful_basis"]}
                for purpose, record in effective_consent(session, subject).items()
                if record["status"] in SUPPRESSED_STATUSES
            }
            suppression = suppress_subject(
                session,
                subject,
                denied=denied,
                erased_at=datetime.now(UTC),
                actor=actor,
            )
            kept = {"id": suppression.id, "denied": dict(sorted(denied.items())), "erased_at": iso(suppression.erased_at)}
            unlinked = _count_by_subject(session, who)
            shredded = shred_subject(session, subject, actor=actor_name(actor))
            result_doc = guard(
                plain(
                    {
                        "deadline_basis": deadline_basis,
                        "retrain_request": retrain["id"] if retrain else None,
                        "suppression": kept,
                        "policy": pack_stamp(pack),
                        "unlearning": steps["unlearning"],
                        "models": steps["models"]["versions"],
                        "unlinked": unlinked,
                        "shredded": shredded is not None,
                        "seconds": time.perf_counter() - started,
                    }
                ),
                "result",
                subject,
            )
            stored, personal = _erasure_result_parts(result_doc)
            update_request(session, request_id, status="completed", result=stored, personal=personal, actor=actor)
        if delete_previous:  # only now that the new versions and the completion are committed
            for report, *_ in unlearned:
                if report["previous_artifact_deleted"]:
                    Path(report["previous_artifact"]).unlink(missing_ok=True)
    except BaseException as err:
        cause = fail_request(store, request_id, err, subject, actor)
        if not isinstance(err, (ConfigError, DataError)):
            raise
        raise type(err)(ERASURE_FAILED.format(id=request_id, cause=cause)) from err

    run = None
    if retrain is not None and retrain_data is not None:
        say("retraining without the subject")
        try:
            run = run_retrains(
                store,
                retrain_data,
                pack=pack,
                models_dir=retrain_models_dir,
                request_ids=[retrain["id"]],
                measure_carbon=measure_carbon,
                actor=actor,
            )
        except (ConfigError, DataError) as err:
            raise type(err)(
                RETRAIN_AFTER_ERASURE_FAILED.format(
                    erasure=request_id, id=retrain["id"], deadline=retrain["deadline"], cause=scrubbed(err, subject)
                )
            ) from err
        retrain["status"] = "completed"
        for entry in run["retrained"]:
            check_not_in_artifact(Path(entry["artifact"]), subject)
        for step in result_doc["unlearning"]:  # the retrain ran: the stand-ins it replaced are provisional no more
            if step.get("version") in run["provisional_replaced"]:
                step["standing"] = {**step["standing"], "standing": "replaced"}

    return {
        "request": {
            "id": request_id,
            "kind": "erasure",
            "status": "completed",
            "deadline": iso(deadline),
            "deadline_basis": deadline_basis,
            "legal_reference": "GDPR Art. 17",
        },
        **pack_stamp(pack),
        "pseudonym": who,
        "shredded": shredded is not None,
        "unlearning": result_doc["unlearning"],
        "models": steps["models"],
        "retrain": {"request": retrain, "run": run},
        "suppression": kept,
        "unlinked": unlinked,
        "retained": (
            "consent records, requests, decisions and trail events stay under the former pseudonym, which nothing links "
            "to the person any more: the proof of lawful processing (GDPR Art. 7(1), 17(3)(e)); the trail still verifies"
        ),
        "not_done": [
            "raw event logs outside recgov (the DATA recgov trains from) still hold the subject's events: recgov's "
            "training filter leaves out those from before the erasure (suppression record), but other systems may read "
            f"them: run 'recgov data purge DATA --pack {policy.metadata.name}' on each log (it deletes the events of "
            "erased subjects) or delete them at the source",
            *(
                [
                    f"a full retrain without the subject is due by {retrain['deadline']} (retrain request #{retrain['id']}, "
                    f"{retrain['deadline_basis']}): recgov retrain run DATA --pack {policy.metadata.name}"
                ]
                if retrain is not None and run is None
                else []
            ),
            *(
                CANNOT_RETRAIN.format(version=r["version"], why=r["standing"]["why_not"], pack=policy.metadata.name)
                for r in steps["unlearning"]
                if r.get("status") == "unlearned" and not r["standing"]["retrainable"]
            ),
            *(
                f"model version {v['version_id']} {'includes' if v['membership'] == 'includes' else 'may include'} the subject and was not "
                "unlearned: pass its artifact with --model (model_path) or retrain without the subject and retire it"
                for v in steps["models"]["versions"]
                if v["action"].startswith("unlearn it")
            ),
            *(
                f"the previous artifact {r['previous_artifact']} still holds the subject: delete it once the "
                "unlearned model is deployed"
                for r in steps["unlearning"]
                if r.get("status") == "unlearned" and not r["previous_artifact_deleted"]
            ),
        ],
        "seconds": result_doc["seconds"],
    }


def _erasure_result_parts(result_doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An erasure's result split into what is stored in the clear and the figures about the person.

    The counts of the person's rows and interactions could single them out
    against a raw log, so they are sealed (after the shredding, under a key kept
    nowhere: never readable again); the caller's answer keeps them.
    """
    personal_keys = ("n_interactions_removed", "n_users_removed")
    stored = {key: value for key, value in result_doc.items() if key != "unlinked"}
    stored["unlearning"] = [{k: v for k, v in step.items() if k not in personal_keys} for step in result_doc["unlearning"]]
    removed = [{k: step.get(k) for k in ("version", *personal_keys) if k in step} for step in result_doc["unlearning"]]
    return stored, {"unlinked": result_doc.get("unlinked"), "removed": removed}
