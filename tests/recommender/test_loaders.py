"""Loaders: MovieLens-100K layout and CSV/Parquet logs, with every broken input refused clearly."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recommender import DataError
from recommender.loaders import ColumnMapping, load_data, load_event_log, load_movielens_100k

UDATA = "1\t10\t5\t881250949\n1\t20\t3\t881250950\n2\t10\t4\t891717742\n3\t30\t1\t878887116\n"
UUSER = "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n"
GENRES = "|".join(["0"] * 18)


def uitem(n: int, title: str) -> str:
    return f"{n}|{title}|01-Jan-1995||http://example.invalid/{n}|1|{GENRES}\n"


@pytest.fixture
def ml_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ml-100k"
    d.mkdir()
    (d / "u.data").write_text(UDATA, encoding="ascii")
    (d / "u.user").write_text(UUSER, encoding="latin-1")
    # latin-1 title: the real u.item is latin-1, not UTF-8
    (d / "u.item").write_bytes((uitem(10, "Caf\xe9 (1995)") + uitem(20, "B (1996)") + uitem(30, "C (1997)")).encode("latin-1"))
    return d


def test_movielens_directory_loads_with_latin1_titles(ml_dir: Path) -> None:
    data = load_movielens_100k(ml_dir)
    ev = data.events
    assert len(ev) == 4
    assert ev["user_id"].astype(str).tolist() == ["1", "1", "2", "3"]
    assert ev["value"].tolist() == [5.0, 3.0, 4.0, 1.0]
    assert (ev["event_type"].astype(str) == "rating").all()
    assert ev["timestamp"].iloc[0] == pd.Timestamp(881250949, unit="s", tz="UTC")
    assert data.items.loc["10", "title"] == "Café (1995)"
    assert data.items.loc["10", "categories"] == "unknown"
    assert data.users.loc["2", "gender"] == "F"
    assert load_data(ml_dir).n_events == 4


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "u.data: the file is empty; expected tab-separated lines 'user item rating timestamp'"),
        (b"1,10,5,881250949\n", "u.data line 1: expected 4 tab-separated fields (user item rating timestamp), found 1"),
        (b"1\t10\t5\n", "u.data line 1: expected 4 tab-separated fields (user item rating timestamp), found 3"),
        (b"1\t10\t5\t881250949\n1\t10\tgood\t881250949\n", "u.data line 2: rating 'good' is not a number"),
        (b"1\t10\t9\t881250949\n", "u.data line 1: rating '9' is outside 1..5"),
        ("1\t10\t5\t881250949\n".encode("utf-16"), "u.data: not a text file in the expected encoding (ascii); it contains NUL bytes"),
        ("1\t10\t5\t88125094\xe9\n".encode("latin-1"), "u.data line 1: byte 0xe9 at offset 15 cannot be decoded as ascii"),
    ],
    ids=["empty", "wrong-delimiter", "missing-column", "non-numeric-rating", "rating-range", "utf16", "wrong-encoding"],
)
def test_broken_udata_names_file_line_and_problem(tmp_path: Path, content: bytes, expected: str) -> None:
    d = tmp_path / "ml"
    d.mkdir()
    (d / "u.data").write_bytes(content)
    with pytest.raises(DataError) as info:
        load_movielens_100k(d)
    message = str(info.value)
    assert "\n" not in message
    assert expected in message
    assert str(d / "u.data") in message


def test_broken_uitem_is_located(ml_dir: Path) -> None:
    (ml_dir / "u.item").write_bytes(b"10|A|01-Jan-1995||url|1|0\n")
    with pytest.raises(DataError, match=r"u\.item line 1: expected 24 pipe-separated fields"):
        load_movielens_100k(ml_dir)


def test_directory_without_udata(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="a directory without u.data"):
        load_data(tmp_path)
    with pytest.raises(DataError, match="no such file or directory"):
        load_data(tmp_path / "missing")


def test_csv_log_with_mapping(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("uid;sku;when;kind;secs\na;x;2024-01-01T10:00:00Z;view;12.5\nb;y;2024-01-01T11:00:00+01:00;click;\n")
    mapping = ColumnMapping.parse("user_id=uid,item_id=sku,timestamp=when,event_type=kind,value=secs,delimiter=;")
    data = load_event_log(path, mapping)
    ev = data.events
    assert ev["user_id"].astype(str).tolist() == ["a", "b"]
    assert ev["event_type"].astype(str).tolist() == ["view", "click"]
    assert ev["value"].iloc[0] == 12.5 and np.isnan(ev["value"].iloc[1])
    assert ev["timestamp"].iloc[1] == pd.Timestamp("2024-01-01T10:00:00Z")


def test_parquet_log_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "x"], "timestamp": [1700000000, 1700000100]}).to_parquet(path)
    data = load_event_log(path)
    assert data.n_events == 2
    assert (data.events["event_type"].astype(str) == "view").all()


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", None])
def test_parquet_log_with_a_real_time_column_keeps_its_times(tmp_path: Path, tz: str | None) -> None:
    # A datetime column must not be read as a number of seconds (which silently gave NaT).
    path = tmp_path / "log.parquet"
    times = pd.to_datetime(["2024-06-01 10:00", "2024-06-02 11:30"])
    times = times.tz_localize(tz) if tz else times
    pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": times}).to_parquet(path)
    got = load_event_log(path).events.sort_values("user_id")["timestamp"]
    expected = times.tz_convert("UTC") if tz else times.tz_localize("UTC")
    assert got.notna().all()
    assert list(got) == list(expected)


def test_seconds_no_time_can_hold_are_refused_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    path.write_text("user_id,item_id,timestamp\na,x,1700000000\nb,y,99999999999999999\n")
    with pytest.raises(DataError, match="line 3: timestamp '99999999999999999' is not a time"):
        load_event_log(path)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("e.csv", "", "the file is empty"),
        ("w.csv", "user_id;item_id;timestamp\na;x;1\n", "missing column(s) user_id (for user_id)"),
        ("m.csv", "user_id,item_id\na,x\n", "missing column(s) timestamp (for timestamp)"),
        ("v.csv", "user_id,item_id,timestamp,value\na,x,1,3\nb,y,2,lots\n", "line 3: value 'lots' is not a number"),
        ("n.csv", "user_id,item_id,timestamp,value\na,x,1,3\nb,y,2,nan\n", "line 3: value 'nan' is not a number"),
        ("i.csv", "user_id,item_id,timestamp,value\na,x,1,3\nb,y,2,inf\n", "line 3: value 'inf' is not a finite number"),
        ("j.csv", "user_id,item_id,timestamp,value\na,x,1,-Infinity\n", "line 2: value '-Infinity' is not a finite number"),
        ("k.csv", "user_id,item_id,timestamp,value\na,x,1,3\nb,y,2,1e999\n", "line 3: value '1e999' is not a finite number"),
        ("t.csv", "user_id,item_id,timestamp\na,x,yesterday\n", "line 2: timestamp 'yesterday' is not a time"),
        ("p.parquet", "not parquet", "not a readable Parquet file"),
        ("x.json", "{}", "unsupported file type '.json'"),
    ],
)
def test_broken_logs_give_one_located_line(tmp_path: Path, name: str, content: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as info:
        load_event_log(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "content",
    [
        "user_id,user_id,item_id,timestamp\na,b,x,1\n",
        "\ufeffuser_id,item_id,timestamp, user_id\na,x,1,b\n",
    ],
)
def test_a_column_named_twice_in_the_header_is_refused(tmp_path: Path, content: str) -> None:
    """Regression: pandas renamed the second 'user_id' to 'user_id.1' and the log loaded from the first, silently."""
    from recommender.loaders import REPEATED_COLUMN

    path = tmp_path / "dup.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_event_log(path)
    assert str(info.value) == REPEATED_COLUMN.format(path=path, column="user_id", times=2)


def test_a_huge_bad_cell_is_cut_in_the_message(tmp_path: Path) -> None:
    """Regression: a timestamp cell megabytes long came back whole in the one-line error."""
    path = tmp_path / "huge.csv"
    path.write_text("user_id,item_id,timestamp\na,x," + "9" * 5_000 + "\n")
    with pytest.raises(DataError) as info:
        load_event_log(path)
    message = str(info.value)
    assert len(message) < 300 and "line 2: timestamp '999" in message and "(5,000 characters)" in message


def test_wrong_delimiter_hints_at_it(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("user_id;item_id;timestamp\na;x;1\n")
    with pytest.raises(DataError, match=r"is the delimiter right\?"):
        load_event_log(path)


def test_bad_mapping_text() -> None:
    with pytest.raises(DataError, match="--map: unknown field"):
        ColumnMapping.parse("user=uid")
    with pytest.raises(DataError, match="is not of the form field=column"):
        ColumnMapping.parse("uid")


@pytest.mark.parametrize(
    ("parse", "text", "says"),
    [
        ("events", "user_id=uid,user_id=customer", "--map: the field 'user_id' is given twice"),
        ("items", "item_id=sku, item_id =id", "--items-map: the field 'item_id' is given twice"),
        ("consent", "subject=a,subject=b", "--map: the field 'subject' is given twice"),
        ("synthetic", "synthetic:n_users=50,seed=1,n_users=60", "'n_users' is given twice"),
        ("synthetic", "synthetic:n_users=50,group_activity=F:1;F:3;M:1", "group_activity: 'F' is given twice"),
        ("synthetic", "synthetic:n_users=50,bot_styles=scraper;scraper", "bot_styles: an entry is given twice"),
    ],
)
def test_a_field_given_twice_in_an_option_is_refused_not_the_last_taken(parse: str, text: str, says: str) -> None:
    from governance.consent.import_table import ConsentImportMapping
    from recommender.item_table import ItemMapping
    from recommender.loaders import ColumnMapping, load_data

    call = {"events": ColumnMapping.parse, "items": ItemMapping.parse, "consent": ConsentImportMapping.parse, "synthetic": load_data}[parse]
    with pytest.raises(DataError, match=re.escape(says)):
        call(text)


def test_an_error_after_blank_lines_or_a_quoted_line_break_names_its_own_line(tmp_path: Path) -> None:
    """Regression: the line of a bad row was its position plus two, but pandas skips blank lines and a quoted
    field may hold a line break, so the error named a line above the bad one."""
    path = tmp_path / "gaps.csv"
    path.write_text('user_id,item_id,timestamp\n\nu1,i1,1700000000\n"u\n2",i2,1700000000\n\n   \nu3,i3,yesterday\n')
    with pytest.raises(DataError) as info:
        load_event_log(path)
    assert str(info.value) == f"{path} line 8: timestamp 'yesterday' is not a time (Unix seconds or ISO 8601)"
    path.write_text("\nuser_id,item_id,timestamp,value\r\nu1,i1,1700000000,3\r\n\r\nu2,i2,1700000001,lots\r\n")
    with pytest.raises(DataError, match=re.escape(f"{path} line 5: value 'lots' is not a number")):
        load_event_log(path)


@pytest.mark.parametrize("column", ["user_id", "item_id", "session_id"])
def test_a_parquet_list_cell_where_one_id_belongs_is_located(tmp_path: Path, column: str) -> None:
    """Regression: a Parquet list column read as user ids failed with "unhashable type: 'numpy.ndarray'"."""
    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["i", "j"], "timestamp": [1_700_000_000, 1_700_000_001],
                          "session_id": ["s", "t"]})  # fmt: skip
    frame[column] = [["x"], ["y", "z"]]
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    with pytest.raises(DataError) as info:
        load_event_log(path)
    assert str(info.value) == f"{path} row 1: {column} \"['x']\" is a list, not one value; expected text or a whole number"


@pytest.mark.parametrize(
    ("name", "write", "where", "shown"),
    [
        ("neg.csv", lambda p: p.write_text("user_id,item_id,timestamp\na,x,1700000000\nb,y,-86400\n"), "line 3", "'-86400'"),
        ("iso.csv", lambda p: p.write_text("user_id,item_id,timestamp\na,x,2024-01-01T00:00:00Z\nb,y,2024-01-02\nc,z,1969-07-20T20:17:00Z\n"),
         "line 4", "'1969-07-20T20:17:00Z'"),  # fmt: skip
        ("num.parquet", lambda p: pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [1700000000, -1]}).to_parquet(p),
         "row 2", "'-1'"),  # fmt: skip
        ("time.parquet", lambda p: pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"],
                                                 "timestamp": pd.to_datetime(["1965-01-01", "2024-01-01"])}).to_parquet(p),
         "row 1", "1965-01-01"),  # fmt: skip
    ],
)
def test_an_event_time_before_1970_is_refused_on_its_line(tmp_path: Path, name: str, write, where: str, shown: str) -> None:
    """A negative Unix time (a placeholder, a sign error, the wrong unit) is no event's time: it was read as 1969."""
    path = tmp_path / name
    write(path)
    with pytest.raises(DataError, match=re.escape(f"{path} {where}: timestamp ") + ".*" + re.escape(shown) + ".*before 1970-01-01"):
        load_event_log(path)
    path.unlink()
    if name.endswith(".csv"):  # the first second of 1970 is a time like any other
        path.write_text("user_id,item_id,timestamp\na,x,0\n")
        assert load_event_log(path).events["timestamp"].iloc[0] == pd.Timestamp(0, tz="UTC")


