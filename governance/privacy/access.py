"""The right of access and to portability (GDPR Art. 15, 20): everything recgov holds about a subject.

Art. 15 gives a subject a copy of their personal data with the purposes, the
recipients, the retention, their rights and, for automated decisions, the
meaningful information about the logic involved (Art. 15(1)(h)); Art. 20 asks
for it in a structured, machine-readable form. :func:`export_subject` answers
with one JSON document (:data:`EXPORT_FORMAT`) built in named steps:

1. **The data given** (:func:`_subject_in_data`): recgov's store keeps no raw
   interactions, so the subject's events and attribute row come from the data
   set the caller passes, if any.
2. **The request** (:func:`_open_access_request`): an ``access`` request is
   opened with the pack's deadline and moved to ``in_progress``, so the answer
   is on the record before it is gathered.
3. **The models** (:func:`governance.privacy.erasure.models_for`): each recorded
   model version whose training data includes or may include the subject.
4. **The store** (:func:`_read_holdings`): consent history and records in
   force, served decisions, the outcome events recorded after them (clicks,
   dwell, ratings: :mod:`audits.outcomes`), the item reports they signed
   (:mod:`audits.harm`), their earlier erasures (:mod:`audits.suppression`) and
   the trail events under the subject's pseudonym (a :class:`StoreHoldings`).
5. **The record**: the request is completed with counts only
   (:class:`ExportCounts`, sealed under the subject's record key by
   :func:`audits.update_request`); the export itself is not kept.
6. **The document** (:func:`_document`), then, with a pack, whether each purpose
   may profile them now and the DSA Art. 27 disclosure of the logic.

Steps 3 to 6 run under one guard: a failure marks the request failed, with a
message that names no subject, and re-raises. The document names the subject by
the id they gave (it goes to them); nothing stored carries that id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from audits import consent_history, effective_consent, open_request, update_request
from audits.models import DecisionRecord, ItemReport, OutcomeEvent, SubjectRequest, TrailEvent
from audits.suppression import subject_erasures
from governance.consent.state import may_profile
from governance.policy import LoadedPack, PolicyPack
from governance.privacy.common import fail_request, iso, pack_policy, plain, request_deadline, requested_subject
from governance.privacy.consent import consent_records, history_json
from governance.privacy.erasure import models_for
from recommender.data import Dataset
from recommender.errors import ConfigError, DataError

__all__ = ["EXPORT_FAILED", "EXPORT_FORMAT", "ErasureEntry", "ExportCounts", "ReportEntry", "StoreHoldings", "export_subject"]

EXPORT_FORMAT = "recgov.subject-export.v1"
EXPORT_FAILED = "the access request {id} failed: {cause}"
NO_DATA_NOTE = "no data set was given: recgov's store keeps no raw interactions, only the records below"
DATA_NOTE = "the interactions recgov was given for this export"


@dataclass(frozen=True)
class SubjectInData:
    """The subject's rows in the data set given with the request (none without one)."""

    events: list[dict[str, Any]]
    """Their events, without the ``user_id`` column, as plain JSON."""
    attributes: dict[str, Any] | None
    """Their row of the users table, if it has one."""
    source: str | None
    """Where the data set came from (its source, else its name); ``None`` without a data set."""
    given: bool
    """Whether a data set was given at all."""
    dataset_hash: str | None
    """The data set's content hash, to tell which recorded models were trained on it."""


@dataclass(frozen=True)
class OpenedRequest:
    """The access request answering this export, as opened in the store."""

    id: int
    pseudonym: str
    deadline: datetime
    deadline_basis: str


class ExportCounts(TypedDict):
    """What the completed request keeps of an export: counts, never the content."""

    consent_records: int
    interactions: int
    decisions: int
    outcome_events: int
    item_reports: int
    erasures: int
    trail_events: int
    models: int
    model_rows: NotRequired[int]
    online_store_entries: NotRequired[int]


class DecisionEntry(TypedDict):
    """A list served to the subject, as the export shows it."""

    decision_id: str
    decided_at: str | None
    mode: str
    policy: str
    model_version: str | None
    items: Any
    scores: Any
    tags: Any
    context: Any


