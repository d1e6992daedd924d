"""The full retrain an erasure calls for: fast unlearning approximates a model without the subject.

A retrain without them replaces every model version trained on their data
within the pack's ``consent.requests.retrain_days``.

* :func:`pending_retrains` -- the open retrain requests and how late they are.
* :func:`run_retrains` -- retrain each model version an erasure left standing,
  with its recorded recipe (:func:`training_recipe`), on the filtered data.

The checks an erasure runs before it stores anything (:func:`check_retrain_data`)
and after a retrain (:func:`check_not_in_artifact`) live here too, beside the
retrain they guard.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from audits import list_requests, update_request
from audits._common import actor_name, in_values
from audits.models import ModelVersion
from audits.trail import append_event, lock_head
from governance.deploy import deployed_versions
from governance.policy import LoadedPack, PolicyPack
from governance.suppressed import NO_CONSENT_RULES
from governance.privacy.common import as_moment, iso, pack_policy, pack_stamp
from governance.training_filter import filter_training_events
from recommender.data import Dataset
from recommender.errors import ConfigError, DataError

__all__ = [
    "CANNOT_RETRAIN",
    "DueRetrains",
    "RetrainRun",
    "MODELS_DIR_IS_FILE",
    "RETRAIN_NO_EVENTS",
    "RETRAIN_SUBJECT_IN_ARTIFACT",
    "UNKNOWN_RETRAIN",
    "check_not_in_artifact",
    "CONSENT_LESS_PACK",
    "check_retrain_data",
    "pending_retrains",
    "retrain_packs",
    "retrained_under",
    "run_retrains",
    "settle_replaced_requests",
    "training_recipe",
]

RETRAIN_NO_EVENTS = (
    "the retrain data {name} leaves no event to train on once the subject's events and those the pack excludes are "
    "out ({excluded}); nothing was erased: give the data the live model was trained from"
)
CANNOT_RETRAIN = (
    "model {version} is provisional (an unlearned stand-in until a full retrain replaces it); recgov cannot retrain "
    "it because {why}: train without the subject (recgov train DATA --pack {pack}) and retire it (recgov deploy retire {version})"
)
RETRAIN_SUBJECT_IN_ARTIFACT = "the retrained artifact {path} still lists the erased subject among its users; retire it"
UNKNOWN_RETRAIN = "retrain request {id} is not open (open ones: {open}); list them with `recgov retrain due`"
MODELS_DIR_IS_FILE = "the models folder {path} is a file; give a folder for the retrained model artifacts"


_RECIPE_PARAMS = ("factors", "regularization", "alpha", "iterations")


def _default_models_dir(models_dir: str | Path | None) -> Path:
    if models_dir is not None:
        return Path(models_dir)
    from audits.settings import get_settings

    return get_settings().home / "models"


def check_retrain_data(
    dataset: Dataset,
    subject: str,
    pack: LoadedPack | PolicyPack,
    store: Any,
    models_dir: str | Path | None,
    versions: Iterable[str] | None = None,
) -> None:
    """Refuse, before anything is stored, a retrain that could not run: no event left to train on, or no folder.

    ``versions``: the model versions the retrain would replace. A run under ``pack`` trains only those
    :func:`retrained_under` it (as :func:`run_retrains` does: the others wait for a run under the pack whose
    consent rules trained them), so the data is checked under ``pack`` only when one of them is; None: always.
    """
    folder = _default_models_dir(models_dir)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(MODELS_DIR_IS_FILE.format(path=folder))
    if versions is not None:
        with store.session() as session:
            if not retrained_under(session, versions, pack):
                return
    events = dataset.events
    others = events.loc[np.asarray(events["user_id"].astype("string") != subject, dtype=bool)].reset_index(drop=True)
    probe = Dataset(events=others, users=None, items=None, name=dataset.name, source=dataset.source)
    kept, report = filter_training_events(probe, pack, store, record=False)
    if len(kept.events) == 0:
        excluded = ", ".join(f"{n:,} {r}" for r, n in report["events"]["excluded"].items() if n) or "no event at all"
        raise ConfigError(RETRAIN_NO_EVENTS.format(name=dataset.source or dataset.name, excluded=excluded))


def check_not_in_artifact(path: Path, subject: str) -> None:
    """Belt and braces: the retrained artifact must not list the erased subject."""
    with np.load(path, allow_pickle=False) as npz:
        if bool((npz["user_ids"].astype(str) == subject).any()):
            raise DataError(RETRAIN_SUBJECT_IN_ARTIFACT.format(path=path))


def training_recipe(session: Session, version_id: str) -> dict[str, Any] | None:
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
        recipe = {k: params[k] for k in _RECIPE_PARAMS}
        if params.get("fairness_reweighting") is not None:  # a reweighted model is retrained reweighted
            recipe["fairness_reweighting"] = params["fairness_reweighting"]
        return {
            "from": current,
            "params": recipe,
            "random_state": random_state if isinstance(random_state, int) else 0,
            "feedback": feedback,
            "trained_under": trained_under(params),
        }
    return None


def trained_under(params: Mapping[str, Any]) -> str | None:
    """Whose consent rules chose the events of a training run (its recorded parameters): the pack's name,
    ``""`` when no pack's consent rules did (a run without a pack, or under one that lists no consent
    purpose, such as the baseline), None when the run does not record it."""
    recorded = params.get("privacy_filter")
    name = recorded.get("pack") if isinstance(recorded, Mapping) else None
    if not isinstance(name, str):
        return None
    return "" if name == NO_CONSENT_RULES else name


CONSENT_LESS_PACK = "baseline"
"""The shipped pack a retrain of a model trained without consent rules is named to run under: it learns by the same
rules (any pack may retrain such a model, but a pack with consent rules may leave nothing to learn from)."""


def retrain_packs(session: Session, versions: Iterable[str]) -> dict[str, str | None]:
    """The pack each version's retrain runs under (``recgov retrain run DATA --pack NAME``): the one whose consent
    rules trained it (:data:`CONSENT_LESS_PACK` for none); None when the store cannot tell (any pack may retrain it)."""
    out: dict[str, str | None] = {}
    for version in versions:
        recipe = training_recipe(session, version)
        rules = recipe.get("trained_under") if recipe is not None else None
        out[version] = None if rules is None else (rules or CONSENT_LESS_PACK)
    return out


def retrained_under(session: Session, versions: Iterable[str], pack: LoadedPack | PolicyPack) -> list[str]:
    """The versions a retrain run under ``pack`` trains (:func:`run_retrains`): those whose recipe the store knows and
    that its consent rules trained, or no pack's, or that the store cannot tell the rules of. The others wait for a
    run under their own pack (or are not retrainable by recgov)."""
    rules = run_rules(pack)
    out = []
    for version in dict.fromkeys(versions):
        recipe = training_recipe(session, version)
        if recipe is not None and recipe.get("trained_under") in (None, "", rules):
            out.append(version)
    return out


def run_rules(pack: LoadedPack | PolicyPack) -> str:
    """Whose consent rules a retrain under ``pack`` learns by, as :func:`trained_under` names them."""
    from governance.training import has_consent_rules

    return pack_policy(pack).metadata.name if has_consent_rules(pack) else ""


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


def _retrain_view(
    row: Mapping[str, Any],
    moment: datetime,
    provisional: set[str] = frozenset(),
    retired: set[str] = frozenset(),
    packs: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """One open retrain request as ``recgov retrain due`` shows it; ``waiting_for``: the versions still to replace;
    ``retrain_under``: for each, the pack ``recgov retrain run`` retrains it under (None: the store cannot tell)."""
    packs = packs or {}
    details = row["result"] or {}
    deadline = row["deadline"]
    models = list(details.get("models", []))
    return {
        "id": row["id"],
        "status": row["status"],
        "requested_at": iso(row["requested_at"]),
        "deadline": iso(deadline),
        "overdue": deadline < moment,
        "days_left": round((deadline - moment).total_seconds() / 86400, 1),
        "erasure_request": details.get("erasure_request"),
        "models": models,
        "provisional": [v for v in models if v in provisional],
        "waiting_for": pending_versions(row, retired),
        "retrain_under": {v: packs.get(v) for v in pending_versions(row, retired)},
        "deadline_basis": details.get("deadline_basis"),
    }


def _cannot_retrain(version: str, provisional: bool, recorded: bool, pack: str) -> dict[str, Any]:
    """Why recgov cannot retrain ``version``, and what to do instead."""
    from governance.family_training import family_for_kind

    family = family_for_kind(version.rsplit("-", 1)[0])  # a family's version id is <family>-<content hash>
    if family is not None:
        message = (
            f"model {version}: recgov retrain run retrains ALS; retrain model family {family.name} without the erased "
            f"subjects (recgov train DATA --pack {pack} --family {family.name}, with the parameters recgov models show "
            f"{version} lists) and retire it (recgov deploy retire {version}); this request stays open until then"
        )
        return {"version": version, "provisional": provisional, "message": message}
    if provisional:
        why = "it is not recorded in this store (the model it was unlearned from is not), so its training recipe is unknown"
        if recorded:
            why = "the store does not record how its lineage was trained (no ALS parameters)"
        message = CANNOT_RETRAIN.format(version=version, why=why, pack=pack)
    else:
        message = (
            f"model {version}: recgov cannot retrain it because the store does not record how it was trained; "
            f"train without the erased subjects (recgov train DATA --pack {pack}) and retire it (recgov deploy retire {version})"
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
    moment = as_moment(now, "now")
    with store.session() as session:
        rows = list_requests(session, kind="retrain", open_only=True)
        provisional = _unlearned_versions(session, rows)
        retired = set(deployed_versions(session)["retired"])
        packs = retrain_packs(session, dict.fromkeys(v for r in rows for v in pending_versions(r, retired)))
    entries = [_retrain_view(r, moment, provisional, retired, packs) for r in rows]
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
    folder = _default_models_dir(models_dir)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(MODELS_DIR_IS_FILE.format(path=folder))
    moment = as_moment(now, "now")
    due = _due(store, request_ids)
    if not due.rows:
        return {
            **pack_stamp(pack),
            "requests": [],
            "retrained": [],
            "not_retrainable": [],
            "cannot_retrain": [],
            "provisional_replaced": [],
            "note": "no retrain is due",
        }

    groups, not_retrainable = _by_recipe(due)
    # A retrain never learns from anyone the replaced model's own consent rules left out. A model trained
    # under a pack's consent rules is retrained under that pack: a group trained under another pack's waits
    # for a run under it (the erasure's pack set the deadline; erased subjects are out under every pack).
    # A model trained without consent rules (no pack, the baseline) may be retrained under any pack: every
    # pack leaves out at least what those leave out (erasures and recorded refusals).
    rules = run_rules(pack)
    other = [g for g in groups if g["recipe"].get("trained_under") not in (None, "", rules)]
    groups = [g for g in groups if g not in other]
    name = pack_policy(pack).metadata.name
    retrained = []
    for group in groups:
        try:
            retrained.append(
                _retrained(store, dataset, group, due.provisional, folder, pack, moment, measure_carbon, actor, show_progress)
            )
        except ConfigError as err:
            if group["recipe"].get("trained_under") != "" or not rules:
                raise
            raise ConfigError(f"{err}; {CONSENT_LESS_RULES.format(versions=', '.join(group['replaces']), pack=name)}") from err
    cannot = [_cannot_retrain(v, v in due.provisional, v in due.recorded, name) for v in not_retrainable]
    cannot += [_other_rules(v, g["recipe"]["trained_under"], name) for g in other for v in g["replaces"]]
    done = _completed(store, due.rows, retrained, not_retrainable, cannot, pack, actor)
    return RetrainRun(pack_stamp(pack), done, retrained, not_retrainable, cannot).to_dict()


CONSENT_LESS_RULES = (
    "{versions} learned without a pack's consent rules (no pack, or one that lists no consent purpose) and pack "
    "{pack}'s leave nothing of this data: retrain by the model's own rules: recgov retrain run DATA --pack "
    f"{CONSENT_LESS_PACK}"
)

OTHER_RULES = (
    "model {version} was trained under the consent rules of pack {trained}; a retrain under pack {run} could learn "
    "from subjects those rules left out, so it is retrained under its own pack (the erasure's pack set the deadline; "
    "erased subjects are left out under every pack): recgov retrain run DATA --pack {trained}; this request stays "
    "open until then"
)


def _other_rules(version: str, trained: str, run: str) -> dict[str, Any]:
    """Why this run leaves ``version`` to a run under the pack whose consent rules trained it."""
    message = OTHER_RULES.format(version=version, trained=trained, run=run)
    return {"version": version, "provisional": False, "trained_under": trained, "message": message}


@dataclass(frozen=True)
class DueRetrains:
    """The open retrain requests to run, the model versions they list, and what the store knows of each."""

    rows: list[dict[str, Any]]
    versions: list[str]
    """The versions still to replace: listed by a request, not retired, not replaced by an earlier run."""
    recipes: dict[str, dict[str, Any] | None]
    provisional: set[str]
    """Versions that are unlearned stand-ins (their standing ends when a retrain replaces them)."""
    recorded: set[str]


@dataclass(frozen=True)
class RetrainRun:
    """What a run of retrains did: the requests completed, the new versions, and the versions it could not retrain."""

    stamp: dict[str, str]
    requests: list[dict[str, Any]]
    retrained: list[dict[str, Any]]
    not_retrainable: list[str]
    cannot_retrain: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """The answer of :func:`run_retrains`, with the pack's stamp first."""
        return {
            **self.stamp,
            "requests": self.requests,
            "retrained": self.retrained,
            "not_retrainable": self.not_retrainable,
            "cannot_retrain": self.cannot_retrain,
            "provisional_replaced": [v for e in self.retrained for v in e["replaces_provisional"]],
            "note": (
                "serve the new model version(s) once they pass the gate, retire the versions they replace and "
                "delete their files: each still lists the erased subjects' ids in the clear"
                if self.retrained
                else "no listed model version could be retrained by this run: cannot_retrain says, for each, why and what to do"
            ),
        }


