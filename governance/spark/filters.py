"""The pack's training-data rules as Spark joins and filters, before the model reads a row.

The same rules as the in-process filter (:func:`governance.training_filter.filter_training_events`),
not a copy of them: the store is read once, in bulk, by
:func:`governance.training_filter.subject_rules`, which gives every subject its consent verdict
(consent in force, suppressions kept through an erasure, the basis of a grant) and the time of
its latest erasure. Only the broadcast of those per-subject facts to the events runs on Spark,
as a broadcast join and one column expression that takes the rules in the in-process order:

1. the subject's consent verdict (``withdrawn``, ``denied``, ``objected``, ``opted_out``,
   ``no_consent_record``, ``wrong_basis``); an event naming no subject: ``missing_subject_id``;
2. ``erased``: the subject's events at or before their latest erasure, or of unknown time;
3. ``retention``: events older than ``minimization.retention_days`` before ``now``, or of unknown time;
4. minimisation: the kept events keep only the model's input columns
   (:data:`recommender.feedback.MODEL_INPUT_COLUMNS`); no other column reaches the model.

The report is the in-process one (:func:`governance.training_filter.exclusion_report`), with the
same counts, and the same ``privacy.training_filtered`` trail event is appended. The one
difference is the data hashes: a Spark frame has no row order to hash, so its hash
(:func:`frame_hash`, ``spark-`` prefixed) is taken over the multiset of rows.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from governance.policy import LoadedPack, PolicyPack
from governance.training_filter import (
    EXCLUSION_REASONS,
    REASON_CODES,
    ExclusionCounts,
    exclusion_report,
    record_filtering,
    subject_rules,
)
from recommender.data import Dataset, canonical_ids
from recommender.errors import DataError
from recommender.feedback import MODEL_INPUT_COLUMNS

__all__ = ["EVENT_FRAME_COLUMNS", "event_staging", "events_frame", "filter_training_events_spark", "frame_hash"]

EVENT_FRAME_COLUMNS = ("user_id", "item_id", "event_type", "value", "timestamp")
"""The columns the Spark engine reads from an events table (the model's inputs and the time the rules need)."""


def events_frame(spark: Any, dataset: Dataset | pd.DataFrame, *, partitions: int | None = None) -> Any:
    """A Spark frame of an events table's :data:`EVENT_FRAME_COLUMNS` (ids as strings, times as UTC instants).

    Other columns (sessions, context, user attributes) are not carried over: they are never read. A large table is
    staged as Parquet for Spark to read; call this inside the run's :func:`event_staging` scope, which removes that
    copy when the run ends.
    """
    from pyspark.sql import types as T

    events = dataset.events if isinstance(dataset, Dataset) else dataset
    missing = [c for c in ("user_id", "item_id", "timestamp") if c not in events.columns]
    if missing:
        raise DataError(f"events: missing required column(s) {', '.join(missing)} for the Spark engine")
    frame = pd.DataFrame(
        {
            "user_id": canonical_ids(events["user_id"]).astype(object).where(events["user_id"].notna(), None),
            "item_id": canonical_ids(events["item_id"]).astype(object).where(events["item_id"].notna(), None),
            "event_type": (events["event_type"].astype("string") if "event_type" in events else pd.Series("view", index=events.index)).astype(object),
            "value": pd.to_numeric(events["value"], errors="coerce").astype("float64") if "value" in events else np.nan,
            "timestamp": _utc_naive(events["timestamp"]),
        }
    )
    frame["event_type"] = frame["event_type"].where(pd.notna(frame["event_type"]), None)
    schema = T.StructType(
        [
            T.StructField("user_id", T.StringType()),
            T.StructField("item_id", T.StringType()),
            T.StructField("event_type", T.StringType()),
            T.StructField("value", T.DoubleType()),
            T.StructField("timestamp", T.TimestampNTZType()),
        ]
    )
    if len(frame) > _IN_MEMORY_ROWS:
        out = _staged(spark, frame, schema)
    else:
        out = spark.createDataFrame(frame, schema=schema)
    return out.repartition(partitions) if partitions else out


_IN_MEMORY_ROWS = 200_000
"""Above this many events the frame goes to Spark through a Parquet file, not through the driver's heap."""


_STAGING: ContextVar[list[str] | None] = ContextVar("recgov_spark_staging", default=None)
"""The staged event folders of the run in progress (None: no run holds a :func:`event_staging` scope)."""


@contextmanager
def event_staging() -> Iterator[None]:
    """The scope of one run on Spark: the events it stages as Parquet (:func:`events_frame`) are removed when it ends,
    whether it succeeds or fails, not when the process exits (a server or a shell running many batches would
    keep every run's copy of the events until then).

    Frames read from the staged files (the events, the filtered events, a model's ratings) must not be used once the
    scope has ended. A scope opened inside another joins it: the outer one removes the folders when it ends, so a
    run that trains and then makes lists keeps its events until the lists are written."""
    if _STAGING.get() is not None:
        yield
        return
    folders: list[str] = []
    token = _STAGING.set(folders)
    try:
        yield
    finally:
        _STAGING.reset(token)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def _staged(spark: Any, frame: pd.DataFrame, schema: Any) -> Any:
    """``frame`` written as Parquet in a private temporary folder and read by Spark.

    The folder is removed when the :func:`event_staging` scope around the call ends; outside of one, at exit.
    A large pandas frame handed to ``createDataFrame`` is held whole in the driver's JVM heap;
    read from a file, it is split across tasks. On a cluster, set ``RECGOV_SPARK_STAGING`` to a
    folder every executor can read (a shared file system)."""
    import atexit
    import os
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    base = os.environ.get("RECGOV_SPARK_STAGING") or None
    folder = tempfile.mkdtemp(prefix="recgov-events-", dir=base)
    scope = _STAGING.get()
    if scope is not None:
        scope.append(folder)
    else:
        atexit.register(shutil.rmtree, folder, True)
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp", table.column("timestamp").cast(pa.timestamp("us")))
        pq.write_table(table, os.path.join(folder, "events.parquet"), row_group_size=100_000)
        return spark.read.schema(schema).parquet(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _utc_naive(stamps: pd.Series) -> pd.Series:
    """Event times as naive UTC (``NaT`` for missing), as :func:`recommender.data.event_times` reads them, floored to
    the microsecond: Spark's timestamps hold no finer time, and a finer one fails the cast to them (Arrow refuses to
    lose data). Flooring can only move an event earlier: at or before an erasure rather than after it, older rather
    than younger against the retention window; never the other way."""
    from recommender.data import event_times

    return pd.Series(event_times(pd.DataFrame({"timestamp": stamps})), index=stamps.index).dt.floor("us")


def frame_hash(frame: Any, columns: tuple[str, ...] | None = None) -> str:
    """A hash of a Spark frame's rows as a multiset (row order plays no part): ``spark-`` and 64 hex digits.

    SHA-256 over the row count, the column names and the sums (mod 2^64) of two independent 64-bit
    row hashes (Spark's ``xxhash64`` and a second xxhash64 under another seed). It names a
    data set in the trail; it is not a defence against someone crafting a collision.
    """
    from pyspark.sql import functions as F

    cols = list(columns or frame.columns)
    row = [F.col(c) for c in cols]
    agg = frame.select(
        F.xxhash64(*row).cast("decimal(38,0)").alias("h1"),
        F.xxhash64(F.lit("recgov"), *row).cast("decimal(38,0)").alias("h2"),
    ).agg(F.count(F.lit(1)).alias("n"), F.sum("h1").alias("s1"), F.sum("h2").alias("s2"))
    result = agg.collect()[0]
    s1 = int(result["s1"] or 0) % 2**64
    s2 = int(result["s2"] or 0) % 2**64
    text = f"recgov.spark-frame.v1\x00{int(result['n'])}\x00{','.join(cols)}\x00{s1:016x}{s2:016x}"
    return "spark-" + hashlib.sha256(text.encode()).hexdigest()


def filter_training_events_spark(
    events: Any,
    pack: LoadedPack | PolicyPack,
    store: Any,
    *,
    purpose: str = "personalization",
    now: datetime | None = None,
    record: bool = True,
    actor: str | None = None,
    record_empty: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Keep the events a model may learn from, on Spark: the rules and report of the in-process filter.

    ``events`` is a Spark frame with :data:`EVENT_FRAME_COLUMNS` (:func:`events_frame`). The
    distinct subjects are collected to the driver (one string per subject, never an event), the
    store is read for them in bulk, and their verdicts go back to the executors as a broadcast
    join. Returns the kept events with only :data:`~recommender.feedback.MODEL_INPUT_COLUMNS`
    (cached: training reads them several times) and the exclusions report. With ``record``, the
    ``privacy.training_filtered`` trail event is appended; without ``record_empty``, not when nothing is
    kept (a training run that is then refused writes nothing), as in process.

    Raises
    ------
    ConfigError
        ``purpose`` is not in the pack's consent section (nothing is read or recorded).
    DataError
        ``events`` lacks a column the rules need, or holds one of another type (times as numbers or text).
    """
    from pyspark.sql import functions as F

    missing = [c for c in EVENT_FRAME_COLUMNS if c not in events.columns]
    if missing:
        raise DataError(f"events: missing column(s) {', '.join(missing)}; the Spark filter needs {', '.join(EVENT_FRAME_COLUMNS)}")
    _check_types(events)
    spark = events.sparkSession
    given, events = events, events.withColumn("user_id", _id_string(events, "user_id"))
    subjects = sorted(r[0] for r in events.select("user_id").where(F.col("user_id").isNotNull()).distinct().collect())
    rules = subject_rules(pack, store, subjects, purpose=purpose, now=now)

    verdicts = spark.createDataFrame(
        pd.DataFrame({"user_id": rules.subjects, "subject_reason": rules.reason.astype(np.int32), "erased_until": pd.Series(rules.erased_until)}),
        schema="user_id string, subject_reason int, erased_until timestamp_ntz",
    )
    code = REASON_CODES
    ts = F.col("timestamp")
    reason = F.when(F.col("user_id").isNull(), F.lit(code["missing_subject_id"]))
    reason = reason.when(F.col("subject_reason") != 0, F.col("subject_reason"))
    reason = reason.when(F.col("erased_until").isNotNull() & (ts.isNull() | (ts <= F.col("erased_until"))), F.lit(code["erased"]))
    if rules.cutoff is not None:
        cutoff = pd.Timestamp(rules.cutoff).tz_convert("UTC").tz_localize(None).to_pydatetime()
        reason = reason.when(ts.isNull() | (ts < F.lit(cutoff).cast("timestamp_ntz")), F.lit(code["retention"]))
    judged = (
        events.join(F.broadcast(verdicts), on="user_id", how="left")
        .withColumn("reason", reason.otherwise(F.lit(0)))
    )
    judged = judged.select(*EVENT_FRAME_COLUMNS, "reason", "subject_reason").cache()
    counts = _counts(judged, rules.reason)
    kept = judged.where(F.col("reason") == 0).select(*MODEL_INPUT_COLUMNS).cache()
    report = exclusion_report(pack, rules, counts)
    if record and (record_empty or counts.events_kept):
        before = frame_hash(given.select(*EVENT_FRAME_COLUMNS))
        after = frame_hash(kept)
        record_filtering(store, pack, before, after, report, actor=actor)
    kept.count()  # materialize the cache before the judged frame is let go
    judged.unpersist()
    return kept, report


_EXPECTED_TYPES = {
    "user_id": ("text or a whole number", ("StringType", "IntegralType", "FractionalType")),
    "item_id": ("text or a whole number", ("StringType", "IntegralType", "FractionalType")),
    "event_type": ("text", ("StringType",)),
    "value": ("a number", ("NumericType",)),
    "timestamp": ("a timestamp (Unix seconds: F.timestamp_seconds; text: F.to_timestamp)", ("TimestampType", "TimestampNTZType")),
}


def _check_types(events: Any) -> None:
    """Refuse a column whose Spark type the rules cannot read as they mean to: times held as numbers or text reach
    the erasure and retention comparisons (and fail there, or compare text with times), a list cast to text names
    a subject "[u1]".

    Raises
    ------
    DataError
        Naming the first such column, its type and what the filter needs.
    """
    from pyspark.sql import types as T

    for name, (expected, kinds) in _EXPECTED_TYPES.items():
        found = events.schema[name].dataType
        if not isinstance(found, tuple(getattr(T, kind) for kind in kinds)) and not isinstance(found, T.NullType):
            raise DataError(f"events: column {name} is {found.simpleString()}; the Spark filter needs {expected}; cast it first")


def _id_string(events: Any, column: str) -> Any:
    """A Spark id column as the text the store keys subjects by (:func:`recommender.data.canonical_ids`).

    Integer-valued floats and decimals (integer ids read with a missing one) read ``"10"``, as
    consent records and erasures key them; a cast to string would read ``"10.0"`` and match none.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    col = F.col(column)
    if isinstance(events.schema[column].dataType, T.FractionalType):
        return F.when(col == F.floor(col), F.floor(col).cast("long").cast("string")).otherwise(col.cast("string"))
    return col.cast("string")


def _counts(judged: Any, subject_reason: np.ndarray) -> ExclusionCounts:
    """The in-process counts (:meth:`ExclusionCounts.of`) from two aggregations on Spark.

    Events per reason; per subject, whether any event was kept and whether any went for an
    erasure: a subject allowed by consent with none kept and some erased counts as ``erased``,
    one with none kept and none erased lost all to retention.
    """
    from pyspark.sql import functions as F

    names = list(EXCLUSION_REASONS)
    per_reason = {int(r["reason"]): int(r["count"]) for r in judged.groupBy("reason").count().collect()}
    per_subject = (
        judged.where(F.col("user_id").isNotNull() & (F.col("subject_reason") == 0))
        .groupBy("user_id")
        .agg(
            F.max((F.col("reason") == 0).cast("int")).alias("kept"),
            F.max((F.col("reason") == REASON_CODES["erased"]).cast("int")).alias("erased"),
        )
        .agg(
            F.sum("kept").alias("kept"),
            F.sum(((F.col("kept") == 0) & (F.col("erased") == 1)).cast("int")).alias("erased"),
        )
        .collect()[0]
    )
    kept_subjects = int(per_subject["kept"] or 0)
    erased_subjects = int(per_subject["erased"] or 0)
    subject_counts = np.bincount(subject_reason.astype(np.int64), minlength=len(names) + 1)
    subjects_excluded = {name: int(subject_counts[REASON_CODES[name]]) for name in names}
    subjects_excluded["erased"] = erased_subjects
    subjects_excluded["retention"] = int(subject_counts[0]) - kept_subjects - erased_subjects
    return ExclusionCounts(
        events_total=sum(per_reason.values()),
        events_kept=per_reason.get(0, 0),
        events_excluded={name: per_reason.get(REASON_CODES[name], 0) for name in names},
        subjects_total=len(subject_reason),
        subjects_kept=kept_subjects,
        subjects_excluded=subjects_excluded,
    )