class OutcomeEntry(TypedDict):
    """An outcome event recorded for the subject (what they did with a served item), as the export shows it."""

    kind: str
    item_id: str
    occurred_at: str | None
    value: float | None
    decision_id: str | None
    position: int | None
    attribution: str


class ReportEntry(TypedDict):
    """An item report the subject signed (a DSA notice), as the export shows it: the item, what they said, when."""

    id: int
    item_id: str
    reason: str
    reported_at: str | None


class ErasureEntry(TypedDict):
    """An erasure of the subject the suppression list keeps: when, and the restrictions it kept in force."""

    erased_at: str | None
    restrictions: dict[str, str]
    """Purpose -> the status kept (opted_out, objected, denied, withdrawn); empty when none was in force."""


class TrailEntry(TypedDict):
    """An audit event that names the subject: when, who, what."""

    seq: int
    time: Any
    actor: str
    action: str


@dataclass(frozen=True)
class StoreHoldings:
    """What the store holds under the subject's pseudonym, read in the transaction that completes the request."""

    history: list[dict[str, Any]]
    """Their consent records, oldest first (as :func:`audits.consent_history` gives them)."""
    in_force: dict[str, dict[str, Any]]
    """Purpose -> the record in force."""
    decisions: list[DecisionEntry]
    trail: list[TrailEntry]
    outcomes: list[OutcomeEntry]
    reports: list[ReportEntry]
    """The item reports they signed, their reasons opened under their record key."""
    erasures: list[ErasureEntry]
    """Their earlier erasures, as the suppression list keeps them (found by their id, not their pseudonym)."""

    def counts(self, *, interactions: int, models: int) -> ExportCounts:
        """The counts the completed request keeps."""
        return ExportCounts(
            consent_records=len(self.history),
            interactions=interactions,
            decisions=len(self.decisions),
            outcome_events=len(self.outcomes),
            item_reports=len(self.reports),
            erasures=len(self.erasures),
            trail_events=len(self.trail),
            models=models,
        )


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
    * ``decisions``: the lists served to them, with items, scores and explanation tags, and the
      lists ``recgov batch`` wrote for them (context ``batch``: the run, ``batch_path``: its folder);
    * ``outcomes``: the outcome events recorded for them (impressions, clicks, conversions, dwell,
      ratings), each with the decision it was joined to, if any;
    * ``reports``: the item reports they signed (item, reason, time);
    * ``erasures``: their earlier erasures the suppression list keeps, found by their id (when, and the
      restrictions each kept in force: the consent history shows those as records at the erasure time);
    * ``trail``: the audit events that name them (time, actor, action);
    * ``models``: the recorded model versions whose training data includes or
      may include them (see :func:`models_for` for how that is known);
    * ``model_rows``: per version whose file lists them, their factor vector (where the model has one) and
      their row of its training matrix, read from the file;
    * ``online_store``: what the online store (Redis, ``RECGOV_REDIS_URL``) holds under their keyed hash:
      cached lists, the epoch and hold stamps, their factor vector per model version (or why it was not read);
    * ``logic`` (with a pack): the DSA Art. 27 disclosure
      (:func:`governance.disclosure.disclosure`), the meaningful information
      about the logic that Art. 15(1)(h) asks for.

    The export names the subject by ``subject_id`` (it goes to them); nothing
    stored carries it.
    """
    from governance.disclosure import disclosure

    subject = requested_subject(store, subject_id)
    policy = pack_policy(pack) if pack is not None else None
    mine = _subject_in_data(dataset, subject)
    request = _open_access_request(store, subject, pack, actor)
    try:
        models = [
            m
            for m in models_for(store, subject, dataset_hash=mine.dataset_hash, subject_in_dataset=bool(mine.events))
            if m["membership"] != "does_not_include"
        ]
        model_rows = _model_rows(store, subject, models)
        online = _online_holdings(subject)
        # One snapshot for every read of the store (PostgreSQL: REPEATABLE READ READ ONLY), so that an erasure
        # committed meanwhile is wholly in the export or wholly out of it; the completion is written afterwards.
        with store.snapshot() as connection, Session(bind=connection) as reading:
            held = _read_holdings(reading, subject, request.pseudonym)
            requests = _request_entries(reading, request.pseudonym)
        with store.session() as session:
            counts = held.counts(interactions=len(mine.events), models=len(models))
            counts["model_rows"] = len(model_rows)
            counts["online_store_entries"] = 0 if not online.get("read") else len(online["lists"]) + len(online["factors"])
            update_request(session, request.id, status="completed", personal={"counts": counts}, actor=actor)
            done = session.get(SubjectRequest, request.id)
            requests = [
                RequestEntry(**{**r, "status": done.status, "completed_at": iso(done.completed_at)}) if r["id"] == request.id else r
                for r in requests
            ]
            document = _document(subject, request, policy, held, mine, requests, models)
            document["model_rows"] = model_rows
            document["online_store"] = online
    except BaseException as err:
        cause = fail_request(store, request.id, err, subject, actor)
        if not isinstance(err, (ConfigError, DataError)):
            raise
        raise type(err)(EXPORT_FAILED.format(id=request.id, cause=cause)) from err

    if policy is not None:
        document["profiling"] = _profiling(policy, held.history)
        document["logic"] = disclosure(policy)
    return document


MODEL_ROWS_NOTE = (
    "the numbers each model version that holds a row for you keeps about you: your factor vector (what the model "
    "learned of your tastes) where the model has one, and the items of your row of the interaction matrix it was "
    "trained on, with their weights; a version listed above without a row here could not be read (see models)"
)
ONLINE_NOTE = (
    "what the online store (Redis) holds under the keyed hash that names you there: the lists cached for you, "
    "the stamps that say when they are invalidated, and your factor vector under each model version"
)
ONLINE_NOT_CONFIGURED = "no online store is configured (RECGOV_REDIS_URL): recgov keeps nothing of you in one"
ONLINE_DOWN = (
    "the online store (RECGOV_REDIS_URL) did not answer: what it holds of you is not in this export; its entries "
    "expire within their time to live ({ttl_s:g} s); ask again once it answers"
)


def _model_rows(store: Any, subject: str, models: list[dict[str, Any]]) -> dict[str, Any]:
    """Per recorded model version whose artifact lists the subject: their factor vector (where the model has user
    factors) and their row of its training matrix (item ids and weights), read from the artifact (GDPR Art. 15:
    numbers derived from them are their personal data)."""
    from pathlib import Path

    from audits.models import ModelVersion
    from governance.family_training import family_for_kind, family_model_class
    from recommender.als import ALSRecommender

    versions = [m["version_id"] for m in models if m["membership"] == "includes"]
    if not versions:
        return {"note": MODEL_ROWS_NOTE, "versions": []}
    with store.session() as session:
        rows = session.execute(
            select(ModelVersion.version_id, ModelVersion.kind, ModelVersion.artifact_location).where(ModelVersion.version_id.in_(versions))
        ).all()
    out = []
    for version, kind, location in sorted(rows):
        family = family_for_kind(kind)
        try:
            model = ALSRecommender.load(Path(location)) if family is None else family_model_class(family).load(location)
        except (OSError, ValueError, KeyError, ConfigError, DataError) as err:
            out.append({"model_version": version, "kind": kind, "read": False, "why": f"the artifact could not be read ({type(err).__name__})"})
            continue
        entry: dict[str, Any] = {"model_version": version, "kind": kind, "read": True, "factors": None, "interactions": None}
        for part in (model, getattr(model, "als_", None)):  # a hybrid keeps its ALS part's factors
            train = getattr(part, "train_", None)
            if train is None:
                continue
            row = int(train.user_index(np.asarray([subject], dtype=object))[0])
            if row < 0:
                continue
            factors = getattr(part, "user_factors_", None)
            if entry["factors"] is None and factors is not None and len(factors) == train.n_users:
                entry["factors"] = np.asarray(factors[row], dtype=float).tolist()
            if entry["interactions"] is None:
                cells = train.matrix[row]
                entry["interactions"] = [
                    {"item_id": str(item), "weight": float(weight)} for item, weight in zip(train.item_ids[cells.indices], cells.data)
                ]
        out.append(entry)
    return {"note": MODEL_ROWS_NOTE, "versions": out}


def _online_holdings(subject: str) -> dict[str, Any]:
    """What the online store holds of the subject (:meth:`audits.online_store.OnlineStore.subject_holdings`)."""
    from audits.online_store import configured_store

    online = configured_store()
    if online is None:
        return {"read": False, "configured": False, "note": ONLINE_NOT_CONFIGURED}
    held = online.subject_holdings(online.subject_key(subject))
    if held is None:
        return {"read": False, "configured": True, "note": ONLINE_DOWN.format(ttl_s=online.ttl_ms / 1000)}
    return {"read": True, "configured": True, "note": ONLINE_NOTE, **held}


def _subject_in_data(dataset: Dataset | None, subject: str) -> SubjectInData:
    """The subject's events (without their id) and attribute row in ``dataset``, vectorised."""
    if dataset is None:
        return SubjectInData(events=[], attributes=None, source=None, given=False, dataset_hash=None)
    events = dataset.events
    is_theirs = (events["user_id"].astype("string") == subject).fillna(False)  # an event naming no one is not theirs
    mine = events.loc[np.asarray(is_theirs, dtype=bool)]
    columns = [c for c in events.columns if c != "user_id"]
    rows = [plain(dict(zip(columns, values))) for values in mine[columns].itertuples(index=False, name=None)]
    attributes = None
    users = dataset.users
    if users is not None and len(users):
        match = np.flatnonzero(np.asarray(users.index.astype(str) == subject))
        if match.size:
            attributes = plain(users.iloc[int(match[0])].to_dict())
    return SubjectInData(
        events=rows,
        attributes=attributes,
        source=dataset.source or dataset.name,
        given=True,
        dataset_hash=dataset.content_hash(),
    )


