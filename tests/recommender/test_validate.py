"""Validation of raw event logs: one hand-made case per finding, malformed input, the report."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recommender.data import Dataset
from recommender.errors import ConfigError, DataError
from recommender.bots import BOT_REASONS
from recommender.validate import CODES, MESSAGES, MISSING_COLUMNS, Finding, ValidationReport, validate_events

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2024, 6, 1, tzinfo=UTC)


def base() -> pd.DataFrame:
    """Ten clean events: five users, human pace, one rating per user, in range."""
    return pd.DataFrame(
        {
            "user_id": ["alice@example.com", "bob", "carol", "dan", "erin"] * 2,
            "item_id": [f"i{n}" for n in range(10)],
            "event_type": [
                "view",
                "click",
                "rating",
                "purchase",
                "add_to_cart",
                "rating",
                "view",
                "click",
                "rating",
                "rating",
            ],
            "value": [12.0, np.nan, 4.0, np.nan, np.nan, 5.0, 30.5, np.nan, 1.0, 3.0],
            "timestamp": pd.to_datetime([T0 + timedelta(minutes=7 * n) for n in range(10)], utc=True),
            "session_id": [f"s{n % 5}" for n in range(10)],
        }
    )


def tables(events: pd.DataFrame) -> Dataset:
    users = pd.DataFrame({"gender": "F"}, index=pd.Index(sorted(set(base()["user_id"])), name="user_id"))
    items = pd.DataFrame({"title": "t"}, index=pd.Index([f"i{n}" for n in range(10)], name="item_id"))
    return Dataset(events=events, users=users, items=items)


def test_clean_events_have_no_findings() -> None:
    report = validate_events(tables(base()), now=NOW)
    assert report.ok and report.findings == [] and report.codes == []
    assert report.n_rows == 10 and report.skipped == {}
    assert all(len(mask) == 10 and not mask.any() for mask in report.row_flags.values())


# -- one hand-made case per finding ---------------------------------------------


def test_missing_user_ids_include_blank_ones() -> None:
    ev = base()
    ev.loc[[1, 4], "user_id"] = None
    ev.loc[7, "user_id"] = "   "
    report = validate_events(ev, now=NOW)
    assert report.codes == ["missing_user_id"]
    assert report.count("missing_user_id") == 3
    assert np.flatnonzero(report.row_flags["missing_user_id"]).tolist() == [1, 4, 7]
    assert report.finding("missing_user_id").message == MESSAGES["missing_user_id"].format(count="3")


def test_missing_item_ids() -> None:
    ev = base()
    ev["item_id"] = ev["item_id"].astype(object)
    ev.loc[[0, 9], "item_id"] = np.nan
    report = validate_events(ev, now=NOW)
    assert report.codes == ["missing_item_id"] and report.count("missing_item_id") == 2


def test_missing_and_unreadable_timestamps() -> None:
    ev = base()
    ev["timestamp"] = ev["timestamp"].astype(object)
    ev.loc[2, "timestamp"] = None
    ev.loc[5, "timestamp"] = "not a time"
    report = validate_events(ev, now=NOW)
    assert report.codes == ["missing_timestamp"] and report.count("missing_timestamp") == 2
    assert report.finding("missing_timestamp").examples[1] == {
        "row": 5,
        "item_id": "i5",
        "event_type": "rating",
        "timestamp": "not a time",
    }


def test_unknown_and_missing_event_types() -> None:
    ev = base()
    ev.loc[3, "event_type"] = "like"
    ev.loc[6, "event_type"] = None
    ev.loc[8, "event_type"] = "Rating"  # case matters
    report = validate_events(ev, now=NOW)
    assert report.codes == ["unknown_event_type"] and report.count("unknown_event_type") == 3


def test_unknown_users_and_items_against_the_tables() -> None:
    ev = base()
    ev.loc[0, "user_id"] = "mallory"
    ev.loc[[1, 2], "item_id"] = "i99"
    report = validate_events(tables(ev), now=NOW)
    assert report.codes == ["unknown_user", "unknown_item"]
    assert report.count("unknown_user") == 1 and report.count("unknown_item") == 2
    assert report.finding("unknown_item").examples[0] == {"row": 1, "item_id": "i99", "event_type": "click"}


def test_unknown_checks_are_skipped_without_tables() -> None:
    ev = base()
    ev.loc[0, "user_id"] = "mallory"
    report = validate_events(ev, now=NOW)
    assert report.ok
    assert report.skipped == {
        "unknown_user": "no users table to compare with",
        "unknown_item": "no items table to compare with",
    }


def test_duplicates_flag_the_copies_not_the_first() -> None:
    ev = base()
    ev = pd.concat([ev, ev.iloc[[0, 0, 3]]], ignore_index=True)
    ev.loc[10, "value"] = 99.0  # same user, item, type and time: still a duplicate event
    same_time_other_type = ev.iloc[[4]].assign(event_type="purchase")
    ev = pd.concat([ev, same_time_other_type], ignore_index=True)
    report = validate_events(ev, now=NOW)
    assert report.codes == ["duplicate_events"] and report.count("duplicate_events") == 3
    assert np.flatnonzero(report.row_flags["duplicate_events"]).tolist() == [10, 11, 12]
    assert len(report.clean(ev)) == 11


def test_duplicates_ignore_rows_with_missing_ids() -> None:
    ev = base()
    ev.loc[[0, 1], ["user_id", "item_id", "event_type", "timestamp"]] = [None, "i0", "view", ev.loc[0, "timestamp"]]
    report = validate_events(ev, now=NOW)
    assert report.codes == ["missing_user_id"] and report.count("missing_user_id") == 2


def test_values_out_of_range() -> None:
    ev = base()
    ev["value"] = ev["value"].astype(object)
    ev.loc[2, "value"] = 0.0  # rating below 1
    ev.loc[5, "value"] = 6  # rating above 5
    ev.loc[8, "value"] = np.nan  # rating without a value
    ev.loc[9, "value"] = np.inf  # rating not finite
    ev.loc[0, "value"] = -3.0  # negative dwell time
    ev.loc[6, "value"] = "abc"  # not a number
    ev.loc[1, "value"] = "2.5"  # a number written as text is fine
    report = validate_events(ev, now=NOW)
    finding = report.finding("value_out_of_range")
    assert report.codes == ["value_out_of_range"] and finding.count == 6
    assert finding.details == {
        "ratings_outside_range": 2,
        "ratings_missing_or_not_finite": 2,
        "other_values_invalid": 2,
    }
    assert finding.examples[0] == {"row": 0, "item_id": "i0", "event_type": "view", "value": -3.0}


def test_rating_range_is_configurable() -> None:
    report = validate_events(base(), now=NOW, rating_range=(2, 5))
    assert report.count("value_out_of_range") == 1  # the rating of 1


def test_future_timestamps_are_after_now_strictly() -> None:
    ev = base()
    now = ev.loc[4, "timestamp"].to_pydatetime()
    report = validate_events(ev, now=now)
    assert report.codes == ["future_timestamp"] and report.count("future_timestamp") == 5
    assert report.finding("future_timestamp").message == MESSAGES["future_timestamp"].format(
        count="5", now=now.isoformat(timespec="seconds")
    )


@pytest.mark.parametrize("when", [-86400, "1969-12-31T23:59:59Z", pd.Timestamp("1901-01-01", tz="UTC")])
def test_times_before_1970_are_a_finding_of_their_own_rows(when) -> None:
    """A table built without a loader (which refuses them) gets them as a finding, never silently kept."""
    ev = base()
    if isinstance(when, int):  # numeric times: the whole column is Unix seconds
        ev["timestamp"] = (ev["timestamp"].astype("int64") // 10**9).astype("int64")
    elif isinstance(when, str):
        ev["timestamp"] = ev["timestamp"].astype(object)
    ev.loc[[2, 7], "timestamp"] = when
    report = validate_events(ev, now=NOW)
    assert report.codes == ["pre_epoch_timestamp"] and report.count("pre_epoch_timestamp") == 2
    assert report.row_flags["pre_epoch_timestamp"].nonzero()[0].tolist() == [2, 7]
    assert report.finding("pre_epoch_timestamp").message == MESSAGES["pre_epoch_timestamp"].format(count="2")
    at_epoch = base()
    at_epoch.loc[2, "timestamp"] = pd.Timestamp(0, tz="UTC")
    assert "pre_epoch_timestamp" not in validate_events(at_epoch, now=NOW).codes


def test_future_is_judged_against_the_current_time_by_default() -> None:
    ev = base()
    ev.loc[3, "timestamp"] = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=2)
    assert validate_events(ev).count("future_timestamp") == 1


def _human_users(n_users: int = 30, per_user: int = 6) -> pd.DataFrame:
    rows = [
        (f"user{u}", f"i{k}", T0 + timedelta(hours=u, minutes=2 * k)) for u in range(n_users) for k in range(per_user)
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


NO_REASON = dict.fromkeys(BOT_REASONS, 0)


def _burst(user: str, n: int, gap_seconds: float, start: datetime = T0) -> pd.DataFrame:
    times = [start + timedelta(seconds=gap_seconds * k) for k in range(n)]
    return pd.DataFrame({"user_id": user, "item_id": [f"i{k % 7}" for k in range(n)], "timestamp": times})


def test_a_fast_user_is_a_bot() -> None:
    ev = pd.concat([_human_users(), _burst("scraper", 40, 0.2)], ignore_index=True)
    report = validate_events(ev, now=NOW)
    finding = report.finding("bot_users")
    assert report.codes == ["bot_users"] and finding.count == 40
    assert finding.details == {"n_users": 1, **NO_REASON, "fast": 1}
    assert finding.examples == (
        {
            "first_row": 180,
            "n_events": 40,
            "median_gap_seconds": 0.2,
            "events_per_minute": 300.0,
            "gap_cv": 0.0,
            "longest_active_hours": 0.0,
            "longest_active_events": 40,
            "catalog_share": 1.0,
            "events_per_item": 5.71,
            "volume_zscore": 3.79,
            "reasons": ["fast"],
        },
    )
    # 39 gaps in 7.8 s; z = ln(40 / 6) / 0.5 (everybody else has 6 events: MAD 0, floored)
    assert set(ev.loc[report.row_flags["bot_users"], "user_id"]) == {"scraper"}


def test_a_sustained_rate_is_a_bot_even_with_the_gap_rule_off() -> None:
    ev = pd.concat([_human_users(), _burst("scraper", 40, 0.5)], ignore_index=True)
    assert validate_events(ev, now=NOW, bot_min_gap=0).count("bot_users") == 40
    # 1.2 s apart: 50 per minute, under both thresholds.
    slow = pd.concat([_human_users(), _burst("quick-human", 40, 1.2)], ignore_index=True)
    assert validate_events(slow, now=NOW).ok


def test_short_gaps_make_a_bot_even_when_bursts_are_far_apart() -> None:
    bursts = [_burst("cron-bot", 20, 0.3, start=T0 + timedelta(days=day)) for day in range(3)]
    ev = pd.concat([_human_users(), *bursts], ignore_index=True)
    finding = validate_events(ev, now=NOW).finding("bot_users")
    assert finding.count == 60 and finding.examples[0]["events_per_minute"] < 1.0  # slow over its span
    assert validate_events(ev, now=NOW, bot_min_gap=0).ok  # the gap rule alone caught it


def test_an_extreme_volume_is_a_bot_whatever_its_pace() -> None:
    ev = pd.concat([_human_users(), _burst("hoarder", 3_000, 45.0)], ignore_index=True)
    finding = validate_events(ev, now=NOW).finding("bot_users")
    assert finding.count == 3_000 and finding.details["volume_outliers"] == 1 and finding.details["fast"] == 0


def test_few_fast_events_are_not_a_bot() -> None:
    ev = pd.concat([_human_users(), _burst("double-clicker", 5, 0.1)], ignore_index=True)
    assert validate_events(ev, now=NOW).ok


def test_duplicates_do_not_make_a_human_look_fast() -> None:
    human = _human_users(n_users=30, per_user=25)
    ev = pd.concat([human, human[human["user_id"] == "user3"]], ignore_index=True)  # every event of user3 twice
    report = validate_events(ev, now=NOW)
    assert report.codes == ["duplicate_events"] and report.count("duplicate_events") == 25


# -- privacy --------------------------------------------------------------------


def test_reports_never_contain_user_ids() -> None:
    ev = base()
    ev = pd.concat([ev, ev.iloc[[5]]], ignore_index=True)  # a duplicate of alice's row
    ev.loc[2, "value"] = 9.0
    ev.loc[0, "timestamp"] = pd.Timestamp("2100-01-01", tz="UTC")
    ev.loc[3, "event_type"] = "like"
    ev.loc[4, "user_id"] = "zed@example.com"  # unknown to the users table
    ev = pd.concat([ev, _burst("bot-account-7", 30, 0.1).assign(event_type="view", value=np.nan)], ignore_index=True)
    report = validate_events(tables(ev), now=NOW)
    assert {
        "duplicate_events",
        "value_out_of_range",
        "future_timestamp",
        "unknown_event_type",
        "unknown_user",
        "bot_users",
    } <= set(report.codes)
    text = json.dumps(report.to_dict(), allow_nan=False) + json.dumps(report.summary_table())
    for user_id in set(ev["user_id"].dropna()):
        assert user_id not in text


# -- input that is not a clean events table --------------------------------------


@pytest.mark.parametrize(
    "columns, missing",
    [
        (["item_id", "timestamp"], "user_id"),
        (["user_id", "event_type"], "item_id, timestamp"),
        ([], "user_id, item_id, timestamp"),
    ],
)
def test_missing_columns_raise_a_data_error_naming_them(columns: list[str], missing: str) -> None:
    ev = base()[columns] if columns else pd.DataFrame()
    expected = MISSING_COLUMNS.format(
        missing=missing, required="user_id, item_id, timestamp", got=", ".join(columns) or "no columns"
    )
    with pytest.raises(DataError, match=re.escape(expected)):
        validate_events(ev)


def test_repeated_column_names_raise_a_data_error() -> None:
    ev = pd.concat([base(), base()[["item_id"]]], axis=1)
    with pytest.raises(DataError, match="column name\\(s\\) item_id appear more than once"):
        validate_events(ev)


def test_something_else_than_events_raises_a_data_error() -> None:
    with pytest.raises(DataError, match="validate_events expects a Dataset or an events DataFrame; got list"):
        validate_events([1, 2, 3])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"rating_range": (5, 1)},
            "The 'rating_range' parameter of validate_events must be a pair (low, high) of finite numbers with low <= high. Got (5, 1) instead.",
        ),
        (
            {"rating_range": "1-5"},
            "The 'rating_range' parameter of validate_events must be a pair (low, high) of numbers. Got '1-5' instead.",
        ),
        (
            {"bot_rate_threshold": -1.0},
            "The 'bot_rate_threshold' parameter of validate_events must be a finite number >= 0. Got -1.0 instead.",
        ),
        (
            {"bot_volume_zscore": float("nan")},
            "The 'bot_volume_zscore' parameter of validate_events must be a finite number >= 0. Got nan instead.",
        ),
        (
            {"bot_min_events": 1},
            "The 'bot_min_events' parameter of validate_events must be an int in the range [2, inf). Got 1 instead.",
        ),
        (
            {"max_examples": -1},
            "The 'max_examples' parameter of validate_events must be an int in the range [0, inf). Got -1 instead.",
        ),
    ],
)
def test_bad_parameters_raise_a_config_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_events(base(), **kwargs)


def test_an_empty_table_is_valid() -> None:
    report = validate_events(base().iloc[:0], now=NOW)
    assert report.ok and report.n_rows == 0
    assert report.clean(base().iloc[:0]).empty
    assert json.dumps(report.to_dict())


def test_all_missing_rows_do_not_crash() -> None:
    ev = pd.DataFrame(
        {
            "user_id": [None] * 3,
            "item_id": [np.nan] * 3,
            "timestamp": [pd.NaT] * 3,
            "event_type": [None] * 3,
            "value": [None] * 3,
        }
    )
    report = validate_events(ev, now=NOW)
    assert report.codes == ["missing_user_id", "missing_item_id", "missing_timestamp", "unknown_event_type"]
    assert all(report.count(code) == 3 for code in report.codes)


@pytest.mark.parametrize(
    "timestamps",
    [
        [1_709_294_400 + 420 * n for n in range(10)],  # Unix seconds
        [str(T0 + timedelta(minutes=7 * n)) for n in range(10)],  # ISO text
        pd.date_range("2024-03-01 12:00", periods=10, freq="7min"),  # naive: read as UTC
        pd.date_range("2024-03-01 13:00", periods=10, freq="7min", tz="Europe/Berlin"),
    ],
)
def test_every_usual_time_format_is_read(timestamps: object) -> None:
    ev = base().assign(timestamp=timestamps)
    report = validate_events(ev, now=T0 + timedelta(minutes=30))
    assert report.count("future_timestamp") == 5  # 35 min and later


def test_times_pandas_cannot_parse_together_are_read_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    real = pd.to_datetime

    def refuse_mixed(*args: object, **kwargs: object) -> object:
        if kwargs.get("format") == "mixed":
            raise ValueError("cannot mix")
        return real(*args, **kwargs)

    monkeypatch.setattr(pd, "to_datetime", refuse_mixed)
    ev = base().assign(timestamp=["2024-03-01T12:00:00Z", "garbage", None] + [str(T0)] * 7)
    report = validate_events(ev, now=T0 - timedelta(minutes=1))
    assert report.codes == ["missing_timestamp", "future_timestamp"]
    assert report.count("missing_timestamp") == 2 and report.count("future_timestamp") == 8


def test_integral_float_ids_match_integer_ids_in_the_tables() -> None:
    ev = pd.DataFrame(
        {
            "user_id": [1.0, 2.0, np.nan],
            "item_id": [10, 11, 12],
            "timestamp": [1_700_000_000, 1_700_000_100, 1_700_000_200],
        }
    )
    data = Dataset(
        events=ev, users=pd.DataFrame(index=pd.Index(["1", "2"])), items=pd.DataFrame(index=pd.Index([10, 11]))
    )
    report = validate_events(data, now=NOW)
    assert report.codes == ["missing_user_id", "unknown_item"] and report.count("unknown_item") == 1


def test_rows_are_numbered_by_position_whatever_the_index() -> None:
    ev = base()
    ev.index = pd.Index(range(100, 110))
    ev.loc[105, "user_id"] = None
    report = validate_events(ev, now=NOW)
    assert report.finding("missing_user_id").examples[0]["row"] == 5
    assert report.clean(ev).index.tolist() == [100, 101, 102, 103, 104, 106, 107, 108, 109]


_cell = st.one_of(
    st.none(),
    st.just(np.nan),
    st.just(float("inf")),
    st.text(max_size=6),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
    st.booleans(),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_cell, _cell, _cell, _cell, _cell), max_size=12))
def test_malformed_rows_never_crash(rows: list[tuple]) -> None:
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "value", "timestamp"], dtype=object)
    report = validate_events(ev, now=NOW)
    assert isinstance(report, ValidationReport) and report.n_rows == len(rows)
    assert all(len(mask) == len(rows) for mask in report.row_flags.values())
    assert set(report.codes) <= set(CODES)
    assert len(report.clean(ev)) == len(rows) - int(report.flagged().sum())
    json.dumps(report.to_dict(), allow_nan=False)


# -- the report -----------------------------------------------------------------


def _dirty() -> tuple[pd.DataFrame, ValidationReport]:
    ev = base()
    ev.loc[0, "user_id"] = None
    ev.loc[2, "value"] = 7.0
    ev = pd.concat([ev, ev.iloc[[5]]], ignore_index=True)
    return ev, validate_events(ev, now=NOW)


def test_report_to_dict_is_json_ready() -> None:
    _, report = _dirty()
    document = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert document["n_rows"] == 11 and document["ok"] is False and document["n_flagged_rows"] == 3
    assert [f["code"] for f in document["findings"]] == ["missing_user_id", "duplicate_events", "value_out_of_range"]
    assert document["findings"][0] == {
        "code": "missing_user_id",
        "count": 1,
        "share": 1 / 11,
        "message": "1 row(s) have no user id; they cannot be attributed to anyone",
        "examples": [{"row": 0, "item_id": "i0", "event_type": "view", "timestamp": "2024-03-01T12:00:00+00:00"}],
        "details": {},
    }
    assert document["now"] == NOW.isoformat()
    assert document["parameters"]["rating_range"] == [1.0, 5.0]


def test_summary_table_has_one_row_per_finding() -> None:
    _, report = _dirty()
    assert report.summary_table()[1] == {
        "code": "duplicate_events",
        "rows": "1",
        "share": "9.09%",
        "message": "1 row(s) repeat an earlier row with the same user, item, event type and timestamp",
    }
    assert len(report.summary_table()) == 3


def test_clean_drops_the_flagged_rows_of_the_chosen_codes() -> None:
    ev, report = _dirty()
    assert report.clean(ev).index.tolist() == [1, 3, 4, 5, 6, 7, 8, 9]
    assert report.clean(ev, codes=["duplicate_events"]).index.tolist() == list(range(10))
    assert report.clean(ev, codes="missing_user_id").index.tolist() == list(range(1, 11))
    assert report.clean(Dataset(events=ev)).shape == (8, ev.shape[1])


def test_clean_refuses_other_events_and_unknown_codes() -> None:
    ev, report = _dirty()
    with pytest.raises(DataError, match=re.escape("this report is for 11 rows; the events given have 10")):
        report.clean(ev.iloc[:10])
    with pytest.raises(ConfigError, match=re.escape("unknown finding code(s) bots; the codes are missing_user_id,")):
        report.clean(ev, codes=["bots"])


def test_max_examples_limits_the_examples() -> None:
    ev = base()
    ev["user_id"] = None
    report = validate_events(ev, now=NOW, max_examples=2)
    assert [e["row"] for e in report.finding("missing_user_id").examples] == [0, 1]
    assert validate_events(ev, now=NOW, max_examples=0).finding("missing_user_id").examples == ()


def test_finding_is_immutable() -> None:
    finding = Finding("missing_user_id", 1, 0.1, "m")
    with pytest.raises(AttributeError):
        finding.count = 2  # type: ignore[misc]


def test_event_types_that_read_alike_do_not_crash() -> None:
    # Regression: the number 1 and the text "1" are two types that both read "1";
    # looking the rating type up by name then failed on the repeated name.
    ev = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [1, 2], "event_type": [1, "1"]})
    assert validate_events(ev, now=NOW).codes == ["unknown_event_type"]
