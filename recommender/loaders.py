"""Loaders: MovieLens-100K directories and CSV/Parquet event logs.

Every loader returns a :class:`~recommender.data.Dataset` or raises
:class:`~recommender.errors.DataError` with one line that names the file, the line
where it can, and what is wrong. Nothing is half-loaded.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from recommender.data import Dataset, ensure_event_schema
from recommender.errors import DataError
from recommender.item_table import release_columns

__all__ = [
    "ML100K_GENRES",
    "ColumnMapping",
    "load_movielens_100k",
    "write_movielens_100k",
    "load_event_log",
    "is_movielens_dir",
    "load_data",
]

ML100K_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
"""The 19 genre flags of ``u.item``, in the order of ``u.genre``."""

_UDATA = ("user", "item", "rating", "timestamp")
_UUSER = ("user", "age", "gender", "occupation", "zip")
_UITEM = ("item", "title", "release_date", "video_release_date", "imdb_url", *ML100K_GENRES)

# Messages tests assert on.
EMPTY_FILE = "{path}: the file is empty; expected {what}"
NOT_TEXT = "{path}: not a text file in the expected encoding ({encoding}); it contains NUL bytes (UTF-16 or binary?)"
BAD_ENCODING = "{path} line {line}: byte 0x{byte:02x} at offset {pos} cannot be decoded as {encoding}; expected {encoding} text"
WRONG_FIELDS = "{path} line {line}: expected {expected} {sep}-separated fields ({names}), found {found}"
NOT_NUMBER = "{path} line {line}: {column} {value!r} is not a number"
OUT_OF_RANGE = "{path} line {line}: {column} {value!r} is outside {low}..{high}"
BAD_RELEASE = "{path} line {line}: release date {value!r} is not a date like 01-Jan-1995"


def _read_text(path: Path, encoding: str, what: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as err:
        raise DataError(f"{path}: no such file; expected {what}") from err
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from err
    if not raw.strip():
        raise DataError(EMPTY_FILE.format(path=path, what=what))
    if b"\x00" in raw[:65536]:
        raise DataError(NOT_TEXT.format(path=path, encoding=encoding))
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(BAD_ENCODING.format(path=path, line=line, byte=raw[err.start], pos=err.start, encoding=encoding)) from err


def _split_fields(path: Path, text: str, sep: str, names: tuple[str, ...], *, min_fields: int | None = None) -> pd.DataFrame:
    """Parse delimited text into string columns, checking the field count of every line."""
    lines = text.splitlines()
    expected = len(names)
    minimum = expected if min_fields is None else min_fields
    rows: list[list[str]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) < minimum or len(fields) > expected:
            sep_name = {"\t": "tab", "|": "pipe", ",": "comma"}.get(sep, repr(sep))
            raise DataError(
                WRONG_FIELDS.format(
                    path=path, line=number, expected=expected, sep=sep_name, names=" ".join(names[:5]) + (" ..." if expected > 5 else ""), found=len(fields)
                )
            )
        rows.append(fields + [""] * (expected - len(fields)))
    frame = pd.DataFrame(rows, columns=list(names), dtype="string")
    frame.index = pd.Index([n for n, line in enumerate(lines, start=1) if line.strip()], name="line")
    return frame


def _numeric(path: Path, frame: pd.DataFrame, column: str, *, integer: bool = False, low: float | None = None, high: float | None = None) -> np.ndarray:
    raw = frame[column].str.strip()
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() | (integer & (values.fillna(0) % 1 != 0))
    if bad.any():
        line = bad.idxmax()
        raise DataError(NOT_NUMBER.format(path=path, line=line, column=column, value=str(raw.loc[line])))
    arr = values.to_numpy(dtype=np.float64)
    if low is not None and high is not None:
        out = (arr < low) | (arr > high)
        if out.any():
            pos = int(np.flatnonzero(out)[0])
            raise DataError(OUT_OF_RANGE.format(path=path, line=frame.index[pos], column=column, value=str(raw.iloc[pos]), low=low, high=high))
    return arr


def _release_years(path: Path, frame: pd.DataFrame) -> pd.Series:
    """Years of ``u.item``'s release dates (``01-Jan-1995``); an empty date stays missing."""
    text = frame["release_date"].str.strip()
    dates = pd.to_datetime(text.where(text != "", None), format="%d-%b-%Y", errors="coerce")
    bad = (text != "") & dates.isna()
    if bad.any():
        line = bad.idxmax()
        raise DataError(BAD_RELEASE.format(path=path, line=line, value=str(text.loc[line])))
    return pd.Series(dates.dt.year.to_numpy(), dtype="Int64")


def is_movielens_dir(path: Path) -> bool:
    """True when ``path`` is a directory holding a MovieLens-100K ``u.data``."""
    return path.is_dir() and (path / "u.data").exists()


