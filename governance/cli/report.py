"""``recgov report MODEL_VERSION``: the regulator's lineage report (HTML, optionally PDF) and OpenLineage events.

With ``--dsa-audit-export OUT.json`` it also writes what the provider hands its
independent auditor (DSA Art. 37), in the layout of the audit report template
(:mod:`governance.report.dsa_audit`), and its Markdown rendering beside it
(``OUT.md``).

Exit codes: 0 written, 2 bad usage or input (unknown model version, unreadable
pack, unreachable database, unwritable file, no local Chromium for ``--pdf`` or
a failed print).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from governance.cli._common import console, emit_json, fail, user_errors
from governance.cli.store import DatabaseUrl, JsonOutput, store_errors

__all__ = ["register", "report_command"]


def _pack_in_force(pack: str | None, audits: list[dict[str, Any]], json_output: bool) -> Any:
    """The pack given, else the pack of the latest audit when it is a shipped, local or stored pack with the audited
    hash (:func:`governance.report.gather.pack_in_force`)."""
    from governance.cli._common import load_or_fail
    from governance.report.gather import pack_in_force

    if pack is not None:
        return load_or_fail(pack, json_output=json_output)
    return pack_in_force(audits)


def report_command(
    model_version: Annotated[str, typer.Argument(help="The model version id.", metavar="MODEL_VERSION")],
    pack: Annotated[
        str | None,
        typer.Option(
            "--pack",
            "-p",
            help="The pack in force (file, shipped name, or stored NAME@VERSION). Default: the latest audit's pack, if found with the same hash.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="The HTML file to write. Default: ./report-MODEL_VERSION.html.", show_default=False),
    ] = None,
    openlineage: Annotated[
        Path | None,
        typer.Option("--openlineage", help="Also write OpenLineage run events (JSON lines) here.", show_default=False),
    ] = None,
    pdf: Annotated[
        Path | None,
        typer.Option(
            "--pdf",
            help="Also print the HTML report to this PDF file, offline, with the local Chromium "
            "(RECGOV_CHROMIUM, else chromium, chromium-browser or google-chrome on PATH).",
            show_default=False,
        ),
    ] = None,
    dsa_audit: Annotated[
        Path | None,
        typer.Option(
            "--dsa-audit-export",
            help="Also write the DSA Art. 37 audit export (JSON, schemas/dsa-audit-export.schema.json) here, and its Markdown beside it (.md).",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    json_output: JsonOutput = False,
) -> None:
    """Write the regulator's lineage report of MODEL_VERSION: one self-contained HTML page, and its PDF with --pdf."""
    from governance.report.pdf import find_browser

    if pdf is not None and pdf.suffix.lower() != ".pdf":
        raise fail(f"--pdf must name a .pdf file, got {str(pdf)!r}")
    if dsa_audit is not None and dsa_audit.suffix.lower() != ".json":
        raise fail(f"--dsa-audit-export must name a .json file, got {str(dsa_audit)!r}")
    target = out or Path(f"report-{model_version}.html")
    if target.suffix.lower() not in (".html", ".htm"):
        raise fail(f"--out must name an .html file, got {str(target)!r}")
    browser = None
    with user_errors():  # no browser, or a file that cannot be written: say so before any file is written
        if pdf is not None:
            browser = find_browser()
        _check_outputs(target, openlineage, pdf, dsa_audit)
    with store_errors():
        document = _collect(model_version, pack, database_url, json_output)
        target, events = _write(document, model_version, out=target, openlineage=openlineage, pdf=pdf, browser=browser)
        if dsa_audit is not None:
            _write_dsa_audit(document, dsa_audit)
    summary = {
        "model_version": model_version,
        "html": str(target),
        "pdf": str(pdf) if pdf is not None else None,
        "openlineage": str(openlineage) if openlineage is not None else None,
        "openlineage_events": len(events) if openlineage is not None else 0,
        "pack": None if document["policy"] is None else {k: document["policy"][k] for k in ("pack", "version", "hash")},
        "audits": len(document["audit_runs"]),
        "missing": document["accountability"]["missing"],
        "checkpoint": document["trail"]["checkpoint"],
        "checkpoint_verification": document["trail"]["checkpoint_verification"],
        "records": document["trail"]["records"],
        "dsa_audit_export": None if dsa_audit is None else {"json": str(dsa_audit), "markdown": str(dsa_audit.with_suffix(".md"))},
    }
    if json_output:
        emit_json(summary)
        return
    _say_written(model_version, document, target, pdf=pdf, openlineage=openlineage, events=len(events))
    if dsa_audit is not None:
        console.print(f"wrote the DSA audit export to {dsa_audit} and {dsa_audit.with_suffix('.md')}", highlight=False, soft_wrap=True)