def test_movielens_100k_refuses_a_time_before_1970_on_its_line(ml_dir: Path) -> None:
    (ml_dir / "u.data").write_text("1\t10\t5\t881250949\n2\t20\t3\t-5\n", encoding="ascii")
    with pytest.raises(DataError, match=r"u\.data line 2.*timestamp"):
        load_movielens_100k(ml_dir)


@pytest.mark.parametrize(
    ("name", "write", "where", "shown"),
    [
        ("secs.csv", lambda p: p.write_text("user_id,item_id,timestamp\na,x,1700000000\nb,y,1700000000000\n"), "line 3", "'1700000000000'"),
        ("iso.csv", lambda p: p.write_text("user_id,item_id,timestamp\na,x,2024-01-01T00:00:00Z\nb,y,3000-01-01T00:00:00Z\n"),
         "line 3", "'3000-01-01T00:00:00Z'"),  # fmt: skip
        ("time.parquet", lambda p: pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"],
                                                 "timestamp": pd.to_datetime(["2024-01-01", "2500-01-01"]).as_unit("us")}).to_parquet(p),
         "row 2", "2500-01-01"),  # fmt: skip
    ],
)
def test_an_event_time_after_2262_is_refused_on_its_line(tmp_path: Path, name: str, write, where: str, shown: str) -> None:
    """Regression: a time past what a nanosecond clock holds (milliseconds read as seconds, a placeholder) loaded, and
    the erasure and retention rules then read it wrapped around (3000-01-01 as 1830-11-23)."""
    path = tmp_path / name
    write(path)
    with pytest.raises(DataError, match=re.escape(f"{path} {where}: timestamp ") + ".*" + re.escape(shown) + ".*after 2262-04-11"):
        load_event_log(path)


