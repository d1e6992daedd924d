"""recgov's REST API (FastAPI): ``create_app(settings)``; API keys in :mod:`governance.api.keys`.

``create_app`` and ``ApiSettings`` are imported when first asked for, not with the
package: the server's child processes (the compute process, the pack parser, an
audit's process) import one module of this package each, and importing the package
must not make each of them import the whole app (FastAPI, every route, the console)
before it can start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from governance.api.app import create_app
    from governance.api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app"]


def __getattr__(name: str) -> Any:
    """``create_app`` and ``ApiSettings``, imported on first use (see the module doc)."""
    if name == "create_app":
        from governance.api.app import create_app

        return create_app
    if name == "ApiSettings":
        from governance.api.settings import ApiSettings

        return ApiSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