def _open_access_request(
    store: Any, subject: str, pack: LoadedPack | PolicyPack | None, actor: str | None
) -> OpenedRequest:
    """Open the ``access`` request with the pack's deadline and move it to ``in_progress``."""
    deadline_days, deadline_basis = request_deadline(pack, "access")
    with store.session() as session:
        request = open_request(session, subject_id=subject, kind="access", deadline_days=deadline_days, actor=actor)
        update_request(session, request.id, status="in_progress", actor=actor)
        return OpenedRequest(
            id=request.id, pseudonym=request.subject, deadline=request.deadline, deadline_basis=deadline_basis
        )


def _read_holdings(session: Session, subject: str, pseudonym: str) -> StoreHoldings:
    """Consent, served decisions, outcome events, signed item reports and trail events under the subject's
    pseudonym, oldest first."""
    history = consent_history(session, subject)
    in_force = effective_consent(session, subject)
    decisions = session.scalars(
        select(DecisionRecord)
        .where(DecisionRecord.subject == pseudonym)
        .order_by(DecisionRecord.decided_at, DecisionRecord.decision_id)
    ).all()
    outcomes = session.scalars(
        select(OutcomeEvent).where(OutcomeEvent.subject == pseudonym).order_by(OutcomeEvent.occurred_at, OutcomeEvent.id)
    ).all()
    reports = session.scalars(  # loading opens each reason sealed under their record key (audits.sealing)
        select(ItemReport).where(ItemReport.reporter == pseudonym).order_by(ItemReport.created_at, ItemReport.id)
    ).all()
    trail = session.execute(
        select(TrailEvent.seq, TrailEvent.time, TrailEvent.actor, TrailEvent.action)
        .where(TrailEvent.subject == pseudonym)
        .order_by(TrailEvent.seq)
    ).all()
    return StoreHoldings(
        history=history,
        in_force=in_force,
        decisions=[
            DecisionEntry(
                decision_id=d.decision_id,
                decided_at=iso(d.decided_at),
                mode=d.mode,
                policy=f"{d.pack_name}@{d.pack_version}",
                model_version=d.model_version,
                items=plain(d.slate.get("items", [])),
                scores=plain(d.slate.get("scores")),
                tags=plain(d.slate.get("tags")),
                context=plain(d.context),
            )
            for d in decisions
        ]
        + _batch_entries(session, pseudonym),
        trail=[TrailEntry(seq=seq, time=t, actor=a, action=action) for seq, t, a, action in trail],
        outcomes=[
            OutcomeEntry(
                kind=o.kind, item_id=o.item_id, occurred_at=iso(o.occurred_at), value=o.value,
                decision_id=o.decision_id, position=o.position, attribution=o.attribution,
            )  # fmt: skip
            for o in outcomes
        ],
        reports=[
            ReportEntry(id=r.id, item_id=r.item_id, reason=r.reason, reported_at=iso(r.created_at)) for r in reports
        ],
        erasures=[
            ErasureEntry(erased_at=iso(e.erased_at), restrictions={p: r["status"] for p, r in sorted(e.denied.items())})
            for e in subject_erasures(session, subject)
        ],
    )


