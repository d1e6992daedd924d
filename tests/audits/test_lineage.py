"""Lineage records: each row and its trail event in one transaction; the chain from data to deployment."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from audits import (
    Store,
    lineage_of,
    record_audit_run,
    record_carbon,
    record_dataset_version,
    record_deployment,
    record_model_version,
    record_training_run,
    verify_trail,
)
from governance.cli import app
from recommender.errors import ConfigError, DataError

T0 = datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)


def _dataset(session, content_hash: str = "sha256:data1"):
    return record_dataset_version(
        session,
        content_hash=content_hash,
        name="synthetic-small",
        source="recgov.synthetic(seed=1)",
        n_events=1000,
        n_users=50,
        n_items=80,
        schema={"user": "int64", "item": "int64", "timestamp": "int64"},
        validation={"duplicates": 0, "bot_share": 0.012},
    )


def _model(store: Store, version_id: str = "model-abc") -> str:
    with store.session() as session:
        data = _dataset(session)
        run = record_training_run(
            session,
            dataset_version=data,
            params={"factors": 32, "regularization": 0.05, "iterations": 10},
            library_versions={"implicit": "0.7.2", "numpy": "2.1.0"},
            started_at=T0,
            ended_at=T0 + timedelta(seconds=42),
        )
        record_model_version(
            session,
            version_id=version_id,
            kind="als",
            training_run=run,
            artifact_hash="sha256:artifact",
            artifact_location="models/model-abc.npz",
        )
    return version_id


def test_the_chain_from_data_to_deployment(store: Store) -> None:
    version = _model(store)
    with store.session() as session:
        record_carbon(session, training_run=1, energy_kwh=0.0021, emissions_kg=0.0008, carbon_method="codecarbon")
        record_audit_run(
            session,
            policy_pack="default",
            policy_version="3",
            policy_hash="sha256:pack",
            verdict="pass",
            started_at=T0 + timedelta(minutes=1),
            ended_at=T0 + timedelta(minutes=2),
            model_version=version,
            dataset_version=1,
            summary={"checks": 12, "failed": 0},
        )
        record_deployment(session, model_version=version, stage="shadow", actor="ci")
        record_deployment(session, model_version=version, stage="canary", actor="ci")
        record_deployment(session, model_version=version, stage="production", actor="release-manager")
    with store.session() as session:
        chain = lineage_of(session, version)
    assert json.loads(json.dumps(chain)) == chain  # JSON-ready
    assert chain["model_version"]["artifact_hash"] == "sha256:artifact"
    assert chain["training_run"]["params"]["factors"] == 32
    assert chain["training_run"]["started_at"] == T0.isoformat()  # microseconds and zone survive
    assert chain["training_run"]["carbon_method"] == "codecarbon"
    assert chain["dataset_version"]["validation"] == {"duplicates": 0, "bot_share": 0.012}
    assert [a["verdict"] for a in chain["audit_runs"]] == ["pass"]
    assert [(d["previous_stage"], d["stage"]) for d in chain["deployments"]] == [
        (None, "shadow"),
        ("shadow", "canary"),
        ("canary", "production"),
    ]
    assert chain["current_stage"] == "production"
    assert [e["action"] for e in chain["trail"]] == [
        "dataset.recorded",
        "training_run.recorded",
        "model.recorded",
        "audit.recorded",
        "deployment.changed",
        "deployment.changed",
        "deployment.changed",
    ]
    with store.snapshot() as connection:
        report = verify_trail(connection)
        actions = connection.execute(text("SELECT action FROM trail_events ORDER BY seq")).scalars().all()
    assert report.intact and "training_run.carbon_recorded" in actions


def test_recording_a_dataset_is_idempotent_on_its_content_hash(store: Store) -> None:
    with store.session() as session:
        first = _dataset(session)
    with store.session() as session:
        again = _dataset(session)
        events = session.execute(text("SELECT COUNT(*) FROM trail_events")).scalar()
    assert (again.id, again.trail_seq, events) == (first.id, first.trail_seq, 1)


def test_a_failed_transaction_leaves_neither_record_nor_event(store: Store) -> None:
    with pytest.raises(RuntimeError), store.session() as session:
        _dataset(session)
        raise RuntimeError("training crashed")
    with store.session() as session:
        counts = [
            session.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() for t in ("dataset_versions", "trail_events")
        ]
    assert counts == [0, 0]


def test_bad_lineage_input_is_refused_with_a_clear_message(store: Store) -> None:
    version = _model(store)
    with pytest.raises(
        ConfigError, match="model version 'model-abc' is already recorded with artifact sha256:artifact"
    ):
        with store.session() as session:
            record_model_version(
                session,
                version_id=version,
                kind="als",
                training_run=1,
                artifact_hash="sha256:other",
                artifact_location="x",
            )
    with pytest.raises(ConfigError, match="stage must be one of shadow, canary, production, retired; got 'live'"):
        with store.session() as session:
            record_deployment(session, model_version=version, stage="live")
    with pytest.raises(DataError, match="started_at must be a timezone-aware datetime"):
        with store.session() as session:
            record_training_run(
                session, dataset_version=1, params={}, library_versions={}, started_at=datetime(2026, 1, 1), ended_at=T0
            )
    with pytest.raises(ConfigError, match="unknown dataset version 99"):
        with store.session() as session:
            record_training_run(session, dataset_version=99, params={}, library_versions={}, started_at=T0, ended_at=T0)
    with pytest.raises(ConfigError, match="verdict must be one of pass, fail, error, shadow; got 'ok'"):
        with store.session() as session:
            record_audit_run(
                session, policy_pack="p", policy_version="1", policy_hash="h", verdict="ok", started_at=T0, ended_at=T0
            )
    with pytest.raises(ConfigError, match=r"unknown model version 'nope'; recorded: model-abc"):
        with store.session() as session:
            lineage_of(session, "nope")


def test_the_lineage_command(store: Store, db_url: str) -> None:
    version = _model(store)
    runner = CliRunner()
    result = runner.invoke(app, ["lineage", version, "--database-url", db_url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dataset_version"]["content_hash"] == "sha256:data1"
    result = runner.invoke(app, ["lineage", version, "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert "model version  model-abc (als)" in result.stdout and "deployments    never deployed" in result.stdout
    result = runner.invoke(app, ["lineage", "nope", "--database-url", db_url])
    assert result.exit_code == 2
    assert result.stderr == "error: unknown model version 'nope'; recorded: model-abc\n"
