"""Migrations: empty -> head -> base and back on both engines; models and migrations never drift."""

from __future__ import annotations

import json

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from audits import open_store
from audits.db import create_store_engine
from audits.migrate import current_revision, downgrade, head_revision, known_revisions, upgrade
from audits.models import Base
from governance.cli import app
from recommender.errors import ConfigError

TRAIL_TABLES = {"trail_events", "trail_head", "trail_checkpoints", "signing_keys", "subject_secrets", "store_meta"}
LINEAGE_TABLES = {"dataset_versions", "training_runs", "model_versions", "audit_runs", "deployments"}
AUDIT_TABLES = {"audit_results"}
PRIVACY_HARM_DECISION_TABLES = {
    "consent_records",
    "subject_requests",
    "item_flags",
    "item_reports",
    "escalation_cases",
    "item_blocks",
    "decisions",
    "failed_requests",
}
API_TABLES = {"api_keys"}
JOB_TABLES = {"audit_jobs"}
SUPPRESSION_TABLES = {"suppressions"}
DEPLOYMENT_POLICY_TABLES = {"deployment_policies"}
CONSENT_IMPORT_TABLES = {"consent_import_keys"}
OUTCOME_TABLES = {"outcome_events"}
MONITORING_TABLES = {"monitor_runs", "model_profiles", "retrain_tickets"}
EXPERIMENT_TABLES = {"experiments", "experiment_looks"}
AVAILABILITY_TABLES = {"item_availability"}
EXPOSURE_TABLES = {"exposure_ledgers"}
OUTBOX_TABLES = {"online_store_outbox"}
ALL_TABLES = (
    TRAIL_TABLES | LINEAGE_TABLES | AUDIT_TABLES | PRIVACY_HARM_DECISION_TABLES | API_TABLES | JOB_TABLES
    | SUPPRESSION_TABLES | DEPLOYMENT_POLICY_TABLES | CONSENT_IMPORT_TABLES | OUTCOME_TABLES | MONITORING_TABLES
    | AVAILABILITY_TABLES | EXPERIMENT_TABLES | EXPOSURE_TABLES | OUTBOX_TABLES
)


def _tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def _triggers(engine) -> set[str]:
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            query = (
                "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace"
            )
        else:
            query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        return set(connection.execute(text(query)).scalars())


def test_upgrade_from_empty_to_head_then_down_to_base_and_up_again(db_url: str) -> None:
    engine = create_store_engine(db_url)
    try:
        assert current_revision(engine) is None and _tables(engine) == set()
        upgrade(engine)
        assert current_revision(engine) == head_revision() == known_revisions()[-1]
        assert _tables(engine) == ALL_TABLES
        triggers = _triggers(engine)
        assert len(triggers) >= 10
        assert {t for t in triggers if t.startswith("consent_records_")}, triggers
        downgrade(engine, "0003")
        assert _tables(engine) == TRAIL_TABLES | LINEAGE_TABLES | AUDIT_TABLES
        assert not {t for t in _triggers(engine) if t.startswith("consent_records_")}
        assert len(_triggers(engine)) >= 8
        downgrade(engine, "0002")
        assert _tables(engine) == TRAIL_TABLES | LINEAGE_TABLES
        downgrade(engine, "0001")
        assert _tables(engine) == TRAIL_TABLES
        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert _tables(engine) == set() and _triggers(engine) == set()
        upgrade(engine)
        assert _tables(engine) == ALL_TABLES
    finally:
        engine.dispose()


def test_models_and_migrations_do_not_drift(db_url: str) -> None:
    store = open_store(db_url)  # upgrades to head on first use
    try:
        with store.engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            assert compare_metadata(context, Base.metadata) == []
    finally:
        store.close()


def test_open_store_refuses_a_database_from_a_newer_recgov(db_url: str) -> None:
    open_store(db_url).close()
    engine = create_store_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(ConfigError, match="is at schema revision '9999', which this version of recgov does not know"):
        open_store(db_url)


