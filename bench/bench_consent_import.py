"""Bulk consent import benchmark: a million-row consent export into SQLite and PostgreSQL, and lookups after it.

For each engine, on a fresh database:

1. ``import``: the export (``--rows`` rows, one subject each, default 1,000,000)
   imported under the EU pack, as ``recgov consent import FILE --pack eu-gdpr-dsa``
   does it (:func:`governance.consent.imports.import_consent`): wall time, CPU time
   of this process (the database server's is not in it), rows per second;
2. ``again``: the same file a second time: must add nothing;
3. ``broken``: a copy of the file with 1 row in 1,000 broken (unknown purpose,
   a time that is no time, a time in the future, no subject): the report must name
   exactly those lines, and the rest are recorded already (nothing added);
4. ``lookups``: the consent history of one subject as the serving path reads it
   (:func:`audits.consent.read_consent_history`: its secret, its records, its latest
   suppression, three indexed queries) and the suppressions of one subject
   (:func:`audits.suppression.suppressions_for`), p50 and p99 over ``--lookups``
   random subjects, in a store of ``--small`` subjects and in the store of step 1.
   Flat figures from the small store to the large one mean the lookups are indexed.

With ``--verify``, after step 1: ``verify``, the time to hold every consent record
against the trail (:func:`audits.consent_verify.verify_consent_records`) and to verify
the whole store as ``recgov trail verify`` does (:func:`audits.verify.verify_store`);
with ``--single N`` too, N records more as :func:`audits.record_consent` writes them
(one ``consent.recorded`` event each, sealed evidence; appended in bulk here), then
``verify`` again over both kinds (``verify_single``).

Target (issue: bulk consent): 1,000,000 rows in at most 60 s on each engine, on 2 cores.
Timings taken while other work runs on the machine are inflated: the 1-minute load
average is reported with the figures.

The file is made here with pandas, the shape of the 2026-12-05 measurement in
BENCHMARKS.md (columns ``user_id, purpose, status, updated_at, source,
banner_version``; 90% granted, 10% denied; times uniform over 300 days of 2025).

Run:  python bench/bench_consent_import.py [--rows 1000000] [--json] [--skip-postgres] [--skip-sqlite] [--import-only] [--sequential | --ahead]
      [--verify [--single N]]
PostgreSQL: RECGOV_TEST_POSTGRES_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/test
(a scratch schema is created and dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hardware import hardware  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sqlalchemy import create_engine  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from audits import open_store, verify_store  # noqa: E402
from audits.consent import read_consent_history  # noqa: E402
from audits.consent_verify import verify_consent_records  # noqa: E402
from audits.suppression import suppressions_for  # noqa: E402
from governance.consent.import_table import ConsentImportMapping  # noqa: E402
from governance.consent.imports import import_consent  # noqa: E402
from governance.policy import load_pack  # noqa: E402
from governance.packs import resolve_pack  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MAPPING = ConsentImportMapping.parse("subject=user_id,time=updated_at")
BROKEN_EVERY = 1000
TARGET_S = 60.0


def make_export(n: int, path: Path, *, offset: int = 0, seed: int = 0) -> Path:
    """``n`` consent rows, one subject each (``u0000000``...), as BENCHMARKS.md's million-row file."""
    rng = np.random.default_rng(seed)
    times = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 300 * 86400, n), unit="s")
    pd.DataFrame(
        {
            "user_id": [f"u{i:07d}" for i in range(offset, offset + n)],
            "purpose": "personalization",
            "status": np.where(rng.random(n) < 0.1, "denied", "granted"),
            "updated_at": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": "banner",
            "banner_version": "2024-11",
        }
    ).to_csv(path, index=False)
    return path


