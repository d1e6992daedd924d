"""What an erasure settled, read where lists are served and where models are trained.

An erasure (:func:`governance.privacy.erase_subject`) writes a suppression row
(:mod:`audits.suppression`) with its own trail event. The trail is serialized
(one writer at a time, in commit order), so that event's sequence number orders
the erasure against everything else the store saw:

* **Training** reads the trail head *before* it reads the suppression rows, in
  the same transaction (:func:`suppressions_read_at`): every erasure whose event
  is at or below that head was committed before the read, so it was seen and its
  events were left out. The run records the head as :data:`ERASURES_SEEN` in its
  parameters. A run without a pack still leaves erased subjects' events out
  (:func:`drop_erased_events`): the raw log recgov trains from is not purged, and
  a retrain from it must never give back a version that held them.
* **Serving** compares the subject's latest erasure (:func:`erasure_seq`, one
  indexed read) with the model's :func:`erasures_seen` (followed back through
  unlearning to the run that read the data): a model that read its data before
  the erasure may hold the erased history, whatever happened since (a grant, an
  unlearning, another pack), so the subject gets the non-profiling list
  (:func:`governance.serving.erasure_decision`). A model trained after the
  erasure holds only what the subject did since: a new history, served as usual.

* **Standing**: a model unlearned by an erasure is a provisional stand-in
  until the full retrain the erasure scheduled replaces it (the held-out-half
  protocol found such models outside the range of retrains, BENCHMARKS.md).
  The erasure records its standing in the training run's parameters
  (``params.unlearning.standing``: the retrain request and its deadline);
  :func:`model_standing` reads it, with the retrain request's state, once per
  serving engine. Serving stamps the standing on every decision, and once the
  retrain is overdue (its deadline passed and no full retrain replaced the
  model) it stops personalising from that model for everyone
  (:func:`governance.serving.standing_decision`).

Nothing here stores or logs a raw subject id: ids are hashed the way
:mod:`audits.suppression` hashes them, in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from audits.models import Deployment, ModelVersion, SubjectRequest, Suppression, TrainingRun
from audits.subjects import _subject_bytes, reading_installation_key
from audits.suppression import _lookup as _suppression_lookup
from audits.suppression import suppressions_for
from audits.trail import read_head
from recommender.data import Dataset, event_times, subject_codes

__all__ = [
    "ERASURES_SEEN",
    "NO_CONSENT_RULES",
    "erased_until",
    "PROFILING_PURPOSE",
    "PROVISIONAL",
    "REFUSALS",
    "REPLACED",
    "TRAINED",
    "ModelStanding",
    "drop_erased_events",
    "erasure_seq",
    "erasures_seen",
    "model_standing",
    "standing_reader",
    "suppressions_read_at",
]

NO_CONSENT_RULES = "(none: erasures and refusals)"
"""The ``pack`` a training run's privacy filter records when no pack's consent rules chose its events
(:func:`drop_erased_events`: a run without a pack, or under a pack that lists no consent purpose)."""

ERASURES_SEEN = "erasures_seen"
"""Training-run parameter: the trail sequence number up to which erasures were left out of the run's data."""
MAX_LINEAGE = 64
"""Unlearning steps followed back to the run that read a model's data (each erasure may add one)."""

# Built once: serving runs them per request (a statement's cache key is then computed once).
_LATEST_ERASURE = (
    select(Suppression.trail_seq)
    .where(Suppression.lookup == bindparam("lookup"))
    .order_by(Suppression.id.desc())
    .limit(1)
)
_RUN_PARAMS = (
    select(TrainingRun.params)
    .join(ModelVersion, ModelVersion.training_run_id == TrainingRun.id)
    .where(ModelVersion.version_id == bindparam("version"))
)


def erasure_seq(read: Session | Any, subject_id: str | int) -> int | None:
    """The trail sequence number of the subject's latest erasure, or None if they were never erased.

    ``read``: a session, a connection, or a read-only snapshot answering
    ``execute(statement, params)`` (``governance.api.reads.FastSnapshot``);
    nothing is written.
    """
    key = reading_installation_key(read)
    lookup = _suppression_lookup(key, _subject_bytes(subject_id))
    seq = read.execute(_LATEST_ERASURE, {"lookup": lookup}).scalar_one_or_none()
    return None if seq is None else int(seq)


