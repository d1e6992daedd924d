"""``/v1/monitor``: run a monitoring pass (operator), list passes and retrain tickets (viewer); and the monitoring gauges on ``/metrics``.

``POST /v1/monitor/runs`` runs one pass (:func:`governance.lifecycle.passes.run_monitor`)
under a stored or shipped pack, over the window ending ``at`` (default now); the
item table for provider and harm figures comes from ``data`` (a DATA spec read
as the audits read it, files only under ``$RECGOV_HOME/data``). A pass for a
window end already passed under the same pack answers the stored pass with
``created: false`` and 200 instead of 201.

:func:`install_monitor_metrics` adds a collector to the app's registry that
reads the latest pass at each scrape and exports :data:`governance.lifecycle.rules.EXPORTED`:
the figures per model version and stage, when the latest pass ran, when the
deployed models were trained, tickets by state, and overdue erasure retrains.
The alerting rules of ``recgov monitor rules`` read exactly these.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Path, Query, Response
from prometheus_client.core import GaugeMetricFamily
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from audits.models import Deployment, MonitorRun, RetrainTicket, TICKET_STATES
from audits.monitoring import latest_runs, list_tickets, run_doc, ticket_doc
from governance import packs as pack_store
from governance.api.audit_jobs import check_input_size, resolve_input
from governance.api.call_record import record_call
from governance.api.deps import OperateKey, ReadKey, SessionDep, SettingsDep, StoreDep
from governance.api.errors import Problem, problems
from governance.api.keys import actor_of
from governance.api.schemas import IDENTIFIER, INT4_MAX
from governance.lifecycle import rules
from governance.lifecycle.facts import trained_at
from governance.lifecycle.passes import run_monitor
from recommender.errors import DataError
from recommender.loaders import load_data

__all__ = ["MonitorRunCreate", "install_monitor_metrics", "router"]

router = APIRouter(prefix="/v1/monitor", tags=["monitoring"], responses=problems(401, 500))


class MonitorRunCreate(BaseModel):
    """A monitoring pass to run."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"pack": "eu-gdpr-dsa", "data": "synthetic:n_users=300,seed=4"}]})

    pack: str = Field(min_length=1, max_length=200, pattern=IDENTIFIER, description="A shipped pack name or a stored pack as NAME@VERSION: its lifecycle section sets the window and the triggers.")
    at: AwareDatetime | None = Field(None, description="The window's end (default now); never in the future.")
    data: str | None = Field(None, min_length=1, max_length=10_000, pattern=IDENTIFIER, description="DATA whose item table gives provider groups and harm flags (optional).")


@router.post(
    "/runs", status_code=201, summary="Run one monitoring pass",
    responses={
        200: {"description": "A pass ended at the same time under the same pack was stored before: that pass, and nothing new opened.", "content": {"application/json": {"schema": {"type": "object"}}}},
        **problems(403, 404, 422),
    },
)  # fmt: skip
def create_run(body: MonitorRunCreate, response: Response, store: StoreDep, session: SessionDep, settings: SettingsDep, key: OperateKey) -> dict[str, Any]:
    """201 with the stored pass, its firings (and the tickets they opened) and retirements; 200 with the pass stored
    before when one already ended at ``at`` under the same pack; 404 for an unknown pack; 422 for ``at`` in the future."""
    try:
        loaded = pack_store.load_ref(settings.packs_dir, body.pack)
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None
    items = None
    if body.data:
        try:
            path = resolve_input(body.data, settings.home / "data")
            check_input_size("data", body.data, path, settings)
            items = load_data(path).items
        except OSError as err:
            raise Problem(422, f"'data' cannot be read ({err.strerror or type(err).__name__})", kind="invalid-data") from None
    session.rollback()  # the pass writes in its own transaction (SQLite holds one writer)
    try:
        doc = run_monitor(store, loaded, items=items, now=body.at, actor=actor_of(key))
    except DataError as err:
        raise Problem(422, str(err), kind="invalid-data") from None
    if not doc["created"]:
        response.status_code = 200
    record_call(session, key, "monitor.run", objects={"monitor_run": doc["id"]}, payload={"created": doc["created"], "fired": len(doc["fired"])})
    return doc


