"""The DPO's work: consent in training, subject access and erasure, the record of processing.

Library functions over the store (:mod:`audits`) and the pure consent logic
(:mod:`governance.consent`); the command line (:mod:`governance.cli.privacy`)
and the API call them.

* :func:`filter_training_events` (in :mod:`governance.training_filter`, named
  here too) -- privacy by construction: a training set holds only events of
  subjects the pack allows to be profiled and only events younger than
  ``minimization.retention_days``.
* :func:`export_subject` -- GDPR Art. 15: what recgov holds about a subject.
* :func:`erase_subject` -- GDPR Art. 17: unlearn the subject from a model
  artifact, list the models that may still hold them, record it all, then
  crypto-shred the subject's pseudonym secret.
* :func:`record_consent_from_request` -- record the ``Sec-GPC: 1`` signal and a
  TCF string as consent records.
* :func:`processing_record` -- GDPR Art. 30: purposes, categories of data,
  recipients, retention, safeguards, and counts from the store.

Subjects reach the store only as pseudonyms (the :mod:`audits` functions see to
it); nothing here writes a raw subject id to a table, a trail payload, a request
result or an exception message. The one place a raw id appears is the access
export, which goes to the subject who asked.

* :func:`pending_retrains` and :func:`run_retrains` -- the full retrain an
  erasure calls for: fast unlearning approximates a model without the subject;
  a retrain without them replaces every model version trained on their data
  within the pack's ``consent.requests.retrain_days``.

Deadlines come from the pack's ``consent.requests`` section (defaults: GDPR Art.
12(3)'s one month, as 30 days); each request's answer quotes the days and the
provision (:func:`request_deadline`).

An erasure writes a suppression record (:mod:`audits.suppression`), found by a
keyed hash of the raw id, so that what it settled survives crypto-shredding:
the opt-outs and objections in force stay in force at serving and training,
and the subject's events from before the erasure are never trained on again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audits import (
    consent_history,
    consent_states,
    effective_consent,
    list_requests,
    lookup_pseudonyms,
    open_request,
    record_consent,
    record_dataset_version,
    record_model_version,
    record_training_run,
    shred_subject,
    update_request,
)
from audits._common import actor_name, in_values
from audits.models import (
    ConsentRecordRow,
    DatasetVersion,
    DecisionRecord,
    ModelVersion,
    SubjectRequest,
    TrailEvent,
)
from audits.sealing import KEPT_IN_THE_CLEAR, SEALED_CONTENT, SEALING_SAFEGUARD
from audits.suppression import SUPPRESSED_STATUSES, suppress_subject
from audits.trail import append_event
from governance.consent.gpc import gpc_opt_out
from governance.consent.state import MSG_VENDOR_REQUIRED, ConsentRecord, may_profile
from governance.consent.tcf import decode_tc_string, tc_evidence, tcf_allows_profiling
from governance.policy import LoadedPack, PolicyPack, RequestDeadlines
from governance.privacy_common import UNLISTED_PURPOSE
from governance.privacy_common import as_moment as _moment
from governance.privacy_common import pack_policy as _policy
from governance.privacy_common import pack_stamp as _stamp
from governance.training_filter import EXCLUSION_REASONS, filter_training_events
from recommender.data import Dataset
from recommender.errors import ConfigError, DataError
from recommender.feedback import MODEL_INPUT_COLUMNS

_log = logging.getLogger(__name__)

__all__ = [
    "EXCLUSION_REASONS",
    "REQUEST_DEADLINE_DAYS",
    "RESIDUAL_MAX_INTERACTIONS",
    "erase_subject",
    "export_subject",
    "filter_training_events",
    "pending_retrains",
    "processing_record",
    "record_consent_from_request",
    "request_deadline",
    "run_retrains",
    "show_consent",
]

REQUEST_DEADLINE_DAYS = RequestDeadlines().access_days
"""Days to answer a request when no pack is given: the schema's default, GDPR Art. 12(3)'s one month as 30 days."""
RESIDUAL_MAX_INTERACTIONS = 200_000
"""Measure residual influence (which needs a full retrain to compare with) only below this many interactions."""
EXPORT_FORMAT = "recgov.subject-export.v1"

# Messages tests assert on.
MODEL_NOT_FOUND = "model artifact {path} does not exist; expected a .npz file written by `recgov train`"
BAD_SUBJECT = "a subject id must be a non-empty string or an integer; got {kind}"
EXPORT_FAILED = "the access request {id} failed: {cause}"
ERASURE_FAILED = "the erasure request {id} failed and the subject was NOT shredded: {cause}"
RETRAIN_AFTER_ERASURE_FAILED = (
    "erasure request {erasure} is complete and the subject is shredded, but the retrain failed: {cause}; "
    "retrain request {id} stays open until {deadline}: run `recgov retrain run DATA` once the cause is fixed"
)
RETRAIN_NO_EVENTS = (
    "the retrain data {name} leaves no event to train on once the subject's events and those the pack excludes are "
    "out ({excluded}); nothing was erased: give the data the live model was trained from"
)
CANNOT_RETRAIN = (
    "model {version} is provisional (an unlearned stand-in until a full retrain replaces it); recgov cannot retrain "
    "it because {why}: train without the subject (recgov train DATA --pack {pack}) and retire it"
)
WHY_UNRECORDED = "the model it was unlearned from ({source}) is not recorded in this store, so its training recipe is unknown"
WHY_NO_RECIPE = "the store does not record how its lineage was trained (no ALS parameters in the training run of {source})"
RETRAIN_SUBJECT_IN_ARTIFACT = "the retrained artifact {path} still lists the erased subject among its users; retire it"
UNKNOWN_RETRAIN = "retrain request {id} is not open (open ones: {open}); list them with `recgov retrain due`"
MODELS_DIR_IS_FILE = "the models folder {path} is a file; give a folder for the retrained model artifacts"


# -- helpers ----------------------------------------------------------------------------
def request_deadline(pack: LoadedPack | PolicyPack | None, kind: str) -> tuple[int, str]:
    """The deadline in days of a request of ``kind``, and the basis quoted with it.

    From the pack's ``consent.requests`` (without a pack: the schema's
    defaults, GDPR Art. 12(3)'s one month as 30 days).
    """
    if pack is None:
        deadlines, source = RequestDeadlines(), "recgov's default (no policy pack given)"
    else:
        policy = _policy(pack)
        deadlines, source = policy.consent.requests, f"consent.requests.{kind}_days of pack {policy.metadata.name}"
    days = deadlines.days_for(kind)
    reference = f", {deadlines.legal_reference}" if deadlines.legal_reference else ""
    return days, f"{days} days: {source}{reference}"


def _subject(subject_id: Any) -> str:
    """The subject id as the store reads it (integers are their decimal string)."""
    if isinstance(subject_id, bool) or not isinstance(subject_id, (str, int)) or subject_id == "":
        raise DataError(BAD_SUBJECT.format(kind=type(subject_id).__name__ if subject_id != "" else "an empty string"))
    return str(subject_id)


def _iso(value: Any) -> str | None:
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _plain(value: Any) -> Any:
    """``value`` as plain JSON: numpy scalars unwrapped, NaN and missing as None, times as ISO 8601."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, (datetime, date, pd.Timestamp)):
        return _iso(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


RAW_ID_IN_RESULT = (
    "{field} would carry the subject's raw id at {where}; nothing recgov stores may name a subject "
    "other than by pseudonym (rename the folder or file that holds it)"
)
_MIN_CONTAINED = 6  # shorter ids are refused only as whole strings (no false alarms on "4242" inside a hash)


def _holds(text: str, subject: str) -> bool:
    return text == subject or (len(subject) >= _MIN_CONTAINED and subject in text)


def _guard(value: Any, field: str, subject: str, where: str = "$") -> Any:
    """Refuse ``value`` if a string (key or value) in it is, or contains, the subject's raw id.

    Only strings are looked at: a result is full of counts, and a numeric id
    such as 1234 would otherwise collide with one of them.
    """
    if isinstance(value, Mapping):
        for key, child in value.items():
            if _holds(str(key), subject):
                raise DataError(RAW_ID_IN_RESULT.format(field=field, where=f"a key of {where}"))
            _guard(child, field, subject, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, child in enumerate(value):
            _guard(child, field, subject, f"{where}[{index}]")
    elif isinstance(value, str) and _holds(value, subject):
        raise DataError(RAW_ID_IN_RESULT.format(field=field, where=where))
    return value


def _scrubbed(err: BaseException, subject: str) -> str:
    """An error's message fit to store and show: no raw id of the subject in it."""
    message = f"{type(err).__name__}: {err}"[:500]
    if len(subject) >= 4:
        message = message.replace(subject, "<subject>")
    if _holds(message, subject) or re.search(rf"(?<![\w-]){re.escape(subject)}(?![\w-])", message):
        return f"{type(err).__name__} (message withheld: it may name the subject)"
    return message


def _fail_request(store: Any, request_id: int, err: BaseException, subject: str, actor: str | None) -> str:
    cause = _scrubbed(err, subject)
    try:
        with store.session() as session:
            update_request(session, request_id, status="failed", result={"cause": cause}, actor=actor)
    except Exception as failure:  # noqa: BLE001 - the original error is what the caller must see
        _log.warning("could not mark subject request %s failed: %s", request_id, type(failure).__name__)
    return cause


def _records(history: Iterable[Mapping[str, Any]]) -> list[ConsentRecord]:
    return [
        ConsentRecord(
            purpose=r["purpose"],
            status=r["status"],
            lawful_basis=r["lawful_basis"],
            source=r["source"],
            time=r["recorded_at"],
            evidence=r["evidence"] or {},
        )
        for r in history
    ]


def _history_json(history: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "recorded_at": _iso(r["recorded_at"]),
            "purpose": r["purpose"],
            "status": r["status"],
            "lawful_basis": r["lawful_basis"],
            "source": r["source"],
            "jurisdiction": r["jurisdiction"],
            "evidence": _plain(r["evidence"]),
            "trail_seq": r["trail_seq"],
        }
        for r in history
    ]


def show_consent(store: Any, subject_id: str | int, *, pack: LoadedPack | PolicyPack | None = None) -> dict[str, Any]:
    """A subject's consent as the DPO sees it: pseudonym, history, record in force per purpose, and
    (with a pack) whether each purpose may profile them now, with the reason.

    A read: it creates no pseudonym secret and records nothing. The subject is
    named by pseudonym only (``None`` when recgov has no record under this id).
    """
    subject = _subject(subject_id)
    policy = _policy(pack) if pack is not None else None
    with store.session() as session:
        who = lookup_pseudonyms(session, [subject])[subject]
        history = consent_history(session, subject)
    entries = _history_json(history)
    in_force: dict[str, Any] = {}
    for entry in entries:  # oldest first: later ones replace
        in_force[entry["purpose"]] = entry
    profiling = None
    if policy is not None:
        records = _records(history)
        profiling = {}
        for purpose in sorted(policy.consent.purposes):
            decision = may_profile(policy.consent, records, purpose=purpose)
            profiling[purpose] = {"allowed": decision.allowed, "reason": decision.reason}
    return {"subject": who, "history": entries, "in_force": dict(sorted(in_force.items())), "profiling": profiling}


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


def _models_for(
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
                "created_at": _iso(created_at),
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


# -- 2. access (GDPR Art. 15) ---------------------------------------------------------------
def _subject_events(dataset: Dataset | None, subject: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    if dataset is None:
        return [], None
    events = dataset.events
    mine = events.loc[np.asarray(events["user_id"].astype("string") == subject, dtype=bool)]
    columns = [c for c in events.columns if c != "user_id"]
    rows = [_plain(dict(zip(columns, values))) for values in mine[columns].itertuples(index=False, name=None)]
    attributes = None
    users = dataset.users
    if users is not None and len(users):
        match = np.flatnonzero(np.asarray(users.index.astype(str) == subject))
        if match.size:
            attributes = _plain(users.iloc[int(match[0])].to_dict())
    return rows, attributes


def export_subject(
    store: Any,
    subject_id: str | int,
    *,
    dataset: Dataset | None = None,
    pack: LoadedPack | PolicyPack | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """Everything recgov holds about a subject, for an access request (GDPR Art. 15).

    Opens an ``access`` request (deadline: the pack's ``consent.requests.access_days``,
    without a pack :data:`REQUEST_DEADLINE_DAYS`), gathers,
    and completes it with counts only; a failure marks it failed (with a
    message that names no subject) and re-raises. The export holds:

    * ``consent``: the whole history and the record in force per purpose;
    * ``profiling`` (with a pack): whether each purpose may profile them now, and why;
    * ``requests``: their subject requests;
    * ``interactions``: their events in ``dataset`` (and their attribute row),
      when a data set is given: the store itself holds no raw interactions;
    * ``decisions``: the lists served to them, with items, scores and explanation tags;
    * ``trail``: the audit events that name them (time, actor, action);
    * ``models``: the recorded model versions whose training data includes or
      may include them (see :func:`_models_for` for how that is known);
    * ``logic`` (with a pack): the DSA Art. 27 disclosure
      (:func:`governance.disclosure.disclosure`), the meaningful information
      about the logic that Art. 15(1)(h) asks for.

    The export names the subject by ``subject_id`` (it goes to them); nothing
    stored carries it.
    """
    from governance.disclosure import disclosure

    subject = _subject(subject_id)
    policy = _policy(pack) if pack is not None else None
    events, attributes = _subject_events(dataset, subject)
    dataset_hash = dataset.content_hash() if dataset is not None else None
    deadline_days, deadline_basis = request_deadline(pack, "access")

    with store.session() as session:
        request = open_request(session, subject_id=subject, kind="access", deadline_days=deadline_days, actor=actor)
        update_request(session, request.id, status="in_progress", actor=actor)
        request_id, who = request.id, request.subject
        deadline = request.deadline
    try:
        models = [
            m
            for m in _models_for(store, subject, dataset_hash=dataset_hash, subject_in_dataset=bool(events))
            if m["membership"] != "does_not_include"
        ]
        with store.session() as session:
            history = consent_history(session, subject)
            in_force = effective_consent(session, subject)
            decisions = session.scalars(
                select(DecisionRecord)
                .where(DecisionRecord.subject == who)
                .order_by(DecisionRecord.decided_at, DecisionRecord.decision_id)
            ).all()
            trail = session.execute(
                select(TrailEvent.seq, TrailEvent.time, TrailEvent.actor, TrailEvent.action)
                .where(TrailEvent.subject == who)
                .order_by(TrailEvent.seq)
            ).all()
            counts = {
                "consent_records": len(history),
                "interactions": len(events),
                "decisions": len(decisions),
                "trail_events": len(trail),
                "models": len(models),
            }
            update_request(session, request_id, status="completed", personal={"counts": counts}, actor=actor)
            requests = session.scalars(
                select(SubjectRequest)
                .where(SubjectRequest.subject == who)
                .order_by(SubjectRequest.requested_at, SubjectRequest.id)
            ).all()
            document: dict[str, Any] = {
                "format": EXPORT_FORMAT,
                "subject": {"id": subject},
                "generated_at": datetime.now(UTC).isoformat(),
                "request": {
                    "id": request_id,
                    "kind": "access",
                    "deadline": _iso(deadline),
                    "deadline_basis": deadline_basis,
                    "legal_reference": "GDPR Art. 15",
                },
                "controller": policy.metadata.owner if policy else None,
                "consent": {
                    "history": _history_json(history),
                    "in_force": {p: _history_json([r])[0] for p, r in in_force.items()},
                },
                "profiling": None,
                "requests": [
                    {
                        "id": r.id,
                        "kind": r.kind,
                        "status": r.status,
                        "requested_at": _iso(r.requested_at),
                        "deadline": _iso(r.deadline),
                        "completed_at": _iso(r.completed_at),
                    }
                    for r in requests
                ],
                "interactions": {
                    "source": None if dataset is None else (dataset.source or dataset.name),
                    "held": dataset is not None,
                    "note": (
                        "the interactions recgov was given for this export"
                        if dataset is not None
                        else "no data set was given: recgov's store keeps no raw interactions, only the records below"
                    ),
                    "count": len(events),
                    "events": events,
                    "attributes": attributes,
                },
                "decisions": [
                    {
                        "decision_id": d.decision_id,
                        "decided_at": _iso(d.decided_at),
                        "mode": d.mode,
                        "policy": f"{d.pack_name}@{d.pack_version}",
                        "model_version": d.model_version,
                        "items": _plain(d.slate.get("items", [])),
                        "scores": _plain(d.slate.get("scores")),
                        "tags": _plain(d.slate.get("tags")),
                        "context": _plain(d.context),
                    }
                    for d in decisions
                ],
                "trail": [{"seq": seq, "time": t, "actor": a, "action": action} for seq, t, a, action in trail],
                "models": models,
                "logic": None,
                "retention_days": policy.minimization.retention_days if policy else None,
            }
    except BaseException as err:
        cause = _fail_request(store, request_id, err, subject, actor)
        if not isinstance(err, (ConfigError, DataError)):
            raise
        raise type(err)(EXPORT_FAILED.format(id=request_id, cause=cause)) from err

    if policy is not None:
        records = _records(history)
        document["profiling"] = {
            purpose: {
                "allowed": (d := may_profile(policy.consent, records, purpose=purpose)).allowed,
                "reason": d.reason,
            }
            for purpose in sorted(policy.consent.purposes)
        }
        document["logic"] = disclosure(policy)
    return document


# -- 3. erasure (GDPR Art. 17) ---------------------------------------------------------------
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
    report.update(status="unlearned", **_plain(result.as_dict()))
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
        report["residual_influence"] = {"measured": True, "seconds": time.perf_counter() - started, **_plain(figures)}

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
    elif _recipe(session, result.version) is None:
        why = WHY_NO_RECIPE.format(source=result.previous_version)
    return {**standing, "retrainable": why is None, "why_not": why}


WITHDRAWAL_STATUSES = ("withdrawn", "objected", "opted_out")
"""Consent statuses that end a purpose's processing (and may ask for erasure, see ``erase_on_withdrawal``)."""


def _pending_erasure(session: Session, subject: str | int) -> Any:
    """The subject's oldest erasure request still waiting to be carried out (``received``), or None."""
    from audits import lookup_pseudonyms
    from audits.models import SubjectRequest

    who = lookup_pseudonyms(session, [subject]).get(subject)
    if who is None:
        return None
    return session.scalars(
        select(SubjectRequest)
        .where(SubjectRequest.subject == who, SubjectRequest.kind == "erasure", SubjectRequest.status == "received")
        .order_by(SubjectRequest.requested_at, SubjectRequest.id)
        .limit(1)
    ).first()


def record_consent_under_pack(
    session: Session,
    loaded: Any,
    *,
    subject_id: str | int,
    purpose: str,
    status: str,
    lawful_basis: str,
    source: str,
    evidence: dict[str, Any] | None = None,
    jurisdiction: str | None = None,
    actor: str | None = None,
) -> tuple[Any, Any]:
    """Append a consent record and apply what the pack says follows from it. Returns ``(record, erasure request or None)``.

    A withdrawal, objection or opt-out of a purpose with ``erase_on_withdrawal``
    opens an erasure request due within the pack's ``requests.erasure_days``
    (unless one is already waiting), in the same transaction as the record.
    """
    from audits import record_consent
    from audits.requests import open_request

    row = record_consent(
        session, subject_id=subject_id, purpose=purpose, status=status, lawful_basis=lawful_basis,
        source=source, evidence=evidence, jurisdiction=jurisdiction, actor=actor,
    )  # fmt: skip
    policy = loaded.pack.consent.purposes.get(purpose)
    if policy is None or not policy.erase_on_withdrawal or status not in WITHDRAWAL_STATUSES:
        return row, None
    pending = _pending_erasure(session, subject_id)
    if pending is not None:
        return row, pending
    days, basis = request_deadline(loaded, "erasure")
    request = open_request(
        session, subject_id=subject_id, kind="erasure", deadline_days=days, actor=actor,
        details={"trigger": status, "purpose": purpose, "consent_record": row.id, "pack": loaded.name, "deadline_basis": basis},
    )  # fmt: skip
    return row, request


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

    subject = _subject(subject_id)
    policy = _policy(pack)
    say = progress or (lambda _step: None)
    paths = _model_paths(model_path)
    models = [(path, ALSRecommender.load(path)) for path in paths]
    out_dir = Path(models_dir) if models_dir is not None else None
    for path, _model in models:
        where = {"previous_artifact": str(path), "artifact_location": str((out_dir or path.parent).resolve())}
        _guard(where, "the erasure record", subject)
    if retrain_data is not None:
        _check_retrain_data(retrain_data, subject, pack, store, retrain_models_dir)
    deadline_days, deadline_basis = request_deadline(pack, "erasure")
    retrain_days, retrain_basis = request_deadline(pack, "retrain")

    started = time.perf_counter()
    with store.session() as session:
        # An erasure a withdrawal already asked for (erase_on_withdrawal) is carried out, not opened twice.
        request = _pending_erasure(session, subject) or open_request(
            session, subject_id=subject, kind="erasure", deadline_days=deadline_days, actor=actor
        )
        update_request(session, request.id, status="in_progress", actor=actor)
        request_id, who, deadline = request.id, request.subject, request.deadline

    steps: dict[str, Any] = {}
    try:
        say("listing the model versions that may hold the subject")
        catalogue = _models_for(store, subject)  # before unlearning: an artifact deleted below is still read here
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
                        "policy": _stamp(pack),
                    },
                    actor=actor,
                )
                retrain = {
                    "id": retrain_row.id,
                    "kind": "retrain",
                    "status": retrain_row.status,
                    "deadline": _iso(retrain_row.deadline),
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
            kept = {"id": suppression.id, "denied": dict(sorted(denied.items())), "erased_at": _iso(suppression.erased_at)}
            unlinked = _count_by_subject(session, who)
            shredded = shred_subject(session, subject, actor=actor_name(actor))
            result_doc = _guard(
                _plain(
                    {
                        "deadline_basis": deadline_basis,
                        "retrain_request": retrain["id"] if retrain else None,
                        "suppression": kept,
                        "policy": _stamp(pack),
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
        cause = _fail_request(store, request_id, err, subject, actor)
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
                    erasure=request_id, id=retrain["id"], deadline=retrain["deadline"], cause=_scrubbed(err, subject)
                )
            ) from err
        retrain["status"] = "completed"
        for entry in run["retrained"]:
            _check_not_in_artifact(Path(entry["artifact"]), subject)
        for step in result_doc["unlearning"]:  # the retrain ran: the stand-ins it replaced are provisional no more
            if step.get("version") in run["provisional_replaced"]:
                step["standing"] = {**step["standing"], "standing": "replaced"}

    return {
        "request": {
            "id": request_id,
            "kind": "erasure",
            "status": "completed",
            "deadline": _iso(deadline),
            "deadline_basis": deadline_basis,
            "legal_reference": "GDPR Art. 17",
        },
        **_stamp(pack),
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


# -- 3b. the full retrain an erasure calls for -----------------------------------------------
_RECIPE_PARAMS = ("factors", "regularization", "alpha", "iterations")


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


def _default_models_dir(models_dir: str | Path | None) -> Path:
    if models_dir is not None:
        return Path(models_dir)
    from audits.settings import get_settings

    return get_settings().home / "models"


def _check_retrain_data(
    dataset: Dataset, subject: str, pack: LoadedPack | PolicyPack, store: Any, models_dir: str | Path | None
) -> None:
    """Refuse, before anything is stored, a retrain that could not run: no event left to train on, or no folder."""
    folder = _default_models_dir(models_dir)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(MODELS_DIR_IS_FILE.format(path=folder))
    events = dataset.events
    others = events.loc[np.asarray(events["user_id"].astype("string") != subject, dtype=bool)].reset_index(drop=True)
    probe = Dataset(events=others, users=None, items=None, name=dataset.name, source=dataset.source)
    kept, report = filter_training_events(probe, pack, store, record=False)
    if len(kept.events) == 0:
        excluded = ", ".join(f"{n:,} {r}" for r, n in report["events"]["excluded"].items() if n) or "no event at all"
        raise ConfigError(RETRAIN_NO_EVENTS.format(name=dataset.source or dataset.name, excluded=excluded))


def _check_not_in_artifact(path: Path, subject: str) -> None:
    """Belt and braces: the retrained artifact must not list the erased subject."""
    with np.load(path, allow_pickle=False) as npz:
        if bool((npz["user_ids"].astype(str) == subject).any()):
            raise DataError(RETRAIN_SUBJECT_IN_ARTIFACT.format(path=path))


def _recipe(session: Session, version_id: str) -> dict[str, Any] | None:
    """How a model version was trained (ALS parameters, seed, feedback conversion), or None if the store cannot tell.

    An unlearned version was derived from another (``params.unlearning.from``):
    its recipe is that model's, followed back to a training run.
    """
    from audits.models import TrainingRun
    from recommender.feedback import FeedbackConfig

    seen: set[str] = set()
    current: str | None = version_id
    while current is not None and current not in seen:
        seen.add(current)
        row = session.get(ModelVersion, current)
        run = session.get(TrainingRun, row.training_run_id) if row is not None else None
        if run is None:
            return None
        params = dict(run.params or {})
        unlearning = params.get("unlearning")
        if isinstance(unlearning, Mapping) and isinstance(unlearning.get("from"), str):
            current = unlearning["from"]
            continue
        if not all(k in params for k in _RECIPE_PARAMS):
            return None
        try:
            feedback = FeedbackConfig(**(params.get("feedback") or {})).model_dump(mode="json")
        except (TypeError, ValueError):
            return None
        random_state = params.get("random_state", 0)
        return {
            "from": current,
            "params": {k: params[k] for k in _RECIPE_PARAMS},
            "random_state": random_state if isinstance(random_state, int) else 0,
            "feedback": feedback,
        }
    return None


def _unlearned_versions(session: Session, rows: Iterable[Mapping[str, Any]]) -> set[str]:
    """The versions the retrain requests list that are unlearned models (provisional until a retrain replaces them):
    those the erasure listed as such, and recorded versions whose run names an unlearning."""
    from audits.models import TrainingRun

    rows = list(rows)
    out = {str(v) for r in rows for v in ((r["result"] or {}).get("provisional") or ())}
    versions = sorted({v for r in rows for v in (r["result"] or {}).get("models", [])} - out)
    if versions:
        found = session.execute(
            select(ModelVersion.version_id, TrainingRun.params)
            .join(TrainingRun, ModelVersion.training_run_id == TrainingRun.id)
            .where(in_values(session, ModelVersion.version_id, versions))
        ).all()
        out |= {v for v, params in found if isinstance(params, Mapping) and isinstance(params.get("unlearning"), Mapping)}
    return out


def _retrain_view(row: Mapping[str, Any], moment: datetime, provisional: set[str] = frozenset()) -> dict[str, Any]:
    details = row["result"] or {}
    deadline = row["deadline"]
    models = list(details.get("models", []))
    return {
        "id": row["id"],
        "status": row["status"],
        "requested_at": _iso(row["requested_at"]),
        "deadline": _iso(deadline),
        "overdue": deadline < moment,
        "days_left": round((deadline - moment).total_seconds() / 86400, 1),
        "erasure_request": details.get("erasure_request"),
        "models": models,
        "provisional": [v for v in models if v in provisional],
        "deadline_basis": details.get("deadline_basis"),
    }


def _cannot_retrain(version: str, provisional: bool, recorded: bool, pack: str) -> dict[str, Any]:
    """Why recgov cannot retrain ``version``, and what to do instead."""
    if provisional:
        why = "it is not recorded in this store (the model it was unlearned from is not), so its training recipe is unknown"
        if recorded:
            why = "the store does not record how its lineage was trained (no ALS parameters)"
        message = CANNOT_RETRAIN.format(version=version, why=why, pack=pack)
    else:
        message = (
            f"model {version}: recgov cannot retrain it because the store does not record how it was trained; "
            f"train without the erased subjects (recgov train DATA --pack {pack}) and retire it"
        )
    return {"version": version, "provisional": provisional, "message": message}


def pending_retrains(store: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """The retrains erasures called for that are still open, oldest first, with their deadlines.

    Each entry: the request id, when it was opened and its deadline (from the
    pack in force at the erasure), whether it is overdue at ``now`` (default
    now) and the days left, the erasure request it follows, and the model
    versions a retrain must replace, and which of them are ``provisional``:
    unlearned models that serve only until the retrain replaces them (and
    profile nobody once it is overdue). No subject is named, not even by pseudonym.
    """
    moment = _moment(now, "now")
    with store.session() as session:
        rows = list_requests(session, kind="retrain", open_only=True)
        provisional = _unlearned_versions(session, rows)
    entries = [_retrain_view(r, moment, provisional) for r in rows]
    return {
        "now": moment.isoformat(),
        "pending": entries,
        "overdue": sum(1 for e in entries if e["overdue"]),
        "legal_reference": "GDPR Art. 17(1), 12(3)",
    }


def run_retrains(
    store: Any,
    dataset: Dataset,
    *,
    pack: LoadedPack | PolicyPack,
    models_dir: str | Path | None = None,
    request_ids: Sequence[int] | None = None,
    measure_carbon: bool = True,
    now: datetime | None = None,
    actor: str | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Run the open retrain requests (``request_ids``: only those): full retrains without the erased subjects.

    The model versions the requests list are grouped by recipe (the ALS
    parameters, seed and feedback conversion of the run that trained them,
    followed back through unlearning); for each recipe, one model is trained
    on ``dataset`` through the pack's training filter
    (:func:`governance.training.train_and_record`), which leaves out erased
    subjects' events from before their erasure (suppression records) and
    whatever else the pack excludes, and its lineage is recorded as for any
    training run. Then, in ONE transaction, a ``model.retrained`` trail event
    names each new version and the versions it replaces, and every request is
    completed with what replaced its models. A version whose recipe the store
    cannot tell (recorded without ALS parameters, or not recorded) is listed
    under ``not_retrainable``, and under ``cannot_retrain`` with why and what to
    do. Each retrain says which provisional unlearned versions it replaced
    (``replaces_provisional``): their standing ends (:data:`governance.suppressed.REPLACED`).
    The retrain is always trained from ``dataset``, never from unlearned factors.

    Training comes first: if it fails, no request changes and the error is
    raised (they stay open, with their deadlines).
    """
    from governance.training import train_and_record
    from recommender.feedback import FeedbackConfig

    folder = _default_models_dir(models_dir)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(MODELS_DIR_IS_FILE.format(path=folder))
    moment = _moment(now, "now")
    with store.session() as session:
        rows = list_requests(session, kind="retrain", open_only=True)
        if request_ids is not None:
            wanted = list(dict.fromkeys(request_ids))
            known = {r["id"] for r in rows}
            for request_id in wanted:
                if request_id not in known:
                    listed = ", ".join(str(i) for i in sorted(known)) or "none"
                    raise ConfigError(UNKNOWN_RETRAIN.format(id=request_id, open=listed))
            rows = [r for r in rows if r["id"] in set(wanted)]
        versions = list(dict.fromkeys(v for r in rows for v in (r["result"] or {}).get("models", [])))
        recipes = {v: _recipe(session, v) for v in versions}
        provisional = _unlearned_versions(session, rows)
        recorded = set(session.scalars(select(ModelVersion.version_id).where(in_values(session, ModelVersion.version_id, versions)))) if versions else set()
    if not rows:
        return {**_stamp(pack), "requests": [], "retrained": [], "not_retrainable": [], "cannot_retrain": [], "provisional_replaced": [], "note": "no retrain is due"}

    groups: dict[str, dict[str, Any]] = {}
    for version in versions:
        recipe = recipes[version]
        if recipe is None:
            continue
        key = json.dumps({k: recipe[k] for k in ("params", "random_state", "feedback")}, sort_keys=True)
        groups.setdefault(key, {"recipe": recipe, "replaces": []})["replaces"].append(version)
    not_retrainable = [v for v in versions if recipes[v] is None]

    retrained = []
    for group in groups.values():
        recipe = group["recipe"]
        run = train_and_record(
            dataset,
            store=store,
            models_dir=folder,
            feedback=FeedbackConfig(**recipe["feedback"]),
            params=recipe["params"],
            tune=False,
            random_state=recipe["random_state"],
            measure_carbon=measure_carbon,
            actor=actor,
            show_progress=show_progress,
            pack=pack,
            now=moment,
        )
        retrained.append(
            {
                "version": run.model_version,
                "replaces": group["replaces"],
                "recipe_of": recipe["from"],
                "params": recipe["params"],
                "training_run": run.training_run_id,
                "artifact": str(run.artifact),
                "reproduced": run.reproduced,
                "events": (run.exclusions or {}).get("events"),
                "replaces_provisional": [v for v in group["replaces"] if v in provisional],
            }
        )
    cannot = [_cannot_retrain(v, v in provisional, v in recorded, _policy(pack).metadata.name) for v in not_retrainable]

    ids = [r["id"] for r in rows]
    policy = _policy(pack)
    with store.session() as session:
        for entry in retrained:
            append_event(
                session,
                actor=actor_name(actor),
                action="model.retrained",
                objects={"model_version": entry["version"], "policy": f"{policy.metadata.name}@{policy.metadata.version}"},
                payload={
                    "replaces": entry["replaces"],
                    "recipe_of": entry["recipe_of"],
                    "subject_requests": ids,
                    "replaces_provisional": entry["replaces_provisional"],
                    "reason": "a full retrain without erased subjects (GDPR Art. 17), replacing models trained on them",
                },
            )
        done = []
        for row in rows:
            mine = set((row["result"] or {}).get("models", []))
            result = {
                **(row["result"] or {}),
                "retrained": [
                    {"version": e["version"], "replaces": [v for v in e["replaces"] if v in mine]}
                    for e in retrained
                    if mine & set(e["replaces"])
                ],
                "not_retrainable": [v for v in not_retrainable if v in mine],
                "cannot_retrain": [c for c in cannot if c["version"] in mine],
                "policy_of_run": _stamp(pack),
            }
            if row["status"] == "received":
                update_request(session, row["id"], status="in_progress", actor=actor)
            update_request(session, row["id"], status="completed", result=result, actor=actor)
            done.append(
                {
                    "id": row["id"],
                    "status": "completed",
                    "deadline": _iso(row["deadline"]),
                    "met_deadline": row["deadline"] >= datetime.now(UTC),
                }
            )
    return {
        **_stamp(pack),
        "requests": done,
        "retrained": retrained,
        "not_retrainable": not_retrainable,
        "cannot_retrain": cannot,
        "provisional_replaced": [v for e in retrained for v in e["replaces_provisional"]],
        "note": (
            "serve the new model version(s) once they pass the gate, and retire the versions they replace"
            if retrained
            else "no listed model version could be retrained: retire them"
        ),
    }


# -- 4. consent from a request's signals ------------------------------------------------------
TCF_NOT_A_SOURCE = "the pack does not let a TC string grant (consent.tcf.grants is false): a TC string can only refuse"
TCF_OLDER_THAN_RECORD = (
    "the TC string was last updated {updated}, before the record in force ({record} at {recorded}): "
    "it cannot undo a later choice"
)
TCF_STRING_UNUSABLE = "the TC string cannot be used: {failures}"


def _tcf_plan(
    tc: Any, text: str, vendor_id: int, requirements: Any, previous: Mapping[str, Any] | None, moment: datetime
) -> tuple[dict[str, Any], tuple[str, str, str, str, dict[str, Any]] | None, dict[str, Any] | None]:
    """What a TC string leads to: ``(outcome["tcf"], the record to write or None, an "ignored" entry or None)``.

    A string that meets the pack's ``consent.tcf`` requirements grants (where the pack lets TCF
    grant, and unless a later choice is on record); one that does not, for a reason about the
    user's choices (a purpose, the vendor, a publisher restriction), refuses: ``withdrawn`` over
    a grant, else ``denied``. A string unusable in itself (policy version, age) records nothing.
    """
    decision = tcf_allows_profiling(tc, vendor_id, requirements, now=moment)
    outcome = {"allowed": decision.allowed, "reason": decision.reason}
    evidence = {"tc_string": text, **tc_evidence(tc, vendor_id, decision)}
    if decision.string_failures:
        return outcome, None, {"signal": "tcf", "reason": TCF_STRING_UNUSABLE.format(failures="; ".join(decision.string_failures))}
    if not decision.allowed:
        status = "withdrawn" if previous is not None and previous["status"] == "granted" else "denied"
        return outcome, (requirements.purpose, status, "consent", "tcf", evidence), None
    if not requirements.grants:
        return outcome, None, {"signal": "tcf", "reason": TCF_NOT_A_SOURCE}
    if previous is not None and previous["status"] != "granted" and previous["recorded_at"] > tc.last_updated:
        reason = TCF_OLDER_THAN_RECORD.format(
            updated=tc.last_updated.isoformat(), record=f"{previous['status']} via {previous['source']}",
            recorded=previous["recorded_at"].isoformat(),
        )  # fmt: skip
        return outcome, None, {"signal": "tcf", "reason": reason}
    return outcome, (requirements.purpose, "granted", "consent", "tcf", evidence), None


def record_consent_from_request(
    store: Any,
    subject_id: str | int,
    *,
    pack: LoadedPack | PolicyPack,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    tcf: str | None = None,
    vendor_id: int | None = None,
    jurisdiction: str | None = None,
    at: datetime | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """Record the consent signals a request carries: GPC and a TCF string.

    * ``Sec-GPC: 1`` in ``headers`` (when the pack honours GPC): an
      ``opted_out`` record, source ``gpc``, for every ``opt_out`` purpose of the
      pack (CCPA regs §7025; GDPR Art. 21(5)). Opt-in purposes already need a grant.
    * ``tcf``, a TC string, judged for ``vendor_id`` (default: the pack's
      ``consent.tcf.vendor_id``) under the pack's ``consent.tcf`` requirements
      (IAB TCF v2.2: purpose 1 and the mapped purposes, vendor consent or the
      allowed legitimate interest, publisher restrictions, policy version, age),
      for the pack purpose ``consent.tcf.purpose``, source ``tcf``, basis
      ``consent``, the string as evidence: ``granted`` when it meets them and
      the pack lets TCF grant (``consent.tcf.grants``) and no later choice is on
      record; when it does not meet them for a reason about the user's choices,
      ``withdrawn`` over a grant, else ``denied``; nothing (an ``ignored`` entry
      saying why) when the string is unusable in itself (made under an older
      policy, too old, dated in the future) or may not grant.

    A signal that only repeats the record in force (same status and source;
    for TCF, the same string) is not recorded again, so a request path can call
    this on every request. All records of one call share one time.

    Returns ``{"gpc", "tcf", "recorded", "unchanged", "ignored"}`` (no raw id).
    """
    subject = _subject(subject_id)
    policy = _policy(pack)
    moment = _moment(at, "at")
    gpc = gpc_opt_out(headers) if headers is not None else False
    tc = decode_tc_string(tcf) if tcf is not None else None
    requirements = policy.consent.tcf_requirements()
    vendor_id = vendor_id if vendor_id is not None else requirements.vendor_id
    if tc is not None:
        if vendor_id is None:
            raise ConfigError(MSG_VENDOR_REQUIRED)
        if requirements.purpose not in policy.consent.purposes:
            listed = ", ".join(sorted(policy.consent.purposes)) or "none"
            raise ConfigError(UNLISTED_PURPOSE.format(purpose=requirements.purpose, pack=policy.metadata.name, listed=listed))

    outcome: dict[str, Any] = {"gpc": gpc, "tcf": None, "recorded": [], "unchanged": [], "ignored": []}
    planned: list[tuple[str, str, str, str, dict[str, Any]]] = []
    if gpc:
        opt_out = sorted(p for p, c in policy.consent.purposes.items() if c.model == "opt_out")
        if not policy.consent.honour_gpc:
            outcome["ignored"].append(
                {"signal": "gpc", "reason": "the pack does not honour GPC (consent.honour_gpc: false)"}
            )
        elif not opt_out:
            outcome["ignored"].append(
                {"signal": "gpc", "reason": "the pack has no opt-out purpose; opt-in purposes already need a grant"}
            )
        for purpose in opt_out if policy.consent.honour_gpc else []:
            basis = policy.consent.purposes[purpose].lawful_basis
            planned.append(
                (purpose, "opted_out", basis, "gpc", {"signal": "Sec-GPC: 1", "spec": "Global Privacy Control"})
            )

    with store.session() as session:
        in_force = effective_consent(session, subject) if (gpc or tc is not None) else {}
        if tc is not None:
            previous = in_force.get(requirements.purpose)
            outcome["tcf"], write, ignored = _tcf_plan(tc, tcf, vendor_id, requirements, previous, moment)  # type: ignore[arg-type]
            planned.extend([write] if write is not None else [])
            outcome["ignored"].extend([ignored] if ignored is not None else [])
        for purpose, status, basis, source, evidence in planned:
            current = in_force.get(purpose)
            same = (
                current is not None
                and current["status"] == status
                and current["source"] == source
                and (source != "tcf" or (current["evidence"] or {}).get("tc_string") == evidence.get("tc_string"))
            )
            if same:
                outcome["unchanged"].append({"purpose": purpose, "status": status, "source": source})
                continue
            row = record_consent(
                session,
                subject_id=subject,
                purpose=purpose,
                status=status,
                lawful_basis=basis,
                source=source,
                evidence=evidence,
                jurisdiction=jurisdiction,
                at=moment,
                actor=actor,
            )
            outcome["recorded"].append(
                {"id": row.id, "purpose": purpose, "status": status, "source": source, "trail_seq": row.trail_seq}
            )
    return outcome


# -- 5. records of processing (GDPR Art. 30) ---------------------------------------------------
DEFAULT_RECIPIENTS = ("none outside the controller",)


def processing_record(
    pack: LoadedPack | PolicyPack,
    store: Any,
    *,
    recipients: Sequence[str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The record of processing activities (GDPR Art. 30(1)) of the recommender, from the pack and the store.

    Purposes with their lawful bases and legal references (the pack's consent
    and minimization sections), categories of data (model inputs, audit-only
    and forbidden attributes, what the store keeps), recipients (``recipients``;
    default: none outside the controller), retention, safeguards, and counts
    from the store: consent records per purpose and status (every row, erased
    subjects' included), subjects per purpose and status in force (erased
    subjects left out), subject requests per kind and status (open and overdue
    ones), served decisions.
    """
    policy = _policy(pack)
    moment = _moment(now, "now")
    consent, minimization = policy.consent, policy.minimization
    names = sorted(set(consent.purposes) | set(minimization.purposes))
    purposes = []
    for name in names:
        c, m = consent.purposes.get(name), minimization.purposes.get(name)
        purposes.append(
            {
                "purpose": name,
                "description": (m.description if m and m.description else None),
                "lawful_basis": c.lawful_basis if c else None,
                "consent_model": c.model if c else None,
                "legal_reference": (c.legal_reference if c else None) or (m.legal_reference if m else None),
                "allowed_inputs": list(m.allowed_inputs) if m else None,
                "note": None
                if c
                else "no lawful basis in the pack's consent section: recgov never profiles for it (fail closed)",
            }
        )

    with store.session() as session:
        per_record = session.execute(
            select(ConsentRecordRow.purpose, ConsentRecordRow.status, func.count())
            .group_by(ConsentRecordRow.purpose, ConsentRecordRow.status)
            .order_by(ConsentRecordRow.purpose, ConsentRecordRow.status)
        ).all()
        shredded = set(session.scalars(select(TrailEvent.subject).where(TrailEvent.action == "subject.shredded")))
        in_force: dict[str, dict[str, int]] = {}
        erased_with_records = 0
        for who, states in consent_states(session).items():
            if who in shredded:  # an erased subject's records stay, unlinkable; they no longer describe anyone
                erased_with_records += 1
                continue
            for purpose, status in states.items():
                bucket = in_force.setdefault(purpose, {})
                bucket[status] = bucket.get(status, 0) + 1
        requests = session.execute(
            select(SubjectRequest.kind, SubjectRequest.status, func.count())
            .group_by(SubjectRequest.kind, SubjectRequest.status)
            .order_by(SubjectRequest.kind, SubjectRequest.status)
        ).all()
        overdue = len(list_requests(session, overdue_at=moment))
        decisions = session.execute(
            select(DecisionRecord.mode, func.count()).group_by(DecisionRecord.mode).order_by(DecisionRecord.mode)
        ).all()

    records: dict[str, dict[str, int]] = {}
    for purpose, status, n in per_record:
        records.setdefault(purpose, {})[status] = int(n)
    by_request: dict[str, dict[str, int]] = {}
    for kind, status, n in requests:
        by_request.setdefault(kind, {})[status] = int(n)
    open_requests = sum(n for k in by_request.values() for s, n in k.items() if s in ("received", "in_progress"))
    retention = minimization.retention_days
    return {
        "legal_reference": "GDPR Art. 30(1)",
        **_stamp(pack),
        "generated_at": moment.isoformat(),
        "controller": policy.metadata.owner,
        "jurisdictions": list(policy.metadata.jurisdictions),
        "processing": "recommendations of items to users from their interactions, governed by recgov",
        "purposes": purposes,
        "categories_of_subjects": ["users of the service whose interactions are recorded"],
        "categories_of_data": {
            "model_inputs": list(MODEL_INPUT_COLUMNS),
            "allowed_inputs_by_purpose": {p: list(m.allowed_inputs) for p, m in sorted(minimization.purposes.items())},
            "audit_only_attributes": list(minimization.audit_only_attributes),
            "forbidden_attributes": list(minimization.forbidden_attributes),
            "kept_by_recgov": [
                f"consent records (pseudonymised; in the clear: {KEPT_IN_THE_CLEAR['consent_records']}; "
                f"sealed under the subject's record key: {SEALED_CONTENT['consent_records']})",
                f"subject requests (pseudonymised; in the clear: {KEPT_IN_THE_CLEAR['subject_requests']}; "
                f"sealed under the subject's record key: {SEALED_CONTENT['subject_requests']})",
                f"item reports (the reporter pseudonymised; in the clear: {KEPT_IN_THE_CLEAR['item_reports']}; "
                f"sealed under the reporter's record key when signed: {SEALED_CONTENT['item_reports']})",
                f"served decisions (pseudonymised; in the clear: {KEPT_IN_THE_CLEAR['decisions']}; "
                f"sealed under the subject's record key: {SEALED_CONTENT['decisions']})",
                "the audit trail (pseudonymised events; consent evidence in them sealed as in the consent records)",
                "model artifacts (the training interactions as a matrix, with user ids) and their lineage",
            ],
        },
        "recipients": list(recipients) if recipients else list(DEFAULT_RECIPIENTS),
        "transfers_to_third_countries": "none declared in the pack",
        "retention": {
            "training_events_days": retention,
            "training_events": (
                f"events older than {retention} days are excluded from training (filter_training_events)"
                if retention
                else "the pack sets no retention period (minimization.retention_days)"
            ),
            "consent_and_requests": "kept as the proof of lawful processing (GDPR Art. 7(1), 17(3)(e)); unlinkable after erasure",
            "trail": "append-only, kept for the life of the system (EU AI Act Art. 12)",
        },
        "safeguards": [
            "pseudonymisation: subjects appear in the store only as HMAC-SHA256 pseudonyms under per-subject secrets; "
            "no raw id is stored in the database (model artifacts, files, list user ids: see categories of data)",
            "crypto-shredding on erasure: the subject's pseudonym secret and record key are deleted; every record under "
            "the pseudonym becomes unlinkable, and what was sealed under the key unreadable",
            SEALING_SAFEGUARD,
            "machine unlearning of model artifacts on erasure (forget_users), with residual influence measured on small models",
            "a full retrain without the erased subject within consent.requests.retrain_days "
            f"({consent.requests.retrain_days} days) of the erasure, tracked as a retrain request",
            "suppression records on erasure: the restrictions in force and the erasure time, kept under a keyed hash of "
            "the id, so a returning subject is neither profiled nor trained on against them",
            "a hash-chained, append-only audit trail with signed checkpoints; the database refuses UPDATE and DELETE of "
            "the trail, the consent records, audit results and suppression records; served decisions are covered by "
            "per-batch digests on the trail, so a changed decision is found by recgov trail verify",
            "consent checked at serving and at training (filter_training_events); GPC honoured"
            + ("" if consent.honour_gpc else " (disabled in this pack)"),
            "data minimization: models read only " + ", ".join(MODEL_INPUT_COLUMNS),
        ],
        "counts": {
            "consent_records": records,
            "subjects_in_force": {p: dict(sorted(v.items())) for p, v in sorted(in_force.items())},
            "erased_subjects": len(shredded),
            "erased_subjects_with_consent_records": erased_with_records,
            "subject_requests": by_request,
            "open_requests": open_requests,
            "overdue_requests": overdue,
            "decisions": {mode: int(n) for mode, n in decisions},
        },
    }
