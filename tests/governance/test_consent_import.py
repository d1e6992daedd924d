"""Bulk consent import, on SQLite and PostgreSQL: every format, a mapping, bad rows located, broken files refused
whole, a second import adding nothing, and each batch anchored on the trail without a subject id."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import func, select
from tc_strings import tc_string

from audits import open_store, verify_trail
from audits.consent import consent_history, effective_consent
from audits.consent_import import IMPORT_ACTION
from audits.db import Store
from audits.models import ConsentRecordRow, TrailEvent
from governance.consent.evidence import MSG_MISSING, MSG_TC_UNREADABLE
from governance.consent.import_rows import BAD_TIME, FUTURE_TIME, NOT_IN_PACK, NOT_ONE_OF, PRE_EPOCH_TIME
from governance.consent.import_table import MISSING_COLUMN, ConsentImportMapping
from governance.consent.imports import import_consent
from governance.packs import resolve_pack
from governance.policy import load_pack
from recommender.errors import DataError

EU = load_pack(resolve_pack("eu-gdpr-dsa"))
VENDOR = 755
ALLOWS = tc_string(purposes={1, 5, 6}, vendors={VENDOR})
GOOD = [
    {"subject": "alice-20811", "purpose": "personalization", "status": "granted", "time": "2026-01-05T09:30:00Z", "source": "banner", "banner_version": "2025-11"},
    {"subject": "bob-3391177", "purpose": "personalization", "status": "withdrawn", "time": "2026-01-06T10:00:00+01:00", "source": "import", "banner_version": ""},
    {"subject": "carol-55120", "purpose": "analytics", "status": "opted_out", "time": "1767600000", "source": "gpc", "banner_version": ""},
]
SUBJECTS = [row["subject"] for row in GOOD]


def _write(tmp_path: Path, rows: list[dict[str, str]], suffix: str, name: str = "consent") -> Path:
    path = tmp_path / f"{name}.{suffix}"
    frame = pd.DataFrame(rows)
    if suffix == "csv":
        frame.to_csv(path, index=False)
    elif suffix == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    return path


def _count(store: Store) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(ConsentRecordRow))


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_each_format_imports_every_good_row(store: Store, tmp_path: Path, suffix: str) -> None:
    report = import_consent(store, _write(tmp_path, GOOD, suffix), pack=EU)
    assert (report.format, report.rows, report.valid, report.invalid, report.added) == (suffix, 3, 3, 0, 3)
    with store.session() as session:
        assert effective_consent(session, "alice-20811")["personalization"]["evidence"] == {"banner_version": "2025-11"}
        withdrawn = effective_consent(session, "bob-3391177")["personalization"]
        assert (withdrawn["status"], withdrawn["lawful_basis"]) == ("withdrawn", "consent")  # the pack's basis
        assert withdrawn["evidence"]["origin"].endswith(f"(sha256 {report.sha256})")  # the file is the origin
        assert withdrawn["recorded_at"].isoformat() == "2026-01-06T09:00:00+00:00"
        opted = effective_consent(session, "carol-55120")["analytics"]
        assert (opted["source"], opted["lawful_basis"], opted["recorded_at"].isoformat()) == ("gpc", "legitimate_interest", "2026-01-05T08:00:00+00:00")


def test_a_mapping_names_the_columns_as_text_or_yaml(store: Store, tmp_path: Path) -> None:
    renamed = [{"user_id": r["subject"], "why": r["purpose"], "state": r["status"], "ts": r["time"], "channel": "import"} for r in GOOD]
    path = _write(tmp_path, renamed, "csv")
    with pytest.raises(DataError) as missing:
        import_consent(store, path, pack=EU)
    assert str(missing.value) == MISSING_COLUMN.format(
        name=str(path), column="subject", field="subject", columns="user_id, why, state, ts, channel"
    )
    mapping = ConsentImportMapping.parse("subject=user_id,purpose=why,status=state,time=ts,source=channel")
    assert import_consent(store, path, pack=EU, mapping=mapping).added == 3
    yaml_file = tmp_path / "map.yaml"
    yaml_file.write_text("subject: user_id\npurpose: why\nstatus: state\ntime: ts\nsource: channel\n")
    assert ConsentImportMapping.from_option(str(yaml_file)) == mapping
    with pytest.raises(DataError, match="is not of the form field=column"):
        ConsentImportMapping.parse(str(yaml_file))  # a service never reads a file a caller names
    with pytest.raises(DataError, match="unknown field"):
        ConsentImportMapping.parse("user=user_id")


def test_bad_rows_are_reported_with_their_line_and_the_rest_imported(store: Store, tmp_path: Path) -> None:
    bad = [
        {**GOOD[0], "subject": "dave-771203", "purpose": "nonsense"},
        {**GOOD[0], "subject": "erin-281190", "status": "maybe"},
        {**GOOD[0], "subject": "frank-99120", "time": "2999-01-01T00:00:00Z"},
        {**GOOD[0], "subject": "gina-4410021", "banner_version": ""},
        {**GOOD[0], "subject": "hank-551020", "source": "tcf", "tc_string": "not-a-tc-string!"},
        {**GOOD[0], "subject": "ivan-3310092", "time": "yesterday"},
    ]
    rows = [*GOOD, *bad]
    for row in rows:
        row.setdefault("tc_string", "")
    path = _write(tmp_path, rows, "csv")
    report = import_consent(store, path, pack=EU)
    assert (report.valid, report.invalid, report.added) == (3, 6, 3)
    problems = [p.to_dict() for p in report.problems]
    assert problems == [
        {"line": 5, "field": "purpose", "reason": NOT_IN_PACK.format(value="nonsense", pack="eu-gdpr-dsa", listed="analytics, personalization")},
        {"line": 6, "field": "status", "reason": NOT_ONE_OF.format(field="status", value="maybe", allowed="granted, denied, withdrawn, opted_out, objected")},
        {"line": 7, "field": "time", "reason": FUTURE_TIME.format(value="2999-01-01T00:00:00Z")},
        {"line": 8, "field": "evidence", "reason": MSG_MISSING.format(source="banner", key="banner_version", what="the version of the consent dialogue the subject answered")},
        {"line": 9, "field": "evidence.tc_string", "reason": MSG_TC_UNREADABLE.format(detail=problems[4]["reason"].split(": ", 1)[1])},
        {"line": 10, "field": "time", "reason": BAD_TIME.format(value="yesterday")},
    ]
    assert all(row["subject"] not in json.dumps(problems) for row in rows)
    assert _count(store) == 3


@pytest.mark.parametrize("when", ["1900-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "-100", "-1"])
def test_a_time_before_1970_is_refused_at_its_line(store: Store, tmp_path: Path, when: str) -> None:
    """A placeholder date or a sign error is no moment anyone consented at: refused where it is, the rest imported."""
    rows = [*GOOD, {**GOOD[0], "subject": "olga-8812031", "time": when}]
    for row in rows:
        row.setdefault("tc_string", "")
    report = import_consent(store, _write(tmp_path, rows, "csv"), pack=EU)
    assert (report.valid, report.invalid, report.added) == (3, 1, 3)
    assert [p.to_dict() for p in report.problems] == [{"line": 5, "field": "time", "reason": PRE_EPOCH_TIME.format(value=when)}]
    assert _count(store) == 3


def test_a_tc_string_row_is_judged_under_the_pack_and_kept_with_its_decision(store: Store, tmp_path: Path) -> None:
    now = datetime.now(UTC).isoformat()  # a TC string is judged at the row's time: after the string was made
    row = {"subject": "tcf-subj-88123", "purpose": "personalization", "status": "granted", "time": now,
           "source": "tcf", "tc_string": ALLOWS, "vendor_id": str(VENDOR)}  # fmt: skip
    refused = {**row, "subject": "tcf-subj-88124", "vendor_id": ""}
    report = import_consent(store, _write(tmp_path, [row, refused], "jsonl"), pack=EU)
    assert report.added == 1 and [(p.position, p.field) for p in report.problems] == [(2, "evidence.vendor_id")]
    with store.session() as session:
        evidence = effective_consent(session, "tcf-subj-88123")["personalization"]["evidence"]
    assert evidence["tc_string"] == ALLOWS and evidence["vendor_id"] == VENDOR


def test_multiline_cells_and_blank_lines_keep_lines_exact(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "lines.csv"
    path.write_text(
        "subject,purpose,status,time,source,origin\n"
        'line2-subj-1,personalization,granted,2026-01-05T09:30:00Z,import,"a note\nover two lines"\n'
        "\n"
        "line5-subj-1,personalization,bogus,2026-01-05T09:30:00Z,import,crm\n"
    )
    report = import_consent(store, path, pack=EU)
    assert [p.position for p in report.problems] == [5] and report.added == 1


def test_a_line_that_is_no_row_is_refused_with_its_line_and_the_rest_imported(store: Store, tmp_path: Path) -> None:
    """A CMP export with a stray separator in one line, or a JSON Lines file with a cut line: that line is refused,
    located exactly (a quoted cell over two lines before it counted), and the good rows are imported."""
    csv_path = tmp_path / "stray.csv"
    csv_path.write_text(
        "subject,purpose,status,time\n"
        "stray-1,personalization,granted,2026-01-05T09:30:00Z\n"
        '"stray\n2",personalization,granted,2026-01-05T09:30:00Z\n'
        "stray-3,personalization,granted,2026-01-05T09:30:00Z,extra\n"
        "stray-4,personalization,granted,2026-01-05T09:30:00Z\n"
    )
    report = import_consent(store, csv_path, pack=EU)
    # the subject over two lines holds a control character: refused at the line it starts on, and so is line 5
    assert [(p.position, p.field) for p in report.problems] == [(3, "subject"), (5, "fields")]
    assert "5 values where the header names 4" in report.problems[1].reason
    assert (report.rows, report.added, report.invalid) == (4, 2, 2)
    jsonl_path = tmp_path / "cut.jsonl"
    good = '{"subject": "cut-%d", "purpose": "personalization", "status": "granted", "time": "2026-01-05T09:30:00Z"}\n'
    jsonl_path.write_text(good % 1 + '{"subject": "cut-2", "purp\n' + "[1, 2]\n" + good % 4)
    report = import_consent(store, jsonl_path, pack=EU)
    assert [(p.position, p.field) for p in report.problems] == [(2, "json"), (3, "json")]
    assert (report.rows, report.added, report.invalid) == (4, 2, 2)
    again = import_consent(store, jsonl_path, pack=EU)  # idempotent, broken lines and all
    assert (again.added, again.already_recorded, again.invalid) == (0, 2, 2)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty"),
        (b'[1, 2]\n"text"\n', "line 1: not a JSON object"),  # no line is an object: not JSON Lines at all
        (b'subject,purpose,status,time\n"unterminated,personalization,granted,2026-01-05T09:30:00Z\n', "not a readable CSV file"),
        (b"PAR1 not really", "not a readable Parquet file"),
    ],
)
def test_a_broken_file_is_one_located_error_and_writes_nothing(store: Store, tmp_path: Path, content: bytes, expected: str) -> None:
    kind = "jsonl" if b"[1" in content else "parquet" if content.startswith(b"PAR1") else "csv"
    path = tmp_path / f"broken.{kind}"
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected) as err:
        import_consent(store, path, pack=EU)
    assert str(err.value).startswith(str(path))
    assert _count(store) == 0


def test_importing_the_same_file_twice_adds_nothing(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD, "csv")
    first = import_consent(store, path, pack=EU, batch_size=2)
    second = import_consent(store, path, pack=EU, batch_size=2)
    assert (first.added, first.already_recorded, len(first.batches)) == (3, 0, 2)
    assert (second.added, second.already_recorded) == (0, 3)
    assert [b["trail_seq"] for b in second.batches] == [None, None]  # nothing new, no event
    assert _count(store) == 3


def test_each_batch_is_anchored_on_the_trail_with_counts_and_the_file_hash_never_a_subject(store: Store, tmp_path: Path) -> None:
    report = import_consent(store, _write(tmp_path, GOOD, "csv"), pack=EU, batch_size=2)
    with store.session() as session:
        events = session.scalars(select(TrailEvent).where(TrailEvent.action == IMPORT_ACTION).order_by(TrailEvent.seq)).all()
        records = session.execute(select(ConsentRecordRow.trail_seq)).scalars().all()
        history = consent_history(session, "alice-20811")
    payloads = [json.loads(e.payload) if isinstance(e.payload, str) else e.payload for e in events]
    assert [e.seq for e in events] == [b["trail_seq"] for b in report.batches]
    assert [(p["batch"], p["batches"], p["first_line"], p["last_line"], p["added"]) for p in payloads] == [(1, 2, 2, 3, 2), (2, 2, 4, 4, 1)]
    assert all(p["file_sha256"] == report.sha256 and p["pack"] == "eu-gdpr-dsa" for p in payloads)
    assert sorted(records) == [events[0].seq, events[0].seq, events[1].seq]
    assert history[0]["trail_seq"] == events[0].seq
    trail_text = json.dumps([[e.subject, e.objects, e.payload] for e in events])
    assert all(subject not in trail_text for subject in SUBJECTS)
    with store.engine.connect() as connection:
        assert verify_trail(connection).intact


def test_without_a_pack_each_row_needs_a_basis(db_url: str, tmp_path: Path) -> None:
    store = open_store(db_url)
    try:
        report = import_consent(store, _write(tmp_path, GOOD[:1], "csv"))
        assert [p.field for p in report.problems] == ["basis"] and report.added == 0
        report = import_consent(store, _write(tmp_path, [{**GOOD[0], "basis": "consent"}], "csv", "with-basis"))
        assert report.added == 1
    finally:
        store.close()


def test_an_erased_subjects_history_from_before_the_erasure_is_not_imported_again(store: Store, tmp_path: Path) -> None:
    """An erasure unlinks the person; importing their old history again would give it back to them."""
    from governance.privacy import erase_subject

    path = _write(tmp_path, GOOD, "csv")
    assert import_consent(store, path, pack=EU).added == 3
    erase_subject(store, "alice-20811", pack=EU, measure_carbon=False)
    report = import_consent(store, path, pack=EU)
    assert [(p.position, p.field, p.reason.split(";")[0].startswith("the subject was erased at")) for p in report.problems] == [(2, "time", True)]
    assert (report.added, report.already_recorded, report.invalid) == (0, 2, 1)
    with store.session() as session:
        assert all(r["source"] != "banner" for r in consent_history(session, "alice-20811"))


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_integer_subjects_beside_a_null_are_read_back_as_integers(store: Store, tmp_path: Path, suffix: str) -> None:
    """A column of integers with a null would be read as floats: 777 stored as "777.0", another person."""
    row = {"purpose": "personalization", "status": "withdrawn", "time": "2026-01-05T09:30:00Z"}
    path = tmp_path / f"ids.{suffix}"
    if suffix == "jsonl":
        path.write_text(json.dumps({"subject": 777, **row}) + "\n" + json.dumps({"subject": None, **row}) + "\n", encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        # as another tool writes it: an int64 column with a null, no pandas metadata to restore a nullable dtype
        pq.write_table(pa.table({"subject": pa.array([777, None], pa.int64()), **{k: [v, v] for k, v in row.items()}}), path)
    report = import_consent(store, path, pack=EU)
    assert (report.added, [(p.position, p.field) for p in report.problems]) == (1, [(2, "subject")])
    with store.session() as session:
        assert [r["status"] for r in consent_history(session, "777")] == ["withdrawn"]
        assert consent_history(session, "777.0") == []


def test_a_nested_subject_or_a_duplicated_column_is_refused_where_it_is(store: Store, tmp_path: Path) -> None:
    nested = tmp_path / "n.jsonl"
    nested.write_text(
        '{"subject": "ok-1", "purpose": "personalization", "status": "granted", "time": "2026-01-05"}\n'
        '{"subject": {"id": "secret-9"}, "purpose": "personalization", "status": "granted", "time": "2026-01-05"}\n',
        encoding="utf-8",
    )
    report = import_consent(store, nested, pack=EU)
    assert (report.added, [(p.position, p.field) for p in report.problems]) == (1, [(2, "subject")])
    assert report.problems[0].reason.startswith("the column 'subject' holds a JSON object") and "secret-9" not in str(report.to_dict())
    duplicated = tmp_path / "d.csv"
    duplicated.write_text("subject,purpose,status,time,subject\na-1,personalization,granted,2026-01-05,b-2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 1: the column 'subject' appears 2 times"):
        import_consent(store, duplicated, pack=EU)
    assert _count(store) == 1


def test_a_huge_bad_cell_is_cut_in_its_rows_reason(store: Store, tmp_path: Path) -> None:
    """Every bad row's reason is printed, kept in the report and answered by the API: a megabyte cell is cut."""
    huge = "9" * 1_000_000
    rows = [GOOD[0], {**GOOD[1], "time": huge}, {**GOOD[2], "status": "x" * 500}]
    report = import_consent(store, _write(tmp_path, rows, "csv"), pack=EU)
    reasons = {p.field: p.reason for p in report.problems}
    assert reasons["time"] == BAD_TIME.format(value="9" * 60).replace("'" + "9" * 60 + "'", "'" + "9" * 60 + "'... (1,000,000 characters)")
    assert "(500 characters)" in reasons["status"] and len(reasons["status"]) < 200
    assert report.added == 1


