"""Purging a published layout: the log is read as `recgov data validate` reads it (its files tell the
layout, or the format named), and only the lines of the purged events leave its event file, byte for
byte; a file whose lines cannot be matched to its events, or a layout that cannot be written back,
is refused and nothing changes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from audits import Store
from audits.suppression import suppress_subject
from governance import retention
from governance.policy import load_pack
from governance.retention import purge_expired
from recommender.errors import ConfigError, DataError

POLICIES = Path(__file__).resolve().parents[2] / "policies"
EU = load_pack(POLICIES / "eu-gdpr-dsa.yaml").pack  # 730 days
NOW = datetime(2024, 7, 1, tzinfo=UTC)
OLD, NEW = 1609459200, 1714521600  # 2021-01-01 (past the window), 2024-05-01
MOVIES = 'movieId,title,genres\n10,"Heat, Again (1995)",Action\n11,Up (2009)|Animation\n'


def _movielens_csv(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    (folder / "ratings.csv").write_bytes(
        b"userId,movieId,rating,timestamp\r\n"
        + f"1,10,0.5,{OLD}\r\n1,11,4.5,{NEW}\r\n2,10,3.5,{NEW}\r\n\r\n3,11,5.0,{OLD}\r\n".encode()
    )
    (folder / "movies.csv").write_text(MOVIES)
    return folder


def test_a_movielens_csv_folder_loses_only_the_lines_past_the_window(store: Store, tmp_path: Path) -> None:
    folder = _movielens_csv(tmp_path)
    dry = purge_expired(folder, EU, store, now=NOW, dry_run=True)
    assert (dry["format"], dry["events_total"], dry["events_purged"]) == ("movielens-csv", 4, 2)
    report = purge_expired(folder, EU, store, now=NOW)
    assert report["events_past_retention"] == 2 and report["trail_seq"] > 0
    # the header, the CRLF endings and the blank line stay; the item table is not touched
    assert (folder / "ratings.csv").read_bytes() == f"userId,movieId,rating,timestamp\r\n1,11,4.5,{NEW}\r\n2,10,3.5,{NEW}\r\n\r\n".encode()
    assert (folder / "movies.csv").read_text() == MOVIES
    assert purge_expired(folder, EU, store, now=NOW)["events_purged"] == 0


def test_the_user_field_of_a_layout_names_the_erased_subject(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "events.csv"  # Retailrocket: the visitor is the second field
    log.write_text(
        "timestamp,visitorid,event,itemid,transactionid\n"
        f"{NEW}000,7,view,100,\n{NEW}001,8,view,101,\n{NEW}002,7,transaction,100,55\n{NEW}003,9,addtocart,102,\n"
    )
    with store.session() as session:
        suppress_subject(session, "7", denied={}, erased_at=datetime(2024, 6, 1, tzinfo=UTC))
    report = purge_expired(log, EU, store, now=NOW, format="retailrocket")
    assert (report["format"], report["events_of_erased_subjects"], report["erased_subjects_found"]) == ("retailrocket", 2, 1)
    assert log.read_text() == f"timestamp,visitorid,event,itemid,transactionid\n{NEW}001,8,view,101,\n{NEW}003,9,addtocart,102,\n"


def test_lines_that_do_not_match_their_events_change_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _movielens_csv(tmp_path)
    before = (folder / "ratings.csv").read_bytes()
    real = retention.load_format

    def reordered(path: Path, name: str):  # noqa: ANN202 - a loader that sorted its events by user, descending
        data = real(path, name)
        return data.with_events(data.events.iloc[::-1].reset_index(drop=True))

    monkeypatch.setattr(retention, "load_format", reordered)
    with pytest.raises(DataError, match=r"ratings.csv line 2: the record does not name the user"):
        purge_expired(folder, EU, store, now=NOW)
    assert (folder / "ratings.csv").read_bytes() == before


def test_a_layout_that_cannot_be_written_back_is_refused(store: Store, tmp_path: Path) -> None:
    reviews = tmp_path / "reviews.jsonl"
    reviews.write_text('{"reviewerID": "a", "asin": "x", "overall": 5, "unixReviewTime": 1609459200}\n')
    with pytest.raises(DataError, match="cannot write back the amazon layout"):
        purge_expired(reviews, EU, store, now=NOW)
    with pytest.raises(ConfigError, match="unknown data format 'movielens-9m'"):
        purge_expired(tmp_path, EU, store, now=NOW, format="movielens-9m")
    with pytest.raises(DataError, match="name its layout with --format"):
        purge_expired(tmp_path, EU, store, now=NOW)
    assert reviews.read_text().startswith('{"reviewerID": "a"')


def _movielens_100k(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text(f"1\t10\t4\t{NEW}\n2\t10\t5\t{NEW}\n1\t11\t3\t{NEW}\n3\t11\t2\t{NEW}\n")
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n4|33|F|other|15213\n")
    return folder


def test_an_erased_subjects_row_of_attributes_leaves_the_file_of_people(store: Store, tmp_path: Path) -> None:
    folder = _movielens_100k(tmp_path)
    with store.session() as session:
        suppress_subject(session, "1", denied={}, erased_at=datetime(2024, 6, 1, tzinfo=UTC))
    report = purge_expired(folder, EU, store, now=NOW)
    assert (report["events_of_erased_subjects"], report["profiles_of_erased_subjects"]) == (2, 1)
    assert (folder / "u.data").read_text() == f"2\t10\t5\t{NEW}\n3\t11\t2\t{NEW}\n"
    assert (folder / "u.user").read_text() == "2|53|F|other|94043\n3|23|M|writer|32067\n4|33|F|other|15213\n"
    # a subject erased with no event left still has a row of attributes: the purge removes it alone
    with store.session() as session:
        suppress_subject(session, "4", denied={}, erased_at=datetime(2024, 6, 1, tzinfo=UTC))
    dry = purge_expired(folder, EU, store, now=NOW, dry_run=True)
    assert (dry["events_purged"], dry["profiles_of_erased_subjects"]) == (0, 1)
    assert "4|33" in (folder / "u.user").read_text()
    done = purge_expired(folder, EU, store, now=NOW)
    assert done["trail_seq"] > report["trail_seq"] and "4|33" not in (folder / "u.user").read_text()
    assert purge_expired(folder, EU, store, now=NOW, erased=False)["profiles_of_erased_subjects"] == 0


def test_a_naive_now_is_refused_as_the_training_filter_refuses_it(store: Store, tmp_path: Path) -> None:
    # a time without a zone would be a guess: the window it starts must not depend on where the purge runs
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,timestamp\na,x,2022-01-01T00:00:00Z\nb,y,2024-06-20T00:00:00Z\n")
    before = log.read_bytes()
    with pytest.raises(DataError, match="now must be a timezone-aware datetime"):
        purge_expired(log, EU, store, now=datetime(2024, 7, 1))
    assert log.read_bytes() == before
    assert purge_expired(log, EU, store, now=NOW)["events_purged"] == 1
