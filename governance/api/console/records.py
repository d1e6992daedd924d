"""The console's record pages: a model version's lineage, the subject requests and the policy packs side by side.

Each page reads what the matching API route reads, through the same library
function, under the same scope: ``GET /v1/lineage/{model_version}``
(:func:`audits.lineage.lineage_of`; read), ``GET /v1/requests``
(:func:`audits.page_requests`, a page at a time after the same cursor; audit) and ``GET /v1/packs`` with
``GET /v1/packs/{name}/diff`` (:mod:`governance.packs`, which diffs with
:func:`governance.policydiff.diff_packs`; read). They only read: no form
here changes anything, so the filters and the choice of two pack versions are
GET forms without a CSRF token.

A subject request is shown by the pseudonym it was opened under, never by a
raw id (the store holds none), and without its result: the result may hold
figures about the person, which the page does not need to say when a request
is due. The lineage page links each audit run to its audit job's page when
the run came from a job (runs recorded by the command line have none).

The packs page lists the packs by their files' names
(:func:`governance.api.console.consent.pack_choices`) and reads each through
the app's pack cache, so it parses a pack only when its file changed; a stored
file that is no valid pack is listed as such (and its diff is a 422 page)
rather than failing the page. Each shipped pack links to its Art. 30 record
(for the roles that may read it) and its Art. 27 disclosure.

A pack diff groups :func:`governance.policydiff.diff_packs`'s changes as a
reviewer reads a new rule book: rules added, rules removed, rules changed
(each changed field with its value before and after; a rule's parameters are
its thresholds) and the pack's other settings. Each line says its effect on
what the gate lets through (``stricter``, ``looser``, or ``depends on the data``)
and the page counts them, as ``recgov policy diff`` does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from audits import count_requests, page_requests
from audits.lineage import lineage_of
from audits.models import AuditJob, ModelVersion
from audits.requests import UnknownCursor, overdue_among
from governance import packs as pack_store
from governance.api.console.consent import load_choice, pack_choices
from governance.api.console.pages import AuditingKey, ReadingKey
from governance.api.console.web import ConsoleRoute, Refusal, render
from governance.api.deps import SessionDep, SettingsDep
from governance.api.disclosure import lineage_shown_to, shown_to
from governance.api.schemas import IDENTIFIER, INT4_MAX
from recommender.errors import ConfigError

__all__ = ["router"]

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

ModelVersionId = Annotated[str, Path(min_length=1, max_length=128, pattern=IDENTIFIER)]
PackName = Annotated[str, Path(min_length=1, max_length=200, pattern=IDENTIFIER)]

REQUEST_KINDS = ("access", "erasure", "objection", "retrain")
REQUEST_STATUSES = ("received", "in_progress", "completed", "failed")
NO_SUCH_MODEL = "there is no model version {version!r} in the store; see the deployments, or the model versions (GET /v1/models)"
NO_SUCH_PACK = "there is no stored pack {name!r}; see the list of packs (a shipped pack has one version, so it has no diff)"


@router.get("/lineage/{model_version}", summary="A model version from its data to its deployments")
def lineage(model_version: ModelVersionId, request: Request, session: SessionDep, settings: SettingsDep, reviewer: ReadingKey) -> Response:
    if session.get(ModelVersion, model_version) is None:
        session.rollback()
        raise Refusal(404, NO_SUCH_MODEL.format(version=model_version))
    document = lineage_shown_to(reviewer.key.role, lineage_of(session, model_version), settings.home)
    run_ids = [run["id"] for run in document["audit_runs"]]
    jobs = dict(session.execute(select(AuditJob.audit_run_id, AuditJob.id).where(AuditJob.audit_run_id.in_(run_ids))).all()) if run_ids else {}
    session.rollback()
    return render(
        request, "lineage.html", title=f"Lineage of {model_version}", reviewer=reviewer, lineage=document, jobs=jobs,
    )  # fmt: skip


REQUESTS_PER_PAGE = 50


@router.get("/requests", summary="Subject requests and their deadlines")
def requests(
    request: Request,
    session: SessionDep,
    reviewer: AuditingKey,
    kind: Literal["access", "erasure", "objection", "retrain"] | None = None,
    status: Literal["received", "in_progress", "completed", "failed"] | None = None,
    overdue: bool = False,
    after: int = Query(0, ge=0, le=INT4_MAX),  # a request id: the column is a 32-bit integer
) -> Response:
    """A page of the requests, oldest first, after the cursor ``after`` (the last id of the page before), as GET /v1/requests pages."""
    now = datetime.now(UTC)
    try:
        rows, next_after = page_requests(
            session, limit=REQUESTS_PER_PAGE, after=after, kind=kind, status=status, overdue_at=now if overdue else None
        )
    except UnknownCursor as err:
        session.rollback()
        raise Refusal(422, str(err)) from None
    n_overdue = count_requests(session, kind=kind, status=status, overdue_at=now)
    late = overdue_among(session, [row["id"] for row in rows], now)  # as the count and GET /v1/requests?overdue=true judge it
    session.rollback()
    shown = [_request_view(row, row["id"] in late) for row in rows]
    return render(
        request, "requests.html", title="Subject requests", reviewer=reviewer, requests=shown, kind=kind, status=status,
        overdue=overdue, after=after, next_after=next_after, kinds=REQUEST_KINDS, statuses=REQUEST_STATUSES, n_overdue=n_overdue,
    )  # fmt: skip


def _request_view(row: dict[str, Any], overdue: bool) -> dict[str, Any]:
    """A request as the page lists it: the pseudonym, the dates, and whether it is overdue (still owed an answer past
    its deadline: open, or failed with no later request of its kind completed for the subject)."""
    return {
        "id": row["id"],
        "kind": row["kind"],
        "subject": row["subject"],
        "status": row["status"],
        "opened": row["requested_at"],
        "deadline": row["deadline"],
        "completed": row["completed_at"],
        "overdue": overdue,
    }


@router.get("/packs", summary="Shipped and stored policy packs")
def packs(request: Request, settings: SettingsDep, reviewer: ReadingKey) -> Response:
    """Every pack, through the app's pack cache (a file is parsed again only when it changed); a stored file that is no valid pack is listed as such."""
    shipped: list[dict[str, Any]] = []
    stored: dict[str, list[dict[str, Any]]] = {}
    for ref in pack_choices(settings.packs_dir):
        try:
            entry = {"ref": ref, "error": None, **load_choice(request, reviewer, settings.packs_dir, ref).stamp()}
        except Refusal as refusal:
            name, _, version = ref.partition("@")
            entry = {"ref": ref, "error": refusal.message, "pack": name, "pack_version": version, "pack_hash": ""}
        if "@" in ref:
            stored.setdefault(ref.partition("@")[0], []).append(entry)
        else:
            shipped.append(entry)
    return render(
        request, "packs.html", title="Policy packs", reviewer=reviewer, shipped=shipped, stored=sorted(stored.items()),
        can_audit=reviewer.can("audit"),
    )  # fmt: skip


