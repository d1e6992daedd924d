"""The packs and JSON Schemas recgov ships, found wherever recgov is installed.

They are package data of the top-level ``policies`` and ``schemas`` packages
(data-only packages: YAML and JSON files beside an ``__init__.py``), read through
``importlib.resources``. So a wheel installed outside any checkout finds the
same files as a development checkout does, and nothing depends on the current
directory or on where the source tree lies.

>>> sorted(shipped_pack_names())
['baseline', 'california-ccpa', 'eu-gdpr-dsa']
>>> shipped_pack_path("baseline").name
'baseline.yaml'
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from recommender.errors import ConfigError

__all__ = [
    "NOT_SHIPPED",
    "SHIPPED_PACKS",
    "shipped_pack_names",
    "shipped_pack_path",
    "resolve_pack",
    "shipped_schema_path",
]

NOT_SHIPPED = "the {what} directory is not where recgov was installed ({where}); reinstall recgov"


@cache
def _package_dir(package: str) -> Path:
    """The directory of a data package, as a real path (wheels install unzipped)."""
    root = resources.files(package)
    path = Path(str(root))
    if not path.is_dir():
        raise ConfigError(NOT_SHIPPED.format(what=package, where=path))
    return path


SHIPPED_PACKS: Path = _package_dir("policies")
"""The directory of the shipped policy packs (``<name>.yaml`` and ``<name>.test.yaml``)."""


def shipped_pack_names() -> list[str]:
    """The names of the shipped packs (their fixture files, ``*.test.yaml``, left out)."""
    return sorted(p.stem for p in SHIPPED_PACKS.glob("*.yaml") if not p.name.endswith(".test.yaml"))


def shipped_pack_path(name: str) -> Path:
    """The file of shipped pack ``name``; it may not exist (callers say what is shipped)."""
    return SHIPPED_PACKS / f"{name}.yaml"


def shipped_schema_path(name: str) -> Path:
    """A published JSON Schema (``policy-pack`` or ``gate-result``), as shipped."""
    path = _package_dir("schemas") / f"{name}.schema.json"
    if not path.is_file():
        raise ConfigError(NOT_SHIPPED.format(what=f"schemas/{name}.schema.json", where=path))
    return path


def resolve_pack(ref: str) -> Path:
    """A pack file as given, or a shipped pack by name (``baseline`` -> its shipped file).

    A reference that names an existing file, ends in ``.yaml``/``.yml`` or holds a
    ``/`` is a path; otherwise the shipped pack of that name, when there is one.
    """
    path = Path(ref)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in ref:
        return path
    shipped = shipped_pack_path(ref)
    return shipped if shipped.exists() else path
