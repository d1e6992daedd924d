"""MovieLens 100K: ``u.data`` ratings, ``u.item`` movies with 19 genre flags, ``u.user`` people.

The reader checks every line's field count and every number in one pass per
column, and refuses a broken file with one line naming the file, the line and
what is wrong; the writer produces the layout for tests and demos.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recommender.datasets._read import Shown, age_bands, as_utf8_if_resaved, layout_dir, unique_ids
from recommender.datasets._read import lines as text_lines
from recommender.data import LATEST_UNIX_SECONDS, Dataset, ensure_event_schema
from recommender.errors import DataError
from recommender.item_table import release_columns

__all__ = [
    "BAD_ENCODING",
    "BAD_RELEASE",
    "EMPTY_FILE",
    "ML100K_GENRES",
    "NOT_NUMBER",
    "NOT_TEXT",
    "OUT_OF_RANGE",
    "WRONG_FIELDS",
    "is_movielens_dir",
    "load_movielens_100k",
    "read_text",
    "write_movielens_100k",
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


def read_text(path: Path, encoding: str, what: str) -> str:
    """The text of ``path`` in ``encoding``, refusing a missing, empty, binary or undecodable file with one line."""
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
    encoding = as_utf8_if_resaved(raw, encoding)  # a latin-1 file re-saved as UTF-8 keeps its accents
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(BAD_ENCODING.format(path=path, line=line, byte=raw[err.start], pos=err.start, encoding=encoding)) from err


def _split_fields(path: Path, text: str, sep: str, names: tuple[str, ...], *, min_fields: int | None = None) -> pd.DataFrame:
    """Parse delimited text into string columns, checking the field count of every line."""
    lines = text_lines(text)
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
        raise DataError(NOT_NUMBER.format(path=path, line=line, column=column, value=Shown(raw.loc[line])))
    arr = values.to_numpy(dtype=np.float64)
    if low is not None and high is not None:
        out = (arr < low) | (arr > high)
        if out.any():
            pos = int(np.flatnonzero(out)[0])
            raise DataError(OUT_OF_RANGE.format(path=path, line=frame.index[pos], column=column, value=Shown(raw.iloc[pos]), low=low, high=high))
    return arr


def _release_years(path: Path, frame: pd.DataFrame) -> pd.Series:
    """Years of ``u.item``'s release dates (``01-Jan-1995``); an empty date stays missing."""
    text = frame["release_date"].str.strip()
    dates = pd.to_datetime(text.where(text != "", None), format="%d-%b-%Y", errors="coerce")
    bad = (text != "") & dates.isna()
    if bad.any():
        line = bad.idxmax()
        raise DataError(BAD_RELEASE.format(path=path, line=line, value=Shown(text.loc[line])))
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
    directory = layout_dir(Path(directory), "u.data", "MovieLens-100K")
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory; expected a MovieLens-100K directory holding u.data")
    udata = directory / "u.data"
    text = read_text(udata, "ascii", "tab-separated lines 'user item rating timestamp'")
    frame = _split_fields(udata, text, "\t", _UDATA)
    _numeric(udata, frame, "user", integer=True)
    _numeric(udata, frame, "item", integer=True)
    ratings = _numeric(udata, frame, "rating", low=1, high=5)
    seconds = _numeric(udata, frame, "timestamp", integer=True, low=0, high=LATEST_UNIX_SECONDS)
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
        uf = _split_fields(uuser, read_text(uuser, "latin-1", "pipe-separated lines 'user|age|gender|occupation|zip'"), "|", _UUSER)
        ages = _numeric(uuser, uf, "age", integer=True, low=0, high=150)
        users = pd.DataFrame(
            {"age": ages.astype(np.int64), "age_band": age_bands(ages), "gender": uf["gender"].to_numpy(), "occupation": uf["occupation"].to_numpy(), "zip": uf["zip"].to_numpy()},
            index=pd.Index(unique_ids(uuser, uf["user"].str.strip(), "user").to_numpy(), name="user_id", dtype="string"),
        )
    items = pd.DataFrame(index=pd.Index([], name="item_id", dtype="string"))
    uitem = directory / "u.item"
    if uitem.exists():
        itf = _split_fields(uitem, read_text(uitem, "latin-1", "pipe-separated lines 'item|title|release date|...|19 genre flags'"), "|", _UITEM)
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
            index=pd.Index(unique_ids(uitem, itf["item"].str.strip(), "item").to_numpy(), name="item_id", dtype="string"),
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
