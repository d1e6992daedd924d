"""Loaders for the layouts of published recommender data sets, by format name.

:data:`FORMATS` maps each format name to its loader; :func:`load_format` reads a
path in a named format, and :func:`detect_format` names the format of a path from
the files it holds (``None`` when it cannot tell). Every loader returns a
:class:`~recommender.data.Dataset` or raises a :class:`~recommender.errors.DataError`
of one line that names the file, the line and column, and what was expected;
nothing is half-loaded. Downloading the official archives is
:mod:`recommender.datasets.download`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from recommender.data import Dataset
from recommender.datasets.amazon import load_amazon
from recommender.datasets.logs import load_book_crossing, load_lastfm_1k, load_lastfm_360k, load_retailrocket
from recommender.datasets.movielens import load_movielens_1m, load_movielens_csv
from recommender.datasets.movielens_100k import load_movielens_100k
from recommender.errors import ConfigError

__all__ = ["FORMATS", "UNKNOWN_FORMAT", "detect_format", "load_format"]


FORMATS: dict[str, Callable[[str | Path], Dataset]] = {
    "movielens-100k": load_movielens_100k,
    "movielens-1m": load_movielens_1m,
    "movielens-csv": load_movielens_csv,
    "amazon": load_amazon,
    "lastfm-1k": load_lastfm_1k,
    "lastfm-360k": load_lastfm_360k,
    "book-crossing": load_book_crossing,
    "retailrocket": load_retailrocket,
}
"""Format name -> loader. ``movielens-csv`` covers 20M, 25M, 32M and ml-latest."""

UNKNOWN_FORMAT = "unknown data format {name!r}; the formats are {known}"

_MARKERS: tuple[tuple[str, str], ...] = (
    ("u.data", "movielens-100k"),
    ("ratings.dat", "movielens-1m"),
    ("ratings.csv", "movielens-csv"),
    ("userid-timestamp-artid-artname-traid-traname.tsv", "lastfm-1k"),
    ("usersha1-artmbid-artname-plays.tsv", "lastfm-360k"),
    ("BX-Book-Ratings.csv", "book-crossing"),
)


def detect_format(path: Path) -> str | None:
    """The format of ``path`` told by the files it holds (or its own name), else None."""
    if path.is_dir():
        return next((name for marker, name in _MARKERS if (path / marker).exists()), None)
    by_name = next((name for marker, name in _MARKERS if path.name == marker), None)
    if by_name:
        return by_name
    if path.name.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")):
        return "amazon"
    return None


def load_format(path: str | Path, name: str) -> Dataset:
    """Load ``path`` in format ``name`` (one of :data:`FORMATS`).

    Raises
    ------
    ConfigError
        When ``name`` is not a known format.
    DataError
        When a file is missing or broken (one line: file, line, column, what was expected).
    """
    if name not in FORMATS:
        raise ConfigError(UNKNOWN_FORMAT.format(name=name, known=", ".join(FORMATS)))
    return FORMATS[name](Path(path))