def test_event_times_refuse_a_time_they_cannot_hold_rather_than_wrap_it() -> None:
    """Regression: ``event_times`` cast microsecond times to nanoseconds unchecked: 3000-01-01 came back as 1830-11-23,
    so an erasure or a retention window judged the event by a time it does not have."""
    from recommender.data import event_times

    events = pd.DataFrame({"timestamp": pd.to_datetime(["2024-01-01", "3000-01-01"], utc=True).as_unit("us")})
    with pytest.raises(DataError, match=r"row 1 column timestamp .*3000-01-01.* after 2262-04-11"):
        event_times(events)
    assert event_times(events.iloc[:1]).tolist() == [pd.Timestamp("2024-01-01").value]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_blank_id_is_a_missing_id_not_a_person_named_by_blanks(tmp_path: Path, suffix: str) -> None:
    """Regression: an id of blanks (or an empty Parquet string) was read as the id "", one person whose history
    gathered every anonymous event, never reported as a missing id by validation."""
    from recommender.validate import validate_events

    frame = pd.DataFrame({"user_id": ["a", "   ", ""], "item_id": ["x", "y", " "], "timestamp": ["1700000000"] * 3})
    path = tmp_path / f"log{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    events = load_event_log(path).events
    assert events["user_id"].isna().tolist() == [False, True, True]
    assert events["item_id"].isna().tolist() == [False, False, True]
    codes = {f["code"]: f["count"] for f in validate_events(events).to_dict()["findings"]}
    assert codes["missing_user_id"] == 2 and codes["missing_item_id"] == 1