def test_the_garbage_collector_is_paused_during_an_import_and_on_again_after(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An import builds millions of short-lived objects: the cyclic collector waits until it ends (or fails)."""
    import gc

    import governance.consent.imports as imports

    seen: list[bool] = []
    real = imports.write_prepared_batch

    def watched(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, "write_prepared_batch", watched)
    path = tmp_path / "consent.csv"
    path.write_text("subject,purpose,status,time\nu-gc-000001,personalization,granted,2026-01-05T09:30:00Z\n")
    assert gc.isenabled()
    report = import_consent(store, path, pack=load_pack(resolve_pack("eu-gdpr-dsa")))
    assert report.added == 1 and seen == [False] and gc.isenabled()
    broken = tmp_path / "broken.csv"
    broken.write_text('subject,purpose\n"unterminated,personalization\n')
    with pytest.raises(DataError):
        import_consent(store, broken)
    assert gc.isenabled()


def _contents(store: Store) -> list[tuple[str, tuple[Any, ...]]]:
    """Every row of every table, less what the clock writes (times, and the trail hashes made over them)."""
    from sqlalchemy import inspect, text

    clocked = {"time", "hash", "prev_hash", "created_at", "updated_at", "at"}
    rows = []
    with store.engine.connect() as connection:
        schema = inspect(connection)
        for table in sorted(schema.get_table_names()):
            clock = clocked | ({"recorded_at"} if table == "online_store_outbox" else set())
            columns = [c["name"] for c in schema.get_columns(table) if c["name"] not in clock]
            if table == "signing_keys" or not columns:
                continue
            names = ", ".join(f'"{c}"' for c in columns)
            rows.extend((table, tuple(row)) for row in connection.execute(text(f'SELECT {names} FROM "{table}"')))
    return sorted(rows, key=repr)


def test_preparing_batches_ahead_stores_and_reports_exactly_what_batch_after_batch_does(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Batches prepared in a second thread (as if their subjects were new) end in the same rows, trail events and
    report as batches worked out one after the other from the store's answers: with subjects new to the store,
    subjects of an earlier batch (the store's secret wins), subjects imported before, a row repeated within a
    batch, bad rows, and the whole file again (nothing added)."""
    import random

    import audits.consent_import as consent_import

    earlier = [{"subject": f"old-{n:06d}", "purpose": "personalization", "status": "granted", "time": "2026-01-02T09:00:00Z", "source": "banner", "banner_version": "2025-10"} for n in range(3)]
    rows = []
    for n in range(23):
        subject = f"old-{n:06d}" if n % 7 == 0 else f"sub-{n % 11:06d}"  # before the import, and again in later batches
        rows.append({"subject": subject, "purpose": "personalization" if n % 3 else "analytics", "status": "denied" if n % 4 == 0 else "granted",
                     "time": f"2026-01-{3 + n % 5:02d}T10:{n:02d}:00Z", "source": "banner", "banner_version": f"2025-{1 + n % 9:02d}"})  # fmt: skip
    rows.insert(5, dict(rows[4]))  # the same row twice in one batch
    rows.insert(9, {**rows[8], "purpose": "telepathy"})  # a bad row
    before, path = _write(tmp_path, earlier, "csv", name="before"), _write(tmp_path, rows, "csv")
    other_url = f"sqlite:///{tmp_path / 'other.db'}" if store.engine.dialect.name == "sqlite" else request.getfixturevalue("postgres_url")
    other = open_store(other_url)
    try:
        outcomes = []
        for target, ahead in ((store, False), (other, True)):
            monkeypatch.setattr(consent_import, "_random_bytes", random.Random(7).randbytes)  # the same secrets and nonces
            reports = [import_consent(target, before, pack=EU, batch_size=2, prepare_ahead=ahead).to_dict()]
            reports += [import_consent(target, path, pack=EU, batch_size=4, prepare_ahead=ahead).to_dict() for _ in range(2)]
            outcomes.append((reports, _contents(target)))
        (sequential, stored), (ahead_reports, ahead_stored) = outcomes
        assert [r["added"] for r in sequential] == [3, 23, 0] and sequential[1]["problems"] and len(sequential[1]["batches"]) == 6
        assert ahead_reports == sequential
        assert ahead_stored == stored and sum(1 for table, _ in stored if table == "consent_records") == 26
        with other.engine.connect() as connection:
            assert verify_trail(connection).intact
    finally:
        other.close()


@pytest.mark.parametrize("ahead", [False, True, None])
def test_a_batch_that_fails_to_prepare_stops_the_import_after_the_batches_before_it(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ahead: bool | None
) -> None:
    """An error preparing a batch (in the second thread, or in turn) is raised as itself once the batches before it
    are written, and nothing of it or after it is; importing the file again finishes the import. By default,
    batches are prepared ahead on PostgreSQL only."""
    import threading

    import governance.consent.imports as imports

    real = imports.prepare_consent_batch
    threads: list[str] = []

    def failing(batch: pd.DataFrame, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        if "sub-000003" in set(batch["subject"]):
            raise ValueError("the fourth batch cannot be prepared")
        return real(batch, **kwargs)

    rows = [{"subject": f"sub-{n:06d}", "purpose": "personalization", "status": "granted", "time": "2026-01-05T09:30:00Z"} for n in range(5)]
    path = _write(tmp_path, rows, "csv")
    monkeypatch.setattr(imports, "prepare_consent_batch", failing)
    with pytest.raises(ValueError, match="the fourth batch cannot be prepared"):
        import_consent(store, path, pack=EU, batch_size=1, prepare_ahead=ahead)
    assert _count(store) == 3  # batches 1 to 3
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(TrailEvent).where(TrailEvent.action == IMPORT_ACTION)) == 3
    in_thread = ahead if ahead is not None else store.engine.dialect.name == "postgresql"
    assert all(name.startswith("consent-import-prepare") for name in threads) == in_thread
    monkeypatch.setattr(imports, "prepare_consent_batch", real)
    report = import_consent(store, path, pack=EU, batch_size=1, prepare_ahead=ahead)
    assert (report.added, report.already_recorded, _count(store)) == (2, 3, 5)


@pytest.mark.parametrize("newline", ["\r", "\r\n"])
def test_a_csv_with_old_mac_or_windows_line_ends_keeps_its_lines_exact(store: Store, tmp_path: Path, newline: str) -> None:
    """Lines ending in a lone CR (an old Mac tool's export) or CRLF: read, not refused whole, and each refused row
    at its own line, a quoted cell over two lines before it counted."""
    path = tmp_path / "cr.csv"
    text = (
        "subject,purpose,status,time\n"
        "cr-subj-1,personalization,granted,2026-01-05T09:30:00Z\n"
        'cr-subj-2,personalization,granted,2026-01-05T09:30:00Z,"extra\nover two lines"\n'
        "cr-subj-4,personalization,bogus,2026-01-05T09:30:00Z\n"
        "cr-subj-5,personalization,granted,2026-01-05T09:30:00Z\n"
    )
    path.write_bytes(text.replace("\n", newline).encode())
    report = import_consent(store, path, pack=EU)
    assert [(p.position, p.field) for p in report.problems] == [(3, "fields"), (5, "status")]
    assert (report.rows, report.added, report.invalid) == (4, 2, 2)
    quoted = tmp_path / "cr-quoted.csv"
    quoted.write_bytes(
        ('subject,purpose,status,time,origin\ncr-q-1,personalization,granted,2026-01-05T09:30:00Z,"a\nb"\n'
         "cr-q-3,personalization,bogus,2026-01-05T09:30:00Z,crm\n").replace("\n", newline).encode()
    )  # fmt: skip
    assert [p.position for p in import_consent(store, quoted, pack=EU).problems] == [4]


def test_a_jsonl_export_with_a_byte_order_mark_keeps_its_first_record(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    first = {"subject": "bom-subj-1", "purpose": "personalization", "status": "granted", "time": "2026-01-05T09:30:00Z"}
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(first) + "\r\n\r\n" + json.dumps({**first, "subject": "bom-subj-3", "status": "x"}) + "\r\n").encode())
    report = import_consent(store, path, pack=EU)
    assert (report.added, [(p.position, p.field) for p in report.problems]) == (1, [(3, "status")])