def _check_outputs(html: Path, openlineage: Path | None, pdf: Path | None, dsa_audit: Path | None) -> None:
    """Raise the one-line error of the first output that could not be written, before any is: no half-written report."""
    from audits.private_files import check_writable

    for path in (html, openlineage, pdf, dsa_audit, None if dsa_audit is None else dsa_audit.with_suffix(".md")):
        if path is None:
            continue
        if path is pdf and not path.parent.exists() and next(p for p in path.parents if p.exists()).is_dir():
            continue  # the PDF's folder is made when it is written (under a folder that exists)
        check_writable(path)


def _collect(model_version: str, pack: str | None, database_url: str | None, json_output: bool) -> dict[str, Any]:
    """The report's document, read from the store (an unknown model version is a user error, exit 2)."""
    from audits import open_store
    from audits.keys import installation_public_keys
    from audits.lineage import lineage_of
    from governance.report import collect

    store = open_store(database_url)
    try:
        with store.session() as session:
            audits = lineage_of(session, model_version)["audit_runs"]  # unknown model: exit 2 here
            loaded = _pack_in_force(pack, audits, json_output)
            # the keys a checkpoint must verify with to be shown as proof: the installation's, as `recgov trail verify`
            return collect(session, model_version, loaded, trusted_keys=installation_public_keys(store.settings))
    finally:
        store.close()


def _write(
    document: dict[str, Any], model_version: str, *, out: Path | None, openlineage: Path | None, pdf: Path | None, browser: Any
) -> tuple[Path, list[dict[str, Any]]]:
    """Write the HTML report, and the OpenLineage events and the PDF when asked; the HTML file and the events."""
    from governance.report import render_html
    from governance.report.openlineage import openlineage_events, write_jsonl
    from governance.report.pdf import PdfError, html_to_pdf

    target = out or Path(f"report-{model_version}.html")
    target.write_text(render_html(document), encoding="utf-8")
    events = openlineage_events(document)
    if openlineage is not None:
        write_jsonl(events, openlineage)
    if pdf is not None:
        try:
            html_to_pdf(target, pdf, browser=browser)
        except PdfError as err:
            raise fail(f"{err} (the HTML report was written to {target})") from None
    return target, events


def _write_dsa_audit(document: dict[str, Any], target: Path) -> None:
    """Write the DSA Art. 37 audit export as JSON, and its Markdown beside it (an unwritable file exits 2)."""
    from governance.report.dsa_audit import dsa_audit_export, render_markdown

    export = dsa_audit_export(document)
    try:
        target.write_text(export.model_dump_json(by_alias=True, indent=2) + "\n", encoding="utf-8")
        target.with_suffix(".md").write_text(render_markdown(export), encoding="utf-8")
    except OSError as err:
        raise fail(f"cannot write the DSA audit export to {target}: {err.strerror or err}") from None


def _say_written(
    model_version: str, document: dict[str, Any], target: Path, *, pdf: Path | None, openlineage: Path | None, events: int
) -> None:
    """Tell a person what was written, and that the disclosure is left out when no pack in force was found."""
    console.print(f"wrote the lineage report of {model_version} to {target}", highlight=False, soft_wrap=True)
    if document["policy"] is None:
        console.print(
            "no pack in force was found: the DSA Art. 27 disclosure is left out (use --pack)", highlight=False
        )
    elif missing := document["accountability"]["missing"]:
        console.print(f"the pack in force does not declare {', '.join(missing)}: the report says so", highlight=False)
    latest = document["trail"]["checkpoint_verification"]["latest"]
    if latest is not None and not latest["verified"]:
        console.print(
            f"the latest checkpoint (event {latest['seq']}) does not verify: {latest['reason']}; the report says so",
            highlight=False, soft_wrap=True,
        )
    records = document["trail"]["records"]
    if not records["sound"]:
        console.print(
            f"{len(records['problems'])} record(s) the report shows no longer match the trail "
            f"({'; '.join(p['record'] for p in records['problems'][:5])}): the report says so",
            highlight=False, soft_wrap=True,
        )
    if pdf is not None:
        console.print(f"printed it to {pdf}", highlight=False, soft_wrap=True)
    if openlineage is not None:
        console.print(f"wrote {events} OpenLineage events to {openlineage}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``recgov report``."""
    app.command("report")(report_command)
