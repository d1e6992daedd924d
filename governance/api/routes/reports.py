"""``/v1/reports``: the regulator's lineage report of a model version, as HTML or PDF.

The document is the one ``recgov report`` writes (:func:`governance.report.gather.report_document`,
rendered by :func:`governance.report.render_html`): which data, under which
consent, made the model, which checks it passed, what it emitted, and the
trail's head and latest signed checkpoint. Subjects appear only as counts.

HTML is the default; ``?format=pdf`` or ``Accept: application/pdf`` prints the
same page with the server's Chromium (:func:`governance.report.pdf.html_to_pdf`,
offline). A server without Chromium answers a PDF request with 503 and says so;
the HTML needs nothing but the store.

A report costs seconds of work (its plots about half a second of CPU, a PDF two
or three seconds of Chromium on every core it gets), so it is made as heavy work
(:func:`governance.api.heavy.run_heavy`): a few at a time, the requests for more
waiting on the event loop without a worker thread.
"""

from __future__ import annotations

import tempfile
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from audits.models import ModelVersion
from governance import packs as pack_store
from governance.api.deps import AuditKey, SessionDep, SettingsDep
from governance.api.download import attachment
from governance.api.disclosure import lineage_shown_to
from governance.api.errors import UNKNOWN_MODEL, Problem, problems
from governance.api.heavy import run_heavy
from governance.api.schemas import IDENTIFIER
from governance.report import render_html
from governance.report.gather import report_document
from governance.report.pdf import PdfError, html_to_pdf

__all__ = ["PDF", "router"]

router = APIRouter(prefix="/v1/reports", tags=["reports"], responses=problems(401, 403, 500))

PDF = "application/pdf"
HTML = "text/html"
NO_PDF = "the report cannot be printed to PDF on this server: {reason}; ask for the HTML (format=html) and print it where a browser is"
_EXAMPLE_HTML = "<!doctype html><html><head><title>Lineage report: als-66329e</title>...</html>"


def _wants_pdf(format: str | None, accept: str | None) -> bool:
    """``format`` decides when given; else an Accept header that asks for PDF and not HTML."""
    if format is not None:
        return format == "pdf"
    kinds = {part.split(";")[0].strip().lower() for part in (accept or "").split(",")}
    return PDF in kinds and HTML not in kinds


def _pdf(page: str) -> bytes:
    """``page`` printed to PDF in a private temporary folder (503 when the server cannot print)."""
    with tempfile.TemporaryDirectory(prefix="recgov-report-") as folder:
        source = FilePath(folder) / "report.html"
        source.write_text(page, encoding="utf-8")
        try:
            return html_to_pdf(source, FilePath(folder) / "report.pdf").read_bytes()
        except PdfError as err:
            raise Problem(503, NO_PDF.format(reason=err), kind="pdf-unavailable") from None


@router.get(
    "/{model_version}",
    response_class=HTMLResponse,
    responses={
        200: {
            "description": "The report: one self-contained HTML page, or its PDF.",
            "content": {HTML: {"example": _EXAMPLE_HTML}, PDF: {"schema": {"type": "string", "format": "binary"}}},
        },
        **problems(404, 422),
        503: {**problems(503)[503], "description": "A PDF was asked for and this server has no Chromium to print it with."},
    },
    summary="The regulator's lineage report of a model version, HTML or PDF (auditor)",
    description="The report `recgov report` writes. The pack it discloses (DSA Art. 27) is `pack` when given, else the "
    "pack of the model's latest audit when it is found, shipped or stored, with the audited hash; otherwise the "
    "disclosure is left out and the report says so.",
)
async def get_report(
    request: Request,
    model_version: Annotated[str, Path(min_length=1, max_length=128, pattern=IDENTIFIER, description="A model version id.")],
    session: SessionDep,
    settings: SettingsDep,
    key: AuditKey,
    format: Annotated[Literal["html", "pdf"] | None, Query(description="html or pdf; default: from the Accept header, else html.")] = None,
    pack: Annotated[str | None, Query(min_length=1, max_length=200, pattern=IDENTIFIER, description="The pack in force: a shipped name or NAME@VERSION.")] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    return await run_heavy(request, _report, session, settings, key.role, model_version, pack, pdf=_wants_pdf(format, accept))


def _report(session: Session, settings: Any, role: str, model_version: str, pack: str | None, *, pdf: bool) -> Response:
    """The report of ``model_version`` as a response (heavy work: on a worker thread, a few at a time)."""
    if session.get(ModelVersion, model_version) is None:
        raise Problem(404, UNKNOWN_MODEL.format(version=model_version))
    try:
        loaded = pack_store.load_ref(settings.packs_dir, pack) if pack is not None else None
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None
    document = report_document(session, model_version, pack=loaded, packs_dir=settings.packs_dir)
    session.rollback()
    page = render_html(lineage_shown_to(role, document, settings.home))  # server paths as the role may see them
    if not pdf:
        return HTMLResponse(page)
    filename = f"report-{model_version}.pdf"  # the header carries an ASCII fallback and the exact name (RFC 6266)
    return Response(_pdf(page), media_type=PDF, headers={"Content-Disposition": attachment(filename)})
