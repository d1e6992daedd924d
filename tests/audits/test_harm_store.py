"""Harmful content: flags, reports, one open case per (item, rule), a validated workflow that blocks at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from audits import (
    Store,
    block_item,
    blocked_items,
    flag_item,
    flags_for,
    list_cases,
    open_case,
    pseudonym,
    report_counts,
    report_item,
    set_flag_active,
    transition_case,
    verify_trail,
)
from recommender.errors import ConfigError, DataError
from store_dump import dump_store

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RAW_IDS = ["alice@example.org", "user-8271"]


def _assert_clean(store: Store) -> None:
    with store.snapshot() as connection:
        report = verify_trail(connection)
    assert report.intact, report.summary()
    dump = dump_store(store)
    assert not [raw for raw in RAW_IDS if raw in dump]


def _actions(store: Store) -> list[str]:
    with store.engine.connect() as connection:
        return list(connection.execute(text("SELECT action FROM trail_events ORDER BY seq")).scalars())


def _case(session, item="item-7", rule="harm.self_harm", **kwargs):
    defaults = {"reason": "flagged self_harm at 0.93", "severity": "high", "sla_hours": 24, "at": T0}
    return open_case(session, item_id=item, rule_id=rule, **(defaults | kwargs))


def test_flags_and_reports_are_recorded_and_read_back_in_bulk(store: Store) -> None:
    with store.session() as session:
        flag_item(session, item_id="item-7", category="self_harm", confidence=0.93, source="model", at=T0)
        flag_item(session, item_id=42, category="violence", confidence=1, source="metadata", at=T0)
        stale = flag_item(session, item_id="item-7", category="spam", confidence=0.4, source="api", at=T0)
        report_item(
            session,
            item_id="item-7",
            reason="glorifies self-harm",
            reporter_id="alice@example.org",
            at=T0 + timedelta(hours=1),
        )
        report_item(session, item_id="item-7", reason="disturbing", at=T0 - timedelta(days=2))
        report_item(session, item_id=42, reason="gore", reporter_id="user-8271", at=T0 + timedelta(hours=2))
    with store.session() as session:
        set_flag_active(session, stale.id, active=False, note="spam classifier false positive", actor="reviewer")
        with pytest.raises(ConfigError, match=f"item flag {stale.id} is already inactive"):
            set_flag_active(session, stale.id, active=False)
    with store.session() as session:
        flags = flags_for(session, ["item-7", 42, "item-unknown"])
        every = flags_for(session, ["item-7"], active_only=False)
        counts = report_counts(session)
        recent = report_counts(session, since=T0)
        alice = pseudonym(session, "alice@example.org")
    assert {item: [f["category"] for f in found] for item, found in flags.items()} == {
        "item-7": ["self_harm"],
        "42": ["violence"],
    }
    assert flags["item-7"][0] | {"id": None} == {
        "id": None,
        "category": "self_harm",
        "confidence": 0.93,
        "source": "model",
        "created_at": T0,
        "active": True,
    }
    assert [f["active"] for f in every["item-7"]] == [True, False]
    assert counts == {"item-7": 2, "42": 1} and recent == {"item-7": 1, "42": 1}
    with store.engine.connect() as connection:
        reporters = set(connection.execute(text("SELECT reporter FROM item_reports")).scalars())
    assert alice in reporters and None in reporters
    assert _actions(store) == ["item.flagged"] * 3 + ["item.reported"] * 3 + ["item.flag_deactivated"]
    _assert_clean(store)


def test_a_case_is_opened_once_per_open_item_and_rule(store: Store) -> None:
    with store.session() as session:
        first = _case(session)
        again = _case(session, reason="reported 3 times", severity="critical")
        other_rule = _case(session, rule="harm.violence")
    assert again.id == first.id and again.severity == "high"
    assert other_rule.id != first.id
    with store.session() as session:
        transition_case(session, first.id, status="dismissed", note="satire, no harm", actor="reviewer")
    with store.session() as session:
        reopened = _case(session, reason="flagged again by a new model")
    assert reopened.id not in (first.id, other_rule.id)
    assert _actions(store) == ["case.opened", "case.opened", "case.dismissed", "case.opened"]
    _assert_clean(store)


def test_an_action_blocks_and_unblocks_at_once(store: Store) -> None:
    with store.session() as session:
        case = _case(session)
        assert blocked_items(session) == set()
    with store.session() as session:
        transition_case(session, case.id, status="triaged", action="block", note="likely harmful", actor="t&s")
        assert blocked_items(session) == {"item-7"}  # in the same transaction
    with store.session() as session:
        assert blocked_items(session) == {"item-7"}
        resolved = transition_case(
            session,
            case.id,
            status="resolved",
            action="unblock",
            note="context: a recovery story",
            actor="senior-reviewer",
        )
        assert blocked_items(session) == set()
    assert (resolved.status, resolved.action, resolved.resolution) == (
        "resolved",
        "unblock",
        "context: a recovery story",
    )
    with store.session() as session:
        second = _case(session, item="item-9")
        transition_case(session, second.id, status="resolved", action="block", note="confirmed", actor="t&s")
        block_item(session, item_id="item-11", blocked=True, reason="metadata: banned category", actor="ingest")
        [case_row] = [c for c in list_cases(session) if c["id"] == second.id]
        row = session.execute(text("SELECT blocked, reason, case_id FROM item_blocks WHERE item_id = 'item-7'")).one()
    assert bool(row.blocked) is False and row.case_id == case.id and row.reason == "context: a recovery story"
    assert case_row["action"] == "block" and case_row["status"] == "resolved"
    with store.session() as session:
        assert blocked_items(session) == {"item-9", "item-11"}
    assert _actions(store) == [
        "case.opened",
        "case.triaged",
        "item.blocked",
        "case.resolved",
        "item.unblocked",
        "case.opened",
        "case.resolved",
        "item.blocked",
        "item.blocked",
    ]
    _assert_clean(store)


WORKFLOW_REFUSALS = [
    (
        ["triaged", "open"],
        None,
        "escalation case {id} is 'triaged'; it can move only to 'resolved' or 'dismissed', not to 'open'",
    ),
    (
        ["resolved", "triaged"],
        None,
        "escalation case {id} is 'resolved'; that is final: it can move nowhere, not to 'triaged'",
    ),
    (
        ["dismissed", "resolved"],
        None,
        "escalation case {id} is 'dismissed'; that is final: it can move nowhere, not to 'resolved'",
    ),
    (
        ["open"],
        None,
        "escalation case {id} is 'open'; it can move only to 'triaged' or 'resolved' or 'dismissed', not to 'open'",
    ),
    (["closed"], None, "status must be one of open, triaged, resolved, dismissed; got 'closed'"),
    (["resolved"], "delete", "action must be one of block, unblock; got 'delete'"),
    (
        ["dismissed"],
        "block",
        (
            "escalation case {id}: a dismissed case found no harm, so it cannot block item '{item}'; "
            "resolve it with action='block' instead"
        ),
    ),
]


def test_the_case_workflow_refuses_other_transitions(store: Store) -> None:
    for index, (path, action, message) in enumerate(WORKFLOW_REFUSALS):
        item = f"item-{index}"
        with store.session() as session:
            case_id = _case(session, item=item).id
        *allowed, refused = path
        with store.session() as session:
            for status in allowed:
                transition_case(session, case_id, status=status, actor="reviewer")
        before = _actions(store)
        with pytest.raises(ConfigError) as caught, store.session() as session:
            transition_case(session, case_id, status=refused, action=action, actor="reviewer")
        assert str(caught.value) == message.format(id=case_id, item=item)
        assert _actions(store) == before  # nothing written
    with store.session() as session:
        assert blocked_items(session) == set()
    _assert_clean(store)


BAD_INPUT = [
    (
        lambda s: flag_item(s, item_id="i", category="x", confidence=1.5, source="model"),
        DataError,
        "confidence must be a number from 0 to 1, got 1.5",
    ),
    (
        lambda s: flag_item(s, item_id="i", category="x", confidence=0.5, source="oracle"),
        ConfigError,
        "source must be one of metadata, api, model, report; got 'oracle'",
    ),
    (
        lambda s: flag_item(s, item_id="", category="x", confidence=0.5, source="api"),
        DataError,
        "item_id must be a non-empty string of at most 200 characters, got ''",
    ),
    (
        lambda s: report_item(s, item_id="i", reason="alice@example.org says so", reporter_id="alice@example.org"),
        DataError,
        "reason must not carry a raw subject id",
    ),
    (
        lambda s: report_item(s, item_id="alice@example.org", reason="spam", reporter_id="alice@example.org"),
        DataError,
        r"item_id must not carry a raw subject id, but the value at \$ does",
    ),
    (
        lambda s: report_item(s, item_id=9876543210, reason="spam", reporter_id=9876543210),
        DataError,
        "item_id must not carry a raw subject id",
    ),
    (
        lambda s: _case(s, severity="urgent"),
        ConfigError,
        "severity must be one of low, medium, high, critical; got 'urgent'",
    ),
    (lambda s: _case(s, sla_hours=0), ConfigError, "sla_hours must be a number above 0"),
    (
        lambda s: transition_case(s, 5, status="triaged", actor="r"),
        ConfigError,
        "unknown escalation case 5; the cases are listed by 'recgov harm cases' and GET /v1/escalations",
    ),
    (
        lambda s: block_item(s, item_id="i", blocked=True, reason="r", case_id=5),
        ConfigError,
        "unknown escalation case 5",
    ),
    (lambda s: set_flag_active(s, 5, active=True), ConfigError, "unknown item flag 5; the flags are listed by 'recgov harm flags --all' and GET /v1/flags with include_inactive=true"),
    # served lists hold the stripped ids the loaders read: a padded id would keep nothing out while saying it does
    (
        lambda s: flag_item(s, item_id="i00573 ", category="x", confidence=0.99, source="api"),
        DataError,
        "item_id 'i00573 ' holds surrounding spaces or invisible characters",
    ),
    (lambda s: report_item(s, item_id=" i00573", reason="r"), DataError, "holds surrounding spaces"),
    (lambda s: block_item(s, item_id="i00573\u200b", blocked=True, reason="r"), DataError, "invisible characters"),
    (lambda s: _case(s, item="i00573\t"), DataError, "holds surrounding spaces"),
]


def test_bad_input_is_refused_and_nothing_is_written(store: Store) -> None:
    for call, error, message in BAD_INPUT:
        with pytest.raises(error, match=message), store.session() as session:
            call(session)
    assert _actions(store) == []
    _assert_clean(store)


def test_overdue_cases_are_the_open_ones_past_their_sla(store: Store) -> None:
    with store.session() as session:
        late = _case(session, item="a", sla_hours=4)
        late_triaged = _case(session, item="b", sla_hours=8)
        on_time = _case(session, item="c", sla_hours=72)
        closed = _case(session, item="d", sla_hours=1)
        transition_case(session, late_triaged.id, status="triaged", actor="r")
        transition_case(session, closed.id, status="resolved", action="block", note="confirmed", actor="r")
    with store.session() as session:
        overdue = [c["id"] for c in list_cases(session, overdue_at=T0 + timedelta(hours=24))]
        open_now = [c["id"] for c in list_cases(session, status="open")]
        everything = list_cases(session)
    assert overdue == [late.id, late_triaged.id]
    assert open_now == [late.id, on_time.id]
    assert [c["sla_due"] for c in everything] == sorted(c["sla_due"] for c in everything)
    assert everything[0]["sla_due"] == T0 + timedelta(hours=1)
    _assert_clean(store)
