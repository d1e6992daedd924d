"""``/v1/records``: the record of processing activities (GDPR Art. 30) and the DSA Art. 27 disclosure.

Both are derived from what is in force, so they cannot drift from the system
they describe: the pack the request names (a shipped name or ``NAME@VERSION``)
and, for the record, the counts the store holds
(:func:`governance.privacy.processing_record`); for the disclosure, the recorded
parameters of a model version when one is named
(:func:`governance.disclosure.disclosure`). Neither names a subject.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from governance import packs as pack_store
from governance.api.deps import AuditKey, ReadKey, SettingsDep, StoreDep
from governance.api.errors import UNKNOWN_MODEL, Problem, problems
from governance.api.schemas import IDENTIFIER
from governance.api.schemas.records import Disclosure, ProcessingRecord
from governance.api.services.engines import engines_of
from governance.audit import recorded_model
from governance.audit_inputs import recorded_model_kind
from governance.disclosure import disclosure
from governance.policy import LoadedPack
from governance.privacy import processing_record
from recommender.errors import ConfigError

__all__ = ["router"]

router = APIRouter(prefix="/v1/records", tags=["records"], responses=problems(401, 403, 404, 422, 500))

MAX_RECIPIENTS = 50
PackRef = Annotated[str, Query(min_length=1, max_length=200, pattern=IDENTIFIER, description="The pack in force: a shipped name or NAME@VERSION.", examples=["eu-gdpr-dsa"])]


def _pack(request: Request, settings: Any, ref: str) -> LoadedPack:
    """The pack in force, through the app's pack cache: parsed again only when its file changed."""
    try:
        return engines_of(request.app).pack(settings.packs_dir, ref)
    except pack_store.PackNotFound as err:
        raise Problem(404, str(err)) from None


# What the handler accepts, in the document (the handler checks it, with its own message).
RECIPIENTS = {
    "maxItems": MAX_RECIPIENTS,
    "items": {"type": "string", "minLength": 1, "maxLength": 500, "pattern": r"^[^\x00]*\S[^\x00]*$"},
}


@router.get(
    "/processing",
    response_model=ProcessingRecord,
    summary="The record of processing activities, GDPR Art. 30 (auditor)",
    description="Purposes and lawful bases, categories of data, recipients, retention and safeguards from the pack; "
    "consent records, subject requests and decisions served, counted in the store.",
)
def get_processing_record(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    key: AuditKey,
    pack: PackRef,
    recipient: Annotated[
        list[str] | None,
        Query(
            description="A recipient of the data (repeat, at most 50); default: none outside the controller.",
            json_schema_extra=RECIPIENTS,
        ),
    ] = None,
) -> dict[str, Any]:
    if len(recipient or ()) > MAX_RECIPIENTS:
        raise Problem(422, f"at most {MAX_RECIPIENTS} recipients may be named; got {len(recipient or ())}")
    for name in recipient or ():
        if not name.strip() or len(name) > 500 or "\x00" in name:
            raise Problem(422, f"each recipient must be 1 to 500 characters of text without NUL; got {name[:40]!r}")
    return processing_record(_pack(request, settings, pack), store, recipients=recipient or None)


@router.get(
    "/disclosure",
    response_model=Disclosure,
    summary="The DSA Art. 27 disclosure of the recommender's main parameters (viewer)",
    description="What the system weighs and why, the post-processing steps, what it never uses, and the options users have "
    "(Art. 38's list not based on profiling among them), from the pack and, with `model_version`, that model's parameters.",
)
def get_disclosure(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    key: ReadKey,
    pack: PackRef,
    model_version: Annotated[str | None, Query(min_length=1, max_length=128, pattern=IDENTIFIER, description="A recorded model version whose parameters to describe.")] = None,
) -> dict[str, Any]:
    loaded = _pack(request, settings, pack)
    params, kind, inputs = None, None, None
    if model_version is not None:
        try:
            params, _, _ = recorded_model(store, model_version)
            kind, inputs = recorded_model_kind(store, model_version)
        except ConfigError:
            raise Problem(404, UNKNOWN_MODEL.format(version=model_version)) from None
    return disclosure(loaded.pack, params, model_kind=kind, model_inputs=inputs)
