"""Consent records and suppressions changed behind the database's back are caught by `recgov trail verify`.

The triggers refuse UPDATE and DELETE on both tables, but whoever can drop a trigger can turn a
withdrawal into a grant and the chain would still verify; each row is held against the trail
event that wrote it (:mod:`audits.consent_verify`), so the change shows and nothing is signed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from audits import Store, record_consent, verify_store
from audits.consent import append_consent_batch
from audits.consent_verify import MAX_PROBLEMS, verify_consent_records
from audits.suppression import suppress_subject
from governance.cli import app

runner = CliRunner()
T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def _around_triggers(store: Store, table: str, *statements: str) -> None:
    """Run ``statements`` on ``table`` as someone with the database's rights would: around its triggers."""
    with store.engine.begin() as connection:
        if store.dialect == "postgresql":
            connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            connection.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_update"))
            connection.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_delete"))
        for statement in statements:
            connection.execute(text(statement))
        if store.dialect == "postgresql":
            connection.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


def _problems(store: Store) -> list[dict]:
    with store.snapshot() as connection:
        report = verify_store(connection)
    assert report.trail.intact  # the chain holds: only the rows changed
    return [p for p in report.anchored_problems if p["table"] in ("consent_records", "suppressions")]


def _batch(subjects: list[str], status: str = "granted") -> pd.DataFrame:
    n = len(subjects)
    return pd.DataFrame(
        {
            "subject": subjects,
            "purpose": ["personalization"] * n,
            "status": [status] * n,
            "lawful_basis": ["consent"] * n,
            "source": ["import"] * n,
            "jurisdiction": ["EU"] * n,
            "recorded_at": pd.to_datetime([T0 + timedelta(minutes=i) for i in range(n)], utc=True),
            "evidence": [{"origin": "crm-export-2026-01"}] * n,
        }
    )


def _single_records(store: Store) -> tuple[int, int]:
    """A grant and a later withdrawal of one subject; the withdrawal's row id and trail seq."""
    with store.session() as session:
        record_consent(session, subject_id="carol-1", purpose="personalization", status="granted", lawful_basis="consent",
                       source="banner", evidence={"banner_version": "2026-01"}, jurisdiction="EU", at=T0)  # fmt: skip
        row = record_consent(session, subject_id="carol-1", purpose="personalization", status="withdrawn",
                             lawful_basis="consent", source="api", at=T0 + timedelta(days=1))  # fmt: skip
        return row.id, row.trail_seq


def test_a_withdrawal_turned_into_a_grant_is_caught_and_nothing_is_signed(store: Store, db_url: str) -> None:
    row_id, seq = _single_records(store)
    assert _problems(store) == []
    assert runner.invoke(app, ["trail", "verify", "--database-url", db_url]).exit_code == 0
    _around_triggers(store, "consent_records", f"UPDATE consent_records SET status = 'granted' WHERE id = {row_id}")
    (problem,) = _problems(store)
    assert (problem["record"], problem["seq"]) == (row_id, seq)
    assert "status 'granted' (the trail recorded 'withdrawn')" in problem["problem"]
    verified = runner.invoke(app, ["trail", "verify", "--database-url", db_url, "--json"])
    doc = json.loads(verified.stdout)
    assert verified.exit_code == 1 and doc["intact"] is False and doc["trail_intact"] is True
    assert doc["anchored_problems"][0]["table"] == "consent_records"
    signed = runner.invoke(app, ["trail", "checkpoint", "--database-url", db_url])
    assert signed.exit_code == 1 and "consent_records BROKEN" in signed.stdout and "refusing to sign" in signed.stderr
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM trail_checkpoints")).scalar() == 0


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("lawful_basis", "'legitimate_interest'", "lawful_basis"),
        ("jurisdiction", "'US'", "jurisdiction"),
        ("source", "'gpc'", "source"),
        ("purpose", "'analytics'", "purpose"),
        ("evidence", "'{}'", "evidence"),
        ("subject", "'" + "0" * 64 + "'", "subject"),
    ],
)
def test_every_field_of_a_single_record_is_held_to_its_event(store: Store, field: str, value: str, says: str) -> None:
    row_id, _ = _single_records(store)
    first = row_id - 1  # the grant, which carries evidence and a jurisdiction
    _around_triggers(store, "consent_records", f"UPDATE consent_records SET {field} = {value} WHERE id = {first}")
    (problem,) = _problems(store)
    assert problem["record"] == first and says in problem["problem"]


