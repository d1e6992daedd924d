"""The ``recgov`` command line: thin commands over library functions.

Each command group lives in its own module and registers itself on ``app``.
"""

from __future__ import annotations

import typer

from governance.cli import api, audit, core, demo, deploy, harm, policy, privacy, report, serve, store

__all__ = ["app", "main"]

app = typer.Typer(
    name="recgov",
    help="recgov: a governance and responsible-AI policy engine for recommender systems.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for _group in (core, policy, audit, demo, serve, store, privacy, api, report, deploy, harm):
    _group.register(app)


def main() -> None:
    """Entry point of the ``recgov`` console script."""
    app()
