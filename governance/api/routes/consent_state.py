"""``/v1/consent-state``: one subject's consent judged under a named pack (operator).

What a DPO asks first about a person: under this pack, may recgov profile them
now, purpose by purpose, and on which record. The answer comes from
:func:`governance.privacy.show_consent` with the pack, as the console's consent
page does. The subject's id is sent in a POST body, never in a URL, and never
answered back: the answer names the subject by pseudonym (none when recgov holds
no record of them; a lookup makes no pseudonym). Reading a person's consent is on
the trail (``api.consent.state.read`` by the calling key, with the pseudonym and
the pack; never the raw id), so who looked at whose consent is on the record.
The pack comes through the app's pack cache. An unknown pack is a 404; a stored
pack file that is no valid pack a 422 naming it; nothing is read or recorded then.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from governance import packs as pack_store
from governance.api.call_record import record_call
from governance.api.deps import OperateKey, SessionDep, SettingsDep, StoreDep
from governance.api.disclosure import shown_to
from governance.api.errors import Problem, problems
from governance.api.schemas.consent_state import ConsentStatePublic, ConsentStateQuery
from governance.api.services.engines import engines_of
from governance.privacy import show_consent
from recommender.errors import ConfigError

__all__ = ["TRAIL_ACTION", "router"]

router = APIRouter(prefix="/v1/consent-state", tags=["consent"], responses=problems(401, 403, 404, 422, 500))

TRAIL_ACTION = "consent.state.read"


@router.post("", response_model=ConsentStatePublic, summary="A subject's consent judged under a pack (the id in the body, never in a URL)")
def consent_state(body: ConsentStateQuery, request: Request, store: StoreDep, session: SessionDep, settings: SettingsDep, key: OperateKey) -> dict[str, Any]:
    """Each purpose of the pack with whether the subject may be profiled for it now and why; the records in force; the history."""
    try:
        loaded = engines_of(request.app).pack(settings.packs_dir, body.pack)
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None
    except ConfigError as err:
        detail = shown_to(key.role, f"pack {body.pack!r} cannot be used: {err}", settings.home)
        raise Problem(422, detail, kind="invalid-pack", errors=[{"location": "body", "field": "pack", "message": detail}]) from None
    shown = show_consent(store, body.subject, pack=loaded)
    pseudonym = shown["subject"]
    record_call(session, key, TRAIL_ACTION, subject=pseudonym, objects={"policy": body.pack}, payload={"found": pseudonym is not None, **loaded.stamp()})
    return {
        "subject": pseudonym,
        "pack": loaded.stamp(),
        "verdicts": [{"purpose": purpose, **verdict} for purpose, verdict in (shown["profiling"] or {}).items()],
        "in_force": list(shown["in_force"].values()),
        "history": shown["history"],
    }
