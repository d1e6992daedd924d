"""The full retrains an erasure calls for: ``recgov retrain due`` lists them, ``recgov retrain run`` runs them.

Thin wrappers over :mod:`governance.privacy.retrains`. ``retrain due`` exits 1
when a retrain is overdue; ``retrain run`` exits 1 while a request it ran still
waits (a model version it could not retrain: trained under another pack's
consent rules, or of a kind recgov cannot retrain), 0 when every request it ran
is completed (or none was due); bad input exits 2 with one line on stderr.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from governance.cli._common import EXIT_FINDING, RequiredPackOpt, console, emit_json, opened_store, progress_enabled
from governance.cli.core import DataArg, DatabaseOpt, JsonOpt, MapOpt, load_dataset, print_rows
from governance.cli.policy import load_or_fail
from governance.cli.store import store_errors

__all__ = ["register"]

def retrain_due(
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """List the open retrains erasures called for, with their deadlines (exit 1 if one is overdue)."""
    from governance.privacy import pending_retrains

    with store_errors(), opened_store(database_url) as store:
        doc = pending_retrains(store)
    if json_output:
        emit_json(doc)
    elif not doc["pending"]:
        console.print("no retrain is due", highlight=False)
    else:
        print_rows(
            [
                {
                    "request": str(e["id"]),
                    "erasure": str(e["erasure_request"]),
                    "deadline": e["deadline"],
                    "days left": f"{e['days_left']:.1f}",
                    "overdue": "OVERDUE" if e["overdue"] else "",
                    "model versions": ", ".join(v + (" (provisional)" if v in e["provisional"] else "") for v in e["models"]),
                    "retrain with": ", ".join(
                        dict.fromkeys(f"--pack {p}" if p else "any pack" for p in (e.get("retrain_under") or {}).values())
                    ),
                }
                for e in doc["pending"]
            ],
            title=(
                f"{len(doc['pending'])} retrain(s) due, {doc['overdue']} overdue: recgov retrain run DATA --pack PACK"
            ),
        )
    if doc["overdue"]:
        raise typer.Exit(code=1)


def retrain_run(
    data: DataArg,
    pack: RequiredPackOpt,
    mapping: MapOpt = None,
    request: Annotated[
        list[int] | None,
        typer.Option(
            "--request", help="Run only this retrain request (repeat); default: every open one.", show_default=False
        ),
    ] = None,
    carbon: Annotated[
        bool, typer.Option("--carbon/--no-carbon", help="Measure energy and emissions with codecarbon.")
    ] = True,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Run the open retrains: train from DATA, without erased subjects, with the recipe of each model to replace.

    Exit codes: 0 every request run is completed (or none was due); 1 a request still waits (a model version trained
    under another pack's consent rules waits for a run under that pack, one recgov cannot retrain is retrained by
    hand and retired): the output says which and how; 2 bad input.
    """
    from governance.privacy import run_retrains

    loaded = load_or_fail(pack, json_output=json_output)
    with store_errors():
        dataset = load_dataset(data, mapping, json_output=json_output)
        with opened_store(database_url) as store:
            doc = run_retrains(
                store,
                dataset,
                pack=loaded,
                request_ids=request or None,
                measure_carbon=carbon,
                show_progress=progress_enabled(json_output),
            )
    if json_output:
        emit_json(doc)
    else:
        print_retrain_run(doc)
    if still_waiting(doc):
        raise typer.Exit(code=EXIT_FINDING)


def still_waiting(doc: dict[str, Any]) -> list[int]:
    """The requests a run of retrains left open (each waits for a model version it could not retrain)."""
    return [r["id"] for r in doc["requests"] if r.get("waiting_for")]


def print_retrain_run(doc: dict[str, Any]) -> None:
    """A run of retrains for a person at a terminal (also the last part of ``subject erase --retrain``)."""
    if not doc["requests"]:
        console.print(doc["note"], highlight=False)
        return
    for entry in doc["retrained"]:
        events = entry.get("events") or {}
        console.print(
            f"retrained model {entry['version']} (recipe of {entry['recipe_of']}, {events.get('kept', 0):,} of "
            f"{events.get('total', 0):,} events) replaces {', '.join(entry['replaces'])}"
            + (
                f" (provisional unlearned version(s) {', '.join(entry['replaces_provisional'])}: their standing ends)"
                if entry.get("replaces_provisional")
                else ""
            ),
            highlight=False,
            soft_wrap=True,
        )
    for entry in doc.get("cannot_retrain", []):
        console.print(entry["message"], highlight=False, soft_wrap=True)
    completed = ", ".join(f"#{r['id']}" for r in doc["requests"] if r["status"] == "completed" and not r.get("closed_meanwhile"))
    meanwhile = ", ".join(f"#{r['id']} ({r['status']})" for r in doc["requests"] if r.get("closed_meanwhile"))
    waiting = ", ".join(f"#{r['id']} (waits for {', '.join(r['waiting_for'])})" for r in doc["requests"] if r.get("waiting_for"))
    if completed:
        console.print(f"completed retrain request(s) {completed}", highlight=False, soft_wrap=True)
    if meanwhile:
        console.print(f"closed meanwhile by another run: retrain request(s) {meanwhile}", highlight=False, soft_wrap=True)
    if waiting:
        console.print(f"still open: retrain request(s) {waiting}; recgov retrain due lists them", highlight=False, soft_wrap=True)
    console.print(doc["note"], highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``recgov retrain due|run``."""
    retrain_app = typer.Typer(
        help="Full retrains after erasure: what is due, and running them (GDPR Art. 17; CCPA §1798.105).",
        no_args_is_help=True,
    )
    retrain_app.command("due")(retrain_due)
    retrain_app.command("run")(retrain_run)
    app.add_typer(retrain_app, name="retrain")
