"""The pack's training-data rules on Spark give the in-process filter's events and report, rule by rule."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from audits import Store, record_consent, verify_trail
from audits.models import TrailEvent
from governance.policy import load_pack
from governance.privacy import erase_subject, filter_training_events, record_consent_from_request
from governance.spark.filters import events_frame, filter_training_events_spark
from recommender.data import Dataset
from recommender.errors import ConfigError, DataError
from recommender.synthetic import SyntheticSpec, generate

POLICIES = Path(__file__).resolve().parents[2] / "policies"
EU = load_pack(POLICIES / "eu-gdpr-dsa.yaml")
CA = load_pack(POLICIES / "california-ccpa.yaml")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
NOW = datetime(2024, 7, 2, tzinfo=UTC)


def _dataset(seed: int = 7) -> Dataset:
    data = generate(SyntheticSpec(n_users=80, n_items=50, n_interactions=2500, seed=seed))
    events = data.events.copy()
    events["user_id"] = events["user_id"].astype(str)
    return Dataset(events=events, items=data.items, name="spark-filter", source="synthetic:spark-filter")


def _consent(store: Store, subject: str, status: str, *, at: datetime = T0, basis: str = "consent") -> None:
    with store.session() as session:
        record_consent(session, subject_id=subject, purpose="personalization", status=status, lawful_basis=basis, source="banner", at=at)


def _rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Kept events as a sorted multiset of (user, item, type, value)."""
    out = frame[["user_id", "item_id", "event_type", "value"]].astype({"user_id": str, "item_id": str, "event_type": str})
    return sorted(tuple(None if (isinstance(v, float) and np.isnan(v)) else v for v in row) for row in out.itertuples(index=False))


def _without_hashes(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "dataset"}


