"""The regulator's report shows as proof only a checkpoint signed by one of the installation's keys; on SQLite and
PostgreSQL.

Regression: the report listed the latest stored checkpoint whatever key signed it, while ``recgov trail verify`` and
the export's verification trust only the installation's keys folder. Whoever can write the database can add a key
there and sign a rewritten trail's head: the report presented that signature as the proof that nothing was rewritten.
"""

from __future__ import annotations

import json
from pathlib import Path

from audits import Store, create_checkpoint, load_signing_key
from audits.checkpoints import list_checkpoints
from governance.report.trail_proof import UNTRUSTED_KEY
from tests.audits.test_trusted_keys import _fill, _outside_key
from tests.governance.cli_helpers import invoke, ok

DATA = "synthetic:n_users=80,n_items=60,n_interactions=2000,seed=5"


def _report(db_url: str, tmp_path: Path, version: str) -> tuple[dict, str]:
    html = tmp_path / "report.html"
    summary = ok("report", version, "--out", html, "--database-url", db_url)
    return summary, html.read_text(encoding="utf-8")


def test_a_checkpoint_by_a_key_the_installation_does_not_hold_is_not_shown_as_proof(store: Store, db_url: str, tmp_path: Path) -> None:
    version = ok("train", DATA, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--database-url", db_url)["model_version"]
    ok("trail", "checkpoint", "--database-url", db_url)  # the installation's own key
    _fill(store, 3)
    attacker = _outside_key(tmp_path / "mallory.pub.pem")
    with store.session() as session:
        create_checkpoint(session, attacker)
        signed = list_checkpoints(session)
    assert len(signed) == 2 and signed[1].key_id == attacker.key_id != signed[0].key_id

    summary, html = _report(db_url, tmp_path, version)
    proof = summary["checkpoint"]
    assert (proof["seq"], proof["key_id"]) == (signed[0].seq, signed[0].key_id)
    verification = summary["checkpoint_verification"]
    assert verification["trusted_keys"] == "installation" and (verification["n_checkpoints"], verification["n_verified"]) == (2, 1)
    latest = verification["latest"]
    assert (latest["seq"], latest["key_id"], latest["verified"]) == (signed[1].seq, attacker.key_id, False)
    assert latest["reason"] == UNTRUSTED_KEY.format(key_id=attacker.key_id)
    shown = html[html.index('id="trail"') :]
    assert f"Latest verified checkpoint</th><td>event {signed[0].seq}," in shown
    assert "Latest stored checkpoint: NOT verified</th>" in shown and f"event {signed[1].seq}," in shown
    assert shown.index(attacker.key_id) > shown.index("NOT verified")  # the outside key is named only as not verified


def test_a_store_signed_only_by_an_outside_key_has_no_proof(store: Store, db_url: str, tmp_path: Path) -> None:
    version = ok("train", DATA, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--database-url", db_url)["model_version"]
    load_signing_key()  # the installation has a key (its public half in the keys folder) but never signed this store
    attacker = _outside_key(tmp_path / "mallory.pub.pem")
    with store.session() as session:
        create_checkpoint(session, attacker)
    summary, html = _report(db_url, tmp_path, version)
    assert summary["checkpoint"] is None
    assert summary["checkpoint_verification"]["latest"]["reason"] == UNTRUSTED_KEY.format(key_id=attacker.key_id)
    assert "none: no stored checkpoint verifies with a trusted key" in html
    said = invoke("report", version, "--out", tmp_path / "again.html", "--database-url", db_url)
    assert said.exit_code == 0, said.output
    assert " ".join(said.stdout.split()).count(f"does not verify: signed by key {attacker.key_id}") == 1