@router.get("/runs", responses=problems(403, 422), summary="Monitoring passes, latest first")
def get_runs(session: SessionDep, key: ReadKey, limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Annotated[int, Query(ge=0, le=INT4_MAX)] = 0) -> dict[str, Any]:
    rows, total = latest_runs(session, limit=limit, offset=offset)
    return {"total": total, "runs": [run_doc(r) for r in rows]}


@router.get("/runs/{run_id}", responses=problems(403, 404, 422), summary="One monitoring pass")
def get_run(run_id: Annotated[int, Path(ge=1, le=INT4_MAX, description="The pass's id.")], session: SessionDep, key: ReadKey) -> dict[str, Any]:
    row = session.get(MonitorRun, run_id)
    if row is None:
        raise Problem(404, f"monitoring pass {run_id} is not recorded; list them with GET /v1/monitor/runs")
    return run_doc(row)


@router.get("/tickets", responses=problems(403, 422), summary="Retrain tickets, latest first")
def get_tickets(session: SessionDep, key: ReadKey, state: Annotated[Literal[TICKET_STATES] | None, Query(description="Only the tickets in this state.")] = None) -> dict[str, Any]:  # type: ignore[valid-type]
    if state is not None and state not in TICKET_STATES:
        raise Problem(422, f"state must be one of {', '.join(TICKET_STATES)}; got {state!r}", kind="invalid-query")
    return {"tickets": [ticket_doc(t) for t in list_tickets(session, state=state)]}


class _MonitorCollector:
    """Reads the latest pass and the deployments at each scrape (one short read transaction)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def describe(self) -> list[Any]:
        return []  # no read at registration: the store opens with the app

    def collect(self) -> Any:
        store = getattr(self.app.state, "store", None)
        figure = GaugeMetricFamily(rules.FIGURE, "A figure of the latest monitoring pass, per model version and stage.", labels=["figure", "model_version", "stage"])
        last = GaugeMetricFamily(rules.LAST_PASS, "When the latest monitoring pass's window ended (Unix time).")
        trained = GaugeMetricFamily(rules.TRAINED, "When each deployed model version's training ended (Unix time).", labels=["model_version", "stage"])
        tickets = GaugeMetricFamily(rules.TICKETS, "Retrain tickets by state.", labels=["state"])
        overdue = GaugeMetricFamily(rules.ERASURES_OVERDUE, "Open erasure retrains past their deadline.")
        if store is not None:
            self._fill(store, figure, last, trained, tickets, overdue)
        yield from (figure, last, trained, tickets, overdue)

    @staticmethod
    def _fill(store: Any, figure: Any, last: Any, trained: Any, tickets: Any, overdue: Any) -> None:
        from governance.privacy import pending_retrains

        with store.session() as session:
            run = session.scalars(select(MonitorRun).order_by(MonitorRun.window_end.desc(), MonitorRun.id.desc()).limit(1)).first()
            latest: dict[str, Deployment] = {}
            for row in session.scalars(select(Deployment).order_by(Deployment.id)):
                latest[row.model_version_id] = row
            serving = {mv: row.stage for mv, row in latest.items() if row.stage in ("production", "canary")}
            for mv, moment in trained_at(session, sorted(serving)).items():
                trained.add_metric([mv, serving[mv]], moment.timestamp())
            counts = dict(session.execute(select(RetrainTicket.state, func.count()).group_by(RetrainTicket.state)).all())
        for state in TICKET_STATES:
            tickets.add_metric([state], float(counts.get(state, 0)))
        if run is not None:
            last.add_metric([], run.window_end.timestamp())
            stages = run.metrics.get("stages", {})
            stage_of = {mv: stage for stage in ("production", "canary") for mv in stages.get(stage, [])}
            for mv, values in run.metrics.get("models", {}).items():
                for name, value in values.items():
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        figure.add_metric([name, mv, stage_of.get(mv, "other")], float(value))
        overdue.add_metric([], float(pending_retrains(store)["overdue"]))


def install_monitor_metrics(app: FastAPI) -> None:
    """Register the monitoring collector on the app's metrics registry (after :func:`governance.api.metrics.install_metrics`)."""
    app.state.metrics.registry.register(_MonitorCollector(app))


