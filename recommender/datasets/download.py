"""Downloading published data sets from their official sources, all or nothing.

:data:`SOURCES` records, for each set with a stable official archive, where it
is, the licence it comes under, its layout and, where it could be verified, its
published SHA-256 and size. :func:`download` streams the archive into a hidden
temporary file in the destination, checks it (the SHA-256 when one is recorded,
the size when one is recorded, and always that the archive opens and every
member reads back intact), unpacks it into a temporary folder next to the final
one and only then renames both into place. An interrupted transfer, a checksum
mismatch or a broken archive leaves nothing behind but the error.

The licence is the caller's to show and have accepted before anything is
written (``recgov data download`` prompts, or takes ``--accept-licence``);
:func:`download` refuses to run with ``accept_licence=False``.

``url`` (or the ``RECGOV_DATA_MIRROR`` variable, a base URL under which the
archive's file name is looked up) points at another server: a mirror inside a
company network, or a local server in tests.

HTTP is done with the standard library (``urllib``): the project's runtime
dependencies do not include an HTTP client, and a streamed GET needs no more.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recommender.errors import ConfigError, DataError

__all__ = ["MIRROR_VARIABLE", "SOURCES", "DownloadResult", "Source", "download", "source_url"]

MIRROR_VARIABLE = "RECGOV_DATA_MIRROR"
"""Environment variable naming a base URL that serves the archives by file name."""

UNKNOWN_SET = "unknown data set {name!r}; the sets that can be downloaded are {known}"
NOT_ACCEPTED = "the licence of {name} was not accepted; nothing was downloaded"
CHECKSUM_MISMATCH = "{url}: SHA-256 {got} does not match the published {expected}; the download was discarded"
SIZE_MISMATCH = "{url}: {got:,} bytes received, {expected:,} expected; the download was discarded"
BROKEN_ARCHIVE = "{url}: the archive is broken ({problem}); the download was discarded"
TRANSFER_FAILED = "{url}: the download failed ({problem}); nothing was kept"
ALREADY_THERE = "{path} already exists; remove it or choose another --dest"

_GROUPLENS = "https://files.grouplens.org/datasets/movielens"
_MOVIELENS_LICENCE = (
    "MovieLens data sets, GroupLens Research, University of Minnesota. The data may be used for research "
    "purposes; it may not be redistributed without permission, nor used for commercial or revenue-bearing "
    "purposes without permission, and any publication using it must acknowledge it (F. Maxwell Harper and "
    "Joseph A. Konstan, The MovieLens Datasets: History and Context, ACM TiiS 5(4), 2015). The full terms are in "
    "the README of the archive."
)


@dataclass(frozen=True)
class Source:
    """Where a data set is published and under which terms."""

    name: str
    url: str
    filename: str
    folder: str
    """The folder the archive unpacks to (the DATA path to give the other commands)."""
    format: str
    """The layout, a name of :data:`recommender.datasets.FORMATS`."""
    licence: str
    licence_url: str
    sha256: str | None = None
    """The published SHA-256, recorded only when verified; None: unknown, the archive's integrity is checked."""
    size: int | None = None
    """The published size in bytes, recorded only when verified."""


def _movielens(name: str, stem: str, fmt: str) -> Source:
    return Source(name, f"{_GROUPLENS}/{stem}.zip", f"{stem}.zip", stem, fmt, _MOVIELENS_LICENCE,
                  f"{_GROUPLENS}/{stem}-README.txt" if stem == "ml-100k" else "https://grouplens.org/datasets/movielens/")  # fmt: skip


SOURCES: dict[str, Source] = {
    "movielens-100k": _movielens("movielens-100k", "ml-100k", "movielens-100k"),
    "movielens-1m": _movielens("movielens-1m", "ml-1m", "movielens-1m"),
    "movielens-20m": _movielens("movielens-20m", "ml-20m", "movielens-csv"),
    "movielens-25m": _movielens("movielens-25m", "ml-25m", "movielens-csv"),
    "movielens-32m": _movielens("movielens-32m", "ml-32m", "movielens-csv"),
    "movielens-latest-small": _movielens("movielens-latest-small", "ml-latest-small", "movielens-csv"),
    "lastfm-1k": Source(
        "lastfm-1k", "http://mtg.upf.edu/static/datasets/last.fm/lastfm-dataset-1K.tar.gz", "lastfm-dataset-1K.tar.gz",
        "lastfm-dataset-1K", "lastfm-1k",
        "Last.fm listening histories collected by Oscar Celma (MTG, Universitat Pompeu Fabra). Distributed for "
        "non-commercial research under the terms stated on the page below and in the archive's README.",
        "http://ocelma.net/MusicRecommendationDataset/lastfm-1K.html",
    ),
    "lastfm-360k": Source(
        "lastfm-360k", "http://mtg.upf.edu/static/datasets/last.fm/lastfm-dataset-360K.tar.gz",
        "lastfm-dataset-360K.tar.gz", "lastfm-dataset-360K", "lastfm-360k",
        "Last.fm listening counts collected by Oscar Celma (MTG, Universitat Pompeu Fabra). Distributed for "
        "non-commercial research under the terms stated on the page below and in the archive's README.",
        "http://ocelma.net/MusicRecommendationDataset/lastfm-360K.html",
    ),
    "book-crossing": Source(
        "book-crossing", "http://www2.informatik.uni-freiburg.de/~cziegler/BX/BX-CSV-Dump.zip", "BX-CSV-Dump.zip",
        "BX-CSV-Dump", "book-crossing",
        "Book-Crossing data set collected by Cai-Nicolas Ziegler (2004), free for research use; publications must "
        "cite Ziegler et al., Improving Recommendation Lists Through Topic Diversification, WWW 2005.",
        "http://www2.informatik.uni-freiburg.de/~cziegler/BX/",
    ),
}  # fmt: skip
"""The data sets recgov can download. No checksum or size is recorded yet: none could
be verified against the publisher, so every download is checked for integrity instead."""