SETTLED_BY_ERASURE = (
    "every model version this request listed is retired: an exact erasure (request {erasure}) replaced {replaced} by "
    "the model its recipe trains without the subjects erased so far, which holds none of them; no retrain is owed"
)


def settle_replaced_requests(
    session: Session, replaced: Mapping[str, str], erasure_request: int, actor: str | None, *, exclude: int | None = None
) -> list[int]:
    """In an erasure's transaction, once the versions it replaced exactly (``replaced``: old -> new) are retired:
    complete each open retrain request that listed one of them and now waits on no version (every version it
    lists is retired or replaced by an earlier run), with what replaced them, so that no request asks to retrain a
    retired version or stays open with nothing left to do. The ids completed."""
    if not replaced:
        return []
    retired = set(deployed_versions(session)["retired"])
    done = []
    for row in list_requests(session, kind="retrain", open_only=True):
        if row["id"] == exclude:
            continue
        listed = (row["result"] or {}).get("models", [])
        mine = {v: replaced[v] for v in listed if v in replaced}
        if not mine or pending_versions(row, retired):
            continue
        result = {
            **(row["result"] or {}),
            "replaced_by_erasure": {"erasure_request": erasure_request, "versions": mine},
            "note": SETTLED_BY_ERASURE.format(erasure=erasure_request, replaced=", ".join(sorted(mine))),
        }
        if row["status"] == "received":
            update_request(session, row["id"], status="in_progress", actor=actor)
        update_request(session, row["id"], status="completed", result=result, actor=actor)
        done.append(row["id"])
    return done