def test_a_changed_time_a_deleted_and_an_added_record_are_caught(store: Store) -> None:
    row_id, seq = _single_records(store)
    later = "2027-01-01 00:00:00.000000" if store.dialect == "sqlite" else "2027-01-01T00:00:00+00:00"
    _around_triggers(store, "consent_records", f"UPDATE consent_records SET recorded_at = '{later}' WHERE id = {row_id - 1}")
    assert ["recorded_at" in p["problem"] for p in _problems(store)] == [True]
    _around_triggers(store, "consent_records", f"DELETE FROM consent_records WHERE id = {row_id}")
    problems = _problems(store)
    assert {"table": "consent_records", "seq": seq, "problem": "the consent.recorded event has no consent record any more (deleted)"} in problems
    columns = "subject, jurisdiction, purpose, status, lawful_basis, source, evidence, recorded_at, trail_seq"
    _around_triggers(store, "consent_records", f"INSERT INTO consent_records ({columns}) SELECT {columns} FROM consent_records WHERE id = {row_id - 1}")
    assert any("records name this consent.recorded event" in p["problem"] for p in _problems(store))


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("UPDATE consent_records SET status = 'granted' WHERE status = 'denied' AND id = (SELECT MIN(id) FROM consent_records WHERE status = 'denied')", "statuses"),
        ("UPDATE consent_records SET purpose = 'analytics' WHERE id = (SELECT MIN(id) FROM consent_records)", "import_keys_sha256"),
        ("UPDATE consent_records SET lawful_basis = 'legitimate_interest' WHERE id = (SELECT MIN(id) FROM consent_records)", "records_sha256"),
        ("UPDATE consent_records SET jurisdiction = NULL WHERE id = (SELECT MIN(id) FROM consent_records)", "records_sha256"),
        ("UPDATE consent_records SET evidence = (SELECT evidence FROM consent_records WHERE id = (SELECT MAX(id) FROM consent_records)) "
         "WHERE id = (SELECT MIN(id) FROM consent_records)", "records_sha256"),
        ("DELETE FROM consent_records WHERE id = (SELECT MAX(id) FROM consent_records)", "4 imported records, 3 are stored"),
    ],
    ids=["status", "purpose", "basis", "jurisdiction", "evidence-swapped", "deleted"],
)
def test_an_import_batch_is_held_to_its_counts_and_digests(store: Store, change: str, says: str) -> None:
    with store.session() as session:
        batch = pd.concat([_batch(["alice", "bob", "carol"]), _batch(["dave"], status="denied")], ignore_index=True)
        outcome = append_consent_batch(session, batch, anchor={"file_sha256": "ab" * 32, "batch": 1})
    assert outcome.added == 4 and _problems(store) == []
    _around_triggers(store, "consent_records", change)
    (problem,) = _problems(store)
    assert problem["batch_seq"] == outcome.trail_seq and says in problem["problem"]


def test_a_record_moved_to_another_event_is_caught(store: Store) -> None:
    row_id, _ = _single_records(store)
    with store.session() as session:
        outcome = append_consent_batch(session, _batch(["erin"]), anchor={})
    _around_triggers(store, "consent_records", f"UPDATE consent_records SET trail_seq = {outcome.trail_seq} WHERE id = {row_id}")
    problems = _problems(store)
    assert any(p.get("batch_seq") == outcome.trail_seq and "2 are stored" in p["problem"] for p in problems)
    assert any("no consent record any more (deleted)" in p["problem"] for p in problems)


def test_a_mass_change_is_reported_in_few_lines(store: Store) -> None:
    with store.session() as session:
        for n in range(MAX_PROBLEMS + 5):
            record_consent(session, subject_id=f"s{n}", purpose="personalization", status="denied", lawful_basis="consent", source="api", at=T0)
    _around_triggers(store, "consent_records", "UPDATE consent_records SET status = 'granted'")
    with store.snapshot() as connection:
        problems = verify_consent_records(connection)
    assert len(problems) == MAX_PROBLEMS + 1 and problems[-1]["problem"] == "and 5 more consent record problems like these"


def _suppressed(store: Store) -> tuple[int, int]:
    with store.session() as session:
        row = suppress_subject(session, "dan-9", denied={"analytics": {"status": "objected", "lawful_basis": "legitimate_interest"}}, erased_at=T0)
        return row.id, row.trail_seq


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("UPDATE suppressions SET denied = '{{}}' WHERE id = {id}", "differs from its subject.suppressed event: denied"),
        ("UPDATE suppressions SET erased_at = {later} WHERE id = {id}", "erased_at"),
        ("DELETE FROM suppressions WHERE id = {id}", "a restriction erasure kept is lost"),
    ],
    ids=["denied", "erased_at", "deleted"],
)
def test_a_suppression_is_held_to_its_event(store: Store, change: str, says: str) -> None:
    row_id, _ = _suppressed(store)
    assert _problems(store) == []
    later = "'2020-01-01 00:00:00.000000'" if store.dialect == "sqlite" else "'2020-01-01T00:00:00+00:00'"
    _around_triggers(store, "suppressions", change.format(id=row_id, later=later))
    (problem,) = _problems(store)
    assert problem["table"] == "suppressions" and says in problem["problem"]


