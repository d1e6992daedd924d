"""``recgov monitor`` (passes, profiles, alerting rules) and ``recgov lifecycle`` (retrain tickets and their pipeline).

Thin wrappers over :mod:`governance.lifecycle` and :mod:`governance.monitoring`.
``monitor run`` is one pass, fit for cron: exit 0 when no trigger fired, 1 when
one did (the tickets it opened are in the output), 2 for bad input.
``lifecycle run TICKET DATA`` runs a ticket's pipeline until it ends or waits on
the canary's watch (exit 0), or until it is rolled back or fails (exit 1); run
it again to resume, whether it waited or crashed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from governance.cli._common import EXIT_FINDING, RequiredPackOpt, console, emit_json, fail, load_or_fail, opened_store
from governance.cli.core import DataArg, DatabaseOpt, ItemsOpt, JsonOpt, MapOpt, load_dataset, print_rows
from governance.cli.store import store_errors

__all__ = ["register"]

AtOpt = Annotated[
    str | None,
    typer.Option("--at", help="The time the pass or run happens (ISO 8601 with a UTC offset; default now): replays and tests.", show_default=False),
]
BAD_TIME = "--at must be an ISO 8601 time with a UTC offset (2026-12-05T12:00:00+00:00); got {value!r}"

monitor_app = typer.Typer(help="Monitoring from the decisions and feedback recgov records: passes, model profiles, alerting rules.", no_args_is_help=True)
lifecycle_app = typer.Typer(help="Retrain tickets opened by the pack's triggers, and the pipeline that runs them.", no_args_is_help=True)


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise fail(BAD_TIME.format(value=value)) from None
    if moment.tzinfo is None:
        raise fail(BAD_TIME.format(value=value))
    return moment.astimezone(UTC)


@monitor_app.command("run")
def run_command(
    pack: RequiredPackOpt,
    data: Annotated[str | None, typer.Option("--data", help="DATA whose item table gives provider groups and harm flags.", show_default=False)] = None,
    mapping: MapOpt = None,
    items: ItemsOpt = None,
    at: AtOpt = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Run one monitoring pass over the pack's window ending now (or --at); exit 1 if a trigger fired."""
    from governance.lifecycle.passes import run_monitor

    loaded = load_or_fail(pack, json_output=json_output)
    moment = _moment(at)
    with store_errors():
        table = load_dataset(data, mapping, items=items, json_output=json_output).items if data else None
        with opened_store(database_url) as store:
            doc = run_monitor(store, loaded, items=table, now=moment)
    if json_output:
        emit_json(doc)
    else:
        _print_run(doc)
    if doc["fired"]:
        raise typer.Exit(code=EXIT_FINDING)


def _print_run(doc: dict[str, Any]) -> None:
    state = "" if doc["created"] else " (stored before: nothing new opened)"
    console.print(f"monitoring pass #{doc['id']} over {doc['window_start']} .. {doc['window_end']}{state}", highlight=False)
    shown = ("lists", "click_rate", "conversion_rate", "coverage", "exposure_gini", "provider_gap", "input_drift_psi", "prediction_skew_ks")
    print_rows([{"model": mv, **{k: "" if v.get(k) is None else str(v.get(k)) for k in shown}} for mv, v in doc["metrics"]["models"].items()], title="figures")
    for note in doc["metrics"].get("notes", []):
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    for f in doc["fired"]:
        opened = "opened" if f["opened"] else f"joined ({f['reason']})"
        console.print(f"trigger {f['trigger']} fired on {f['model_version']}: ticket {f['ticket']} {opened}", highlight=False, soft_wrap=True)
    for r in doc["retired"]:
        console.print(f"retired {r['model_version']} ({r['stage']}): {'; '.join(r['reasons'])}", highlight=False, soft_wrap=True)


@monitor_app.command("runs")
def runs_command(limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 20, database_url: DatabaseOpt = None, json_output: JsonOpt = False) -> None:
    """List the stored monitoring passes, latest first."""
    from audits.monitoring import latest_runs, run_doc

    with store_errors(), opened_store(database_url) as store, store.session() as session:
        rows, total = latest_runs(session, limit=limit)
        docs = [run_doc(r) for r in rows]
    if json_output:
        emit_json({"total": total, "runs": docs})
        return
    print_rows([{"pass": str(d["id"]), "window end": d["window_end"], "pack": f"{d['pack']}@{d['pack_version']}", "fired": ", ".join(f["trigger"] for f in d["fired"])} for d in docs], title=f"{total} pass(es)")


