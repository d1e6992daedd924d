"""Outcome events in the store on SQLite and PostgreSQL: joined by decision id or by subject, item and window
(every edge of the window), stored under the pseudonym, idempotent, anchored on the trail, read back for estimators."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select, text

from audits import DecisionLog, Store, verify_trail
from audits.models import OutcomeEvent, TrailEvent
from audits.outcomes import (
    BATCH_COLUMNS,
    BEFORE_EPOCH,
    OutcomesRefused,
    decision_rewards,
    delete_subject_outcomes,
    outcomes_of_decisions,
    purge_outcomes,
    record_outcomes,
)
from audits.subjects import pseudonym
from recommender.errors import DataError

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _decide(store: Store, subject: str, at: datetime, items: list[str], **context: object) -> str:
    decision_id = str(uuid.uuid4())
    record = {
        "mode": "personalized", "pack_name": "eu-gdpr-dsa", "pack_version": "1", "pack_hash": "sha256:" + "0" * 64,
        "model_version": "m1", "slate": {"items": items, "scores": [1.0 - i / 10 for i in range(len(items))]},
        "context": dict(context), "decision_id": decision_id, "decided_at": at, "subject_id": subject,
    }  # fmt: skip
    with DecisionLog(store) as log:
        log.submit_and_wait(record, timeout=30)
    return decision_id


def _batch(*events: dict) -> pd.DataFrame:
    rows = []
    for line, e in enumerate(events, start=2):
        rows.append({"line": line, "value": np.nan, "decision_id": "", "event_id": "", **e})
    frame = pd.DataFrame(rows, columns=list(BATCH_COLUMNS))
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True).astype("datetime64[us, UTC]")
    frame["value"] = frame["value"].astype(float)
    return frame


def _record(store: Store, batch: pd.DataFrame, **options):
    with store.session() as session:
        return record_outcomes(session, batch, source="import", anchor={"file_sha256": "f" * 64}, **options)


def _stored(store: Store) -> list[OutcomeEvent]:
    with store.session() as session:
        return list(session.scalars(select(OutcomeEvent).order_by(OutcomeEvent.occurred_at, OutcomeEvent.id)))


def test_window_attribution_and_its_edges(store: Store) -> None:
    early = _decide(store, "alice-7731", T0, ["i1", "i2", "i3"])
    late = _decide(store, "alice-7731", T0 + 2 * HOUR, ["i2", "i9"])
    batch = _batch(
        {"subject": "alice-7731", "kind": "click", "item_id": "i1", "occurred_at": T0 - timedelta(seconds=1)},  # before any
        {"subject": "alice-7731", "kind": "click", "item_id": "i1", "occurred_at": T0},  # same instant: joined
        {"subject": "alice-7731", "kind": "click", "item_id": "i3", "occurred_at": T0 + HOUR},  # inside the window
        {"subject": "alice-7731", "kind": "click", "item_id": "i2", "occurred_at": T0 + 3 * HOUR},  # latest of two
        {"subject": "alice-7731", "kind": "click", "item_id": "i7", "occurred_at": T0 + 3 * HOUR},  # not served
        {"subject": "alice-7731", "kind": "click", "item_id": "i1", "occurred_at": T0 + 2 * HOUR},  # early's edge: exactly 2h
        {"subject": "alice-7731", "kind": "click", "item_id": "i1", "occurred_at": T0 + 2 * HOUR + timedelta(microseconds=1)},
        {"subject": "alice-7731", "kind": "click", "item_id": "i9", "occurred_at": T0 + 5 * HOUR},  # outside: 3h after late
        {"subject": "bob-9912", "kind": "dwell", "item_id": "i1", "occurred_at": T0 + HOUR, "value": 12.5},  # no decision ever
    )
    outcome = _record(store, batch, window=2 * HOUR)
    by_line = {r["line"]: r["reason"] for r in outcome.unattributed}
    assert by_line == {2: "no_decision_before", 6: "item_not_served", 8: "item_not_served", 9: "outside_window", 10: "no_decision_before"}
    assert outcome.refused == [] and outcome.added == 9
    assert outcome.by_attribution == {"item_not_served": 2, "no_decision_before": 2, "outside_window": 1, "window": 4}
    rows = _stored(store)
    joined = {(r.item_id, r.occurred_at): (r.decision_id, r.position) for r in rows if r.attribution == "window"}
    assert joined == {
        ("i1", T0): (early, 0),
        ("i3", T0 + HOUR): (early, 2),
        ("i2", T0 + 3 * HOUR): (late, 0),
        ("i1", T0 + 2 * HOUR): (early, 0),
    }
    assert all(r.decision_id is None and r.position is None for r in rows if r.attribution != "window")


def test_decision_id_joins_are_checked_and_a_wrong_join_is_refused(store: Store) -> None:
    mine = _decide(store, "carol-5521", T0, ["i1", "i2"])
    theirs = _decide(store, "dave-6630", T0, ["i1"])
    shadow = _decide(store, "carol-5521", T0, ["i1"], served=False, shadow_of=mine)
    batch = _batch(
        {"subject": "carol-5521", "kind": "click", "item_id": "i2", "occurred_at": T0 + HOUR, "decision_id": mine},
        {"subject": "carol-5521", "kind": "click", "item_id": "i1", "occurred_at": T0 + HOUR, "decision_id": theirs},
        {"subject": "carol-5521", "kind": "click", "item_id": "i1", "occurred_at": T0 + HOUR, "decision_id": shadow},
        {"subject": "carol-5521", "kind": "click", "item_id": "i5", "occurred_at": T0 + HOUR, "decision_id": mine},
        {"subject": "carol-5521", "kind": "click", "item_id": "i1", "occurred_at": T0 - HOUR, "decision_id": mine},
        {"subject": "carol-5521", "kind": "click", "item_id": "i1", "occurred_at": T0 + HOUR, "decision_id": str(uuid.uuid4())},
        # 30 days later: the decision id joins whatever the window
        {"subject": "carol-5521", "kind": "rating", "item_id": "i1", "occurred_at": T0 + timedelta(days=30), "decision_id": mine, "value": 4.0},
    )
    outcome = _record(store, batch)
    reasons = {r.line: r.reason for r in outcome.refused}
    assert set(reasons) == {3, 4, 5, 6, 7}
    assert reasons[3] == f"decision {theirs} was not served to this subject"
    assert "shadow list" in reasons[4] and "the item is not in the list" in reasons[5] and "is before decision" in reasons[6]
    assert reasons[7].startswith("no decision ")
    assert "dave" not in repr(outcome) and "carol" not in repr(outcome)
    rows = _stored(store)
    assert [(r.item_id, r.decision_id, r.position, r.attribution) for r in rows] == [("i2", mine, 1, "decision_id"), ("i1", mine, 0, "decision_id")]
    with pytest.raises(OutcomesRefused, match="nothing was stored"):
        _record(store, _batch({"subject": "carol-5521", "kind": "click", "item_id": "i9", "occurred_at": T0 + HOUR, "decision_id": mine},
                              {"subject": "carol-5521", "kind": "click", "item_id": "i1", "occurred_at": T0 + 2 * HOUR}), whole=True)  # fmt: skip
    assert len(_stored(store)) == 2


def test_stored_under_the_pseudonym_idempotent_and_anchored(store: Store) -> None:
    decision = _decide(store, "erin@example.org", T0, ["i1", "i2"])
    batch = _batch(
        {"subject": "erin@example.org", "kind": "impression", "item_id": "i1", "occurred_at": T0},
        {"subject": "erin@example.org", "kind": "click", "item_id": "i1", "occurred_at": T0 + timedelta(seconds=5)},
        {"subject": "erin@example.org", "kind": "click", "item_id": "i1", "occurred_at": T0 + timedelta(seconds=5)},  # duplicate row
        {"subject": "erin@example.org", "kind": "conversion", "item_id": "i2", "occurred_at": T0 + HOUR, "event_id": "order-1"},
    )
    first = _record(store, batch)
    again = _record(store, batch)
    assert (first.added, first.already_recorded) == (3, 1)
    assert (again.added, again.already_recorded, again.trail_seq) == (0, 4, None)
    # the caller's event id is the key: the same order with another time is the same event
    moved = batch.iloc[[3]].assign(occurred_at=batch["occurred_at"].iloc[3] + HOUR)
    assert _record(store, moved).already_recorded == 1
    with store.session() as session:
        who = pseudonym(session, "erin@example.org")
        event = session.get(TrailEvent, first.trail_seq)
        assert event.action == "outcomes.recorded" and event.subject is None
        payload = json.loads(event.payload) if isinstance(event.payload, str) else event.payload
        assert payload["added"] == 3 and payload["file_sha256"] == "f" * 64
    rows = _stored(store)
    assert {r.subject for r in rows} == {who} and {r.trail_seq for r in rows} == {first.trail_seq}
    assert {r.decision_id for r in rows} == {decision}
    with store.engine.connect() as connection:
        dump = repr(connection.execute(text("SELECT * FROM outcome_events")).all())
        dump += repr(connection.execute(text("SELECT * FROM trail_events")).all())
    assert "erin" not in dump
    with store.snapshot() as connection:
        assert verify_trail(connection).intact


def test_estimators_read_outcomes_as_arrays(store: Store) -> None:
    a = _decide(store, "frank-1", T0, ["i1", "i2", "i3"])
    b = _decide(store, "grace-2", T0, ["i4", "i5", "i6"])
    c = _decide(store, "heidi-3", T0, ["i7", "i8", "i9"])
    batch = _batch(
        {"subject": "frank-1", "kind": "click", "item_id": "i2", "occurred_at": T0 + HOUR},
        {"subject": "frank-1", "kind": "click", "item_id": "i2", "occurred_at": T0 + 2 * HOUR},
        {"subject": "frank-1", "kind": "dwell", "item_id": "i2", "occurred_at": T0 + HOUR, "value": 10.0},
        {"subject": "frank-1", "kind": "dwell", "item_id": "i2", "occurred_at": T0 + 2 * HOUR, "value": 2.5},
        {"subject": "grace-2", "kind": "click", "item_id": "i6", "occurred_at": T0 + HOUR},
        {"subject": "grace-2", "kind": "rating", "item_id": "i4", "occurred_at": T0 + HOUR, "value": 2.0},
        {"subject": "grace-2", "kind": "rating", "item_id": "i4", "occurred_at": T0 + 2 * HOUR, "value": 5.0},
    )
    _record(store, batch)
    with store.session() as session:
        clicks = decision_rewards(session, [c, a, b], kind="click", slate_size=3)
        twice = decision_rewards(session, [b, a, b], kind="click", slate_size=3)
        nothing = decision_rewards(session, [], kind="click", slate_size=3)
        counts = decision_rewards(session, [a, b, c], kind="click", slate_size=2, reduce="count")
        dwell = decision_rewards(session, [a, b], kind="dwell", slate_size=3)
        ratings = decision_rewards(session, [a, b], kind="rating", slate_size=3)
        frame = outcomes_of_decisions(session, [a, b, c])
        with pytest.raises(DataError, match="unknown outcome kind"):
            decision_rewards(session, [a], kind="like", slate_size=3)
    np.testing.assert_array_equal(clicks, [[0, 0, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(twice, [[0, 0, 1], [0, 1, 0], [0, 0, 1]])
    assert nothing.shape == (0, 3)
    np.testing.assert_array_equal(counts, [[0, 2], [0, 0], [0, 0]])  # position 2 of b is beyond slate_size 2
    np.testing.assert_array_equal(dwell, [[0, 12.5, 0], [0, 0, 0]])
    np.testing.assert_array_equal(ratings, [[np.nan, np.nan, np.nan], [5.0, np.nan, np.nan]])
    assert len(frame) == 7 and list(frame.columns) == ["decision_id", "position", "item_id", "kind", "value", "occurred_at", "subject", "attribution"]


def test_delete_and_purge(store: Store) -> None:
    _decide(store, "ivan-4", T0, ["i1"])
    _decide(store, "judy-5", T0, ["i1"])
    _record(store, _batch(
        {"subject": "ivan-4", "kind": "click", "item_id": "i1", "occurred_at": T0 + HOUR},
        {"subject": "judy-5", "kind": "click", "item_id": "i1", "occurred_at": T0 + HOUR},
        {"subject": "judy-5", "kind": "click", "item_id": "i1", "occurred_at": T0 + 30 * HOUR},
    ))  # fmt: skip
    with store.session() as session:
        assert delete_subject_outcomes(session, pseudonym(session, "ivan-4")) == 1
        assert purge_outcomes(session, T0 + 2 * HOUR) == 1
    assert [(r.occurred_at) for r in _stored(store)] == [T0 + 30 * HOUR]


def test_a_bad_batch_or_window_is_refused(store: Store) -> None:
    batch = _batch({"subject": "kim-6", "kind": "click", "item_id": "i1", "occurred_at": T0})
    with pytest.raises(DataError, match="window must be positive"):
        _record(store, batch, window=timedelta(0))
    with pytest.raises(DataError, match="missing value"):
        _record(store, batch.drop(columns=["value"]))
    assert _stored(store) == []


def test_window_attribution_agrees_with_a_brute_force_reference(store: Store) -> None:
    """A seeded random world (ties in time included) against a plain loop over every decision of the subject."""
    rng = np.random.default_rng(7)
    subjects = [f"ref-subject-{i}" for i in range(6)]
    items = [f"i{i}" for i in range(8)]
    window = timedelta(minutes=30)
    decisions = []  # (subject, decided_at, decision_id, slate)
    for _ in range(40):
        subject = subjects[rng.integers(len(subjects))]
        at = T0 + timedelta(minutes=int(rng.integers(0, 240)) // 5 * 5)  # on a 5-minute grid: ties happen
        slate = [str(x) for x in rng.choice(items, size=3, replace=False)]
        decisions.append((subject, at, _decide(store, subject, at, slate), slate))
    events = []
    for _ in range(300):
        events.append({
            "subject": subjects[rng.integers(len(subjects))], "kind": "click", "item_id": items[rng.integers(len(items))],
            "occurred_at": T0 + timedelta(minutes=int(rng.integers(-20, 280)), seconds=int(rng.integers(0, 60)) // 30 * 30),
        })  # fmt: skip
    outcome = _record(store, _batch(*events), window=window)
    assert outcome.refused == []

    def reference(e: dict) -> tuple[str, str | None, int | None]:
        mine = [d for d in decisions if d[0] == e["subject"]]
        inside = [d for d in mine if e["occurred_at"] - window <= d[1] <= e["occurred_at"]]
        serving = [d for d in inside if e["item_id"] in d[3]]
        if serving:
            best = max(serving, key=lambda d: (d[1], d[2]))
            return "window", best[2], best[3].index(e["item_id"])
        if inside:
            return "item_not_served", None, None
        return ("outside_window" if any(d[1] <= e["occurred_at"] for d in mine) else "no_decision_before"), None, None

    expected: dict[tuple, tuple] = {}
    for e in events:
        expected.setdefault((e["subject"], e["item_id"], e["occurred_at"]), reference(e))
    with store.session() as session:
        who = {s: pseudonym(session, s) for s in subjects}
    back = {v: k for k, v in who.items()}
    got = {(back[r.subject], r.item_id, r.occurred_at): (r.attribution, r.decision_id, r.position) for r in _stored(store)}
    assert got == expected
    assert {a for a, _, _ in expected.values()} == {"window", "item_not_served", "outside_window", "no_decision_before"}


def test_times_outside_the_stored_range_are_refused_not_a_crash(store: Store) -> None:
    """Times pandas holds only at microseconds (year 1000, 9999) would overflow the nanosecond joins; a time before
    the Unix epoch is refused as the event loaders refuse it (it was stored, down to 1678)."""
    batch = _batch(
        {"subject": "range-1", "kind": "click", "item_id": "i1", "occurred_at": T0},
        {"subject": "range-1", "kind": "click", "item_id": "i2", "occurred_at": "1000-01-01T00:00:00Z"},
        {"subject": "range-1", "kind": "click", "item_id": "i3", "occurred_at": "9999-01-01T00:00:00Z"},
        {"subject": "range-1", "kind": "click", "item_id": "i4", "occurred_at": "1969-12-31T23:59:59Z"},
    )
    outcome = _record(store, batch)
    assert outcome.added == 1
    assert [(r.line, r.field, r.reason) for r in outcome.refused] == [(3, "time", BEFORE_EPOCH), (4, "time", "the time is out of range (years 1970 to 2261)"), (5, "time", BEFORE_EPOCH)]
    with pytest.raises(OutcomesRefused, match="event 3: time: the time is before 1970"):
        _record(store, batch, whole=True)
    assert [r.item_id for r in _stored(store)] == ["i1"]


def test_an_erased_subjects_refusal_says_neither_that_nor_when(store: Store) -> None:
    from audits.outcomes import NOT_STORABLE
    from governance.policy import load_pack
    from governance.privacy import erase_subject

    pack = load_pack(__import__("pathlib").Path(__file__).resolve().parents[2] / "policies" / "eu-gdpr-dsa.yaml")
    _record(store, _batch({"subject": "gone@example.com", "kind": "click", "item_id": "i1", "occurred_at": T0}))
    erase_subject(store, "gone@example.com", pack=pack, measure_carbon=False)
    outcome = _record(store, _batch({"subject": "gone@example.com", "kind": "click", "item_id": "i1", "occurred_at": T0}))
    assert [(r.field, r.reason) for r in outcome.refused] == [("subject", NOT_STORABLE)]
    assert "erase" not in NOT_STORABLE and outcome.added == 0