@router.get("/packs/{name}", summary="Two versions of a stored pack side by side: what changed")
def pack_diff(
    name: PackName,
    request: Request,
    settings: SettingsDep,
    reviewer: ReadingKey,
    from_version: str | None = Query(None, alias="from", min_length=1, max_length=200, pattern=IDENTIFIER),
    to_version: str | None = Query(None, alias="to", min_length=1, max_length=200, pattern=IDENTIFIER),
) -> Response:
    """The two versions chosen (by default the two latest); 404 for a pack not stored or a version it does not have."""
    versions = [ref.partition("@")[2] for ref in pack_choices(settings.packs_dir) if ref.partition("@")[0] == name and "@" in ref]
    if not versions:
        raise Refusal(404, NO_SUCH_PACK.format(name=name))
    before = from_version or versions[max(len(versions) - 2, 0)]
    after = to_version or versions[-1]
    try:
        diff = pack_store.diff_versions(settings.packs_dir, name, before=before, after=after)
    except pack_store.PackNotFound as err:
        raise Refusal(404, str(err)) from None
    except ConfigError as err:  # a stored file that is no valid pack
        raise Refusal(422, shown_to(reviewer.key.role, f"pack {name!r} cannot be used: {err}", settings.home)) from None
    return render(
        request, "pack_diff.html", title=f"Pack {name}: {before} to {after}", reviewer=reviewer, name=name, versions=versions,
        before=before, after=after, diff=diff, groups=_grouped(diff["changes"]), effects=_effects(diff["changes"]),
    )  # fmt: skip


def _effects(changes: list[dict[str, Any]]) -> dict[str, int]:
    """How many changes make the gate stricter and how many looser (the counts ``recgov policy diff`` prints)."""
    return {effect: sum(change.get("effect") == effect for change in changes) for effect in ("stricter", "looser")}


def _grouped(changes: list[dict[str, Any]]) -> dict[str, Any]:
    """The changes as a reviewer reads them: rules added and removed (whole), rules changed (by field), other settings."""
    added, removed, settings = [], [], []
    changed: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        head, _, field = change["path"].partition(".")
        if not head.startswith("rule:"):
            settings.append(change)
        elif not field and change["kind"] == "added":
            added.append({"rule": head[5:], "fields": change["after"] or {}, "effect": change.get("effect")})
        elif not field:
            removed.append({"rule": head[5:], "fields": change["before"] or {}, "effect": change.get("effect")})
        else:
            changed.setdefault(head[5:], []).append({**change, "field": field})
    return {"added": added, "removed": removed, "changed": sorted(changed.items()), "settings": settings}
