"""API keys of the REST API: a name, a role, and only the SHA-256 of the token.

The table lives with the others in :mod:`audits.models`; this module names what
the API's key handling uses of it.
"""

from __future__ import annotations

from audits.models import API_ROLES, LADDER_ROLES, ApiKey

__all__ = ["API_ROLES", "LADDER_ROLES", "ApiKey"]