@pytest.mark.parametrize(
    ("content", "line", "found"),
    [
        ("user_id,item_id,timestamp\na,x,1700000000\nb,y,1700000001\nc,zz", 4, 2),  # cut off while written
        ("user_id,item_id,timestamp,value\na,x,1700000000,4\nb,1700000001,5\nc,z,1700000002,\n", 3, 3),  # a field missing
        ('user_id,item_id,timestamp\n"a,1",x,1700000000\n\n"b\n2",1700000001\n', 4, 2),  # quoted, over two lines
    ],
)
def test_a_csv_line_with_fewer_fields_than_the_header_is_refused_on_its_line(tmp_path: Path, content: str, line: int, found: int) -> None:
    """Regression: pandas pads a short line with empty fields, so a line cut off ("c,zz": item "zz", no time) or
    missing a field (the time read as the item) loaded as an event of another item at an unknown time."""
    path = tmp_path / "log.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=re.escape(f"{path} line {line}: {found} field(s) where the header names ")):
        load_event_log(path)


def test_an_empty_last_field_is_a_missing_value_not_a_short_line(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text('user_id,item_id,timestamp,value\na,x,1700000000,\n"b,2",y,1700000001,4\n')
    assert load_event_log(path).events["value"].isna().tolist() == [True, False]


@pytest.mark.parametrize("nested", [False, True], ids=["named-twice", "a-nested-field-shadowed"])
def test_a_parquet_column_named_twice_is_refused_in_one_line(tmp_path: Path, nested: bool) -> None:
    """Regression: a Parquet log naming a column twice failed with pyarrow's multi-line schema dump (its internal
    columns and all); a top-level ``profile.age`` beside a struct ``profile`` with a field ``age`` was read as two
    columns of one name, whichever pandas handed out first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"user_id": pa.array(["a", "b"]), "item_id": pa.array(["x", "y"]), "timestamp": pa.array([1_700_000_000, 1_700_000_001])}
    if nested:
        columns |= {"profile.age": pa.array([30, 40]), "profile": pa.StructArray.from_arrays([pa.array([31, 41])], names=["age"])}
        repeated = "profile.age"
    else:
        repeated = "user_id"
    names, arrays = list(columns), list(columns.values())
    if not nested:
        names, arrays = [*names, "user_id"], [*arrays, pa.array(["c", "d"])]
    path = tmp_path / "log.parquet"
    pq.write_table(pa.Table.from_arrays(arrays, names=names), path)
    with pytest.raises(DataError) as info:
        load_event_log(path)
    assert str(info.value) == f"{path}: the column {repeated!r} appears 2 times{' once nested fields are spread' if nested else ''}; name each column once"