def test_every_rule_keeps_the_same_events_and_counts_as_the_in_process_filter(spark: Any, store: Store) -> None:
    data = _dataset()
    users = sorted(data.events["user_id"].unique())
    # consent of every kind, a wrong basis, a grant after a withdrawal, and subjects with no record
    _consent(store, users[1], "granted")
    _consent(store, users[1], "withdrawn", at=T0 + timedelta(days=1))
    _consent(store, users[2], "denied")
    _consent(store, users[3], "objected")
    _consent(store, users[4], "opted_out")
    _consent(store, users[5], "granted", basis="legitimate_interest")
    _consent(store, users[6], "withdrawn")
    _consent(store, users[6], "granted", at=T0 + timedelta(days=2))
    for subject in users[7:60]:
        _consent(store, subject, "granted")
    # an erased subject who came back: their events before the erasure stay out
    erased = users[8]
    report = erase_subject(store, erased, pack=EU)
    erased_at = datetime.fromisoformat(report["suppression"]["erased_at"])
    _consent(store, erased, "granted", at=erased_at + timedelta(seconds=1))
    events = data.events.copy()
    mine = np.flatnonzero(np.asarray(events["user_id"] == erased))
    stamps = pd.to_datetime(events["timestamp"], utc=True)
    stamps.iloc[mine[: len(mine) // 2]] = pd.Timestamp(erased_at + timedelta(minutes=5))
    events["timestamp"] = stamps
    events.loc[events.index[:4], "user_id"] = None  # naming no subject
    events.loc[events.index[10:13], "timestamp"] = pd.NaT  # unknown time: out under retention
    data = data.with_events(events)
    moment = erased_at + timedelta(hours=1)
    # a retention window that cuts the log in two
    pack = EU.pack.model_copy(update={"minimization": EU.pack.minimization.model_copy(update={"retention_days": 400})})
    stamps_naive = stamps.dt.tz_localize(None)
    assert ((moment.replace(tzinfo=None) - stamps_naive).dt.days > 400).any()

    expected, expected_report = filter_training_events(data, pack, store, now=moment, record=False)
    kept, got_report = filter_training_events_spark(events_frame(spark, data), pack, store, now=moment, record=False)

    assert _without_hashes(got_report) == _without_hashes(expected_report)
    assert got_report["events"]["excluded"]["erased"] > 0
    assert got_report["events"]["excluded"]["retention"] > 0
    assert got_report["events"]["excluded"]["missing_subject_id"] == 4
    assert got_report["subjects"]["excluded"]["wrong_basis"] == 1
    assert _rows(kept.toPandas()) == _rows(expected.events)
    # minimisation: the model's input columns and nothing else reach it
    assert kept.columns == ["user_id", "item_id", "event_type", "value"]


def test_an_opt_out_kept_through_erasure_excludes_on_spark_too(spark: Any, sqlite_store: Store) -> None:
    data = _dataset(seed=3)
    subject = sorted(data.events["user_id"].unique())[0]
    record_consent_from_request(sqlite_store, subject, pack=CA, headers={"Sec-GPC": "1"})
    erase_subject(sqlite_store, subject, pack=CA)
    expected, expected_report = filter_training_events(data, CA, sqlite_store, now=NOW, record=False)
    kept, report = filter_training_events_spark(events_frame(spark, data), CA, sqlite_store, now=NOW, record=False)
    assert report["events"]["excluded"]["opted_out"] == int((data.events["user_id"] == subject).sum()) > 0
    assert _without_hashes(report) == _without_hashes(expected_report)
    assert _rows(kept.toPandas()) == _rows(expected.events)


def test_the_filter_is_recorded_on_the_trail_with_spark_hashes(spark: Any, sqlite_store: Store) -> None:
    data = _dataset(seed=5)
    for subject in sorted(data.events["user_id"].unique())[:30]:
        _consent(sqlite_store, subject, "granted")
    frame = events_frame(spark, data)
    _, report = filter_training_events_spark(frame, EU, sqlite_store, now=NOW)
    before, after = report["dataset"]["before"], report["dataset"]["after"]
    assert before.startswith("spark-") and after.startswith("spark-") and before != after
    # the hash names the rows, not their order
    _, again = filter_training_events_spark(frame.orderBy("item_id", "user_id"), EU, sqlite_store, now=NOW)
    assert again["dataset"] == report["dataset"]
    with sqlite_store.session() as session:
        rows = session.execute(select(TrailEvent).where(TrailEvent.action == "privacy.training_filtered")).scalars().all()
    assert len(rows) == 2 and all(str(sorted(data.events["user_id"])[0]) not in r.payload for r in rows)
    with sqlite_store.snapshot() as connection:
        assert verify_trail(connection).intact


def test_an_unlisted_purpose_or_a_missing_column_is_refused_before_anything_is_recorded(spark: Any, sqlite_store: Store) -> None:
    frame = events_frame(spark, _dataset(seed=2))
    with pytest.raises(ConfigError, match="advertising"):
        filter_training_events_spark(frame, EU, sqlite_store, purpose="advertising", now=NOW)
    with pytest.raises(DataError, match="timestamp"):
        filter_training_events_spark(frame.drop("timestamp"), EU, sqlite_store, now=NOW)
    with sqlite_store.session() as session:
        assert session.execute(select(TrailEvent).where(TrailEvent.action == "privacy.training_filtered")).first() is None


def test_integer_ids_held_as_floats_meet_their_erasure_on_spark(spark: Any, sqlite_store: Store) -> None:
    """User ids held as doubles (integers with a missing one) read "10", so the erasure of "10" reaches them."""
    times = pd.to_datetime([1709251200 + 86400 * i for i in range(6)], unit="s", utc=True)
    users = [10.0, 10.0, 11.0, np.nan, 11.0, 10.0]
    items = ["a", "b", "a", "b", "c", "c"]
    events = pd.DataFrame({"user_id": users, "item_id": items, "event_type": "view", "value": np.nan, "timestamp": times})
    erase_subject(sqlite_store, "10", pack=CA)  # opt-out: no record is a yes, so only the erasure can exclude "10"
    data = Dataset(events=events)
    # a pandas float column handed to Spark, and a Spark double column (as Spark reads such a file)
    doubles = spark.createDataFrame(
        [
            (None if np.isnan(u) else u, i, "view", None, t.tz_convert(None).to_pydatetime())
            for u, i, t in zip(users, items, times)
        ],
        "user_id double, item_id string, event_type string, value double, timestamp timestamp_ntz",
    )
    for frame in (events_frame(spark, data), doubles):
        kept, report = filter_training_events_spark(frame, CA, sqlite_store, now=NOW, record=False)
        assert report["events"]["excluded"]["erased"] == 3 and report["events"]["excluded"]["missing_subject_id"] == 1
        assert report["events"]["kept"] == 2 and report["subjects"]["kept"] == 1
        assert sorted(r[0] for r in kept.select("user_id").collect()) == ["11", "11"]


@pytest.mark.parametrize("staged", [False, True], ids=["in-memory", "staged-as-parquet"])
def test_event_times_finer_than_a_microsecond_reach_spark_on_either_path(
    spark: Any, monkeypatch: pytest.MonkeyPatch, staged: bool
) -> None:
    """Regression: a large events table goes to Spark through a Parquet file, and a nanosecond time (RFC 3339 with
    nine digits, as many services log) failed that file's cast to microseconds with pyarrow's ArrowInvalid."""
    import governance.spark.filters as filters

    if staged:
        monkeypatch.setattr(filters, "_IN_MEMORY_ROWS", 1)
    stamps = ["2024-03-01T10:00:00.123456789Z", "2024-03-01T10:00:01.000000999Z", None]
    events = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "item_id": ["a", "b", "c"], "timestamp": pd.to_datetime(stamps, utc=True)})
    got = events_frame(spark, Dataset(events=events)).orderBy("user_id").toPandas()["timestamp"]
    assert got.tolist()[:2] == [pd.Timestamp("2024-03-01T10:00:00.123456"), pd.Timestamp("2024-03-01T10:00:01")]  # floored to Spark's microseconds
    assert pd.isna(got.iloc[2])


