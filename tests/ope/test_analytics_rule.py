"""The analytics consent rule every analysis of subjects' logs reads from the packs that served them
(off-policy evaluation, experiment looks, the researchers' package): read packs give their own rule, and a pack
that cannot be read gives the strict one, named, never the looser opt-out."""

from __future__ import annotations

from pathlib import Path

from governance import packs as pack_store
from governance.ope import analytics_model
from governance.packs import shipped_pack_path
from governance.policy import load_pack


def _stamp(loaded) -> tuple[str, str, str]:  # noqa: ANN001
    return loaded.pack.metadata.name, loaded.pack.metadata.version, loaded.content_hash


def test_a_shipped_opt_out_pack_gives_opt_out() -> None:
    eu = load_pack(shipped_pack_path("eu-gdpr-dsa"))
    assert analytics_model([_stamp(eu)]) == ("opt_out", [])


def test_a_pack_that_cannot_be_read_gives_the_strict_rule_and_is_named(tmp_path: Path) -> None:
    eu = load_pack(shipped_pack_path("eu-gdpr-dsa"))
    name, version, _ = _stamp(eu)
    changed = (name, version, "0" * 64)  # the recorded hash matches no pack here
    assert analytics_model([_stamp(eu), changed]) == ("opt_in", [f"{name} {version}"])
    assert analytics_model([("acme", "2.0.0", "1" * 64)], tmp_path) == ("opt_in", ["acme 2.0.0"])


def test_a_stored_pack_is_read_from_the_installations_packs(tmp_path: Path) -> None:
    text = shipped_pack_path("eu-gdpr-dsa").read_text().replace("name: eu-gdpr-dsa", "name: acme-eu", 1)
    stored, _ = pack_store.store_pack(tmp_path, text=text)
    assert analytics_model([_stamp(stored)], tmp_path) == ("opt_out", [])
    assert analytics_model([_stamp(stored)]) == ("opt_in", [f"acme-eu {stored.pack.metadata.version}"])
