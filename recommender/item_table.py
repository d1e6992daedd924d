"""Item tables: the providers, categories and release dates of a catalog, from a CSV or Parquet file.

Provider and category rules need to know, for each item, who provides it and
what it is about. An event log does not say; an item table does. It is read
with its own column mapping (the CLI's ``--items PATH --items-map
item_id=sku,provider=label,category=genres,release=year``) into the canonical
item columns of :data:`recommender.data.ITEM_COLUMNS`:

``provider``, ``provider_group``
    as they are (a pack's ``fairness.provider_attribute`` names one of them,
    or any other column of the table, kept under its own name);
``categories``
    the category column, its values split on ``category_separator`` and joined
    with ``|`` (the form calibration reads);
``release_year``, ``release_decade``
    from a release column holding a year (``1995``) or a date (``1995-01-01``,
    ``01-Jan-1995``), so that items can be grouped by age (``1990s``).

A bad file is one :class:`~recommender.errors.DataError` naming the file, the
line (row, for Parquet) and the column; nothing is half-loaded.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recommender.csv_lines import record_line
from recommender.data import Dataset, read_parquet_flat
from recommender.errors import DataError

__all__ = [
    "DUPLICATE_ITEM",
    "EMPTY_ITEM_ID",
    "ITEMS_MISSING_COLUMN",
    "NOT_A_YEAR",
    "NO_SHARED_ITEMS",
    "ItemMapping",
    "attach_items",
    "load_item_table",
    "release_columns",
]

ITEMS_MISSING_COLUMN = "{path}: missing column(s) {missing}; found {found}{hint} (set the columns with --items-map)"
EMPTY_ITEM_ID = "{path} {where}, column {column!r}: the item id is empty; every row of an item table needs one"
DUPLICATE_ITEM = "{path} {where}, column {column!r}: item id {item!r} appears again (first at {first}); an item table has one row per item"
NOT_A_YEAR = "{path} {where}, column {column!r}: {value!r} is neither a year nor a date; expected e.g. 1995, 1995-07-01 or 01-Jan-1995"
NO_SHARED_ITEMS = (
    "{path}: none of its {n} item ids is an item of the events (table: {table}; events: {events}); "
    "is item_id the right column (--items-map item_id=...)?"
)
ITEM_SOURCES = "columns_from"
"""The ``attrs`` key of a loaded item table: item column -> the file's column it was read from (mapped ones only);
:func:`attach_items` records them in :attr:`recommender.data.Dataset.columns_from` as ``items.<column>``."""
YEARS = (1800, 2200)
"""Release years outside this range are read as a mistake in the file."""


class ItemMapping(BaseModel):
    """Which columns of an item table hold what recgov reads (the CLI's ``--items-map``)."""

    model_config = ConfigDict(extra="forbid")

    item_id: str = "item_id"
    """Column with the item id (the ids of the events)."""
    provider: str | None = "provider"
    """Column with the item's provider (a label, a studio, a seller)."""
    provider_group: str | None = "provider_group"
    """Column with the provider's group (e.g. major or independent)."""
    category: str | None = "categories"
    """Column with the item's categories, separated by ``category_separator``."""
    release: str | None = None
    """Column with the release year or date (gives ``release_year`` and ``release_decade``)."""
    category_separator: str = Field("|", min_length=1)
    """Separator between the categories of one item."""
    delimiter: str = Field(",", min_length=1, max_length=1)
    """Field separator of a CSV file."""
    encoding: str = "utf-8"
    """Text encoding of a CSV file (``latin-1`` for MovieLens-era files)."""

    @classmethod
    def parse(cls, text: str) -> ItemMapping:
        """Parse ``"item_id=sku,provider=label,category=genres,release=year"`` (the CLI's ``--items-map``)."""
        from recommender.option_pairs import parse_pairs

        pairs = parse_pairs(text, "--items-map", "item_id=sku")
        unknown = sorted(set(pairs) - set(cls.model_fields))
        if unknown:
            raise DataError(f"--items-map: unknown field(s) {', '.join(unknown)}; known: {', '.join(cls.model_fields)}")
        try:
            return cls(**pairs)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise DataError(f"--items-map: {problems}") from err


def _read(path: Path, mapping: ItemMapping) -> tuple[pd.DataFrame, Callable[[int], str]]:
    """The raw table as strings, and where each row is (``line 7`` of a CSV, ``row 6`` of a Parquet file)."""
    if not path.exists():
        raise DataError(f"{path}: no such file; expected a CSV or Parquet item table")
    if path.is_dir():
        raise DataError(f"{path}: a directory; expected a CSV or Parquet item table")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty; expected a CSV or Parquet item table with a header row")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            raw = read_parquet_flat(path)  # nested fields as columns of their own names
        except DataError:
            raise
        except Exception as err:  # pyarrow raises many types for corrupt files
            raise DataError(f"{path}: not a readable Parquet file ({type(err).__name__}: {err})") from err
        return raw.astype(object).where(raw.notna(), None).astype("string"), lambda pos: f"row {pos + 1}"
    if suffix not in (".csv", ".tsv", ".txt"):
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; expected .csv, .tsv or .parquet")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from err
    try:
        text = data.decode(mapping.encoding)
    except LookupError as err:
        raise DataError(f"--items-map: unknown encoding {mapping.encoding!r}") from err
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{path} line {line}: byte 0x{data[err.start]:02x} cannot be decoded as {mapping.encoding}; "
            "set the encoding with --items-map encoding=latin-1"
        ) from err
    try:
        raw = pd.read_csv(io.StringIO(text), sep=mapping.delimiter, dtype="string", keep_default_na=False)
    except (pd.errors.ParserError, csv.Error) as err:
        raise DataError(f"{path}: malformed CSV ({str(err).strip()})") from err
    return raw, lambda pos: f"line {record_line(text, mapping.delimiter, pos)}"


