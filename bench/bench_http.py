"""HTTP benchmark: governed recommendations per second against a no-op endpoint of the same app, same run.

A real server: ``uvicorn`` in a subprocess (one process, the app's thread pool,
with its default settings: the decision log commits in a child process, and the
model's part of each list is made in another, ``RECGOV_API_COMPUTE=process``),
on an embedded SQLite store, with an ALS model trained by ``recgov train`` on
MovieLens-100K-shaped synthetic data (943 users, 1,682 items, 100k interactions).
Every subject has granted consent to personalization, so the governed lists are
the full path: the key check, the GPC signal, the consent history and the
escalation blocks read from the store, the EU pack's consent decision, model
candidates, re-ranking, explanation tags, the decision record committed
durably (group commit, the request waits for its batch) and the request's own
trail record (``api.recommendations.create``, by the calling key), committed in
the decision's own transaction. The no-op endpoint is ``GET /v1/ping``: the same
key check and nothing else. Both endpoints run in the same server process, with
the same settings, in the same run.

The load comes from ``wrk`` (``apt-get install wrk``) with a fixed number of
connections; each endpoint is measured for ``--seconds`` after a warm-up, in
``--rounds`` alternating rounds. After the run the decision rows written are
counted: they must be at least the lists the server counted as served
(``recgov_decisions_total``), which must be at least the 2xx answers wrk
received; rows beyond the lists served are decisions whose commit outlasted
the request's wait (stored, never answered), reported as such.

Request mixes (``--mixes``): ``governed``, the list above without a consent
signal; ``gpc``, the same list with ``Sec-GPC: 1`` on every request, as a browser
with Global Privacy Control sends it (the first request of a subject records
the opt-out, the next ones find it on record); ``gpc-first``, ``Sec-GPC: 1`` from
a subject never seen before on every request, so that every request records
its opt-out (a consent write) before it is answered (these subjects hold no
grant, so their lists are the non-profiling ones); ``tcf``, the same list with an
IAB TCF v2.2 TC string in the body granting purposes 1, 5 and 6 to the
installation's vendor, as a consent-management platform's page sends it on
every request (served under the EU pack stored with a ``consent.tcf.vendor_id``,
``eu-gdpr-dsa-tcf@1.0.0``; the string's grant is recorded for every served
subject before the run, as their first request would, so the mix measures
requests that find it on record). ``--connections`` takes
several concurrencies (``4,8,16``): each is measured in every round, the no-op
first, and each mix's ratio and p99 are given per concurrency. On a machine
where wrk and the server share two cores, latency at high concurrency is
bounded below by Little's law (connections / rate). Stores (``--stores``): the
embedded SQLite file and PostgreSQL (``--postgres-url``, a server the bench may
create and drop a database on). ``--population N`` adds N more subjects, each
holding a consent record (imported with ``recgov consent import``), so that the
consent reads of the served subjects run against a store of that size.

Reported per endpoint and round: the rate of 2xx answers, latency percentiles,
the server process's CPU time per request, and its child processes' (the
decision writer and the compute process) per request; per store, each mix's
rate as a ratio to the no-op's in the same server.

Run:  python bench/bench_http.py [--seconds 15] [--connections 4,8,16] [--rounds 2] [--mixes governed,gpc,gpc-first,tcf]
      [--stores sqlite,postgresql] [--population 1000000] [--json]

``main`` is long on purpose: it is the benchmark's protocol, read top to bottom
(set up, warm up, measure each path in the same run, report), as its figures are
checked against it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the TC string encoder the tests use

import httpx
import numpy as np
import pandas as pd
import psutil
import psycopg
from _hardware import hardware
from sqlalchemy import func, make_url, select

from audits import open_store
from audits.consent import record_consent
from audits.models import DecisionRecord
from governance.api.keys import create_key
from governance.packs import shipped_pack_path, store_pack
from governance.privacy.consent import record_request_signals
from recommender.loaders import load_data
from tc_strings import tc_string

DATA = "synthetic:n_users=943,n_items=1682,n_interactions=100000,seed=0"
PACK = "eu-gdpr-dsa"

WRK_SCRIPT = """
local subjects = {%(subjects)s}
local n = 0
wrk.method = "%(method)s"
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.headers["Content-Type"] = "application/json"
%(extra_headers)s
request = function()
  if wrk.method == "GET" then
    return wrk.format(nil, "%(path)s")
  end
  n = n + 1
  local body = '{"subject":"' .. %(subject)s .. '","k":10,"model_version":"%(model)s","pack":"%(pack)s"%(body_extra)s}'
  return wrk.format(nil, "%(path)s", nil, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%%d,"duration_us":%%d,"status_errors":%%d,"socket_errors":%%d,"p50_us":%%d,"p99_us":%%d,"mean_us":%%.1f}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cli(*args: str, env: dict[str, str]) -> str:
    """Run ``recgov ARGS`` in a subprocess; its stdout (it must exit 0)."""
    done = subprocess.run([sys.executable, "-c", "from governance.cli import main; main()", *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"recgov {' '.join(args[:2])} failed with exit code {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _wrk(url: str, script: Path, *, seconds: int, connections: int, threads: int) -> dict[str, Any]:
    """One wrk run; its summary (requests, errors, latency percentiles in µs)."""
    done = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "-s", str(script), url],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    match = re.search(r"^WRK_RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        raise SystemExit(f"wrk failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(match.group(1))
    ok = result["requests"] - result["status_errors"]
    seconds_run = result["duration_us"] / 1e6
    return {
        "requests": result["requests"],
        "ok": ok,
        "errors": result["status_errors"] + result["socket_errors"],
        "seconds": round(seconds_run, 2),
        "per_second": round(ok / seconds_run, 1),
        "p50_ms": round(result["p50_us"] / 1e3, 2),
        "p99_ms": round(result["p99_us"] / 1e3, 2),
        "mean_ms": round(result["mean_us"] / 1e3, 2),
    }


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the server's child processes (the decision writer, the compute process)."""
    total = 0.0
    for child in psutil.Process(pid).children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _measured(url: str, script: Path, pid: int, **kwargs: Any) -> dict[str, Any]:
    """A wrk run, with the server's CPU time per answered request, and its child processes'."""
    before, children_before = _cpu_seconds(pid), _children_cpu_seconds(pid)
    result = _wrk(url, script, **kwargs)
    n = max(result["requests"], 1)
    result["server_cpu_ms_per_request"] = round((_cpu_seconds(pid) - before) * 1e3 / n, 2)
    result["children_cpu_ms_per_request"] = round((_children_cpu_seconds(pid) - children_before) * 1e3 / n, 2)
    return result


def _decisions_served(url: str, token: str) -> float:
    """The server's own count of lists served (``recgov_decisions_total``, all outcomes)."""
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30).text
    return sum(float(m.group(1)) for m in re.finditer(r"^recgov_decisions_total\{[^}]*\} (\S+)$", text, re.MULTILINE))


def _decision_rows(store: Any) -> int:
    with store.snapshot() as connection:
        return connection.execute(select(func.count()).select_from(DecisionRecord)).scalar_one()


def _decision_batches(store: Any) -> int:
    """Group commits so far (each batch of decisions is one transaction, named by its trail event)."""
    with store.snapshot() as connection:
        return connection.execute(select(func.count(func.distinct(DecisionRecord.batch_seq)))).scalar_one()


SERVED = "subjects[(n %% #subjects) + 1]"
"""The subject of request ``n`` (Lua): the model's subjects in turn."""
FIRST = 'string.format("g%(run)03d-%%07d", n)'
"""A subject never seen before on every request (Lua; ``run`` keeps each wrk run's subjects apart)."""
TCF_VENDOR = 755
"""The installation's IAB vendor id in the ``tcf`` mix's pack (any id from 1 to 65535 would do)."""
TCF_PACK = "eu-gdpr-dsa-tcf@1.0.0"
"""The ``tcf`` mix's pack: the shipped EU pack stored under another name with ``consent.tcf.vendor_id`` set."""
MIXES = {
    # name: (method, path, extra Lua header lines, subject expression, TC string in the body)
    "noop": ("GET", "/v1/ping", "", SERVED, False),
    "governed": ("POST", "/v1/recommendations", "", SERVED, False),
    "gpc": ("POST", "/v1/recommendations", 'wrk.headers["Sec-GPC"] = "1"', SERVED, False),
    "gpc-first": ("POST", "/v1/recommendations", 'wrk.headers["Sec-GPC"] = "1"', FIRST, False),
    "tcf": ("POST", "/v1/recommendations", "", SERVED, True),
}


def _tcf_pack(packs_dir: Path) -> Any:
    """Store the ``tcf`` mix's pack in the service's pack directory (as ``POST /v1/packs`` would) and return it."""
    text = shipped_pack_path(PACK).read_text(encoding="utf-8")
    name, version = TCF_PACK.split("@")
    for before, after in ((f"  name: {PACK}\n", f"  name: {name}\n"), ("    vendor_id: null\n", f"    vendor_id: {TCF_VENDOR}\n")):
        if text.count(before) != 1:
            raise SystemExit(f"the shipped pack {PACK} no longer reads {before.strip()!r} once; update the bench's tcf mix")
        text = text.replace(before, after)
    loaded, _ = store_pack(packs_dir, text=text)
    if f"{loaded.name}@{loaded.version}" != f"{name}@{version}":
        raise SystemExit(f"the tcf mix's pack is {loaded.name}@{loaded.version}, not {TCF_PACK}")
    return loaded


def _population_file(path: Path, n: int) -> Path:
    """A consent export of ``n`` subjects who are not in the model's data (``p0000000``...), one grant each."""
    ids = pd.Series(np.arange(n)).map("p{:07d}".format)
    pd.DataFrame(
        {"subject": ids, "purpose": "personalization", "status": "granted", "time": "2026-01-01T00:00:00+00:00",
         "source": "banner", "banner_version": "bench-population"}
    ).to_csv(path, index=False)  # fmt: skip
    return path


def _postgres_database(admin_url: str, name: str, *, drop: bool) -> str:
    """Create (or drop) database ``name`` on the server of ``admin_url``; the URL of the new database."""
    url = make_url(admin_url)
    with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop:
            conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


def _start_server(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """uvicorn with the app's factory on a free port, answering /health."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "governance.api.app:app_from_env", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        env=env, cwd=str(Path(__file__).resolve().parents[1]),
    )  # fmt: skip
    deadline = time.monotonic() + 300  # a loaded machine may take minutes to import and start the app
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.terminate()
            raise SystemExit("uvicorn did not start")
        time.sleep(0.2)


def _bench_store(kind: str, db_url: str, tmp: Path, args: argparse.Namespace, say: Any) -> dict[str, Any]:
    """Train, fill and serve one store; measure the no-op and every mix in alternating rounds."""
    home = tmp / f"home-{kind}"
    home.mkdir()
    env = {**os.environ, "RECGOV_HOME": str(home), "RECGOV_DATABASE_URL": db_url}
    for name in ("RECGOV_SIGNING_KEY_PATH", "RECGOV_INSTALLATION_KEY", "RECGOV_ENVIRONMENT"):
        env.pop(name, None)
    os.environ.update({"RECGOV_HOME": env["RECGOV_HOME"], "RECGOV_DATABASE_URL": db_url})

    say(f"[{kind}] training on {DATA} ...")
    started = time.perf_counter()
    trained = json.loads(_cli("train", DATA, "--no-tune", "--no-carbon", "--database-url", db_url, "--json", env=env))
    train_seconds = time.perf_counter() - started
    model_version = trained["model_version"]
    subjects = sorted(map(str, load_data(DATA).events["user_id"].unique()))
    population_seconds = None
    if args.population:
        say(f"[{kind}] importing consent records of {args.population:,} more subjects ...")
        started = time.perf_counter()
        _cli("consent", "import", str(_population_file(tmp / f"population-{kind}.csv", args.population)), "--pack", PACK,
             "--database-url", db_url, "--json", env=env)  # fmt: skip
        population_seconds = round(time.perf_counter() - started, 1)

    store = open_store(db_url)
    with store.session() as session:
        _, token = create_key(session, name="bench-http", role="operator")
        for subject in subjects:
            record_consent(
                session, subject_id=subject, purpose="personalization", status="granted",
                lawful_basis="consent", source="import", actor="bench",
            )  # fmt: skip

    # The tcf mix: a pack that names the installation's vendor, and one TC string (made a day ago) granting it
    # purposes 1, 5 and 6 on consent, as the pack's consent.tcf asks.
    tcf_loaded, tcf_pack = _tcf_pack(home / "packs"), TCF_PACK
    tcf = tc_string(purposes=[1, 5, 6], vendors=[TCF_VENDOR])
    if "tcf" in args.mixes:  # the string on record for every served subject, as after its first request: the mix
        # measures the steady state (a first request records its grant on a worker thread, several times the cost,
        # and a warm-up too short to reach every subject would leave such writes in the measured seconds)
        say(f"[{kind}] recording the tcf mix's TC string for {len(subjects)} subjects ...")
        for subject in subjects:
            record_request_signals(store, subject, pack=tcf_loaded, tcf=tcf, actor="bench")

    server, url = _start_server(env)
    mixes = ["noop", *args.mixes]
    try:
        quoted = ",".join(f'"{s}"' for s in subjects)
        runs = iter(range(1000))

        def script(name: str) -> Path:
            """The wrk script of one run of mix ``name`` (a new one per run: ``gpc-first`` subjects are never reused)."""
            method, path, extra, subject, with_tcf = MIXES[name]
            run = next(runs)
            written = tmp / f"{kind}-{name}-{run}.lua"
            written.write_text(
                WRK_SCRIPT % {"subjects": quoted, "method": method, "token": token, "path": path, "model": model_version,
                              "pack": tcf_pack if with_tcf else PACK, "body_extra": f',"tcf":"{tcf}"' if with_tcf else "",
                              "extra_headers": extra, "subject": subject % {"run": run}}
            )  # fmt: skip
            return written

        for _ in range(5):  # the first lists start the decision writer's process: on a loaded machine they may time out
            probe = httpx.post(f"{url}/v1/recommendations", json={"subject": subjects[0], "k": 10, "model_version": model_version, "pack": PACK}, headers={"Authorization": f"Bearer {token}"}, timeout=60)
            if probe.status_code < 500:
                break
            time.sleep(2)
        if probe.status_code != 200 or probe.json()["mode"] != "personalized":
            raise SystemExit(f"the governed endpoint does not serve a personalized list: {probe.status_code} {probe.text[:500]}")
        if "tcf" in args.mixes:  # the TC string must be judged a grant under the tcf pack, or the mix measures a refusal
            probe = httpx.post(f"{url}/v1/recommendations", json={"subject": subjects[-1], "k": 10, "model_version": model_version, "pack": tcf_pack, "tcf": tcf},
                               headers={"Authorization": f"Bearer {token}"}, timeout=60)  # fmt: skip
            if probe.status_code != 200 or probe.json()["mode"] != "personalized":
                raise SystemExit(f"the tcf mix does not serve a personalized list: {probe.status_code} {probe.text[:500]}")

        rows_before, served_before = _decision_rows(store), _decisions_served(url, token)
        batches_before = _decision_batches(store)
        say(f"[{kind}] warming up ({args.warmup:g} s per endpoint) ...")
        top = max(args.connections)
        warm = {name: _wrk(url, script(name), seconds=args.warmup, connections=top, threads=args.threads) for name in mixes}
        # rounds[n][connections][mix]: every concurrency in every round, the no-op first, so that each
        # mix's ratio is to the no-op measured at the same concurrency moments before.
        rounds: list[dict[int, dict[str, Any]]] = []
        for n in range(args.rounds):
            rounds.append({})
            for connections in args.connections:
                say(f"[{kind}] round {n + 1}/{args.rounds}: {args.seconds:g} s per endpoint, {connections} connections ...")
                rounds[-1][connections] = {
                    name: _measured(url, script(name), server.pid, seconds=args.seconds, connections=connections, threads=args.threads)
                    for name in mixes
                }  # fmt: skip
        # Requests wrk gave up on at its deadline still finish on the server: wait until its count settles,
        # then count the rows (a list is counted only once its row is committed, so the rows come second).
        served, deadline = -1, time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = int(_decisions_served(url, token) - served_before)
            if now == served:
                break
            served = now
        rows_added = _decision_rows(store) - rows_before
        batches_added = _decision_batches(store) - batches_before
    finally:
        server.terminate()
        server.wait(timeout=30)
        store.close()

    governed_ok = sum(warm[m]["ok"] for m in args.mixes) + sum(rnd[c][m]["ok"] for rnd in rounds for c in rnd for m in args.mixes)
    per_second: dict[int, dict[str, float]] = {}
    ratio: dict[int, dict[str, float]] = {}
    p99: dict[int, dict[str, float]] = {}
    for c in args.connections:
        per_second[c] = {m: round(statistics.mean(rnd[c][m]["per_second"] for rnd in rounds), 1) for m in mixes}
        ratio[c] = {m: round(per_second[c][m] / per_second[c]["noop"], 3) for m in args.mixes}
        p99[c] = {m: max(rnd[c][m]["p99_ms"] for rnd in rounds) for m in mixes}
    return {
        "store": kind,
        "model_version": model_version,
        "train_seconds": round(train_seconds, 1),
        "population": args.population,
        "population_import_seconds": population_seconds,
        "rounds": rounds,
        "per_second": per_second,
        "ratio": ratio,
        "p99_ms": p99,
        "durability": {
            "governed_2xx": governed_ok,
            "served_by_server": served,
            "decision_rows_written": rows_added,
            # More rows than lists served: decisions whose commit outlasted the request's wait (the list was
            # not answered, the decision is stored as one never served); never fewer.
            "rows_of_lists_not_served": rows_added - served,
            "every_served_list_has_its_row": rows_added >= served >= governed_ok,
            # The decision writer's group commits: its cost per list is mostly per batch.
            "decision_batches": batches_added,
            "lists_per_batch": round(rows_added / batches_added, 1) if batches_added else None,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="Measured seconds per endpoint and round.")
    parser.add_argument("--warmup", type=int, default=3, help="Warm-up seconds per endpoint (not counted).")
    parser.add_argument("--connections", default="16", help="Concurrent HTTP connections; several (e.g. 4,8,16) are each measured in every round.")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (the load generator shares the machine).")
    parser.add_argument("--rounds", type=int, default=2, help="Alternating rounds (no-op, then each mix) per run.")
    parser.add_argument("--mixes", default="governed,gpc", help=f"Request mixes beside the no-op: {', '.join(m for m in MIXES if m != 'noop')}.")
    parser.add_argument("--stores", default="sqlite", help="sqlite, postgresql, or both (comma-separated).")
    parser.add_argument("--postgres-url", default=os.environ.get("RECGOV_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
                        help="A PostgreSQL server the bench creates (and drops) its own database on.")  # fmt: skip
    parser.add_argument("--population", type=int, default=0, help="More subjects holding consent records in the store (e.g. 1000000).")
    parser.add_argument("--json", action="store_true", help="Print JSON only.")
    args = parser.parse_args()
    args.mixes = [m.strip() for m in args.mixes.split(",") if m.strip()]
    try:
        args.connections = [int(c) for c in args.connections.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--connections must be positive integers separated by commas; got {args.connections!r}")
    if not args.connections or min(args.connections) < 1 or min(args.connections) < args.threads:
        parser.error(f"--connections must be positive integers, each at least --threads ({args.threads}); got {args.connections}")
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = [m for m in args.mixes if m not in MIXES or m == "noop"] + [s for s in stores if s not in ("sqlite", "postgresql")]
    if unknown or not args.mixes or not stores:
        parser.error(f"unknown or missing mix/store: {', '.join(unknown) or 'none given'}")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed; install it with 'apt-get install -y wrk'")

    def say(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    results = []
    with tempfile.TemporaryDirectory(prefix="recgov-bench-http-") as tmp:
        for kind in stores:
            if kind == "sqlite":
                results.append(_bench_store(kind, f"sqlite:///{Path(tmp) / 'store.db'}", Path(tmp), args, say))
                continue
            name = f"recgov_bench_http_{os.getpid()}"
            db_url = _postgres_database(args.postgres_url, name, drop=False)
            try:
                results.append(_bench_store(kind, db_url, Path(tmp), args, say))
            finally:
                _postgres_database(args.postgres_url, name, drop=True)

    result = {
        "benchmark": "http",
        "hardware": hardware(),
        "data": DATA,
        "pack": PACK,
        "server": "uvicorn, 1 process (a child process commits the decisions, another makes the lists' model part), decision log with group commit",
        "load": {"tool": "wrk", "connections": args.connections, "threads": args.threads, "seconds": args.seconds, "rounds": args.rounds},
        "stores": results,
        "target": {"ratio_at_least": 0.5, "p99_ms_below": 50},
    }
    ok = all(r["durability"]["every_served_list_has_its_row"] for r in results)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0 if ok else 1
    hw = result["hardware"]
    print(f"machine: {hw['cpu']}, {hw['cores']} cores, load {hw['load_average_1m']}, Python {hw['python']}")
    for r in results:
        print(f"\nstore {r['store']}, {r['population']:,} more subjects holding consent records" + (f" (imported in {r['population_import_seconds']} s)" if r["population"] else ""))
        print(f"{'round':>5} {'conns':>5} {'endpoint':>9} {'requests':>9} {'errors':>6} {'per s':>8} {'p50 ms':>7} {'p99 ms':>7} {'server CPU ms/req':>17} {'children CPU ms/req':>19}")
        for n, rnd in enumerate(r["rounds"], 1):
            for connections, measured in rnd.items():
                for name, m in measured.items():
                    print(
                        f"{n:>5} {connections:>5} {name:>9} {m['requests']:>9} {m['errors']:>6} {m['per_second']:>8.1f} {m['p50_ms']:>7.2f} "
                        f"{m['p99_ms']:>7.2f} {m['server_cpu_ms_per_request']:>17.2f} {m['children_cpu_ms_per_request']:>19.2f}"
                    )
        for connections, ratios in r["ratio"].items():
            p99 = r["p99_ms"][connections]
            for mix, ratio in ratios.items():
                print(f"{connections:>3} connections: {mix} / no-op {ratio:.3f} (target >= 0.5); p99 {p99[mix]:.1f} ms (target < 50), no-op p99 {p99['noop']:.1f} ms")
        d = r["durability"]
        print(
            f"decision rows written {d['decision_rows_written']}, lists served {d['served_by_server']}, 2xx received {d['governed_2xx']}, "
            f"rows of lists not served (commit outlasted the wait) {d['rows_of_lists_not_served']}: {'ok' if d['every_served_list_has_its_row'] else 'MISMATCH'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