def test_db_commands(db_url: str) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["db", "current", "--database-url", db_url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["current"] is None
    result = runner.invoke(app, ["db", "upgrade", "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert f"is now at revision {head_revision()} (head)" in result.stdout
    result = runner.invoke(app, ["db", "downgrade", "0001", "--database-url", db_url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) | {"database": None} == {
        "database": None,
        "current": "0001",
        "head": head_revision(),
        "up_to_date": False,
    }
    result = runner.invoke(app, ["db", "downgrade", "nonsense", "--database-url", db_url])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown or unreachable revision 'nonsense'")
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_db_commands_on_an_unreachable_database_fail_in_one_line() -> None:
    result = CliRunner().invoke(
        app, ["db", "upgrade", "--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: cannot connect to the database postgresql+psycopg://nobody@127.0.0.1:1/none"
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unsupported_url_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["trail", "verify", "--database-url", "mysql://x@y/z"])
    assert result.exit_code == 2
    assert "unsupported database 'mysql'" in result.stderr


def test_the_default_store_is_an_sqlite_file_under_recgov_home(recgov_home) -> None:
    store = open_store()
    try:
        assert store.dialect == "sqlite"
        assert store.url == f"sqlite:///{recgov_home / 'recgov.db'}"
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        store.close()
    assert (recgov_home / "recgov.db").exists()


def test_exposure_ledgers_gain_a_nullable_config_key_and_lose_it_on_downgrade(db_url: str) -> None:
    # nullable: a ledger saved before the key existed keeps a NULL key (the serving engine then resets it, on the trail)
    engine = create_store_engine(db_url)
    try:
        upgrade(engine, "0019")
        columns = {c["name"] for c in inspect(engine).get_columns("exposure_ledgers")}
        assert "config_key" not in columns
        upgrade(engine, "0020")
        column = {c["name"]: c for c in inspect(engine).get_columns("exposure_ledgers")}["config_key"]
        assert column["nullable"]
        downgrade(engine, "0019")
        assert "config_key" not in {c["name"] for c in inspect(engine).get_columns("exposure_ledgers")}
        upgrade(engine)
    finally:
        engine.dispose()


def test_suppressions_gain_a_nullable_binding_and_keep_their_triggers_both_ways(db_url: str) -> None:
    # nullable: a row written before bindings existed has none (its event does not say "bound")
    engine = create_store_engine(db_url)
    try:
        upgrade(engine, "0020")
        assert "binding" not in {c["name"] for c in inspect(engine).get_columns("suppressions")}
        upgrade(engine, "0021")
        assert {c["name"]: c for c in inspect(engine).get_columns("suppressions")}["binding"]["nullable"]
        downgrade(engine, "0020")
        assert "binding" not in {c["name"] for c in inspect(engine).get_columns("suppressions")}
        with engine.connect() as connection:  # still append-only after the column went
            if engine.dialect.name == "sqlite":
                names = {r[0] for r in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'suppressions'")}
                assert names == {"suppressions_no_update", "suppressions_no_delete"}
            else:
                names = {r[0] for r in connection.exec_driver_sql("SELECT tgname FROM pg_trigger WHERE tgrelid = 'suppressions'::regclass AND NOT tgisinternal")}
                assert names == {"suppressions_append_only", "suppressions_no_truncate"}
        upgrade(engine)
    finally:
        engine.dispose()


def _consent_rows(engine) -> list[tuple]:
    with engine.connect() as connection:
        return connection.exec_driver_sql(
            "SELECT id, subject, purpose, status, lawful_basis, source, evidence, recorded_at, trail_seq FROM consent_records ORDER BY id"
        ).all()


def _refuses(engine, column: str, value: str) -> bool:
    """Whether consent_records refuses a row whose ``column`` is ``value`` (the others copied from a stored row)."""
    from sqlalchemy.exc import IntegrityError

    columns = ["subject", "purpose", "status", "lawful_basis", "source", "evidence", "recorded_at", "trail_seq"]
    chosen = ", ".join(f"'{value}'" if c == column else c for c in columns)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"INSERT INTO consent_records ({', '.join(columns)}) SELECT {chosen} FROM consent_records LIMIT 1")
            raise _RolledBack
    except IntegrityError:
        return True
    except _RolledBack:
        return False


class _RolledBack(Exception):
    """Raised to roll back an insert that was accepted."""


def test_consent_records_keep_rows_checks_index_and_triggers_across_revision_0023(db_url: str, recgov_home) -> None:
    """0023 spells the consent_records checks as comparisons on SQLite (a table rebuild); rows, ids, the subject
    index, the append-only triggers and what the checks admit stay the same both ways, and the trail verifies."""
    from audits import record_consent, verify_store
    from audits.consent import consent_history

    store = open_store(db_url)
    try:
        with store.session() as session:
            for n, status in enumerate(("granted", "denied", "withdrawn")):
                record_consent(session, subject_id=f"migrating-{n:05d}", purpose="personalization", status=status, lawful_basis="consent", source="api")
        before = _consent_rows(store.engine)
        for revision in ("0022", "0023"):
            (downgrade if revision == "0022" else upgrade)(store.engine, revision)
            assert _consent_rows(store.engine) == before
            assert _refuses(store.engine, "status", "maybe") and _refuses(store.engine, "source", "fax")
            assert _refuses(store.engine, "lawful_basis", "whim")
            assert not _refuses(store.engine, "status", "opted_out")
            assert {t for t in _triggers(store.engine) if t.startswith("consent_records_")}
            if store.dialect == "sqlite":  # an IN list is a lookup table built for every row inserted
                with store.engine.connect() as connection:
                    schema = connection.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'consent_records'").scalar_one()
                assert ("status IN (" in schema) == (revision == "0022") and ("status = 'granted' OR" in schema) == (revision == "0023")
            indexes = {i["name"]: i["column_names"] for i in inspect(store.engine).get_indexes("consent_records")}
            assert indexes["ix_consent_records_subject"] == ["subject", "purpose", "recorded_at"]
            with pytest.raises(Exception, match="append-only|refused"):
                with store.engine.begin() as connection:
                    connection.exec_driver_sql("DELETE FROM consent_records")
        store.engine.dispose()
        with store.session() as session:
            assert [r["status"] for r in consent_history(session, "migrating-00001")] == ["denied"]
        with store.snapshot() as connection:
            assert verify_store(connection).intact
    finally:
        store.close()