def test_parquet_nulls_lists_and_binary_columns_are_read_as_the_values_they_are(store: Store, tmp_path: Path) -> None:
    """A null subject in a string column is that row's fault, not the file's; a binary column of ids is their text
    (not ``b'...'``); a list column is refused at its row, never stored as its repr."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = {"purpose": ["personalization"] * 3, "status": ["granted"] * 3, "time": ["2026-01-05T09:30:00Z"] * 3}
    nulls = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"subject": pa.array(["pq-null-1", None, "pq-null-3"], pa.string()), **row}), nulls)
    report = import_consent(store, nulls, pack=EU)
    assert (report.added, [(p.position, p.field) for p in report.problems]) == (2, [(2, "subject")])
    binary = tmp_path / "binary.parquet"
    pq.write_table(pa.table({"subject": pa.array([b"pq-bin-1", None, b"pq-bin-3"], pa.binary()), **row}), binary)
    report = import_consent(store, binary, pack=EU)
    assert (report.added, [(p.position, p.field) for p in report.problems]) == (2, [(2, "subject")])
    with store.session() as session:
        assert effective_consent(session, "pq-bin-1")["personalization"]["status"] == "granted"
        assert effective_consent(session, "b'pq-bin-1'") == {}
    pq.write_table(pa.table({"subject": pa.array([b"pq-bin-4", b"\xff\xfe"], pa.binary()), **{k: v[:2] for k, v in row.items()}}), binary)
    with pytest.raises(DataError, match=r"row 2: the column 'subject' is binary and its value is not UTF-8"):
        import_consent(store, binary, pack=EU)
    listed = tmp_path / "listed.parquet"
    pq.write_table(pa.table({"subject": pa.array([["pq-list-1"], ["pq-list-2"], None]), **row}), listed)
    report = import_consent(store, listed, pack=EU)
    assert ([(p.position, p.field) for p in report.problems], report.added) == ([(1, "subject"), (2, "subject"), (3, "subject")], 0)
    assert [p.reason.split(";")[0] for p in report.problems[:2]] == ["the column 'subject' holds a JSON array"] * 2
    with store.session() as session:
        assert effective_consent(session, "['pq-list-1']") == {}


def test_two_importers_racing_on_new_subjects_file_one_key_each_and_seal_under_the_filed_one(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two imports at once, in two threads, of files about the same subjects, new to the store. The second prepared
    its batch as if they were new; the first files their secrets and record keys meanwhile and commits while the
    second waits on the store. The second then finds both filed: its records go under the first one's pseudonyms,
    sealed under the record keys it finds filed, and only its truly new subject gets keys of its own."""
    import threading

    import audits.consent_import as consent_import
    import governance.consent.imports as imports

    shared = [f"race-{n:06d}" for n in range(4)]
    row = {"purpose": "personalization", "status": "granted", "source": "import", "origin": "crm"}
    first = _write(tmp_path, [{"subject": s, **row, "time": "2026-01-05T09:30:00Z"} for s in shared], "csv", name="first")
    second = _write(
        tmp_path, [{"subject": s, **row, "time": "2026-01-06T09:30:00Z", "origin": "cmp"} for s in [*shared, "race-new-0001"]], "csv", name="second"
    )
    first_holds_keys, second_writes = threading.Event(), threading.Event()
    real_write, real_event, real_find = imports.write_prepared_batch, consent_import.append_event, consent_import.find_record_keys
    found_by: list[str] = []

    def write(session: Any, prepared: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "second":
            assert first_holds_keys.wait(30)
            second_writes.set()  # then waits on the store's lock (PostgreSQL: the trail head; SQLite: the writer's)
        return real_write(session, prepared, **kwargs)

    def append_event(session: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "first":  # the secrets and record keys are filed, not committed yet
            first_holds_keys.set()
            assert second_writes.wait(30)
            threading.Event().wait(0.5)  # the second is at the lock by now
        return real_event(session, **kwargs)

    def find_record_keys(session: Any, *args: Any) -> Any:
        found_by.append(threading.current_thread().name)
        return real_find(session, *args)

    monkeypatch.setattr(imports, "write_prepared_batch", write)
    monkeypatch.setattr(consent_import, "append_event", append_event)
    monkeypatch.setattr(consent_import, "find_record_keys", find_record_keys)
    reports: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run(name: str, path: Path) -> None:
        try:
            reports[name] = import_consent(store, path, pack=EU, prepare_ahead=True)
        except BaseException as err:  # noqa: BLE001 - said by the test below
            errors.append(err)
            first_holds_keys.set()
            second_writes.set()

    threads = [threading.Thread(target=run, args=(n, p), name=n) for n, p in (("first", first), ("second", second))]
    threads[0].start()
    # The second starts once the first holds its batch's transaction (on SQLite, the write lock): its reads before
    # its own batch must not wait for that lock, or the two would wait on each other.
    assert first_holds_keys.wait(30)
    threads[1].start()
    for thread in threads:
        thread.join(60)
    assert not errors and not any(t.is_alive() for t in threads)
    assert (reports["first"].added, reports["second"].added, reports["second"].already_recorded) == (4, 5, 0)
    assert found_by == ["second"]  # the record keys filed meanwhile were read back, not the derived ones assumed
    from audits.models import SubjectSecret
    from audits.subjects import pseudonym

    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(SubjectSecret)) == 2 * 5  # a secret and a record key each
        for subject in shared:
            history = consent_history(session, subject)
            assert sorted(r["evidence"]["origin"] for r in history) == ["cmp", "crm"]
            who = pseudonym(session, subject)
            assert session.scalar(select(func.count()).where(ConsentRecordRow.subject == who)) == 2
        assert session.scalar(select(func.count(func.distinct(ConsentRecordRow.subject)))) == 5
    with store.engine.connect() as connection:
        from audits.consent_verify import verify_consent_records

        assert verify_consent_records(connection) == []
        assert verify_trail(connection).intact
    assert import_consent(store, second, pack=EU).already_recorded == 5


def test_a_boolean_or_a_scaled_decimal_subject_is_refused_where_it_is(store: Store, tmp_path: Path) -> None:
    """Their text is not the id: every ``true`` would be one person called 'True', and a decimal(10,2) 777 would be
    '777.00'. A decimal without a scale (a big integer as some tools write it) is the id."""
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    row = {"purpose": "personalization", "status": "granted", "time": "2026-01-05T09:30:00Z"}
    booleans = tmp_path / "booleans.jsonl"
    booleans.write_text(json.dumps({"subject": "bool-ok-1", **row}) + "\n" + json.dumps({"subject": True, **row}) + "\n", encoding="utf-8")
    report = import_consent(store, booleans, pack=EU)
    assert (report.added, [(p.position, p.field) for p in report.problems]) == (1, [(2, "subject")])
    assert report.problems[0].reason.startswith("the column 'subject' holds a boolean")
    columns = {k: [v, v] for k, v in row.items()}
    scaled = tmp_path / "scaled.parquet"
    pq.write_table(pa.table({"subject": pa.array([None, Decimal("777")], pa.decimal128(10, 2)), **columns}), scaled)
    report = import_consent(store, scaled, pack=EU)
    assert [p.position for p in report.problems] == [1, 2] and report.problems[1].reason.startswith("the column 'subject' holds a decimal with a scale")
    flags = tmp_path / "flags.parquet"
    pq.write_table(pa.table({"subject": pa.array([False, True]), **columns}), flags)
    report = import_consent(store, flags, pack=EU)
    assert [(p.position, p.reason.split(" (")[0]) for p in report.problems] == [(1, "the column 'subject' holds a boolean"), (2, "the column 'subject' holds a boolean")]
    assert _count(store) == 1
    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.table({"subject": pa.array([Decimal("12345678901234567890"), None], pa.decimal128(20, 0)), **columns}), whole)
    assert import_consent(store, whole, pack=EU).added == 1
    with store.session() as session:
        assert effective_consent(session, "12345678901234567890")["personalization"]["status"] == "granted"


