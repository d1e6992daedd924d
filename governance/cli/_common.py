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
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from pydantic import ValidationError
from rich.console import Console
from typer.core import TyperGroup

from governance.located import PolicyError
from governance.policy import LoadedPack, load_pack
from governance.packs import resolve_pack
from recommender.errors import RecgovError

__all__ = ["JsonErrorsGroup", "EXIT_OK", "EXIT_FINDING", "EXIT_USAGE", "console", "err_console", "fail", "emit_json", "opened_store", "user_errors", "progress_enabled", "load_or_fail", "SubjectArg", "RequestedSubjectArg", "checked_subject_id", "checked_requested_subject", "OptionalPackOpt", "RequiredPackOpt", "short_pseudonym"]

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


@dataclass
class _Run:
    """One run of the command line: whether ``--json`` was asked for, and whether a JSON document was printed."""

    json: bool
    emitted: bool = False


_RUN: ContextVar[_Run | None] = ContextVar("recgov_cli_run", default=None)
"""The run in progress, set by :class:`JsonErrorsGroup` (None outside a command line run)."""

_CLICK_EXCEPTION: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
"""The base of the usage errors of the click typer runs on (its own copy since typer 0.20, click before), found
from the public ``typer.BadParameter`` rather than imported from where that copy happens to live."""


def json_asked(args: list[str]) -> bool:
    """Whether ``--json`` is among the command line's options (before a ``--`` that ends them)."""
    options = args[: args.index("--")] if "--" in args else args
    return "--json" in options


class JsonErrorsGroup(TyperGroup):
    """The root command of a Typer app whose errors under ``--json`` are one JSON document on stdout.

    Run-time errors (:func:`fail`) know from here that ``--json`` was asked for (the run's state, a context variable).
    Usage errors of the parser itself (a bad option value, an unknown option or command, a missing argument) are
    raised before any command runs:
    under ``--json`` the root runs the command line without click's own error printing, prints the error as
    :func:`error_document` on stdout and its usual text on stderr, and exits with click's code for it (2).
    Only public API: ``typer.core.TyperGroup`` (``cls=``), ``main(standalone_mode=False)``, ``typer.Abort``.
    """

    def invoke(self, ctx: Any) -> Any:
        super().invoke(ctx)
        return None  # a command's return value is no exit code (``main`` returns it when not standalone)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
        run = _Run(json=json_asked(argv))
        token = _RUN.set(run)
        try:
            if not (run.json and standalone_mode):
                return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
            try:
                code = super().main(argv, prog_name, complete_var, False, **extra)
            except _CLICK_EXCEPTION as err:
                if not run.emitted:
                    where = getattr(getattr(err, "ctx", None), "command_path", None) or prog_name or self.name
                    message = err.format_message()  # type: ignore[attr-defined]
                    emit_json(error_document(f"{where}: {message}" if where else message))
                err.show()  # type: ignore[attr-defined]  # the usage and the error, on stderr, as without --json
                sys.exit(err.exit_code)  # type: ignore[attr-defined]
            except typer.Abort:
                err_console.print("Aborted!", highlight=False)
                sys.exit(1)
            sys.exit(code if isinstance(code, int) else 0)
        finally:
            _RUN.reset(token)


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
    run = _RUN.get()
    if run is not None and run.json and not run.emitted:
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
    run = _RUN.get()
    if run is not None:
        run.emitted = True


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
