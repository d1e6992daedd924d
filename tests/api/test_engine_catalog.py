"""Where the service finds a model's item table: the dataset's recorded source, followed back
through the datasets an unlearned model's matrix derives from (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from audits.lineage import record_dataset_version, record_model_version, record_training_run
from governance.api.services.engines import _dataset_sources


def _model_on(session, name: str, source: str, schema: dict) -> str:  # noqa: ANN001
    data = record_dataset_version(
        session, content_hash=f"sha256:{name}", name=name, source=source, n_events=1, n_users=1, n_items=1, schema=schema, validation=None,
    )  # fmt: skip
    end = datetime.now(UTC) - timedelta(seconds=1)
    run = record_training_run(session, dataset_version=data, params={}, library_versions={}, started_at=end - timedelta(seconds=1), ended_at=end)
    record_model_version(session, version_id=f"als-{name}", kind="als", training_run=run, artifact_hash="sha256:0", artifact_location=f"/nowhere/{name}.npz")
    return f"als-{name}"


def test_an_unlearned_models_item_table_is_found_through_what_its_data_derives_from(store) -> None:  # noqa: ANN001
    with store.session() as session:
        original = _model_on(session, "original", "synthetic:n_users=50,seed=3", {"columns": {}})
        once = _model_on(session, "once", "interaction matrix of model als-original minus ...", {"derived_from": "sha256:original"})
        twice = _model_on(session, "twice", "interaction matrix of model als-once minus ...", {"derived_from": "sha256:once"})
        looped = _model_on(session, "looped", "matrix", {"derived_from": "sha256:looped"})  # a cycle ends, it does not hang
        orphan = _model_on(session, "orphan", "matrix", {"derived_from": "sha256:not-recorded"})
    with store.snapshot() as connection:
        assert _dataset_sources(connection, original) == ["synthetic:n_users=50,seed=3"]
        assert _dataset_sources(connection, twice) == [
            "interaction matrix of model als-once minus ...",
            "interaction matrix of model als-original minus ...",
            "synthetic:n_users=50,seed=3",
        ]
        assert _dataset_sources(connection, once)[-1] == "synthetic:n_users=50,seed=3"
        assert _dataset_sources(connection, looped) == ["matrix"]
        assert _dataset_sources(connection, orphan) == ["matrix"]
        assert _dataset_sources(connection, "als-unknown") == []