def erasures_seen(read: Session | Any, model_version: str) -> int | None:
    """Up to which trail sequence number erasures were left out of ``model_version``'s training data.

    An unlearned version is followed back (``params.unlearning.from``) to the
    run that read the data: unlearning removes the subjects it names, not
    those erased before it who were still in the model. None when the store
    cannot tell (a version recorded before runs noted it, or not recorded):
    serving then treats every erased subject as possibly in the model.
    """
    current: str | None = model_version
    for _ in range(MAX_LINEAGE):
        params = read.execute(_RUN_PARAMS, {"version": current}).scalar_one_or_none()
        if not isinstance(params, Mapping):
            return None
        unlearning = params.get("unlearning")
        if isinstance(unlearning, Mapping) and isinstance(unlearning.get("from"), str):
            current = unlearning["from"]
            continue
        seen = params.get(ERASURES_SEEN)
        return seen if isinstance(seen, int) and not isinstance(seen, bool) else None
    return None


TRAINED = "trained"
"""Standing of a model trained from data (a training run or a full retrain)."""
PROVISIONAL = "provisional"
"""Standing of an unlearned model whose full retrain has not replaced it yet."""
REPLACED = "replaced"
"""Standing of an unlearned model a full retrain replaced (serve the retrain, retire this one)."""

_STAGE = (
    select(Deployment.stage).where(Deployment.model_version_id == bindparam("version")).order_by(Deployment.id.desc()).limit(1)
)
_REQUEST = select(SubjectRequest.status, SubjectRequest.deadline, SubjectRequest.result).where(
    SubjectRequest.id == bindparam("id"), SubjectRequest.kind == "retrain"
)
_RETRAIN_REQUESTS = select(SubjectRequest.id, SubjectRequest.status, SubjectRequest.deadline, SubjectRequest.result).where(
    SubjectRequest.kind == "retrain"
)
_UNFINISHED_RETRAINS = select(SubjectRequest.id, SubjectRequest.deadline, SubjectRequest.result).where(
    SubjectRequest.kind == "retrain", SubjectRequest.status != "completed"
)


