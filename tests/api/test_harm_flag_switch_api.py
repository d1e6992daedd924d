"""Over real HTTP, on both engines: a flag switched off or on again, and what an unblock leaves in place.

Holes pinned:

* ``recgov harm unflag`` had no route: a flag could be switched off only from the store's host. Now
  ``PUT /v1/flags/{flag_id}/active`` (admin) does it, on the trail as the command records it; 404 for an unknown
  flag, 409 for a flag already so, nothing changed on either;
* a case resolved with ``action: unblock`` answered as if the item were back in lists, while an active flag (under a
  pack that blocks its category) or another case under review kept it out. Now the answer's ``still_held`` says
  what does, as ``PUT /v1/items/{item_id}/block`` does.
"""

from __future__ import annotations

import json

from sqlalchemy import func, select

from audits.models import ItemFlag, TrailEvent
from governance.api.errors import PROBLEM_JSON


def _trail(server, action: str) -> list[TrailEvent]:  # noqa: ANN001
    with server.store.session() as session:
        return list(session.scalars(select(TrailEvent).where(TrailEvent.action == action).order_by(TrailEvent.seq)))


def _count(server) -> tuple[int, int]:  # noqa: ANN001
    with server.store.snapshot() as connection:
        return tuple(connection.execute(select(func.count()).select_from(t)).scalar_one() for t in (ItemFlag, TrailEvent))


def test_a_flag_is_switched_off_and_on_again_on_the_trail(server) -> None:  # noqa: ANN001
    with server.client("operator") as client:
        flagged = client.post("/v1/items/switch-item-1/flags", json={"category": "self-harm", "confidence": 0.9, "pack": "eu-gdpr-dsa"})
        assert flagged.status_code == 201, flagged.text
        flag_id = flagged.json()["id"]
        refused = client.put(f"/v1/flags/{flag_id}/active", json={"active": False})
        assert refused.status_code == 403, refused.text  # letting an item back into lists is an admin's, as a block is
    with server.client("admin") as client:
        off = client.put(f"/v1/flags/{flag_id}/active", json={"active": False, "note": "false positive"})
        assert off.status_code == 200, off.text
        assert off.json() | {"trail_seq": 0} == {"id": flag_id, "item_id": "switch-item-1", "category": "self-harm", "active": False, "trail_seq": 0}
        (event,) = [e for e in _trail(server, "item.flag_deactivated") if json.loads(e.objects)["flag"] == flag_id]
        assert event.seq == off.json()["trail_seq"] and json.loads(event.payload) == {"note": "false positive"}
        assert json.loads(event.objects) == {"item": "switch-item-1", "flag": flag_id}
        before = _count(server)
        again = client.put(f"/v1/flags/{flag_id}/active", json={"active": False})
        assert again.status_code == 409 and again.headers["content-type"] == PROBLEM_JSON, again.text
        assert "already inactive" in again.json()["detail"]
        unknown = client.put("/v1/flags/2147483647/active", json={"active": False})
        assert unknown.status_code == 404 and unknown.headers["content-type"] == PROBLEM_JSON, unknown.text
        assert _count(server) == before
        on = client.put(f"/v1/flags/{flag_id}/active", json={"active": True})
        assert on.status_code == 200 and on.json()["active"] is True, on.text
    (event,) = [e for e in _trail(server, "item.flag_activated") if json.loads(e.objects)["flag"] == flag_id]
    assert json.loads(event.payload) == {"note": None}


def test_a_case_resolved_with_an_unblock_says_what_still_holds_the_item(server) -> None:  # noqa: ANN001
    item = "switch-case-item"
    with server.client("admin") as client:
        for n in range(3):  # the baseline pack opens a case at three reports
            assert client.post(f"/v1/items/{item}/reports", json={"reason": f"abusive ({n})"}).status_code == 201
        evaluated = client.post("/v1/escalations/evaluate", json={"pack": "baseline"})
        assert evaluated.status_code == 200, evaluated.text
        case_id = next(c["case_id"] for c in evaluated.json()["opened"] if c["item_id"] == item)
        blocked = client.post(f"/v1/escalations/{case_id}", json={"status": "triaged", "action": "block"})
        assert blocked.status_code == 200 and blocked.json()["still_held"] == [], blocked.text
        flagged = client.post(f"/v1/items/{item}/flags", json={"category": "self-harm", "confidence": 0.9, "pack": "eu-gdpr-dsa"})
        assert flagged.status_code == 201, flagged.text
        resolved = client.post(f"/v1/escalations/{case_id}", json={"status": "resolved", "action": "unblock", "note": "not abusive"})
        assert resolved.status_code == 200, resolved.text
        body = resolved.json()
        assert body["status"] == "resolved" and body["action"] == "unblock"
        (hold,) = body["still_held"]
        assert hold.startswith(f"flag {flagged.json()['id']} (self-harm) is active") and "under a pack that blocks 'self-harm'" in hold
        document = client.get("/openapi.json").json()
    put = document["paths"]["/v1/flags/{flag_id}/active"]["put"]
    assert {"404", "409", "422"} <= set(put["responses"])
