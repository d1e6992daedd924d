"""Availability over real HTTP: a change answered by the API holds for the very next list, in its region only;
a bad batch is a located 422 that stores nothing; with the online store, cached lists say so and obey it too."""

from __future__ import annotations

from sqlalchemy import select

from audits.models import DecisionRecord
from audits.sealing import open_decisions


def _context(server, decision_id: str) -> dict:
    """The decision's context as written (opened with the subject's record key: stored decisions are sealed)."""
    with server.store.snapshot() as connection:
        row = connection.execute(
            select(DecisionRecord.decision_id, DecisionRecord.subject, DecisionRecord.slate, DecisionRecord.context)
            .where(DecisionRecord.decision_id == decision_id)
        ).one()
        opened = open_decisions(connection, [tuple(row)])[0]
    assert opened is not None
    return opened[1]


def test_an_item_restricted_in_a_region_leaves_that_regions_lists_only(server) -> None:
    request = {"subject": "u000031", "k": 10, "model_version": server.model_version, "region": "DE"}
    with server.client("operator") as client:
        before = client.post("/v1/recommendations", json=request)
        assert before.status_code == 200, before.text
        top = before.json()["items"][0]["item_id"]
        put = client.put(f"/v1/items/{top}/availability", json={"status": "geo_restricted", "region": "de"})  # one region in any case
        assert put.status_code == 200, put.text
        after = client.post("/v1/recommendations", json=request)
        lower = client.post("/v1/recommendations", json=request | {"region": "De"})
        elsewhere = client.post("/v1/recommendations", json=request | {"region": "FR"})
        refused = client.put(f"/v1/items/{top}/availability", json={"status": "geo_restricted"})
        batch = client.post("/v1/availability", json={"changes": [
            {"item_id": "i000001", "status": "withdrawn"}, {"item_id": "i000002", "status": "geo_restricted"}]})
    assert top not in [i["item_id"] for i in after.json()["items"]] and len(after.json()["items"]) == 10
    assert top not in [i["item_id"] for i in lower.json()["items"]] and _context(server, lower.json()["decision_id"])["region"] == "DE"
    assert top in [i["item_id"] for i in elsewhere.json()["items"]]
    assert _context(server, after.json()["decision_id"])["region"] == "DE"
    assert refused.status_code == 422 and "needs a region" in refused.json()["detail"]
    assert batch.status_code == 422 and [e["field"] for e in batch.json()["errors"]] == ["changes[1]"]
    with server.client("auditor") as client:
        listed = client.get("/v1/availability").json()
    assert listed["by_region"] == {"DE": [top]} and listed["everywhere"] == []  # i000001 was not stored


def test_with_the_online_store_a_cached_list_says_so_and_an_availability_change_holds_at_once(server, online_store, monkeypatch) -> None:
    import audits.online_store as online

    url = "redis://online-store-under-test"
    monkeypatch.setenv("RECGOV_REDIS_URL", url)
    monkeypatch.setitem(online._STORES, url, online_store)
    request = {"subject": "u000041", "k": 8, "model_version": server.model_version, "pack": "eu-gdpr-dsa"}
    consent = {"subject": "u000041", "purpose": "personalization", "basis": "consent", "source": "api"}
    lists_key = f"{online_store.namespace}:l:{online_store.subject_key('u000041')}"
    with server.client("operator") as client:
        client.put("/v1/items/i999999/availability", json={"status": "withdrawn"})  # engines are built again, with the store
        assert client.post("/v1/consent", json=consent | {"status": "granted"}).status_code == 201
        first = client.post("/v1/recommendations", json=request).json()
        second = client.post("/v1/recommendations", json=request).json()
        assert first["mode"] == "personalized", first["consent"]
        assert second["items"] == first["items"] and online_store.client.exists(lists_key)
        assert client.post("/v1/consent", json=consent | {"status": "withdrawn"}).status_code == 201
        assert not online_store.client.exists(lists_key)  # the withdrawal removed the subject's lists
        withdrawn = client.post("/v1/recommendations", json=request).json()
        assert client.post("/v1/consent", json=consent | {"status": "granted"}).status_code == 201
        regranted = client.post("/v1/recommendations", json=request).json()
        top = first["items"][0]["item_id"]
        client.put(f"/v1/items/{top}/availability", json={"status": "out_of_stock"})
        third = client.post("/v1/recommendations", json=request).json()
        client.put(f"/v1/items/{top}/availability", json={"status": "available"})
    assert "list_source" not in _context(server, first["decision_id"])
    assert _context(server, second["decision_id"])["list_source"] == "online_store"
    assert withdrawn["mode"] == "non_profiling" and "list_source" not in _context(server, withdrawn["decision_id"])
    assert regranted["mode"] == "personalized" and "list_source" not in _context(server, regranted["decision_id"])
    assert top not in [i["item_id"] for i in third["items"]] and len(third["items"]) == 8
    assert "list_source" not in _context(server, third["decision_id"])
