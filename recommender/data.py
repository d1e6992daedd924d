"""The data model: interaction events, user and item tables, and the matrices built from them.

Every source (MovieLens, an event log, the synthetic generator) is turned into one
:class:`Dataset`:

``events``
    one row per interaction, columns :data:`EVENT_COLUMNS`:

    ===============  ==========================  =========================================
    column           dtype                       meaning
    ===============  ==========================  =========================================
    ``user_id``      string or category          who acted (an opaque id, never a name)
    ``item_id``      string or category          on what
    ``event_type``   string or category          one of :data:`EVENT_TYPES` (others are
                                                 reported by validation)
    ``value``        float64, NaN allowed        a rating (1-5) or a dwell time (seconds)
    ``timestamp``    datetime64[ns, UTC]         when
    ``session_id``   string, missing allowed     the session the event belongs to
    ``context``      string, missing allowed     free context (device, page, ...), JSON
    ===============  ==========================  =========================================

``users``
    indexed by ``user_id``; attribute columns (age, gender, country, ...).
``items``
    indexed by ``item_id``; metadata columns, of which :data:`ITEM_COLUMNS` have a
    fixed meaning (``categories`` and ``flags`` are ``|``-separated lists).

Ids are strings to the outside world. Inside, an :class:`InteractionMatrix` maps
them to dense row and column indices.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recommender.errors import DataError

__all__ = [
    "EVENT_COLUMNS",
    "EVENT_TYPES",
    "ITEM_COLUMNS",
    "LATEST_EVENT_TIME",
    "LATEST_UNIX_SECONDS",
    "REQUIRED_EVENT_COLUMNS",
    "Dataset",
    "InteractionMatrix",
    "canonical_ids",
    "empty_events",
    "ensure_event_schema",
    "event_times",
    "read_parquet_flat",
]

EVENT_COLUMNS: tuple[str, ...] = (
    "user_id",
    "item_id",
    "event_type",
    "value",
    "timestamp",
    "session_id",
    "context",
)
"""The columns of an events table, in order."""

EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase", "rating")
"""The event types recgov knows. Validation reports any other type."""

ITEM_COLUMNS: tuple[str, ...] = ("title", "provider", "provider_group", "categories", "text", "flags")
"""Item metadata columns with a fixed meaning. ``categories`` and ``flags`` are
``|``-separated; a flag reads ``harmful:<category>``."""

REQUIRED_EVENT_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "timestamp")

LATEST_UNIX_SECONDS = 9_223_372_036
"""The last whole second a nanosecond clock (``datetime64[ns]``, what every rule comparing times reads) holds:
2262-04-11T23:47:16Z. The loaders refuse a later time: it is a placeholder or the wrong unit (milliseconds read as
seconds), and cast to nanoseconds it would wrap around to another century."""
LATEST_EVENT_TIME = pd.Timestamp(LATEST_UNIX_SECONDS, unit="s", tz="UTC")
""":data:`LATEST_UNIX_SECONDS` as a UTC time."""


def empty_events() -> pd.DataFrame:
    """An events table with no rows and the canonical dtypes."""
    return pd.DataFrame(
        {
            "user_id": pd.Series([], dtype="string"),
            "item_id": pd.Series([], dtype="string"),
            "event_type": pd.Series([], dtype="string"),
            "value": pd.Series([], dtype="float64"),
            "timestamp": pd.Series([], dtype="datetime64[ns, UTC]"),
            "session_id": pd.Series([], dtype="string"),
            "context": pd.Series([], dtype="string"),
        }
    )


def ensure_event_schema(events: pd.DataFrame, *, source: str = "events") -> pd.DataFrame:
    """Check that ``events`` has the required columns and fill the optional ones.

    Missing optional columns are added (``event_type`` defaults to ``"view"``,
    ``value`` to NaN, ``session_id`` and ``context`` to missing). The timestamp is
    converted to UTC. The input is not modified.

    Raises
    ------
    DataError
        When a required column is missing or the timestamp cannot be read.
    """
    missing = [c for c in REQUIRED_EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise DataError(
            f"{source}: missing required column(s) {', '.join(missing)}; "
            f"an events table needs {', '.join(REQUIRED_EVENT_COLUMNS)} "
            f"(got {', '.join(map(str, events.columns)) or 'no columns'})"
        )
    out = events.copy()
    n = len(out)
    if "event_type" not in out.columns:
        out["event_type"] = pd.Series(["view"] * n, index=out.index, dtype="string")
    if "value" not in out.columns:
        out["value"] = np.full(n, np.nan)
    for name in ("session_id", "context"):
        if name not in out.columns:
            out[name] = pd.Series(pd.NA, index=out.index, dtype="string")
    ts = out["timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        try:
            if pd.api.types.is_numeric_dtype(ts):
                ts = pd.to_datetime(ts, unit="s", utc=True)
            else:
                ts = pd.to_datetime(ts, utc=True, format="mixed")
        except (ValueError, TypeError, OverflowError) as err:
            raise DataError(f"{source}: column timestamp cannot be read as a time: {err}") from err
    elif str(ts.dt.tz) != "UTC":
        ts = ts.dt.tz_convert("UTC")
    out["timestamp"] = ts
    out["value"] = pd.to_numeric(out["value"], errors="coerce").astype("float64")
    extra = [c for c in out.columns if c not in EVENT_COLUMNS]
    return out[list(EVENT_COLUMNS) + extra]


def event_times(events: pd.DataFrame, *, source: str = "events") -> np.ndarray:
    """The events' times as naive UTC ``datetime64[ns]``; ``NaT`` where a time is missing.

    Every rule that compares event times (erasure, retention) reads them here, so
    they agree on what a time is: a missing one is an event of unknown time (each
    rule says what becomes of it), while a value that is present but is not a time
    is a broken input, never silently treated as missing.

    Raises
    ------
    DataError
        Naming the first row (its position in ``events``) whose timestamp cannot
        be read as a time, and the value.
    """
    raw = events["timestamp"]
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        stamps = raw.dt.tz_convert("UTC")
    elif pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        stamps = pd.to_datetime(raw, unit="s", utc=True, errors="coerce")
    else:
        stamps = pd.to_datetime(raw, utc=True, errors="coerce", format="mixed")
    bad = np.asarray(stamps.isna(), dtype=bool) & np.asarray(raw.notna(), dtype=bool)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: row {row} column timestamp {raw.iloc[row]!r} cannot be read as a time "
            f"({int(bad.sum())} such row(s)); give Unix seconds or ISO 8601"
        )
    # a coarser unit (pandas reads far times in microseconds or seconds) holds times nanoseconds do not: cast
    # unchecked, 3000-01-01 would come back as 1830-11-23 and be judged by a time it does not have
    earliest = pd.Timestamp.min.ceil("s").tz_localize("UTC")
    for beyond, side, bound in ((stamps > LATEST_EVENT_TIME, "after", LATEST_EVENT_TIME), (stamps < earliest, "before", earliest)):
        beyond = np.asarray(beyond, dtype=bool)
        if beyond.any():
            row = int(np.flatnonzero(beyond)[0])
            raise DataError(
                f"{source}: row {row} column timestamp {str(stamps.iloc[row])!r} is {side} {bound.isoformat()} "
                f"({int(beyond.sum())} such row(s)), outside the times recgov compares: a placeholder or the wrong "
                "unit (milliseconds read as seconds?); correct or drop the row"
            )
    return stamps.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def _needs_string_cast(dtype: Any) -> bool:
    """Whether a column must be cast to strings before hashing for :meth:`Dataset.content_hash`.

    Object columns and categoricals are hashed as their values' strings, so that two
    loads of the same file hash the same whatever the dtype. A categorical whose
    categories are already strings hashes to exactly that without the cast (pandas
    hashes a categorical by hashing its categories and taking them by code, and a
    missing value hashes as a missing string does), so it is hashed as it is: on 20
    million events the cast would cost seconds and a copy of every id as a string.
    """
    if dtype == object:
        return True
    return isinstance(dtype, pd.CategoricalDtype) and not _is_string_valued(dtype)


def _is_string_valued(dtype: Any) -> bool:
    """Whether a column's values (a categorical's categories) are strings already, so their text is the id."""
    if isinstance(dtype, pd.CategoricalDtype):
        categories = dtype.categories
        text = pd.api.types.infer_dtype(categories, skipna=True) in ("string", "empty")
        return isinstance(categories.dtype, pd.StringDtype) or text
    return isinstance(dtype, pd.StringDtype)


def _id_text(values: Any) -> np.ndarray:
    """The canonical text of distinct, present id values (an array or Index, no missing value), as an object array.

    An integer-valued number reads as the integer (``10``, ``10.0`` and ``np.float64(10)`` all
    read ``"10"``): pandas stores an integer column with a missing value as floats, and an id read
    ``"10.0"`` would match no consent record, objection or erasure keyed ``"10"``. Other values
    read as ``str`` does (``"007"`` stays ``"007"``: ids are opaque text, and a number cannot
    carry leading zeros). Vectorised for numeric arrays; an object array is walked once per
    distinct value, never per event.
    """
    array = np.asarray(values)
    if array.dtype.kind in "iu":
        return array.astype(str).astype(object)
    if array.dtype.kind == "f":
        whole = np.isfinite(array) & (np.floor(array) == array) & (np.abs(array) < 2.0**63)
        text = array.astype(str).astype(object)
        text[whole] = array[whole].astype(np.int64).astype(str)
        return text
    if pd.api.types.infer_dtype(array, skipna=False) in ("string", "empty"):  # text already: as it is
        return array.astype(object)
    return np.array([_one_id_text(v) for v in array], dtype=object)


def _plain(values: Any) -> np.ndarray:
    """Distinct id values as a numpy array (a nullable Int64/Float64 array as its numpy dtype; no NA among them)."""
    if isinstance(values.dtype, pd.api.extensions.ExtensionDtype) and getattr(values.dtype, "kind", "O") in "iuf":
        return np.asarray(values.to_numpy(dtype=values.dtype.numpy_dtype))
    return np.asarray(values)


def _one_id_text(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


def canonical_ids(ids: pd.Series) -> pd.Series:
    """An id column as a categorical of canonical strings (missing ids stay missing), same index and name.

    What every loader and privacy filter reads ids through, so an id has one text whatever
    the column's dtype: integer ids with a missing one (``float64`` or a categorical of integers,
    which pandas casts through floats) read ``"10"``, not ``"10.0"``; nullable ``Int64``, plain
    integers and object columns of numbers alike. A column whose values (a categorical's
    categories) are strings already is taken as it is. The distinct values are rendered once
    and events take them by code (no string per event): the cost is a factorization.
    """
    if _is_string_valued(ids.dtype):
        return ids.astype("category") if not isinstance(ids.dtype, pd.CategoricalDtype) else ids
    if isinstance(ids.dtype, pd.CategoricalDtype):
        raw_codes, raw_values = np.asarray(ids.cat.codes, dtype=np.int64), ids.cat.categories
    else:
        raw_codes, raw_values = pd.factorize(ids, use_na_sentinel=True)
        raw_codes = np.asarray(raw_codes, dtype=np.int64)
    text = _id_text(_plain(raw_values))
    level, names = pd.factorize(pd.Index(text, dtype=object))  # values with one text (1 and "1") become one id
    codes = np.where(raw_codes >= 0, np.asarray(level, dtype=np.int64)[np.maximum(raw_codes, 0)], -1)
    categories = pd.Index(np.asarray(names, dtype=object), dtype="string")
    return pd.Series(pd.Categorical.from_codes(codes, categories=categories), index=ids.index, name=ids.name)


def subject_codes(ids: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Each event's subject as a code into the sorted distinct ids (as strings; -1: no subject), and those ids.

    The ids are read through :func:`canonical_ids`, what the privacy filters match subjects
    with, so an integer id with a missing id in its column is ``"10"``, as consent records,
    objections and erasures key it, never ``"10.0"`` (an erasure that matched no event would
    keep the erased subject's data). For a categorical column (ids loaded from a file), the
    strings are made of its categories, not of every event: on 20 million events that is
    seconds and a string per event saved. Unused categories name no subject.
    """
    if isinstance(ids.dtype, pd.StringDtype):  # strings already: their own text
        codes, uniques = pd.factorize(ids, sort=True)
        return np.asarray(codes, dtype=np.int64), [str(u) for u in uniques]
    ids = canonical_ids(ids)  # a categorical of strings as it is; any other column's distinct values rendered once
    category = np.asarray(ids.cat.codes, dtype=np.int64)
    used = np.bincount(category[category >= 0], minlength=len(ids.cat.categories)) > 0
    names = pd.Series(ids.cat.categories[used]).astype("string")
    level, uniques = pd.factorize(names, sort=True)
    to_subject = np.full(len(used), -1, dtype=np.int64)
    to_subject[used] = level
    codes = np.where(category >= 0, to_subject[np.maximum(category, 0)], -1)
    return codes, [str(u) for u in uniques]


