"""Filtering a data set for privacy (erasures, consent, retention) keeps what the data set is:
its rating scale and column origins, so a half-star MovieLens set is still judged on 0.5-5 stars
afterwards; and both filters read event times alike (a missing time is unknown, a broken one an error)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audits import Store, record_consent
from audits.suppression import suppress_subject
from governance.policy import load_pack
from governance.privacy import filter_training_events
from governance.suppressed import drop_erased_events
from recommender.data import Dataset, event_times
from recommender.datasets.movielens import load_movielens_csv
from recommender.errors import DataError
from recommender.validate import validate_events

EU = load_pack(Path(__file__).resolve().parents[2] / "policies" / "eu-gdpr-dsa.yaml")
NOW = datetime(2024, 7, 2, tzinfo=UTC)
ERASED_AT = datetime(2024, 6, 1, tzinfo=UTC)
# user, movie, rating, Unix time (2024-03 to 2024-05): half stars, the lowest 0.5 among them
RATINGS = [
    (1, 10, 0.5, 1709251200), (1, 11, 4.5, 1709337600), (1, 12, 3.0, 1709424000),
    (2, 10, 5.0, 1711929600), (2, 12, 2.5, 1712016000),
    (3, 11, 0.5, 1714521600), (3, 12, 1.5, 1714608000), (3, 13, 4.0, 1714694400),
]  # fmt: skip


@pytest.fixture
def half_stars(tmp_path: Path) -> Dataset:
    lines = ["userId,movieId,rating,timestamp", *(f"{u},{m},{r},{t}" for u, m, r, t in RATINGS)]
    (tmp_path / "ratings.csv").write_text("\n".join(lines) + "\n")
    data = load_movielens_csv(tmp_path)
    assert data.rating_range == (0.5, 5.0)
    return data


def _out_of_range(data: Dataset) -> int:
    return sum(f.count for f in validate_events(data, now=NOW).findings if f.code == "value_out_of_range")


def _grant(store: Store, *subjects: str) -> None:
    with store.session() as session:
        for subject in subjects:
            record_consent(session, subject_id=subject, purpose="personalization", status="granted",
                           lawful_basis="consent", source="banner", at=datetime(2024, 1, 1, tzinfo=UTC))  # fmt: skip


def _erase(store: Store, subject: str) -> None:
    with store.session() as session:
        suppress_subject(session, subject, denied={}, erased_at=ERASED_AT)


def test_an_erasure_keeps_the_half_star_scale(store: Store, half_stars: Dataset) -> None:
    assert _out_of_range(half_stars) == 0
    _erase(store, "2")
    kept, report = drop_erased_events(half_stars, store)
    assert report["events"]["excluded"]["erased"] == 2 and "2" not in set(kept.events["user_id"].astype(str))
    assert kept.rating_range == (0.5, 5.0) and kept.columns_from == half_stars.columns_from
    assert (kept.name, kept.source) == (half_stars.name, half_stars.source) and kept.items is half_stars.items
    assert _out_of_range(kept) == 0  # the 0.5-star ratings left are not reported as bad values


def test_the_training_filter_keeps_the_half_star_scale(store: Store, half_stars: Dataset) -> None:
    _grant(store, "1", "3")  # user 2 gave no consent: opt-in, so their events go
    _erase(store, "3")
    kept, report = filter_training_events(half_stars, EU, store, now=NOW, record=False)
    assert report["events"]["kept"] == 3 and set(kept.events["user_id"].astype(str)) == {"1"}
    assert report["events"]["excluded"]["erased"] == 3 and report["subjects"]["kept"] == 1
    assert kept.rating_range == (0.5, 5.0) and kept.columns_from == half_stars.columns_from
    assert _out_of_range(kept) == 0


def _with_times(data: Dataset, times: list[object]) -> Dataset:
    events = data.events.copy()
    events["timestamp"] = pd.Series(times, dtype=object)
    return data.with_events(events)


def test_both_filters_refuse_a_broken_time_naming_its_row(store: Store, half_stars: Dataset) -> None:
    times = [e.isoformat() for e in half_stars.events["timestamp"]]
    times[4] = "the fifth of never"
    broken = _with_times(half_stars, times)
    _grant(store, "1", "2", "3")
    _erase(store, "2")
    with pytest.raises(DataError, match=r"row 4 column timestamp 'the fifth of never'"):
        drop_erased_events(broken, store)
    with pytest.raises(DataError, match=r"row 4 column timestamp 'the fifth of never'"):
        filter_training_events(broken, EU, store, now=NOW, record=False)


def test_both_filters_leave_out_an_event_of_unknown_time(store: Store, half_stars: Dataset) -> None:
    times: list[object] = [e.isoformat() for e in half_stars.events["timestamp"]]
    times[3] = None  # user 2's first event
    unknown = _with_times(half_stars, times)
    _grant(store, "1", "2", "3")
    _erase(store, "2")
    kept, report = drop_erased_events(unknown, store)
    assert report["events"]["excluded"]["erased"] == 2  # at or before the erasure, or of unknown time
    kept, report = filter_training_events(unknown, EU, store, now=NOW, record=False)
    assert report["events"]["excluded"]["erased"] == 2 and len(kept.events) == 6


def test_event_times_reads_seconds_text_and_aware_times_alike() -> None:
    moment = pd.Timestamp("2024-03-01T00:00:00Z")
    frames = [
        pd.DataFrame({"timestamp": [moment.timestamp(), np.nan]}),
        pd.DataFrame({"timestamp": ["2024-03-01T01:00:00+01:00", None]}),
        pd.DataFrame({"timestamp": pd.Series([moment, pd.NaT], dtype="datetime64[ns, UTC]")}),
    ]
    for frame in frames:
        got = event_times(frame)
        assert got.dtype == np.dtype("datetime64[ns]") and got[0] == moment.tz_convert(None).to_datetime64()
        assert np.isnat(got[1])


def test_subset_keeps_every_attribute_and_drops_what_it_left_out(half_stars: Dataset) -> None:
    events = half_stars.events.copy()
    events["user_id"] = events["user_id"].astype("category")
    users = pd.DataFrame({"age": [20, 30, 40]}, index=pd.Index(["1", "2", "3"], name="user_id"))
    data = Dataset(events=events, users=users, items=half_stars.items, name="n", source="s",
                   columns_from={"value": "rating"}, rating_range=(0.5, 5.0))  # fmt: skip
    keep = (data.events["user_id"].astype(str) != "2").to_numpy()
    part = data.subset(keep)
    assert (part.name, part.source, part.columns_from, part.rating_range) == ("n", "s", {"value": "rating"}, (0.5, 5.0))
    assert list(part.events.index) == list(range(6)) and "2" not in list(part.events["user_id"].cat.categories)
    assert list(part.users.index) == ["1", "3"]
    assert data.subset(np.ones(len(events), dtype=bool)).n_events == len(events)
    for ids in (half_stars.events["user_id"].astype("int64"), half_stars.events["user_id"].astype(str).astype(object)):
        plain = Dataset(events=half_stars.events.assign(user_id=ids), users=users)  # ints, then strings
        assert list(plain.subset(keep).users.index) == ["1", "3"]
    with_missing = half_stars.events.assign(user_id=half_stars.events["user_id"].astype(str).astype(object))
    with_missing.loc[0, "user_id"] = None  # an event naming no subject names no user row either
    assert list(Dataset(events=with_missing, users=users).subset(keep).users.index) == ["1", "3"]
    with pytest.raises(DataError, match="one boolean per event"):
        data.subset(np.ones(3, dtype=bool))
    with pytest.raises(DataError, match="one boolean per event"):
        data.subset(np.arange(len(events)))


@pytest.mark.parametrize("ids", ["category", "int64", "object", "string-category"])
def test_the_hashes_before_and_after_a_subset_are_each_tables_own(half_stars: Dataset, ids: str) -> None:
    """``content_hashes`` hashes every event once: the subset's hash must be the one it computes itself."""
    events = half_stars.events.copy()
    raw = events["user_id"].astype(str)
    events["user_id"] = {
        "category": events["user_id"].astype("category"),
        "int64": events["user_id"].astype("int64"),
        "object": raw.astype(object).where(raw != "3", None),  # an event naming no subject
        "string-category": raw.astype("category"),
    }[ids]
    events["item_id"] = events["item_id"].astype(str).astype("category")
    events.loc[1, "timestamp"] = None  # an event of unknown time
    users = pd.DataFrame({"age": [20, 30, 40]}, index=pd.Index(["1", "2", "3"], name="user_id"))
    data = Dataset(events=events, users=users, items=half_stars.items, name="n")
    rng = np.random.default_rng(len(ids))
    for keep in (raw.to_numpy() != "2", rng.random(len(events)) < 0.5, np.ones(len(events), dtype=bool), np.zeros(len(events), dtype=bool)):
        part = data.subset(keep)
        assert data.content_hashes(keep, part) == (data.content_hash(), part.content_hash())
    assert data.content_hash() != data.subset(raw.to_numpy() != "2").content_hash()
    with pytest.raises(DataError, match="booleans the subset"):
        data.content_hashes(np.ones(3, dtype=bool), data)


