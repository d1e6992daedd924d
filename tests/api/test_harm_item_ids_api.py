"""Over real HTTP, on both engines: a harm flag or report names an item of the catalogue recgov knows.

Hole pinned: ``POST /v1/items/I00012/flags`` when the model serves ``i00012`` was a 201 whose effect said the
item was kept out of lists; lists are filtered by the exact id, so it stayed in them. Now a near spelling of a
catalogue's id is a 422 (``item-id-spelling``, at ``path.item_id``, naming the catalogue's spelling) and nothing
is stored; an id no catalogue holds at all is a 201 that says ``in_catalogue: false`` and that no list holds it.
"""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from audits.models import ItemFlag, ItemReport, ModelVersion, TrailEvent
from governance.api.errors import PROBLEM_JSON
from recommender.family import model_item_ids


@pytest.fixture(scope="module")
def served_item(server) -> str:  # noqa: ANN001
    """An item id of the server's model, with a number (``i00012``)."""
    with server.store.session() as session:
        location = session.get(ModelVersion, server.model_version).artifact_location
    ids = sorted(model_item_ids(location).tolist())
    item = next(i for i in ids if re.fullmatch(r"[a-z]+0+[1-9][0-9]*", i))
    return item


def _counts(server) -> tuple[int, int, int]:  # noqa: ANN001
    with server.store.snapshot() as connection:
        return tuple(connection.execute(select(func.count()).select_from(t)).scalar_one() for t in (ItemFlag, ItemReport, TrailEvent))


def _near(item: str) -> list[str]:
    letters, number = re.fullmatch(r"([a-z]+)0*([0-9]+)", item).groups()
    return [item.upper(), number, f"{letters}{number}", item.replace(letters, letters.upper(), 1)]


def test_a_near_spelling_of_a_served_id_is_a_422_at_the_path_and_stores_nothing(server, served_item: str) -> None:  # noqa: ANN001
    before = _counts(server)
    with server.client("operator") as client:
        for spelling in _near(served_item):
            flag = client.post(f"/v1/items/{spelling}/flags", json={"category": "terrorism", "confidence": 0.9, "pack": "eu-gdpr-dsa"})
            report = client.post(f"/v1/items/{spelling}/reports", json={"reason": "spam"})
            for response in (flag, report):
                assert response.status_code == 422, (spelling, response.text)
                assert response.headers["content-type"] == PROBLEM_JSON
                problem = response.json()
                assert problem["type"].endswith("/item-id-spelling")
                assert [(e["location"], e["field"]) for e in problem["errors"]] == [("path", "item_id")]
                assert f"did you mean {served_item}?" in problem["detail"] and "nothing was stored" in problem["detail"]
    assert _counts(server) == before


def test_the_exact_id_is_in_the_catalogue_and_an_unknown_one_is_said_to_be_in_no_list(server, served_item: str) -> None:  # noqa: ANN001
    with server.client("operator") as client:
        exact = client.post(f"/v1/items/{served_item}/flags", json={"category": "spam", "confidence": 0.2})
        unknown = client.post("/v1/items/not-yet-served-77/flags", json={"category": "terrorism", "confidence": 0.9, "pack": "eu-gdpr-dsa"})
        reported = client.post("/v1/items/not-yet-served-77/reports", json={"reason": "spam"})
        reported_exact = client.post(f"/v1/items/{served_item}/reports", json={"reason": "spam"})
    for response in (exact, unknown, reported, reported_exact):
        assert response.status_code == 201, response.text
    assert exact.json()["in_catalogue"] is True and exact.json()["catalogue"].startswith(f"in model {server.model_version} (")
    assert reported_exact.json()["in_catalogue"] is True
    body = unknown.json()
    assert body["in_catalogue"] is False and body["catalogue"].startswith("in no catalogue recgov knows (checked: model ")
    assert body["effect"].startswith("no list holds the item now") and "keeps the item out of lists under" not in body["effect"]
    assert reported.json()["in_catalogue"] is False and reported.json()["catalogue"] == body["catalogue"]


def test_the_document_names_the_refusal_and_the_answer(server) -> None:  # noqa: ANN001
    with server.client("viewer") as client:
        document = client.get("/openapi.json").json()
    for path in ("/v1/items/{item_id}/flags", "/v1/items/{item_id}/reports"):
        responses = document["paths"][path]["post"]["responses"]
        assert "422" in responses
        ref = responses["201"]["content"]["application/json"]["schema"]["$ref"]
        assert {"in_catalogue", "catalogue"} <= set(document["components"]["schemas"][ref.rsplit("/", 1)[1]]["required"])


def test_a_block_is_checked_a_new_item_is_claimed_and_misspelt_flags_are_listed(server, served_item: str) -> None:  # noqa: ANN001
    """``PUT /v1/items/{item_id}/block`` checks the id as a flag does; ``new_item`` lets a near spelling through (on
    the trail) and is refused for an id a catalogue holds; ``GET /v1/flags`` marks a flag no catalogue's id holds."""
    spelling = served_item.upper()
    before = _counts(server)
    with server.client("admin") as client:
        refused = client.put(f"/v1/items/{spelling}/block", json={"reason": "court order"})
        assert refused.status_code == 422 and refused.json()["type"].endswith("/item-id-spelling"), refused.text
        not_new = client.put(f"/v1/items/{served_item}/block", json={"reason": "court order", "new_item": True})
        assert not_new.status_code == 422 and not_new.json()["type"].endswith("/not-a-new-item"), not_new.text
        assert [(e["location"], e["field"]) for e in not_new.json()["errors"]] == [("body", "new_item")]
        assert _counts(server) == before
        blocked = client.put(f"/v1/items/{served_item}/block", json={"reason": "court order"})
        assert blocked.status_code == 200 and blocked.json()["blocked"] is True and blocked.json()["in_catalogue"] is True, blocked.text
        lifted = client.put(f"/v1/items/{served_item}/block", json={"reason": "order lifted", "blocked": False})
        assert lifted.status_code == 200 and lifted.json()["blocked"] is False
    with server.client("operator") as client:
        flagged = client.post(f"/v1/items/{spelling}/flags", json={"category": "spam", "confidence": 0.4, "new_item": True})
        assert flagged.status_code == 201 and flagged.json()["item_id"] == spelling, flagged.text
        not_new = client.post(f"/v1/items/{served_item}/reports", json={"reason": "spam", "new_item": True})
        assert not_new.status_code == 422 and not_new.json()["type"].endswith("/not-a-new-item")
    with server.store.session() as session:
        event = session.scalars(select(TrailEvent).where(TrailEvent.action == "item.flagged").order_by(TrailEvent.seq.desc())).first()
    assert json.loads(event.payload)["new_item"]["near"] == [served_item]
    with server.client("auditor") as client:
        listed = client.get("/v1/flags")
    assert listed.status_code == 200, listed.text
    mine = [f for f in listed.json()["flags"] if f["item_id"] == spelling]
    assert mine and mine[0]["near"] == [served_item] and mine[0]["claimed_new"] is True  # claimed: not a misspelling
    assert mine[0]["id"] not in listed.json()["misspelt"]
