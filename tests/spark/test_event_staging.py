"""The Parquet copy of the events staged for Spark to read is removed when the run that staged it ends, whether
it succeeded or failed: a server or a shell running many batches does not keep every run's copy until it exits."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from audits import Store, record_consent
from governance.policy import load_pack
from governance.spark.records import verify_spark_batches
from recommender.data import Dataset
from recommender.errors import ConfigError
from recommender.synthetic import SyntheticSpec, generate

ROOT = Path(__file__).resolve().parents[2]
EU = load_pack(ROOT / "policies" / "eu-gdpr-dsa.yaml")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
NOW = datetime(2024, 7, 2, tzinfo=UTC)
PARAMS = {"factors": 4, "iterations": 2}


@pytest.fixture
def staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Every events table staged as Parquet, in a folder of the test's own; the folders staged, as they are made."""
    import governance.spark.filters as filters

    base = tmp_path / "staging"
    base.mkdir()
    monkeypatch.setenv("RECGOV_SPARK_STAGING", str(base))
    monkeypatch.setattr(filters, "_IN_MEMORY_ROWS", 0)
    made: list[Path] = []
    original = filters._staged

    def spy(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        made.extend(p for p in base.iterdir() if p not in made)
        return out

    monkeypatch.setattr(filters, "_staged", spy)
    return {"base": base, "made": made}


def _data() -> Dataset:
    generated = generate(SyntheticSpec(n_users=30, n_items=25, n_interactions=900, seed=5))
    events = generated.events.copy()
    events["user_id"] = events["user_id"].astype(str)
    return Dataset(events=events, items=generated.items, name="staged", source="synthetic:staged")


def _grant_all(store: Store, subjects: list[str]) -> None:
    with store.session() as session:
        for subject in subjects:
            record_consent(session, subject_id=subject, purpose="personalization", status="granted", lawful_basis="consent", source="banner", at=T0)


def test_a_batch_removes_its_staged_events_when_it_ends(
    spark: Any, sqlite_store: Store, tmp_path: Path, staging: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import governance.spark.lists as lists
    from governance.spark.batch import batch_lists

    held: list[bool] = []
    original = lists.govern_lists

    def govern(*args: Any, **kwargs: Any) -> Any:
        held.append(bool(staging["made"]) and all(p.is_dir() for p in staging["made"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(lists, "govern_lists", govern)
    data = _data()
    _grant_all(sqlite_store, sorted(data.events["user_id"].unique()))
    run = batch_lists(data, EU, sqlite_store, out=str(tmp_path / "batch"), engine="spark", k=4, models_dir=tmp_path / "models",
                      params=PARAMS, now=NOW, buckets=2, spark=spark)  # fmt: skip
    assert len(staging["made"]) == 1  # the events went to Spark through a staged copy...
    assert held == [True]  # ...kept while the lists, which read the model's ratings, were made...
    assert list(staging["base"].iterdir()) == []  # ...removed when the batch ended
    assert run.lists["records"] == data.events["user_id"].nunique()  # the lists were made from it before that
    with sqlite_store.snapshot() as connection:
        assert verify_spark_batches(connection) == []


def test_a_failing_run_removes_its_staged_events_too(spark: Any, sqlite_store: Store, tmp_path: Path, staging: dict[str, Any]) -> None:
    from governance.spark.batch import batch_lists, train_spark_and_record

    data = _data()  # no consent recorded: the EU pack keeps no event, and the run is refused after the filter read them
    with pytest.raises(ConfigError, match="no event may be used for training"):
        batch_lists(data, EU, sqlite_store, out=str(tmp_path / "batch"), engine="spark", k=4, models_dir=tmp_path / "models",
                    params=PARAMS, now=NOW, buckets=2, spark=spark)  # fmt: skip
    with pytest.raises(ConfigError, match="no event may be used for training"):
        train_spark_and_record(data, EU, sqlite_store, models_dir=tmp_path / "models", params=PARAMS, now=NOW, spark=spark)
    assert len(staging["made"]) == 2
    assert list(staging["base"].iterdir()) == []


def test_training_alone_removes_its_staged_events_when_it_returns(spark: Any, sqlite_store: Store, tmp_path: Path, staging: dict[str, Any]) -> None:
    from governance.spark.batch import train_spark_and_record

    data = _data()
    _grant_all(sqlite_store, sorted(data.events["user_id"].unique()))
    run, _ = train_spark_and_record(data, EU, sqlite_store, models_dir=tmp_path / "models", params=PARAMS, now=NOW, spark=spark)
    assert Path(run.artifact).is_file() and len(staging["made"]) == 1
    assert list(staging["base"].iterdir()) == []