def _reference_text(value: object) -> object:
    """An id's text, one value at a time: an integer-valued number as the integer, anything else as str."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def test_subject_codes_are_the_factorized_canonical_strings_of_every_id() -> None:
    """From a categorical's categories, the codes and ids a per-event reading of each id's text would give."""
    from recommender.data import subject_codes

    rng = np.random.default_rng(7)
    raw = pd.Series(rng.choice(np.array([10, 2, 33, 2, 7], dtype=object), size=500))
    raw[::17] = None
    ints = pd.Series(rng.integers(0, 50, 300))
    cases = {
        "int categories with an unused one and a missing id": raw.astype("category").cat.add_categories([99]),
        "string categories": raw.map(lambda v: None if v is None else f"u{v}").astype("category"),
        "string categories, none missing, an unused one": pd.Series(pd.Categorical(["b", "a", "b"], categories=["c", "b", "a"])),
        "mixed categories": pd.Series(pd.Categorical([1, "1", 2, None, 1], categories=[1, "1", 2])),
        "object": raw,
        "int64": ints,
        "float64 with NaN": ints.where(ints % 7 != 0).astype("float64"),
        "Int64 with NA": ints.astype("Int64").where(ints % 7 != 0),
        "float categories": pd.Series(pd.Categorical([10.0, 2.5, None, 10.0])),
        "leading zeros are text": pd.Series(["007", "7", None, "007"], dtype="string"),
    }
    for name, ids in cases.items():
        codes, subjects = subject_codes(ids)
        expected_codes, expected = pd.factorize(pd.Series([_reference_text(v) for v in ids], dtype=object), sort=True)
        assert subjects == [str(u) for u in expected], name
        assert codes.tolist() == expected_codes.tolist(), name
        assert not any(s.endswith(".0") for s in subjects), name


def _integer_ids_parquet(tmp_path: Path) -> Path:
    """An event log whose user ids are int64 with one missing: pandas reads that column as floats."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "events.parquet"
    users = [10, 10, 11, None, 11, 10]
    times = [1709251200 + 86400 * i for i in range(len(users))]  # March 2024: before the erasure
    table = pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "item_id": pa.array([1, 2, 1, 2, 3, 3], pa.int64()),
            "timestamp": pa.array(times, pa.int64()),
        }
    )
    pq.write_table(table, path)
    assert pd.read_parquet(path)["user_id"].dtype == np.float64  # the case: 10 would read "10.0" as a string
    return path