@monitor_app.command("profile")
def profile_command(
    model_version: Annotated[str, typer.Argument(help="A recorded model version.")],
    data: DataArg,
    pack: RequiredPackOpt,
    mapping: MapOpt = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Record what monitoring compares MODEL_VERSION against, from the DATA it was trained on (the pipeline does this for its retrains).

    The offline hit rate refits the recipe only on the events the pack lets a model learn from (consent, objections, erasures); the profile counts what was left out.
    """
    from audits.models import ModelVersion
    from audits.monitoring import record_profile
    from governance.lifecycle.facts import lifecycle_of
    from governance.monitoring import profile_under_pack
    from governance.privacy.retrains import training_recipe
    from governance.artifacts import verify_artifact
    from recommender.als import ALSRecommender
    from recommender.errors import ConfigError
    from recommender.feedback import FeedbackConfig

    loaded = load_or_fail(pack, json_output=json_output)
    with store_errors():
        dataset = load_dataset(data, mapping, json_output=json_output)
        with opened_store(database_url) as store:
            with store.session() as session:
                row = session.get(ModelVersion, model_version)
                if row is None or not row.artifact_location:
                    raise ConfigError(f"model version {model_version!r} is not recorded with an artifact; train one with `recgov train`")
                recipe = training_recipe(session, model_version)
                location, artifact_hash = row.artifact_location, row.artifact_hash
            verify_artifact(model_version, location, artifact_hash, use="profiled")  # the baseline is the recorded model's
            model = ALSRecommender.load(location)
            feedback = FeedbackConfig(**recipe["feedback"]) if recipe else FeedbackConfig()
            profile = profile_under_pack(model, dataset, loaded, store, feedback=feedback, filter_seen=lifecycle_of(loaded).baseline_filter_seen)
            with store.session() as session:
                record_profile(session, model_version=model_version, dataset_hash=dataset.content_hash(), profile=profile)
    summary = {"model_version": model_version, "k": profile["k"], "offline_hit_rate": profile["offline_hit_rate"], "offline_users": profile["offline_users"], "n_events": profile["n_events"], "left_out": profile["left_out"]}
    if json_output:
        emit_json(summary)
    else:
        console.print(f"profiled {model_version}: offline hit rate at {profile['k']} {profile['offline_hit_rate']} over {profile['offline_users']} users", highlight=False)


@monitor_app.command("rules")
def rules_command(pack: RequiredPackOpt) -> None:
    """Print Prometheus alerting rules for the pack's triggers and guardrails (a rule file: recgov monitor rules -p P > rules.yml)."""
    from governance.lifecycle.rules import rules_yaml

    loaded = load_or_fail(pack, json_output=False)
    typer.echo(rules_yaml(loaded), nl=False)


@lifecycle_app.command("tickets")
def tickets_command(
    state: Annotated[str | None, typer.Option("--state", help="Only tickets in this state.", show_default=False)] = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """List the retrain tickets, latest first, with their state and evidence."""
    from audits.monitoring import list_tickets, ticket_doc

    with store_errors(), opened_store(database_url) as store, store.session() as session:
        docs = [ticket_doc(t) for t in list_tickets(session, state=state)]
    if json_output:
        emit_json({"tickets": docs})
        return
    if not docs:
        console.print("no retrain ticket", highlight=False)
        return
    print_rows([{"ticket": d["id"], "trigger": d["trigger"], "model": d["model_version"] or "", "state": d["state"], "new model": d["new_model_version"] or "", "opened": d["opened_at"]} for d in docs])


@lifecycle_app.command("run")
def lifecycle_run_command(
    ticket: Annotated[str, typer.Argument(help="A retrain ticket (see recgov lifecycle tickets).")],
    data: DataArg,
    pack: RequiredPackOpt,
    mapping: MapOpt = None,
    items: ItemsOpt = None,
    at: AtOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for the gates' files (default: ./recgov-gate).")] = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Run TICKET's retrain on DATA: train, gate, shadow, canary, watch, then promote or roll back; run again to resume."""
    from audits.settings import get_settings
    from governance.cli.deploy_policy import installation_pack_loader, packs_dir
    from governance.lifecycle.pipeline import PipelineContext, run_ticket

    loaded = load_or_fail(pack, json_output=json_output)
    moment = _moment(at)
    with store_errors():
        dataset = load_dataset(data, mapping, items=items, json_output=json_output)
        with opened_store(database_url) as store:
            ctx = PipelineContext(
                store=store, pack=loaded, dataset=dataset, load_pack=installation_pack_loader(packs_dir()), models_dir=get_settings().home / "models",
                out_dir=out or Path("recgov-gate"), items=dataset.items, now=moment,
            )  # fmt: skip
            doc = run_ticket(ctx, ticket)
    if json_output:
        emit_json(doc)
    else:
        for step in doc["steps"]:
            console.print(f"{step['at']}  {step['step']}: {step['from']} -> {step['to']}", highlight=False)
        tail = " (waiting for the canary's watch to end: run again later)" if doc.get("waiting") else ""
        console.print(f"ticket {doc['id']}: {doc['state']}{tail}", highlight=False)
    if doc["state"] in ("rolled_back", "failed"):
        raise typer.Exit(code=EXIT_FINDING)


def register(app: typer.Typer) -> None:
    """Add ``recgov monitor run|runs|profile|rules`` and ``recgov lifecycle tickets|run``."""
    app.add_typer(monitor_app, name="monitor")
    app.add_typer(lifecycle_app, name="lifecycle")