def test_a_suppression_moved_to_another_subjects_lookup_is_found_by_its_binding(store: Store) -> None:
    """The lookup is in no event; the binding written with the row (under the installation key) holds it: a row moved
    to another subject, a binding copied from another row, or a binding removed is a finding."""
    from audits.suppression import suppression_lookup

    row_id, _ = _suppressed(store)
    with store.session() as session:
        elsewhere = suppression_lookup(session, "someone-else")
    assert _problems(store) == []
    _around_triggers(store, "suppressions", f"UPDATE suppressions SET lookup = '{elsewhere}' WHERE id = {row_id}")
    (problem,) = _problems(store)
    assert problem["table"] == "suppressions" and problem["record"] == row_id and "does not match its binding" in problem["problem"]


@pytest.mark.parametrize("change", ["copied", "removed"])
def test_a_suppressions_binding_cannot_be_copied_or_removed(store: Store, change: str) -> None:
    row_id, _ = _suppressed(store)
    with store.session() as session:
        other_id = suppress_subject(session, "eve-3", denied={"analytics": {"status": "objected", "lawful_basis": "legitimate_interest"}}, erased_at=T0).id
    sql = {
        # the other row's lookup and binding together: its binding names the other row's event
        "copied": f"UPDATE suppressions SET lookup = (SELECT lookup FROM suppressions WHERE id = {other_id}), "
                  f"binding = (SELECT binding FROM suppressions WHERE id = {other_id}) WHERE id = {row_id}",
        "removed": f"UPDATE suppressions SET binding = NULL WHERE id = {row_id}",
    }[change]  # fmt: skip
    _around_triggers(store, "suppressions", sql)
    (problem,) = _problems(store)
    says = "does not match its binding" if change == "copied" else "lost the binding"
    assert problem["record"] == row_id and says in problem["problem"]


def test_without_the_installation_key_the_bindings_are_not_recomputed(store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A copy of the database verified elsewhere: no key is created and no binding is judged (a removed one still is)."""
    from audits.settings import get_settings
    from audits.suppression import suppression_lookup

    row_id, _ = _suppressed(store)
    with store.session() as session:
        elsewhere = suppression_lookup(session, "someone-else")
    _around_triggers(store, "suppressions", f"UPDATE suppressions SET lookup = '{elsewhere}' WHERE id = {row_id}")
    with monkeypatch.context() as elsewhere_env:
        elsewhere_env.setenv("RECGOV_HOME", str(tmp_path / "elsewhere"))
        elsewhere_env.delenv("RECGOV_INSTALLATION_KEY", raising=False)
        assert _problems(store) == []
        assert not (get_settings().keys_dir / "installation.key").exists()
    # the installation's own key again: the moved row is found
    (problem,) = _problems(store)
    assert "does not match its binding" in problem["problem"]


@pytest.mark.parametrize("meta", ["another key id", "no key id"])
def test_editing_the_stores_key_id_does_not_switch_the_binding_check_off(store: Store, meta: str) -> None:
    """A key id the installation's key does not match (or none) leaves the bindings unchecked: that is a finding,
    so a move hidden that way neither verifies nor lets a checkpoint be signed."""
    from audits.suppression import suppression_lookup

    row_id, _ = _suppressed(store)
    with store.session() as session:
        elsewhere = suppression_lookup(session, "someone-else")
    _around_triggers(store, "suppressions", f"UPDATE suppressions SET lookup = '{elsewhere}' WHERE id = {row_id}")
    with store.engine.begin() as connection:
        if meta == "another key id":
            connection.execute(text("UPDATE store_meta SET value = :v WHERE key = 'installation_key_id'"), {"v": "0" * 32})
        else:
            connection.execute(text("DELETE FROM store_meta WHERE key = 'installation_key_id'"))
    (problem,) = _problems(store)
    assert problem["table"] == "suppressions" and "1 bound suppressions could not be held to their bindings" in problem["problem"]
    assert ("not this installation's key" if meta == "another key id" else "no installation key id") in problem["problem"]


def test_another_installation_key_in_the_environment_is_a_finding_not_a_false_move(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _suppressed(store)
    with monkeypatch.context() as env:
        env.setenv("RECGOV_INSTALLATION_KEY", "ab" * 32)
        (problem,) = _problems(store)
    assert "could not be held to their bindings" in problem["problem"] and "moved" not in problem["problem"]
    assert _problems(store) == []


@pytest.mark.parametrize("column", ["binding", "lookup"])
def test_a_binding_or_lookup_that_is_not_hex_is_a_finding_not_a_crash(store: Store, column: str) -> None:
    row_id, _ = _suppressed(store)
    _around_triggers(store, "suppressions", f"UPDATE suppressions SET {column} = 'é' || substr({column}, 2) WHERE id = {row_id}")
    (problem,) = _problems(store)
    assert problem["record"] == row_id and "not 64 hex digits" in problem["problem"]
