"""Amazon reviews, JSON lines: the 2014/2018 layout and the 2023 one.

2014/2018 rows read ``reviewerID``, ``asin``, ``overall`` (1..5) and
``unixReviewTime`` (seconds), with ``summary`` and ``reviewText``; 2023 rows read
``user_id``, ``parent_asin`` (else ``asin``), ``rating`` and ``timestamp``
(milliseconds), with ``title`` and ``text``. Each review is a ``rating`` event.
The review texts become the item's content: the item table's ``text`` joins the
first :data:`TEXT_REVIEWS` review titles and texts of each item, which the
content models read. A ``.gz`` file is read as is.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from recommender.data import LATEST_UNIX_SECONDS, Dataset, ensure_event_schema
from recommender.datasets._read import BAD_FIELD, Shown, _decode, lines, read_bytes, seconds_to_times
from recommender.errors import DataError

__all__ = ["LAYOUTS", "TEXT_REVIEWS", "load_amazon"]

TEXT_REVIEWS = 5
"""Reviews per item whose text makes the item's content."""
TEXT_CHARS = 2000
"""Longest item content kept, in characters."""

LAYOUTS: dict[str, dict[str, object]] = {
    "2014": {"user": "reviewerID", "item": ("asin",), "rating": "overall", "time": "unixReviewTime", "unit": "s",
             "text": ("summary", "reviewText")},
    "2023": {"user": "user_id", "item": ("parent_asin", "asin"), "rating": "rating", "time": "timestamp", "unit": "ms",
             "text": ("title", "text")},
}  # fmt: skip
"""Which keys each layout uses."""

NOT_JSON = "{path} line {line}, column {column}: expected one JSON object per line ({problem})"
UNKNOWN_LAYOUT = (
    "{path}: keys {found} are neither the 2014/2018 layout (reviewerID, asin, overall, unixReviewTime) "
    "nor the 2023 layout (user_id, parent_asin or asin, rating, timestamp)"
)


def _line(text: str, row: int) -> int:
    """The line of the file holding data row ``row`` (0-based): the JSON reader skips blank lines."""
    seen = -1
    for number, line in enumerate(lines(text), start=1):
        if line.strip():
            seen += 1
            if seen == row:
                return number
    return row + 1


def _rows(path: Path) -> tuple[pd.DataFrame, str]:
    raw = read_bytes(path, "Amazon reviews as JSON lines")
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: not a readable gzip file ({err})") from err
    # strictly: bytes replaced by U+FFFD would make two ids that differ only there one person's
    text = _decode(path, raw, "utf-8").removeprefix("\ufeff")
    try:
        return pd.read_json(io.StringIO(text), lines=True, dtype=False), text
    except (ValueError, TypeError) as err:  # a line holding a JSON array or number is a TypeError
        for number, line in enumerate(lines(text), start=1):  # find the line, only once it is known to be bad
            if not line.strip():
                continue
            try:
                if not isinstance(json.loads(line), dict):
                    raise DataError(NOT_JSON.format(path=path, line=number, column=1, problem="found another JSON value"))
            except json.JSONDecodeError as bad:
                raise DataError(NOT_JSON.format(path=path, line=number, column=bad.colno, problem=bad.msg)) from err
        raise DataError(f"{path}: not JSON lines ({err})") from err


def _refuse(path: Path, text: str, frame: pd.DataFrame, bad: pd.Series, key: str, expected: str) -> None:
    """Refuse the first row where ``bad`` holds, named by its line of the file."""
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        value = frame[key].iloc[row]
        shown = Shown("" if pd.api.types.is_scalar(value) and pd.isna(value) else value)
        raise DataError(BAD_FIELD.format(path=path, line=_line(text, row), column=key, expected=expected, value=shown))


_PLAIN = {"string", "integer", "floating", "mixed-integer-float", "decimal", "empty"}
"""What pandas infers for a column of JSON strings and numbers only (a list, an object or true/false is none)."""


def _column(path: Path, text: str, frame: pd.DataFrame, key: str, expected: str) -> pd.Series:
    values = frame[key]
    if pd.api.types.infer_dtype(values, skipna=True) not in _PLAIN:  # find the odd one only when there is one
        odd = values.map(lambda v: isinstance(v, (bool, list, dict)) or not pd.api.types.is_scalar(v))
        _refuse(path, text, frame, odd, key, expected)
    _refuse(path, text, frame, values.isna() | values.astype(str).str.strip().eq(""), key, expected)
    return values


def load_amazon(path: str | Path) -> Dataset:
    """Load an Amazon reviews file (``.json``, ``.jsonl``, ``.gz``) of either layout."""
    path = Path(path)
    frame, text = _rows(path)
    layout = next(
        (spec for spec in LAYOUTS.values() if {spec["user"], spec["rating"], spec["time"]} <= set(frame.columns)
         and any(k in frame.columns for k in spec["item"])),  # type: ignore[union-attr]
        None,
    )  # fmt: skip
    if layout is None:
        raise DataError(UNKNOWN_LAYOUT.format(path=path, found=", ".join(map(str, frame.columns[:10])) or "none"))
    item_key = next(k for k in layout["item"] if k in frame.columns)  # type: ignore[union-attr]
    rating = pd.to_numeric(_column(path, text, frame, layout["rating"], "a rating 1..5"), errors="coerce")
    _refuse(path, text, frame, rating.isna() | (rating < 1) | (rating > 5), str(layout["rating"]), "a rating 1..5")
    when = pd.to_numeric(_column(path, text, frame, layout["time"], "a Unix time"), errors="coerce")
    # as the other layouts: a later time is no clock's (a nanosecond clock, what every rule comparing times reads, ends there)
    latest = LATEST_UNIX_SECONDS if layout["unit"] == "s" else LATEST_UNIX_SECONDS * 1000
    bad_time = when.isna() | (when < 0) | (when > latest) | (when % 1 != 0)
    _refuse(path, text, frame, bad_time, str(layout["time"]), f"a Unix time in whole {'seconds' if layout['unit'] == 's' else 'milliseconds'}")
    item = _column(path, text, frame, item_key, "a product id").astype(str).str.strip()
    events = pd.DataFrame({
        "user_id": _column(path, text, frame, layout["user"], "a reviewer id").astype(str).str.strip().astype("category").to_numpy(),
        "item_id": pd.Categorical(item),
        "event_type": pd.Categorical(np.full(len(frame), "rating")),
        "value": rating.to_numpy(dtype=np.float64),
        "timestamp": seconds_to_times(when.to_numpy(), str(layout["unit"])).to_numpy(),
    })  # fmt: skip
    parts = [frame[k].fillna("").astype(str) for k in layout["text"] if k in frame.columns]  # type: ignore[union-attr]
    review = pd.Series("", index=frame.index) if not parts else parts[0].str.cat(parts[1:], sep=" ").str.strip()
    first = pd.DataFrame({"item": item, "text": review}).groupby("item", sort=False).head(TEXT_REVIEWS)
    content = first.groupby("item", sort=False)["text"].agg(" ".join).str.slice(0, TEXT_CHARS)
    items = pd.DataFrame(
        {"title": pd.array([pd.NA] * len(content), dtype="string"), "categories": [""] * len(content),
         "text": content.to_numpy(), "flags": [""] * len(content)},
        index=pd.Index(content.index.astype(str), name="item_id", dtype="string"),
    )  # fmt: skip
    name = path.name.split(".")[0]
    return Dataset(events=ensure_event_schema(events, source=str(path)), items=items, name=f"amazon-{name}", source=str(path))
