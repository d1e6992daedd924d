"""Erasure from the models of any family, routed by the family's declared erasure kind.

ALS models are erased by :mod:`governance.privacy.unlearning` (refit without the subject, exact; or
:func:`recommender.unlearning.forget_users` when the erasure is asked to be approximate); an exact ALS erasure
goes through the same replacement as the families here (:func:`replace_exactly_erased`). A recorded model of another
family (its ``kind`` is the family's name, :mod:`governance.family_training`)
is loaded by its family's ``load`` (no pickle) and the subject is removed as
the family declares:

* ``exact``: :meth:`~recommender.family.GovernedModel.forget` gives the model
  trained without them; the new version is saved by the family's ``save`` and
  recorded with its lineage, with the standing ``final`` (no retrain owed:
  serving treats it as trained).
  The version it came from, whose file lists the subject, is replaced by it
  in serving (it takes the old version's stage) and retired, and, once the
  erasure is committed, the old file is deleted
  (:func:`replace_exactly_erased`, :func:`delete_replaced_artifacts`): no file
  recgov serves or keeps names the subject afterwards.
* ``approximate``: ``forget`` with its measured residual, recorded with the new
  version; the packs set no residual bound, so, as for ALS, the new version is a
  provisional stand-in and the erasure's retrain request lists it.
* ``retrain``: nothing can be taken out of the fitted model; the version stays
  listed as holding the subject and the erasure's retrain request names it.

Every new artifact is checked not to list the subject (``subjects()`` of the
reloaded file). Reports and records name model versions and paths, never the
subject: the erasure checks them with :func:`governance.privacy.common.guard`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from recommender.errors import ConfigError, DataError
from recommender.feedback import MODEL_INPUT_COLUMNS
from governance.family_training import family_for_kind
from recommender.family import ErasureKind, Family, ForgetOutcome, GovernedModel

__all__ = [
    "FAMILY_FORGET_METHOD",
    "FAMILY_REFIT_METHOD",
    "ForgottenModel",
    "family_for_kind",
    "forget_family_models",
    "delete_replaced_artifacts",
    "exactly_replaced",
    "exactly_replaced_by",
    "record_forgotten_models",
    "refittable",
    "replace_exactly_erased",
    "retrain_action",
]

FAMILY_FORGET_METHOD = "family.forget"
"""``params.unlearning.method`` of a version a family's ``forget`` made."""
FAMILY_REFIT_METHOD = "family.refit"
"""``params.unlearning.method`` of a version an exact erasure refit (a family whose ``forget`` is approximate)."""

FINAL = "final"
"""Standing of a version an exact erasure made: it is the model trained without the subject."""


def retrain_action(family: Family) -> str:
    """What to do about a version of a family that forgets only by a retrain."""
    return (
        f"model family {family.name} forgets only by a retrain: retrain it without the subject "
        f"(recgov train DATA --family {family.name} --pack PACK) and retire this version"
    )


@dataclass
class ForgottenModel:
    """One family model the subject was removed from: its report, the new model, its artifact, and when."""

    family: Family
    report: dict[str, Any]
    model: GovernedModel
    outcome: ForgetOutcome
    previous_version: str
    version: str
    target: Path
    artifact_hash: str
    started: datetime
    ended: datetime

    @property
    def provisional(self) -> bool:
        """Whether a retrain is still owed (approximate erasure: the residual is not nought)."""
        return self.outcome.kind is not ErasureKind.exact


def _load(family: Family, location: str) -> GovernedModel:
    from governance.family_training import family_model_class

    return family_model_class(family).load(location)


def _load_if_there(family: Family, path: Path) -> GovernedModel | None:
    if not path.exists():
        return None
    try:
        return _load(family, str(path))
    except (OSError, ValueError, KeyError, ConfigError, DataError):
        return None


def _holds(model: GovernedModel, subject: str) -> bool:
    return bool((np.asarray(model.subjects()).astype(str) == subject).any())


def refittable(family: Family) -> bool:
    """Whether an exact erasure can refit a model of ``family`` whose own erasure is approximate: a fit with the
    model's parameters on its training matrix without the subject is the model a training without them makes when
    the matrix is all the family reads (its inputs are interactions only)."""
    return family.erasure is ErasureKind.approximate and family.inputs <= frozenset({"interactions"})


