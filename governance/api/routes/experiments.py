"""``/v1/experiments``: plan (a YAML body, frozen with its hash), start, stop (govern: admin); read the plans
(read); status and analyses, each a look at the data on the trail (audit).

A plan is validated with every problem located (422 ``invalid-experiment``), its
variants checked against the store (recorded model versions, readable packs), its
sample size computed, and frozen before any subject is exposed. A name already
planned, a start of what is not planned or whose plan changed, a stop of what is
not running are 409s; nothing changes on a refusal.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Path, Request

from governance import packs as pack_store
from governance.api.call_record import record_call
from governance.api.deps import AuditKey, GovernKey, ReadKey, SessionDep, SettingsDep, StoreDep
from governance.api.errors import Problem, problems
from governance.api.keys import actor_of
from governance.api.limits import read_body
from governance.api.schemas.experiments import (
    NAME_PATTERN,
    AnalysisCreate,
    ExperimentList,
    ExperimentLookOut,
    ExperimentStart,
    ExperimentStatus,
    ExperimentSummary,
)
from governance.experiments import lifecycle
from governance.experiments.spec import parse_experiment
from governance.located import YAML_LIMITS, PolicyError
from recommender.errors import ConfigError

__all__ = ["router"]

router = APIRouter(prefix="/v1/experiments", tags=["experiments"], responses=problems(401, 500))

EXAMPLE_EXPERIMENT = """apiVersion: recgov/v1
kind: Experiment
metadata: {name: als-retrain, owner: growth team}
hypothesis: The retrained model raises the share of subjects who click.
variants:
  - {name: control, control: true}
  - {name: retrained, model_version: 3f2a9c}
allocation: {control: 0.5, retrained: 0.5}
primary_metric: click_through
guardrails:
  - {metric: non_profiling_share, margin: 0.02, direction: lower_is_better}
design: {baseline: 0.1, mde: 0.02, alpha: 0.05, power: 0.8, method: group_sequential, looks: 3}
"""
YAML_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/yaml": {"schema": {"type": "string"}, "example": EXAMPLE_EXPERIMENT}}}
}
Name = Annotated[str, Path(min_length=1, max_length=63, pattern=NAME_PATTERN, description="The experiment's metadata.name.")]
TOO_LARGE = "the plan is larger than {limit} bytes, the most an experiment may be"


def _refused(err: Exception) -> Problem:
    if isinstance(err, lifecycle.ExperimentNotFound):
        return Problem(404, str(err))
    if isinstance(err, lifecycle.ArmsAlike):
        return Problem(409, str(err), kind="experiment-arms-alike")
    if isinstance(err, lifecycle.ExperimentConflict):
        return Problem(409, str(err))
    if isinstance(err, PolicyError):
        errors = [{"location": "body", "field": i.path or "body", "message": f"line {i.line}, column {i.column}: {i.message}" if i.line else i.message} for i in err.issues]
        return Problem(422, f"the experiment is not valid: {len(err.issues)} problem(s)", kind="invalid-experiment", errors=errors)
    return Problem(422, str(err), kind="invalid-experiment")


def _pack_loader(settings: Any) -> Any:
    def load(ref: str) -> Any:
        try:
            return pack_store.load_ref(settings.packs_dir, ref)
        except pack_store.PackNotFound as err:
            raise ConfigError(str(err)) from None

    return load


@router.post("", status_code=201, response_model=ExperimentSummary, openapi_extra=YAML_BODY, responses=problems(400, 403, 409, 413, 415, 422),
             summary="Plan an experiment: validate, size and freeze it (admin)")  # fmt: skip
async def plan_experiment(request: Request, store: StoreDep, settings: SettingsDep, key: GovernKey) -> dict[str, Any]:
    """The plan's hash and sample size are frozen and anchored on the trail (``experiment.planned``) before any exposure."""
    raw = await read_body(request, YAML_LIMITS.max_bytes, TOO_LARGE.format(limit=YAML_LIMITS.max_bytes))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(422, "the body is not UTF-8 text; send the experiment as UTF-8 YAML", kind="invalid-experiment") from None

    def work() -> dict[str, Any]:
        loaded = parse_experiment(text, "<request body>")
        summary = lifecycle.plan(store, loaded, actor=actor_of(key), load_pack=_pack_loader(settings))
        with store.session() as session:
            record_call(session, key, "experiments.plan", objects={"experiment": summary["name"]}, payload={"plan_hash": summary["plan_hash"]})
        return summary

    try:
        return await anyio.to_thread.run_sync(work)
    except ConfigError as err:
        raise _refused(err) from None


