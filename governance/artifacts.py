"""A model version's file is what was recorded: its SHA-256 is checked before it is deployed or served.

Training records each model version with its artifact's SHA-256. Promotion and
rollback (:func:`governance.deploy.check_artifact`) and every engine that loads a
model file to serve it (``recgov recommend``, the API's engine cache, the shadow
replay, the online-store warm-up) check the file against that hash first: a file
changed on disk after it was recorded (its factors zeroed, another model copied
over it) is refused with :class:`ArtifactChanged`, naming the version and the
file, and never served. Serving hashes once per load (the API's engine cache
keeps the loaded model until the file's size or modification time changes),
never per request.

Artifacts that are not one file (a folder) are not hashed here, nor recorded
hashes that are not SHA-256.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from recommender.errors import ConfigError

__all__ = ["ARTIFACT_CHANGED", "ArtifactChanged", "recorded_sha256", "verify_artifact"]

ARTIFACT_CHANGED = (
    "model version {version!r} cannot be {use}: its artifact {location} {why}; what would be served is not what was "
    "recorded and gated (restore the recorded file, or train and record a new version)"
)
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ArtifactChanged(ConfigError):
    """The model file is missing or no longer has the SHA-256 recorded with the version (CLI exit 2, API 409
    ``artifact-changed``)."""


def recorded_sha256(artifact_hash: str | None) -> str | None:
    """The recorded hash as 64 lower-case hex digits, or None when it is not a SHA-256 (nothing to check)."""
    recorded = (artifact_hash or "").removeprefix("sha256:").lower()
    return recorded if _SHA256.fullmatch(recorded) else None


def verify_artifact(version: str, location: str | Path, artifact_hash: str | None, *, use: str = "served") -> None:
    """Raise :class:`ArtifactChanged` unless the file at ``location`` has the recorded SHA-256 ``artifact_hash``.

    ``use`` completes "cannot be ..." in the message (``served``, ``deployed``). A folder, or a recorded hash that
    is not a SHA-256, is not checked.
    """
    recorded = recorded_sha256(artifact_hash)
    path = Path(location)
    if recorded is None or path.is_dir():
        return
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        raise ArtifactChanged(ARTIFACT_CHANGED.format(version=version, use=use, location=path, why="is missing")) from None
    except OSError as err:
        why = f"cannot be read ({err.strerror or type(err).__name__})"
        raise ArtifactChanged(ARTIFACT_CHANGED.format(version=version, use=use, location=path, why=why)) from None
    found = digest.hexdigest()
    if found != recorded:
        why = f"has SHA-256 {found[:16]}..., not the {recorded[:16]}... recorded with the version: it changed on disk"
        raise ArtifactChanged(ARTIFACT_CHANGED.format(version=version, use=use, location=path, why=why))