def _years(path: Path, values: pd.Series, column: str, where: Callable[[int], str]) -> pd.Series:
    """Release years from years or dates; empty cells stay missing, anything else unreadable is an error."""
    text = values.fillna("").str.strip()
    years = pd.to_numeric(text.where(text.str.fullmatch(r"\d{4}"), None), errors="coerce")
    dates = pd.to_datetime(
        text.where(years.isna() & (text != ""), None), errors="coerce", format="mixed", dayfirst=False
    )
    years = years.fillna(dates.dt.year)
    bad = (text != "") & (years.isna() | (years < YEARS[0]) | (years > YEARS[1]))
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(NOT_A_YEAR.format(path=path, where=where(pos), column=column, value=str(text.iloc[pos])))
    return years.astype("Int64")


def release_columns(years: pd.Series) -> dict[str, pd.Series]:
    """``release_year`` and ``release_decade`` (``"1990s"``) columns from release years (missing stays missing)."""
    decade = (years // 10 * 10).astype("string") + "s"
    return {"release_year": years.astype("Int64"), "release_decade": decade.astype("string")}


def load_item_table(path: str | Path, mapping: ItemMapping | None = None) -> pd.DataFrame:
    """Read an item table into item columns indexed by ``item_id`` (see the module)."""
    path = Path(path)
    mapping = mapping or ItemMapping()
    raw, where = _read(path, mapping)
    wanted = {"item_id": mapping.item_id, "provider": mapping.provider, "provider_group": mapping.provider_group,
              "categories": mapping.category, "release": mapping.release}  # fmt: skip
    explicit = mapping.model_fields_set | {"item_id"}
    field_of = {"categories": "category"}
    missing = [f"{src} (for {dst})" for dst, src in wanted.items()
               if src is not None and src not in raw.columns and field_of.get(dst, dst) in explicit]  # fmt: skip
    if missing:
        hint = " (is the delimiter right?)" if len(raw.columns) == 1 else ""
        found = ", ".join(map(str, raw.columns[:12])) or "no columns"
        raise DataError(ITEMS_MISSING_COLUMN.format(path=path, missing=", ".join(missing), found=found, hint=hint))
    ids = raw[mapping.item_id].fillna("").str.strip()
    empty = (ids == "").to_numpy()
    if empty.any():
        pos = int(np.flatnonzero(empty)[0])
        raise DataError(EMPTY_ITEM_ID.format(path=path, where=where(pos), column=mapping.item_id))
    again = ids.duplicated().to_numpy()
    if again.any():
        pos = int(np.flatnonzero(again)[0])
        first = int(np.flatnonzero((ids == ids.iloc[pos]).to_numpy())[0])
        raise DataError(DUPLICATE_ITEM.format(path=path, where=where(pos), column=mapping.item_id,
                                              item=str(ids.iloc[pos]), first=where(first)))  # fmt: skip
    present = {dst: src for dst, src in wanted.items() if src is not None and src in raw.columns and dst != "item_id"}
    out = raw.drop(columns=[mapping.item_id, *present.values()])
    for dst, src in present.items():
        if dst == "categories":
            parts = raw[src].fillna("").str.split(mapping.category_separator, regex=False)
            out["categories"] = parts.map(lambda xs: "|".join(x.strip() for x in xs if x.strip())).astype("string")
        elif dst == "release":
            for name, column in release_columns(_years(path, raw[src], src, where)).items():
                out[name] = column
        else:
            out[dst] = raw[src].str.strip().replace("", pd.NA)
    out.index = pd.Index(ids.to_numpy(), name="item_id", dtype="string")
    # which file column each mapped item column holds: what a model reading it really reads (attach_items keeps it)
    derived = {"release": ("release_year", "release_decade")}
    out.attrs[ITEM_SOURCES] = {name: src for dst, src in present.items() for name in derived.get(dst, (dst,)) if name != src}
    return out


def attach_items(dataset: Dataset, table: pd.DataFrame, *, source: str = "items") -> Dataset:
    """``dataset`` with ``table``'s columns on its items (replacing columns of the same name).

    Items of the dataset the table does not list keep their other columns and get
    missing values in the table's columns (rules report them, never judge them).

    Raises
    ------
    DataError
        When no id of the table is an item of the events (the wrong id column, most likely).
    """
    events = pd.Index(dataset.events["item_id"].astype(str).unique())
    shared = table.index.astype(str).isin(events)
    if len(table) and not shared.any():
        raise DataError(NO_SHARED_ITEMS.format(path=source, n=len(table), table=", ".join(map(repr, table.index[:3])),
                                               events=", ".join(map(repr, events[:3]))))  # fmt: skip
    base = dataset.items if dataset.items is not None else pd.DataFrame()
    base = base.drop(columns=[c for c in table.columns if c in base.columns])
    items = base.join(table, how="outer") if len(base.columns) or len(base) else table.copy()
    items.index = items.index.astype("string").rename("item_id")
    # the table's columns replace the items' own: so do the records of where they came from
    replaced = {f"items.{c}" for c in table.columns}
    sources = {k: v for k, v in (dataset.columns_from or {}).items() if k not in replaced}
    sources.update({f"items.{name}": src for name, src in table.attrs.get(ITEM_SOURCES, {}).items()})
    # the items carry them too: what makes lists from the items alone checks the columns they were read from
    items.attrs[ITEM_SOURCES] = {k.removeprefix("items."): v for k, v in sources.items() if k.startswith("items.")}
    return dataclasses.replace(dataset, items=items, columns_from=sources)
