"""Interaction logs of other domains: Last.fm listening, Book-Crossing ratings, Retailrocket events.

Each loader reads the layout as published and maps it onto recgov's events:

* **Last.fm 1K** (``userid-timestamp-artid-artname-traid-traname.tsv``): one
  ``view`` per play, the item being the track's MusicBrainz id (or
  ``artist - track`` where the id is empty); the item table names the track
  and its artist as ``provider``; ``userid-profile.tsv`` gives gender, age,
  country.
* **Last.fm 360K** (``usersha1-artmbid-artname-plays.tsv``): one ``view`` per
  (user, artist) with the play count as ``value``. The set has no times; every
  row carries :data:`LASTFM_360K_SNAPSHOT`, the month it was collected.
* **Book-Crossing** (``BX-Book-Ratings.csv``, semicolon-separated, quoted,
  latin-1): a rating of 0 is an implicit ``view``; 1..10 become ``rating``
  events on recgov's 1..5 scale (``1 + (r - 1) * 4 / 9``). No times either:
  :data:`BOOK_CROSSING_SNAPSHOT`. ``BX-Books.csv`` gives title, author (as
  ``provider``), year; ``BX-Users.csv`` gives location and age.
* **Retailrocket** (``events.csv``: ``timestamp,visitorid,event,itemid,transactionid``,
  milliseconds): ``view``, ``addtocart`` and ``transaction`` become ``view``,
  ``add_to_cart`` and ``purchase``, which the feedback weights then tell apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from recommender.data import LATEST_EVENT_TIME, LATEST_UNIX_SECONDS, Dataset, ensure_event_schema
from recommender.datasets._read import BAD_FIELD, Shown, numbers, read_table, required, seconds_to_times, unique_ids
from recommender.errors import DataError

__all__ = [
    "BOOK_CROSSING_SNAPSHOT",
    "LASTFM_360K_SNAPSHOT",
    "RETAILROCKET_EVENTS",
    "load_book_crossing",
    "load_lastfm_1k",
    "load_lastfm_360k",
    "load_retailrocket",
]

LASTFM_360K_SNAPSHOT = datetime(2008, 5, 1, tzinfo=UTC)
"""The time given to every Last.fm-360K row (the set has none): the month it was collected."""
BOOK_CROSSING_SNAPSHOT = datetime(2004, 9, 1, tzinfo=UTC)
"""The time given to every Book-Crossing row (the set has none): the end of its four-week crawl."""
RETAILROCKET_EVENTS: dict[str, str] = {"view": "view", "addtocart": "add_to_cart", "transaction": "purchase"}
"""Retailrocket's event names and recgov's event types."""

_EMPTY_ITEMS = pd.DataFrame(index=pd.Index([], name="item_id", dtype="string"))
_EMPTY_USERS = pd.DataFrame(index=pd.Index([], name="user_id", dtype="string"))


def _dataset(
    events: pd.DataFrame, source: Path, name: str, *, users: pd.DataFrame | None = None, items: pd.DataFrame | None = None
) -> Dataset:
    for column in ("user_id", "item_id", "event_type"):
        events[column] = events[column].astype("category")
    return Dataset(
        events=ensure_event_schema(events, source=str(source)),
        users=_EMPTY_USERS if users is None else users,
        items=_EMPTY_ITEMS if items is None else items,
        name=name,
        source=str(source),
    )


def _in_dir(path: Path, name: str) -> Path:
    return path / name if path.is_dir() else path


def load_lastfm_1k(path: str | Path) -> Dataset:
    """Load Last.fm 1K: a directory holding the plays TSV (or the TSV itself) and, if present, the profiles."""
    path = Path(path)
    plays = _in_dir(path, "userid-timestamp-artid-artname-traid-traname.tsv")
    names = ("user", "time", "artist_id", "artist", "track_id", "track")
    frame = read_table(plays, names, sep="\t", what="tab-separated lines 'user timestamp artist-id artist track-id track'")
    user = required(plays, frame, "user", "a user id")
    times = pd.to_datetime(frame["time"].str.strip(), utc=True, errors="coerce", format="ISO8601")
    # a time before 1970 is no play's (the other readers refuse it too); one after 2262-04-11 is no clock's
    bad = times.isna() | (times < pd.Timestamp(0, tz="UTC")) | (times > LATEST_EVENT_TIME)
    if bad.any():
        line = int(bad.idxmax())
        expected = "an ISO 8601 time like 2009-05-04T23:08:57Z, between 1970 and 2262-04-11"
        raise DataError(BAD_FIELD.format(path=plays, line=line, column="time", expected=expected, value=Shown(frame["time"].loc[line])))
    track = frame["track_id"].str.strip()
    label = frame["artist"].str.strip() + " - " + frame["track"].str.strip()
    item = track.where(track != "", label)
    events = pd.DataFrame({"user_id": user.to_numpy(), "item_id": item.to_numpy(), "event_type": "view", "timestamp": times.to_numpy()})
    first = ~item.duplicated()
    items = pd.DataFrame(
        {"title": frame["track"].str.strip()[first].to_numpy(), "provider": frame["artist"].str.strip()[first].to_numpy(),
         "categories": [""] * int(first.sum()), "text": label[first].to_numpy(), "flags": [""] * int(first.sum())},
        index=pd.Index(item[first].to_numpy(), name="item_id", dtype="string"),
    )  # fmt: skip
    users = None
    profile = plays.parent / "userid-profile.tsv"
    if profile.exists():
        pf = read_table(profile, ("user", "gender", "age", "country", "registered"), sep="\t",
                        header="#id\tgender\tage\tcountry\tregistered",
                        what="tab-separated lines '#id gender age country registered'")  # fmt: skip
        ages = numbers(profile, pf, "age", integer=True, low=0, high=150, optional=True)
        users = pd.DataFrame({"gender": pf["gender"].to_numpy(), "age": pd.array(ages, dtype="Float64").astype("Int64"),
                              "country": pf["country"].to_numpy()},
                             index=pd.Index(unique_ids(profile, required(profile, pf, "user", "a user id"), "user").to_numpy(), name="user_id", dtype="string"))  # fmt: skip
    return _dataset(events, plays, "lastfm-1k", users=users, items=items)


def load_lastfm_360k(path: str | Path) -> Dataset:
    """Load Last.fm 360K: (user, artist, plays) rows, one ``view`` each with the plays as ``value``."""
    path = Path(path)
    plays = _in_dir(path, "usersha1-artmbid-artname-plays.tsv")
    frame = read_table(plays, ("user", "artist_id", "artist", "plays"), sep="\t",
                       what="tab-separated lines 'user-sha1 artist-mbid artist-name plays'")  # fmt: skip
    count = numbers(plays, frame, "plays", integer=True, low=0, high=10**9)
    artist = frame["artist_id"].str.strip()
    item = artist.where(artist != "", frame["artist"].str.strip())
    events = pd.DataFrame({"user_id": required(plays, frame, "user", "a user id").to_numpy(), "item_id": item.to_numpy(),
                           "event_type": "view", "value": count,
                           "timestamp": pd.Timestamp(LASTFM_360K_SNAPSHOT)})  # fmt: skip
    first = ~item.duplicated()
    items = pd.DataFrame({"title": frame["artist"][first].to_numpy(), "provider": frame["artist"][first].to_numpy(),
                          "categories": [""] * int(first.sum()), "flags": [""] * int(first.sum())},
                         index=pd.Index(item[first].to_numpy(), name="item_id", dtype="string"))  # fmt: skip
    return _dataset(events, plays, "lastfm-360k", items=items)


def load_book_crossing(path: str | Path) -> Dataset:
    """Load Book-Crossing: ``BX-Book-Ratings.csv`` and, when present, ``BX-Books.csv`` and ``BX-Users.csv``."""
    path = Path(path)
    ratings = _in_dir(path, "BX-Book-Ratings.csv")
    frame = read_table(ratings, ("user", "isbn", "rating"), sep=";", header='"User-ID";"ISBN";"Book-Rating"', quoted=True, encoding="latin-1",
                       what='semicolon-separated quoted lines "User-ID";"ISBN";"Book-Rating"')  # fmt: skip
    score = numbers(ratings, frame, "rating", integer=True, low=0, high=10)
    implicit = score == 0
    events = pd.DataFrame({
        "user_id": required(ratings, frame, "user", "a user id").to_numpy(),
        "item_id": required(ratings, frame, "isbn", "an ISBN").to_numpy(),
        "event_type": np.where(implicit, "view", "rating"),
        "value": np.where(implicit, np.nan, 1 + (score - 1) * 4 / 9),
        "timestamp": pd.Timestamp(BOOK_CROSSING_SNAPSHOT),
    })  # fmt: skip
    items = users = None
    books = ratings.parent / "BX-Books.csv"
    if books.exists():
        names = ("isbn", "title", "author", "year", "publisher", "image_s", "image_m", "image_l")
        bf = read_table(books, names, sep=";", quoted=True,
                        header='"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher";"Image-URL-S";"Image-URL-M";"Image-URL-L"', encoding="latin-1",
                        what='semicolon-separated quoted lines "ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";...')  # fmt: skip
        year = pd.to_numeric(bf["year"], errors="coerce")
        year = year.where((year >= 1800) & (year <= 2100)).astype("Int64")  # the set's unknown year is 0
        items = pd.DataFrame({"title": bf["title"].to_numpy(), "provider": bf["author"].to_numpy(),
                              "release_year": year.to_numpy(), "categories": [""] * len(bf),
                              "text": (bf["title"] + " " + bf["author"]).to_numpy(), "flags": [""] * len(bf)},
                             index=pd.Index(required(books, bf, "isbn", "an ISBN").to_numpy(), name="item_id", dtype="string"))  # fmt: skip
        items = items[~items.index.duplicated()]
    people = ratings.parent / "BX-Users.csv"
    if people.exists():
        uf = read_table(people, ("user", "location", "age"), sep=";", header='"User-ID";"Location";"Age"', quoted=True, encoding="latin-1",
                        what='semicolon-separated quoted lines "User-ID";"Location";"Age"')  # fmt: skip
        ages = numbers(people, uf, "age", low=0, high=250, optional=True, missing=("NULL",))
        users = pd.DataFrame({"location": uf["location"].to_numpy(), "age": ages},
                             index=pd.Index(unique_ids(people, required(people, uf, "user", "a user id"), "user").to_numpy(), name="user_id", dtype="string"))  # fmt: skip
    return _dataset(events, ratings, "book-crossing", users=users, items=items)


def load_retailrocket(path: str | Path) -> Dataset:
    """Load a Retailrocket-style ``events.csv`` (``timestamp,visitorid,event,itemid,transactionid``, milliseconds)."""
    path = Path(path)
    log = _in_dir(path, "events.csv")
    frame = read_table(log, ("timestamp", "visitorid", "event", "itemid", "transactionid"), sep=",",
                       header="timestamp,visitorid,event,itemid,transactionid", min_fields=4, what="a CSV with header timestamp,visitorid,event,itemid,transactionid")  # fmt: skip
    millis = numbers(log, frame, "timestamp", integer=True, low=0, high=LATEST_UNIX_SECONDS * 1000)
    kind = frame["event"].str.strip()
    unknown = ~kind.isin(list(RETAILROCKET_EVENTS))
    if unknown.any():
        line = int(unknown.idxmax())
        raise DataError(BAD_FIELD.format(path=log, line=line, column="event", expected="one of view, addtocart, transaction", value=Shown(kind.loc[line])))
    transaction = frame["transactionid"].str.strip()
    events = pd.DataFrame({
        "user_id": required(log, frame, "visitorid", "a visitor id").to_numpy(),
        "item_id": required(log, frame, "itemid", "an item id").to_numpy(),
        "event_type": kind.map(RETAILROCKET_EVENTS).to_numpy(),
        "timestamp": seconds_to_times(millis, "ms").to_numpy(),
        "context": transaction.where(transaction == "", '{"transaction":"' + transaction + '"}').replace("", None).to_numpy(),
    })  # fmt: skip
    return _dataset(events, log, "retailrocket")
