"""Revision 0010 (deployment policy) upgrades and downgrades on both engines, keeping the deployments."""

from __future__ import annotations

from sqlalchemy import inspect, text

from audits import open_store
from audits.db import create_store_engine
from audits.lineage import record_deployment
from audits.migrate import current_revision, downgrade, head_revision, upgrade
from audits.models import ModelVersion

GATE_COLUMNS = {"gate_pack", "gate_pack_version", "gate_pack_hash", "gate_audit_id", "gate_policy_id"}


def _deployed(db_url: str) -> None:
    """A model version recorded and moved to shadow (without training: only the rows matter)."""
    from datetime import UTC, datetime

    from audits import record_dataset_version, record_model_version, record_training_run

    store = open_store(db_url)
    try:
        with store.session() as session:
            dv = record_dataset_version(
                session,
                content_hash="d" * 64,
                name="tiny",
                source="test",
                n_events=1,
                n_users=1,
                n_items=1,
                schema={},
                validation=None,
            )
            now = datetime.now(UTC)
            run = record_training_run(
                session, dataset_version=dv, params={}, library_versions={}, started_at=now, ended_at=now
            )
            record_model_version(
                session,
                version_id="als-0010",
                kind="als",
                training_run=run,
                artifact_hash="a" * 64,
                artifact_location="/nowhere",
            )
            assert session.get(ModelVersion, "als-0010") is not None
            record_deployment(session, model_version="als-0010", stage="shadow", actor="test")
    finally:
        store.close()


def _check_constraints(engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_check_constraints(table)}


def test_revision_0010_adds_and_removes_the_policy_and_the_gate_columns(db_url: str) -> None:
    _deployed(db_url)
    engine = create_store_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
        assert "deployment_policies" in inspect(engine).get_table_names()
        assert GATE_COLUMNS <= {c["name"] for c in inspect(engine).get_columns("deployments")}
        checks = _check_constraints(engine, "deployments")
        downgrade(engine, "0009")
        assert current_revision(engine) == "0009"
        assert "deployment_policies" not in inspect(engine).get_table_names()
        assert not GATE_COLUMNS & {c["name"] for c in inspect(engine).get_columns("deployments")}
        assert _check_constraints(engine, "deployments") == checks, "the stage check survives the downgrade"
        with engine.connect() as connection:
            assert connection.execute(text("SELECT model_version_id, stage FROM deployments")).all() == [
                ("als-0010", "shadow")
            ]
        upgrade(engine)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT stage, gate_pack, gate_audit_id FROM deployments")).all() == [
                ("shadow", None, None)
            ]
            assert connection.execute(text("SELECT count(*) FROM deployment_policies")).scalar() == 0
    finally:
        engine.dispose()
