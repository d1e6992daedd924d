"""Files that hold personal data: exports written owner-only, purged files replaced keeping their mode.

recgov writes personal data to files in two ways, and both go through here:

* an **export** (an access export, the trail) is a new file the caller asked
  for: it is written owner-only (``0600``), whatever the process umask, and
  never wider than the file it replaces;
* a **rewrite** (``recgov data purge`` removing events from a log) replaces a
  file that already exists: the new content keeps the old file's permission
  bits, so a log kept ``0600`` never becomes ``0644``.

Either way the content goes to a temporary sibling created with those
permissions before a byte is written (nobody can open it wider meanwhile) and
is renamed over the target at the end: a failure leaves the target as it was
and no partial file. A target that cannot be written (a folder, a read-only
place, a missing folder) is a :class:`~recommender.errors.DataError` of one
line naming it, which the command line answers with exit 2 and the API with a
problem document.

>>> write_private(Path("export.json"), b"{}")                   # doctest: +SKIP
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from recommender.errors import DataError

__all__ = [
    "OWNER_ONLY",
    "OWNER_ONLY_FOLDER",
    "UNWRITABLE",
    "check_writable",
    "replace_keeping_mode",
    "reserve_export",
    "reserve_replacement",
    "write_private",
]

OWNER_ONLY = 0o600
"""Permission bits of an export: read and write for its owner, nothing for anyone else."""
OWNER_ONLY_FOLDER = 0o700
"""Permission bits of a folder recgov makes to hold personal data (``RECGOV_HOME``, which holds the embedded store)."""
UNWRITABLE = "{path}: cannot be written ({reason}); choose a file in a folder you may write to"


def _unwritable(path: Path, err: OSError) -> DataError:
    return DataError(UNWRITABLE.format(path=path, reason=err.strerror or type(err).__name__))


def _mode_of(path: Path) -> int | None:
    """The permission bits of ``path``, or None when it does not exist."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None


def _reserve(target: Path, mode: int) -> Path:
    """A new empty file next to ``target`` with ``mode`` (created ``0600``, then set): what to write before renaming."""
    try:
        folder = target.is_dir()  # a name too long for the file system raises here, not only when written
    except OSError as err:
        raise _unwritable(target, err) from None
    if folder:
        raise DataError(UNWRITABLE.format(path=target, reason="it is a folder"))
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    except OSError as err:
        raise _unwritable(target, err) from None
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return Path(name)


def check_writable(target: Path) -> None:
    """Raise the one-line :class:`DataError` now if an export to ``target`` could not be written; leave nothing.

    For a caller that records something before it writes (an access request):
    the record is not made for a file that cannot be.
    """
    _reserve(Path(target), OWNER_ONLY).unlink()


def reserve_export(target: Path) -> Path:
    """A temporary sibling of ``target`` to write an export of personal data to, then rename over ``target``.

    Owner-only (``0600``), and never wider than a file ``target`` replaces. The
    caller writes it (opening it truncates; its mode stays), renames it onto
    ``target`` and removes it on failure; or use :func:`write_private`.
    """
    target = Path(target)
    before = _mode_of(target)
    return _reserve(target, OWNER_ONLY if before is None else before & OWNER_ONLY)


def reserve_replacement(target: Path) -> Path:
    """A temporary sibling of the existing ``target`` with its permission bits, for its new content (a purged log).

    Rename it over ``target`` with :func:`replace_keeping_mode`.
    """
    target = Path(target)
    before = _mode_of(target)
    return _reserve(target, OWNER_ONLY if before is None else before)


def replace_keeping_mode(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` over ``target``, ``tmp`` first given ``target``'s permission bits (a writer may have re-created it)."""
    target = Path(target)
    try:
        before = _mode_of(target)
        if before is not None:
            os.chmod(tmp, before)
        os.replace(tmp, target)
    except OSError as err:
        raise _unwritable(target, err) from None


def write_private(target: Path, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``target`` as an owner-only export, all or nothing; return ``target``."""
    target = Path(target)
    tmp = reserve_export(target)
    try:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, target)
    except OSError as err:
        raise _unwritable(target, err) from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
