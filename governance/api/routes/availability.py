"""Item availability: ``/v1/items/{item_id}/availability`` and ``/v1/availability`` (operators change, auditors read).

* ``PUT /v1/items/{item_id}/availability`` (operator): the item's availability in
  a region (omitted: everywhere): ``available``, ``out_of_stock``, ``withdrawn``
  or ``geo_restricted`` (which needs a region, else 422).
* ``POST /v1/availability`` (operator): a batch of changes (a feed's delta), all
  or nothing, under one trail event; a bad change is a 422 naming its index.
* ``GET /v1/availability`` (auditor): what is unavailable now.

Every change is on the trail (``item.unavailable`` / ``item.available`` /
``availability.imported``, and the API call) and holds from the next request
on: the service's engines are rebuilt when the availability revision moves and
the online store's cached lists are invalidated.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from audits.availability import apply_changes, canonical_region, check_change, set_availability, unavailable_items
from governance.api.call_record import record_call
from governance.api.deps import AuditKey, OperateKey, SessionDep
from governance.api.errors import Problem, problems
from governance.api.keys import actor_of
from governance.api.schemas import IDENTIFIER
from governance.api.schemas.availability import AvailabilityBatch, AvailabilityPut, AvailabilityResult, UnavailableList
from recommender.errors import ConfigError

router = APIRouter(tags=["availability"], responses=problems(401, 403, 422, 500))

INVALID = "invalid-availability"
"""The problem type of a change the store refuses on content a schema cannot state (an id's printability)."""


def _located(message: str) -> dict[str, str]:
    """The problem's ``errors`` entry: the field the message is about (the item id is in the path)."""
    if message.startswith("item_id"):
        return {"location": "path", "field": "item_id", "message": message}
    field = "status" if message.startswith("status") else "region"
    return {"location": "body", "field": field, "message": message}


ItemId = Annotated[str, Path(min_length=1, max_length=200, pattern=IDENTIFIER, description="The item's id.")]


@router.put("/v1/items/{item_id}/availability", response_model=AvailabilityResult, summary="Set an item's availability (operator)")
def put_availability(item_id: ItemId, body: AvailabilityPut, session: SessionDep, key: OperateKey) -> dict[str, Any]:
    """422 (``invalid-availability``) for an item id that is not printable text or a region that is no code."""
    try:
        counts = set_availability(session, item_id=item_id, status=body.status, region=body.region, actor=actor_of(key))
    except ConfigError as err:
        session.rollback()
        raise Problem(422, str(err), kind=INVALID, errors=[_located(str(err))]) from None
    record_call(session, key, "availability.set", objects={"item": item_id}, payload={"status": body.status, "region": canonical_region(body.region) if body.region else "*", **counts})
    return counts


@router.post("/v1/availability", response_model=AvailabilityResult, summary="Apply a batch of availability changes, all or nothing (operator)")
def post_availability(body: AvailabilityBatch, session: SessionDep, key: OperateKey) -> dict[str, Any]:
    """422 naming every bad change by its index; nothing is stored then."""
    changes, errors = [], []
    for n, change in enumerate(body.changes):
        try:
            changes.append(check_change(change.item_id, change.status, change.region))
        except ConfigError as err:
            errors.append({"location": "body", "field": f"changes[{n}]", "message": str(err)})
    if errors:
        raise Problem(422, f"{len(errors)} of {len(body.changes)} changes are invalid; nothing was stored", kind=INVALID, errors=errors)
    counts = apply_changes(session, changes, actor=actor_of(key), source={"via": "api", "rows": len(changes)})
    record_call(session, key, "availability.import", payload={"rows": len(changes), **counts})
    return counts


@router.get("/v1/availability", response_model=UnavailableList, summary="What is unavailable now (auditor)")
def get_availability(session: SessionDep, key: AuditKey) -> dict[str, Any]:
    now = unavailable_items(session)
    return {
        "everywhere": sorted(now.everywhere),
        "by_region": {region: sorted(items) for region, items in sorted(now.by_region.items())},
        "revision": now.revision,
    }
