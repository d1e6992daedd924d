"""Print the HTML lineage report to PDF with the local Chromium, offline.

The page is already self-contained (inline CSS and plots, no script, no external
URL), so a headless Chromium printing the written file reproduces exactly what a
reader sees in a browser, with a bookmark per section. No network is used: the
file is opened through ``file://``, Chromium's background services are switched
off and every host name resolves to nothing, so a page that tried to fetch
anything would print without it rather than reach out.

The browser is the one named by ``RECGOV_CHROMIUM`` (a path or a command name),
else the first of ``chromium``, ``chromium-browser`` and ``google-chrome`` on
``PATH``. A missing browser, a failed print or a print that outlives its timeout
raises :class:`PdfError`, a :class:`~recommender.errors.ConfigError`: the command
line reports it as one line with exit code 2.

Example
-------
>>> html_to_pdf(Path("report.html"), Path("report.pdf"))             # doctest: +SKIP
PosixPath('report.pdf')
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from recommender.errors import ConfigError

__all__ = [
    "BROWSER_ENV",
    "BROWSER_NAMES",
    "DEFAULT_TIMEOUT",
    "PdfError",
    "find_browser",
    "html_to_pdf",
]

BROWSER_ENV = "RECGOV_CHROMIUM"
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")
DEFAULT_TIMEOUT = 60.0
"""Seconds a print may take; a report prints in about a second."""

BROWSER_NOT_FOUND = (
    f"no Chromium found to print the PDF: set {BROWSER_ENV} to the browser's path, "
    "or install one of {names} (Debian: apt-get install chromium)"
)
ENV_BROWSER_NOT_FOUND = (
    f"{BROWSER_ENV} is set to {{value!r}}, which is not an executable file nor a command on PATH: "
    f"point it at a Chromium binary, or unset it to search PATH for {', '.join(BROWSER_NAMES)}"
)
PRINT_FAILED = "Chromium ({browser}) could not print {html} to PDF: {reason}"
PRINT_TIMED_OUT = "Chromium ({browser}) did not finish printing {html} to PDF within {timeout:g} s"

# Chromium's headless printing flags. The sandbox needs user namespaces that
# containers and CI runners (often root) rarely grant; what is printed is our own
# script-free page, opened from a local file with name resolution switched off.
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--no-pdf-header-footer",
    "--generate-pdf-document-outline",
)


class PdfError(ConfigError):
    """The PDF could not be made: no local Chromium, or it failed or timed out."""


def find_browser() -> Path:
    """The Chromium to print with: ``RECGOV_CHROMIUM`` if set, else the first known name on ``PATH``.

    A set but unusable ``RECGOV_CHROMIUM`` is an error rather than a reason to
    fall back: the operator asked for that browser.
    """
    value = os.environ.get(BROWSER_ENV, "").strip()
    if value:
        candidate = Path(value).expanduser()
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
        found = shutil.which(value) if os.sep not in value else None
        if found is None:
            raise PdfError(ENV_BROWSER_NOT_FOUND.format(value=value))
        return Path(found)
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found is not None:
            return Path(found)
    raise PdfError(BROWSER_NOT_FOUND.format(names=", ".join(BROWSER_NAMES)))


def _reason(stderr: str, returncode: int) -> str:
    """The last line of Chromium's stderr worth showing (its D-Bus and launcher noise left out)."""
    noise = ("dbus", "Fontconfig", "unexpected operator", "bytes written to file")
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not any(n in line for n in noise)]
    detail = lines[-1] if lines else "no message"
    return f"exit code {returncode}: {detail}" if returncode else detail


def html_to_pdf(
    html: Path,
    pdf: Path,
    *,
    browser: Path | str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Print the HTML file ``html`` to ``pdf`` with headless Chromium; return ``pdf``.

    ``browser`` defaults to :func:`find_browser`. Chromium runs with a fresh
    profile and prints into a temporary directory; the result replaces ``pdf``
    (atomically, through a file beside it) only once it is a PDF: a failed or
    interrupted print never leaves a truncated file behind. Raises
    :class:`PdfError` when the browser is missing, fails, or runs past
    ``timeout`` seconds (the browser and its child processes are then killed).
    """
    executable = Path(browser) if browser is not None else find_browser()
    source = Path(html).resolve()
    if not source.is_file():
        raise PdfError(f"the HTML report {str(html)!r} to print does not exist")
    target = Path(pdf)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="recgov-chromium-") as profile:
        partial = Path(profile) / "print.pdf"
        command = [
            str(executable),
            *_FLAGS,
            f"--user-data-dir={Path(profile) / 'profile'}",
            f"--print-to-pdf={partial}",
            source.as_uri(),
        ]
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,  # its own process group: a timeout kills the renderer children too
            )
        except OSError as err:
            raise PdfError(PRINT_FAILED.format(browser=executable, html=html, reason=err.strerror or err)) from err
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as err:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended between the timeout and the kill
                pass
            process.communicate()
            raise PdfError(PRINT_TIMED_OUT.format(browser=executable, html=html, timeout=timeout)) from err
        if process.returncode != 0 or not partial.is_file():
            reason = _reason(stderr, process.returncode)
            raise PdfError(PRINT_FAILED.format(browser=executable, html=html, reason=reason))
        with partial.open("rb") as produced:
            if produced.read(5) != b"%PDF-":
                raise PdfError(PRINT_FAILED.format(browser=executable, html=html, reason="the output is not a PDF"))
        staged = target.with_name(f".{target.name}.partial")
        shutil.copyfile(partial, staged)
        os.replace(staged, target)
    return target
