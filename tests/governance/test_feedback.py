"""Feedback end to end on SQLite and PostgreSQL: `recgov feedback import` from CSV, JSONL and Parquet (bad rows
located, bad files and flags refused with nothing written, idempotent), erasure deletes the subject's outcome events
and refuses them back, the access export lists them, the retention purge deletes those past the window."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from audits import DecisionLog, Store, verify_trail
from audits.models import DecisionRecord, OutcomeEvent
from governance.cli import app
from governance.feedback import FeedbackMapping, import_feedback, parse_window, read_feedback_table, record_feedback
from governance.policy import load_pack
from governance.privacy import erase_subject, export_subject
from recommender.errors import DataError

runner = CliRunner()
POLICIES = Path(__file__).resolve().parents[2] / "policies"
EU = load_pack(POLICIES / "eu-gdpr-dsa.yaml")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _decide(store: Store, subject: str, at: datetime, items: list[str]) -> str:
    decision_id = str(uuid.uuid4())
    with DecisionLog(store) as log:
        log.submit_and_wait(
            {"mode": "personalized", "pack_name": "eu-gdpr-dsa", "pack_version": "1", "pack_hash": "sha256:" + "0" * 64,
             "slate": {"items": items, "scores": [1.0] * len(items)}, "context": {}, "decision_id": decision_id,
             "decided_at": at, "subject_id": subject},
            timeout=30,
        )  # fmt: skip
    return decision_id


def _outcomes(store: Store) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(OutcomeEvent)))


def _csv(path: Path, decision: str) -> Path:
    path.write_text(
        "who;item;what;at;secs;decision\n"
        f"fb-ann-0001;i1;click;2026-03-01T12:10:00Z;;{decision}\n"
        "fb-ann-0001;i2;dwell;2026-03-01T12:11:00Z;30;\n"
        "fb-ann-0001;i2;dwell;2026-03-01T12:11:00Z;-4;\n"
        "\n"
        "fb-ann-0001;i9;click;1772367000;;\n"
        "fb-ann-0001;i1;click;2026-03-01T12:10:00Z;;not-a-uuid\n",
        encoding="utf-8",
    )
    return path


MAP = "subject=who,item=item,kind=what,time=at,value=secs,decision_id=decision,delimiter=;"


def test_cli_import_reports_lines_and_adds_nothing_twice(db_url: str, tmp_path: Path) -> None:
    from audits import open_store

    store = open_store(db_url)
    try:
        decision = _decide(store, "fb-ann-0001", T0, ["i1", "i2"])
    finally:
        store.close()
    path = _csv(tmp_path / "events.csv", decision)
    args = ["feedback", "import", str(path), "--map", MAP, "--window", "2h", "--database-url", db_url, "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 1, first.output  # some rows refused, the rest stored
    doc = json.loads(first.stdout)
    assert (doc["rows"], doc["added"], doc["invalid"]) == (5, 3, 2)
    assert [(p["line"], p["field"]) for p in doc["problems"]] == [(4, "value"), (7, "decision_id")]
    assert doc["by_attribution"] == {"decision_id": 1, "item_not_served": 1, "window": 1}
    assert doc["unattributed"] == [{"line": 6, "reason": "item_not_served"}]
    again = json.loads(runner.invoke(app, args).stdout)
    assert (again["added"], again["already_recorded"]) == (0, 3)
    text = runner.invoke(app, args[:-1])
    assert "line 4: value: a dwell's value must be zero or more" in text.output and "fb-ann" not in text.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--window", "0s"], "--window '0s'"),
        (["--window", "soon"], "--window 'soon'"),
        (["--map", "who=x"], "--map: unknown field(s) who"),
        (["--map", "subject"], "not of the form field=column"),
        (["--format", "xlsx"], "--format must be one of"),
        (["--batch-size", "0"], "--batch-size"),
    ],
)
def test_cli_bad_flags_exit_2_and_write_nothing(db_url: str, tmp_path: Path, extra: list[str], message: str) -> None:
    path = tmp_path / "e.csv"
    path.write_text("subject,item,kind,time\nfb-x,i1,click,2026-03-01T12:00:00Z\n", encoding="utf-8")
    result = runner.invoke(app, ["feedback", "import", str(path), "--database-url", db_url, *extra])
    assert result.exit_code == 2 and message in result.output, result.output
    from audits import open_store

    store = open_store(db_url)
    try:
        assert _outcomes(store) == 0
    finally:
        store.close()


def test_broken_files_are_refused_whole(tmp_path: Path, store: Store) -> None:
    cases = {
        "missing.csv": (None, "no such file"),
        "empty.csv": ("", "the file is empty"),
        "nocol.csv": ("user,item,kind,time\nx,i,click,2026-01-01\n", "no column 'subject' for the field subject"),
        "bad.jsonl": ('[1]\n"text"\n', "bad.jsonl line 1: not a JSON object"),  # no line is an object
        "bad.parquet": ("not parquet", "not a readable Parquet file"),
        "ragged.csv": ('subject,item,kind,time\n"a,b,click,2026-01-01\n', "not a readable CSV file"),  # a quote never closed
        "events.xml": ("<x/>", "cannot tell the format"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_text(content, encoding="utf-8")
        with pytest.raises(DataError, match=message):
            import_feedback(store, path)
    assert _outcomes(store) == 0


def test_a_line_that_is_no_row_is_refused_at_its_line_and_the_rest_read(tmp_path: Path, store: Store) -> None:
    """One stray separator or one cut line in an export refuses that line, not the file."""
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("subject,item,kind,time\nfb-rg-1,i1,click,2026-01-01\nfb-rg-2,i2,click,2026-01-01,extra\nfb-rg-3,i3,click,2026-01-01\n", encoding="utf-8")
    report = import_feedback(store, ragged)
    assert [(p.position, p.field) for p in report.problems] == [(3, "fields")] and (report.rows, report.invalid) == (3, 1)
    cut = tmp_path / "cut.jsonl"
    cut.write_text('{"subject": "fb-ct-1", "item": "i1", "kind": "click", "time": "2026-01-01"}\n{"subject": "fb-\n', encoding="utf-8")
    report = import_feedback(store, cut)
    assert [(p.position, p.field) for p in report.problems] == [(2, "json")] and (report.rows, report.invalid) == (2, 1)


def test_jsonl_and_parquet_with_unix_seconds(store: Store, tmp_path: Path) -> None:
    decision = _decide(store, "fb-bo-0002", T0, ["i1", "i2", "i3"])
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_text(
        json.dumps({"subject": "fb-bo-0002", "item": "i3", "kind": "rating", "time": int(T0.timestamp()) + 60, "value": 4}) + "\n",
        encoding="utf-8",
    )
    parquet = tmp_path / "e.parquet"
    pd.DataFrame(
        {"user": ["fb-bo-0002"], "item": ["i2"], "kind": ["conversion"], "time": [T0 + timedelta(minutes=5)], "value": [9.5], "decision_id": [decision]}
    ).to_parquet(parquet, index=False)
    a = import_feedback(store, jsonl)
    b = import_feedback(store, parquet, mapping=FeedbackMapping.parse("subject=user"))
    assert (a.added, a.by_attribution, b.added, b.by_attribution, b.format) == (1, {"window": 1}, 1, {"decision_id": 1}, "parquet")
    with store.session() as session:
        rows = session.scalars(select(OutcomeEvent).order_by(OutcomeEvent.id)).all()
    assert [(r.kind, r.value, r.position, r.decision_id) for r in rows] == [("rating", 4.0, 2, decision), ("conversion", 9.5, 1, decision)]


def test_window_parsing() -> None:
    assert parse_window("90s") == timedelta(seconds=90) and parse_window("7d") == timedelta(days=7) and parse_window(None) == timedelta(hours=24)
    for bad in ("0m", "366d", "-1h", "1w", "", "1.5.2h"):
        with pytest.raises(DataError, match="--window"):
            parse_window(bad)


@pytest.mark.parametrize("huge", ["99999999999d", "9" * 400 + "s"])
def test_a_window_too_long_for_a_timedelta_is_bad_input_not_an_overflow(huge: str) -> None:
    """Regression: `feedback import --window 99999999999d` raised OverflowError out of timedelta (a traceback)."""
    with pytest.raises(DataError, match="at most 365 days"):
        parse_window(huge)


def test_every_row_check_is_located(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    path.write_text(
        "subject,item,kind,time,value,event_id\n"
        ",i,click,2026-01-01,,\n"  # 2 no subject
        "a,,click,2026-01-01,,\n"  # 3 no item
        "a,i,,2026-01-01,,\n"  # 4 no kind
        "a,i,click,,,\n"  # 5 no time
        f"a,i,click,{future},,\n"  # 6 future
        "a,i,rating,2026-01-01,abc,\n"  # 7 not a number
        "a,i,rating,2026-01-01,inf,\n"  # 8 not finite
        "a,i,conversion,2026-01-01,-1,\n"  # 9 negative amount
        "a,i,impression,2026-01-01,1,\n"  # 10 a value where none goes
        f"a,i,click,2026-01-01,,{'e' * 201}\n"  # 11 event id too long
        f"{'s' * 201},i,click,2026-01-01,,\n"  # 12 subject too long
        "a,i,click,2026-01-01,,\n"  # 13 fine
        "alice@example.org,alice@example.org,click,2026-01-01,,\n"  # 14 the item is the subject's id
        "alice@example.org,profile-of-alice@example.org,click,2026-01-01,,\n"  # 15 the item holds it
        "a,a,click,2026-01-01,,\n",  # 16 the item is the subject's (short) id
        encoding="utf-8",
    )
    from governance.feedback import check_outcome_rows

    valid, problems = check_outcome_rows(read_feedback_table(path))
    assert [(p.position, p.field) for p in problems] == [
        (2, "subject"), (3, "item"), (4, "kind"), (5, "time"), (6, "time"), (7, "value"), (8, "value"),
        (9, "value"), (10, "value"), (11, "event_id"), (12, "subject"), (14, "item"), (15, "item"), (16, "item"),
    ]  # fmt: skip
    assert valid["line"].tolist() == [13]


def test_erasure_deletes_outcomes_and_refuses_them_back(store: Store) -> None:
    decision = _decide(store, "fb-victim-77", T0, ["i1", "i2"])
    _decide(store, "fb-bystander-78", T0, ["i1"])
    events = [
        {"subject": "fb-victim-77", "item": "i1", "kind": "click", "time": "2026-03-01T12:05:00Z", "decision_id": decision},
        {"subject": "fb-victim-77", "item": "i2", "kind": "dwell", "time": "2026-03-01T12:06:00Z", "value": 8},
        {"subject": "fb-bystander-78", "item": "i1", "kind": "click", "time": "2026-03-01T12:05:00Z"},
    ]
    assert record_feedback(store, events).added == 3
    exported = export_subject(store, "fb-victim-77", pack=EU)
    assert [(o["kind"], o["item_id"], o["attribution"]) for o in exported["outcomes"]] == [("click", "i1", "decision_id"), ("dwell", "i2", "window")]
    assert exported["outcomes"][0]["decision_id"] == decision and exported["outcomes"][0]["position"] == 0

    report = erase_subject(store, "fb-victim-77", pack=EU)
    assert report["shredded"] and report["deleted"] == {"outcome_events": 2}
    with store.session() as session:
        left = session.scalars(select(OutcomeEvent)).all()
        assert session.scalar(select(func.count()).select_from(DecisionRecord)) == 2  # decisions stay, unlinkable
    assert len(left) == 1 and left[0].item_id == "i1" and left[0].attribution == "window"
    # the old events cannot come back: refused as from before the erasure, nothing stored
    from governance.feedback import FeedbackRefused

    with pytest.raises(FeedbackRefused, match="cannot be stored for this subject") as refused:
        record_feedback(store, events[1:2])
    # neutral: neither that the subject was erased nor when (a serving key must not probe erasures)
    assert "erase" not in str(refused.value).lower() and "20" not in str(refused.value)
    assert [(p.field, p.reason) for p in refused.value.problems] == [("subject", "this event cannot be stored for this subject")]
    assert _outcomes(store) == 1
    with store.snapshot() as connection:
        assert verify_trail(connection).intact


def test_the_retention_purge_deletes_outcomes_past_the_window(db_url: str, tmp_path: Path) -> None:
    from audits import open_store

    store = open_store(db_url)
    try:
        old = datetime(2022, 1, 1, tzinfo=UTC)
        _decide(store, "fb-old-1", old, ["i1"])
        record_feedback(store, [
            {"subject": "fb-old-1", "item": "i1", "kind": "click", "time": "2022-01-01T00:10:00Z"},
            {"subject": "fb-old-1", "item": "i1", "kind": "click", "time": "2024-06-20T00:00:00Z"},
        ])  # fmt: skip
    finally:
        store.close()
    log = tmp_path / "log.csv"
    pd.DataFrame({"user_id": ["a"], "item_id": ["x"], "timestamp": ["2024-06-20T00:00:00Z"]}).to_csv(log, index=False)
    args = ["data", "purge", str(log), "--pack", "california-ccpa", "--as-of", "2024-07-01", "--database-url", db_url, "--json"]
    dry = json.loads(runner.invoke(app, [*args, "--dry-run"]).stdout)
    assert dry["outcome_events_past_retention"] == 1 and dry["events_purged"] == 0
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["outcome_events_past_retention"] == 1
    store = open_store(db_url)
    try:
        assert _outcomes(store) == 1
    finally:
        store.close()
    assert json.loads(runner.invoke(app, args).stdout)["outcome_events_past_retention"] == 0


def _subject_outcomes(store: Store, subject: str) -> int:
    from audits.subjects import pseudonym

    with store.session() as session:
        who = pseudonym(session, subject)
        return int(session.scalar(select(func.count()).select_from(OutcomeEvent).where(OutcomeEvent.subject == who)))


BEFORE_EPOCH = "the time is before 1970-01-01T00:00:00Z (a negative Unix time): no event log records such a time; it is a placeholder, a sign error or the wrong unit"


def test_times_outside_the_stored_range_are_located_never_a_crash(db_url: str, store: Store, tmp_path: Path) -> None:
    """Year 1000 or -1e10 Unix seconds parse, but no join can compare them: a located refusal, not a traceback."""
    path = tmp_path / "q.csv"
    path.write_text(
        "subject,item,kind,time\nfb-range-1,i1,click,2026-01-01T00:00:00Z\nfb-range-1,i2,click,1000-01-01T00:00:00Z\n"
        "fb-range-1,i3,click,-10000000000\nfb-range-1,i4,click,9999-01-01T00:00:00Z\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["feedback", "import", str(path), "--batch-size", "1", "--database-url", db_url, "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert [(p["line"], p["field"], p["reason"]) for p in doc["problems"]][:2] == [
        (3, "time", BEFORE_EPOCH), (4, "time", BEFORE_EPOCH),
    ]  # fmt: skip
    assert (doc["added"], doc["invalid"]) == (1, 3)  # line 5 is out of range or in the future: refused either way
    # before the Unix epoch (as the event loaders refuse): such times down to 1678 were stored, listed unattributed
    for bad in (-10_000_000_000, -1, "1000-01-01T00:00:00Z", "1900-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "0001-01-01", "2300-01-01T00:00:00Z"):
        with pytest.raises(DataError, match=r"events\[1\]: time: the time is"):
            record_feedback(store, [{"subject": "fb-range-2", "item": "i1", "kind": "click", "time": "2026-01-01"},
                                    {"subject": "fb-range-2", "item": "i2", "kind": "click", "time": bad}])  # fmt: skip
    assert _subject_outcomes(store, "fb-range-2") == 0


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_integer_ids_with_a_null_beside_them_stay_integers(store: Store, tmp_path: Path, suffix: str) -> None:
    """A column of integers with one null read as floats would store 12345 as "12345.0": another person."""
    rows = [
        {"subject": 12345, "item": 7, "kind": "click", "time": "2026-01-01T00:00:00Z"},
        {"subject": None, "item": 8, "kind": "click", "time": "2026-01-01T00:00:00Z"},
    ]
    path = tmp_path / f"ids.{suffix}"
    if suffix == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        # as another tool writes it: an int64 column with a null, no pandas metadata to restore a nullable dtype
        pq.write_table(pa.table({"subject": pa.array([12345, None], pa.int64()), "item": [7, 8], "kind": ["click"] * 2,
                                 "time": ["2026-01-01T00:00:00Z"] * 2}), path)  # fmt: skip
    report = import_feedback(store, path)
    assert (report.added, [p.field for p in report.problems]) == (1, ["subject"])
    assert _subject_outcomes(store, "12345") == 1 and _subject_outcomes(store, "12345.0") == 0
    with store.session() as session:
        assert session.scalars(select(OutcomeEvent.item_id)).all() == ["7"]
    # and an erased 12345 is not let back in as "12345.0"
    erase_subject(store, "12345", pack=EU, measure_carbon=False)
    again = import_feedback(store, path)
    assert again.added == 0 and [(p.position, p.reason) for p in again.problems][0] == (1, "this event cannot be stored for this subject")


def test_refusal_reasons_never_repeat_a_cell(db_url: str, tmp_path: Path) -> None:
    """Columns mapped by mistake put a person's id where a kind or time goes: the reason says what, never the value."""
    path = tmp_path / "sw.csv"
    path.write_text(
        "user,item,kind,time,value,decision_id\n"
        "alice@example.com,i1,click,2026-01-01,,\n"
        "bob@example.com,i2,rating,2026-01-01,bob@example.com,\n"
        "carol@example.com,i3,click,2026-01-01,carol@example.com,carol@example.com\n"
        "dave@example.com,i4,click,2026-01-01,dave@example.com,\n"
        "erin@example.com,i4,conversion,2026-01-01,-3,\n",
        encoding="utf-8",
    )
    swapped = ["feedback", "import", str(path), "--map", "subject=item,item=user,kind=user,time=user", "--database-url", db_url]
    results = [runner.invoke(app, [*swapped, "--json"]), runner.invoke(app, swapped)]
    mapped = ["feedback", "import", str(path), "--map", "subject=user", "--database-url", db_url, "--json"]
    results.append(runner.invoke(app, mapped))
    for result in results:
        assert result.exit_code == 1, result.output
        assert "@example.com" not in result.output and "@example.com" not in (result.stderr or "")
    doc = json.loads(results[0].stdout)
    assert {p["field"] for p in doc["problems"]} == {"kind"} and doc["invalid"] == 5  # each located
    fields = [(p["line"], p["field"]) for p in json.loads(results[2].stdout)["problems"]]
    assert fields == [(3, "value"), (4, "value"), (5, "value"), (6, "value")]


