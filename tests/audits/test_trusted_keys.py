"""A store's checkpoints are trusted to the installation's keys, not to the keys the database holds.

Hole pinned: ``recgov trail verify`` (and GET /v1/trail/verify, the console) checked each checkpoint with the
public key stored beside it in the ``signing_keys`` table. An attacker who can write the database rewrote an
event, recomputed every hash after it, deleted the checkpoints, added a key of their own and signed the new
head: the verification said "intact, 1 checkpoint verified". The keys folder holds every key the installation
ever signed with; a checkpoint by any other key now breaks the verification.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, text
from typer.testing import CliRunner

from audits import NewEvent, Store, append_many, create_checkpoint, load_signing_key, verify_store
from audits.keys import SigningKey, installation_public_keys, key_id_of
from audits.trail import hash_event
from audits.verify import verify_and_checkpoint
from governance.cli import app
from recommender.errors import ConfigError


def _fill(store: Store, n: int) -> None:
    with store.session() as session:
        append_many(session, [NewEvent(actor="svc", action="decision.served", objects={"decision": i}, payload={"i": i}) for i in range(n)])


def _outside_key(path: Path) -> SigningKey:
    """A key made outside the installation (nothing written to its keys folder): the attacker's, or another host's."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    path.write_text(pem)
    return SigningKey(private_key=private, key_id=key_id_of(public), public_key_pem=pem, path=path)


def _unguard(connection: Connection) -> None:
    """What an attacker with the database does first: the append-only guards off."""
    if connection.dialect.name == "postgresql":
        for table in ("trail_events", "trail_head", "trail_checkpoints", "signing_keys"):
            connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
    else:
        for (name,) in connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).all():
            connection.execute(text(f'DROP TRIGGER "{name}"'))


def _rewrite_and_resign(store: Store, attacker: SigningKey) -> None:
    """Rewrite event 3, recompute every hash after it and the head, drop the checkpoints and keys, sign anew."""
    with store.engine.begin() as connection:
        _unguard(connection)
        rows = connection.execute(text("SELECT seq, prev_hash, time, actor, action, subject, objects, payload FROM trail_events ORDER BY seq")).mappings().all()
        prev = rows[0]["prev_hash"]
        for row in rows:
            actor = "mallory" if row["seq"] == 3 else row["actor"]
            digest = hash_event(prev, row["seq"], row["time"], actor, row["action"], row["subject"], row["objects"], row["payload"])
            connection.execute(text("UPDATE trail_events SET actor = :a, prev_hash = :p, hash = :h WHERE seq = :s"), {"a": actor, "p": prev, "h": digest, "s": row["seq"]})
            prev = digest
        connection.execute(text("UPDATE trail_head SET hash = :h"), {"h": prev})
        connection.execute(text("DELETE FROM trail_checkpoints"))
        connection.execute(text("DELETE FROM signing_keys"))
    with store.session() as session:
        create_checkpoint(session, attacker)


def test_a_rewritten_trail_signed_by_a_key_added_to_the_database_breaks_the_verification(
    store: Store, db_url: str, tmp_path: Path, recgov_home: Path
) -> None:
    _fill(store, 8)
    ours = load_signing_key()  # the installation's key: its public half is in the keys folder
    with store.session() as session:
        create_checkpoint(session, ours)
    attacker = _outside_key(tmp_path / "mallory.pub.pem")
    _rewrite_and_resign(store, attacker)

    with store.snapshot() as connection:
        assert verify_store(connection).intact  # what the database's own keys say: nothing to see
        report = verify_store(connection, trusted_keys=installation_public_keys())
    trail = report.trail
    assert (trail.intact, trail.reason, trail.first_bad_seq, trail.trusted_keys) == (False, "untrusted_checkpoint", 8, "installation")
    assert attacker.key_id in trail.detail and "--public-key" in trail.detail

    result = CliRunner().invoke(app, ["trail", "verify", "--database-url", db_url, "--json"])
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert (document["intact"], document["reason"], document["trusted_keys"]) == (False, "untrusted_checkpoint", "installation")
    result = CliRunner().invoke(app, ["trail", "verify", "--database-url", db_url])
    assert result.exit_code == 1 and "trail BROKEN at seq 8: untrusted_checkpoint" in result.stdout
    # Nor is the rewritten trail signed again by the installation: a checkpoint refuses it.
    checked, signed = verify_and_checkpoint(store, ours)
    assert signed is None and checked.trail.reason == "untrusted_checkpoint"


def test_another_hosts_key_is_trusted_when_given_and_a_host_with_no_key_says_whose_keys_it_used(
    store: Store, db_url: str, tmp_path: Path, recgov_home: Path
) -> None:
    _fill(store, 5)
    other = _outside_key(tmp_path / "signer.pub.pem")  # the API server's key, on another host
    with store.session() as session:
        create_checkpoint(session, other)
    runner = CliRunner()
    result = runner.invoke(app, ["trail", "verify", "--database-url", db_url, "--json"])  # this host never signed
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["trusted_keys"] == "database"
    result = runner.invoke(app, ["trail", "verify", "--database-url", db_url])
    assert "checked with the keys the database holds" in " ".join(result.stdout.split())

    load_signing_key()  # now this host has a key of its own: the other host's checkpoint is not trusted by itself
    result = runner.invoke(app, ["trail", "verify", "--database-url", db_url, "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["reason"] == "untrusted_checkpoint"
    result = runner.invoke(app, ["trail", "verify", "--database-url", db_url, "--public-key", str(other.path), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["intact"], document["checkpoints_verified"], document["trusted_keys"]) == (True, 1, "installation")

    result = runner.invoke(app, ["trail", "verify", "--database-url", db_url, "--public-key", str(tmp_path / "missing.pem")])
    assert result.exit_code == 2 and str(tmp_path / "missing.pem") in result.stderr
    not_a_key = tmp_path / "note.txt"
    not_a_key.write_text("hello")
    result = runner.invoke(app, ["trail", "verify", "--database-url", db_url, "--public-key", str(not_a_key)])
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {not_a_key}: not a PEM public key")


def test_a_public_key_file_that_holds_another_key_than_its_name_is_refused(recgov_home: Path, tmp_path: Path) -> None:
    key = load_signing_key()
    other = _outside_key(tmp_path / "x.pem")
    (key.path.parent / f"{key.key_id}.pub.pem").write_text(other.public_key_pem)  # swapped behind the installation's back
    with pytest.raises(ConfigError, match=f"holds key {other.key_id}, not the key its name says"):
        installation_public_keys()