def load_movielens_100k(directory: str | Path) -> Dataset:
    """Load a MovieLens-100K directory (``u.data``, and ``u.user``/``u.item`` when present).

    ``u.data`` is tab-separated ``user item rating timestamp`` (ratings 1-5, Unix
    seconds); ``u.user`` is pipe-separated ``user|age|gender|occupation|zip``;
    ``u.item`` is pipe-separated and latin-1 encoded, with 19 genre flags.
    Ratings become ``rating`` events whose ``value`` is the rating. The genres
    become the items' ``categories`` (``|``-separated, in ``u.genre`` order), the
    release dates their ``release_year`` and ``release_decade`` (``1990s``): item
    groups that calibration and exposure rules can read. MovieLens names no
    provider: give an item table (``--items``) for provider rules.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory; expected a MovieLens-100K directory holding u.data")
    udata = directory / "u.data"
    text = _read_text(udata, "ascii", "tab-separated lines 'user item rating timestamp'")
    frame = _split_fields(udata, text, "\t", _UDATA)
    _numeric(udata, frame, "user", integer=True)
    _numeric(udata, frame, "item", integer=True)
    ratings = _numeric(udata, frame, "rating", low=1, high=5)
    seconds = _numeric(udata, frame, "timestamp", integer=True, low=0, high=2**40)
    events = pd.DataFrame(
        {
            "user_id": frame["user"].str.strip().astype("category"),
            "item_id": frame["item"].str.strip().astype("category"),
            "event_type": pd.Categorical(["rating"] * len(frame)),
            "value": ratings,
            "timestamp": pd.to_datetime(seconds.astype(np.int64), unit="s", utc=True),
        }
    ).reset_index(drop=True)
    users = pd.DataFrame(index=pd.Index([], name="user_id", dtype="string"))
    uuser = directory / "u.user"
    if uuser.exists():
        uf = _split_fields(uuser, _read_text(uuser, "latin-1", "pipe-separated lines 'user|age|gender|occupation|zip'"), "|", _UUSER)
        ages = _numeric(uuser, uf, "age", integer=True, low=0, high=150)
        users = pd.DataFrame(
            {"age": ages.astype(np.int64), "gender": uf["gender"].to_numpy(), "occupation": uf["occupation"].to_numpy(), "zip": uf["zip"].to_numpy()},
            index=pd.Index(uf["user"].str.strip().to_numpy(), name="user_id", dtype="string"),
        )
    items = pd.DataFrame(index=pd.Index([], name="item_id", dtype="string"))
    uitem = directory / "u.item"
    if uitem.exists():
        itf = _split_fields(uitem, _read_text(uitem, "latin-1", "pipe-separated lines 'item|title|release date|...|19 genre flags'"), "|", _UITEM)
        flags = np.column_stack([_numeric(uitem, itf, g, integer=True, low=0, high=1) for g in ML100K_GENRES]).astype(bool)
        genre_names = np.array(ML100K_GENRES, dtype=object)
        categories = ["|".join(genre_names[row]) for row in flags]
        released = release_columns(_release_years(uitem, itf))
        items = pd.DataFrame(
            {
                "title": itf["title"].to_numpy(),
                "release_date": itf["release_date"].to_numpy(),
                "release_year": released["release_year"].to_numpy(),
                "release_decade": released["release_decade"].to_numpy(),
                "categories": categories,
                "provider": pd.array([pd.NA] * len(itf), dtype="string"),
                "provider_group": pd.array([pd.NA] * len(itf), dtype="string"),
                "text": itf["title"].to_numpy(),
                "flags": [""] * len(itf),
            },
            index=pd.Index(itf["item"].str.strip().to_numpy(), name="item_id", dtype="string"),
        )
    return Dataset(events=ensure_event_schema(events, source=str(udata)), users=users, items=items, name="movielens-100k", source=str(directory))


def write_movielens_100k(dataset: Dataset, directory: str | Path) -> Path:
    """Write ``dataset`` in the MovieLens-100K layout (for tests and demos).

    Only rating events are written to ``u.data``. Ids must be integers written as
    strings (the layout has numeric ids); others are renumbered from 1 in sorted order.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ev = dataset.events
    ev = ev[ev["event_type"].astype("string") == "rating"]
    users = pd.Index(sorted(ev["user_id"].astype(str).unique()))
    items = pd.Index(sorted(set(ev["item_id"].astype(str).unique()) | set(map(str, dataset.items.index))))
    u = users.get_indexer(ev["user_id"].astype(str)) + 1
    i = items.get_indexer(ev["item_id"].astype(str)) + 1
    rating = np.clip(np.rint(ev["value"].to_numpy(dtype=np.float64)), 1, 5).astype(int)
    secs = (ev["timestamp"].astype("int64") // 10**9).to_numpy()
    with (directory / "u.data").open("w", encoding="ascii", newline="") as fh:
        for row in zip(u, i, rating, secs):
            fh.write("\t".join(map(str, row)) + "\n")
    with (directory / "u.user").open("w", encoding="latin-1", newline="") as fh:
        for n, uid in enumerate(users, start=1):
            attrs = dataset.users.loc[uid] if uid in dataset.users.index else None
            gender = str(attrs.get("gender", "M")) if attrs is not None else "M"
            gender = gender if gender in ("M", "F") else "F"
            fh.write(f"{n}|{20 + n % 40}|{gender}|other|{10000 + n:05d}\n")
    with (directory / "u.item").open("w", encoding="latin-1", newline="") as fh:
        for n, iid in enumerate(items, start=1):
            cats = set()
            if iid in dataset.items.index and "categories" in dataset.items.columns:
                cats = set(str(dataset.items.loc[iid, "categories"]).split("|"))
            flags = ["1" if g in cats else "0" for g in ML100K_GENRES]
            if "1" not in flags:
                flags[n % len(flags)] = "1"
            fh.write(f"{n}|Film {n} (1995)|01-Jan-1995||http://example.invalid/{n}|" + "|".join(flags) + "\n")
    return directory


class ColumnMapping(BaseModel):
    """Which columns of an event log hold the fields recgov needs."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = "user_id"
    """Column with the user id."""
    item_id: str = "item_id"
    """Column with the item id."""
    timestamp: str = "timestamp"
    """Column with the event time: Unix seconds or ISO 8601."""
    event_type: str | None = "event_type"
    """Column with the event type; ``None`` or an absent column uses ``default_event_type``."""
    value: str | None = "value"
    """Column with the rating or dwell time, if any."""
    session_id: str | None = "session_id"
    """Column with the session id, if any."""
    context: str | None = None
    """Column with free context, if any."""
    default_event_type: str = Field("view", min_length=1)
    """Event type of every row when the log has no event-type column."""
    delimiter: str = Field(",", min_length=1, max_length=1)
    """Field separator of a CSV log."""

    @classmethod
    def parse(cls, text: str) -> ColumnMapping:
        """Parse ``"user_id=uid,item_id=sku,timestamp=ts"`` (the CLI's ``--map``)."""
        pairs: dict[str, str | None] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "=" not in part:
                raise DataError(f"--map: {part!r} is not of the form field=column (e.g. user_id=uid)")
            key, _, value = part.partition("=")
            pairs[key.strip()] = value.strip() or None
        unknown = sorted(set(pairs) - set(cls.model_fields))
        if unknown:
            raise DataError(f"--map: unknown field(s) {', '.join(unknown)}; known: {', '.join(cls.model_fields)}")
        return cls(**pairs)


def load_event_log(path: str | Path, mapping: ColumnMapping | None = None) -> Dataset:
    """Load a CSV or Parquet event log, renaming its columns with ``mapping``."""
    path = Path(path)
    mapping = mapping or ColumnMapping()
    suffix = path.suffix.lower()
    if not path.exists():
        raise DataError(f"{path}: no such file; expected a CSV or Parquet event log")
    if path.stat().st_size == 0:
        raise DataError(EMPTY_FILE.format(path=path, what="a CSV or Parquet event log with a header row"))
    if suffix == ".parquet":
        try:
            raw = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises many types for corrupt files
            raise DataError(f"{path}: not a readable Parquet file ({type(err).__name__}: {err})") from err
        line_of = lambda pos: f"row {pos + 1}"  # noqa: E731
    elif suffix in (".csv", ".tsv", ".txt"):
        text = _read_text(path, "utf-8", "a CSV event log with a header row")
        try:
            raw = pd.read_csv(io.StringIO(text), sep=mapping.delimiter, dtype=str, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, csv.Error) as err:
            raise DataError(f"{path}: malformed CSV ({str(err).strip()})") from err
        line_of = lambda pos: f"line {pos + 2}"  # noqa: E731
    else:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; expected .csv, .tsv or .parquet")
    wanted = {
        "user_id": mapping.user_id,
        "item_id": mapping.item_id,
        "timestamp": mapping.timestamp,
        "event_type": mapping.event_type,
        "value": mapping.value,
        "session_id": mapping.session_id,
        "context": mapping.context,
    }
    required = ("user_id", "item_id", "timestamp")
    missing = [f"{src} (for {dst})" for dst, src in wanted.items() if dst in required and src not in raw.columns]
    if missing:
        found = ", ".join(map(str, raw.columns[:12]))
        hint = " (is the delimiter right?)" if len(raw.columns) == 1 else ""
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {found}{hint}")
    events = pd.DataFrame({dst: raw[src] for dst, src in wanted.items() if src is not None and src in raw.columns})
    if "event_type" not in events:
        events["event_type"] = mapping.default_event_type
    if "value" in events:
        text_values = events["value"]
        values = pd.to_numeric(text_values, errors="coerce")
        bad = values.isna() & text_values.notna()
        if bad.any():
            pos = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{path} {line_of(pos)}: {mapping.value} {str(text_values.iloc[pos])!r} is not a number")
        events["value"] = values.astype("float64")
    ts = events["timestamp"]
    numeric_ts = pd.to_numeric(ts, errors="coerce") if not pd.api.types.is_datetime64_any_dtype(ts) else None
    if numeric_ts is None:  # a real time column (Parquet): as it is, naive read as UTC
        parsed = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
        bad = pd.Series(False, index=ts.index)
    elif numeric_ts.notna().sum() >= max(1, ts.notna().sum() // 2):
        parsed = pd.to_datetime(numeric_ts, unit="s", utc=True, errors="coerce")
        bad = parsed.isna() & ts.notna()  # not a number, or seconds no time can hold
    else:
        parsed = pd.to_datetime(ts, utc=True, errors="coerce", format="mixed")
        bad = parsed.isna() & ts.notna()
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path} {line_of(pos)}: {mapping.timestamp} {str(ts.iloc[pos])!r} is not a time (Unix seconds or ISO 8601)")
    events["timestamp"] = parsed
    for column in ("user_id", "item_id", "event_type"):
        events[column] = events[column].astype("string").str.strip().astype("category")
    sources = {dst: src for dst, src in wanted.items() if src is not None and src in raw.columns}
    return Dataset(events=ensure_event_schema(events, source=str(path)), name=path.stem, source=str(path), columns_from=sources)


SYNTHETIC_PREFIX = "synthetic"


def _synthetic_spec(text: str):  # -> SyntheticSpec (imported lazily: generation is optional work)
    from pydantic import ValidationError

    from recommender.synthetic import SyntheticSpec

    params: dict[str, Any] = {}
    body = text[len(SYNTHETIC_PREFIX) :].lstrip(":")
    if body.startswith("{"):  # the spec as a dataset records its source (SyntheticSpec JSON): the same data again
        try:
            return SyntheticSpec.model_validate_json(body)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise DataError(f"{text[:200]}: invalid synthetic spec: {problems}") from err
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise DataError(f"{text}: {part!r} is not of the form name=value (e.g. synthetic:n_users=1000,seed=1)")
        key, value = key.strip(), value.strip()
        annotation = SyntheticSpec.model_fields[key].annotation if key in SyntheticSpec.model_fields else None
        if annotation == dict[str, float]:  # a mapping: name:number;name:number
            mapping = {}
            for entry in filter(None, (e.strip() for e in value.split(";"))):
                name, colon, number = entry.partition(":")
                if not colon or not name.strip():
                    raise DataError(
                        f"{text}: {key}: {entry!r} is not of the form name:number "
                        f"(e.g. {key}=X:4 or {key}=a:0.3;b:0.7)"
                    )
                mapping[name.strip()] = number.strip()
            params[key] = mapping
        elif getattr(annotation, "__origin__", None) is list:  # a list: a;b;c
            params[key] = [entry.strip() for entry in value.split(";") if entry.strip()]
        else:
            params[key] = value
    try:
        return SyntheticSpec(**params)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise DataError(f"{text}: invalid synthetic spec: {problems}") from err


def load_data(source: str | Path, mapping: ColumnMapping | None = None, *, show_progress: bool = False) -> Dataset:
    """Resolve the command line's DATA argument to a dataset.

    ``source`` is one of: a MovieLens-100K directory; a ``.csv``/``.tsv``/``.parquet``
    event log (columns renamed by ``mapping``); or ``synthetic`` /
    ``synthetic:name=value,...`` for the generator with those
    :class:`~recommender.synthetic.SyntheticSpec` fields, or
    ``synthetic:{...}``, the spec's JSON, as a generated dataset records its
    ``source`` (so a recorded source loads the same data again).
    """
    text = str(source)
    if text == SYNTHETIC_PREFIX or text.startswith(SYNTHETIC_PREFIX + ":"):
        from recommender.synthetic import generate

        return generate(_synthetic_spec(text), show_progress=show_progress)
    path = Path(text)
    if path.is_dir():
        if is_movielens_dir(path):
            return load_movielens_100k(path)
        raise DataError(f"{path}: a directory without u.data; expected a MovieLens-100K directory")
    if not path.exists():
        raise DataError(
            f"{path}: no such file or directory; DATA must be a MovieLens-100K directory, "
            "a .csv/.parquet event log, or synthetic[:name=value,...]"
        )
    return load_event_log(path, mapping)