def test_integer_ids_read_from_parquet_with_a_missing_one_are_their_integers(tmp_path: Path) -> None:
    from recommender.loaders import load_event_log

    data = load_event_log(_integer_ids_parquet(tmp_path))
    users = data.events["user_id"]
    assert users.astype(object).where(users.notna(), None).tolist() == ["10", "10", "11", None, "11", "10"]
    assert data.events["item_id"].astype(str).tolist() == ["1", "2", "1", "2", "3", "3"]


def test_an_erased_subject_with_an_integer_id_in_parquet_is_removed(store: Store, tmp_path: Path) -> None:
    from recommender.loaders import load_event_log

    data = load_event_log(_integer_ids_parquet(tmp_path))
    _erase(store, "10")
    kept, report = drop_erased_events(data, store)
    assert report["events"]["excluded"]["erased"] == 3 and report["subjects"]["erased"] == 1
    assert set(kept.events["user_id"].dropna().astype(str)) == {"11"}


def test_the_training_filter_removes_an_erased_integer_id_keeps_a_consenting_one(store: Store, tmp_path: Path) -> None:
    from recommender.loaders import load_event_log

    data = load_event_log(_integer_ids_parquet(tmp_path))
    _grant(store, "10", "11")
    _erase(store, "10")
    kept, report = filter_training_events(data, EU, store, now=NOW, record=False)
    assert report["events"]["excluded"]["erased"] == 3 and report["events"]["excluded"]["missing_subject_id"] == 1
    assert report["events"]["kept"] == 2 and set(kept.events["user_id"].astype(str)) == {"11"}