def _refit(
    family: Family, model: GovernedModel, subject: str, also: list[str] | tuple[str, ...] = ()
) -> tuple[GovernedModel, ForgetOutcome] | None:
    """The model ``model``'s parameters fit on its training matrix without the subject (exact), or None when the
    family cannot be built again from those parameters. ``also``: the subjects erased since the model's data was
    read (:func:`governance.privacy.unlearning.erased_since`), left out too, as a training now would."""
    from recommender.family import without_users

    try:
        fresh = family.create(**model.get_params())
        fresh.fit(without_users(model.train_, [subject, *(s for s in also if s != subject)])[0])
    except (ConfigError, DataError, TypeError, ValueError):
        return None
    return fresh, ForgetOutcome(ErasureKind.exact, (subject,), 0.0, False, {"method": FAMILY_REFIT_METHOD})


def _forget_one(
    family: Family,
    version: str,
    location: str,
    subject: str,
    out_dir: Path | None,
    *,
    exact: bool = False,
    store: Any = None,
) -> tuple[dict[str, Any], ForgottenModel | None]:
    """Remove the subject from one recorded family model; save and check the new artifact.

    ``exact`` (an exact erasure): a family whose ``forget`` is approximate is refit without the subject instead
    (:func:`refittable`), so that the new version is the model trained without them, as for ALS."""
    report: dict[str, Any] = {"previous_version": version, "family": family.name, "erasure": family.erasure.value}
    path = Path(location)
    try:
        model = _load(family, location)
    except (OSError, ValueError, KeyError, ConfigError, DataError) as err:
        report.update(status="not_unlearned", note=f"the recorded artifact {path} could not be loaded ({type(err).__name__}); retrain without the subject and retire it")
        return report, None
    if model.version_id_ != version:
        report.update(status="not_unlearned", note=f"the artifact at {path} holds model {model.version_id_}, not {version}")
        return report, None
    if not _holds(model, subject):
        report.update(status="not_in_model", note="the model's training rows do not include the subject: nothing to unlearn")
        return report, None
    if family.erasure is ErasureKind.retrain:
        report.update(status="retrain_required", note=retrain_action(family))
        return report, None
    report["n_interactions"] = int(model.train_.nnz)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    refit = None
    if exact and refittable(family):
        also: list[str] = []
        if store is not None:
            from governance.privacy.common import erased_since

            with store.session() as session:
                also = erased_since(session, version, model.subjects())
        refit = _refit(family, model, subject, also)
    if refit is not None:
        model, outcome = refit
    else:
        outcome = model.forget([subject])
    seconds = time.perf_counter() - t0
    if outcome.retrain_required:
        report.update(status="retrain_required", note=retrain_action(family))
        return report, None
    new_version = model.version_id_
    folder = out_dir or path.parent
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{new_version}.npz"
    # unique per call: two erasures in one process (the API's threads) may make the same version at once
    pending = folder / f".{new_version}.{os.getpid()}.{uuid.uuid4().hex[:12]}.pending.npz"
    try:
        artifact_hash = model.save(pending)
        saved = _load(family, str(pending))
        if _holds(saved, subject) or saved.version_id_ != new_version:  # the saved file must not hold them
            raise DataError(f"the unlearned artifact {target} still lists the subject or is not {new_version}; not saved")
        existing = _load_if_there(family, target)
        if existing is not None and existing.version_id_ == new_version and not _holds(existing, subject):
            # the same model minus the same rows, made before (or by an erasure running beside this one): keep the
            # file its recorded version points at rather than replace it with bytes that may differ in a float's last bits
            artifact_hash = hashlib.sha256(target.read_bytes()).hexdigest()
        else:
            os.replace(pending, target)
    finally:
        pending.unlink(missing_ok=True)
    report.update(
        status="unlearned",
        version=new_version,
        method=FAMILY_FORGET_METHOD if refit is None else FAMILY_REFIT_METHOD,
        outcome={k: v for k, v in outcome.to_dict().items() if k not in ("removed", "detail")},
        residual=outcome.residual,
        seconds=seconds,
        artifact=str(target),
        artifact_hash=artifact_hash,
        previous_artifact=str(path),
        previous_artifact_deleted=False,
        previous_artifact_note="the previous artifact still holds the subject: delete it once the new one is deployed",
    )
    ended = datetime.now(UTC)
    forgotten = ForgottenModel(family, report, model, outcome, version, new_version, target, artifact_hash, started, ended)
    return report, forgotten