def _row_hashes(frame: pd.DataFrame, label: str) -> np.ndarray:
    """One uint64 per row of ``frame`` (see :meth:`Dataset.content_hash`); events without their index."""
    if frame is None or len(frame) == 0:
        return np.empty(0, dtype=np.uint64)
    plain = frame[sorted(frame.columns, key=str)].copy(deep=False)
    for column in plain.columns:
        if _needs_string_cast(plain[column].dtype):
            plain[column] = plain[column].astype("string")
    return pd.util.hash_pandas_object(plain, index=label != "events").to_numpy(dtype=np.uint64)


@dataclass(frozen=True)
class Dataset:
    """Interaction events with their user and item tables.

    Parameters
    ----------
    events:
        The interactions, columns :data:`EVENT_COLUMNS`.
    users:
        User attributes indexed by ``user_id`` (may be empty).
    items:
        Item metadata indexed by ``item_id`` (may be empty).
    name:
        A short label for reports (``"movielens-100k"``, ``"synthetic"``).
    source:
        Where the data came from (a path or a generator spec), for lineage.
    """

    events: pd.DataFrame
    users: pd.DataFrame = field(default_factory=pd.DataFrame)
    items: pd.DataFrame = field(default_factory=pd.DataFrame)
    name: str = "dataset"
    source: str = ""
    columns_from: dict[str, str] = field(default_factory=dict)
    """Canonical event column -> the source column it was read from (for a log read
    with a column mapping), so audits can see what a model input really is; an item
    table's mapped columns are keyed ``items.<column>`` (:func:`recommender.item_table.attach_items`)."""
    rating_range: tuple[float, float] = (1.0, 5.0)
    """The scale of ``rating`` values in this data set (MovieLens' CSV sets rate 0.5
    to 5 stars), which validation checks ratings against."""

    @property
    def n_events(self) -> int:
        """The number of interaction events."""
        return len(self.events)

    def content_hash(self) -> str:
        """A SHA-256 over the events, the user table and the item table.

        Row hashes come from pandas' vectorized ``hash_pandas_object`` (a fixed
        key, so the same content gives the same hash in every process); columns
        are taken in a fixed order and categorical ids are hashed by value, so
        two loads of the same file hash the same.
        """
        return self._digest(_row_hashes(self.events, "events"))

    def content_hashes(self, keep: np.ndarray, subset: Dataset) -> tuple[str, str]:
        """The content hashes of this data set and of ``subset`` (``self.subset(keep)``), hashing each event once.

        An event's row hash depends on its values only (events are hashed without
        their index, ids by value), so the subset's event rows hash to this data
        set's row hashes at ``keep``: what a privacy filter, which records the
        hashes before and after, would otherwise compute twice over millions of
        events. The users and items tables are hashed as :meth:`content_hash` does.
        """
        rows = _row_hashes(self.events, "events")
        kept = np.asarray(keep, dtype=bool)
        if kept.shape != (len(self.events),) or len(subset.events) != int(kept.sum()):
            raise DataError(f"content_hashes: keep must be the {len(self.events)} booleans the subset of {len(subset.events)} events was made with")
        return self._digest(rows), subset._digest(rows[kept])

    def _digest(self, event_rows: np.ndarray) -> str:
        """The content hash, given the events' row hashes."""
        h = hashlib.sha256(b"recgov.dataset.v1\x00")
        for label, frame in (("events", self.events), ("users", self.users), ("items", self.items)):
            frame = frame if frame is not None else pd.DataFrame()
            h.update(f"{label}:{len(frame)}:{','.join(map(str, frame.columns))}\x00".encode())
            if len(frame) == 0:
                continue
            rows = event_rows if label == "events" else _row_hashes(frame, label)
            h.update(np.ascontiguousarray(rows, dtype=np.uint64).tobytes())
        return h.hexdigest()

    def with_events(self, events: pd.DataFrame) -> Dataset:
        """A copy of this dataset holding other events (after filtering, say)."""
        return replace(self, events=events)

    def subset(self, keep: np.ndarray | pd.Series) -> Dataset:
        """A copy holding only the events where ``keep`` is true, every other attribute kept.

        What filtering for privacy needs (erasures, consent, retention): the rating
        scale, the column origins, the name, source and item catalog stay as they
        were, so validating the result judges it as the original was judged. The
        events are renumbered from 0 in their input order; unused ``user_id`` and
        ``item_id`` categories are dropped, so no left-out id hides in a
        categorical dtype; the user table keeps only the rows of users who still
        have an event.

        Raises
        ------
        DataError
            When ``keep`` is not one boolean per event.
        """
        mask = np.asarray(keep)
        if mask.dtype != bool or mask.shape != (len(self.events),):
            raise DataError(f"subset: keep must be one boolean per event ({len(self.events)}), got {mask.dtype} of shape {mask.shape}")
        events = self.events.loc[mask].reset_index(drop=True)
        for column in ("user_id", "item_id"):
            if isinstance(events[column].dtype, pd.CategoricalDtype):
                events[column] = events[column].cat.remove_unused_categories()
        users = self.users
        if users is not None and len(users):
            ids = events["user_id"]
            # the distinct ids first, then their strings: the same set as every id's string, without a
            # string per event (a categorical's categories are now exactly the ids left), each in its canonical
            # text on both sides, so user 10 held as 10.0 in the events still finds its row
            present = ids.cat.categories if isinstance(ids.dtype, pd.CategoricalDtype) else pd.unique(ids.dropna())
            left = pd.Index(_id_text(_plain(present)), dtype=object)
            users = users.loc[np.asarray(pd.Index(_id_text(_plain(users.index)), dtype=object).isin(left), dtype=bool)]
        return replace(self, events=events, users=users)