def break_rows(source: Path, target: Path) -> list[int]:
    """A copy of ``source`` with one data row in :data:`BROKEN_EVERY` broken four ways in turn; their lines."""
    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    rows = np.arange(BROKEN_EVERY // 2, len(frame), BROKEN_EVERY)
    for n, row in enumerate(rows):
        kind = n % 4
        if kind == 0:
            frame.loc[row, "purpose"] = "telepathy"
        elif kind == 1:
            frame.loc[row, "updated_at"] = "last tuesday"
        elif kind == 2:
            frame.loc[row, "updated_at"] = "2999-01-01T00:00:00Z"
        else:
            frame.loc[row, "user_id"] = ""
    frame.to_csv(target, index=False)
    return [int(r) + 2 for r in rows]  # the header is line 1


def _timed(work: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


PREPARE_AHEAD: dict[str, bool | None] = {"on": None}  # None: the importer's default for the store


def _import(store: Any, path: Path, pack: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    ahead = PREPARE_AHEAD["on"]
    report, wall, cpu = _timed(lambda: import_consent(store, path, mapping=MAPPING, pack=pack, prepare_ahead=ahead))
    doc = report.to_dict()
    figures = {
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "rows_per_s": round(doc["rows"] / wall),
        "rows": doc["rows"], "added": doc["added"], "already_recorded": doc["already_recorded"],
        "invalid": doc["invalid"], "batches_anchored": sum(1 for b in doc["batches"] if b["trail_seq"] is not None),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    return figures, doc


def measure_verify(store: Any, records: int) -> dict[str, Any]:
    """Wall and CPU time of the consent-records pass alone, and of the whole store's verification."""
    with store.snapshot() as connection:
        problems, wall, cpu = _timed(lambda: verify_consent_records(connection))
    with store.snapshot() as connection:
        report, store_wall, store_cpu = _timed(lambda: verify_store(connection))
    if problems or not report.intact:
        raise SystemExit(f"the untouched store does not verify: {problems[:3] or report.lines()[:3]}")
    return {
        "records": records, "consent_records_wall_s": round(wall, 2), "consent_records_cpu_s": round(cpu, 2),
        "records_per_s": round(records / wall), "verify_store_wall_s": round(store_wall, 2), "verify_store_cpu_s": round(store_cpu, 2),
        "trail_events": report.trail.n_events, "load_average_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def add_single_records(store: Any, n: int, seed: int = 2) -> dict[str, Any]:
    """``n`` consent records as :func:`audits.record_consent` writes them (one ``consent.recorded`` event each,
    sealed evidence), appended in bulk: the trail events through :func:`audits.trail.append_many`, the rows in one
    bulk insert. Subjects are random pseudonyms; the evidence is sealed under one random key (verification
    compares the stored token with the event's, it never opens it)."""
    from audits.consent_import import _RECORD_COLUMNS, _copy_rows
    from audits.sealing import sealed_evidence_texts
    from audits.trail import NewEvent, append_many, format_time

    rng = np.random.default_rng(seed)
    base = pd.Timestamp("2025-01-01", tz="UTC")
    times = [t.to_pydatetime() for t in base + pd.to_timedelta(rng.integers(0, 300 * 86400, n), unit="s")]
    statuses = np.where(rng.random(n) < 0.1, "withdrawn", "granted").tolist()
    pseudonyms = [os.urandom(32).hex() for _ in range(n)]
    key = os.urandom(32)
    evidence = sealed_evidence_texts([key] * n, pseudonyms, [b'{"banner_version":"2024-11"}'] * n)
    postgres = store.dialect == "postgresql"

    def events() -> Iterator[NewEvent]:
        for who, status, sealed, moment in zip(pseudonyms, statuses, evidence, times, strict=True):
            payload = {"status": status, "lawful_basis": "consent", "source": "banner", "jurisdiction": "EU",
                       "evidence": json.loads(sealed), "recorded_at": format_time(moment)}  # fmt: skip
            yield NewEvent(actor="bench", action="consent.recorded", subject=who, objects={"purpose": "personalization"}, payload=payload)

    started = time.perf_counter()
    with store.session() as session:
        appended = append_many(session, events(), chunk_size=5000)
        stamp = "%Y-%m-%dT%H:%M:%S.%f+00" if postgres else "%Y-%m-%d %H:%M:%S.%f"
        rows = [
            (who, "EU", "personalization", status, "consent", "banner", sealed, moment.strftime(stamp), appended.first_seq + i)
            for i, (who, status, sealed, moment) in enumerate(zip(pseudonyms, statuses, evidence, times, strict=True))
        ]
        _copy_rows(session, "consent_records", _RECORD_COLUMNS, rows)
    return {"added": n, "wall_s": round(time.perf_counter() - started, 2)}


def _percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def measure_lookups(store: Any, subjects: int, lookups: int, seed: int = 1) -> dict[str, Any]:
    """Latency of one subject's consent history (serving's read) and of one subject's suppressions."""
    rng = random.Random(seed)
    chosen = [f"u{rng.randrange(subjects):07d}" for _ in range(lookups)]
    history: list[float] = []
    suppressed: list[float] = []
    with store.engine.connect() as connection:
        read_consent_history(connection, chosen[0])  # the installation key is checked once per engine
        for subject in chosen:
            start = time.perf_counter()
            records = read_consent_history(connection, subject)
            history.append(time.perf_counter() - start)
            if len(records) != 1:
                raise SystemExit(f"expected one record of an imported subject, got {len(records)}")
    with store.session() as session:
        suppressions_for(session, [chosen[0]])
        for subject in chosen:
            start = time.perf_counter()
            suppressions_for(session, [subject])
            suppressed.append(time.perf_counter() - start)
    return {"subjects": subjects, "lookups": lookups, "history": _percentiles(history), "suppressions": _percentiles(suppressed)}


@contextmanager
def _sqlite_store(folder: Path, name: str) -> Iterator[Any]:
    store = open_store(f"sqlite:///{folder / name}")
    try:
        yield store
    finally:
        store.engine.dispose()


@contextmanager
def _postgres_store(admin_url: str) -> Iterator[Any]:
    schema = f"recgov_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"})
    store = open_store(url.render_as_string(hide_password=False))
    try:
        yield store
    finally:
        store.engine.dispose()
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def run_engine(opened: Callable[[str], Any], files: dict[str, Path], broken_lines: list[int], args: argparse.Namespace, pack: Any) -> dict[str, Any]:
    """The four steps of the module docstring on one engine."""
    out: dict[str, Any] = {}
    with opened("large") as store:
        out["import"], _ = _import(store, files["large"], pack)
        print(f"  import {out['import']}", file=sys.stderr, flush=True)
        if args.verify:
            out["verify"] = measure_verify(store, args.rows)
            print(f"  verify {out['verify']}", file=sys.stderr, flush=True)
            if args.single:
                out["single"] = add_single_records(store, args.single)
                out["verify_single"] = measure_verify(store, args.rows + args.single)
                print(f"  single {out['single']} verify {out['verify_single']}", file=sys.stderr, flush=True)
        if args.import_only:
            return out
        out["again"], _ = _import(store, files["large"], pack)
        print(f"  again  {out['again']}", file=sys.stderr, flush=True)
        out["broken"], doc = _import(store, files["broken"], pack)
        reported = sorted(p["line"] for p in doc["problems"])
        out["broken"]["reported_lines_match"] = reported == broken_lines
        out["broken"]["broken_rows"] = len(broken_lines)
        print(f"  broken {out['broken']}", file=sys.stderr, flush=True)
        out["lookups_large"] = measure_lookups(store, args.rows, args.lookups)
    with opened("small") as store:
        _import(store, files["small"], pack)
        out["lookups_small"] = measure_lookups(store, args.small, args.lookups)
    checks = {
        "first_import_adds_every_row": out["import"]["added"] == args.rows,
        "second_import_adds_nothing": out["again"]["added"] == 0 and out["again"]["already_recorded"] == args.rows,
        "broken_rows_reported_by_line": out["broken"]["reported_lines_match"] and out["broken"]["invalid"] == len(broken_lines),
        "within_target": out["import"]["wall_s"] <= TARGET_S,
    }
    out["checks"] = checks
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows (= subjects) of the export (default 1,000,000)")
    parser.add_argument("--small", type=int, default=1_000, help="subjects of the small store for the lookup comparison")
    parser.add_argument("--lookups", type=int, default=2_000, help="lookups timed per store")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--import-only", action="store_true", help="step 1 only (the first import)")
    parser.add_argument("--sequential", action="store_true", help="prepare each batch only after the one before it is written")
    parser.add_argument("--ahead", action="store_true", help="prepare each batch while the one before it is written, on every store")
    parser.add_argument("--verify", action="store_true", help="time the verification of the store after the first import")
    parser.add_argument("--single", type=int, default=0, help="with --verify: add this many single records, verify again")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    PREPARE_AHEAD["on"] = False if args.sequential else True if args.ahead else None
    os.environ.setdefault("RECGOV_HOME", tempfile.mkdtemp(prefix="recgov-bench-home-"))
    pack = load_pack(resolve_pack("eu-gdpr-dsa"))
    results: dict[str, Any] = {"hardware": hardware(), "rows": args.rows}
    with tempfile.TemporaryDirectory(prefix="recgov-bench-consent-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        files = {"large": make_export(args.rows, folder / "consent.csv"), "small": make_export(args.small, folder / "small.csv")}
        broken_lines = break_rows(files["large"], folder / "consent-broken.csv")
        files["broken"] = folder / "consent-broken.csv"
        results["file"] = {"mb": round(files["large"].stat().st_size / 1e6, 1), "made_s": round(time.perf_counter() - started, 1)}
        engines: dict[str, Callable[[str], Any]] = {}
        if not args.skip_sqlite:
            engines["sqlite"] = lambda name: _sqlite_store(folder, f"{name}.db")
        if not args.skip_postgres:
            admin = os.environ.get("RECGOV_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
            engines["postgresql"] = lambda name: _postgres_store(admin)
        for engine, opened in engines.items():
            print(f"{engine}: {args.rows:,} rows", file=sys.stderr, flush=True)
            results[engine] = run_engine(opened, files, broken_lines, args, pack)
    results["hardware_after"] = hardware()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    hw = results["hardware"]
    print(f"{hw['cpu']}, {hw['cores']} cores, load average {hw['load_average_1m']} (after: {results['hardware_after']['load_average_1m']}), Python {hw['python']}")
    print(f"file: {args.rows:,} rows, {results['file']['mb']} MB of CSV")
    for engine in engines:
        r = results[engine]
        for step in ("verify", "verify_single"):
            if step in r:
                v = r[step]
                print(f"{engine:10s} {step:13s} {v['records']:,} records: consent pass {v['consent_records_wall_s']} s wall "
                      f"({v['records_per_s']:,} records/s), whole store {v['verify_store_wall_s']} s wall, {v['trail_events']:,} trail events")  # fmt: skip
        if args.import_only:
            f = r["import"]
            print(f"{engine:10s} import  {f['wall_s']:7.1f} s wall {f['cpu_s']:7.1f} s cpu {f['rows_per_s']:>9,} rows/s  added {f['added']:,}")
            continue
        for step in ("import", "again", "broken"):
            f = r[step]
            print(f"{engine:10s} {step:7s} {f['wall_s']:7.1f} s wall {f['cpu_s']:7.1f} s cpu {f['rows_per_s']:>9,} rows/s  added {f['added']:,}  already {f['already_recorded']:,}  refused {f['invalid']:,}")
        for size in ("lookups_small", "lookups_large"):
            lk = r[size]
            print(f"{engine:10s} lookups at {lk['subjects']:>9,} subjects: history p50 {lk['history']['p50_ms']} ms p99 {lk['history']['p99_ms']} ms; suppressions p50 {lk['suppressions']['p50_ms']} ms p99 {lk['suppressions']['p99_ms']} ms")
        print(f"{engine:10s} checks: {r['checks']}")


if __name__ == "__main__":
    main()