def forget_family_models(
    store: Any,
    subject: str,
    catalogue: list[dict[str, Any]],
    *,
    out_dir: Path | None,
    superseded: set[str],
    say: Callable[[str], None],
    exact: bool = False,
) -> tuple[list[dict[str, Any]], list[ForgottenModel]]:
    """Remove the subject from every recorded non-ALS family model holding them (the newest of each lineage).

    ``catalogue`` is :func:`governance.privacy.unlearning.models_for`; an entry of a family that forgets only by
    a retrain gets that action (the erasure's retrain request lists it as holding the subject).
    """
    from sqlalchemy import select

    from audits.models import ModelVersion

    wanted: dict[str, Family] = {}
    for entry in catalogue:
        family = family_for_kind(entry.get("kind"))
        if family is None or entry["membership"] == "does_not_include" or entry["version_id"] in superseded:
            continue
        wanted[entry["version_id"]] = family
    if not wanted:
        return [], []
    with store.session() as session:
        rows = session.execute(
            select(ModelVersion.version_id, ModelVersion.artifact_location).where(ModelVersion.version_id.in_(list(wanted)))
        ).all()
    reports, forgotten = [], []
    for version, location in sorted(rows):
        family = wanted[version]
        say(f"removing the subject from {Path(location).name} ({family.name}, erasure {family.erasure.value})")
        report, done = _forget_one(family, version, location, subject, out_dir, exact=exact, store=store)
        reports.append(report)
        if done is not None:
            forgotten.append(done)
    for entry in catalogue:
        family = family_for_kind(entry.get("kind"))
        if family is not None and family.erasure is ErasureKind.retrain and entry["membership"] != "does_not_include":
            entry["erasure"] = family.erasure.value
    return reports, forgotten


def _matrix_hash(model: GovernedModel) -> str:
    """A content hash of the model's training matrix (the data set version of the reduced matrix)."""
    from recommender.family import train_arrays

    hasher = hashlib.sha256(b"recgov.family-train-matrix.v1\x00")
    for name, array in sorted(train_arrays(model.train_).items()):
        array = np.ascontiguousarray(array)
        hasher.update(f"{name}\x00{array.dtype.str}\x00{array.shape}\x00".encode())
        hasher.update(array.tobytes())
    return hasher.hexdigest()


def record_forgotten_models(
    session: Session, forgotten: list[ForgottenModel], retrain: Mapping[str, Any] | None, request_id: int, actor: str | None
) -> None:
    """Record each new family version's lineage (reduced matrix, run naming the erasure, model version).

    Exact: standing ``final``. Approximate: ``provisional`` until ``retrain`` (the erasure's retrain request)
    replaces it, as for ALS. The subject is named nowhere: the run names the erasure request by its id.
    """
    from audits import record_dataset_version, record_model_version, record_training_run
    from audits.models import DatasetVersion, ModelVersion
    from governance.family_training import FAMILY_RUN_KEY, _library_versions

    for f in forgotten:
        standing = (
            {
                "standing": FINAL, "retrain_required": False, "retrainable": True, "why_not": None,
                "reason": "exact erasure: the model is the one trained without the subject",
            }  # fmt: skip
            if not f.provisional
            else {
                "standing": "provisional",
                "retrain_required": True,
                "reason": f"approximate erasure (residual {f.outcome.residual}); the packs set no residual bound, so a full retrain is owed",
                "retrainable": False,
                "why_not": f"recgov retrain run retrains ALS; retrain model family {f.family.name} with recgov train DATA --family {f.family.name}",
                "retrain_request": None if retrain is None else retrain["id"],
                "deadline": None if retrain is None else retrain["deadline"],
            }
        )
        f.report["standing"] = standing
        already = session.get(ModelVersion, f.version)
        if already is not None:
            f.report.update(recorded=True, training_run=already.training_run_id, recorded_note="the same model was recorded before; reused")
            continue
        previous = session.get(ModelVersion, f.previous_version)
        if previous is None:
            f.report.update(recorded=False, recorded_note="the model it came from is not recorded in this store")
            continue
        source = session.get(DatasetVersion, previous.dataset_version_id)
        train = f.model.train_
        data = record_dataset_version(
            session,
            content_hash=_matrix_hash(f.model),
            name=f"{source.name} after unlearning"[:200],
            source=f"interaction matrix of model {f.previous_version} minus the rows removed for erasure request {request_id}",
            n_events=train.nnz,
            n_users=train.n_users,
            n_items=train.n_items,
            schema={"kind": "interaction matrix (n_events counts stored user-item pairs)", "derived_from": source.content_hash},
            validation=None,
            actor=actor,
        )
        run = record_training_run(
            session,
            dataset_version=data,
            params={
                FAMILY_RUN_KEY: f.family.name,
                "family_params": f.model.get_params(),
                "erasure": f.family.erasure.value,
                "family_inputs": sorted(f.family.inputs),
                "model_inputs": list(MODEL_INPUT_COLUMNS),
                "unlearning": {
                    "method": f.report.get("method", FAMILY_FORGET_METHOD),
                    "kind": f.outcome.kind.value,
                    "from": f.previous_version,
                    "residual": f.outcome.residual,
                    # counts of what was removed could single the person out: kept out of the record
                    "detail": {k: v for k, v in f.outcome.detail.items() if "removed" not in k},
                    "subject_request": request_id,
                    "standing": standing,
                },
            },
            library_versions=_library_versions(f.model),
            started_at=f.started,
            ended_at=f.ended,
            actor=actor,
        )
        record_model_version(
            session, version_id=f.version, kind=f.family.name, training_run=run, artifact_hash=f.artifact_hash,
            artifact_location=str(f.target), actor=actor,
        )  # fmt: skip
        f.report.update(recorded=True, training_run=run.id)


