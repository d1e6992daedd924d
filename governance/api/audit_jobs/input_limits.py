"""What an audit asked for over the API may cost: the installation's limits, checked before it is queued.

An audit loads or generates its data in the server. Without limits an auditor's
key could ask for two billion synthetic events, or a file the size of the disk,
and the job would be accepted (202) and then run the server out of memory. The
limits are settings (``RECGOV_AUDIT_MAX_INTERACTIONS``, ``RECGOV_AUDIT_MAX_SUBJECTS``,
``RECGOV_AUDIT_MAX_FILE_BYTES``); a request over them is a 422 naming the field,
the size asked for and the limit, and nothing is queued. So is a synthetic spec
that does not parse (a name it does not have, a value of the wrong type or out of
range): accepted, it would have been a job on the trail that could only fail.
"""

from __future__ import annotations

from pathlib import Path

from governance.api.settings import ApiSettings
from recommender.errors import DataError
from recommender.loaders import _synthetic_spec

__all__ = ["SPEC_TOO_LARGE", "check_input_size"]

SPEC_TOO_LARGE = "{field} asks for {value:,} {what}; this installation audits at most {limit:,} ({setting}); ask for less"
FILE_TOO_LARGE = "{spec!r} is {size:,} bytes; this installation audits files of at most {limit:,} bytes (RECGOV_AUDIT_MAX_FILE_BYTES)"
MAX_FILES_COUNTED = 10_000
"""A folder with more files than this is refused: counting them is already work."""


def _folder_bytes(folder: Path, limit: int) -> int:
    """Bytes of the files under ``folder``, counted until they pass ``limit``."""
    total = 0
    for n, path in enumerate(folder.rglob("*")):
        if n >= MAX_FILES_COUNTED:
            return limit + 1
        if path.is_file():
            total += path.stat().st_size
            if total > limit:
                break
    return total


def check_input_size(field: str, spec: str, resolved: str, settings: ApiSettings) -> None:
    """Raise :class:`DataError` when the input ``spec`` of ``field`` (resolved by ``resolve_input``) is over the limits.

    A synthetic spec is measured by its sizes, once it parses (one that does not
    is refused with the parser's message, so no job is queued only to fail on it);
    a file or folder by its bytes on disk.
    """
    if resolved == spec and spec.startswith("synthetic"):
        synthetic = _synthetic_spec(spec)  # DataError: the spec's fault, located by the caller
        for what, value, limit, setting in (
            ("events", synthetic.n_interactions, settings.audit_max_interactions, "RECGOV_AUDIT_MAX_INTERACTIONS"),
            ("users", synthetic.n_users, settings.audit_max_subjects, "RECGOV_AUDIT_MAX_SUBJECTS"),
            ("items", synthetic.n_items, settings.audit_max_subjects, "RECGOV_AUDIT_MAX_SUBJECTS"),
        ):
            if value > limit:
                raise DataError(SPEC_TOO_LARGE.format(field=field, value=value, what=what, limit=limit, setting=setting))
        return
    path = Path(resolved)
    limit = settings.audit_max_file_bytes
    size = _folder_bytes(path, limit) if path.is_dir() else path.stat().st_size
    if size > limit:
        raise DataError(FILE_TOO_LARGE.format(spec=spec, size=size, limit=limit))
