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
counted: they must equal the lists the server counted as served
(``recgov_decisions_total``), and be at least the 2xx answers wrk received.

Reported per endpoint and round: the rate of 2xx answers, latency percentiles,
the server process's CPU time per request, and its child processes' (the
decision writer and the compute process) per request.

Run:  python bench/bench_http.py [--seconds 15] [--connections 16] [--rounds 2] [--json]

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

import httpx
import psutil
from _hardware import hardware
from sqlalchemy import func, select

from audits import open_store
from audits.consent import record_consent
from audits.models import DecisionRecord
from governance.api.keys import create_key
from recommender.loaders import load_data

DATA = "synthetic:n_users=943,n_items=1682,n_interactions=100000,seed=0"
PACK = "eu-gdpr-dsa"

WRK_SCRIPT = """
local subjects = {%(subjects)s}
local n = 0
wrk.method = "%(method)s"
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.headers["Content-Type"] = "application/json"
request = function()
  if wrk.method == "GET" then
    return wrk.format(nil, "%(path)s")
  end
  n = n + 1
  local body = '{"subject":"' .. subjects[(n %% #subjects) + 1] .. '","k":10,"model_version":"%(model)s","pack":"%(pack)s"}'
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="Measured seconds per endpoint and round.")
    parser.add_argument("--warmup", type=int, default=3, help="Warm-up seconds per endpoint (not counted).")
    parser.add_argument("--connections", type=int, default=16, help="Concurrent HTTP connections.")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (the load generator shares the machine).")
    parser.add_argument("--rounds", type=int, default=2, help="Alternating rounds (no-op, governed) per run.")
    parser.add_argument("--json", action="store_true", help="Print JSON only.")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed; install it with 'apt-get install -y wrk'")

    def say(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="recgov-bench-http-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        db_url = f"sqlite:///{Path(tmp) / 'store.db'}"
        env = {**os.environ, "RECGOV_HOME": str(home), "RECGOV_DATABASE_URL": db_url}
        for name in ("RECGOV_SIGNING_KEY_PATH", "RECGOV_INSTALLATION_KEY", "RECGOV_ENVIRONMENT"):
            env.pop(name, None)
        os.environ.update({"RECGOV_HOME": env["RECGOV_HOME"], "RECGOV_DATABASE_URL": db_url})

        say(f"training on {DATA} ...")
        started = time.perf_counter()
        trained = json.loads(_cli("train", DATA, "--no-tune", "--no-carbon", "--database-url", db_url, "--json", env=env))
        train_seconds = time.perf_counter() - started
        model_version = trained["model_version"]
        subjects = sorted(map(str, load_data(DATA).events["user_id"].unique()))

        store = open_store(db_url)
        with store.session() as session:
            _, token = create_key(session, name="bench-http", role="operator")
            for subject in subjects:
                record_consent(
                    session, subject_id=subject, purpose="personalization", status="granted",
                    lawful_basis="consent", source="import", actor="bench",
                )  # fmt: skip

        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "governance.api.app:app_from_env", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--no-access-log"],
            env=env, cwd=str(Path(__file__).resolve().parents[1]),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("uvicorn did not start")
                time.sleep(0.2)
            quoted = ",".join(f'"{s}"' for s in subjects)
            scripts = {}
            for name, method, path in (("noop", "GET", "/v1/ping"), ("governed", "POST", "/v1/recommendations")):
                scripts[name] = Path(tmp) / f"{name}.lua"
                scripts[name].write_text(WRK_SCRIPT % {"subjects": quoted, "method": method, "token": token, "path": path, "model": model_version, "pack": PACK})
            probe = httpx.post(f"{url}/v1/recommendations", json={"subject": subjects[0], "k": 10, "model_version": model_version, "pack": PACK}, headers={"Authorization": f"Bearer {token}"}, timeout=60)
            if probe.status_code != 200 or probe.json()["mode"] != "personalized":
                raise SystemExit(f"the governed endpoint does not serve a personalized list: {probe.status_code} {probe.text[:500]}")

            rows_before, served_before = _decision_rows(store), _decisions_served(url, token)
            say(f"warming up ({args.warmup:g} s per endpoint) ...")
            warm = [_wrk(url, scripts[name], seconds=args.warmup, connections=args.connections, threads=args.threads) for name in ("noop", "governed")]
            rounds: list[dict[str, Any]] = []
            for n in range(args.rounds):
                say(f"round {n + 1}/{args.rounds}: {args.seconds:g} s per endpoint, {args.connections} connections ...")
                rounds.append({name: _measured(url, scripts[name], server.pid, seconds=args.seconds, connections=args.connections, threads=args.threads) for name in ("noop", "governed")})
            time.sleep(0.5)  # requests wrk gave up on at its deadline still finish on the server
            rows_added = _decision_rows(store) - rows_before
            served = int(_decisions_served(url, token) - served_before)
        finally:
            server.terminate()
            server.wait(timeout=30)
            store.close()

    governed_ok = warm[1]["ok"] + sum(r["governed"]["ok"] for r in rounds)
    noop_rate = statistics.mean(r["noop"]["per_second"] for r in rounds)
    governed_rate = statistics.mean(r["governed"]["per_second"] for r in rounds)
    result = {
        "benchmark": "http",
        "hardware": hardware(),
        "data": DATA,
        "pack": PACK,
        "model_version": model_version,
        "train_seconds": round(train_seconds, 1),
        "server": "uvicorn, 1 process (a child process commits the decisions, another makes the lists' model part), SQLite (WAL), decision log with group commit",
        "load": {"tool": "wrk", "connections": args.connections, "threads": args.threads, "seconds": args.seconds, "rounds": args.rounds},
        "rounds": rounds,
        "noop_per_second": round(noop_rate, 1),
        "governed_per_second": round(governed_rate, 1),
        "ratio": round(governed_rate / noop_rate, 3),
        "target_ratio": 0.5,
        "durability": {
            "governed_2xx": governed_ok,
            "served_by_server": served,
            "decision_rows_written": rows_added,
            "every_served_list_has_its_row": rows_added == served and rows_added >= governed_ok,
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        hw = result["hardware"]
        print(f"machine: {hw['cpu']}, {hw['cores']} cores, load {hw['load_average_1m']}, Python {hw['python']}")
        print(f"{'round':>5} {'endpoint':>9} {'requests':>9} {'errors':>6} {'per s':>8} {'p50 ms':>7} {'p99 ms':>7} {'server CPU ms/req':>17} {'children CPU ms/req':>19}")
        for n, r in enumerate(rounds, 1):
            for name in ("noop", "governed"):
                m = r[name]
                print(
                    f"{n:>5} {name:>9} {m['requests']:>9} {m['errors']:>6} {m['per_second']:>8.1f} {m['p50_ms']:>7.2f} "
                    f"{m['p99_ms']:>7.2f} {m['server_cpu_ms_per_request']:>17.2f} {m['children_cpu_ms_per_request']:>19.2f}"
                )
        print(f"governed / no-op: {result['ratio']:.3f} (target >= 0.5)")
        d = result["durability"]
        print(f"decision rows written {d['decision_rows_written']}, lists served {d['served_by_server']}, 2xx received {d['governed_2xx']}: {'ok' if d['every_served_list_has_its_row'] else 'MISMATCH'}")
    return 0 if result["durability"]["every_served_list_has_its_row"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