@pytest.mark.parametrize(
    "ids",
    [
        pd.Categorical([10, 10, 11, None, 11, 10]),
        pd.array([10, 10, 11, None, 11, 10], dtype="Int64"),
        np.array([10, 10, 11, np.nan, 11, 10]),
        np.array([10.0, 10.0, 11.0, None, 11.0, 10.0], dtype=object),
    ],
    ids=["int categorical", "Int64", "float64", "object floats"],
)
def test_both_filters_match_integer_ids_built_in_python(store: Store, ids: object) -> None:
    """A Dataset built in Python with integer ids and a missing one: the erasure of "10" reaches its events."""
    times = pd.to_datetime([1709251200 + 86400 * i for i in range(6)], unit="s", utc=True)
    events = pd.DataFrame({"user_id": ids, "item_id": ["a", "b", "a", "b", "c", "c"], "timestamp": times})
    from recommender.data import ensure_event_schema

    data = Dataset(events=ensure_event_schema(events))
    _erase(store, "10")
    kept, report = drop_erased_events(data, store)
    assert report["events"]["excluded"]["erased"] == 3 and len(kept.events) == 3
    _grant(store, "10", "11")
    kept, report = filter_training_events(data, EU, store, now=NOW, record=False)
    assert report["events"]["excluded"]["erased"] == 3 and report["events"]["kept"] == 2
    assert report["events"]["excluded"].get("no_consent_record", 0) == 0  # "11" was found: its consent matched


def test_a_subset_keeps_the_user_rows_of_integer_ids_held_as_floats() -> None:
    """Events naming user 10 as 10.0 (a missing id made the column floats) keep the users table's row for 10."""
    times = pd.to_datetime([1709251200, 1709337600, 1709424000, 1709510400], unit="s", utc=True)
    events = pd.DataFrame({"user_id": [10.0, 11.0, np.nan, 12.0], "item_id": ["a", "b", "a", "b"], "timestamp": times})
    users = pd.DataFrame({"age": [30, 40, 50]}, index=pd.Index([10, 11, 12], name="user_id"))
    part = Dataset(events=events, users=users).subset(np.array([True, False, True, True]))
    assert part.users.index.tolist() == [10, 12]


def test_subject_counts_by_bincount_equal_the_distinct_codes() -> None:
    """The kept and erased subject counts read per-subject bincounts; they equal the counts of distinct codes
    (``np.unique``) they replaced, with events naming no subject (-1) ignored."""
    import numpy as np

    from governance.training_filter import _distinct_subjects, _subject_mask

    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 2000):
        codes = rng.integers(-1, 40, n)
        for keep in (np.ones(n, dtype=bool), rng.random(n) < 0.3, np.zeros(n, dtype=bool)):
            distinct = np.unique(codes[keep])
            assert _distinct_subjects(codes[keep]) == int(np.count_nonzero(distinct >= 0))
            assert np.flatnonzero(_subject_mask(codes[keep], 40)).tolist() == distinct[distinct >= 0].tolist()
