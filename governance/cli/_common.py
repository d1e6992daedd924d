"""What every command shares: output as JSON or tables, errors as one line, exit codes.

Exit codes (documented in the README):

* ``0`` success (for ``gate``: the gate passed)
* ``1`` a blocking finding (the gate failed, the trail is broken)
* ``2`` bad usage or bad input; the message says where and what
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from pydantic import ValidationError
from rich.console import Console

from governance.located import PolicyError
from governance.policy import LoadedPack, load_pack
from governance.packs import resolve_pack
from recommender.errors import RecgovError

__all__ = ["EXIT_OK", "EXIT_FINDING", "EXIT_USAGE", "console", "err_console", "fail", "emit_json", "opened_store", "user_errors", "progress_enabled", "load_or_fail", "SubjectArg", "RequestedSubjectArg", "checked_subject_id", "checked_requested_subject", "OptionalPackOpt", "RequiredPackOpt", "short_pseudonym"]

EXIT_OK = 0
EXIT_FINDING = 1
EXIT_USAGE = 2

def _width() -> int | None:
    # Rich falls back to 80 columns when output is not a terminal, which wraps
    # hashes and table cells in logs; CI logs and pipes get a wide page instead.
    return None if sys.stdout.isatty() else 160


console = Console(soft_wrap=False, width=_width())
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

F = TypeVar("F", bound=Callable[..., Any])


try:  # typer 0.20+ runs commands on its own copy of click: the running command's context is kept there
    from typer._click.globals import get_current_context as _current_context
except ImportError:  # pragma: no cover - an older typer runs them on click itself
    from click import get_current_context as _current_context

_EMITTED = "recgov.json_emitted"
"""Set in the command's click context once it has printed its JSON document (stdout then holds one document)."""


def _json_requested() -> bool:
    """Whether the running command was given ``--json`` (whatever its parameter is called)."""
    ctx = _current_context(silent=True)
    while ctx is not None:
        for param in ctx.command.params:
            if "--json" in getattr(param, "opts", ()) and ctx.params.get(param.name or ""):
                return True
        ctx = ctx.parent
    return False


def error_document(message: str) -> dict[str, Any]:
    """A run-time error in the shape of a pack that cannot be loaded: ``{"valid": false, "issues": [...]}``."""
    issue = {"file": None, "line": None, "column": None, "path": None, "message": message, "severity": "error"}
    return {"valid": False, "issues": [issue]}


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Report ``message`` and return the ``typer.Exit`` to raise.

    ``error: message`` goes to stderr; under ``--json`` the error is also one JSON document on stdout
    (:func:`error_document`), unless the command has already printed its document. The exit code is the same
    either way.
    """
    ctx = _current_context(silent=True)
    if _json_requested() and not (ctx is not None and ctx.find_root().meta.get(_EMITTED)):
        emit_json(error_document(message))
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)  # for the person reading the log
    return typer.Exit(code=code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn recgov's deliberate errors, and settings the environment gets wrong, into one line on stderr and exit code 2."""
    try:
        yield
    except RecgovError as err:
        raise fail(str(err)) from None
    except ValidationError as err:
        if err.title not in _SETTINGS_MODELS:
            raise
        raise fail(settings_problem(err)) from None


_SETTINGS_MODELS = ("ApiSettings", "StoreSettings")
"""The settings read from ``RECGOV_*`` variables: their validation errors name the variable."""


def settings_problem(err: ValidationError) -> str:
    """A settings error as the user set it: each bad ``RECGOV_*`` variable, why, and the value given."""
    parts = []
    for e in err.errors():
        message = str(e["msg"]).removeprefix("Value error, ")
        if e["loc"]:
            variable = "RECGOV_" + "_".join(map(str, e["loc"])).upper()
            parts.append(f"{variable}: {message} (got {e.get('input')!r})")
        else:
            parts.append(message)
    return "invalid settings: " + "; ".join(parts)