def _batch_entries(session: Session, pseudonym: str) -> list[DecisionEntry]:
    """The subject's lists written by ``recgov batch`` (in the anchored batch folders the trail names), opened.

    Their context carries ``batch`` (the run) and ``batch_path`` (the folder), so the person and
    the controller can tell them from lists served on request.
    """
    from governance.spark.records import subject_batch_records

    out = []
    for r in subject_batch_records(session, pseudonym):
        slate = r["slate"] or {}
        context = dict(r["context"] or {})
        context["batch_path"] = r["path"]
        out.append(
            DecisionEntry(
                decision_id=r["decision_id"], decided_at=r["decided_at"], mode=r["mode"], policy=r["policy"],
                model_version=r["model_version"], items=plain(slate.get("items", [])), scores=plain(slate.get("scores")),
                tags=plain(slate.get("tags")), context=plain(context),
            )  # fmt: skip
        )
    return out


class RequestEntry(TypedDict):
    """One of the subject's requests, as the export lists them."""

    id: int
    kind: str
    status: str
    requested_at: str | None
    deadline: str | None
    completed_at: str | None


def _request_entries(session: Session, pseudonym: str) -> list[RequestEntry]:
    """The subject's requests, oldest first, this one (now completed) included."""
    requests = session.scalars(
        select(SubjectRequest)
        .where(SubjectRequest.subject == pseudonym)
        .order_by(SubjectRequest.requested_at, SubjectRequest.id)
    ).all()
    return [
        RequestEntry(
            id=r.id,
            kind=r.kind,
            status=r.status,
            requested_at=iso(r.requested_at),
            deadline=iso(r.deadline),
            completed_at=iso(r.completed_at),
        )
        for r in requests
    ]


