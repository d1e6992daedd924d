"""The console's consent page: one subject's consent, judged under a named pack, for a reviewer who is not going to use curl.

It reads what ``GET /v1/consent/{subject}`` reads, through the same library
function (:func:`governance.privacy.show_consent`, here with the pack, so each
purpose of the pack gets its verdict: may recgov profile this person for it
now, and why), under the same scope (``operate``: reading a person's consent
records is the operator's, as appending them is).

The subject's raw id is personal data, and it must not leak from the page:

* the id goes in the body of a POST (with the session's CSRF token), never in
  a URL: no address bar, browser history, server access log line or
  ``Referer`` holds it; the answer is rendered on the POST itself (no redirect,
  which would have to carry the id somewhere);
* the answer names the subject by pseudonym only, and the form comes back
  empty: the page never echoes the raw id;
* the read is put on the trail as ``api.console.consent.read`` by
  ``key:<id>:<name>``, with the subject's pseudonym (none when recgov holds no
  record of them: a lookup makes no pseudonym) and the pack; never the raw id.
  Who looked at whose consent is then on the record, as a DPO expects;
* nothing is logged by the page.

A malformed id or an unknown pack answers the form again with the fault
(422 or 404), and nothing is read or recorded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from audits.subjects import SUBJECT_ID_PADDED
from governance import packs as pack_store
from governance.api.call_record import record_call
from governance.api.console.web import ConsoleRoute, FormDep, Refusal, Reviewer, acting_for, render, reviewer_for
from governance.api.deps import SessionDep, SettingsDep, StoreDep
from governance.api.disclosure import shown_to
from governance.api.schemas import IDENTIFIER
from governance.api.services.engines import engines_of
from governance.policy import LoadedPack
from governance.privacy import show_consent
from recommender.errors import ConfigError

__all__ = ["DEFAULT_PACK", "load_choice", "pack_choices", "router"]

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

OperatingKey = Annotated[Reviewer, Depends(reviewer_for("operate"))]
ActingOperator = Annotated[Reviewer, Depends(acting_for("operate"))]

DEFAULT_PACK = "eu-gdpr-dsa"
"""The pack the forms choose first when it is shipped (the one a European reviewer judges under)."""
MAX_SUBJECT = 200
_IDENTIFIER = re.compile(IDENTIFIER)
BAD_SUBJECT = f"give the subject's id: 1 to {MAX_SUBJECT} characters, not blank, without control characters"
BAD_PACK = "choose a pack from the list (a shipped pack, or a stored one as NAME@VERSION)"
TRAIL_ACTION = "console.consent.read"


def pack_choices(packs_dir: Path) -> list[str]:
    """The packs a form offers: the shipped ones by name, then the stored versions as ``NAME@VERSION``.

    Told from the files' names, where :func:`governance.packs.load_ref` finds
    them (``packs_dir/NAME/VERSION.yaml``): no pack is parsed to list them
    (parsing every pack costs about a tenth of a second each).
    """
    stored = sorted(packs_dir.glob("*/*.yaml"), key=lambda path: (path.parent.name, _version_key(path.stem)))
    return [*pack_store.shipped_pack_names(), *(f"{path.parent.name}@{path.stem}" for path in stored)]


def _version_key(version: str) -> list[Any]:
    """Versions in the order people number them: 1.2.0 before 1.10.0."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", version) if part]


def load_choice(request: Request, reviewer: Reviewer, packs_dir: Path, ref: str) -> LoadedPack:
    """The pack ``ref`` names, through the app's pack cache (parsed again only when its file changed).

    Raises :class:`Refusal`: 404 for no such pack, 422 for a stored file that is
    no valid pack (its located problems, server paths shown as the API shows
    them to the key's role).
    """
    try:
        return engines_of(request.app).pack(packs_dir, ref)
    except pack_store.PackNotFound as err:
        raise Refusal(404, str(err)) from None
    except ConfigError as err:
        raise Refusal(422, shown_to(reviewer.key.role, f"pack {ref!r} cannot be used: {err}", request.app.state.settings.home)) from None


def _default(choices: list[str]) -> str | None:
    return DEFAULT_PACK if DEFAULT_PACK in choices else (choices[0] if choices else None)


def _form_page(request: Request, reviewer: Reviewer, choices: list[str], *, pack: str | None, status: int = 200,
               error: str | None = None, field: str | None = None, result: dict[str, Any] | None = None) -> Response:  # fmt: skip
    return render(
        request, "consent.html", status_code=status, title="Consent of a subject", reviewer=reviewer, packs=choices,
        pack=pack or _default(choices), error=error, error_field=field, result=result, max_subject=MAX_SUBJECT,
    )  # fmt: skip


@router.get("/consent", summary="The form: a subject's consent under a pack")
def consent_form(request: Request, settings: SettingsDep, reviewer: OperatingKey) -> Response:
    return _form_page(request, reviewer, pack_choices(settings.packs_dir), pack=None)


@router.post("/consent", summary="A subject's consent judged under a pack (the id in the body, never in a URL)")
def consent_lookup(request: Request, form: FormDep, store: StoreDep, session: SessionDep, settings: SettingsDep, reviewer: ActingOperator) -> Response:
    """The subject's pseudonym, records in force, history, and each purpose's verdict under the pack; the read on the trail."""
    choices = pack_choices(settings.packs_dir)
    # As given, never stripped: the API (GET /v1/consent/{subject}) and the CLI refuse an id padded with
    # whitespace, which names no one's events; read stripped, it would show another subject's consent.
    subject = form.get("subject") or ""
    ref = form.get("pack") or ""
    if subject.strip() and subject != subject.strip():
        return _form_page(request, reviewer, choices, pack=ref if ref in choices else None, status=422, error=SUBJECT_ID_PADDED, field="subject")
    if not subject or len(subject) > MAX_SUBJECT or not _IDENTIFIER.fullmatch(subject):
        return _form_page(request, reviewer, choices, pack=ref if ref in choices else None, status=422, error=BAD_SUBJECT, field="subject")
    if ref not in choices:
        return _form_page(request, reviewer, choices, pack=None, status=404 if ref else 422, error=BAD_PACK, field="pack")
    try:
        loaded = load_choice(request, reviewer, settings.packs_dir, ref)
    except Refusal as refusal:  # removed since the form was drawn, or a stored file that is no valid pack
        return _form_page(request, reviewer, choices, pack=None, status=refusal.status, error=refusal.message, field="pack")
    shown = show_consent(store, subject, pack=loaded)
    pseudonym = shown["subject"]
    record_call(
        session, reviewer.key, TRAIL_ACTION, subject=pseudonym, objects={"policy": ref},
        payload={"found": pseudonym is not None, **loaded.stamp()},
    )  # fmt: skip
    result = {
        "pseudonym": pseudonym,
        "pack": loaded.stamp(),
        "verdicts": [{"purpose": purpose, **verdict} for purpose, verdict in (shown["profiling"] or {}).items()],
        "in_force": list(shown["in_force"].values()),
        "history": list(reversed(shown["history"])),  # newest first, as a reviewer reads it
    }
    return _form_page(request, reviewer, choices, pack=ref, result=result)