def pending_versions(row: Mapping[str, Any], retired: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """The model versions a retrain request still waits on: those it lists that are neither retired nor replaced by
    an earlier run of it (``retrained`` in its result). A request is completed only when none is left."""
    result = row.get("result") or {}
    replaced = {v for entry in result.get("retrained", []) for v in entry.get("replaces", [])}
    return [v for v in result.get("models", []) if v not in retired and v not in replaced]


def _due(store: Any, request_ids: Sequence[int] | None) -> DueRetrains:
    """The open retrain requests (``request_ids``: only those, each must be open) and their versions' recipes."""
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
        retired = set(deployed_versions(session)["retired"])
        versions = list(dict.fromkeys(v for r in rows for v in pending_versions(r, retired)))
        recipes = {v: training_recipe(session, v) for v in versions}
        provisional = _unlearned_versions(session, rows)
        recorded = set(session.scalars(select(ModelVersion.version_id).where(in_values(session, ModelVersion.version_id, versions)))) if versions else set()
    return DueRetrains(rows, versions, recipes, provisional, recorded)


def _by_recipe(due: DueRetrains) -> tuple[list[dict[str, Any]], list[str]]:
    """The versions grouped by recipe (one model trained per recipe), and those whose recipe the store cannot tell."""
    groups: dict[str, dict[str, Any]] = {}
    for version in due.versions:
        recipe = due.recipes[version]
        if recipe is None:
            continue
        key = json.dumps({k: recipe.get(k) for k in ("params", "random_state", "feedback", "trained_under")}, sort_keys=True)
        groups.setdefault(key, {"recipe": recipe, "replaces": []})["replaces"].append(version)
    return list(groups.values()), [v for v in due.versions if due.recipes[v] is None]


def _retrained(
    store: Any,
    dataset: Dataset,
    group: dict[str, Any],
    provisional: set[str],
    folder: Path,
    pack: LoadedPack | PolicyPack,
    moment: datetime,
    measure_carbon: bool,
    actor: str | None,
    show_progress: bool,
) -> dict[str, Any]:
    """Train one model with a group's recipe through the pack's training filter, and record it as any training run."""
    from governance.training import train_and_record
    from recommender.feedback import FeedbackConfig

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
    return {
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


def _completed(
    store: Any,
    rows: list[dict[str, Any]],
    retrained: list[dict[str, Any]],
    not_retrainable: list[str],
    cannot: list[dict[str, Any]],
    pack: LoadedPack | PolicyPack,
    actor: str | None,
) -> list[dict[str, Any]]:
    """In ONE transaction: a ``model.retrained`` trail event per new version, and every request whose listed versions
    are all replaced (now or by an earlier run) or retired completed; a request still listing a version recgov
    could not retrain stays open (``in_progress``, with what was done and ``cannot_retrain``), so its deadline
    and the retrain-deadline rules keep counting until that version is retrained by hand and retired."""
    ids = [r["id"] for r in rows]
    policy = pack_policy(pack)
    with store.session() as session:
        lock_head(session)  # the requests as they stand now: another run may have moved them while this one trained
        current = {r["id"]: r for r in list_requests(session, kind="retrain", ids=ids)}  # those only, not every retrain ever
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
        retired = set(deployed_versions(session)["retired"])
        for read in rows:
            row = current[read["id"]]
            if row["status"] not in ("received", "in_progress"):  # another run closed it meanwhile: nothing left to do
                done.append({"id": row["id"], "status": row["status"], "deadline": iso(row["deadline"]), "closed_meanwhile": True})
                continue
            before = row["result"] or {}
            mine = set(pending_versions(row, retired))
            result = {
                **before,
                "retrained": [
                    *before.get("retrained", []),
                    *(
                        {"version": e["version"], "replaces": [v for v in e["replaces"] if v in mine]}
                        for e in retrained
                        if mine & set(e["replaces"])
                    ),
                ],
                "not_retrainable": [v for v in not_retrainable if v in mine],
                "cannot_retrain": [c for c in cannot if c["version"] in mine],
                "policy_of_run": pack_stamp(pack),
            }
            waiting = {c["version"] for c in cannot}  # recgov cannot retrain it, or not under this run's pack
            left = sorted(v for v in mine if v in waiting)
            if row["status"] == "received" or left:
                update_request(session, row["id"], status="in_progress", result=result if left else None, actor=actor)
            if left:  # the model trained on the subject is still recorded: the request stays open, its deadline counting
                done.append({"id": row["id"], "status": "in_progress", "deadline": iso(row["deadline"]), "waiting_for": left})
                continue
            update_request(session, row["id"], status="completed", result=result, actor=actor)
            done.append(
                {
                    "id": row["id"],
                    "status": "completed",
                    "deadline": iso(row["deadline"]),
                    "met_deadline": row["deadline"] >= datetime.now(UTC),
                }
            )
    return done