@contextmanager
def opened_store(database_url: str | None) -> Iterator[Any]:
    """The store ``database_url`` names (default: the embedded SQLite file), closed at the end of the block."""
    from audits import open_store

    store = open_store(database_url)
    try:
        yield store
    finally:
        store.close()


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def to_json(document: Any) -> str:
    """Encode ``document`` as JSON (numpy scalars and arrays, datetimes, pydantic models allowed)."""
    return json.dumps(document, default=_default, indent=2, sort_keys=False, allow_nan=False)


def emit_json(document: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(to_json(document) + "\n")
    sys.stdout.flush()
    ctx = _current_context(silent=True)
    if ctx is not None:
        ctx.find_root().meta[_EMITTED] = True


def progress_enabled(json_output: bool) -> bool:
    """Progress bars only for a person at a terminal, never under ``--json``."""
    return not json_output and sys.stderr.isatty()


def load_or_fail(
    ref: str,
    *,
    json_output: bool,
    dataset_columns: list[str] | None = None,
    item_harm_categories: dict[str, int] | None = None,
    item_table: Any | None = None,
) -> LoadedPack:
    """Load a pack; on failure print every located issue and exit 2 (as JSON with ``--json``)."""
    path = resolve_pack(ref)
    if "@" in ref and path == Path(ref) and not path.exists():  # a stored NAME@VERSION that is not there: say so
        from audits.settings import get_settings
        from governance.packs import PackNotFound, load_stored

        name, version = ref.split("@", 1)
        try:
            load_stored(get_settings().home / "packs", name, version)
        except PackNotFound as err:
            raise fail(f"{ref}: {err}") from None
    try:
        return load_pack(path, dataset_columns=dataset_columns, item_harm_categories=item_harm_categories, item_table=item_table)
    except PolicyError as err:
        raise issues_exit(err, json_output=json_output) from None


def issues_exit(err: PolicyError, *, json_output: bool) -> typer.Exit:
    """Print every located issue of ``err`` (as JSON with ``--json``); the exit (code 2) for the caller to raise."""
    if json_output:
        emit_json({"valid": False, "issues": [i.to_dict() for i in err.issues]})
    else:
        for issue in err.issues:
            err_console.print(str(issue), highlight=False, soft_wrap=True, markup=False)
    return typer.Exit(code=2)


# -- what the commands about a subject share (consent, subject requests, retrains, the Art. 30 record) --
def checked_subject_id(value: str | None) -> str | None:
    """A typed subject id as given, or a usage error (exit 2) when it can name nobody (see :func:`audits.subjects.subject_id_problem`)."""
    from audits.subjects import subject_id_problem

    problem = None if value is None else subject_id_problem(value)
    if problem is not None:
        raise typer.BadParameter(problem)
    return value


SubjectArg = Annotated[
    str,
    typer.Argument(
        metavar="SUBJECT",
        help="The subject's id as your systems know it; recgov stores only its pseudonym.",
        show_default=False,
        callback=checked_subject_id,
    ),
]
def checked_requested_subject(value: str | None) -> str | None:
    """:func:`checked_subject_id` for the subject of an access or erasure request: an id with whitespace at either
    end passes here and is answered only for a subject recorded under exactly that id
    (:func:`governance.privacy.common.requested_subject`); an empty one is refused."""
    from audits.subjects import SUBJECT_ID_EMPTY

    if value is not None and value == "":
        raise typer.BadParameter(SUBJECT_ID_EMPTY)
    return value


RequestedSubjectArg = Annotated[
    str,
    typer.Argument(
        metavar="SUBJECT",
        help="The subject's id as your systems know it; recgov stores only its pseudonym.",
        show_default=False,
        callback=checked_requested_subject,
    ),
]
PackHelp = "Policy pack file, or a shipped pack name (baseline, eu-gdpr-dsa, california-ccpa)."
OptionalPackOpt = Annotated[str | None, typer.Option("--pack", "-p", help=PackHelp, show_default=False)]
RequiredPackOpt = Annotated[str, typer.Option("--pack", "-p", help=PackHelp, show_default=False)]


def short_pseudonym(pseudonym: str | None) -> str:
    """A pseudonym's first 16 characters, enough to match a record without spelling out the key."""
    return f"{pseudonym[:16]}..." if pseudonym else "none (no record under this id)"
