"""``consent import`` and ``consent synth-export``: consent histories in bulk, from a file and for a data set.

Thin commands over :func:`governance.consent.imports.import_consent` and
:func:`governance.consent.synthetic_export.synthetic_consent_export`.
``consent import`` exits 0 when every row was imported (or was already), 1 when
some rows were refused (they are listed; the others are imported), and 2 with
one line on stderr and nothing written when the file is not a table, lacks a
mapped column, or an option is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from governance.cli._common import EXIT_FINDING, console, emit_json, err_console, fail, load_or_fail, opened_store, progress_enabled
from governance.cli.core import DatabaseOpt, JsonOpt, MapOpt, SeedOpt, load_dataset
from governance.cli.store import store_errors

__all__ = ["register_import_commands"]

SHOWN_PROBLEMS = 20
"""Refused rows printed without --json (--json lists them all)."""
OUT_FOLDER_MISSING = "--out {out}: the folder {folder} does not exist; create it first"

FileArg = Annotated[
    Path,
    typer.Argument(
        metavar="FILE",
        help="The consent export: .csv, .jsonl or .parquet (or say which with --format); one record a row.",
        show_default=False,
    ),
]
ImportMapOpt = Annotated[
    Optional[str],
    typer.Option(
        "--map",
        help=(
            "The file's column for each field, field=column,... or a YAML file of field: column pairs. Fields: subject, "
            "purpose, status, time (required; default: the column of that name), basis, source, jurisdiction, "
            "banner_version, origin, tc_string, vendor_id (read where the file has a column of that name), delimiter."
        ),
        show_default=False,
    ),
]
FormatOpt = Annotated[
    Optional[str], typer.Option("--format", help="csv, jsonl or parquet (default: from FILE's suffix).", show_default=False)
]
ImportPackOpt = Annotated[
    Optional[str],
    typer.Option(
        "--pack",
        "-p",
        help="The pack in force (file, shipped name, or stored NAME@VERSION): each purpose must be one of its own, the basis defaults to the "
        "purpose's, and TC strings are judged under its consent.tcf. Without it every row needs a basis column.",
        show_default=False,
    ),
]
BatchSizeOpt = Annotated[
    int, typer.Option("--batch-size", min=1, max=1_000_000, help="Records per transaction, each batch anchored by one trail event.")
]
ShareOpt = float


def _print_report(doc: dict[str, Any]) -> None:
    located = "row" if doc["format"] == "parquet" else "line"
    anchors = ", ".join(f"#{b['trail_seq']}" for b in doc["batches"] if b["trail_seq"] is not None)
    console.print(
        f"{doc['file']} (sha256 {doc['sha256'][:16]}...): {doc['rows']:,} rows, {doc['added']:,} records added, "
        f"{doc['already_recorded']:,} already recorded, {doc['invalid']:,} rows refused",
        highlight=False,
        soft_wrap=True,
    )
    anchored = f"batches anchored on the trail at events {anchors}" if anchors else "nothing new, so no trail event"
    console.print(f"pack {doc['pack'] or 'none'}; {anchored}", highlight=False, soft_wrap=True)
    for problem in doc["problems"][:SHOWN_PROBLEMS]:
        err_console.print(f"{located} {problem[located]}: {problem['field']}: {problem['reason']}", highlight=False, markup=False, soft_wrap=True)
    if len(doc["problems"]) > SHOWN_PROBLEMS:
        err_console.print(f"... and {len(doc['problems']) - SHOWN_PROBLEMS:,} more (--json lists them all)", highlight=False)


def consent_import(
    file: FileArg,
    mapping: ImportMapOpt = None,
    fmt: FormatOpt = None,
    pack: ImportPackOpt = None,
    batch_size: BatchSizeOpt = 200_000,  # governance.consent.imports.DEFAULT_BATCH_SIZE
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Import consent records in bulk from FILE; rows already imported are skipped, so running it twice adds nothing.

    Each row is judged as one `recgov consent set` would be (purpose, status, basis, source, a time not in the
    future, the evidence its source claims, a TC string under the pack's consent.tcf); refused rows are listed with
    their line (Parquet: row) and why. Exit 0: all imported; 1: some rows refused, the rest imported; 2: the file
    is not a table or lacks a mapped column, nothing imported.
    """
    from governance.consent.import_table import ConsentImportMapping
    from governance.consent.imports import import_consent

    loaded = load_or_fail(pack, json_output=json_output) if pack is not None else None
    with store_errors():
        parsed = ConsentImportMapping.from_option(mapping) if mapping else None
        with opened_store(database_url) as store:
            report = import_consent(
                store, file, mapping=parsed, fmt=fmt, name=str(file), pack=loaded,
                batch_size=batch_size, show_progress=progress_enabled(json_output),
            )  # fmt: skip
    doc = report.to_dict()
    if json_output:
        emit_json(doc)
    else:
        _print_report(doc)
    if report.invalid:
        raise typer.Exit(code=EXIT_FINDING)


