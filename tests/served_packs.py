"""The packs the list tests over HTTP serve: a shipped opt-out pack, the shipped EU pack, and the EU pack stored
under another name with a TCF vendor id (so that TC strings are judged for that vendor)."""

from __future__ import annotations

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
