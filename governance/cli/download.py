"""``recgov data download``: a published data set from its official source, licence first.

The licence is printed and must be accepted (a prompt at a terminal, or
``--accept-licence``) before anything is written; the library call
(:func:`recommender.datasets.download.download`) then streams, checks and
unpacks the archive all or nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from governance.cli._common import console, emit_json, err_console, fail, progress_enabled, user_errors

__all__ = ["download_command"]

REFUSED = "the licence of {name} was not accepted; nothing was downloaded"


def download_command(
    name: Annotated[str, typer.Argument(help="The data set: movielens-100k, movielens-1m, movielens-20m/25m/32m, movielens-latest-small, lastfm-1k, lastfm-360k, book-crossing.", show_default=False)],
    dest: Annotated[Path, typer.Option("--dest", help="The folder to put the archive and the unpacked set in.")] = Path("data"),
    accept_licence: Annotated[bool, typer.Option("--accept-licence", help="Accept the set's licence without a prompt (it is still printed).")] = False,
    url: Annotated[Optional[str], typer.Option("--url", help="Fetch from this URL instead (default: $RECGOV_DATA_MIRROR/<file>, else the official source).", show_default=False)] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Download a published data set, check it and unpack it, after its licence is accepted."""
    from tqdm.auto import tqdm

    from recommender.datasets.download import SOURCES, UNKNOWN_SET, download, source_url

    if name not in SOURCES:
        raise fail(UNKNOWN_SET.format(name=name, known=", ".join(SOURCES)))
    source = SOURCES[name]
    err_console.print(f"[bold]{name}[/] licence ({source.licence_url}):\n{source.licence}", highlight=False, soft_wrap=True)
    if not accept_licence:
        try:
            accepted = not json_output and typer.confirm("Do you accept this licence?", default=False, err=True)
        except typer.Abort:  # no answer (end of input)
            accepted = False
        if not accepted:
            raise fail(REFUSED.format(name=name))
    target = source_url(source, url)
    show = progress_enabled(json_output)
    with user_errors(), tqdm(unit="B", unit_scale=True, desc=source.filename, disable=not show) as bar:

        def advance(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = download(name, dest, accept_licence=True, url=target, progress=advance)
    if json_output:
        emit_json(result.to_dict())
        return
    checks = ", ".join(result.checked)
    console.print(f"{name}: {result.size:,} bytes from {result.url} (checked: {checks}); sha256 {result.sha256}", highlight=False, soft_wrap=True)
    console.print(f"unpacked to {result.folder}: try recgov data validate {result.folder} --format {source.format}", highlight=False, soft_wrap=True)
