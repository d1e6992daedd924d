"""Loaders of published data set layouts: tiny files in each layout, and broken files refused with their line."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from recommender.datasets import FORMATS, detect_format, load_format
from recommender.datasets.logs import BOOK_CROSSING_SNAPSHOT, LASTFM_360K_SNAPSHOT
from recommender.errors import ConfigError, DataError
from recommender.loaders import load_data


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture()
def ml1m(tmp_path: Path) -> Path:
    d = tmp_path / "ml-1m"
    _write(d / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    _write(d / "movies.dat", "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::Animation|Children's|Musical\n", "latin-1")
    _write(d / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n", "latin-1")
    return d


def test_movielens_1m(ml1m: Path) -> None:
    data = load_data(ml1m)
    assert data.name == "movielens-1m" and data.n_events == 3
    assert list(data.events["value"]) == [5.0, 3.0, 4.0]
    assert data.items.loc["661", "categories"] == "Animation|Children's|Musical"
    assert data.items.loc["1193", "release_year"] == 1975
    assert data.users.loc["2", "age"] == 56


def test_movielens_1m_broken_rating_is_located(ml1m: Path) -> None:
    _write(ml1m / "ratings.dat", "1::1193::5::978300760\n1::661::9::978302109\n")
    with pytest.raises(DataError, match=re.escape(f"{ml1m / 'ratings.dat'} line 2, column rating: expected a number in 1..5, found '9'")):
        load_data(ml1m)


def test_movielens_csv_layout(tmp_path: Path) -> None:
    d = tmp_path / "ml-25m"
    _write(d / "ratings.csv", "userId,movieId,rating,timestamp\n1,296,5.0,1147880044\n1,306,3.5,1147868817\n")
    _write(d / "movies.csv", 'movieId,title,genres\n296,"Pulp Fiction, The (1994)",Comedy|Crime\n306,Three Colors: Red (1994),(no genres listed)\n')
    data = load_data(d)
    assert data.name == "movielens-ml-25m" and list(data.events["value"]) == [5.0, 3.5]
    assert data.items.loc["296", "title"] == "Pulp Fiction, The (1994)"
    assert data.items.loc["306", "categories"] == ""


def test_movielens_csv_short_line_is_located(tmp_path: Path) -> None:
    d = tmp_path / "ml-32m"
    _write(d / "ratings.csv", "userId,movieId,rating,timestamp\n1,296,5.0,1147880044\n1,306\n")
    with pytest.raises(DataError, match=re.escape(f"{d / 'ratings.csv'} line 3: expected 4 comma-separated fields")):
        load_data(d)


def test_amazon_both_layouts_with_review_text_as_content(tmp_path: Path) -> None:
    old = [{"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 1400000000, "summary": "Great", "reviewText": "works well"},
           {"reviewerID": "A2", "asin": "B01", "overall": 2.0, "unixReviewTime": 1400000100, "summary": "Meh", "reviewText": "broke"}]  # fmt: skip
    path = _write(tmp_path / "Electronics_5.json", "\n".join(map(json.dumps, old)) + "\n")
    data = load_data(path)
    assert data.n_events == 2 and data.items.loc["B01", "text"] == "Great works well Meh broke"
    new = [{"user_id": "U1", "parent_asin": "P9", "asin": "X", "rating": 4.0, "timestamp": 1600000000000, "title": "Nice", "text": "ok"}]
    gz = tmp_path / "Books.jsonl.gz"
    gz.write_bytes(gzip.compress((json.dumps(new[0]) + "\n").encode()))
    data = load_data(gz)
    assert list(data.events["item_id"].astype(str)) == ["P9"]
    assert data.events["timestamp"].iloc[0].year == 2020


def test_amazon_broken_line_is_located(tmp_path: Path) -> None:
    row = json.dumps({"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 1400000000})
    path = _write(tmp_path / "reviews.jsonl", row + "\n" + '{"reviewerID": "A2", "asin": \n')
    with pytest.raises(DataError, match=re.escape(f"{path} line 2, column 30: expected one JSON object per line (Expecting value)")):
        load_data(path)


def test_lastfm_1k_and_profiles(tmp_path: Path) -> None:
    d = tmp_path / "lastfm-dataset-1K"
    _write(d / "userid-timestamp-artid-artname-traid-traname.tsv",
           "user_000001\t2009-05-04T23:08:57Z\tf1b1cf71\tDeep Dish\t\tFuck Me Im Famous\n"
           "user_000001\t2009-05-04T13:54:10Z\ta7f7df4a\tAphex Twin\tf7c1f8f8\tWindowlicker\n")  # fmt: skip
    _write(d / "userid-profile.tsv", "#id\tgender\tage\tcountry\tregistered\nuser_000001\tm\t\tJapan\tAug 13, 2006\n")
    data = load_data(d)
    assert data.name == "lastfm-1k" and set(data.events["event_type"]) == {"view"}
    assert data.items.loc["f7c1f8f8", "provider"] == "Aphex Twin"
    assert "Deep Dish - Fuck Me Im Famous" in data.items.index
    assert data.users.loc["user_000001", "country"] == "Japan"


def test_lastfm_1k_bad_time_is_located(tmp_path: Path) -> None:
    path = _write(tmp_path / "userid-timestamp-artid-artname-traid-traname.tsv", "u1\tyesterday\ta\tA\tt\tT\n")
    with pytest.raises(DataError, match=re.escape(f"{path} line 1, column time: expected an ISO 8601 time")):
        load_data(path)


def test_lastfm_360k_plays_are_values(tmp_path: Path) -> None:
    path = _write(tmp_path / "usersha1-artmbid-artname-plays.tsv", "00000c28\t3bd73256\tbetty blowtorch\t2137\n00000c28\t\tdie Ärzte\t1099\n")
    data = load_format(path, "lastfm-360k")
    assert list(data.events["value"]) == [2137.0, 1099.0]
    assert (data.events["timestamp"] == LASTFM_360K_SNAPSHOT).all()
    _write(path, "00000c28\t3bd73256\tbetty blowtorch\tmany\n")
    with pytest.raises(DataError, match=r"line 1, column plays: expected an integer in 0\.\.1,000,000,000, found 'many'"):
        load_format(path, "lastfm-360k")


def test_book_crossing(tmp_path: Path) -> None:
    d = tmp_path / "BX-CSV-Dump"
    _write(d / "BX-Book-Ratings.csv", '"User-ID";"ISBN";"Book-Rating"\n"276725";"034545104X";"0"\n"276726";"0155061224";"10"\n', "latin-1")
    _write(d / "BX-Books.csv", '"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher";"Image-URL-S";"Image-URL-M";"Image-URL-L"\n'
           '"0155061224";"Rites of Passage; a novel";"Judith Rae";"2001";"Heinle";"s";"m";"l"\n', "latin-1")  # fmt: skip
    _write(d / "BX-Users.csv", '"User-ID";"Location";"Age"\n"276725";"tyler, texas, usa";NULL\n"276726";"seattle, washington, usa";"23"\n', "latin-1")
    data = load_data(d)
    assert list(data.events["event_type"].astype(str)) == ["view", "rating"]
    assert np.isnan(data.events["value"].iloc[0]) and data.events["value"].iloc[1] == 5.0
    assert (data.events["timestamp"] == BOOK_CROSSING_SNAPSHOT).all()
    assert data.items.loc["0155061224", "title"] == "Rites of Passage; a novel"
    assert np.isnan(data.users.loc["276725", "age"])
    _write(d / "BX-Book-Ratings.csv", '"User-ID";"ISBN";"Book-Rating"\n"276725";"034545104X";"11"\n', "latin-1")
    with pytest.raises(DataError, match=re.escape("BX-Book-Ratings.csv line 2, column rating: expected an integer in 0..10, found '11'")):
        load_data(d)


def test_retailrocket_events(tmp_path: Path) -> None:
    path = _write(tmp_path / "events.csv", "timestamp,visitorid,event,itemid,transactionid\n"
                  "1433221332117,257597,view,355908,\n1433224214164,992329,addtocart,248676,\n1433224214165,992329,transaction,248676,4000\n")  # fmt: skip
    data = load_format(tmp_path, "retailrocket")
    assert list(data.events["event_type"].astype(str)) == ["view", "add_to_cart", "purchase"]
    assert data.events["context"].iloc[2] == '{"transaction":"4000"}'
    _write(path, "timestamp,visitorid,event,itemid,transactionid\n1433221332117,257597,like,355908,\n")
    with pytest.raises(DataError, match=re.escape(f"{path} line 2, column event: expected one of view, addtocart, transaction, found 'like'")):
        load_format(path, "retailrocket")


def test_formats_are_detected_and_an_unknown_one_is_refused(tmp_path: Path, ml1m: Path) -> None:
    assert detect_format(ml1m) == "movielens-1m"
    assert detect_format(tmp_path / "x.csv") is None
    with pytest.raises(ConfigError, match=re.escape(f"unknown data format 'imdb'; the formats are {', '.join(FORMATS)}")):
        load_format(ml1m, "imdb")


def test_a_missing_file_names_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'ratings.dat'}: no such file; expected '::'-separated lines")):
        load_format(tmp_path, "movielens-1m")


@pytest.mark.parametrize(("fmt", "main", "line"), [
    ("movielens-1m", "ratings.dat", "1::1193::5::978300760\n"),
    ("movielens-csv", "ratings.csv", "userId,movieId,rating,timestamp\n1,2,4.5,978300760\n"),
    ("movielens-100k", "u.data", "1\t2\t4\t978300760\n"),
])  # fmt: skip
def test_a_layout_read_as_a_folder_takes_its_main_file_and_refuses_another_file(tmp_path: Path, fmt: str, main: str, line: str) -> None:
    folder = tmp_path / fmt
    ratings = _write(folder / main, line)
    assert load_format(ratings, fmt).n_events == load_format(folder, fmt).n_events == 1
    other = _write(tmp_path / "export.txt", line)
    with pytest.raises(DataError, match=rf"^{re.escape(str(other))}: a file; the .* layout is read from the folder holding {re.escape(main)}"):
        load_format(other, fmt)


def test_movielens_ages_get_movielens_bands(ml1m: Path, tmp_path: Path) -> None:
    assert list(load_data(ml1m).users["age_band"]) == ["under 18", "56+"]  # 1M's codes 1 and 56
    folder = tmp_path / "ml-100k"
    _write(folder / "u.data", "1\t1\t4\t881250949\n2\t1\t3\t881250950\n3\t1\t5\t881250951\n")
    _write(folder / "u.user", "1|17|M|student|1\n2|18|F|writer|2\n3|55|M|other|3\n")
    assert list(load_data(folder).users["age_band"]) == ["under 18", "18-24", "50-55"]


@pytest.mark.parametrize(
    ("relative", "text", "says"),
    [
        ("ml-25m/ratings.csv", "1,296,5.0,1147880044\n1,306,3.5,1147868817\n", "the file starts without its header line"),
        ("ml-25m/ratings.csv", "userId,movieId,timestamp,rating\n1,296,1147880044,5.0\n", "the columns differ from the layout's"),
        ("ml-25m/ratings.csv", "userId;movieId;rating;timestamp\n1;296;5.0;1147880044\n", "separated by semicolon, the layout's by comma"),
        ("bx/BX-Book-Ratings.csv", '"276725";"034545104X";"0"\n"276726";"0155061224";"10"\n', "the file starts without its header line"),
        ("rr/events.csv", "1433221332117,257597,view,355908,\n1433224214164,992329,addtocart,248676,\n", "the file starts without its header line"),
    ],
)
def test_a_layout_header_that_is_missing_or_another_is_refused_not_its_first_row_dropped(
    tmp_path: Path, relative: str, text: str, says: str
) -> None:
    """Regression: the first line of a headed layout was skipped unread, so a file without its header lost its
    first row silently and a file with its columns in another order read one column as another."""
    path = _write(tmp_path / relative, text, "latin-1")
    fmt = {"ratings.csv": "movielens-csv", "BX-Book-Ratings.csv": "book-crossing", "events.csv": "retailrocket"}[path.name]
    with pytest.raises(DataError) as info:
        load_format(path.parent, fmt)
    message = str(info.value)
    assert message.startswith(f"{path} line 1: expected the header ") and says in message and "\n" not in message


def test_a_layout_header_is_compared_loosely(tmp_path: Path) -> None:
    d = tmp_path / "ml-latest"
    _write(d / "ratings.csv", "\ufeffUserId, movieId ,Rating,timestamp\r\n1,296,5.0,1147880044\r\n")
    assert load_data(d).n_events == 1


@pytest.mark.parametrize("control", ["\x85", "\x0c", "\x1c", "\x1e"])
def test_a_title_holding_a_character_python_breaks_lines_at_is_one_line(tmp_path: Path, control: str) -> None:
    """Regression: lines were cut with str.splitlines, which also breaks at U+0085 (byte 0x85 of a latin-1
    file, the ellipsis of Windows-1252 text), form feeds and \\x1c-\\x1e: a valid title was refused as a short
    line, and a short line after it was named one line too late."""
    d = tmp_path / "ml-1m"
    _write(d / "ratings.dat", "1::10::5::978300760\n")
    _write(d / "movies.dat", f"10::Caf{control} (1995)::Drama\n11::B (1996)::Comedy\n", "latin-1")
    assert load_data(d).items.loc["10", "title"] == f"Caf{control} (1995)"
    _write(d / "movies.dat", f"10::Caf{control} (1995)::Drama\n11::B (1996)::Comedy\n12::C (1997)\n", "latin-1")
    with pytest.raises(DataError, match=re.escape(f"{d / 'movies.dat'} line 3: expected 3 '::'-separated fields")):
        load_data(d)
    e = tmp_path / "ml-100k"
    _write(e / "u.data", "1\t10\t5\t978300760\n")
    flags = "|".join(["0"] * 8 + ["1"] + ["0"] * 10)
    _write(e / "u.item", f"10|Caf{control} (1995)|01-Jan-1995||http://x|{flags}\n", "latin-1")
    assert load_data(e).items.loc["10", "title"] == f"Caf{control} (1995)"


@pytest.mark.parametrize(
    ("layout", "files", "bad"),
    [
        ("ml-1m", {"ratings.dat": "1::10::5::978300760\n", "users.dat": "1::F::1::10::48067\n2::M::56::16::70072\n1::M::25::16::70072\n"}, ("users.dat", 3, "user '1'", 1)),
        ("ml-1m", {"ratings.dat": "1::10::5::978300760\n", "movies.dat": "10::A (1995)::Drama\n10::B (1996)::Comedy\n"}, ("movies.dat", 2, "movie '10'", 1)),
        ("ml-100k", {"u.data": "1\t10\t5\t978300760\n", "u.user": "1|24|M|technician|85711\n2|53|F|other|94043\n2|23|M|writer|32067\n"}, ("u.user", 3, "user '2'", 2)),
        ("lastfm", {"userid-timestamp-artid-artname-traid-traname.tsv": "u1\t2009-05-04T23:08:57Z\ta\tA\tt\tT\n",
                    "userid-profile.tsv": "#id\tgender\tage\tcountry\tregistered\nu1\tm\t\tJapan\t\nu1\tf\t30\tPeru\t\n"}, ("userid-profile.tsv", 3, "user 'u1'", 2)),
    ],
)  # fmt: skip
def test_an_id_given_twice_in_a_user_or_item_table_is_refused_with_both_lines(
    tmp_path: Path, layout: str, files: dict[str, str], bad: tuple[str, int, str, int]
) -> None:
    """Regression: a user table naming a user on two lines loaded, and the fairness audit that groups users by
    its attributes then failed with pandas' 'cannot reindex on an axis with duplicate labels'."""
    d = tmp_path / layout
    for name, text in files.items():
        _write(d / name, text, "latin-1")
    name, line, what, first = bad
    with pytest.raises(DataError) as info:
        load_data(d)
    assert str(info.value) == f"{d / name} line {line}: {what} appears again (first on line {first}); each {what.split()[0]} is given once"


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        # blank lines before the bad one: the row's position plus one was not its line
        (['{"reviewerID": "A1", "asin": "B1", "overall": 5, "unixReviewTime": 1400000000}', "", "",
          '{"reviewerID": "", "asin": "B1", "overall": 5, "unixReviewTime": 1400000000}'], "line 4, column reviewerID: expected a reviewer id, found ''"),
        # a JSON array on a line: pandas raised a TypeError, not a located line
        (['{"reviewerID": "A1", "asin": "B1", "overall": 5, "unixReviewTime": 1400000000}', "[1, 2]"], "line 2, column 1: expected one JSON object per line (found another JSON value)"),
        # a time no clock holds: loaded as a missing time
        (['{"reviewerID": "A1", "asin": "B1", "overall": 5, "unixReviewTime": 1400000000}',
          '{"reviewerID": "A2", "asin": "B1", "overall": 5, "unixReviewTime": 1e30}'], "line 2, column unixReviewTime: expected a Unix time in whole seconds, found '1e+30'"),
        (['{"reviewerID": "A1", "asin": "B1", "overall": 9, "unixReviewTime": 1400000000}'], "line 1, column overall: expected a rating 1..5, found '9'"),
        # a field of another JSON type: a list crashed pandas' truth test, a list or object id was read as its text
        (['{"reviewerID": "A1", "asin": "B1", "overall": [1, 2], "unixReviewTime": 1400000000}'], "line 1, column overall: expected a rating 1..5, found '[1, 2]'"),
        (['{"reviewerID": ["A2"], "asin": "B1", "overall": 4, "unixReviewTime": 1400000000}'], "line 1, column reviewerID: expected a reviewer id, found \"['A2']\""),
        (['{"reviewerID": "A1", "asin": {"x": 1}, "overall": 4, "unixReviewTime": 1400000000}'], "line 1, column asin: expected a product id, found \"{'x': 1}\""),
        (['{"reviewerID": "A1", "asin": "B1", "overall": true, "unixReviewTime": 1400000000}'], "line 1, column overall: expected a rating 1..5, found 'True'"),
    ],
)  # fmt: skip
def test_amazon_bad_rows_are_named_by_their_own_line(tmp_path: Path, lines: list[str], says: str) -> None:
    path = _write(tmp_path / "Books_5.json", "\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        load_data(path)
    assert str(info.value) == f"{path} {says}"


def _refused_on_its_line(tmp_path: Path, files: dict[str, str], fmt: str | None, says: str) -> None:
    """Lay out ``files``, load them (as ``fmt``, or by their layout) and expect the refusal ``says``."""
    for name, text in files.items():
        _write(tmp_path / name, text)
    target = tmp_path / next(iter(files)).split("/")[0]
    with pytest.raises(DataError, match=re.escape(says)):
        load_format(target, fmt) if fmt else load_data(target)


@pytest.mark.parametrize(
    ("files", "fmt", "says"),
    [
        ({"ml-1m/ratings.dat": "1::10::5::978300760\n1::11::{cell}::978300760\n"}, None, "ratings.dat line 2, column rating: expected a number in 1..5, found '9999"),
        ({"ml-100k/u.data": "1\t10\t5\t978300760\n1\t11\t{cell}\t978300760\n"}, None, "u.data line 2: rating '9999"),
        ({"lfm/userid-timestamp-artid-artname-traid-traname.tsv": "u1\t{cell}\ta\tA\tt\tT\n"}, "lastfm-1k", "line 1, column time: expected an ISO 8601 time"),
        ({"rr/events.csv": "timestamp,visitorid,event,itemid,transactionid\n1433221332117,1,{cell},2,\n"}, "retailrocket", "line 2, column event: expected one of view"),
    ],
)  # fmt: skip
def test_a_huge_bad_cell_of_a_published_layout_is_cut_in_the_message(tmp_path: Path, files: dict[str, str], fmt: str | None, says: str) -> None:
    """Regression: a cell megabytes long came back whole in the one-line error (the event logs already cut it)."""
    for name, text in files.items():
        path = _write(tmp_path / name, text.replace("{cell}", "9" * 2_000_000))
    with pytest.raises(DataError) as info:
        load_data(path.parent, format=fmt)
    message = str(info.value)
    assert says in message and message.endswith(("... (2,000,000 characters)", "... (2,000,000 characters) is not a number"))
    assert len(message) < 400


@pytest.mark.parametrize(
    ("files", "fmt", "says"),
    [
        ({"ml-1m/ratings.dat": "1::1193::5::978300760\n1::661::3::-978302109\n"}, None, "ratings.dat line 2, column timestamp: expected an integer in 0.."),
        ({"ml-25m/ratings.csv": "userId,movieId,rating,timestamp\n1,296,5.0,-1\n"}, None, "ratings.csv line 2, column timestamp: expected an integer in 0.."),
        ({"r.jsonl": '{"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 1400000000}\n'
                     '{"reviewerID": "A2", "asin": "B01", "overall": 4.0, "unixReviewTime": -3600}\n'}, None,
         "r.jsonl line 2, column unixReviewTime: expected a Unix time in whole seconds"),  # fmt: skip
        ({"b.jsonl": '{"user_id": "U1", "parent_asin": "P9", "rating": 4.0, "timestamp": -1000}\n'}, None,
         "b.jsonl line 1, column timestamp: expected a Unix time in whole milliseconds"),  # fmt: skip
        ({"userid-timestamp-artid-artname-traid-traname.tsv": "u1\t2009-05-04T23:08:57Z\ta\tA\tt\tT\nu1\t1969-12-31T23:59:59Z\ta\tA\tt\tT\n"},
         None, "line 2, column time: expected an ISO 8601 time like 2009-05-04T23:08:57Z, between 1970 and 2262-04-11"),  # fmt: skip
        ({"events.csv": "timestamp,visitorid,event,itemid,transactionid\n-5,1,view,2,\n"}, "retailrocket",
         "events.csv line 2, column timestamp: expected an integer in 0.."),  # fmt: skip
    ],
)
def test_every_published_layout_refuses_an_event_time_before_1970_on_its_line(tmp_path: Path, files: dict[str, str], fmt: str | None, says: str) -> None:
    _refused_on_its_line(tmp_path, files, fmt, says)


@pytest.mark.parametrize(
    ("files", "fmt", "says"),
    [
        ({"ml-100k/u.data": "1\t10\t5\t978300760\n1\t11\t4\t99999999999\n"}, None, "u.data line 2: timestamp '99999999999' is outside 0..9223372036"),
        ({"ml-1m/ratings.dat": "1::1193::5::978300760\n1::661::3::978300760000\n"}, None,
         "ratings.dat line 2, column timestamp: expected an integer in 0..9,223,372,036, found '978300760000'"),  # fmt: skip
        ({"ml-25m/ratings.csv": "userId,movieId,rating,timestamp\n1,296,5.0,99999999999\n"}, None,
         "ratings.csv line 2, column timestamp: expected an integer in 0..9,223,372,036"),  # fmt: skip
        ({"r.jsonl": '{"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 99999999999}\n'}, None,
         "r.jsonl line 1, column unixReviewTime: expected a Unix time in whole seconds"),  # fmt: skip
        ({"b.jsonl": '{"user_id": "U1", "parent_asin": "P9", "rating": 4.0, "timestamp": 99999999999000}\n'}, None,
         "b.jsonl line 1, column timestamp: expected a Unix time in whole milliseconds"),  # fmt: skip
        ({"userid-timestamp-artid-artname-traid-traname.tsv": "u1\t2009-05-04T23:08:57Z\ta\tA\tt\tT\nu1\t3000-01-01T00:00:00Z\ta\tA\tt\tT\n"},
         None, "line 2, column time: expected an ISO 8601 time like 2009-05-04T23:08:57Z, between 1970 and 2262-04-11"),  # fmt: skip
        ({"events.csv": "timestamp,visitorid,event,itemid,transactionid\n99999999999000,1,view,2,\n"}, "retailrocket",
         "events.csv line 2, column timestamp: expected an integer in 0..9,223,372,036,000"),  # fmt: skip
    ],
)
def test_every_published_layout_refuses_an_event_time_no_clock_compares_on_its_line(
    tmp_path: Path, files: dict[str, str], fmt: str | None, says: str
) -> None:
    """Regression: times after 2262-04-11 (milliseconds read as seconds, a placeholder) loaded, and every rule that
    compares times (erasure, retention, the time split) read them wrapped around to another century."""
    _refused_on_its_line(tmp_path, files, fmt, says)


@pytest.mark.parametrize(
    ("files", "item", "title"),
    [
        ({"ml-100k/u.data": "1\t10\t5\t978300760\n", "ml-100k/u.item": "10|Café Society (1995)|01-Jan-1995||http://x/10|" + "|".join(["0"] * 18) + "|1\n"},
         "10", "Café Society (1995)"),  # fmt: skip
        ({"ml-1m/ratings.dat": "1::1193::5::978300760\n", "ml-1m/movies.dat": "1193::Cité des enfants perdus, La (1995)::Drama\n"},
         "1193", "Cité des enfants perdus, La (1995)"),  # fmt: skip
    ],
)
def test_a_latin1_layout_saved_as_utf8_keeps_its_titles(tmp_path: Path, files: dict[str, str], item: str, title: str) -> None:
    """Regression: MovieLens' latin-1 files re-saved as UTF-8 (as many copies are) decode as latin-1 without an
    error, so every accented title came back garbled ("CafÃ©"): in the item table, the content model and the lists."""
    for name, text in files.items():
        _write(tmp_path / name, text, "utf-8")
    data = load_data(tmp_path / next(iter(files)).split("/")[0])
    assert data.items.loc[item, "title"] == title
    for name, text in files.items():  # the published latin-1 bytes read as before
        _write(tmp_path / name, text, "latin-1")
    assert load_data(tmp_path / next(iter(files)).split("/")[0]).items.loc[item, "title"] == title


def test_an_amazon_file_with_bytes_that_are_not_utf8_is_refused_on_their_line(tmp_path: Path) -> None:
    """Regression: undecodable bytes were replaced by U+FFFD, so two reviewers whose ids differ only there became one
    person ("A\\ufffd1"): one history, and an erasure or a consent record keyed by either id met neither."""
    good = b'{"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 1400000000}\n'
    path = tmp_path / "r.jsonl"
    path.write_bytes(good + b'{"reviewerID": "A\xe91", "asin": "B01", "overall": 4.0, "unixReviewTime": 1400000001}\n'
                     + b'{"reviewerID": "A\xe81", "asin": "B02", "overall": 4.0, "unixReviewTime": 1400000002}\n')  # fmt: skip
    with pytest.raises(DataError, match=re.escape(f"{path} line 2: byte 0xe9 cannot be decoded as utf-8")):
        load_data(path)
    path.write_bytes(b"\xef\xbb\xbf" + good)  # a byte-order mark is no content
    assert load_data(path).events["user_id"].astype(str).tolist() == ["A1"]
