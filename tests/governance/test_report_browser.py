"""The lineage report as a reader gets it: rendered by a real headless Chromium, and printed to PDF.

The page is built the way ``test_report.py`` builds it (a trained, audited model,
consent records, an erasure, a signed checkpoint, then ``recgov report``), served
from a local ``http.server`` thread and opened with Playwright driving the
system's Chromium (Playwright's own browser download needs a network).

No Chromium or no Playwright skips these tests, except under ``CI=true``, where
it fails them: CI installs Chromium (``.ci/run``) so that they always run there.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from report_store import build_report_store, run_cli
from typer.testing import CliRunner

from governance.cli import app
from governance.report.pdf import BROWSER_ENV, PRINT_TIMED_OUT, PdfError, find_browser, html_to_pdf

SUBJECTS = ("browser-subject-carol-3", "browser-subject-dave-5")
SECTIONS = (
    "1. The system and its purpose",
    "2. DSA Art. 27 disclosure in force",
    "3. Policy pack",
    "4. Data",
    "5. Consent basis and data minimization",
    "6. Audit results",
    "7. Energy and emissions",
    "8. Escalations of harmful content",
    "9. Erasure and other data subject requests",
    "10. Audit trail and how to verify it",
)
DSA_SECTIONS = (
    "Executive summary",
    "11. Controller, data protection officer and model card",
    "12. Timeliness of subject requests and notice-and-action",
    "13. The option not based on profiling (DSA Art. 38)",
    "14. Systemic risks and their mitigation (DSA Art. 34 and 35)",
    "15. Monitoring in service, retrains and retirement",
)
PLOT_HEADINGS = ("Group metrics with confidence intervals", "Exposure by provider group", "Popularity")
VIEWPORT = {"width": 1280, "height": 900}
EVERY_PLOT = "every-plot.html"
# Chromium's flags for a run that must not touch the network (Playwright adds its own headless flags).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable(reason: str) -> NoReturn:
    """Skip for lack of a browser, but fail under CI, which must run these tests (as conftest does for PostgreSQL)."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


_run = run_cli


@pytest.fixture(scope="module")
def chromium() -> Path:
    """The local Chromium, found as ``recgov report --pdf`` finds it."""
    try:
        return find_browser()
    except PdfError as err:
        _unavailable(f"no local Chromium for the browser tests: {err}")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A store with a trained, audited model, consent records, an erasure, a checkpoint and its HTML report."""
    root = tmp_path_factory.mktemp("report-browser")
    db = root / "recgov.db"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RECGOV_HOME", str(root / "home"))
        for name in ("RECGOV_SIGNING_KEY_PATH", "RECGOV_INSTALLATION_KEY", "RECGOV_ACTOR"):
            env.delenv(name, raising=False)
        env.setenv("RECGOV_DATABASE_URL", f"sqlite:///{db}")
        runner = CliRunner()
        version = build_report_store(root, SUBJECTS)
        site = root / "site"
        site.mkdir()
        html = site / "report.html"
        _run(runner, "report", version, "--out", str(html), "--json")
        yield {"root": root, "db": db, "url": f"sqlite:///{db}", "version": version, "html": html}


def _pseudonyms(db: Path) -> set[str]:
    """Every subject id, pseudonym and secret the store holds."""
    with sqlite3.connect(db) as connection:
        found: set[str] = set()
        for sql in (
            "SELECT subject FROM consent_records",
            "SELECT subject FROM subject_requests",
            "SELECT subject FROM trail_events WHERE subject IS NOT NULL",
            "SELECT lookup FROM subject_secrets",
            "SELECT secret FROM subject_secrets",
        ):
            found |= {row[0] for row in connection.execute(sql)}
    return found


class _Recorder(http.server.SimpleHTTPRequestHandler):
    """Serves the report's directory and records every path asked for."""

    requested: list[str]

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.requested.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        """Keep the test output clean."""


