"""The ``recgov`` command line: thin commands over library functions.

Each command group lives in its own module and is registered below.
"""

from __future__ import annotations

import typer

from governance.cli import audit, core, demo, policy, serve
from governance.cli import store
from governance.cli import privacy

__all__ = ["app", "main"]

app = typer.Typer(
    name="recgov",
    help="recgov: a governance and responsible-AI policy engine for recommender systems.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

core.register(app)
policy.register(app)
audit.register(app)
demo.register(app)
serve.register(app)
# -- command groups (one line each) ------------------------------------------
store.register(app)
privacy.register(app)
from governance.cli import api as _api; _api.register(app)


def main() -> None:
    """Entry point of the ``recgov`` console script."""
    app()