REPLACED_NOTE = (
    "replaced in serving by {new} (the model trained without the subject), retired, and its file deleted: "
    "no artifact recgov serves or keeps lists the subject"
)
def _exact_replacements(session: Session) -> list[tuple[str, str]]:
    """``(replaced, by)`` for each recorded version an exact erasure made (``params.unlearning`` of kind ``exact``)."""
    from sqlalchemy import select

    from audits.models import ModelVersion, TrainingRun

    out = []
    rows = session.execute(
        select(TrainingRun.params, ModelVersion.version_id).join(ModelVersion, ModelVersion.training_run_id == TrainingRun.id)
    )
    for params, version in rows:
        unlearning = params.get("unlearning") if isinstance(params, Mapping) else None
        if isinstance(unlearning, Mapping) and unlearning.get("kind") == "exact" and isinstance(unlearning.get("from"), str):
            out.append((unlearning["from"], version))
    return out


def exactly_replaced_by(session: Session) -> dict[str, str]:
    """The recorded versions an exact erasure replaced, each with the version that replaced it: the erasure retired
    them and deleted their files (with the older versions of a lineage it replaced by the same refit, which its
    ``model.replaced_by_erasure`` events name)."""
    from sqlalchemy import select

    from audits.models import TrailEvent

    out = dict(_exact_replacements(session))
    for (payload,) in session.execute(select(TrailEvent.payload).where(TrailEvent.action == "model.replaced_by_erasure")):
        found = json.loads(payload) if isinstance(payload, str | bytes) else payload
        if isinstance(found, Mapping) and isinstance(found.get("replaced"), str) and isinstance(found.get("by"), str):
            out.setdefault(found["replaced"], found["by"])
    return out


def exactly_replaced(session: Session, version: str) -> set[str]:
    """The recorded versions exact erasures made from ``version``."""
    return {by for replaced, by in _exact_replacements(session) if replaced == version}


REPLACED_MEANWHILE = (
    "model version {version} was replaced by {by} by another erasure while this one removed the subject from it, "
    "so the version this one made still holds whom that one erased; nothing was recorded: run the erasure again "
    "(it removes the subject from the newest version)"
)
NOT_DELETED = (
    "the previous artifact {path} of model version {version} still lists the subject: recgov could not delete it "
    "({cause}); the version is retired and serves nobody: delete the file"
)


def replace_exactly_erased(session: Session, forgotten: list[Any], request_id: int, actor: str | None) -> None:
    """In the erasure's transaction: each recorded version an exact erasure replaced gives its stage to the new
    version and is retired (:func:`governance.deploy.replace_after_erasure`); its file is marked for deletion
    (:func:`delete_replaced_artifacts`, once the transaction is committed)."""
    from audits.models import ModelVersion
    from audits.trail import lock_head
    from governance.deploy import replace_after_erasure

    lock_head(session)  # erasures replace versions one at a time: the check below sees every one committed before
    for f in forgotten:
        if f.provisional or not f.report.get("recorded") or session.get(ModelVersion, f.previous_version) is None:
            continue
        others = sorted(v for v in exactly_replaced(session, f.previous_version) if v != f.version)
        if others:  # another erasure replaced it while this one ran: the new version holds whom that one erased
            raise DataError(REPLACED_MEANWHILE.format(version=f.previous_version, by=", ".join(others)))
        moved = replace_after_erasure(session, old=f.previous_version, new=f.version, erasure_request=request_id, actor=actor)
        if moved["not_kept"]:
            f.report.update(stage_not_kept=moved["not_kept"])
        f.report.update(
            replaced_in_serving=moved,
            previous_artifact_deleted=True,
            previous_artifact_note=REPLACED_NOTE.format(new=f.version),
        )


def delete_replaced_artifacts(forgotten: list[Any]) -> list[str]:
    """Delete the files :func:`replace_exactly_erased` marked (after the commit: a failed erasure keeps them);
    what could not be deleted, each with what to do."""
    failed = []
    for f in forgotten:
        if "replaced_in_serving" not in f.report:
            continue
        path = Path(f.report["previous_artifact"])
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            f.report.update(previous_artifact_deleted=False)
            failed.append(NOT_DELETED.format(path=path, version=f.previous_version, cause=type(err).__name__))
    return failed
