"""The packs the list tests over HTTP serve: a shipped opt-out pack, the shipped EU pack, and the EU pack stored
under another name with a TCF vendor id (so that TC strings are judged for that vendor)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from governance.packs import resolve_pack


def served_packs(server: Any, name: str, vendor: int) -> list[str]:
    """Store the EU pack as ``name`` (version 1.0.0) naming ``vendor``; the refs of the three packs served."""
    text = Path(resolve_pack("eu-gdpr-dsa")).read_text(encoding="utf-8")
    text = text.replace("name: eu-gdpr-dsa", f"name: {name}", 1).replace("vendor_id: null", f"vendor_id: {vendor}", 1)
    with server.client("admin") as client:
        stored = client.post("/v1/packs", content=text, headers={"Content-Type": "application/yaml"})
    assert stored.status_code in (200, 201), stored.text
    return ["california-ccpa", "eu-gdpr-dsa", f"{name}@1.0.0"]


def list_requests(
    server: Any, packs: list[str], signals: Callable[[str], list[tuple[dict[str, Any], dict[str, str]]]], *, first: int, lengths: tuple[int, ...]
) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """(body, extra headers) of list requests: for each pack, each of its ``signals(pack)`` (body fields, headers) has
    subjects of its own, numbered from ``first`` (one granted personalization beforehand, one with no record, so
    that a request's first answer leaves their consent as every later one finds it), asked for each of ``lengths``."""
    from audits import record_consent

    out, n = [], first
    for pack in packs:
        for extra, headers in signals(pack):
            for granted in (True, False):
                n += 1
                subject = f"u{n:06d}"
                if granted:
                    with server.store.session() as session:
                        record_consent(session, subject_id=subject, purpose="personalization", status="granted", lawful_basis="consent", source="api")
                out.extend(({"subject": subject, "k": k, "model_version": server.model_version, "pack": pack, **extra}, headers) for k in lengths)
    return out
