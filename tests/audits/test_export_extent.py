"""An export's extent is proven by its signed header: a file cut short, grown or with an edited header fails.

A checkpoint proves only what existed up to it: without a signed header, whoever
holds an export can cut the events after a checkpoint (and the checkpoints after
it), edit the header's head and count, and the rest still verifies. The header is
signed at export time by the installation's trail key; version 1 exports (unsigned
headers) are refused unless the auditor accepts what they prove. The Python client
verifies with the defaults of ``recgov trail verify-export``.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from audits import NewEvent, Store, append_many, create_checkpoint, export_trail, load_signing_key, verify_export
from audits.canonical import canonical_json
from audits.checkpoints import register_signing_key
from audits.trail import hash_event
from governance.cli import app
from recgov.client import Client


def _fill(store: Store, n: int, start: int = 0) -> None:
    with store.session() as session:
        append_many(
            session,
            [NewEvent(actor="svc", action="decision.served", objects={"decision": i}, payload={"i": i}) for i in range(start, start + n)],
        )


def _checkpoint(store: Store) -> None:
    with store.session() as session:
        create_checkpoint(session, load_signing_key())


def _export(store: Store, path: Path, key=None) -> Path:
    with store.snapshot() as connection:
        export_trail(connection, path, signing_key=key or load_signing_key())
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, documents: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents))
    return path


def _cut(documents: list[dict], last: int, *, checkpoints_after: bool = True, edit_header: bool = True) -> list[dict]:
    """The export as its holder could cut it: events after ``last`` gone, the checkpoints beyond with them, the head edited."""
    kept = [
        d for d in documents
        if not (d["type"] == "event" and d["seq"] > last) and not (checkpoints_after and d["type"] == "checkpoint" and d["seq"] > last)
    ]  # fmt: skip
    if edit_header:
        header = kept[0]
        tail = next(d for d in kept if d["type"] == "event" and d["seq"] == last)
        header.update(head_seq=last, head_hash=tail["hash"])
        for field, value in (("last_seq", last), ("n_events", last)):
            if field in header:
                header[field] = value
        if "checkpoints" in header:
            header["checkpoints"] = sum(1 for d in kept if d["type"] == "checkpoint")
    return kept


def _as_version_one(documents: list[dict]) -> list[dict]:
    """An export as recgov wrote it before headers were signed."""
    header = documents[0]
    for field in ("first_seq", "last_seq", "n_events", "checkpoints", "key_id", "signature"):
        header.pop(field, None)
    header["version"] = 1
    return documents


def test_cutting_events_and_checkpoints_after_a_checkpoint_and_editing_the_head_fails(store: Store, tmp_path: Path) -> None:
    """Events 1-10 signed by a checkpoint, 11-20 by another: the holder keeps 1-10 and the first checkpoint only."""
    _fill(store, 10)
    _checkpoint(store)
    _fill(store, 10, start=10)
    _checkpoint(store)
    key = load_signing_key()
    documents = _lines(_export(store, tmp_path / "trail.jsonl"))
    assert verify_export(tmp_path / "trail.jsonl", key.public_key_pem).intact
    cut = _write(tmp_path / "cut.jsonl", _cut(documents, 10))
    report = verify_export(cut, key.public_key_pem)
    assert (report.intact, report.reason) == (False, "bad_header_signature"), report.summary()
    assert report.detail.startswith("line 1 (header): the header's signature does not verify with key")
    lenient = verify_export(cut, key.public_key_pem, signed_to_the_end=False)
    assert (lenient.intact, lenient.reason) == (False, "bad_header_signature")


def test_a_file_cut_short_under_its_signed_header_is_truncated_and_located(store: Store, tmp_path: Path) -> None:
    _fill(store, 10)
    _checkpoint(store)
    _fill(store, 10, start=10)  # an unsigned tail, accepted by the auditor
    key = load_signing_key()
    documents = _lines(_export(store, tmp_path / "trail.jsonl"))
    cut = _write(tmp_path / "cut.jsonl", _cut(documents, 15, edit_header=False))
    report = verify_export(cut, key.public_key_pem, signed_to_the_end=False)
    assert (report.intact, report.first_bad_seq, report.reason) == (False, 16, "truncated")
    assert "the signed header says the export holds events 1 to 20, but the file ends at event 15: events 16 to 20 were cut" in report.detail
    edited = _write(tmp_path / "edited.jsonl", _cut(documents, 15))
    report = verify_export(edited, key.public_key_pem, signed_to_the_end=False)
    assert (report.intact, report.reason) == (False, "bad_header_signature")


def test_a_rewritten_unsigned_tail_fails_even_when_the_tail_is_allowed(store: Store, tmp_path: Path) -> None:
    _fill(store, 10)
    _checkpoint(store)
    _fill(store, 3, start=10)
    key = load_signing_key()
    documents = _lines(_export(store, tmp_path / "trail.jsonl"))
    allowed = verify_export(tmp_path / "trail.jsonl", key.public_key_pem, signed_to_the_end=False)
    assert (allowed.intact, allowed.signed_through, allowed.n_events) == (True, 10, 13)
    assert allowed.extent is not None and allowed.extent.startswith(f"extent signed by key {key.key_id}")
    forged = documents[-1]
    forged["actor"] = "mallory"
    forged["hash"] = hash_event(
        forged["prev_hash"], forged["seq"], forged["time"], forged["actor"], forged["action"], forged["subject"],
        canonical_json(forged["objects"]).decode(), canonical_json(forged["payload"]).decode(),
    )  # fmt: skip
    _write(tmp_path / "forged.jsonl", documents)
    report = verify_export(tmp_path / "forged.jsonl", key.public_key_pem, signed_to_the_end=False)
    assert (report.intact, report.first_bad_seq, report.reason) == (False, 13, "head_mismatch")
    assert "does not hash to the head hash the header signs" in report.detail
    documents[0]["head_hash"] = forged["hash"]
    _write(tmp_path / "forged-head.jsonl", documents)
    report = verify_export(tmp_path / "forged-head.jsonl", key.public_key_pem, signed_to_the_end=False)
    assert (report.intact, report.reason) == (False, "bad_header_signature")


def test_a_removed_checkpoint_line_or_an_added_event_fails(store: Store, tmp_path: Path) -> None:
    _fill(store, 6)
    _checkpoint(store)
    _fill(store, 6, start=6)
    _checkpoint(store)
    key = load_signing_key()
    documents = _lines(_export(store, tmp_path / "trail.jsonl"))
    without = [d for d in documents if not (d["type"] == "checkpoint" and d["seq"] == 6)]
    report = verify_export(_write(tmp_path / "without.jsonl", without), key.public_key_pem)
    assert (report.intact, report.reason) == (False, "header_mismatch")
    assert "the signed header says the export holds 2 checkpoint(s), but the file holds 1" in report.detail
    last = documents[-1]
    extra = {**last, "seq": 13, "prev_hash": last["hash"], "actor": "mallory"}
    extra["hash"] = hash_event(
        extra["prev_hash"], 13, extra["time"], extra["actor"], extra["action"], extra["subject"],
        canonical_json(extra["objects"]).decode(), canonical_json(extra["payload"]).decode(),
    )  # fmt: skip
    report = verify_export(_write(tmp_path / "grown.jsonl", [*documents, extra]), key.public_key_pem, signed_to_the_end=False)
    assert (report.intact, report.first_bad_seq, report.reason) == (False, 13, "beyond_head")
    assert "events 13 to 13 were added to it" in report.detail


def test_a_header_signed_by_a_key_not_given_is_refused_and_several_keys_can_be_given(store: Store, tmp_path: Path) -> None:
    _fill(store, 5)
    _checkpoint(store)
    checkpoint_key = load_signing_key()
    other = load_signing_key(tmp_path / "export-key.pem")
    exported = _export(store, tmp_path / "trail.jsonl", key=other)
    report = verify_export(exported, checkpoint_key.public_key_pem)
    assert (report.intact, report.reason) == (False, "untrusted_header")
    assert f"the header is signed by key {other.key_id}, not by key {checkpoint_key.key_id}" in report.detail
    both = verify_export(exported, [checkpoint_key.public_key_pem, other.public_key_pem])
    assert (both.intact, both.signed_through) == (True, 5), both.summary()
    report = verify_export(exported, other.public_key_pem)  # the header's key, but no checkpoint of it
    assert (report.intact, report.reason) == (False, "no_checkpoint")


def test_a_version_one_export_is_refused_unless_its_unproven_extent_is_accepted(store: Store, tmp_path: Path) -> None:
    _fill(store, 8)
    _checkpoint(store)
    key = load_signing_key()
    documents = _as_version_one(_lines(_export(store, tmp_path / "trail.jsonl")))
    old = _write(tmp_path / "v1.jsonl", documents)
    report = verify_export(old, key.public_key_pem)
    assert (report.intact, report.reason) == (False, "unsigned_header")
    assert report.detail.startswith("line 1 (header): a version 1 export, written before headers were signed")
    accepted = verify_export(old, key.public_key_pem, signed_header=False)
    assert (accepted.intact, accepted.signed_through) == (True, 8)
    assert accepted.extent == (
        "unproven: a version 1 export, its header unsigned; the checkpoints prove events 1 to 8, nothing proves the "
        "file was not cut or extended after event 8"
    )
    assert accepted.extent in accepted.summary() and accepted.to_dict()["extent"] == accepted.extent
    # a signed export turned into a version 1 one to hide a cut is refused the same way
    _fill(store, 4, start=8)
    _checkpoint(store)
    cut = _as_version_one(_cut(_lines(_export(store, tmp_path / "later.jsonl")), 8))
    report = verify_export(_write(tmp_path / "downgraded.jsonl", cut), key.public_key_pem)
    assert (report.intact, report.reason) == (False, "unsigned_header")
    public = tmp_path / "auditor.pem"
    public.write_text(key.public_key_pem)
    runner = CliRunner()
    result = runner.invoke(app, ["trail", "verify-export", str(old), "--public-key", str(public)])
    assert result.exit_code == 1 and "unsigned_header" in result.stdout, result.output
    result = runner.invoke(app, ["trail", "verify-export", str(old), "--public-key", str(public), "--allow-unsigned-header", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["extent"].startswith("unproven: a version 1 export")


def test_the_client_refuses_an_unsigned_tail_by_default_as_the_command_does(store: Store, tmp_path: Path) -> None:
    _fill(store, 10)
    _checkpoint(store)
    _fill(store, 2, start=10)
    key = load_signing_key()
    with store.session() as session:
        register_signing_key(session, key)
    exported = _export(store, tmp_path / "trail.jsonl")
    keys = {"keys": [{"key_id": key.key_id, "public_key_pem": key.public_key_pem, "checkpoints": 1}]}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=keys))
    with Client("http://recgov.test", "rgk_test", transport=transport) as client:
        report = client.verify_export(exported)
        assert (report.intact, report.reason, report.first_bad_seq) == (False, "unsigned_tail", 11)
        assert "events 11 to 12 come after the last checkpoint" in report.detail
        allowed = client.verify_export(exported, allow_unsigned_tail=True)
        assert (allowed.intact, allowed.signed_through, allowed.n_events) == (True, 10, 12)
    public = tmp_path / "auditor.pem"
    public.write_text(key.public_key_pem)
    result = CliRunner().invoke(app, ["trail", "verify-export", str(exported), "--public-key", str(public)])
    assert result.exit_code == 1 and "unsigned_tail" in result.stdout


def test_the_command_takes_several_keys_and_names_an_unreadable_one(store: Store, tmp_path: Path, db_url: str) -> None:
    _fill(store, 4)
    first = load_signing_key()
    with store.session() as session:
        create_checkpoint(session, first)
    from audits import rotate_signing_key

    _, second = rotate_signing_key()
    out = tmp_path / "trail.jsonl"
    result = CliRunner().invoke(app, ["trail", "export", str(out), "--database-url", db_url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["header_key_id"] == second.key_id
    (tmp_path / "first.pem").write_text(first.public_key_pem)
    (tmp_path / "second.pem").write_text(second.public_key_pem)
    runner = CliRunner()
    result = runner.invoke(app, ["trail", "verify-export", str(out), "--public-key", str(tmp_path / "first.pem")])
    assert result.exit_code == 1 and "untrusted_header" in result.stdout
    both = ["--public-key", str(tmp_path / "first.pem"), "--public-key", str(tmp_path / "second.pem")]
    result = runner.invoke(app, ["trail", "verify-export", str(out), *both])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["trail", "verify-export", str(out), *both, "--public-key", str(tmp_path / "missing.pem")])
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {tmp_path / 'missing.pem'}:"), result.output


@pytest.mark.parametrize("version", [0, 3, True])
def test_an_unknown_export_version_is_refused(store: Store, tmp_path: Path, version: object) -> None:
    _fill(store, 2)
    _checkpoint(store)
    documents = _lines(_export(store, tmp_path / "trail.jsonl"))
    documents[0]["version"] = version
    with pytest.raises(Exception, match="unsupported export version"):
        verify_export(_write(tmp_path / "odd.jsonl", documents), load_signing_key().public_key_pem)


def test_the_command_exports_up_to_the_head_it_signed_even_when_events_arrive_meanwhile(
    store: Store, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`recgov trail export` signs the head, then writes the export: events appended in between (a busy installation)
    made an unsigned tail, so the export it promised "signed to its end" failed the auditor's default check."""
    import governance.cli.store as commands

    _fill(store, 6)
    real = commands._checkpoint

    def checkpoint_then_more(*args, **kwargs):
        signed = real(*args, **kwargs)
        _fill(store, 3, start=100)  # served meanwhile
        return signed

    monkeypatch.setattr(commands, "_checkpoint", checkpoint_then_more)
    out = tmp_path / "trail.jsonl"
    result = CliRunner().invoke(app, ["trail", "export", str(out), "--database-url", db_url, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["n_events"], summary["head_seq"]) == (6, 6)
    report = verify_export(out, load_signing_key().public_key_pem)
    assert (report.intact, report.n_events, report.signed_through) == (True, 6, 6), report.summary()