def test_a_first_row_wider_than_the_header_is_refused_at_its_line_and_the_rest_imported(store: Store, tmp_path: Path) -> None:
    """The parser, seeing more values on the first row than the header names, would refuse the whole file (or cut
    every row as wide to the header, their last values lost): that row is refused at its line, as one further down."""
    path = tmp_path / "wide.csv"
    path.write_text(
        "subject,purpose,status,time\n"
        "wide-subj-1,personalization,granted,2026-01-05T09:30:00Z,stray\n"
        "wide-subj-2,personalization,granted,2026-01-05T09:30:00Z\n"
        '"wide\nsubj-3",personalization,granted,2026-01-05T09:30:00Z,stray\n'
        "wide-subj-5,personalization,bogus,2026-01-05T09:30:00Z\n"
        "wide-subj-6,personalization,granted\n"
        "wide-subj-7,personalization,granted,2026-01-05T09:30:00Z\n"
    )
    report = import_consent(store, path, pack=EU)
    assert [(p.position, p.field) for p in report.problems] == [(2, "fields"), (4, "fields"), (6, "status"), (7, "time")]
    assert (report.rows, report.added, report.invalid) == (6, 2, 4)
    assert [b["first_line"] for b in report.batches] == [3]
    with store.session() as session:
        assert effective_consent(session, "wide-subj-1") == {}
        assert effective_consent(session, "wide-subj-7")["personalization"]["status"] == "granted"


