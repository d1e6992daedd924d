"""``recgov research-package MODEL_VERSION --out DIR``: the data-access package for vetted researchers (DSA Art. 40).

A thin command over :func:`governance.report.research.write_research_package`:
pseudonymised, minimised aggregates and slates of the model's served lists,
cells under ``--min-group`` distinct subjects suppressed, the lists of subjects
whose consent does not cover ``analytics`` left out and counted, with a
datasheet and a manifest, and the package's lineage on the trail.

Exit codes: 0 written, 2 bad usage or input (unknown model version, a folder
that is a file, not empty or not writable, ``--min-group`` under 2, a bad
date, unreadable ``--data``, unreachable database).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from governance.cli._common import console, emit_json, fail
from governance.cli.store import DatabaseUrl, JsonOutput, store_errors

__all__ = ["register", "research_package_command"]

BAD_DATE = "{option} must be an ISO 8601 date or time such as 2026-01-01. Got {value!r} instead."


def _moment(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 date or time (UTC when no zone is given), or None."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise fail(BAD_DATE.format(option=option, value=value)) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def research_package_command(
    model_version: Annotated[str, typer.Argument(help="The model version id.", metavar="MODEL_VERSION")],
    out: Annotated[Path, typer.Option("--out", help="A new (or empty) folder to write the package into.", show_default=False)],
    since: Annotated[str | None, typer.Option("--since", help="First moment included (ISO 8601; UTC unless a zone is given).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="First moment excluded (ISO 8601; UTC unless a zone is given).")] = None,
    min_group: Annotated[
        int, typer.Option("--min-group", help="Minimum distinct subjects in a published cell (k-anonymity threshold, at least 2).")
    ] = 10,
    data: Annotated[
        str | None,
        typer.Option("--data", help="DATA holding the item table (provider_group, categories) for the exposure files.", show_default=False),
    ] = None,
    database_url: DatabaseUrl = None,
    json_output: JsonOutput = False,
) -> None:
    """Write the researchers' package of MODEL_VERSION's served lists: aggregates, slates, datasheet, manifest."""
    from audits import open_store
    from governance.cli.core import load_dataset
    from governance.cli.deploy_policy import packs_dir
    from governance.report.research import MIN_GROUP_TOO_SMALL, discard_package, write_research_package

    if min_group < 2:  # before any data is loaded
        raise fail(MIN_GROUP_TOO_SMALL.format(value=min_group))
    start, end = _moment(since, "--since"), _moment(until, "--until")
    fresh = not out.exists() or (out.is_dir() and not any(out.iterdir()))  # only then may a failure remove what is there
    with store_errors():
        items = load_dataset(data, None, json_output=json_output).items if data else None
        store = open_store(database_url)
        try:
            with store.session() as session:  # the trail event commits here, after the files are written
                package = write_research_package(
                    session, model_version, out, items=items, since=start, until=end, min_group=min_group, packs_dir=packs_dir()
                )
        except BaseException:
            if fresh:
                discard_package(out)  # fail closed: no package goes out without its lineage on the trail
            raise
        finally:
            store.close()
    summary = {
        "model_version": model_version,
        "out": str(out),
        "files": package.files,
        "rows": package.rows,
        "suppressed": package.suppressed,
        "min_group": min_group,
        "consent": package.consent,
        "trail_seq": package.trail_seq,
    }
    if json_output:
        emit_json(summary)
        return
    console.print(f"wrote the research package of {model_version} to {out}: {', '.join([*package.files, 'manifest.json'])}", highlight=False, soft_wrap=True)
    console.print(
        f"cells under {min_group} subjects suppressed: "
        + ", ".join(f"{name} {n}" for name, n in package.suppressed.items())
        + f"; recorded on the trail as event {package.trail_seq}",
        highlight=False,
        soft_wrap=True,
    )
    refused = package.consent["excluded"]["analytics_consent_not_in_force"]
    console.print(
        f"left out, consent does not cover analytics ({package.consent['model']}): "
        f"{refused['lists']} list(s) of {refused['subjects']} subject(s)",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add ``recgov research-package``."""
    app.command("research-package")(research_package_command)
