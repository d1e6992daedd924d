"""A batch folder holds its anchored partitions and nothing else: whatever else is placed there is reported by
`recgov trail verify` and never read as one of the subject's lists; a sealed list copied into a record that shows
another model or time does not open.

Runs the in-process engine (no Spark or Java): both engines write the same layout and seal with the same function.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from audits import Store, lookup_pseudonyms, record_consent
from governance.cli import app
from governance.policy import load_pack
from governance.privacy import export_subject
from governance.spark.batch import batch_lists
from governance.spark.records import subject_batch_records, verify_spark_batches
from recommender.data import Dataset
from recommender.synthetic import SyntheticSpec, generate

ROOT = Path(__file__).resolve().parents[2]
EU = load_pack(ROOT / "policies" / "eu-gdpr-dsa.yaml")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
runner = CliRunner()


def _batch(store: Store, tmp_path: Path) -> SimpleNamespace:
    generated = generate(SyntheticSpec(n_users=30, n_items=25, n_interactions=900, seed=5))
    events = generated.events.copy()
    events["user_id"] = events["user_id"].astype(str)
    subjects = sorted(events["user_id"].unique())
    with store.session() as session:
        for subject in subjects:
            record_consent(session, subject_id=subject, purpose="personalization", status="granted", lawful_basis="consent", source="banner", at=T0)
    out = tmp_path / "batch"
    batch_lists(Dataset(events=events, items=generated.items, name="b", source="synthetic:b"), EU, store, out=str(out), engine="inprocess",
                k=4, models_dir=tmp_path / "models", params={"factors": 4, "iterations": 2}, now=datetime(2024, 7, 2, tzinfo=UTC), buckets=2)  # fmt: skip
    victim = subjects[7]
    with store.session() as session:
        who = lookup_pseudonyms(session, [victim])[victim]
    bucket = next(p for p in sorted(out.glob("bucket=*")) if who in pq.read_table(p).column("subject").to_pylist())
    table = pq.read_table(next(bucket.glob("*.parquet")))
    (row,) = [r for r in table.to_pylist() if r["subject"] == who]
    return SimpleNamespace(out=out, victim=victim, who=who, bucket=bucket, row=row, schema=table.schema)


def _forge(batch: SimpleNamespace, path: Path) -> None:
    """The victim's real record, sealed list and all, shown as another model's list from another time."""
    path.parent.mkdir(exist_ok=True)
    forged = {**batch.row, "model_version": "als-forged", "decided_at": "2020-01-01T00:00:00.000000Z"}
    pq.write_table(pa.Table.from_pylist([forged], schema=batch.schema), path)


def _problems(store: Store) -> list[str]:
    with store.snapshot() as connection:
        return [p["problem"] for p in verify_spark_batches(connection)]


def test_a_record_outside_the_anchored_partitions_is_reported_and_never_exported(store: Store, tmp_path: Path) -> None:
    batch = _batch(store, tmp_path)
    assert _problems(store) == []
    _forge(batch, batch.out / "extra" / "x.parquet")
    assert _problems(store) == [f"extra/ in {batch.out.resolve()} is not part of the batch (not an anchored bucket=N partition)"]
    with store.session() as session:
        (mine,) = subject_batch_records(session, batch.who)
    assert mine["opened"] and mine["model_version"] != "als-forged"
    doc = export_subject(store, batch.victim, pack=EU)
    assert [d["model_version"] for d in doc["decisions"] if d["decision_id"] == batch.row["decision_id"]] == [mine["model_version"]]


def test_a_sealed_list_copied_into_a_partition_under_another_model_does_not_open(store: Store, tmp_path: Path) -> None:
    batch = _batch(store, tmp_path)
    _forge(batch, batch.bucket / "part-forged.parquet")
    (problem,) = _problems(store)
    assert problem.startswith(f"partition {batch.bucket.name}: the trail says")
    with store.session() as session:
        records = subject_batch_records(session, batch.who)
    opened = {r["model_version"]: r["opened"] for r in records}
    assert opened == {batch.row["model_version"]: True, "als-forged": False}  # the seal binds the model version and time


def test_a_stray_bucket_folder_is_a_located_finding_not_a_crash(store: Store, db_url: str, tmp_path: Path) -> None:
    batch = _batch(store, tmp_path)
    (batch.out / "bucket=x").mkdir()
    (batch.bucket / "notes.txt").write_text("not a record")
    result = runner.invoke(app, ["trail", "verify", "--database-url", db_url])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception  # a finding, not a traceback
    assert f"bucket=x/ in {batch.out.resolve()} is not a partition of this batch" in result.stdout
    assert f"partition {batch.bucket.name}: notes.txt is not a data file of the partition" in result.stdout


def test_a_column_added_to_an_anchored_data_file_is_reported(store: Store, tmp_path: Path) -> None:
    """Regression: trail verify read only the record columns, so a column added beside them (here the victim's list
    in the clear) left every chain intact and the folder reported as unchanged."""
    batch = _batch(store, tmp_path)
    (data_file,) = batch.bucket.glob("*.parquet")
    table = pq.read_table(data_file)
    leaked = pa.array(["items: a, b, c" if s == batch.who else "" for s in table.column("subject").to_pylist()])
    pq.write_table(table.append_column("note", leaked), data_file)
    assert _problems(store) == [f"partition {batch.bucket.name}: {data_file.name} holds the column(s) note, which are not part of a record"]


def _hadoop_checksum(data: bytes, chunk: int = 512) -> bytes:
    """The ``.NAME.crc`` file Hadoop's local file system writes beside ``NAME`` (CRC-32 of every 512-byte chunk)."""
    import struct
    import zlib

    return b"crc\x00" + struct.pack(">i", chunk) + b"".join(struct.pack(">I", zlib.crc32(data[i : i + chunk])) for i in range(0, len(data), chunk))


def test_a_checksum_or_success_file_holding_anything_but_its_due_is_reported(store: Store, tmp_path: Path) -> None:
    """Regression: a ``.NAME.crc`` beside a data file and the root's ``_SUCCESS`` were let be whatever they held, so
    anything (a list in the clear) could be stored in them while trail verify called the folder intact."""
    batch = _batch(store, tmp_path)
    (data_file,) = batch.bucket.glob("*.parquet")
    checksum = batch.bucket / f".{data_file.name}.crc"
    checksum.write_bytes(_hadoop_checksum(data_file.read_bytes()))
    (batch.out / "_SUCCESS").write_bytes(b"")
    (batch.out / "._SUCCESS.crc").write_bytes(_hadoop_checksum(b""))
    assert _problems(store) == []  # what Spark writes, as it writes it
    checksum.write_bytes(b"items: a, b, c")
    (batch.out / "_SUCCESS").write_bytes(b"items: a, b, c")
    (batch.out / "._SUCCESS.crc").write_bytes(_hadoop_checksum(b"items: a, b, c"))
    assert _problems(store) == [
        f"_SUCCESS in {batch.out.resolve()} is not empty, as the marker of a finished Spark job is",
        f"partition {batch.bucket.name}: .{data_file.name}.crc is not the checksum of {data_file.name}",
    ]