def test_a_spark_training_run_refused_for_want_of_events_writes_nothing(spark: Any, store: Store, tmp_path: Path) -> None:
    """Regression: on Spark the filter's trail event was appended before the run was refused for keeping no event; in
    process a refused run writes nothing (``record_empty=False``)."""
    from governance.spark.batch import train_spark_and_record

    data = _dataset(seed=3)  # no consent recorded: the EU pack keeps no event
    with store.session() as session:
        before = session.execute(select(TrailEvent.seq)).all()
    with pytest.raises(ConfigError, match="no event may be used for training under the pack"):
        train_spark_and_record(data, EU, store, models_dir=tmp_path / "models", now=NOW, spark=spark)
    with store.session() as session:
        assert session.execute(select(TrailEvent.seq)).all() == before
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize(
    ("column", "spark_type", "value"),
    [("timestamp", "bigint", 1_709_251_200), ("timestamp", "string", "2024-03-01T00:00:00Z"), ("value", "string", "4"),
     ("user_id", "array<string>", ["u1"])],
)  # fmt: skip
def test_a_spark_events_table_of_the_wrong_types_is_refused_naming_the_column(
    spark: Any, sqlite_store: Store, column: str, spark_type: str, value: Any
) -> None:
    """Regression: a table already on the cluster with its times as Unix seconds or text reached the rules' time
    comparisons (erasure, retention) and failed there with Spark's analysis error, or compared text with times."""
    types = {"user_id": "string", "item_id": "string", "event_type": "string", "value": "double", "timestamp": "timestamp_ntz"}
    row = {"user_id": "u1", "item_id": "a", "event_type": "view", "value": None, "timestamp": datetime(2024, 3, 1)}
    types[column], row[column] = spark_type, value
    frame = spark.createDataFrame([tuple(row.values())], ", ".join(f"{c} {t}" for c, t in types.items()))
    with pytest.raises(DataError, match=re.escape(f"events: column {column} is ") + r".*; the Spark filter needs"):
        filter_training_events_spark(frame, CA, sqlite_store, now=NOW)
    with sqlite_store.session() as session:
        assert session.execute(select(TrailEvent)).first() is None
