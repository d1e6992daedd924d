"""Item availability in the store: changes on the trail, a revision that moves, files refused where they are wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from audits.availability import (
    AvailabilityFileError,
    apply_changes,
    availability_revision,
    read_availability_file,
    set_availability,
    unavailable_items,
)
from audits.models import ItemAvailability, TrailEvent
from recommender.errors import ConfigError


def _actions(session) -> list[str]:
    return list(session.scalars(select(TrailEvent.action).order_by(TrailEvent.seq)))


def test_set_and_clear_are_on_the_trail_and_move_the_revision(store) -> None:
    with store.session() as session:
        assert availability_revision(session) == 0 and unavailable_items(session).everywhere == frozenset()
        set_availability(session, item_id="i1", status="out_of_stock")
        set_availability(session, item_id="i2", status="geo_restricted", region="DE")
        set_availability(session, item_id=3, status="withdrawn")  # an integer id is stored as its string
    with store.session() as session:
        first = availability_revision(session)
        now = unavailable_items(session)
        assert now.everywhere == {"i1", "3"} and now.by_region == {"DE": frozenset({"i2"})}
        assert now.for_region("DE") == {"i1", "3", "i2"} and now.for_region("FR") == {"i1", "3"} and now.for_region(None) == {"i1", "3"}
        assert set_availability(session, item_id="i1", status="out_of_stock")["changed"] == 0  # nothing new, no event
        set_availability(session, item_id="i1", status="available")
    with store.session() as session:
        assert availability_revision(session) > first  # an item made available again moves it too
        assert unavailable_items(session).everywhere == {"3"}
        actions = _actions(session)
        assert actions.count("item.unavailable") == 3 and actions.count("item.available") == 1
        row = session.get(ItemAvailability, ("i1", "*"))
        assert row is not None and row.unavailable is False and row.reason == "out_of_stock"


def test_a_change_that_cannot_hold_is_refused_and_changes_nothing(store) -> None:
    with store.session() as session:
        with pytest.raises(ConfigError, match="geo_restricted needs a region"):
            set_availability(session, item_id="i1", status="geo_restricted")
        with pytest.raises(ConfigError, match="status must be one of"):
            set_availability(session, item_id="i1", status="sold")
        with pytest.raises(ConfigError, match="region must be a code"):
            set_availability(session, item_id="i1", status="withdrawn", region="D E")
        assert availability_revision(session) == 0 and "item.unavailable" not in _actions(session)


def test_a_file_is_imported_under_one_event_in_every_format(store, tmp_path: Path) -> None:
    rows = [
        {"item_id": "a", "status": "out_of_stock", "region": None},
        {"item_id": "b", "status": "geo_restricted", "region": "US"},
        {"item_id": "c", "status": "available", "region": None},  # never unavailable: nothing to change
    ]
    csv = tmp_path / "feed.csv"
    csv.write_text("item_id,status,region\na,out_of_stock,\nb,geo_restricted,US\nc,available,\n")
    jsonl = tmp_path / "feed.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    parquet = tmp_path / "feed.parquet"
    pd.DataFrame(rows).to_parquet(parquet)
    parsed = [read_availability_file(p)[0] for p in (csv, jsonl, parquet)]
    assert parsed[0] == parsed[1] == parsed[2]
    changes, source = parsed[0], read_availability_file(csv)[1]
    with store.session() as session:
        counts = apply_changes(session, changes, source=source)
    with store.session() as session:
        assert counts == {"changed": 2, "unavailable": 2, "available": 0}  # a: out of stock; b: restricted; c: nothing
        assert unavailable_items(session).by_region == {"US": frozenset({"b"})} and unavailable_items(session).everywhere == {"a"}
        assert _actions(session)[-1] == "availability.imported"


@pytest.mark.parametrize(
    ("name", "text", "located"),
    [
        ("bad.csv", "item_id,status\na,out_of_stock\nb,sold\n,withdrawn\n", ["line 3: status must be one of", "line 4: item_id"]),
        ("bad.csv", "item_id,stat\na,out_of_stock\n", ["header: missing column(s) status", "unknown column(s) 'stat'"]),
        ("bad.csv", "item_id,status,region\nc,geo_restricted,\n", ["line 2: status geo_restricted needs a region"]),
        ("bad.csv", "item_id,status\na,withdrawn,extra\n", ["line 2: 3 fields, the header has 2"]),
        ("bad.jsonl", '{"item_id": "a", "status": "withdrawn"}\nnot json\n{"item_id": 1.5, "status": "withdrawn"}\n', ["line 2: not valid JSON", "line 3: item_id must be a string or an integer"]),
        ("bad.jsonl", '{"item_id": "a", "status": "withdrawn", "price": 3}\n', ["line 1: unknown field(s) 'price'"]),
        ("bad.csv", "item_id,status\n", ["no rows"]),
        ("bad.xlsx", "whatever", ["unknown file type '.xlsx'"]),
    ],
)
def test_a_bad_file_is_refused_with_every_problem_located(store, tmp_path: Path, name: str, text: str, located: list[str]) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(AvailabilityFileError) as err:
        read_availability_file(path)
    for where in located:
        assert where in str(err.value), str(err.value)
    assert "nothing was imported" in str(err.value)
    assert "sold" not in str(err.value)  # the cell is not repeated back
    with store.session() as session:
        assert availability_revision(session) == 0


def test_a_bad_parquet_row_is_located_by_row(tmp_path: Path) -> None:
    path = tmp_path / "feed.parquet"
    pd.DataFrame({"item_id": ["a", "b"], "status": ["withdrawn", "gone"]}).to_parquet(path)
    with pytest.raises(AvailabilityFileError, match="row 2: status must be one of"):
        read_availability_file(path)


def test_region_codes_are_one_region_whatever_their_case(store) -> None:
    """``de`` and ``DE`` are one region: stored upper case, matched so, and rows stored in lower case before are
    read (and changed) as the upper-case code."""
    from datetime import UTC, datetime

    from audits.trail import append_event

    with store.session() as session:
        set_availability(session, item_id="i1", status="geo_restricted", region="de")
    with store.session() as session:
        now = unavailable_items(session)
        assert now.by_region == {"DE": frozenset({"i1"})}
        assert now.for_region("DE") == now.for_region("de") == now.for_region(" De ") == {"i1"}
        assert set_availability(session, item_id="i1", status="geo_restricted", region="DE")["changed"] == 0
        assert set_availability(session, item_id="i1", status="available", region=" dE")["changed"] == 1
    with store.session() as session:
        assert unavailable_items(session).for_region("DE") == frozenset()
        # Rows written before codes were canonical, in two cases of one region.
        event = append_event(session, actor="test", action="item.unavailable", objects={"item": "i9"}, payload={})
        at = datetime.now(UTC)
        session.add_all([
            ItemAvailability(item_id="i9", region="fr", unavailable=True, reason="geo_restricted", changed_at=at, trail_seq=event.seq),
            ItemAvailability(item_id="i9", region="Fr", unavailable=True, reason="geo_restricted", changed_at=at, trail_seq=event.seq),
        ])  # fmt: skip
    with store.session() as session:
        assert unavailable_items(session).for_region("FR") == {"i9"}
        assert set_availability(session, item_id="i9", status="available", region="FR")["changed"] == 1
    with store.session() as session:
        assert unavailable_items(session).for_region("fr") == frozenset()
        assert [(r.region, r.unavailable) for r in session.scalars(select(ItemAvailability).where(ItemAvailability.item_id == "i9"))] == [("FR", False)]


def test_a_file_that_sets_an_item_twice_in_one_region_is_refused(store, tmp_path: Path) -> None:
    feed = tmp_path / "feed.csv"
    feed.write_text("item_id,status,region\ni1,out_of_stock,\ni1,available,\ni2,geo_restricted,de\ni2,available,DE\ni3,geo_restricted,DE\n")
    with pytest.raises(AvailabilityFileError) as caught:
        read_availability_file(feed)
    assert caught.value.errors == [
        "line 3: item i1 (everywhere) already set on line 2; set each item once per region",
        "line 5: item i2 (in DE) already set on line 4; set each item once per region",
    ]
    with store.session() as session:
        assert availability_revision(session) == 0  # nothing imported
