"""Global Privacy Control: the ``Sec-GPC`` request header (pure, no I/O).

The GPC specification defines one value: ``Sec-GPC: 1`` means the user asks not
to have their data sold or shared. Header names are case-insensitive and the
value is compared after trimming whitespace; any other value (``0``, ``true``,
empty) is not a signal. Under CCPA regs §7025 and §7026 a business must treat
the signal as a valid request to opt out of sale/sharing.

Example::

    gpc_opt_out({"sec-gpc": " 1 "})   # True
    gpc_opt_out({"Sec-GPC": "0"})     # False
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["GPC_HEADER", "gpc_opt_out"]

GPC_HEADER = "Sec-GPC"
_NAME = GPC_HEADER.lower()


def gpc_opt_out(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> bool:
    """Whether the request headers carry the GPC opt-out signal (``Sec-GPC: 1``).

    ``headers`` is a mapping (a dict, Starlette's ``Headers``) or a sequence of
    ``(name, value)`` pairs, where a header may repeat. If any ``Sec-GPC``
    header says ``1`` the user opted out: a conflicting duplicate never cancels
    a privacy signal.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(name, str) and name.strip().lower() == _NAME and isinstance(value, str) and value.strip() == "1":
            return True
    return False