@dataclass(frozen=True)
class InteractionMatrix:
    """A users x items sparse matrix with the ids of its rows and columns.

    ``matrix[u, i]`` is the confidence weight of user ``user_ids[u]`` for item
    ``item_ids[i]`` (for the explicit view, the rating). The matrix is CSR,
    float32, with sorted indices and no explicit zeros, which is what
    ``implicit`` expects.
    """

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray

    def __post_init__(self) -> None:
        n_users, n_items = self.matrix.shape
        if n_users != len(self.user_ids) or n_items != len(self.item_ids):
            raise DataError(
                f"matrix shape {self.matrix.shape} does not match "
                f"{len(self.user_ids)} user ids and {len(self.item_ids)} item ids"
            )

    @property
    def n_users(self) -> int:
        """Number of rows."""
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        """Number of columns."""
        return self.matrix.shape[1]

    @property
    def nnz(self) -> int:
        """Number of stored (user, item) pairs."""
        return int(self.matrix.nnz)

    @cached_property
    def _user_lookup(self) -> pd.Index:
        return pd.Index(np.asarray(self.user_ids, dtype=object).astype(str))

    @cached_property
    def _item_lookup(self) -> pd.Index:
        return pd.Index(np.asarray(self.item_ids, dtype=object).astype(str))

    @cached_property
    def _user_positions(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self._user_lookup)}

    def user_index(self, user_ids: object) -> np.ndarray:
        """Row indices of ``user_ids``; -1 where a user is unknown."""
        if isinstance(user_ids, str):  # one id: a dict lookup beats building an indexer
            return np.array([self._user_positions.get(user_ids, -1)], dtype=np.int64)
        return _lookup(self._user_lookup, user_ids)

    def user_row(self, row: int) -> sp.csr_matrix:
        """Row ``row`` of the matrix as a 1 x n_items CSR matrix (cheaper than indexing)."""
        m = self.matrix
        start, end = m.indptr[row], m.indptr[row + 1]
        return sp.csr_matrix(
            (m.data[start:end], m.indices[start:end], np.array([0, end - start], dtype=m.indptr.dtype)), shape=(1, m.shape[1])
        )

    def item_index(self, item_ids: object) -> np.ndarray:
        """Column indices of ``item_ids``; -1 where an item is unknown."""
        return _lookup(self._item_lookup, item_ids)

    def content_hash(self) -> str:
        """A SHA-256 over the ids and the matrix content.

        Two matrices with the same ids in the same order and the same values have
        the same hash, whatever process built them.
        """
        m = self.matrix
        h = hashlib.sha256(b"recgov.interaction-matrix.v1\x00")
        h.update(np.asarray(m.shape, dtype="<i8").tobytes())
        for ids in (self.user_ids, self.item_ids):
            joined = "\x1f".join(map(str, ids)).encode("utf-8")
            h.update(len(joined).to_bytes(8, "little"))
            h.update(joined)
        h.update(np.ascontiguousarray(m.indptr, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(m.indices, dtype="<i4").tobytes())
        h.update(np.ascontiguousarray(m.data, dtype="<f4").tobytes())
        return h.hexdigest()


def _lookup(index: pd.Index, ids: object) -> np.ndarray:
    values = np.atleast_1d(np.asarray(ids, dtype=object)).astype(str)
    return np.asarray(index.get_indexer(values), dtype=np.int64)


def read_parquet_flat(path: str | Path) -> pd.DataFrame:
    """A Parquet file as a table whose nested (struct) columns are spread into one column per field, named
    ``parent.field``: a field is read, mapped and checked under its own name (a pack that forbids ``religion``
    sees ``profile.religion``), never carried whole inside a column named otherwise.

    Columns are the file's own fields, under the file's own names: the pandas metadata a writer may add is not
    followed, since it can name a field otherwise (a field ``religion`` read as ``genres``) or make one the index;
    only the unnamed index pandas writes (``__index_level_0__``) is left out, as it holds no data of the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if Path(path).is_file():  # (a folder of part files, as Spark writes one, is read whole below)
        _refuse_repeated_columns(path, pq.read_schema(path).names, "")  # pyarrow's own error dumps the whole schema
    table = pq.read_table(path)
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    _refuse_repeated_columns(path, table.column_names, " once nested fields are spread")  # a.b beside a struct a{b}
    frame = table.to_pandas(ignore_metadata=True)
    return frame.drop(columns=[c for c in frame.columns if _PANDAS_INDEX.fullmatch(str(c))])


_PANDAS_INDEX = re.compile(r"__index_level_\d+__")
"""How pandas names the field of an unnamed index it writes into a Parquet file."""


def _refuse_repeated_columns(path: str | Path, names: list[str], how: str) -> None:
    """Refuse a table naming a column twice: which of the two a reader took would be a guess."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path}: the column {name!r} appears {names.count(name)} times{how}; name each column once")
        seen.add(name)