def consent_synth_export(
    out: Annotated[Path, typer.Option("--out", help="Where to write the export: .csv, .jsonl or .parquet.", show_default=False)],
    data: Annotated[
        str, typer.Argument(metavar="DATA", help="A MovieLens-100K directory, a .csv/.parquet event log, or synthetic[:name=value,...].")
    ] = "synthetic",
    mapping: MapOpt = None,
    refusals: Annotated[ShareOpt, typer.Option("--refusals", min=0, max=1, help="Share of users who refuse the opt-in purposes.")] = 0.1,
    withdrawals: Annotated[ShareOpt, typer.Option("--withdrawals", min=0, max=1, help="Share of the users who granted who withdraw later.")] = 0.05,
    gpc: Annotated[ShareOpt, typer.Option("--gpc", min=0, max=1, help="Share of users who send Global Privacy Control: an opt-out of each opt-out purpose.")] = 0.02,
    pack: Annotated[
        Optional[str],
        typer.Option("--pack", "-p", help="Take the opt-in and opt-out purposes from this pack (default: personalization, analytics).", show_default=False),
    ] = None,
    seed: SeedOpt = 0,
    json_output: JsonOpt = False,
) -> None:
    """Write a consent export for the users of DATA (default: the synthetic data set), for `recgov consent import`."""
    from governance.consent.synthetic_export import synthetic_consent_export, write_consent_export

    loaded = load_or_fail(pack, json_output=json_output) if pack is not None else None
    purposes: dict[str, Any] = {}
    if loaded is not None:
        listed = loaded.pack.consent.purposes
        purposes = {
            "opt_in_purposes": sorted(p for p, c in listed.items() if c.model == "opt_in"),
            "opt_out_purposes": sorted(p for p, c in listed.items() if c.model == "opt_out"),
        }
    with store_errors():
        if not out.parent.is_dir():
            raise fail(OUT_FOLDER_MISSING.format(out=out, folder=out.parent))
        dataset = load_dataset(data, mapping, json_output=json_output)
        export = synthetic_consent_export(
            dataset, refusals=refusals, withdrawals=withdrawals, gpc=gpc, random_state=seed, **purposes
        )
        write_consent_export(export, out)
    counts = {k: int(v) for k, v in export["status"].value_counts().sort_index().items()}
    doc = {"out": str(out), "records": len(export), "subjects": int(export["subject"].nunique()), "by_status": counts}
    if json_output:
        emit_json(doc)
        return
    summary = ", ".join(f"{n:,} {status}" for status, n in counts.items())
    console.print(f"wrote {out}: {doc['records']:,} consent records of {doc['subjects']:,} users ({summary})", highlight=False)


def register_import_commands(consent_app: typer.Typer) -> None:
    """Add ``import`` and ``synth-export`` to the ``consent`` command group."""
    consent_app.command("import")(consent_import)
    consent_app.command("synth-export")(consent_synth_export)