def test_smaller_gaps_nested_invisible_duplicated_or_no_rows(db_url: str, store: Store, tmp_path: Path) -> None:
    nested = tmp_path / "n.jsonl"
    nested.write_text(
        '{"subject": "fb-n-1", "item": "i1", "kind": "click", "time": "2026-01-01", "extra": {"ok": 1}}\n'
        '{"subject": {"id": "fb-n-1"}, "item": "i1", "kind": "click", "time": "2026-01-01"}\n',
        encoding="utf-8",
    )
    report = import_feedback(store, nested)
    assert [(p.position, p.field, p.reason.split(";")[0]) for p in report.problems] == [(2, "subject", "the column 'subject' holds a JSON object")]
    assert report.added == 1 and "fb-n-1" not in str([str(p) for p in report.problems])
    duplicated = tmp_path / "d.csv"
    duplicated.write_text("subject,item,kind,time,subject\nfb-d-1,i1,click,2026-01-01,fb-d-2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d.csv line 1: the column 'subject' appears 2 times"):
        import_feedback(store, duplicated)
    invisible = tmp_path / "z.csv"
    invisible.write_text("subject,item,kind,time\nfb-\u200bz-1,i1,click,2026-01-01\nfb-z-1\ufeff,i1,click,2026-01-01\nfb-z-1,i\u202e1,click,2026-01-01\n", encoding="utf-8")
    report = import_feedback(store, invisible)
    assert [(p.position, p.field, p.reason.split(" (")[0]) for p in report.problems] == [
        (2, "subject", "the subject holds an invisible character"), (3, "subject", "the subject holds an invisible character"),
        (4, "item", "the item holds an invisible character"),
    ]  # fmt: skip
    assert _outcomes(store) == 1  # the nested file's good line
    header = tmp_path / "h.csv"
    header.write_text("subject,item,kind,time\n", encoding="utf-8")
    result = runner.invoke(app, ["feedback", "import", str(header), "--database-url", db_url])
    assert result.exit_code == 2 and "no rows, only a header" in result.output, result.output


