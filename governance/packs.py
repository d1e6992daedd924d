"""Where policy packs come from: the packs recgov ships, and the packs an installation stores.

Shipped packs and the published JSON Schemas are package data of the top-level
``policies`` and ``schemas`` packages (data-only packages: YAML and JSON files
beside an ``__init__.py``), read through ``importlib.resources``, so a wheel
installed outside any checkout finds them as a development checkout does.

Stored packs are files, ``$RECGOV_HOME/packs/<name>/<version>.yaml``, exactly as
posted: a pack is data that people review and diff, and the stored text is what
was validated (its content hash is recomputed on every read). A version, once
stored, is immutable: posting the same version with another content is a
conflict. The command line and the REST API both find packs here.

>>> sorted(shipped_pack_names())
['baseline', 'california-ccpa', 'eu-gdpr-dsa']
>>> shipped_pack_path("baseline").name
'baseline.yaml'
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from governance.located import PolicyError
from governance.policy import LoadedPack, load_pack, parse_pack
from governance.policydiff import diff_packs
from recommender.errors import ConfigError

__all__ = [
    "NOT_SHIPPED",
    "SHIPPED_PACKS",
    "PackConflict",
    "PackNotFound",
    "diff_versions",
    "list_packs",
    "load_ref",
    "load_stored",
    "resolve_pack",
    "shipped_pack_names",
    "shipped_pack_path",
    "shipped_schema_path",
    "store_pack",
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
    """A pack file as given, a shipped pack by name (``baseline`` -> its shipped file), or a pack the installation
    stored (``NAME@VERSION`` -> ``$RECGOV_HOME/packs/NAME/VERSION.yaml``, as ``POST /v1/packs`` stores them).

    A reference that names an existing file, ends in ``.yaml``/``.yml`` or holds a
    ``/`` is a path; otherwise the stored or shipped pack of that name, when there is one.
    """
    path = Path(ref)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in ref:
        return path
    if "@" in ref:
        name, version = ref.split("@", 1)
        if name and version and ".." not in name and ".." not in version and "\\" not in ref:
            from audits.settings import get_settings

            stored = get_settings().home / "packs" / name / f"{version}.yaml"
            if stored.is_file():
                return stored
        return path
    shipped = shipped_pack_path(ref)
    return shipped if shipped.exists() else path


# -- stored packs ----------------------------------------------------------------------------
class PackConflict(ConfigError):
    """The version is stored already, with another content."""


class PackNotFound(ConfigError):
    """No such stored pack or version."""


def store_pack(packs_dir: Path, *, text: str) -> tuple[LoadedPack, bool]:
    """Validate and store ``text``; return the pack and whether it was new."""
    loaded = parse_pack(text, "<request body>")
    path = packs_dir / loaded.name / f"{loaded.version}.yaml"
    if path.exists():
        existing = load_pack(path)
        if existing.content_hash != loaded.content_hash:
            raise PackConflict(f"pack {loaded.name} {loaded.version} is stored already with hash {existing.content_hash}; bump metadata.version")
        return existing, False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return loaded, True


def list_packs(packs_dir: Path) -> list[dict[str, Any]]:
    """Every shipped pack and every stored version, with its identity."""
    out = []
    for path in sorted(SHIPPED_PACKS.glob("*.yaml")):
        if path.name.endswith(".test.yaml"):
            continue
        loaded = load_pack(path)
        out.append({"origin": "shipped", "ref": path.stem, **loaded.stamp()})
    for path in sorted(packs_dir.glob("*/*.yaml")):
        try:
            loaded = load_pack(path)
        except PolicyError as err:  # a file put there by hand that is no valid pack: listed with its fault, never a 500
            name, version = path.parent.name, path.stem
            fault = str(err).replace(str(packs_dir) + "/", "")
            out.append({"origin": "stored", "ref": f"{name}@{version}", "pack": name, "pack_version": version, "pack_hash": "", "error": fault})
            continue
        out.append({"origin": "stored", "ref": f"{loaded.name}@{loaded.version}", **loaded.stamp()})
    return out


def load_stored(packs_dir: Path, name: str, version: str) -> LoadedPack:
    """Stored pack ``name`` at ``version``."""
    path = packs_dir / name / f"{version}.yaml"
    if "/" in name or "/" in version or ".." in name or ".." in version or not path.is_file():
        versions = sorted(p.stem for p in (packs_dir / name).glob("*.yaml")) if "/" not in name and ".." not in name else []
        raise PackNotFound(f"no stored pack {name!r} at version {version!r}; stored versions: {', '.join(versions) or 'none'}")
    return load_pack(path)


def load_ref(packs_dir: Path, ref: str) -> LoadedPack:
    """A shipped pack by name (``baseline``), or a stored one as ``NAME@VERSION``."""
    if "@" in ref:
        name, version = ref.split("@", 1)
        return load_stored(packs_dir, name, version)
    path = shipped_pack_path(ref)
    if "/" in ref or ".." in ref or ref.endswith(".test") or not path.is_file():
        shipped = ", ".join(shipped_pack_names())
        raise PackNotFound(f"no shipped pack {ref!r} (shipped: {shipped}); name a stored pack as NAME@VERSION")
    return load_pack(path)


def diff_versions(packs_dir: Path, name: str, *, before: str, after: str) -> dict[str, Any]:
    """What changed in stored pack ``name`` from version ``before`` to ``after``."""
    a = load_stored(packs_dir, name, before)
    b = load_stored(packs_dir, name, after)
    return {"from": a.stamp(), "to": b.stamp(), "changes": [c.to_dict() for c in diff_packs(a, b)]}