@pytest.fixture(scope="module")
def served(built: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The report served over http://127.0.0.1 from a thread; ``requested`` lists the paths fetched."""
    requested: list[str] = []
    handler = type("Handler", (_Recorder,), {"requested": requested})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(built["html"].parent))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"url": f"http://127.0.0.1:{server.server_port}/{built['html'].name}", "requested": requested}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Any]:
    """One headless Chromium for the module, driven by Playwright."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as err:
        _unavailable(f"Playwright is not installed ({err}): pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, timeout=30_000)
        except Error as err:
            _unavailable(f"Chromium at {chromium} does not start under Playwright: {str(err).splitlines()[0]}")
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def page(browser: Any, served: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The report, loaded; ``requests`` holds every URL the page asked for, whatever its scheme or host."""
    context = browser.new_context(viewport=VIEWPORT)
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    opened = context.new_page()
    response = opened.goto(served["url"], wait_until="load")
    assert response is not None and response.ok, response
    try:
        yield {"page": opened, "requests": requests, "url": served["url"], "requested": served["requested"]}
    finally:
        context.close()


def test_screenshot_shows_a_rendered_page(page: dict[str, Any], tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "report.png"
    page["page"].screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width == VIEWPORT["width"]
    assert height > 3 * VIEWPORT["height"], "the full page is several screens long"
    with Image.open(shot) as image:
        assert image.convert("RGB").getcolors(maxcolors=64) is None, "a blank or flat page, not a rendered report"


def test_every_section_heading_is_visible(page: dict[str, Any]) -> None:
    report = page["page"]
    for heading in (*SECTIONS, *DSA_SECTIONS):
        assert report.get_by_role("heading", level=2, name=heading, exact=True).is_visible(), heading
    for heading in PLOT_HEADINGS:
        assert report.get_by_role("heading", level=3, name=heading, exact=True).is_visible(), heading
    ids = report.eval_on_selector_all("h2", "hs => hs.map(h => h.id)")
    assert ids == [
        "summary",
        "system",
        "disclosure",
        "policy",
        "data",
        "consent",
        "audits",
        "carbon",
        "escalations",
        "requests",
        "trail",
        "accountability",
        "timeliness",
        "non-profiling",
        "systemic-risks",
        "lifecycle",
    ]


def test_every_plot_is_decoded_and_visible(page: dict[str, Any], built: dict[str, Any]) -> None:
    report = page["page"]
    html = built["html"].read_text(encoding="utf-8")
    images = report.locator("figure.plot img")
    assert images.count() >= 1
    assert images.count() == html.count("<img ") == report.locator("img").count()
    for index in range(images.count()):
        image = images.nth(index)
        image.scroll_into_view_if_needed()
        assert image.is_visible(), image.get_attribute("alt")
        natural = image.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
        assert natural[0] and natural[1] > 100 and natural[2] > 50, (image.get_attribute("alt"), natural)
        box = image.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 50
    kinds = set(report.eval_on_selector_all("figure.plot", "fs => fs.map(f => f.dataset.plot)"))
    assert kinds and kinds <= {"groups", "exposure", "popularity", "carbon"}


def _with_every_plot(built: dict[str, Any]) -> dict[str, Any]:
    """The stored report document plus evidence the baseline pack does not produce: each kind of plot is drawn."""
    from audits import open_store
    from governance.report import collect

    store = open_store(built["url"])
    try:
        with store.session() as session:
            document = collect(session, built["version"])
    finally:
        store.close()
    common = {"section": "fairness", "severity": "warn", "status": "pass", "message": "ok", "legal_reference": None}
    document["audit_runs"][-1]["results"] += [
        {
            **common,
            "rule_id": "gap-gender",
            "check": "consumer_gap",
            "value": 0.01,
            "threshold": "<= 0.05",
            "evidence": {
                "attribute": "gender",
                "metric": "ndcg",
                "groups": {"f": {"value": 0.2, "ci": [0.15, 0.25]}, "m": {"value": 0.21, "ci": [0.17, 0.26]}},
            },
        },
        {
            **common,
            "rule_id": "exposure-providers",
            "check": "exposure_share",
            "value": 0.3,
            "threshold": ">= 0.25",
            "evidence": {"before": {"small": 0.1, "large": 0.9}, "after": {"small": 0.3, "large": 0.7}},
        },
        {
            **common,
            "rule_id": "popularity",
            "check": "popularity_bias",
            "value": 1.2,
            "threshold": "<= 2",
            "evidence": {"arp_ratio": 1.2, "arp_ratio_ci": [1.1, 1.3], "long_tail_share": 0.3},
        },
    ]
    document["training_run"].update(energy_kwh=0.002, emissions_kg=0.0007, carbon_method="codecarbon")
    return document


def test_every_kind_of_plot_renders(browser: Any, served: dict[str, Any], built: dict[str, Any]) -> None:
    from governance.report import render_html

    (built["html"].parent / EVERY_PLOT).write_text(render_html(_with_every_plot(built)), encoding="utf-8")
    url = served["url"].rsplit("/", 1)[0] + "/" + EVERY_PLOT
    context = browser.new_context(viewport=VIEWPORT)
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    try:
        report = context.new_page()
        report.goto(url, wait_until="load")
        drawn = report.eval_on_selector_all(
            "figure.plot",
            """fs => fs.map(f => {
                const img = f.querySelector("img"), box = img.getBoundingClientRect();
                return [f.dataset.plot, img.complete && img.naturalWidth > 100 && box.width > 100 && box.height > 50];
            })""",
        )
        assert {kind for kind, ok in drawn if ok} == {"groups", "exposure", "popularity", "carbon"}, drawn
        assert all(ok for _, ok in drawn), drawn
        assert report.get_by_role("img", name="exposure-providers: exposure before/after re-ranking").is_visible()
        assert requests == [url]
    finally:
        context.close()


def test_rendered_page_names_no_subject_nor_pseudonym(page: dict[str, Any], built: dict[str, Any]) -> None:
    report = page["page"]
    text = report.inner_text("body")
    dom = report.content()  # attributes too (alt, title), as the browser holds them
    assert "Lineage report for model" in text and built["version"] in text
    for subject in SUBJECTS:
        assert subject not in text and subject not in dom
    secrets = _pseudonyms(built["db"])
    assert len(secrets) >= 2  # the store does hold pseudonyms: the check below is not vacuous
    for secret in secrets:
        assert secret[:16] not in text and secret[:16] not in dom  # not even a shortened pseudonym
    assert re.search(r"erasure\t0\t0\t1\t0", text), "the erasure shows as a count"


def test_page_makes_no_request_beyond_itself(page: dict[str, Any]) -> None:
    assert page["requests"] == [page["url"]]
    # the server saw the page once; Chromium's own favicon probe and the other test page aside, nothing else
    served = [path for path in page["requested"] if path not in ("/favicon.ico", f"/{EVERY_PLOT}")]
    assert served == ["/report.html"]


def _report_args(built: dict[str, Any], html: Path) -> list[str]:
    """``recgov report`` of the built model into ``html``."""
    return ["report", built["version"], "--database-url", built["url"], "--out", str(html)]


def _pdf_strings(data: bytes, key: bytes) -> list[str]:
    """The values of ``key`` (e.g. ``/Title``) in an uncompressed PDF dictionary: literal or UTF-16 hex strings."""
    escapes = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}

    def unescape(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        return bytes([int(code, 8)]) if code[:1].isdigit() else escapes.get(code, code)

    found = []
    for literal, hexed in re.findall(re.escape(key) + rb"\s*(?:\(((?:[^\\)]|\\.)*)\)|<([0-9A-Fa-f]*)>)", data):
        if hexed:
            raw = bytes.fromhex(hexed.decode("ascii"))
            found.append(raw[2:].decode("utf-16-be") if raw[:2] == b"\xfe\xff" else raw.decode("latin-1"))
        else:
            found.append(re.sub(rb"\\([0-7]{1,3}|.)", unescape, literal).decode("latin-1"))
    return found


def test_pdf_from_the_cli_has_pages_and_a_bookmark_per_section(
    chromium: Path, built: dict[str, Any], tmp_path: Path
) -> None:
    html, pdf = tmp_path / "report.html", tmp_path / "out" / "report.pdf"
    summary = json.loads(
        _run(
            CliRunner(),
            "report",
            built["version"],
            "--database-url",
            built["url"],
            "--out",
            str(html),
            "--pdf",
            str(pdf),
            "--json",
        )
    )
    assert summary["html"] == str(html) and summary["pdf"] == str(pdf)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    pages = len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", data))
    assert pages >= 2, "the report runs over several pages"
    sizes = {tuple(round(float(x)) for x in box.split()) for box in re.findall(rb"/MediaBox\s*\[([^\]]*)\]", data)}
    assert sizes == {(0, 0, 595, 842)}, "A4 pages, as the page's print rules ask"
    titles = _pdf_strings(data, b"/Title")
    assert f"Lineage report: {built['version']}" in titles  # the document title
    for heading in (*SECTIONS, *DSA_SECTIONS, *PLOT_HEADINGS):
        assert heading in titles, heading  # the outline: one bookmark per heading
    assert not list(pdf.parent.glob("*.partial"))
    if shutil.which("pdftotext"):  # poppler-utils, when installed: the text itself
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        assert "1. The system and its purpose" in text
        assert not any(subject in text for subject in SUBJECTS)


def test_pdf_must_name_a_pdf_file(built: dict[str, Any], tmp_path: Path) -> None:
    done = CliRunner().invoke(
        app,
        [*_report_args(built, tmp_path / "r.html"), "--pdf", str(tmp_path / "r.html.txt")],
        catch_exceptions=False,
    )
    assert done.exit_code == 2
    assert "--pdf must name a .pdf file" in done.stderr
    assert not (tmp_path / "r.html").exists()


def test_missing_browser_exits_2_with_one_line(
    built: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-chromium"
    monkeypatch.setenv(BROWSER_ENV, str(missing))
    done = CliRunner().invoke(
        app,
        [*_report_args(built, tmp_path / "r.html"), "--pdf", str(tmp_path / "r.pdf")],
        catch_exceptions=False,
    )
    assert done.exit_code == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: {BROWSER_ENV} is set to '{missing}', which is not an executable file")
    assert "Traceback" not in done.output
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.pdf").exists()  # refused before any work


def test_failing_browser_exits_2_and_leaves_the_html(
    built: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in browser that fails as Chromium does without a display: one line, exit 2, the HTML kept."""
    failing = tmp_path / "chromium"
    failing.write_text("#!/bin/sh\necho 'cannot open display' >&2\nexit 3\n")
    failing.chmod(0o755)
    monkeypatch.setenv(BROWSER_ENV, str(failing))
    html, pdf = tmp_path / "r.html", tmp_path / "r.pdf"
    done = CliRunner().invoke(
        app,
        [*_report_args(built, html), "--pdf", str(pdf)],
        catch_exceptions=False,
    )
    assert done.exit_code == 2
    assert done.stderr.strip() == (
        f"error: Chromium ({failing}) could not print {html} to PDF: exit code 3: cannot open display "
        f"(the HTML report was written to {html})"
    )
    assert html.is_file() and not pdf.exists()


def _running(marker: str) -> list[int]:
    """Ids of the live processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # the process ended while being read
            continue
        if marker in command and state != "Z":  # a zombie is dead, only not yet reaped
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads processes from /proc")
def test_a_hung_browser_is_killed_with_its_children_at_the_timeout(built: dict[str, Any], tmp_path: Path) -> None:
    """A stand-in that never prints (Chromium cannot be made to hang on demand), with a child like Chromium's."""
    marker = f"{60 + time.time_ns() % 1_000_000 / 1_000_000:.6f}"  # a sleep length no other process uses
    hung = tmp_path / "chromium"
    hung.write_text(f"#!/bin/sh\nsleep {marker} &\nwait\n")
    hung.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(PdfError) as caught:
        html_to_pdf(built["html"], tmp_path / "r.pdf", browser=hung, timeout=0.5)
    assert time.monotonic() - started < 10
    assert str(caught.value) == PRINT_TIMED_OUT.format(browser=hung, html=built["html"], timeout=0.5)
    assert not (tmp_path / "r.pdf").exists()
    assert _running(f"sleep {marker}") == [], "the browser's children outlived the timeout"