def test_a_subject_written_as_a_float_is_refused_not_read_as_another_id(store: Store, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "f.parquet"
    pq.write_table(pa.table({"subject": pa.array([12345.0, None], pa.float64()), "item": ["i1", "i1"], "kind": ["click"] * 2,
                             "time": ["2026-01-01T00:00:00Z"] * 2}), parquet)  # fmt: skip
    jsonl = tmp_path / "f.jsonl"
    jsonl.write_text('{"subject": "fb-f-1", "item": "i1", "kind": "click", "time": "2026-01-01"}\n'
                     '{"subject": 12345.0, "item": "i1", "kind": "click", "time": "2026-01-01"}\n', encoding="utf-8")  # fmt: skip
    report = import_feedback(store, parquet)
    assert [(p.position, p.field) for p in report.problems] == [(1, "subject"), (2, "subject")]  # the float; the null
    assert report.problems[0].reason.startswith("the column 'subject' holds a floating-point number")
    report = import_feedback(store, jsonl)
    assert [(p.position, p.field, p.reason.split(";")[0]) for p in report.problems] == [(2, "subject", "the column 'subject' holds a floating-point number")]
    assert _outcomes(store) == 1


def test_outcomes_already_past_the_window_the_store_is_purged_by_are_refused_with_their_lines(db_url: str, tmp_path: Path) -> None:
    """An import has no pack: it holds events to the window of the store's last purge (recorded on the trail with
    it), refusing, at their lines, those the next purge would delete; one at the cutoff is kept, in any zone."""
    from audits import open_store
    from audits.outcomes import retention_window

    now = datetime.now(UTC).replace(microsecond=0)
    cutoff = now - timedelta(days=730)  # eu-gdpr-dsa
    rows = [
        ("fb-ret-1", (cutoff - timedelta(hours=1)).isoformat().replace("+00:00", "Z")),  # past the window
        ("fb-ret-2", (cutoff + timedelta(minutes=5)).astimezone(timezone(timedelta(hours=-5))).isoformat()),  # within, New York
        ("fb-ret-3", str(int((cutoff - timedelta(days=2)).timestamp()))),  # past, in Unix seconds
        ("fb-ret-4", (now - timedelta(days=1)).isoformat()),
    ]
    path = tmp_path / "late.csv"
    path.write_text("subject,item,kind,time\n" + "".join(f"{s},i1,click,{t}\n" for s, t in rows))
    args = ["feedback", "import", str(path), "--database-url", db_url, "--json"]
    log = tmp_path / "log.csv"
    pd.DataFrame({"user_id": ["a"], "item_id": ["x"], "timestamp": [now.isoformat()]}).to_csv(log, index=False)
    # a dry run records nothing: no window yet, and a purge that finds nothing still records the window it is by
    dry = runner.invoke(app, ["data", "purge", str(log), "--pack", "eu-gdpr-dsa", "--database-url", db_url, "--json", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    store = open_store(db_url)
    try:
        with store.session() as session:
            assert retention_window(session) is None
    finally:
        store.close()
    purged = runner.invoke(app, ["data", "purge", str(log), "--pack", "eu-gdpr-dsa", "--database-url", db_url, "--json"])
    assert purged.exit_code == 0, purged.output
    assert json.loads(purged.stdout)["events_purged"] == 0 and "trail_seq" in json.loads(purged.stdout)
    done = runner.invoke(app, args)
    assert done.exit_code == 1, done.output
    doc = json.loads(done.stdout)
    assert (doc["added"], doc["invalid"]) == (2, 2)
    assert [(p["line"], p["field"]) for p in doc["problems"]] == [(2, "time"), (4, "time")]
    assert all("retention window this store is purged by (730 days under eu-gdpr-dsa" in p["reason"] for p in doc["problems"])
    # the API's list is whole or nothing: one event past the window refuses it, located
    store = open_store(db_url)
    try:
        with pytest.raises(DataError, match=r"events\[0\].*retention window") as refused:
            record_feedback(store, [{"subject": "fb-ret-5", "item": "i1", "kind": "click", "time": rows[0][1]},
                                    {"subject": "fb-ret-5", "item": "i1", "kind": "click", "time": rows[3][1]}])  # fmt: skip
        assert "nothing was stored" in str(refused.value)
        assert _outcomes(store) == 2
    finally:
        store.close()
    assert runner.invoke(app, ["trail", "verify", "--database-url", db_url, "--json"]).exit_code == 0
    # purged under a pack without a window: the store is no longer held to one
    none = runner.invoke(app, ["data", "purge", str(log), "--pack", "baseline", "--database-url", db_url, "--json"])
    assert none.exit_code == 0, none.output
    assert json.loads(runner.invoke(app, args).stdout)["added"] == 2


@pytest.mark.parametrize("edit", ["widened", "deleted"])
def test_the_window_is_read_from_the_trail_so_editing_its_store_meta_row_does_not_switch_the_refusal_off(
    db_url: str, tmp_path: Path, edit: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The ``store_meta`` row of the window is a plain table the trail does not protect: widened or deleted in SQL,
    imports and the API are still held to the window of the last ``data.purged`` event, and the mismatch is logged."""
    from sqlalchemy import delete, update

    from audits import open_store
    from audits.models import StoreMeta
    from audits.outcomes import RETENTION_KEY, retention_window

    now = datetime.now(UTC).replace(microsecond=0)
    past = (now - timedelta(days=731)).isoformat().replace("+00:00", "Z")
    log = tmp_path / "log.csv"
    pd.DataFrame({"user_id": ["a"], "item_id": ["x"], "timestamp": [now.isoformat()]}).to_csv(log, index=False)
    purged = runner.invoke(app, ["data", "purge", str(log), "--pack", "eu-gdpr-dsa", "--database-url", db_url, "--json"])
    assert purged.exit_code == 0, purged.output
    seq = json.loads(purged.stdout)["trail_seq"]
    store = open_store(db_url)
    try:
        with store.session() as session:
            if edit == "widened":
                wide = json.dumps({"days": 100000, "pack": "eu-gdpr-dsa 1", "trail_seq": seq})
                session.execute(update(StoreMeta).where(StoreMeta.key == RETENTION_KEY).values(value=wide))
            else:
                session.execute(delete(StoreMeta).where(StoreMeta.key == RETENTION_KEY))
        with store.session() as session, caplog.at_level("ERROR", logger="audits.outcomes"):
            assert retention_window(session)["days"] == 730  # type: ignore[index]
        assert "does not match the last data.purged event" in caplog.text
        with pytest.raises(DataError, match=r"events\[0\].*730 days under eu-gdpr-dsa"):
            record_feedback(store, [{"subject": "fb-meta-1", "item": "i1", "kind": "click", "time": past}])
        assert _outcomes(store) == 0
    finally:
        store.close()
    path = tmp_path / "late.csv"
    path.write_text(f"subject,item,kind,time\nfb-meta-2,i1,click,{past}\n")
    done = runner.invoke(app, ["feedback", "import", str(path), "--database-url", db_url, "--json"])
    assert done.exit_code == 1, done.output
    doc = json.loads(done.stdout)
    assert (doc["added"], doc["invalid"]) == (0, 1) and "730 days" in doc["problems"][0]["reason"]
    # a purge that finds nothing records the window again, so the row says what the trail does
    again = runner.invoke(app, ["data", "purge", str(log), "--pack", "eu-gdpr-dsa", "--database-url", db_url, "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["trail_seq"] > seq
    store = open_store(db_url)
    try:
        with store.session() as session:
            from audits.outcomes import retention_window_recorded

            assert retention_window_recorded(session)
    finally:
        store.close()


def test_a_key_named_twice_or_lines_before_the_header_are_handled_at_their_lines(store: Store, tmp_path: Path) -> None:
    """The consent import's readers: a JSON Lines object naming a key twice is refused at its line, naming the key;
    blank lines and Excel's ``sep=;`` before a CSV header are skipped, the separator honoured, lines counted as in the file."""
    event = '"item": "i1", "kind": "click", "time": "2026-01-01T00:00:00Z"'
    twice = tmp_path / "twice.jsonl"
    twice.write_text(f'{{"subject": "fb-tw-1", {event}}}\n{{"subject": "fb-tw-2", {event}, "kind": "conversion"}}\n', encoding="utf-8")
    report = import_feedback(store, twice)
    assert [(p.position, p.field, p.reason.split(":")[0]) for p in report.problems] == [(2, "json", "the key 'kind' appears more than once in the object")]
    assert report.added == 1
    excel = tmp_path / "excel.csv"
    excel.write_bytes(b'\xef\xbb\xbfsep=;\r\n\r\nsubject;item;kind;time\r\nfb-xl-1;i1;click;2026-01-01T00:00:00Z\r\nfb-xl-1;i1;nope;2026-01-01T00:00:00Z\r\n')
    report = import_feedback(store, excel)
    assert (report.added, [(p.position, p.field) for p in report.problems]) == (1, [(5, "kind")])
    assert _outcomes(store) == 2


def test_a_tsv_file_is_read_tab_separated_as_a_consent_export_is(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "events.tsv"
    path.write_text("subject\titem\tkind\ttime\nfb-tsv-1\ti1\tclick\t2026-01-01T00:00:00Z\n", encoding="utf-8")
    assert import_feedback(store, path).added == 1
    path.write_text("subject;item;kind;time\nfb-tsv-2;i1;click;2026-01-01T00:00:00Z\n", encoding="utf-8")
    assert import_feedback(store, path, mapping=FeedbackMapping(delimiter=";")).added == 1  # unless the mapping says otherwise
