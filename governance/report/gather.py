"""What the regulator's report is made of: the model's lineage and the pack in force, read from the store.

The command line (``recgov report``) and the REST API (``GET /v1/reports/...``)
both print the same document, so both gather it here: :func:`pack_in_force`
says which pack the report discloses, and :func:`report_document` reads the
store into the document that :func:`governance.report.render_html` renders.

The pack in force is the one the caller names, else the pack of the model's
latest audit, but only when a pack with that name is found (shipped, or stored
at that version) with the very hash the audit recorded: a disclosure of a pack
that was edited since would describe rules that were not the ones audited.

>>> with store.session() as session:                                       # doctest: +SKIP
...     document = report_document(session, "als-66329e", packs_dir=settings.packs_dir)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from audits.lineage import lineage_of
from governance import packs as pack_store
from governance.policy import LoadedPack, PolicyError, load_pack
from governance.report import collect

__all__ = ["pack_in_force", "report_document"]


def _latest_audited(audits: Sequence[dict[str, Any]], packs_dir: Path | None) -> LoadedPack | None:
    """The latest audit's pack, when found shipped or stored with the hash that audit recorded."""
    if not audits:
        return None
    latest = audits[-1]
    name, version = latest["policy_pack"], latest["policy_version"]
    candidates: list[Callable[[], LoadedPack]]
    if packs_dir is None:  # the command line: a shipped pack, a file by that name, or the installation's stored one
        candidates = [lambda: load_pack(pack_store.resolve_pack(name)), lambda: load_pack(pack_store.resolve_pack(f"{name}@{version}"))]
    else:  # a server reads no path a stored name could make up: shipped by name, or stored at that version
        candidates = [lambda: pack_store.load_ref(packs_dir, name), lambda: pack_store.load_stored(packs_dir, name, version)]
    for candidate in candidates:
        try:
            loaded = candidate()
        except (PolicyError, pack_store.PackNotFound, OSError):
            continue
        if loaded.content_hash == latest["policy_hash"]:
            return loaded
    return None


def pack_in_force(
    audits: Sequence[dict[str, Any]], *, pack: LoadedPack | None = None, packs_dir: Path | None = None
) -> LoadedPack | None:
    """The pack the report discloses: ``pack`` when given, else the latest audit's pack (see the module).

    ``audits`` are the model's audit runs, oldest first, as
    :func:`audits.lineage.lineage_of` lists them; ``packs_dir`` is where stored
    packs are (``$RECGOV_HOME/packs``; then shipped and stored packs are looked
    up by name only), or None to look at shipped packs and files as the command
    line does. None when no pack with the audited hash is found: the report
    then leaves the DSA Art. 27 disclosure out and says so.
    """
    return pack if pack is not None else _latest_audited(audits, packs_dir)


def report_document(
    session: Session, model_version: str, *, pack: LoadedPack | None = None, packs_dir: Path | None = None
) -> dict[str, Any]:
    """The report's document for ``model_version`` (:func:`governance.report.collect`), with the pack in force.

    Raises :class:`recommender.errors.ConfigError` for a model version the
    store does not hold.
    """
    audits = lineage_of(session, model_version)["audit_runs"]
    return collect(session, model_version, pack_in_force(audits, pack=pack, packs_dir=packs_dir))
