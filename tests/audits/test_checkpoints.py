"""Signed checkpoints, export, and offline verification with only the public key."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from audits import (
    NewEvent,
    Store,
    append_many,
    create_checkpoint,
    export_trail,
    load_signing_key,
    rotate_signing_key,
    verify_export,
    verify_trail,
)
from audits.checkpoints import EMPTY_TRAIL
from audits.trail import hash_event
from governance.cli import app
from recommender.errors import ConfigError, DataError


def _fill(store: Store, n: int, start: int = 0) -> None:
    with store.session() as session:
        append_many(
            session,
            [
                NewEvent(actor="svc", action="decision.served", objects={"decision": i}, payload={"i": i, "x": 0.5})
                for i in range(start, start + n)
            ],
        )


def _export(store: Store, path: Path) -> Path:
    with store.snapshot() as connection:
        export_trail(connection, path, signing_key=load_signing_key())
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, documents: list[dict]) -> None:
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents))


def test_sign_export_and_verify_offline_with_only_the_public_key(
    store: Store, tmp_path: Path, recgov_home: Path
) -> None:
    _fill(store, 50)
    key = load_signing_key()
    with store.session() as session:
        checkpoint = create_checkpoint(session, key)
    assert (checkpoint.seq, checkpoint.key_id) == (50, key.key_id)
    private = recgov_home / "keys" / "signing-key.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert (recgov_home / "keys" / f"{key.key_id}.pub.pem").read_text() == key.public_key_pem
    with store.snapshot() as connection:
        report = verify_trail(connection)
    assert (report.intact, report.checkpoints_verified, report.signed_through) == (True, 1, 50)
    exported = _export(store, tmp_path / "trail.jsonl")
    store.close()  # the auditor has no database
    report = verify_export(exported, key.public_key_pem)
    assert (report.intact, report.n_events, report.signed_through) == (True, 50, 50), report.summary()


@pytest.mark.parametrize("field", ["payload", "actor", "objects"])
def test_a_tampered_export_fails_at_the_changed_event(store: Store, tmp_path: Path, field: str) -> None:
    _fill(store, 30)
    key = load_signing_key()
    with store.session() as session:
        create_checkpoint(session, key)
    documents = _lines(_export(store, tmp_path / "trail.jsonl"))
    event = next(d for d in documents if d["type"] == "event" and d["seq"] == 17)
    event[field] = {"i": 999} if field != "actor" else "mallory"
    _write(tmp_path / "tampered.jsonl", documents)
    report = verify_export(tmp_path / "tampered.jsonl", key.public_key_pem)
    assert (report.intact, report.first_bad_seq, report.reason) == (False, 17, "hash_mismatch")


def test_a_rewritten_export_with_fresh_hashes_fails_the_checkpoint(store: Store, tmp_path: Path) -> None:
    _fill(store, 30)
    key = load_signing_key()
    with store.session() as session:
        create_checkpoint(session, key)
    documents = _lines(_export(store, tmp_path / "trail.jsonl"))
    events = [d for d in documents if d["type"] == "event"]
    events[9]["payload"] = {"i": 9, "x": 0.75}  # event 10
    prev = events[8]["hash"]
    for event in events[9:]:  # the forger recomputes every later hash, and the header's head
        event["prev_hash"] = prev
        from audits.canonical import canonical_json

        event["hash"] = prev = hash_event(
            prev,
            event["seq"],
            event["time"],
            event["actor"],
            event["action"],
            event["subject"],
            canonical_json(event["objects"]).decode(),
            canonical_json(event["payload"]).decode(),
        )
    _write(tmp_path / "forged.jsonl", documents)
    report = verify_export(tmp_path / "forged.jsonl", key.public_key_pem)
    assert (report.intact, report.first_bad_seq, report.reason) == (False, 30, "checkpoint_mismatch")
    documents[0]["head_hash"] = prev  # and the head with them: the signed header no longer verifies
    _write(tmp_path / "forged-head.jsonl", documents)
    report = verify_export(tmp_path / "forged-head.jsonl", key.public_key_pem)
    assert (report.intact, report.reason) == (False, "bad_header_signature")


def test_events_after_the_last_checkpoint_fail_unless_an_unsigned_tail_is_allowed(
    store: Store, tmp_path: Path, recgov_home: Path
) -> None:
    """An export whose tail no checkpoint covers (an API download after later events): no verification of the store
    vouches for those events. The auditor's command refuses that tail by default; rewriting it fails either way
    (the signed header holds the head, ``tests/audits/test_export_extent.py``)."""
    _fill(store, 20)
    key = load_signing_key()
    with store.session() as session:
        create_checkpoint(session, key)
    _fill(store, 5, start=20)  # events 21 to 25, after the checkpoint
    exported = _export(store, tmp_path / "trail.jsonl")
    store.close()
    lenient = verify_export(exported, key.public_key_pem, signed_to_the_end=False)
    assert (lenient.intact, lenient.signed_through, lenient.n_events) == (True, 20, 25)  # the library reports the reach
    strict = verify_export(exported, key.public_key_pem)
    assert (strict.intact, strict.reason, strict.first_bad_seq, strict.signed_through) == (False, "unsigned_tail", 21, 20)
    public = tmp_path / "auditor.pem"
    public.write_text(key.public_key_pem)
    runner = CliRunner()
    result = runner.invoke(app, ["trail", "verify-export", str(exported), "--public-key", str(public)])
    assert result.exit_code == 1, result.output
    assert "trail BROKEN at seq 21: unsigned_tail: events 21 to 25 come after the last checkpoint" in " ".join(result.stdout.split())
    allowed = ["trail", "verify-export", str(exported), "--public-key", str(public), "--allow-unsigned-tail", "--json"]
    result = runner.invoke(app, allowed)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["signed_through"] == 20


def test_a_checkpoint_signed_by_another_key_does_not_verify(store: Store, tmp_path: Path) -> None:
    _fill(store, 10)
    with store.session() as session:
        create_checkpoint(session, load_signing_key())
    other = load_signing_key(tmp_path / "other-key.pem")
    with store.snapshot() as connection:  # the header signed by the auditor's key: only the checkpoint is another's
        exported = export_trail(connection, tmp_path / "trail.jsonl", signing_key=other).path
    report = verify_export(exported, other.public_key_pem)
    assert (report.intact, report.reason) == (False, "no_checkpoint")
    # and a checkpoint whose signature was forged under the trusted key's id fails outright
    documents = _lines(Path(exported))
    checkpoint = next(d for d in documents if d["type"] == "checkpoint")
    checkpoint["key_id"] = other.key_id
    _write(tmp_path / "forged-signature.jsonl", documents)
    report = verify_export(tmp_path / "forged-signature.jsonl", other.public_key_pem)
    assert (report.intact, report.first_bad_seq, report.reason) == (False, 10, "bad_signature")


def test_a_truncated_export_is_caught(store: Store, tmp_path: Path) -> None:
    _fill(store, 20)
    key = load_signing_key()
    with store.session() as session:
        create_checkpoint(session, key)
    lines = _export(store, tmp_path / "trail.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "short.jsonl").write_text("".join(lines[:-3]))
    report = verify_export(tmp_path / "short.jsonl", key.public_key_pem)
    assert (report.intact, report.first_bad_seq, report.reason) == (False, 18, "truncated")


def test_rotation_keeps_old_checkpoints_verifiable(store: Store, tmp_path: Path) -> None:
    _fill(store, 10)
    first = load_signing_key()
    with store.session() as session:
        create_checkpoint(session, first)
    old_id, second = rotate_signing_key()
    assert old_id == first.key_id != second.key_id
    _fill(store, 5, start=10)
    with store.session() as session:
        create_checkpoint(session, second)
    with store.snapshot() as connection:
        report = verify_trail(connection)
    assert (report.intact, report.checkpoints_verified, report.signed_through) == (True, 2, 15)
    exported = _export(store, tmp_path / "trail.jsonl")  # the header signed by the current key, the second
    old_only = verify_export(exported, first.public_key_pem)
    assert (old_only.intact, old_only.reason) == (False, "untrusted_header")
    assert verify_export(exported, [first.public_key_pem, second.public_key_pem]).signed_through == 15
    _fill(store, 2, start=15)
    exported = _export(store, tmp_path / "later.jsonl")
    report = verify_export(exported, [second.public_key_pem, first.public_key_pem], signed_to_the_end=False)
    assert (report.intact, report.checkpoints_verified, report.signed_through) == (True, 2, 15)


def test_a_forged_checkpoint_row_is_reported(store: Store) -> None:
    _fill(store, 5)
    key = load_signing_key()
    with store.session() as session:
        create_checkpoint(session, key)
    with store.engine.begin() as connection:  # inserting is allowed; a bogus signature is caught
        connection.execute(
            text("INSERT INTO trail_checkpoints (seq, hash, time, key_id, signature) VALUES (3, :h, :t, :k, :s)"),
            {"h": "0" * 64, "t": "2026-01-01T00:00:00.000000Z", "k": key.key_id, "s": "00" * 64},
        )
    with store.snapshot() as connection:
        report = verify_trail(connection)
    assert (report.intact, report.first_bad_seq, report.reason) == (False, 3, "bad_signature")


def test_an_empty_trail_cannot_be_checkpointed(store: Store) -> None:
    with pytest.raises(DataError, match=EMPTY_TRAIL), store.session() as session:
        create_checkpoint(session, load_signing_key())


def test_a_private_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    key = load_signing_key(tmp_path / "key.pem")
    os.chmod(key.path, 0o644)
    with pytest.raises(ConfigError, match=r"readable by others \(mode 0644\); restrict it with `chmod 600"):
        load_signing_key(key.path)


def test_the_cli_checkpoints_exports_and_verifies_offline(
    store: Store, db_url: str, tmp_path: Path, recgov_home: Path
) -> None:
    _fill(store, 12)
    runner = CliRunner()
    result = runner.invoke(app, ["trail", "checkpoint", "--database-url", db_url, "--json"])
    assert result.exit_code == 0, result.output
    key_id = json.loads(result.stdout)["key_id"]
    out = tmp_path / "audit" / "trail.jsonl"
    out.parent.mkdir()
    result = runner.invoke(app, ["trail", "export", str(out), "--database-url", db_url, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["n_events"], summary["checkpoints"], summary["key_ids"]) == (12, 2, [key_id])
    public = tmp_path / "auditor.pem"
    result = runner.invoke(app, ["trail", "public-key"])
    assert result.exit_code == 0
    public.write_text(result.stdout)
    assert public.read_text() == Path(summary["public_key_file"]).read_text()
    result = runner.invoke(app, ["trail", "verify-export", str(out), "--public-key", str(public)])
    assert result.exit_code == 0, result.output
    assert "signed through seq 12" in result.stdout
    tampered = out.read_text().replace('"i":5,', '"i":6,')
    (tmp_path / "tampered.jsonl").write_text(tampered)
    result = runner.invoke(
        app, ["trail", "verify-export", str(tmp_path / "tampered.jsonl"), "--public-key", str(public)]
    )
    assert result.exit_code == 1
    assert "trail BROKEN at seq 6: hash_mismatch" in result.stdout
    other = load_signing_key(tmp_path / "other.pem")
    (tmp_path / "other.pub.pem").write_text(other.public_key_pem)
    result = runner.invoke(app, ["trail", "verify-export", str(out), "--public-key", str(tmp_path / "other.pub.pem")])
    assert result.exit_code == 1
    assert f"untrusted_header: line 1 (header): the header is signed by key {key_id}, not by key {other.key_id}" in " ".join(result.stdout.split())
    result = runner.invoke(app, ["trail", "verify-export", str(out), "--public-key", str(out)])
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {out}: not a PEM public key")
    result = runner.invoke(app, ["trail", "verify-export", str(public), "--public-key", str(public)])  # the key given as the export
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {public}: not a recgov trail export")


def test_the_cli_refuses_to_sign_a_broken_trail(store: Store, db_url: str) -> None:
    _fill(store, 5)
    with store.engine.begin() as connection:
        if store.dialect == "postgresql":
            connection.execute(text("ALTER TABLE trail_events DISABLE TRIGGER USER"))
        else:
            connection.execute(text("DROP TRIGGER trail_events_no_update"))
        connection.execute(text("UPDATE trail_events SET actor = 'mallory' WHERE seq = 2"))
    result = CliRunner().invoke(app, ["trail", "checkpoint", "--database-url", db_url])
    assert result.exit_code == 1
    assert "trail BROKEN at seq 2" in result.stdout and "refusing to sign a broken trail" in result.stderr


@pytest.mark.parametrize("tamper", [False, True])
def test_events_appended_between_verification_and_signature_are_checked_too(
    store: Store, monkeypatch: pytest.MonkeyPatch, tamper: bool
) -> None:
    import audits.verify

    _fill(store, 5)
    real = audits.verify.verify_trail

    def verify_then_race(connection, **kwargs):
        report = real(connection, **kwargs)
        _fill(store, 3, start=5)  # another writer appends before the head is locked for signing
        if tamper:
            with store.engine.begin() as other:
                if store.dialect == "postgresql":
                    other.execute(text("ALTER TABLE trail_events DISABLE TRIGGER USER"))
                else:
                    other.execute(text("DROP TRIGGER trail_events_no_update"))
                other.execute(text("UPDATE trail_events SET actor = 'mallory' WHERE seq = 7"))
        return report

    monkeypatch.setattr(audits.verify, "verify_trail", verify_then_race)
    report, checkpoint = audits.verify.verify_and_checkpoint(store, load_signing_key())
    if tamper:
        assert checkpoint is None
        assert (report.intact, report.trail.first_bad_seq, report.trail.reason) == (False, 7, "hash_mismatch")
    else:
        assert checkpoint is not None and checkpoint.seq == 8
        assert (report.intact, report.trail.n_events, report.trail.head_seq) == (True, 8, 8)
