"""MovieLens 1M (``::``-separated ``.dat`` files) and the CSV layout of 20M, 25M, 32M and ml-latest.

The 100K layout (``u.data``) is :mod:`recommender.datasets.movielens_100k`.
Ratings become ``rating`` events; the movies file gives the item table (title,
``|``-separated genres as ``categories``, the release year taken from the title's
trailing ``(1995)``); 1M's ``users.dat`` gives gender, age band, occupation and zip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recommender.data import LATEST_UNIX_SECONDS, Dataset, ensure_event_schema
from recommender.datasets._read import age_bands, layout_dir, numbers, read_table, required, seconds_to_times, unique_ids
from recommender.item_table import release_columns

__all__ = ["is_movielens_1m", "is_movielens_csv", "load_movielens_1m", "load_movielens_csv"]

_YEAR = r"\((\d{4})\)\s*$"


def is_movielens_1m(path: Path) -> bool:
    """True when ``path`` is a directory holding MovieLens-1M's ``ratings.dat``."""
    return path.is_dir() and (path / "ratings.dat").exists()


def is_movielens_csv(path: Path) -> bool:
    """True when ``path`` is a directory holding a MovieLens ``ratings.csv`` (20M, 25M, 32M, latest)."""
    return path.is_dir() and (path / "ratings.csv").exists()


def _rating_events(path: Path, frame: pd.DataFrame, *, low: float, high: float) -> pd.DataFrame:
    user = required(path, frame, "userId", "a user id")
    item = required(path, frame, "movieId", "a movie id")
    value = numbers(path, frame, "rating", low=low, high=high)
    seconds = numbers(path, frame, "timestamp", integer=True, low=0, high=LATEST_UNIX_SECONDS)
    return pd.DataFrame(
        {
            "user_id": user.to_numpy(),
            "item_id": item.to_numpy(),
            "event_type": pd.Categorical(np.full(len(frame), "rating")),
            "value": value,
            "timestamp": seconds_to_times(seconds).to_numpy(),
        }
    ).astype({"user_id": "category", "item_id": "category"})


def _movies(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """The item table of a movies file: title, genres as categories, release year from the title."""
    ids = unique_ids(path, required(path, frame, "movieId", "a movie id"), "movie")
    titles = frame["title"].str.strip()
    years = pd.to_numeric(titles.str.extract(_YEAR, expand=False), errors="coerce").astype("Int64")
    released = release_columns(pd.Series(years.to_numpy(), dtype="Int64"))
    genres = frame["genres"].str.strip().replace("(no genres listed)", "")
    return pd.DataFrame(
        {
            "title": titles.to_numpy(),
            "release_year": released["release_year"].to_numpy(),
            "release_decade": released["release_decade"].to_numpy(),
            "categories": genres.to_numpy(),
            "provider": pd.array([pd.NA] * len(frame), dtype="string"),
            "provider_group": pd.array([pd.NA] * len(frame), dtype="string"),
            "text": (titles + " " + genres.str.replace("|", " ", regex=False)).to_numpy(),
            "flags": [""] * len(frame),
        },
        index=pd.Index(ids.to_numpy(), name="item_id", dtype="string"),
    )


def load_movielens_1m(directory: str | Path) -> Dataset:
    """Load a MovieLens-1M directory: ``ratings.dat``, and ``movies.dat`` / ``users.dat`` when present (latin-1)."""
    directory = layout_dir(Path(directory), "ratings.dat", "MovieLens-1M")
    ratings = directory / "ratings.dat"
    frame = read_table(ratings, ("userId", "movieId", "rating", "timestamp"), sep="::", encoding="latin-1",
                       what="'::'-separated lines 'UserID::MovieID::Rating::Timestamp'")  # fmt: skip
    events = _rating_events(ratings, frame, low=1, high=5)
    items = pd.DataFrame(index=pd.Index([], name="item_id", dtype="string"))
    if (directory / "movies.dat").exists():
        movies = read_table(directory / "movies.dat", ("movieId", "title", "genres"), sep="::", encoding="latin-1",
                            what="'::'-separated lines 'MovieID::Title::Genres'")  # fmt: skip
        items = _movies(directory / "movies.dat", movies)
    users = pd.DataFrame(index=pd.Index([], name="user_id", dtype="string"))
    if (directory / "users.dat").exists():
        path = directory / "users.dat"
        frame = read_table(path, ("userId", "gender", "age", "occupation", "zip"), sep="::", encoding="latin-1",
                           what="'::'-separated lines 'UserID::Gender::Age::Occupation::Zip-code'")  # fmt: skip
        ages = numbers(path, frame, "age", integer=True, low=0, high=150)
        users = pd.DataFrame(
            {"gender": frame["gender"].to_numpy(), "age": ages.astype(np.int64), "age_band": age_bands(ages), "occupation": frame["occupation"].to_numpy(),
             "zip": frame["zip"].to_numpy()},
            index=pd.Index(unique_ids(path, required(path, frame, "userId", "a user id"), "user").to_numpy(), name="user_id", dtype="string"),
        )  # fmt: skip
    return Dataset(events=ensure_event_schema(events, source=str(ratings)), users=users, items=items,
                   name="movielens-1m", source=str(directory))  # fmt: skip


def load_movielens_csv(directory: str | Path) -> Dataset:
    """Load the CSV layout of MovieLens 20M/25M/32M/latest: ``ratings.csv`` (0.5 to 5 stars) and ``movies.csv``."""
    directory = layout_dir(Path(directory), "ratings.csv", "MovieLens CSV (20M, 25M, 32M, latest)")
    ratings = directory / "ratings.csv"
    frame = read_table(ratings, ("userId", "movieId", "rating", "timestamp"), sep=",", header="userId,movieId,rating,timestamp",
                       what="a CSV with header userId,movieId,rating,timestamp")  # fmt: skip
    events = _rating_events(ratings, frame, low=0.5, high=5)
    items = pd.DataFrame(index=pd.Index([], name="item_id", dtype="string"))
    if (directory / "movies.csv").exists():
        movies = read_table(directory / "movies.csv", ("movieId", "title", "genres"), sep=",", header="movieId,title,genres", quoted=True,
                            what="a CSV with header movieId,title,genres")  # fmt: skip
        items = _movies(directory / "movies.csv", movies)
    return Dataset(events=ensure_event_schema(events, source=str(ratings)), items=items,
                   name=f"movielens-{directory.name}", source=str(directory), rating_range=(0.5, 5.0))  # fmt: skip