@router.get("", response_model=ExperimentList, responses=problems(403), summary="Every experiment and its state")
def list_all(store: StoreDep, key: ReadKey) -> dict[str, Any]:
    return {"experiments": lifecycle.list_experiments(store)}


@router.get("/{name}", response_model=ExperimentSummary, responses=problems(403, 404, 422), summary="One experiment as frozen, with its looks")
def read_one(name: Name, store: StoreDep, key: ReadKey) -> dict[str, Any]:
    """Reading the plan and the stored looks is not a look at the data."""
    try:
        return lifecycle.get(store, name)
    except ConfigError as err:
        raise _refused(err) from None


@router.post("/{name}/start", response_model=ExperimentSummary, responses=problems(403, 404, 409, 422), summary="Start a planned experiment (admin)")
def start(name: Name, body: ExperimentStart, store: StoreDep, settings: SettingsDep, session: SessionDep, key: GovernKey) -> dict[str, Any]:
    """409 unless planned, unchanged since it was frozen (and ``plan_hash``, when given, is the frozen one) and no other experiment runs."""
    try:
        if body.plan_hash is not None:
            frozen = lifecycle.get(store, name)["plan_hash"]
            if frozen != body.plan_hash:
                raise lifecycle.ExperimentConflict(lifecycle.PLAN_CHANGED.format(name=name, what="sent", frozen=frozen[:12], now=body.plan_hash[:12]))
        summary = lifecycle.start(store, name, actor=actor_of(key), load_pack=_pack_loader(settings))
    except ConfigError as err:
        raise _refused(err) from None
    record_call(session, key, "experiments.start", objects={"experiment": name}, payload={"plan_hash": summary["plan_hash"]})
    return summary


@router.post("/{name}/stop", response_model=ExperimentSummary, responses=problems(403, 404, 409, 422), summary="Stop a running experiment (admin)")
def stop(name: Name, store: StoreDep, session: SessionDep, key: GovernKey) -> dict[str, Any]:
    try:
        summary = lifecycle.stop(store, name, actor=actor_of(key))
    except ConfigError as err:
        raise _refused(err) from None
    record_call(session, key, "experiments.stop", objects={"experiment": name})
    return summary


@router.get("/{name}/status", response_model=ExperimentStatus, responses=problems(403, 404, 422),
            summary="Subjects per variant and the SRM check (a look at the data, on the trail)")  # fmt: skip
def status(name: Name, store: StoreDep, settings: SettingsDep, key: AuditKey) -> dict[str, Any]:
    try:
        return lifecycle.status(store, name, actor=actor_of(key), packs_dir=settings.packs_dir)
    except ConfigError as err:
        raise _refused(err) from None


@router.post("/{name}/analyses", response_model=ExperimentLookOut, status_code=201, responses=problems(403, 404, 409, 422),
             summary="One look at the data: planned, or labelled exploratory (on the trail)")  # fmt: skip
def analyze(name: Name, body: AnalysisCreate, store: StoreDep, settings: SettingsDep, key: AuditKey) -> dict[str, Any]:
    """A look at another metric, on a segment, or beyond the planned looks is stored as exploratory and never counts for the gate.
    Refused (409): the final planned look before every arm reached its planned size, and a look at the primary metric
    on a segment while planned looks remain (a peek that could steer the planned look); a look at a running experiment
    whose arms serve the same lists now, its treatment's model having reached production, and a look at an experiment
    whose control was served the treatment's model for a time since the start, even if production moved back since
    (kind ``experiment-arms-alike``, recorded on the trail as ``experiment.look_refused``)."""
    try:
        return lifecycle.analyze(
            store, name, actor=actor_of(key), metric=body.metric, segment=body.segment, packs_dir=settings.packs_dir, load_pack=_pack_loader(settings)
        )
    except ConfigError as err:
        raise _refused(err) from None
