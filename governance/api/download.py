"""The ``Content-Disposition`` of a download, safe for any file name (RFC 6266, RFC 5987).

HTTP header values travel as Latin-1: a name such as a model version id may hold
any Unicode character, and written raw into the header it either fails to
encode or reaches the browser misread. :func:`attachment` gives an ASCII
``filename`` that every client reads (each character outside a safe set becomes
``_``) and, when the name is not plain ASCII, the exact name as
``filename*=UTF-8''...``, percent-encoded, which current browsers prefer.
"""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = ["attachment"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def attachment(filename: str) -> str:
    """The header value that offers ``filename`` for saving: ASCII fallback, plus ``filename*`` when it differs."""
    fallback = _UNSAFE.sub("_", filename)
    if fallback == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
