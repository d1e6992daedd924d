"""recgov's REST API (FastAPI): ``create_app(settings)``; API keys in :mod:`governance.api.keys`."""

from governance.api.app import create_app
from governance.api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app"]
