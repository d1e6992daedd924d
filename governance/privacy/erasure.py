"""Erasure (GDPR Art. 17): list what holds the subject, unlearn, record, suppress, shred, and retrain.

:func:`erase_subject` is a sequence of named steps, each returning a typed
report whose ``to_dict()`` is its part of the JSON answer:

1. :func:`_checked_input` -- the pack, each model file, the paths recgov would
   record, the retrain data: all checked before anything is stored.
2. :func:`_opened_erasure` -- the erasure request (:class:`ErasureRequest`).
3. :func:`~governance.privacy.unlearning.models_for` -- every recorded model
   version and whether it holds the subject (also read by the access export,
   which imports it from here).
4. :func:`governance.privacy.unlearning.unlearn_models` -- unlearn the subject
   from each artifact; :func:`_listing` says what to do about each recorded
   version (:class:`ModelsListing`).
5. :func:`_opened_retrain` (:class:`RetrainRequest`),
   :func:`governance.privacy.unlearning.record_unlearned_models`,
   :func:`_suppressed` (:class:`Suppression`) and :func:`_shred_and_complete`
   (:class:`SealedErasure`) -- in one transaction: the retrain the erasure
   calls for, the unlearned versions and their standing, the suppression
   record, the crypto-shredding, the completed request.
6. :func:`_retrain_at_once` -- with retrain data, the full retrain
   (:mod:`governance.privacy.retrains`).

An erasure writes a suppression record (:mod:`audits.suppression`), found by a
keyed hash of the raw id, so that what it settled survives crypto-shredding:
the opt-outs and objections in force stay in force at serving and training,
and the subject's events from before the erasure are never trained on again.
Nothing here writes a raw subject id anywhere (:func:`governance.privacy.common.guard`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audits import effective_consent, open_request, shred_subject, update_request
from audits._common import actor_name
from audits.models import ConsentRecordRow, DecisionRecord, ItemReport, ModelVersion, SubjectRequest, TrailEvent
from audits.outcomes import delete_subject_outcomes
from audits.suppression import SUPPRESSED_STATUSES, suppress_subject
from audits.trail import lock_head
from governance.policy import LoadedPack, PolicyPack
from governance.privacy.common import (
    fail_request,
    guard,
    iso,
    pack_policy,
    pack_stamp,
    pending_erasure,
    plain,
    request_deadline,
    requested_subject,
    scrubbed,
    vocabulary_of,
)
from governance.privacy.family_erasure import delete_replaced_artifacts
from governance.privacy.retrains import (
    CANNOT_RETRAIN,
    check_not_in_artifact,
    check_retrain_data,
    retrain_packs,
    run_retrains,
    settle_replaced_requests,
)
from governance.privacy.unlearning import (
    OLDER_REPLACED_ACTION,
    SUPERSEDED_ACTION,
    UnlearningOptions,
    UnlearningReport,
    delete_older_artifacts,
    model_paths,
    models_for,
    record_unlearned_models,
    refuse_erased_meanwhile,
    replace_in_serving,
    unlearn_models,
)
from recommender.data import Dataset
from recommender.errors import ConfigError, DataError

__all__ = [
    "ERASURE_FAILED",
    "RETRAIN_AFTER_ERASURE_FAILED",
    "ErasureRequest",
    "ModelsListing",
    "RetrainRequest",
    "SealedErasure",
    "Suppression",
    "erase_subject",
    "models_for",
]

# What an erasure answers when it cannot go on.
ERASURE_FAILED = "the erasure request {id} failed and the subject was NOT shredded: {cause}"
RETRAIN_AFTER_ERASURE_FAILED = (
    "erasure request {erasure} is complete and the subject is shredded, but the retrain failed: {cause}; "
    "retrain request {id} stays open until {deadline}: run `recgov retrain run DATA` once the cause is fixed"
)
RETAINED = (
    "consent records, requests, decisions (in the store and in the anchored folders of recgov batch), the item reports "
    "they signed and trail events stay under the former pseudonym, which nothing links to the person any more: the "
    "proof of lawful processing (GDPR Art. 7(1), 17(3)(e)) and of the notices the service received (DSA Art. 16); the "
    "lists, scores and tags of those decisions and the reasons of those reports were sealed under the subject's record "
    "key, deleted now, so nobody can read them; the trail and the batch folders' chains still verify"
)
STILL_LISTED = (
    "the artifact of model version {version} still lists the subject's id in the clear among its training rows, "
    "and nothing recgov does (a retrain, a retirement) deletes it: delete the file (recgov models show {version} "
    "names it) once the version is retired"
)
REPLACED_ACTION = (
    "exactly erased by this request: model version {new}, trained without the subject, replaces it (in its "
    "deployment stage, if it had one); this version is retired and its file deleted"
)
MODELS_NOTE = (
    "membership is read from each model's artifact where it is still at its recorded location with its "
    "recorded hash; otherwise the store cannot tell (it records data set versions, not who is in them) "
    "and the model is listed as may_include"
)


def _count_by_subject(session: Session, pseudonym: str) -> dict[str, int]:
    """What stays under the pseudonym once it is shredded, unlinkable to the person, by kind.

    ``batch_decisions``: their records in the anchored folders of ``recgov batch``, sealed under the
    record key the shredding deletes (unreadable afterwards; the folders' chains still verify).
    """
    from governance.spark.records import subject_batch_records

    def count(column: Any) -> int:
        return int(session.scalar(select(func.count()).where(column == pseudonym)) or 0)

    return {
        "consent_records": count(ConsentRecordRow.subject),
        "subject_requests": count(SubjectRequest.subject),
        "decisions": count(DecisionRecord.subject),
        "batch_decisions": len(subject_batch_records(session, pseudonym)),
        "item_reports": count(ItemReport.reporter),
        "trail_events": count(TrailEvent.subject),
    }


@dataclass(frozen=True)
class _Deadlines:
    """The pack's deadlines for the erasure and for the retrain it calls for, each with the provision it quotes."""

    erasure_days: int
    erasure_basis: str
    retrain_days: int
    retrain_basis: str


@dataclass(frozen=True)
class ErasureRequest:
    """The erasure request this run carries out: its id, the subject's pseudonym, and its deadline."""

    id: int
    pseudonym: str
    deadline: datetime
    deadline_basis: str

    def to_dict(self) -> dict[str, Any]:
        """The request as the answer reports it, once completed."""
        return {
            "id": self.id,
            "kind": "erasure",
            "status": "completed",
            "deadline": iso(self.deadline),
            "deadline_basis": self.deadline_basis,
            "legal_reference": "GDPR Art. 17",
        }


@dataclass(frozen=True)
class ModelsListing:
    """The recorded model versions that include or may include the subject, each with what to do about it."""

    versions: list[dict[str, Any]]
    n_checked: int

    def to_dict(self) -> dict[str, Any]:
        """The ``models`` part of the answer: how membership was read, the versions, and how many were checked."""
        return {"note": MODELS_NOTE, "versions": self.versions, "n_checked": self.n_checked}


@dataclass(frozen=True)
class RetrainRequest:
    """The retrain request the erasure opened: every version holding the subject, and the unlearned stand-ins."""

    id: int
    status: str
    deadline: str | None
    deadline_basis: str
    models: list[str]
    provisional: list[str]
    retrain_under: dict[str, str | None] = field(default_factory=dict)
    """Per version, the pack whose consent rules trained it, which its retrain runs under (None: unknown)."""

    def to_dict(self) -> dict[str, Any]:
        """The ``retrain.request`` part of the answer."""
        return {
            "id": self.id,
            "kind": "retrain",
            "status": self.status,
            "deadline": self.deadline,
            "deadline_basis": self.deadline_basis,
            "models": self.models,
            "provisional": self.provisional,
            "retrain_under": self.retrain_under,
        }

    def commands(self, pack_name: str) -> list[str]:
        """``recgov retrain run`` once per pack the listed versions are retrained under (``pack_name`` for unknown)."""
        packs = dict.fromkeys(p or pack_name for p in self.retrain_under.values()) or {pack_name: None}
        return [f"recgov retrain run DATA --pack {p}" for p in packs]


@dataclass(frozen=True)
class Suppression:
    """The suppression record that outlives the shredding: the restrictions kept, and from when events are left out."""

    id: int
    denied: dict[str, dict[str, Any]]
    erased_at: str | None

    def to_dict(self) -> dict[str, Any]:
        """The ``suppression`` part of the answer (and of the stored result)."""
        return {"id": self.id, "denied": self.denied, "erased_at": self.erased_at}


@dataclass(frozen=True)
class SealedErasure:
    """The shredding and the completed request: what became unlinkable, and the result as recorded (JSON-ready)."""

    unlinked: dict[str, int]
    shredded: bool
    result: dict[str, Any]


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
    exact: bool = True,
) -> dict[str, Any]:
    """Erase a subject (GDPR Art. 17): list what holds them, unlearn, record, shred, and retrain.

    Steps, in this order:

    1. List every recorded model version and whether its training data
       includes the subject: read from its artifact when that is still at its
       recorded location with its recorded hash, otherwise ``may_include`` (the
       store records data set versions, not who is in them). Check the input
       (the pack, each model file, that no path recgov would record names the
       subject; with ``retrain_data``, that a training set is left once the
       subject's events are out, under ``pack``, when the retrain would train
       one of those versions under it: a version another pack's consent rules
       trained waits for ``recgov retrain run --pack`` that pack, as
       :func:`run_retrains` leaves it) before anything is stored.
    2. Open an ``erasure`` request (deadline: the pack's
       ``consent.requests.erasure_days``) and move it to ``in_progress``.
    3. (The listing of step 1 says what holds the subject.)
    4. For each model artifact given (``model_path``: one path or several):
       with ``exact`` (default), refit it without the subject
       (:func:`recommender.unlearning.refit_without_users`: its recipe on the
       matrix without their row, the model a training without them makes; no
       residual to measure, no retrain owed); the recorded version it came from
       is then replaced as an exact family's is (its stage goes to the refit,
       under the same gate; it is retired with a ``model.replaced_by_erasure``
       event and its file deleted once the erasure is committed:
       :func:`governance.privacy.family_erasure.replace_exactly_erased`). With
       ``exact=False``, remove the subject with :func:`recommender.unlearning.forget_users`
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
    subject = requested_subject(store, subject_id)
    policy = pack_policy(pack)
    say = progress or (lambda _step: None)
    options = UnlearningOptions(
        out_dir=Path(models_dir) if models_dir is not None else None,
        delete_previous=delete_previous,
        measure_residual=measure_residual,
        propagate=propagate,
        unlearn_recorded=unlearn_recorded,
        exact=exact,
    )
    # Before anything is stored (and before unlearning: an artifact deleted below is still read here): every
    # recorded version and whether it holds the subject, which also says what the retrain would replace.
    say("listing the model versions that may hold the subject")
    catalogue = models_for(store, subject)
    models = _checked_input(store, subject, pack, model_path, options.out_dir, retrain_data, retrain_models_dir, catalogue)
    deadlines = _Deadlines(*request_deadline(pack, "erasure"), *request_deadline(pack, "retrain"))
    started = time.perf_counter()
    request = _opened_erasure(store, subject, deadlines, actor)
    unlearning = None
    try:
        unlearning = unlearn_models(store, subject, models, catalogue, options, say)
        listing = _listing(catalogue, unlearning)
        say("recording and crypto-shredding")
        with store.session() as session:
            # first of all: an erasure running beside this one records (or reuses) its versions before or after this
            # one, never between its reads and writes (the same unlearned version must be recorded once)
            lock_head(session)
            retrain = _opened_retrain(session, subject, request.id, pack, listing, unlearning, deadlines, actor)
            record_unlearned_models(session, unlearning, retrain.to_dict() if retrain else None, request.id, actor)
            replace_in_serving(session, unlearning, request.id, actor)  # production first: the refit holds one stage
            # whom an erasure beside this one erased is in none of the versions this one records (else all rolls back)
            refuse_erased_meanwhile(session, unlearning, subject, catalogue)
            settled = settle_replaced_requests(
                session, _replaced_now(unlearning), request.id, actor, exclude=None if retrain is None else retrain.id
            )
            if retrain is not None:  # once the unlearned stand-ins are recorded, their lineage leads to their training run
                retrain = replace(retrain, retrain_under=retrain_packs(session, retrain.models))
            suppression = _suppressed(session, subject, actor)
            parts = (unlearning, listing, retrain, suppression)
            sealed = _shred_and_complete(session, subject, request, pack, parts, started, actor)
        if delete_previous:  # only now that the new versions and the completion are committed
            _delete_previous_artifacts(unlearning)
        undeleted = [*delete_replaced_artifacts(unlearning.replacing), *delete_older_artifacts(unlearning)]
    except BaseException as err:
        cause = fail_request(store, request.id, err, subject, actor)
        if unlearning is not None:
            _drop_unrecorded_artifacts(store, unlearning)
        if not isinstance(err, (ConfigError, DataError)):
            raise
        raise type(err)(ERASURE_FAILED.format(id=request.id, cause=cause)) from err
    run = None
    if retrain is not None and retrain_data is not None:
        say("retraining without the subject")
        retrain, run = _retrain_at_once(
            store,
            subject,
            request.id,
            retrain,
            sealed,
            retrain_data,
            pack=pack,
            models_dir=retrain_models_dir,
            measure_carbon=measure_carbon,
            actor=actor,
        )
    return {
        "request": request.to_dict(),
        **pack_stamp(pack),
        "pseudonym": request.pseudonym,
        "shredded": sealed.shredded,
        "unlearning": sealed.result["unlearning"],
        "models": listing.to_dict(),
        "retrain": {"request": retrain.to_dict() if retrain else None, "run": run},
        "suppression": suppression.to_dict(),
        "unlinked": sealed.unlinked,
        "deleted": sealed.result["deleted"],
        "retained": RETAINED,
        "retrain_requests_settled": settled,
        "not_done": [*_not_done(policy.metadata.name, retrain, run, unlearning, listing), *_stages_not_kept(unlearning), *undeleted],
        "seconds": sealed.result["seconds"],
    }


def _checked_input(
    store: Any,
    subject: str,
    pack: LoadedPack | PolicyPack,
    model_path: str | Path | Sequence[str | Path] | None,
    out_dir: Path | None,
    retrain_data: Dataset | None,
    retrain_models_dir: str | Path | None,
    catalogue: list[dict[str, Any]],
) -> list[tuple[Path, Any]]:
    """Step 1: load each model file, refuse a path recgov would record that names the subject, check the retrain data.

    Before anything is stored, so that bad input changes nothing. The retrain data is checked under ``pack`` only
    when the retrain would train a model under it: one the recorded versions that may hold the subject
    (``catalogue``) are retrained under, by the rule ``recgov retrain run`` follows (a version its own pack's
    consent rules trained waits for a run under that pack).
    """
    from recommender.als import ALSRecommender

    models = [(path, ALSRecommender.load(path)) for path in model_paths(model_path)]
    for path, _model in models:
        where = {"previous_artifact": str(path), "artifact_location": str((out_dir or path.parent).resolve())}
        guard(where, "the erasure record", subject)
    if retrain_data is not None:
        holding = [e["version_id"] for e in catalogue if e["membership"] != "does_not_include"]
        check_retrain_data(retrain_data, subject, pack, store, retrain_models_dir, versions=holding)
    return models


def _opened_erasure(store: Any, subject: str, deadlines: _Deadlines, actor: str | None) -> ErasureRequest:
    """Step 2: open the erasure request (or take up the one a withdrawal opened) and move it to ``in_progress``."""
    with store.session() as session:
        # An erasure a withdrawal already asked for (erase_on_withdrawal) is carried out, not opened twice.
        request = pending_erasure(session, subject) or open_request(
            session, subject_id=subject, kind="erasure", deadline_days=deadlines.erasure_days, actor=actor
        )
        update_request(session, request.id, status="in_progress", actor=actor)
        return ErasureRequest(request.id, request.subject, request.deadline, deadlines.erasure_basis)


def _listing(catalogue: list[dict[str, Any]], unlearning: UnlearningReport) -> ModelsListing:
    """Step 4b: what to do about each recorded version, now that the unlearning is done."""
    new_versions, unlearned_from = unlearning.new_versions, unlearning.sources
    replaced = {m.previous_version: m.version for m in unlearning.replacing if not m.provisional}
    for entry in catalogue:
        if entry["version_id"] in unlearning.older:
            entry["action"] = OLDER_REPLACED_ACTION.format(new=unlearning.older[entry["version_id"]])
            continue
        if entry.get("action") == SUPERSEDED_ACTION and entry["version_id"] not in unlearned_from:
            continue
        if entry["version_id"] in new_versions:
            entry["action"] = "new: unlearned by this request"
        elif entry["membership"] == "does_not_include":
            entry["action"] = "none"
        elif entry.get("erasure") == "retrain":  # a model family that forgets only by a retrain
            entry["action"] = f"retrain without the subject (recgov train DATA --family {entry['kind']}) and retire this version"
        elif entry["version_id"] in replaced:
            entry["action"] = REPLACED_ACTION.format(new=replaced[entry["version_id"]])
        elif entry["version_id"] in unlearned_from:
            entry["action"] = "unlearned by this request; retire this version and serve the new one"
        else:
            entry["action"] = "unlearn it (recgov subject erase ... --model ARTIFACT) or retrain and retire it"
    return ModelsListing([e for e in catalogue if e["membership"] != "does_not_include"], len(catalogue))


def _opened_retrain(
    session: Session,
    subject: str,
    request_id: int,
    pack: LoadedPack | PolicyPack,
    listing: ModelsListing,
    unlearning: UnlearningReport,
    deadlines: _Deadlines,
    actor: str | None,
) -> RetrainRequest | None:
    """Step 5a: the retrain request for every version holding the subject; None when none does."""
    holding = [e["version_id"] for e in listing.versions if e["version_id"] not in unlearning.settled]
    # every unlearned model is a provisional stand-in, recorded or not: the retrain must replace it
    provisional = unlearning.provisional
    holding += [v for v in provisional if v not in holding]
    if not holding:
        return None
    row = open_request(
        session,
        subject_id=subject,
        kind="retrain",
        deadline_days=deadlines.retrain_days,
        details={
            "erasure_request": request_id,
            "models": holding,
            "provisional": provisional,
            "deadline_basis": deadlines.retrain_basis,
            "policy": pack_stamp(pack),
        },
        actor=actor,
    )
    return RetrainRequest(row.id, row.status, iso(row.deadline), deadlines.retrain_basis, holding, provisional)


def _suppressed(session: Session, subject: str, actor: str | None) -> Suppression:
    """Step 5c: the suppression record, keeping the opt-outs and objections in force past the shredding."""
    denied = {
        purpose: {"status": record["status"], "lawful_basis": record["lawful_basis"]}
        for purpose, record in effective_consent(session, subject).items()
        if record["status"] in SUPPRESSED_STATUSES
    }
    row = suppress_subject(session, subject, denied=denied, erased_at=datetime.now(UTC), actor=actor)
    return Suppression(row.id, dict(sorted(denied.items())), iso(row.erased_at))


def _shred_and_complete(
    session: Session,
    subject: str,
    request: ErasureRequest,
    pack: LoadedPack | PolicyPack,
    parts: tuple[UnlearningReport, ModelsListing, RetrainRequest | None, Suppression],
    started: float,
    actor: str | None,
) -> SealedErasure:
    """Step 5d: count what becomes unlinkable, crypto-shred, and complete the request with its result.

    The person's figures in the result are sealed apart (:func:`_erasure_result_parts`).
    """
    unlearning, listing, retrain, suppression = parts
    unlinked = _count_by_subject(session, request.pseudonym)
    deleted = {"outcome_events": delete_subject_outcomes(session, request.pseudonym)}  # behaviour, no proof: gone
    shredded = shred_subject(session, subject, actor=actor_name(actor)) is not None
    result_doc = guard(
        plain(
            {
                "deadline_basis": request.deadline_basis,
                "retrain_request": retrain.id if retrain else None,
                "suppression": suppression.to_dict(),
                "policy": pack_stamp(pack),
                "unlearning": unlearning.steps,
                "models": listing.versions,
                "unlinked": unlinked,
                "deleted": deleted,
                "shredded": shredded,
                "seconds": time.perf_counter() - started,
            }
        ),
        "result",
        subject,
        vocabulary=vocabulary_of(pack) | frozenset(suppression.denied),  # purposes: the controller's words
    )
    stored, personal = _erasure_result_parts(result_doc)
    update_request(session, request.id, status="completed", result=stored, personal=personal, actor=actor)
    return SealedErasure(unlinked, shredded, result_doc)


def _delete_previous_artifacts(unlearning: UnlearningReport) -> None:
    """Step 5e: delete the previous artifacts marked for deletion (the caller's, with ``delete_previous``)."""
    for u in unlearning.unlearned:
        if u.report["previous_artifact_deleted"]:
            Path(u.report["previous_artifact"]).unlink(missing_ok=True)


def _drop_unrecorded_artifacts(store: Any, unlearning: UnlearningReport) -> None:
    """After a failed erasure: delete the model files it wrote that no recorded version names (made from a
    version another erasure replaced meanwhile, such a file may hold whom that erasure erased)."""
    with store.session() as session:
        for f in unlearning.replacing:
            row = session.get(ModelVersion, f.version)
            if row is None or row.artifact_location != str(f.target):
                f.target.unlink(missing_ok=True)


def _retrain_at_once(
    store: Any,
    subject: str,
    request_id: int,
    retrain: RetrainRequest,
    sealed: SealedErasure,
    data: Dataset,
    *,
    pack: LoadedPack | PolicyPack,
    models_dir: str | Path | None,
    measure_carbon: bool,
    actor: str | None,
) -> tuple[RetrainRequest, dict[str, Any]]:
    """Step 6: the full retrain for this erasure's request; the stand-ins it replaces are provisional no more.

    If it fails, the erasure stands and the retrain request stays open; the error says so.
    """
    try:
        run = run_retrains(
            store,
            data,
            pack=pack,
            models_dir=models_dir,
            request_ids=[retrain.id],
            measure_carbon=measure_carbon,
            actor=actor,
        )
    except (ConfigError, DataError) as err:
        raise type(err)(
            RETRAIN_AFTER_ERASURE_FAILED.format(
                erasure=request_id, id=retrain.id, deadline=retrain.deadline, cause=scrubbed(err, subject)
            )
        ) from err
    mine = next((r for r in run["requests"] if r["id"] == retrain.id), None)
    retrain = replace(retrain, status=mine["status"] if mine is not None else retrain.status)
    for entry in run["retrained"]:
        check_not_in_artifact(Path(entry["artifact"]), subject)
    for step in sealed.result["unlearning"]:  # the retrain ran: the stand-ins it replaced are provisional no more
        if step.get("version") in run["provisional_replaced"]:
            step["standing"] = {**step["standing"], "standing": "replaced"}
    return retrain, run


def _not_done(
    pack_name: str,
    retrain: RetrainRequest | None,
    run: dict[str, Any] | None,
    unlearning: UnlearningReport,
    listing: ModelsListing,
) -> list[str]:
    """What recgov could not do, each with the way to do it."""
    unlearned = [r for r in unlearning.steps if r.get("status") == "unlearned"]
    return [
        "raw event logs outside recgov (the DATA recgov trains from) still hold the subject's events: recgov's "
        "training filter leaves out those from before the erasure (suppression record), but other systems may read "
        f"them: run 'recgov data purge DATA --pack {pack_name}' on each log (it deletes the events of "
        "erased subjects) or delete them at the source",
        *(
            [
                f"a full retrain without the subject is due by {retrain.deadline} (retrain request #{retrain.id}, "
                f"{retrain.deadline_basis}): {'; '.join(retrain.commands(pack_name))}"
            ]
            if retrain is not None and run is None
            else []
        ),
        *(c["message"] for c in (run or {}).get("cannot_retrain", []) if "trained_under" in c),
        *(
            CANNOT_RETRAIN.format(version=r["version"], why=r["standing"]["why_not"], pack=pack_name)
            for r in unlearned
            if not r["standing"]["retrainable"]
        ),
        *(
            f"model version {v['version_id']} {'includes' if v['membership'] == 'includes' else 'may include'} the subject and was not "
            "unlearned: pass its artifact with --model (model_path) or retrain without the subject and retire it"
            for v in listing.versions
            if v["action"].startswith("unlearn it")
        ),
        *(
            f"the previous artifact {r['previous_artifact']} still holds the subject: delete it once the "
            "unlearned model is deployed"
            for r in unlearned
            if not r["previous_artifact_deleted"]
        ),
        *(
            STILL_LISTED.format(version=v["version_id"])
            for v in listing.versions
            if v["membership"] == "includes" and v["version_id"] not in unlearning.sources | unlearning.settled
        ),
    ]


def _replaced_now(unlearning: UnlearningReport) -> dict[str, str]:
    """The recorded versions this erasure replaced exactly (retired, files deleted), each with what replaced it."""
    out = {m.previous_version: m.version for m in unlearning.replacing if m.report.get("replaced_in_serving")}
    for m in unlearning.replacing:
        out |= {o["version"]: m.version for o in m.report.get("older_versions_replaced", [])}
    return out


def _stages_not_kept(unlearning: UnlearningReport) -> list[str]:
    """The deployment stages a replaced version served in that the version replacing it could not take (it holds
    another), each with what to do (:data:`governance.deploy.STAGE_NOT_KEPT`)."""
    notes = []
    for m in unlearning.replacing:
        moved = m.report.get("replaced_in_serving") or {}
        notes += [moved["note"]] if moved.get("note") else []
        notes += [o["note"] for o in m.report.get("older_versions_replaced", []) if o.get("note")]
    return list(dict.fromkeys(notes))


def _erasure_result_parts(result_doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An erasure's result split into what is stored in the clear and the figures about the person.

    The counts of the person's rows and interactions could single them out
    against a raw log, so they are sealed (after the shredding, under a key kept
    nowhere: never readable again); the caller's answer keeps them.
    """
    personal_keys = ("n_interactions_removed", "n_users_removed")
    stored = {key: value for key, value in result_doc.items() if key not in ("unlinked", "deleted")}
    stored["unlearning"] = [{k: v for k, v in step.items() if k not in personal_keys} for step in result_doc["unlearning"]]
    removed = [{k: step.get(k) for k in ("version", *personal_keys) if k in step} for step in result_doc["unlearning"]]
    return stored, {"unlinked": result_doc.get("unlinked"), "deleted": result_doc.get("deleted"), "removed": removed}