@dataclass(frozen=True)
class ModelStanding:
    """What a model version may be used as: trained from data, or an unlearned stand-in for a retrain."""

    model_version: str
    standing: str
    """:data:`TRAINED`, :data:`PROVISIONAL` or :data:`REPLACED`."""
    retrain_request: int | None = None
    """The retrain request that replaces a provisional model (None for a trained one, or when none is recorded)."""
    deadline: datetime | None = None
    """When that retrain is due (the request's own deadline, aware UTC)."""
    reason: str | None = None
    """Why the unlearned model is provisional (:func:`recommender.unlearning_quality.unlearned_model_standing`)."""
    replaced_by: tuple[str, ...] = ()
    """The full retrains that replaced it."""
    retired: bool = False
    """The version is retired (``recgov deploy retire``, a rollback, a retirement criterion): it profiles nobody."""

    def overdue(self, now: datetime) -> bool:
        """Whether the retrain is overdue at ``now``: provisional, or trained on data of a subject since erased (a
        retrain request still lists it), and past the request's deadline."""
        return self.standing in (PROVISIONAL, TRAINED) and self.deadline is not None and now > self.deadline

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (what a decision record's context and the reports carry)."""
        return {
            "model_standing": self.standing,
            "retrain_request": self.retrain_request,
            "retrain_deadline": None if self.deadline is None else self.deadline.isoformat(),
            "replaced_by": list(self.replaced_by),
        }


def _replaced_by(result: Any, version: str) -> tuple[str, ...]:
    retrained = result.get("retrained") if isinstance(result, Mapping) else None
    if not isinstance(retrained, list):
        return ()
    return tuple(
        str(e["version"]) for e in retrained if isinstance(e, Mapping) and version in (e.get("replaces") or ()) and "version" in e
    )


def _legacy_request(read: Session | Any, unlearning: Mapping[str, Any], version: str) -> tuple[Any, ...] | None:
    """The retrain request listing an unlearned version recorded before standings were (its erasure's, or any)."""
    erasure = unlearning.get("subject_request")
    rows = read.execute(_RETRAIN_REQUESTS).all()
    for row in rows:
        result = row[3] if isinstance(row[3], Mapping) else {}
        if version in (result.get("models") or ()) or (erasure is not None and result.get("erasure_request") == erasure):
            return tuple(row)
    return None


def model_standing(read: Session | Any, model_version: str) -> ModelStanding:
    """The standing of ``model_version``: :data:`TRAINED`, or, for a model unlearned by an erasure,
    :data:`PROVISIONAL` until a full retrain replaced it (then :data:`REPLACED`); ``retired`` when its
    latest deployment retired it (it profiles nobody: :func:`governance.serving.standing_decision`).

    Three indexed reads (the run's parameters, the retrain request, the latest deployment); an
    unlearned version recorded before standings were is matched to its
    erasure's retrain request by a scan of the retrain requests. A version
    the store does not know is :data:`TRAINED` (serving refuses it elsewhere).
    """
    standing = _unlearning_standing(read, model_version)
    if read.execute(_STAGE, {"version": model_version}).scalar_one_or_none() == "retired":
        return replace(standing, retired=True)
    if standing.standing == TRAINED and standing.retrain_request is None:
        owed = _owed_retrain(read, model_version)
        if owed is not None:
            return replace(standing, retrain_request=owed[0], deadline=owed[1])
    return standing


def retrained_away(read: Session | Any, model_version: str) -> list[tuple[str, int]]:
    """The full retrains after an erasure that replaced ``model_version`` (``recgov retrain run``, or an erasure
    retrain ticket's promotion): ``(new version, retrain request)`` each. Such a version was trained on the data
    of a subject since erased, and its retrain was the remedy: it must not be deployed again."""
    out = []
    for request_id, _status, _deadline, result in read.execute(_RETRAIN_REQUESTS):
        result = result if isinstance(result, Mapping) else {}
        for entry in result.get("retrained", []) or ():
            if isinstance(entry, Mapping) and model_version in (entry.get("replaces") or ()):
                out.append((str(entry.get("version")), int(request_id)))
    return out


def _owed_retrain(read: Session | Any, model_version: str) -> tuple[int, datetime] | None:
    """The unfinished retrain request that still waits on ``model_version`` (it lists the version, and no run of it
    replaced the version yet) with the earliest deadline: the version was trained on data of a subject since erased."""
    owed = None
    for request_id, deadline, result in read.execute(_UNFINISHED_RETRAINS):
        result = result if isinstance(result, Mapping) else {}
        replaced = {v for entry in result.get("retrained", []) if isinstance(entry, Mapping) for v in entry.get("replaces") or ()}
        if model_version in (result.get("models") or ()) and model_version not in replaced and deadline is not None:
            if owed is None or deadline < owed[1]:
                owed = (int(request_id), deadline)
    return owed


def _unlearning_standing(read: Session | Any, model_version: str) -> ModelStanding:
    params = read.execute(_RUN_PARAMS, {"version": model_version}).scalar_one_or_none()
    unlearning = params.get("unlearning") if isinstance(params, Mapping) else None
    if not isinstance(unlearning, Mapping):
        return ModelStanding(model_version, TRAINED)
    recorded = unlearning.get("standing") if isinstance(unlearning.get("standing"), Mapping) else {}
    reason = recorded.get("reason") if isinstance(recorded.get("reason"), str) else None
    if recorded.get("standing") == "final":  # an exact erasure: the model trained without the subject, no retrain owed
        return ModelStanding(model_version, TRAINED, reason=reason)
    request_id = recorded.get("retrain_request")
    if isinstance(request_id, int) and not isinstance(request_id, bool):
        found = read.execute(_REQUEST, {"id": request_id}).first()
        row = None if found is None else (request_id, *found)
    else:
        row = _legacy_request(read, unlearning, model_version)
    if row is None:  # no retrain request recorded: provisional, with no deadline to enforce
        return ModelStanding(model_version, PROVISIONAL, reason=reason)
    request_id, status, deadline, result = row
    replaced = _replaced_by(result, model_version) if status == "completed" else ()
    return ModelStanding(
        model_version, REPLACED if replaced else PROVISIONAL, retrain_request=int(request_id), deadline=deadline, reason=reason, replaced_by=replaced
    )


def standing_reader(store: Any, model_version: str) -> Callable[[], ModelStanding]:
    """A callable reading ``model_version``'s standing afresh (a serving engine re-reads an overdue one)."""

    def read() -> ModelStanding:
        with store.session() as session:
            return model_standing(session, model_version)

    return read


def suppressions_read_at(session: Session) -> int:
    """The trail head, read before a training set's suppression rows in the same transaction.

    Every erasure whose trail event is at or below it was committed before the
    rows were read, so the read saw it (see the module doc).
    """
    return read_head(session)[0]


REFUSALS: tuple[str, ...] = ("withdrawn", "denied", "objected", "opted_out")
"""Consent states that say no, whatever a pack's model: they keep a subject out of training without a pack too."""
PROFILING_PURPOSE = "personalization"
"""The purpose a training run without a pack serves, whose refusals it honours."""


def drop_erased_events(dataset: Dataset, store: Any) -> tuple[Dataset, dict[str, Any]]:
    """Leave out every event of an erased subject from up to their latest erasure (or of unknown time), and every
    event of a subject whose consent to personalization in force says no.

    What a training run without a pack does (with a pack,
    :func:`governance.privacy.filter_training_events` does this among its other
    rules): the events a subject made after their erasure are a new history and
    stay. Without a pack there is no opt-in or opt-out model to read a missing
    record by, but a recorded no (:data:`REFUSALS`: a withdrawal, a refusal, an
    objection, an opt-out, or one kept through an erasure by its suppression
    record) needs none: no training path learns from that subject (GDPR Art.
    7(3), 21; CCPA §1798.120). Returns the data (the input itself when nothing
    goes; else :meth:`~recommender.data.Dataset.subset`, which keeps the rating
    scale and column origins) and a report: event and subject counts per reason,
    and :data:`ERASURES_SEEN`.

    Raises
    ------
    DataError
        When an event's timestamp is present but not a time
        (:func:`recommender.data.event_times`): a missing time is an event of
        unknown time, which goes, but a broken one is reported, not guessed at.
    """
    from audits import consent_states, lookup_pseudonyms

    events = dataset.events
    codes, subjects = subject_codes(events["user_id"])
    with store.session() as session:
        seen = suppressions_read_at(session)
        found = suppressions_for(session, subjects)
        names = lookup_pseudonyms(session, subjects)
        states = consent_states(session, sorted({p for p in names.values() if p}))
    # per subject: the refusal in force (its own latest record, else one its suppression record kept), or ""
    refusal = np.array([_refusal(states.get(names[s] or "", {}).get(PROFILING_PURPOSE), found.get(s)) for s in subjects] + [""], dtype=object)
    refused = refusal[codes] != ""  # codes of -1 (no subject) read the trailing ""
    gone = np.zeros(len(events), dtype=bool)
    if found:
        until = erased_until(subjects, found)
        limit = np.append(until, np.datetime64("NaT", "ns"))[codes]  # events without a subject: no erasure
        stamps = event_times(events, source=dataset.name)
        gone = ~np.isnat(limit) & ~(stamps > limit)  # at or before the erasure, or of unknown time
    excluded = {"erased": int(gone.sum())}
    refused_subjects: dict[str, int] = {}
    for status in REFUSALS:
        mine = refused & ~gone & (refusal[codes] == status)
        excluded[status] = int(mine.sum())
        refused_subjects[status] = int(np.count_nonzero(refusal[:-1] == status))
    out = gone | refused
    report = {
        "pack": NO_CONSENT_RULES,
        "rules": (
            "no pack: events of erased subjects up to their erasure (GDPR Art. 17), and every event of a subject whose "
            "consent to personalization in force is withdrawn, denied, objected or opted out (GDPR Art. 7(3), 21; "
            "CCPA §1798.120), are left out"
        ),
        "events": {"total": len(events), "kept": int((~out).sum()), "excluded": excluded},
        "subjects": {"erased": len(np.unique(codes[gone])), **refused_subjects},
        ERASURES_SEEN: seen,
    }
    if not out.any():
        return dataset, report
    kept = dataset.subset(~out)
    # The data as given and as trained on, as a pack's filter records them: a deployment policy that binds a gate
    # to "the model's own training data" accepts the data as given (governance.deploy_policy.training_hashes).
    report["dataset"] = {"before": dataset.content_hash(), "after": kept.content_hash()}
    return kept, report


def _refusal(own: str | None, suppression: Any) -> str:
    """The refusal a subject's consent to :data:`PROFILING_PURPOSE` says (``""``: none): their own record in force
    decides; without one, the restriction their suppression record kept through an erasure."""
    if own is not None:
        return own if own in REFUSALS else ""
    kept = (getattr(suppression, "denied", None) or {}).get(PROFILING_PURPOSE)
    status = kept.get("status") if isinstance(kept, Mapping) else None
    return status if status in REFUSALS else ""


def erased_until(subjects: list[str], suppressions: dict[str, Any]) -> np.ndarray:
    """Per subject, the time of their latest erasure (``NaT`` for none), as naive UTC ``datetime64[ns]``."""
    return np.array(
        [
            pd.Timestamp(suppressions[s].erased_at).tz_convert(None).to_datetime64() if s in suppressions else np.datetime64("NaT")
            for s in subjects
        ],
        dtype="datetime64[ns]",
    )