@dataclass(frozen=True)
class DownloadResult:
    """What :func:`download` put where, and how it was checked."""

    name: str
    url: str
    archive: Path
    folder: Path
    sha256: str
    size: int
    checked: tuple[str, ...]
    """The checks passed: ``sha256``, ``size``, ``archive``."""

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {"name": self.name, "url": self.url, "archive": str(self.archive), "folder": str(self.folder),
                "sha256": self.sha256, "size": self.size, "checked": list(self.checked)}  # fmt: skip


def source_url(source: Source, url: str | None = None) -> str:
    """The URL to fetch: ``url``, else the mirror named by ``RECGOV_DATA_MIRROR``, else the official one."""
    if url:
        return url
    mirror = os.environ.get(MIRROR_VARIABLE, "").strip()
    return f"{mirror.rstrip('/')}/{source.filename}" if mirror else source.url


def download(
    name: str,
    dest: str | Path,
    *,
    accept_licence: bool,
    url: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
) -> DownloadResult:
    """Download, check and unpack data set ``name`` into ``dest``; all or nothing.

    Parameters
    ----------
    accept_licence:
        The licence was shown and accepted; False refuses before anything is written.
    url:
        Fetch from here instead (see :func:`source_url`).
    progress:
        Called with (bytes so far, total or None) after every chunk.

    Raises
    ------
    ConfigError
        For an unknown set, a licence not accepted, or a destination already holding the set.
    DataError
        When the transfer fails or the archive does not check out; nothing is kept.
    """
    if name not in SOURCES:
        raise ConfigError(UNKNOWN_SET.format(name=name, known=", ".join(SOURCES)))
    source = SOURCES[name]
    if not accept_licence:
        raise ConfigError(NOT_ACCEPTED.format(name=name))
    target = source_url(source, url)
    dest = Path(dest)
    archive, folder = dest / source.filename, dest / source.folder
    for path in (archive, folder):
        if path.exists():
            raise ConfigError(ALREADY_THERE.format(path=path))
    dest.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{source.filename}.", suffix=".part", dir=dest)
    unpacked = None
    try:
        with os.fdopen(fd, "wb") as out:
            digest, size = _fetch(target, out, progress, timeout, chunk_size)
        checked = _check(source, target, Path(partial), digest, size)
        unpacked = Path(tempfile.mkdtemp(prefix=f".{source.folder}.", dir=dest))
        _unpack(Path(partial), unpacked, target)
        inner = unpacked / source.folder
        os.replace(inner if inner.is_dir() else unpacked, folder)
        os.replace(partial, archive)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    finally:
        if unpacked is not None and unpacked.exists():
            shutil.rmtree(unpacked, ignore_errors=True)
    return DownloadResult(name, target, archive, folder, digest, size, checked)


def _fetch(url: str, out, progress, timeout: float, chunk_size: int) -> tuple[str, int]:  # noqa: ANN001
    """Stream ``url`` into ``out``; return its SHA-256 and size. A short body is a failure."""
    digest, size, total = hashlib.sha256(), 0, None
    if not url.startswith(("http://", "https://")):
        raise DataError(TRANSFER_FAILED.format(url=url, problem="only http and https URLs are fetched"))
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http and https only, above)
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            while block := response.read(chunk_size):
                out.write(block)
                digest.update(block)
                size += len(block)
                if progress is not None:
                    progress(size, total)
    except (urllib.error.URLError, OSError, ValueError) as err:
        problem = getattr(err, "reason", None) or err
        raise DataError(TRANSFER_FAILED.format(url=url, problem=problem)) from err
    if total is not None and size != total:
        raise DataError(TRANSFER_FAILED.format(url=url, problem=f"the server closed after {size:,} of {total:,} bytes"))
    return digest.hexdigest(), size


def _check(source: Source, url: str, path: Path, digest: str, size: int) -> tuple[str, ...]:
    """The published checksum and size when recorded, and the archive's integrity always."""
    checked = []
    if source.sha256 is not None:
        if digest != source.sha256:
            raise DataError(CHECKSUM_MISMATCH.format(url=url, got=digest, expected=source.sha256))
        checked.append("sha256")
    if source.size is not None:
        if size != source.size:
            raise DataError(SIZE_MISMATCH.format(url=url, got=size, expected=source.size))
        checked.append("size")
    try:
        if source.filename.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
                if bad is not None:
                    raise DataError(BROKEN_ARCHIVE.format(url=url, problem=f"member {bad} fails its CRC"))
        else:
            with tarfile.open(path) as archive:
                for member in archive:
                    if member.isfile():
                        archive.extractfile(member).read()  # type: ignore[union-attr]
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        raise DataError(BROKEN_ARCHIVE.format(url=url, problem=err)) from err
    return (*checked, "archive")


def _unpack(path: Path, into: Path, url: str) -> None:
    """Unpack a checked archive; members that would land outside ``into`` are refused."""
    try:
        if path.name.endswith(".zip") or zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if not (into / member).resolve().is_relative_to(into.resolve()):
                        raise DataError(BROKEN_ARCHIVE.format(url=url, problem=f"member {member} points outside the folder"))
                archive.extractall(into)
        else:
            with tarfile.open(path) as archive:
                archive.extractall(into, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as err:
        raise DataError(BROKEN_ARCHIVE.format(url=url, problem=err)) from err