def test_a_file_named_tsv_is_read_tab_separated_unless_a_delimiter_is_mapped(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "export.tsv"
    path.write_text("subject\tpurpose\tstatus\ttime\ntsv-subj-1\tpersonalization\tgranted\t2026-01-05T09:30:00Z\ntsv-subj-2\tpersonalization\tbogus\t2026-01-05T09:30:00Z\n")
    report = import_consent(store, path, pack=EU)
    assert (report.added, [(p.position, p.field) for p in report.problems]) == (1, [(3, "status")])
    with pytest.raises(DataError, match="no column 'subject'"):
        import_consent(store, path, pack=EU, mapping=ConsentImportMapping.parse("delimiter=;"))
    path.write_text("subject;purpose;status;time\ntsv-subj-3;personalization;granted;2026-01-05T09:30:00Z\n")
    assert import_consent(store, path, pack=EU, mapping=ConsentImportMapping.parse("delimiter=;")).added == 1


def test_a_jsonl_object_naming_a_key_twice_is_refused_at_its_line(store: Store, tmp_path: Path) -> None:
    """A parser keeps the last of two values silently: which one the export meant is unknown, so the line is refused,
    naming the key (at any depth, written plainly or escaped), and the other lines imported."""
    row = '"purpose": "personalization", "status": "granted", "time": "2026-01-05T09:30:00Z"'
    path = tmp_path / "twice.jsonl"
    path.write_text(
        f'{{"subject": "twice-1", {row}}}\n'
        f'{{"subject": "twice-2", {row}, "subject": "twice-3"}}\n'
        f'{{"subject": "twice-4", {row}, "status": "withdrawn"}}\n'
        f'{{"subject": "twice-5", {row}, "\\u0073ubject": "twice-6"}}\n'
        f'{{"subject": "twice-7", {row}, "extra": {{"k": 1, "k": 2}}}}\n'
        f'{{"subject": "twice-8", {row}, "note": "subject \\"subject\\""}}\n',
        encoding="utf-8",
    )
    report = import_consent(store, path, pack=EU)
    assert [(p.position, p.field, p.reason.split(":")[0]) for p in report.problems] == [
        (2, "json", "the key 'subject' appears more than once in the object"), (3, "json", "the key 'status' appears more than once in the object"),
        (4, "json", "the key 'subject' appears more than once in the object"), (5, "json", "the key 'k' appears more than once in the object"),
    ]  # fmt: skip
    assert (report.added, report.invalid) == (2, 4) and "twice-3" not in str(report.to_dict())
    with store.session() as session:
        assert consent_history(session, "twice-3") == [] and len(consent_history(session, "twice-8")) == 1


@pytest.mark.parametrize(
    ("preamble", "delimiter", "first"),
    [("\n\n", ",", 4), ("sep=;\n", ";", 3), ('\ufeff"sep=;"\r\n\r\n', ";", 4), ("sep=,\n", ",", 3), ("\r\nsep=|\r\n", "|", 4)],
)
def test_blank_lines_and_an_excel_sep_line_before_the_header_are_skipped(
    store: Store, tmp_path: Path, preamble: str, delimiter: str, first: int
) -> None:
    """Excel writes ``sep=;`` above the header for its locale; some exports start with blank lines. The header is the
    first other line, the separator the one ``sep=`` names, and each line is still counted as it is in the file."""
    rows = ["subject,purpose,status,time", "pre-1,personalization,granted,2026-01-05T09:30:00Z", "pre-2,personalization,maybe,2026-01-05T09:30:00Z"]
    path = tmp_path / "pre.csv"
    newline = "\r\n" if "\r" in preamble else "\n"
    path.write_bytes((preamble + newline.join(r.replace(",", delimiter) for r in rows) + newline).encode("utf-8"))
    report = import_consent(store, path, pack=EU)
    assert (report.added, [(p.position, p.field) for p in report.problems]) == (1, [(first + 1, "status")])
    with store.session() as session:
        assert effective_consent(session, "pre-1")["personalization"]["status"] == "granted"
    given = import_consent(store, path, pack=EU, mapping=ConsentImportMapping(delimiter=delimiter))  # the same, said twice
    assert (given.already_recorded, [p.position for p in given.problems]) == (1, [first + 1])


def test_a_header_after_skipped_lines_is_located_at_its_own_line(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("sep=;\n\nsubject;purpose;status;time;subject\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 3: the column 'subject' appears 2 times"):
        import_consent(store, path, pack=EU)
    path.write_text("sep=;\n\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"the file is empty"):
        import_consent(store, path, pack=EU)
    assert _count(store) == 0
