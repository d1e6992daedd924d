"""``recgov data``: published layouts, bot thresholds, and downloads from a local server (never the internet)."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from governance.cli import app
from recommender.datasets import download as downloads

runner = CliRunner()


def invoke(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


@pytest.fixture()
def ml1m(tmp_path: Path) -> Path:
    d = tmp_path / "ml-1m"
    d.mkdir()
    (d / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    return d


def test_validate_reads_a_published_layout(ml1m: Path) -> None:
    result = invoke("data", "validate", str(ml1m), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["dataset"]["name"] == "movielens-1m" and doc["n_rows"] == 3 and doc["ok"]
    assert doc["parameters"]["bots"]["min_events"] == 20


def test_a_broken_file_is_one_located_line_and_exit_2(ml1m: Path) -> None:
    (ml1m / "ratings.dat").write_text("1::1193::5::978300760\n1::661::x::978302109\n")
    result = runner.invoke(app, ["data", "validate", str(ml1m)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {ml1m / 'ratings.dat'} line 2, column rating: expected a number in 1..5, found 'x'"


def test_format_names_the_layout_and_an_unknown_one_is_refused(ml1m: Path) -> None:
    result = runner.invoke(app, ["data", "validate", str(ml1m), "--format", "movielens-100k"])
    assert result.exit_code == 2 and "u.data: no such file" in result.stderr
    result = runner.invoke(app, ["data", "validate", str(ml1m), "--format", "imdb"])
    assert result.exit_code == 2 and "unknown data format 'imdb'" in result.stderr


def test_bot_thresholds_from_the_command_line(ml1m: Path) -> None:
    result = invoke("data", "validate", str(ml1m), "--json", "--bots", "min_events=5,regular_cv=0.3")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["parameters"]["bots"]["regular_cv"] == 0.3
    result = runner.invoke(app, ["data", "validate", str(ml1m), "--bots", "catalog_share=2"])
    assert result.exit_code == 2 and "bot rules: catalog_share: Input should be less than or equal to 1" in result.stderr


# -- downloads ------------------------------------------------------------------


def _archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("ml-100k/u.data", "1\t10\t4\t881250949\n2\t10\t3\t891717742\n")
    return buffer.getvalue()


ARCHIVE = _archive()


class _Server:
    def __init__(self) -> None:
        self.body = ARCHIVE
        self.cut_at: int | None = None  # close the connection after this many bytes
        self.requests = 0


@pytest.fixture()
def server() -> Iterator[tuple[str, _Server]]:
    state = _Server()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            state.requests += 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body if state.cut_at is None else state.body[: state.cut_at])
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_checks_and_unpacks_from_a_mirror(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = server
    monkeypatch.setenv("RECGOV_DATA_MIRROR", base + "/mirror")
    result = invoke("data", "download", "movielens-100k", "--dest", str(tmp_path), "--accept-licence", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["url"] == base + "/mirror/ml-100k.zip" and doc["checked"] == ["archive"]
    assert doc["sha256"] == hashlib.sha256(ARCHIVE).hexdigest()
    assert (tmp_path / "ml-100k" / "u.data").exists() and (tmp_path / "ml-100k.zip").read_bytes() == ARCHIVE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-100k", "ml-100k.zip"]  # no temporary file left
    assert "GroupLens" in result.stderr  # the licence is shown even when accepted in advance
    validated = invoke("data", "validate", str(tmp_path / "ml-100k"), "--json")
    assert validated.exit_code == 0 and json.loads(validated.stdout)["n_rows"] == 2


def test_a_checksum_mismatch_keeps_nothing(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = server
    source = downloads.SOURCES["movielens-100k"]
    monkeypatch.setitem(downloads.SOURCES, "movielens-100k", replace(source, sha256="0" * 64))
    result = runner.invoke(app, ["data", "download", "movielens-100k", "--dest", str(tmp_path), "--accept-licence", "--url", base + "/x.zip"])
    assert result.exit_code == 2
    assert f"does not match the published {'0' * 64}; the download was discarded" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_download_keeps_nothing(server, tmp_path: Path) -> None:
    base, state = server
    state.cut_at = len(ARCHIVE) // 2
    result = runner.invoke(app, ["data", "download", "movielens-100k", "--dest", str(tmp_path), "--accept-licence", "--url", base + "/x.zip"])
    assert result.exit_code == 2
    assert "the download failed" in result.stderr and "nothing was kept" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_refused_licence_writes_nothing_and_fetches_nothing(server, tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "data"
    result = runner.invoke(app, ["data", "download", "movielens-100k", "--dest", str(dest), "--url", base + "/x.zip"], input="n\n")
    assert result.exit_code == 2
    assert "error: the licence of movielens-100k was not accepted; nothing was downloaded" in result.stderr
    assert not dest.exists() and state.requests == 0
    accepted = runner.invoke(app, ["data", "download", "movielens-100k", "--dest", str(dest), "--url", base + "/x.zip"], input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert (dest / "ml-100k" / "u.data").exists()


def test_a_broken_archive_keeps_nothing(server, tmp_path: Path) -> None:
    base, state = server
    state.body = b"PK\x03\x04 not really a zip"
    result = runner.invoke(app, ["data", "download", "movielens-100k", "--dest", str(tmp_path), "--accept-licence", "--url", base + "/x.zip"])
    assert result.exit_code == 2 and "the archive is broken" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_set_lists_the_known_ones() -> None:
    result = runner.invoke(app, ["data", "download", "netflix-prize", "--accept-licence"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: unknown data set 'netflix-prize'; the sets that can be downloaded are {', '.join(downloads.SOURCES)}"


def test_a_tar_archive_is_checked_and_unpacked(server, tmp_path: Path) -> None:
    import tarfile

    base, state = server
    buffer = io.BytesIO()
    plays = b"user_000001\t2009-05-04T23:08:57Z\ta1\tArtist\tt1\tTrack\n"
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("lastfm-dataset-1K/userid-timestamp-artid-artname-traid-traname.tsv")
        info.size = len(plays)
        tar.addfile(info, io.BytesIO(plays))
    state.body = buffer.getvalue()
    result = invoke("data", "download", "lastfm-1k", "--dest", str(tmp_path), "--accept-licence", "--url", base + "/l.tar.gz")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "lastfm-dataset-1K"
    validated = invoke("data", "validate", str(folder), "--json")
    assert validated.exit_code == 0 and json.loads(validated.stdout)["dataset"]["name"] == "lastfm-1k"
