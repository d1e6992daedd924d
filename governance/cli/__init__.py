"""The ``recgov`` command line: thin commands over library functions.

Each command group lives in its own module and registers itself on ``app``.
"""

from __future__ import annotations

import typer

from governance.cli._common import JsonErrorsGroup
from governance.cli import (
    api,
    audit,
    batch,
    consent,
    core,
    demo,
    deploy,
    harm,
    ope,
    policy,
    processing,
    report,
    research,
    retrain,
    serve,
    store,
    subjects,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="recgov",
    help="recgov: a governance and responsible-AI policy engine for recommender systems.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=JsonErrorsGroup,  # errors under --json, the parser's own included, as one JSON document
)

_GROUPS = (core, policy, audit, demo, serve, store, consent, subjects, retrain, processing, api, report, research, deploy, harm, batch, ope)
for _group in _GROUPS:
    _group.register(app)
__import__("governance.cli.feedback", fromlist=["register"]).register(app)
__import__("governance.cli.availability", fromlist=["register"]).register(app)
__import__("governance.cli.online_store", fromlist=["register"]).register(app)
__import__("governance.cli.monitor", fromlist=["register"]).register(app)
__import__("governance.cli.experiment", fromlist=["register"]).register(app)
__import__("governance.cli.tradeoff", fromlist=["register"]).register(app)


def main() -> None:
    """Entry point of the ``recgov`` console script."""
    app()
__import__("governance.cli.models", fromlist=["register"]).register(app)
