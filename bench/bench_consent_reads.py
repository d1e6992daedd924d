"""Consent reads of the serving path at two store sizes: a subject's history and erasure, uncached and cached.

What a governed list reads per request (:func:`audits.consent.read_consent_state`
in a read-only snapshot of :class:`governance.api.reads.FastReads`): the
subject's secret, consent rows and latest suppression (three index lookups, the
sealed evidence opened), or, through the serving process's
:class:`~audits.consent.ConsentReadCache`, the version statement alone when the
subject's state is unchanged. Each store holds ``N`` subjects with one grant
each, imported with ``recgov consent import``; the same ``--sample`` subjects
are read at every size, in a random order, each in a snapshot of its own:

* ``uncached``: every read goes to the store;
* ``miss``: a fresh cache (the version statement, then the reads);
* ``hit``: the same subjects again (the version statement only).

Reported: microseconds per read (median of ``--repeats`` passes) per store and
size; a read must cost about the same at every size (every lookup is indexed).

Run:  python bench/bench_consent_reads.py [--sizes 1000,1000000] [--stores sqlite,postgresql] [--sample 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hardware import hardware
from bench_http import _cli, _population_file, _postgres_database

from audits import open_store
from audits.consent import ConsentReadCache, read_consent_state
from governance.api.reads import FastReads

PACK = "eu-gdpr-dsa"


def _timed(reads: FastReads, subjects: list[str], read: Any) -> float:
    """Microseconds per read of ``subjects``, each in a snapshot of its own."""
    started = time.perf_counter()
    for subject in subjects:
        with reads.snapshot() as snapshot:
            read(snapshot, subject)
    return (time.perf_counter() - started) * 1e6 / len(subjects)


def _bench(kind: str, db_url: str, size: int, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "RECGOV_HOME": str(tmp / f"home-{kind}-{size}"), "RECGOV_DATABASE_URL": db_url}
    Path(env["RECGOV_HOME"]).mkdir()
    for name in ("RECGOV_SIGNING_KEY_PATH", "RECGOV_INSTALLATION_KEY", "RECGOV_ENVIRONMENT"):
        env.pop(name, None)
    os.environ.update({"RECGOV_HOME": env["RECGOV_HOME"], "RECGOV_DATABASE_URL": db_url})
    started = time.perf_counter()
    _cli("consent", "import", str(_population_file(tmp / f"population-{kind}-{size}.csv", size)), "--pack", PACK, "--database-url", db_url, "--json", env=env)
    imported = time.perf_counter() - started
    store = open_store(db_url)
    try:
        reads = FastReads(store.engine)
        rng = random.Random(0)
        sample = [f"p{n:07d}" for n in rng.sample(range(min(size, 1000)), min(args.sample, size, 1000))]
        sample += [f"never-{n}" for n in range(len(sample) // 10)]  # subjects without a record
        rng.shuffle(sample)
        with reads.snapshot() as snapshot:  # the installation key checked, statements compiled
            assert read_consent_state(snapshot, sample[0], cached=False).history(), "the imported grant is read"
        passes: dict[str, list[float]] = {"uncached": [], "miss": [], "hit": []}
        for _ in range(args.repeats):
            passes["uncached"].append(_timed(reads, sample, lambda s, subject: read_consent_state(s, subject, cached=False).history()))
            cache = ConsentReadCache()
            passes["miss"].append(_timed(reads, sample, lambda s, subject: cache.read(s, subject).history()))
            passes["hit"].append(_timed(reads, sample, lambda s, subject: cache.read(s, subject).history()))
            assert cache.hits == len(sample) and cache.misses == len(sample)
    finally:
        store.close()
    return {"store": kind, "subjects": size, "import_seconds": round(imported, 1), "reads": len(sample),
            "us_per_read": {name: round(statistics.median(values), 1) for name, values in passes.items()}}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,1000000", help="Subjects holding consent records, per store (comma-separated).")
    parser.add_argument("--stores", default="sqlite", help="sqlite, postgresql, or both (comma-separated).")
    parser.add_argument("--postgres-url", default=os.environ.get("RECGOV_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--sample", type=int, default=1000, help="Subjects read per pass (at most 1000: the same ones at every size).")
    parser.add_argument("--repeats", type=int, default=3, help="Passes per mode (the median is reported).")
    parser.add_argument("--json", action="store_true", help="Print JSON only.")
    args = parser.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes must be integers separated by commas; got {args.sizes!r}")
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if not sizes or min(sizes) < 1 or args.sample < 1 or args.repeats < 1 or any(s not in ("sqlite", "postgresql") for s in stores):
        parser.error("sizes, --sample and --repeats must be positive; stores: sqlite, postgresql")
    results = []
    with tempfile.TemporaryDirectory(prefix="recgov-bench-consent-reads-") as tmp:
        for kind in stores:
            for size in sizes:
                if kind == "sqlite":
                    results.append(_bench(kind, f"sqlite:///{Path(tmp) / f'store-{size}.db'}", size, Path(tmp), args))
                    continue
                name = f"recgov_bench_reads_{os.getpid()}_{size}"
                db_url = _postgres_database(args.postgres_url, name, drop=False)
                try:
                    results.append(_bench(kind, db_url, size, Path(tmp), args))
                finally:
                    _postgres_database(args.postgres_url, name, drop=True)
    result = {"benchmark": "consent_reads", "hardware": hardware(), "results": results}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    hw = result["hardware"]
    print(f"machine: {hw['cpu']}, {hw['cores']} cores, load {hw['load_average_1m']}, Python {hw['python']}")
    print(f"{'store':>10} {'subjects':>10} {'reads':>6} {'uncached us':>12} {'miss us':>8} {'hit us':>7}")
    for r in results:
        us = r["us_per_read"]
        print(f"{r['store']:>10} {r['subjects']:>10,} {r['reads']:>6} {us['uncached']:>12.1f} {us['miss']:>8.1f} {us['hit']:>7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
