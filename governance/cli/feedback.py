"""``recgov feedback import``: outcome events (impressions, clicks, conversions, dwell, ratings) from a file.

A thin command over :func:`governance.feedback.import_feedback`. Exit 0 when
every row was stored (or was already), 1 when some rows were refused (they are
listed with their line; the others are stored), and 2 with one line on stderr
and nothing written when the file is not a table, lacks a mapped column, or an
option is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from governance.cli._common import EXIT_FINDING, console, emit_json, err_console, opened_store, progress_enabled
from governance.cli.core import DatabaseOpt, JsonOpt
from governance.cli.store import store_errors

__all__ = ["register"]

SHOWN = 20
"""Refused and unattributed rows printed without --json (--json lists them all)."""

FileArg = Annotated[
    Path,
    typer.Argument(metavar="FILE", help="Outcome events: .csv, .jsonl or .parquet (or say which with --format); one event a row.", show_default=False),
]
MapOpt = Annotated[
    Optional[str],
    typer.Option(
        "--map",
        help=(
            "The file's column for each field, field=column,... or a YAML file of field: column pairs. Fields: subject, "
            "item, kind, time (required; default: the column of that name), value, decision_id, event_id (read where "
            "the file has a column of that name), delimiter."
        ),
        show_default=False,
    ),
]
FormatOpt = Annotated[Optional[str], typer.Option("--format", help="csv, jsonl or parquet (default: from FILE's suffix).", show_default=False)]
WindowOpt = Annotated[
    str,
    typer.Option(
        "--window",
        help="Attribution window for events without a decision_id: the latest decision served to the subject at most "
        "this long before the event, whose list held the item (90s, 30m, 24h, 7d).",
    ),
]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", min=1, max=1_000_000, help="Events per transaction, each batch anchored by one trail event.")]


def _print_report(doc: dict[str, Any]) -> None:
    located = {"parquet": "row"}.get(doc["format"], "line")
    anchors = ", ".join(f"#{b['trail_seq']}" for b in doc["batches"] if b["trail_seq"] is not None)
    joined = ", ".join(f"{n:,} {how}" for how, n in doc["by_attribution"].items()) or "none"
    console.print(
        f"{doc['file']} (sha256 {doc['sha256'][:16]}...): {doc['rows']:,} rows, {doc['added']:,} events added "
        f"({joined}), {doc['already_recorded']:,} already recorded, {doc['invalid']:,} rows refused",
        highlight=False,
        soft_wrap=True,
    )
    anchored = f"batches anchored on the trail at events {anchors}" if anchors else "nothing new, so no trail event"
    console.print(f"window {doc['window_seconds']:g}s; {anchored}", highlight=False, soft_wrap=True)
    for problem in doc["problems"][:SHOWN]:
        err_console.print(f"{located} {problem[located]}: {problem['field']}: {problem['reason']}", highlight=False, markup=False, soft_wrap=True)
    if len(doc["problems"]) > SHOWN:
        err_console.print(f"... and {len(doc['problems']) - SHOWN:,} more refused (--json lists them all)", highlight=False)
    for entry in doc["unattributed"][:SHOWN]:
        console.print(f"{located} {entry[located]}: stored unattributed: {entry['reason']}", highlight=False, markup=False, soft_wrap=True)
    if len(doc["unattributed"]) > SHOWN:
        console.print(f"... and {len(doc['unattributed']) - SHOWN:,} more unattributed (--json lists them all)", highlight=False)


def feedback_import(
    file: FileArg,
    mapping: MapOpt = None,
    fmt: FormatOpt = None,
    window: WindowOpt = "24h",
    batch_size: BatchSizeOpt = 50_000,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Import outcome events from FILE, each joined to the decision that served the item; running it twice adds nothing.

    An event with a decision_id is joined to that decision, which must have served the item to the subject (else the
    row is refused); one without is joined to the latest decision within --window that served the item, or stored
    unattributed with why (no decision before it, none within the window, the item not served). Refused rows are
    listed with their line (Parquet: row). Exit 0: all stored; 1: some rows refused, the rest stored; 2: the file is
    not a table, lacks a mapped column, or an option is wrong; nothing stored.
    """
    from governance.feedback import FeedbackMapping, import_feedback, parse_window

    with store_errors():
        span = parse_window(window)
        parsed = FeedbackMapping.from_option(mapping) if mapping else None
        with opened_store(database_url) as store:
            report = import_feedback(
                store, file, mapping=parsed, fmt=fmt, name=str(file), window=span,
                batch_size=batch_size, show_progress=progress_enabled(json_output),
            )  # fmt: skip
    doc = report.to_dict()
    if json_output:
        emit_json(doc)
    else:
        _print_report(doc)
    if report.invalid:
        raise typer.Exit(code=EXIT_FINDING)


def register(app: typer.Typer) -> None:
    """Add ``recgov feedback import``."""
    feedback_app = typer.Typer(help="Outcome events after served lists: import them, joined to their decisions.", no_args_is_help=True)
    feedback_app.command("import")(feedback_import)
    app.add_typer(feedback_app, name="feedback")