def _document(
    subject: str,
    request: OpenedRequest,
    policy: PolicyPack | None,
    held: StoreHoldings,
    mine: SubjectInData,
    requests: list[RequestEntry],
    models: list[dict[str, Any]],
) -> dict[str, Any]:
    """The export document, its sections in the format's order (``profiling`` and ``logic`` come with a pack)."""
    return {
        "format": EXPORT_FORMAT,
        "subject": {"id": subject},
        "generated_at": datetime.now(UTC).isoformat(),
        "request": {
            "id": request.id,
            "kind": "access",
            "deadline": iso(request.deadline),
            "deadline_basis": request.deadline_basis,
            "legal_reference": "GDPR Art. 15",
        },
        "controller": policy.metadata.owner if policy else None,
        "consent": {
            "history": history_json(held.history),
            "in_force": {p: history_json([r])[0] for p, r in held.in_force.items()},
        },
        "profiling": None,
        "requests": requests,
        "interactions": {
            "source": mine.source,
            "held": mine.given,
            "note": DATA_NOTE if mine.given else NO_DATA_NOTE,
            "count": len(mine.events),
            "events": mine.events,
            "attributes": mine.attributes,
        },
        "decisions": held.decisions,
        "outcomes": held.outcomes,
        "reports": held.reports,
        "erasures": held.erasures,
        "trail": held.trail,
        "models": models,
        "logic": None,
        "retention_days": policy.minimization.retention_days if policy else None,
    }


def _profiling(policy: PolicyPack, history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per purpose of the pack, whether it may profile the subject now, and why (:func:`may_profile`)."""
    records = consent_records(history)
    profiling = {}
    for purpose in sorted(policy.consent.purposes):
        decision = may_profile(policy.consent, records, purpose=purpose)
        profiling[purpose] = {"allowed": decision.allowed, "reason": decision.reason}
    return profiling
