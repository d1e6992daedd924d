"""Item tables (``--items``) and MovieLens' genres and release years: what provider and category rules read.

Hole pinned: real data had no way to bring providers or categories to the rules (an event log
has none, MovieLens has no provider), so they were skipped, or judged on nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from recommender.data import Dataset
from recommender.errors import DataError
from recommender.item_table import (
    DUPLICATE_ITEM,
    EMPTY_ITEM_ID,
    NO_SHARED_ITEMS,
    NOT_A_YEAR,
    ItemMapping,
    attach_items,
    load_item_table,
)
from recommender.loaders import BAD_RELEASE, load_movielens_100k

MAPPING = "item_id=sku,provider=label,category=genres,release=year,category_separator=;"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_a_mapped_csv_gives_providers_categories_and_release_years(tmp_path: Path) -> None:
    path = write(
        tmp_path / "items.csv",
        "sku,label,genres,year,studio\nA,Major,Drama; Comedy,1995,X\nB,,Drama,1987-05-01,Y\nC,Indie,,,Z\n",
    )
    table = load_item_table(path, ItemMapping.parse(MAPPING))
    assert list(table.index) == ["A", "B", "C"]
    assert table["provider"].tolist()[0] == "Major" and pd.isna(table["provider"].iloc[1])
    assert table["categories"].tolist() == ["Drama|Comedy", "Drama", ""]
    assert table["release_year"].tolist()[:2] == [1995, 1987] and pd.isna(table["release_year"].iloc[2])
    assert table["release_decade"].tolist()[:2] == ["1990s", "1980s"]
    assert table["studio"].tolist() == ["X", "Y", "Z"]  # any other column is an item attribute under its own name


def test_a_parquet_table_reads_the_same(tmp_path: Path) -> None:
    frame = pd.DataFrame({"sku": ["A", "B"], "label": ["Major", "Indie"], "year": ["1995", "2001"]})
    frame.to_parquet(tmp_path / "items.parquet")
    table = load_item_table(tmp_path / "items.parquet", ItemMapping.parse("item_id=sku,provider=label,release=year"))
    assert table["provider"].tolist() == ["Major", "Indie"] and table["release_decade"].tolist() == ["1990s", "2000s"]


@pytest.mark.parametrize(
    ("text", "mapping", "message"),
    [
        ("sku,label\nA,x\n,y\n", "item_id=sku", EMPTY_ITEM_ID.format(path="{path}", where="line 3", column="sku")),
        ("sku,label\nA,x\nB,y\nA,z\n", "item_id=sku",
         DUPLICATE_ITEM.format(path="{path}", where="line 4", column="sku", item="A", first="line 2")),
        ("sku,year\nA,1995\nB,soon\n", "item_id=sku,release=year",
         NOT_A_YEAR.format(path="{path}", where="line 3", column="year", value="soon")),
        ("sku,year\nA,0995\n", "item_id=sku,release=year",
         NOT_A_YEAR.format(path="{path}", where="line 2", column="year", value="0995")),
        ("id,label\nA,x\n", "item_id=sku,provider=label",
         "{path}: missing column(s) sku (for item_id); found id, label (set the columns with --items-map)"),
        ("sku;label\nA;x\n", "item_id=sku,provider=label",
         ("{path}: missing column(s) sku (for item_id), label (for provider); found sku;label (is the delimiter right?) "
         "(set the columns with --items-map)")),
    ],
)  # fmt: skip
def test_bad_item_tables_are_located(tmp_path: Path, text: str, mapping: str, message: str) -> None:
    path = write(tmp_path / "items.csv", text)
    with pytest.raises(DataError) as info:
        load_item_table(path, ItemMapping.parse(mapping))
    assert str(info.value) == message.format(path=path)


def test_undecodable_bytes_name_the_line_and_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "sku,title\nA,ok\nB,Caf\u00e9\n", encoding="latin-1")
    with pytest.raises(DataError) as info:
        load_item_table(path)
    assert str(info.value) == (
        f"{path} line 3: byte 0xe9 cannot be decoded as utf-8; set the encoding with --items-map encoding=latin-1"
    )
    assert load_item_table(path, ItemMapping.parse("item_id=sku,encoding=latin-1"))["title"].tolist() == [
        "ok",
        "Caf\u00e9",
    ]


@pytest.mark.parametrize(
    ("mapping", "message"),
    [("sku", "--items-map: 'sku' is not of the form field=column (e.g. item_id=sku)"),
     ("item=sku", ("--items-map: unknown field(s) item; known: item_id, provider, provider_group, category, release, "
                  "category_separator, delimiter, encoding")),
     ("delimiter=;;", "--items-map: delimiter: String should have at most 1 character")],
)  # fmt: skip
def test_a_bad_mapping_says_what_is_known(mapping: str, message: str) -> None:
    with pytest.raises(DataError) as info:
        ItemMapping.parse(mapping)
    assert str(info.value) == message


def test_attaching_replaces_columns_and_refuses_a_table_of_other_ids(tmp_path: Path) -> None:
    events = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["A", "B"], "timestamp": [0, 1]})
    items = pd.DataFrame({"title": ["a", "b"], "provider": [pd.NA, pd.NA]}, index=pd.Index(["A", "B"], name="item_id"))
    dataset = Dataset(events=events, items=items)
    table = load_item_table(
        write(tmp_path / "i.csv", "sku,label\nA,Major\n"), ItemMapping.parse("item_id=sku,provider=label")
    )
    out = attach_items(dataset, table, source="i.csv")
    assert out.items.loc["A", "provider"] == "Major" and pd.isna(out.items.loc["B", "provider"])
    assert out.items["title"].tolist() == ["a", "b"]
    assert out.content_hash() != dataset.content_hash()
    other = load_item_table(
        write(tmp_path / "o.csv", "sku,label\nZ1,Major\nZ2,Indie\n"), ItemMapping.parse("item_id=sku,provider=label")
    )
    with pytest.raises(DataError) as info:
        attach_items(dataset, other, source="o.csv")
    assert str(info.value) == NO_SHARED_ITEMS.format(path="o.csv", n=2, table="'Z1', 'Z2'", events="'A', 'B'")


U_ITEM = (
    "1|Caf\u00e9 Society (1995)|01-Jan-1995||http://x/1|0|0|0|0|0|1|0|0|1|0|0|0|0|0|0|0|0|0|0\n"
    "2|Old Film (1937)|12-Mar-1937||http://x/2|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|1\n"
    "3|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
)


def movielens(tmp_path: Path, u_item: str = U_ITEM) -> Path:
    write(tmp_path / "u.data", "1\t1\t5\t881250949\n2\t2\t3\t881250950\n1\t3\t4\t881250951\n", encoding="ascii")
    write(tmp_path / "u.item", u_item, encoding="latin-1")
    return tmp_path


def test_movielens_genres_and_release_years_are_item_categories(tmp_path: Path) -> None:
    items = load_movielens_100k(movielens(tmp_path)).items
    assert items["title"].tolist()[0] == "Caf\u00e9 Society (1995)"  # latin-1
    assert items["categories"].tolist() == ["Comedy|Drama", "Western", "unknown"]
    assert items["release_year"].tolist()[:2] == [1995, 1937] and pd.isna(items["release_year"].iloc[2])
    assert items["release_decade"].tolist()[:2] == ["1990s", "1930s"]


def test_a_bad_movielens_release_date_is_located(tmp_path: Path) -> None:
    broken = U_ITEM.replace("12-Mar-1937", "1937/03/12")
    with pytest.raises(DataError) as info:
        load_movielens_100k(movielens(tmp_path, broken))
    assert str(info.value) == BAD_RELEASE.format(path=tmp_path / "u.item", line=2, value="1937/03/12")


def test_a_bad_row_after_blank_lines_is_named_by_its_own_line_and_a_directory_is_refused(tmp_path: Path) -> None:
    """Regression: the line of a bad row was its position plus two, though pandas skips blank lines (a row
    after them was named lines too early); a directory given as the table failed with IsADirectoryError."""
    path = tmp_path / "items.csv"
    path.write_text('sku,year\n\nA,1995\n\n"B\nB",1996\n   \nA,1997\n')
    with pytest.raises(DataError) as info:
        load_item_table(path, ItemMapping(item_id="sku", release="year"))
    assert str(info.value) == DUPLICATE_ITEM.format(path=path, where="line 8", column="sku", item="A", first="line 3")
    folder = tmp_path / "table.csv"
    folder.mkdir()
    with pytest.raises(DataError, match=re.escape(f"{folder}: a directory; expected a CSV or Parquet item table")):
        load_item_table(folder)
