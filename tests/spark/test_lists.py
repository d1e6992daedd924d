"""Governed lists on Spark: given the same candidates, the same lists, tags and decision records as the
in-process path; records chained per Parquet partition, anchored on the trail and checked by `recgov trail verify`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from audits import Store, lookup_pseudonyms, record_consent, verify_trail
from audits.decision_record import Decision, _prepare
from governance.policy import load_pack, parse_pack
from governance.spark.als import train_als_spark
from governance.spark.filters import events_frame, filter_training_events_spark
from governance.spark.lists import BATCH_CONSENT, decision_fields, govern_lists, personalizer_for, recommend_all
from governance.spark.records import record_json, subject_batch_records, verify_spark_batches
from recommender.als import ALSRecommender
from recommender.errors import ConfigError
from recommender.feedback import to_implicit
from recommender.synthetic import SyntheticSpec, generate

ROOT = Path(__file__).resolve().parents[2]
EU = load_pack(ROOT / "policies" / "eu-gdpr-dsa.yaml")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
K = 8


def _variant() -> Any:
    """The EU pack re-ranking with MMR, popularity de-biasing and exploration (seeded by the model row), two blocked categories."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    doc = yaml.load(open(ROOT / "policies" / "eu-gdpr-dsa.yaml"))
    doc["reranking"] = {
        "enabled": True, "candidates": 30,
        "steps": [{"name": "mmr", "params": {"tradeoff": 0.3}}, {"name": "popularity_debias", "params": {}},
                  {"name": "exploration", "params": {}}, {"name": "provider_calibration", "params": {"tradeoff": 0.5}}],
    }  # fmt: skip
    doc.setdefault("harmful_content", {})["blocked_categories"] = ["violence", "self-harm"]
    out = io.StringIO()
    yaml.dump(doc, out)
    return parse_pack(out.getvalue(), "eu-variant.yaml")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only here: the store is read and written by the in-process code, whose PostgreSQL copies run
    elsewhere (and the Spark filter's in test_filters.py); a second database would double the Spark time."""
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(scope="module")
def world() -> Any:
    data = generate(SyntheticSpec(n_users=70, n_items=60, n_interactions=3000, seed=11, harmful_share=0.05))
    events = data.events.copy()
    events["user_id"] = events["user_id"].astype(str)
    matrix = to_implicit(events)
    model = ALSRecommender(factors=8, iterations=5).fit(matrix)
    return SimpleNamespace(events=events, items=data.items, matrix=matrix, model=model)


def _grant_all(store: Store, subjects: list[str]) -> None:
    with store.session() as session:
        for subject in subjects:
            record_consent(session, subject_id=subject, purpose="personalization", status="granted", lawful_basis="consent", source="banner", at=T0)


def _in_process_inputs(spark: Any, world: Any, personalizer: Any) -> tuple[Any, Any]:
    """The in-process model's candidates for every user, and the model as govern_lists reads one."""
    rows, items, scores = [], [], []
    for row in range(world.matrix.n_users):
        _, ids, s = personalizer.candidates(row, K)
        rows.append(row)
        items.append(ids.astype(np.int32).tolist())
        scores.append(s.astype(np.float32).tolist())
    candidates = spark.createDataFrame(
        pd.DataFrame({"user": rows, "cand_items": items, "cand_scores": scores}), "user int, cand_items array<int>, cand_scores array<float>"
    )
    coo = world.matrix.matrix.tocoo()
    ratings = spark.createDataFrame(
        pd.DataFrame({"user": coo.row.astype(np.int32), "item": coo.col.astype(np.int32), "weight": coo.data.astype(np.float32)}),
        "user int, item int, weight float",
    )
    adapter = SimpleNamespace(
        user_ids=world.matrix.user_ids, item_ids=world.matrix.item_ids, ratings=ratings, version_id_=world.model.version_id_
    )
    return candidates, adapter


def _read(out: Path) -> pd.DataFrame:
    return pq.read_table(out).to_pandas()


def _opened_slates(store: Store, stored: pd.DataFrame) -> list[Any]:
    """Every stored record's slate, opened with its subject's record key (each must open: no one was erased)."""
    from audits.batch_folders import sealed_clear_fields
    from audits.sealing import open_decisions

    rows = [(r["decision_id"], r["subject"], json.loads(r["slate"]), json.loads(r["context"]), sealed_clear_fields(r)) for r in stored.to_dict("records")]
    with store.session() as session:
        opened = open_decisions(session, rows)
    assert all(o is not None for o in opened)
    return [o[0] for o in opened]


@pytest.mark.parametrize("pack", [_variant()], ids=["eu-rerank-variant"])
def test_same_candidates_give_the_same_lists_tags_and_records(spark: Any, store: Store, world: Any, tmp_path: Path, pack: Any) -> None:
    subjects = [str(u) for u in world.matrix.user_ids]
    _grant_all(store, subjects)
    withdrawn = subjects[3]  # withdrew after the model was trained: no list
    with store.session() as session:
        record_consent(session, subject_id=withdrawn, purpose="personalization", status="withdrawn", lawful_basis="consent", source="api", at=datetime(2024, 2, 1, tzinfo=UTC))
    personalizer = personalizer_for(pack, world.model, world.items, [])
    candidates, adapter = _in_process_inputs(spark, world, personalizer)
    moment = datetime.now(UTC)
    result = govern_lists(store, pack, adapter, personalizer, candidates, str(tmp_path / "batch"), k=K, buckets=3, run="run-1", decided_at=moment)
    assert result.records == len(subjects) - 1 and result.skipped == 1 and len(result.partitions) == 3
    stored = _read(tmp_path / "batch")
    with store.session() as session:
        names = lookup_pseudonyms(session, subjects)
    assert names[withdrawn] not in set(stored["subject"])
    by_subject = stored.set_index("subject")
    item_ids = world.matrix.item_ids
    moved = 0
    # stored sealed, as the SQL decision log stores a list: one token, the context reduced to {}
    assert all(set(json.loads(x)) == {"sealed"} for x in stored["slate"]) and set(stored["context"]) == {"{}"}
    with store.session() as session:
        opened = {names[s]: subject_batch_records(session, names[s]) for s in subjects if s != withdrawn}
    for row, subject in enumerate(subjects):
        if subject == withdrawn:
            continue
        ids, scores, tags = personalizer.personalize(row, K)  # the serving path, in process
        got = by_subject.loc[names[subject]]
        (record,) = opened[names[subject]]
        slate = record["slate"]
        assert slate == {"items": [str(item_ids[i]) for i in ids], "scores": scores, "tags": tags}, subject
        moved += sum(len(t) > 1 for t in tags)
        fields = decision_fields(names[subject], slate["items"], scores, tags, pack.stamp(), world.model.version_id_, "run-1", moment)
        assert fields["slate"] == slate and record["context"] == {"consent": BATCH_CONSENT, "gpc": False, "batch": "run-1"}
        assert fields["decision_id"] == got["decision_id"] == record["decision_id"]
        # the record's fields are the ones the serving path's decision log encodes, byte for byte (before sealing)
        assert record_json({**fields}) == _prepare(Decision(**{k: v for k, v in fields.items()}), None).canonical()
    assert moved > 0  # the re-rankers did move items, and their tags came through
    with store.snapshot() as connection:
        assert verify_trail(connection).intact
        assert verify_spark_batches(connection) == []
    # every slate holds no raw subject id
    assert not any(s in stored["slate"].str.cat() for s in subjects if len(s) > 3)
    with pytest.raises(ConfigError, match="already exists"):
        govern_lists(store, pack, adapter, personalizer, candidates, str(tmp_path / "batch"), k=K)
    with pytest.raises(ConfigError, match="'k' parameter"):
        govern_lists(store, pack, adapter, personalizer, candidates, str(tmp_path / "c"), k=0)


def test_a_changed_removed_or_unanchored_record_breaks_trail_verify(spark: Any, store: Store, world: Any, tmp_path: Path, recgov_home: Path) -> None:
    subjects = [str(u) for u in world.matrix.user_ids]
    _grant_all(store, subjects)
    personalizer = personalizer_for(EU, world.model, world.items, [])
    candidates, adapter = _in_process_inputs(spark, world, personalizer)
    out = tmp_path / "batch"
    govern_lists(store, EU, adapter, personalizer, candidates, str(out), k=K, buckets=2)
    env = {**os.environ, "RECGOV_DATABASE_URL": store.engine.url.render_as_string(hide_password=False), "RECGOV_HOME": str(recgov_home)}
    cli = [sys.executable, "-c", "from governance.cli import main; main()", "trail", "verify", "--json"]
    ok = subprocess.run(cli, env=env, capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["anchored_records_intact"] is True

    part = sorted((out / "bucket=0").glob("*.parquet"))[0]
    table = pq.read_table(part)
    frame = table.to_pandas()
    slate = json.loads(frame.loc[0, "slate"])
    slate["sealed"] = slate["sealed"][:-6] + ("AAAA==" if not slate["sealed"].endswith("AAAA==") else "BBBB==")  # a changed list
    frame.loc[0, "slate"] = json.dumps(slate)
    pq.write_table(pa_table(frame, table.schema), part)
    bad = subprocess.run(cli, env=env, capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1
    problems = json.loads(bad.stdout)["anchored_problems"]
    assert problems and problems[0]["table"] == "spark_decisions" and "bucket=0" in problems[0]["problem"]

    for f in (out / "bucket=1").glob("*.parquet"):
        f.unlink()  # a removed partition
    (out / "bucket=7").mkdir()  # and one nobody anchored
    with store.snapshot() as connection:
        found = " | ".join(p["problem"] for p in verify_spark_batches(connection))
    assert "bucket=1" in found and "bucket=7 is not anchored" in found


def test_the_anchors_are_those_of_the_records_as_written_when_spark_computes_them_again(
    spark: Any, store: Store, world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the heads were taken from Spark's cached copy of the records, not from the files. A partition
    computed again (a lost cached block, a retried task) seals its lists with fresh nonces, so its hashes differ
    from the written ones and the trail anchored heads no file holds. Here nothing stays cached: every action
    computes the records again, as after a lost block."""
    subjects = [str(u) for u in world.matrix.user_ids]
    _grant_all(store, subjects)
    personalizer = personalizer_for(EU, world.model, world.items, [])
    candidates, adapter = _in_process_inputs(spark, world, personalizer)
    frame_class = type(candidates)  # the session's own DataFrame class (Spark 4's classic one overrides cache)
    monkeypatch.setattr(frame_class, "cache", lambda self: self)
    monkeypatch.setattr(frame_class, "persist", lambda self, *args, **kwargs: self)
    out = tmp_path / "batch"
    result = govern_lists(store, EU, adapter, personalizer, candidates, str(out), k=K, buckets=2)
    stored = _read(out)
    heads = {int(b): g.sort_values("position")["hash"].iloc[-1] for b, g in stored.groupby("bucket", observed=True)}
    assert {p["bucket"]: p["head"] for p in result.partitions} == heads
    assert result.records == len(stored) == len(subjects)
    with store.snapshot() as connection:
        assert verify_spark_batches(connection) == []

    part = sorted((out / "bucket=1").glob("*.parquet"))[0]
    table = pq.read_table(part)
    frame = table.to_pandas()
    frame.loc[len(frame) - 1, "mode"] = "non_personalized"  # the last record of the chain, changed in the written file
    pq.write_table(pa_table(frame, table.schema), part)
    with store.snapshot() as connection:
        problems = [p["problem"] for p in verify_spark_batches(connection)]
    assert problems and all(p.startswith("partition bucket=1: ") for p in problems), problems
    assert any(f"record {len(frame) - 1} " in p and "does not match its chain" in p for p in problems), problems


def pa_table(frame: pd.DataFrame, schema: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def test_mllib_als_end_to_end_with_exact_tags_of_its_own_scores(spark: Any, store: Store, world: Any, tmp_path: Path) -> None:
    subjects = sorted(world.events["user_id"].unique())
    _grant_all(store, subjects[:50])
    kept, report = filter_training_events_spark(events_frame(spark, world.events), EU, store, now=datetime(2024, 7, 2, tzinfo=UTC))
    model = train_als_spark(kept, params={"factors": 8, "iterations": 5, "regularization": 0.05, "alpha": 2.0})
    assert list(model.user_ids) == sorted(subjects[:50]) and model.version_id_.startswith("als-spark-")
    personalizer = personalizer_for(EU, model, world.items, [])
    candidates = recommend_all(model, personalizer, K)
    cand = candidates.toPandas().set_index("user")
    assert len(cand) == 50
    # no seen item among the candidates, scores best first and equal to the factors' products
    U = model.user_factor_matrix()
    seen = to_implicit(kept.toPandas(), user_ids=model.user_ids, item_ids=model.item_ids).matrix
    for row in range(50):
        items = np.asarray(cand.loc[row, "cand_items"])
        assert not set(items) & set(seen[row].indices)
        np.testing.assert_allclose(cand.loc[row, "cand_scores"], model.item_factors_[items] @ U[row], rtol=1e-4, atol=1e-5)
        assert np.all(np.diff(cand.loc[row, "cand_scores"]) <= 1e-6)
    # the tags decompose MLlib's own scores exactly (confidence 1 + alpha r, regularization lambda n_u)
    for row in range(0, 50, 7):
        history = (seen[row].indices, seen[row].data)
        items = np.asarray(cand.loc[row, "cand_items"])[:K]
        ex = personalizer.explain(history, items)
        np.testing.assert_allclose(ex.scores, model.item_factors_[items] @ U[row], rtol=2e-3, atol=2e-4)
    result = govern_lists(store, EU, model, personalizer, candidates, str(tmp_path / "mllib"), k=K, buckets=4)
    assert result.records == 50
    stored = _read(tmp_path / "mllib")
    assert (stored["model_version"] == model.version_id_).all()
    assert all(len(slate["items"]) == K for slate in _opened_slates(store, stored))
    with store.snapshot() as connection:
        assert verify_spark_batches(connection) == []


def test_a_batch_on_either_engine_records_its_lineage_and_anchored_lists(spark: Any, store: Store, world: Any, tmp_path: Path) -> None:
    from sqlalchemy import select

    from audits.models import ModelVersion, TrainingRun
    from governance.spark.batch import batch_lists
    from recommender.data import Dataset

    subjects = sorted(world.events["user_id"].unique())
    _grant_all(store, subjects)
    data = Dataset(events=world.events, items=world.items, name="batch", source="synthetic:batch")
    now = datetime(2024, 7, 2, tzinfo=UTC)
    params = {"factors": 8, "iterations": 4}
    runs = {
        engine: batch_lists(data, EU, store, out=str(tmp_path / engine), engine=engine, k=K, models_dir=tmp_path / "models",
                            params=params, now=now, buckets=3, spark=spark)
        for engine in ("inprocess", "spark")
    }  # fmt: skip
    for engine, run in runs.items():
        assert run.lists["records"] == len(subjects), engine
        assert run.exclusions["events"]["kept"] == len(world.events)
        stored = _read(tmp_path / engine)
        assert set(stored.columns) >= {"decision_id", "subject", "slate", "context", "position", "prev_hash", "hash"}
        assert all(len(slate["items"]) == K for slate in _opened_slates(store, stored)), engine
    with store.session() as session:
        kinds = {v.version_id: v.kind for v in session.execute(select(ModelVersion)).scalars()}
        spark_run = session.get(TrainingRun, runs["spark"].training_run)
        assert kinds[runs["spark"].model_version] == "als-spark" and kinds[runs["inprocess"].model_version] == "als"
        assert spark_run.params["engine"] == "spark" and spark_run.params["privacy_filter"]["events"]["kept"] == len(world.events)
    with store.snapshot() as connection:
        assert verify_trail(connection).intact and verify_spark_batches(connection) == []
    with pytest.raises(ConfigError, match="--engine must be one of"):
        batch_lists(data, EU, store, out=str(tmp_path / "x"), engine="dask", models_dir=tmp_path / "models")


@pytest.mark.parametrize("engine", ["spark", "inprocess"])
def test_a_batch_into_a_folder_that_exists_is_refused_before_anything_is_trained_or_recorded(
    spark: Any, store: Store, world: Any, tmp_path: Path, engine: str
) -> None:
    """Regression: on Spark the folder was checked only when the lists were written, after the filter's trail event,
    the dataset version, the training run, the model version and its file had been recorded."""
    from sqlalchemy import func, select

    from audits.models import ModelVersion, TrailEvent
    from governance.spark.batch import batch_lists
    from recommender.data import Dataset

    _grant_all(store, sorted(world.events["user_id"].unique()))
    out = tmp_path / "taken"
    (out / "bucket=0").mkdir(parents=True)
    (out / "bucket=0" / "part-00000.parquet").write_bytes(b"an earlier batch")
    with store.session() as session:
        before = (session.scalar(select(func.count()).select_from(TrailEvent)), session.scalar(select(func.count()).select_from(ModelVersion)))
    data = Dataset(events=world.events, items=world.items, name="batch", source="synthetic:batch")
    with pytest.raises(ConfigError, match=f"{out} already exists"):
        batch_lists(data, EU, store, out=str(out), engine=engine, k=K, models_dir=tmp_path / "models", params={"factors": 4, "iterations": 2},
                    now=datetime(2024, 7, 2, tzinfo=UTC), buckets=2, spark=spark)  # fmt: skip
    with store.session() as session:
        after = (session.scalar(select(func.count()).select_from(TrailEvent)), session.scalar(select(func.count()).select_from(ModelVersion)))
    assert after == before
    assert not (tmp_path / "models").exists()
    assert sorted(p.name for p in out.rglob("*")) == ["bucket=0", "part-00000.parquet"]


def test_the_commands_refuse_an_unknown_engine_and_spark_training_without_a_pack(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from governance.cli import app

    events = tmp_path / "events.csv"
    pd.DataFrame({"user_id": ["a"], "item_id": ["x"], "timestamp": [1_700_000_000]}).to_csv(events, index=False)
    runner = CliRunner()
    bad = runner.invoke(app, ["batch", str(events), "--pack", "eu-gdpr-dsa", "--out", str(tmp_path / "o"), "--engine", "dask"])
    assert bad.exit_code != 0 and "--engine must be one of inprocess, spark" in bad.output
    no_pack = runner.invoke(app, ["train", str(events), "--engine", "spark"])
    assert no_pack.exit_code != 0 and "give --pack" in no_pack.output
    (tmp_path / "o").mkdir()
    exists = runner.invoke(app, ["batch", str(events), "--pack", "eu-gdpr-dsa", "--out", str(tmp_path / "o")])
    assert exists.exit_code != 0 and "already exists" in exists.output


def test_a_model_trained_on_spark_is_a_recgov_als_model_file_that_serves_its_own_scores(spark: Any, store: Store, world: Any, tmp_path: Path) -> None:
    """The registered artifact loads with ALSRecommender.load (as serving, erasure and unlearning load it), holds
    MLlib's factors and the weights it was fitted on, and recommends by those factors with seen items left out."""
    import hashlib

    from audits.models import ModelVersion
    from governance.spark.batch import train_spark_and_record
    from recommender.data import Dataset

    subjects = sorted(world.events["user_id"].unique())
    _grant_all(store, subjects)
    data = Dataset(events=world.events, items=world.items, name="m", source="synthetic:m")
    run, model = train_spark_and_record(data, EU, store, models_dir=tmp_path / "models", params={"factors": 6, "iterations": 3},
                                        now=datetime(2024, 7, 2, tzinfo=UTC), spark=spark)  # fmt: skip
    with store.session() as session:
        registered = session.get(ModelVersion, model.version_id_) or session.query(ModelVersion).filter_by(version_id=model.version_id_).one()
        assert registered.artifact_hash == hashlib.sha256(Path(run.artifact).read_bytes()).hexdigest()
    assert Path(run.artifact).stat().st_mode & 0o777 == 0o600  # it holds the subjects' ids: owner-only
    loaded = ALSRecommender.load(run.artifact)
    assert loaded.version_id_ == model.version_id_ and list(loaded.train_.user_ids) == list(model.user_ids)
    U = model.user_factor_matrix()
    np.testing.assert_array_equal(loaded.user_factors_, U)
    np.testing.assert_array_equal(loaded.item_factors_, model.item_factors_)
    seen = to_implicit(world.events, user_ids=model.user_ids, item_ids=model.item_ids).matrix
    assert (loaded.train_.matrix != seen.astype(np.float32)).nnz == 0  # the weights MLlib was fitted on
    for row in (0, 17, 42):
        got = loaded.recommend(str(model.user_ids[row]), k=K)
        scores = model.item_factors_ @ U[row]
        scores[seen[row].indices] = -np.inf
        assert list(got.item_ids[0]) == [str(model.item_ids[i]) for i in np.argsort(-scores, kind="stable")[:K]]


@pytest.mark.parametrize("scheme", ["file://", "file:", "hdfs://namenode:8020"])
def test_a_batch_folder_given_as_a_url_is_refused_before_anything_is_trained_or_recorded(
    spark: Any, store: Store, world: Any, tmp_path: Path, scheme: str
) -> None:
    """Regression: Spark wrote a ``file://`` folder where the URL pointed, while the trail anchored the URL, which
    trail verify (and the subject export looking for a person's lists) read as a path that does not exist: every
    such batch was reported missing, and left out of access requests."""
    from sqlalchemy import func, select

    from audits.models import TrailEvent
    from governance.spark.batch import batch_lists
    from recommender.data import Dataset

    _grant_all(store, sorted(world.events["user_id"].unique()))
    with store.session() as session:
        before = session.scalar(select(func.count()).select_from(TrailEvent))
    data = Dataset(events=world.events, items=world.items, name="batch", source="synthetic:batch")
    with pytest.raises(ConfigError, match="is a URL; .* give the folder as a path"):
        batch_lists(data, EU, store, out=f"{scheme}{tmp_path / 'b'}", engine="spark", k=K, models_dir=tmp_path / "models",
                    params={"factors": 4, "iterations": 2}, now=datetime(2024, 7, 2, tzinfo=UTC), buckets=2, spark=spark)  # fmt: skip
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(TrailEvent)) == before
    assert not (tmp_path / "b").exists() and not (tmp_path / "models").exists()


def test_training_on_spark_again_on_the_same_data_reproduces_the_recorded_version(spark: Any, store: Store, world: Any, tmp_path: Path) -> None:
    """Regression: the second ``recgov train --engine spark`` (or ``recgov batch``) on the same data and parameters made
    the same version id and was refused ("model version ... is already recorded ... from training run 1"), after its
    filter was recorded; in process such a run is recorded as reproducing the version."""
    from sqlalchemy import select

    from audits.models import ModelVersion, TrainingRun
    from governance.artifacts import verify_artifact
    from governance.spark.batch import train_spark_and_record
    from recommender.data import Dataset

    _grant_all(store, sorted(world.events["user_id"].unique()))
    data = Dataset(events=world.events, items=world.items, name="again", source="synthetic:again")
    runs = [
        train_spark_and_record(data, EU, store, models_dir=tmp_path / "models", params={"factors": 4, "iterations": 3},
                               now=datetime(2024, 7, 2, tzinfo=UTC), spark=spark)[0]
        for _ in range(2)
    ]  # fmt: skip
    assert runs[0].model_version == runs[1].model_version and runs[0].training_run != runs[1].training_run
    with store.session() as session:
        (version,) = session.execute(select(ModelVersion)).scalars().all()
        assert version.training_run_id == runs[0].training_run
        assert {r.id for r in session.execute(select(TrainingRun)).scalars()} == {runs[0].training_run, runs[1].training_run}
    verify_artifact(version.version_id, Path(version.artifact_location), version.artifact_hash)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [f"{version.version_id}.npz"]
