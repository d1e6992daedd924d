"""Hostile-input benchmark: ``/health`` latency while clients send hostile packs and oversized audit specs.

A real server: ``uvicorn`` in a subprocess on 127.0.0.1 (its default settings),
on an embedded SQLite store, with an auditor key. Once ``/ready`` answers 200,
``/health`` is timed alone (``--seconds``, one request every 10 ms), then again
while ``--clients`` hostile clients, in a process of their own (so that they
share no interpreter lock with the server or the timing client), send in turn:

* an alias bomb (anchors of anchors expanding to 10^5 strings),
* a pack nested 100,000 brackets deep,
* a pack over the size limit (about 360 KB),
* an audit asking for two billion synthetic events,
* a JSON body of 200,000 nested arrays.

Every hostile answer must be a 4xx; the report gives the answers by status, the
``/health`` percentiles alone and under attack, and a line for BENCHMARKS.md.
Loops are bounded by time; nothing listens beyond 127.0.0.1.

Run:  python bench/bench_hostile.py [--seconds 10] [--clients 4] [--json]
The attacking half alone (used by the tests):  python bench/bench_hostile.py attack URL TOKEN SECONDS [CLIENTS]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx

HEADER = "apiVersion: recgov/v1\nmetadata: {name: hostile, version: 1.0.0, owner: red team}\n"
YAML = {"Content-Type": "application/yaml"}
HEALTH_EVERY_S = 0.01


def alias_bomb(levels: int = 5, width: int = 10) -> str:
    """A pack whose anchors of anchors expand to ``width ** levels`` strings."""
    lines = [HEADER.rstrip("\n"), 'l0: &l0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def hostile_requests(token: str) -> list[tuple[str, dict[str, Any]]]:
    """The hostile requests, in the order the clients send them (each must be answered 4xx)."""
    auth = {"Authorization": f"Bearer {token}"}
    return [
        ("/v1/packs/validate", {"content": alias_bomb(), "headers": {**YAML, **auth}}),
        ("/v1/packs/validate", {"content": "x: " + "[" * 100_000, "headers": {**YAML, **auth}}),
        ("/v1/packs/validate", {"content": HEADER + "# pad\n" * 60_000, "headers": {**YAML, **auth}}),
        ("/v1/audits", {"json": {"pack": "baseline", "data": "synthetic:n_interactions=2000000000"}, "headers": auth}),
        ("/v1/audits", {"content": b"[" * 200_000, "headers": {"Content-Type": "application/json", **auth}}),
    ]


def attack(url: str, token: str, seconds: float, clients: int) -> Counter[int]:
    """Send the hostile requests from ``clients`` threads for ``seconds``; the answers by status."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client(offset: int) -> None:
        requests = hostile_requests(token)
        with httpx.Client(base_url=url, timeout=60) as http:
            n = offset
            while time.monotonic() < end:
                path, kwargs = requests[n % len(requests)]
                status = http.post(path, **kwargs).status_code
                with lock:
                    statuses[status] += 1
                n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def time_health(url: str, seconds: float) -> list[float]:
    """``/health`` latencies (seconds), one request every 10 ms for ``seconds``."""
    latencies = []
    with httpx.Client(base_url=url, timeout=30) as http:
        http.get("/health")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.perf_counter()
            if http.get("/health").status_code != 200:
                raise SystemExit("/health did not answer 200")
            latencies.append(time.perf_counter() - began)
            time.sleep(HEALTH_EVERY_S)
    return latencies


def percentiles(latencies: list[float]) -> dict[str, float]:
    """p50, p99 and max, in milliseconds."""
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"n": len(latencies), "p50_ms": round(cuts[49] * 1000, 2), "p99_ms": round(cuts[98] * 1000, 2), "max_ms": round(max(latencies) * 1000, 2)}


def start_attack(url: str, token: str, seconds: float, clients: int) -> subprocess.Popen[str]:
    """The attacking half in a process of its own; its stdout is the JSON of the answers by status."""
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "attack", url, token, str(seconds), str(clients)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the server did not become ready")
        time.sleep(0.2)


def run(seconds: float, clients: int) -> dict[str, Any]:
    """Start a server, time /health alone and under attack; the report."""
    from _hardware import hardware

    from audits import open_store
    from governance.api.keys import create_key

    with tempfile.TemporaryDirectory(prefix="recgov-bench-hostile-") as tmp:
        db_url = f"sqlite:///{Path(tmp) / 'store.db'}"
        env = {**os.environ, "RECGOV_HOME": str(Path(tmp) / "home"), "RECGOV_DATABASE_URL": db_url}
        for name in ("RECGOV_SIGNING_KEY_PATH", "RECGOV_INSTALLATION_KEY", "RECGOV_ENVIRONMENT"):
            env.pop(name, None)
        store = open_store(db_url)
        with store.session() as session:
            _, token = create_key(session, name="bench-hostile", role="auditor")
        store.close()
        url = f"http://127.0.0.1:{_free_port()}"
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "governance.api.app:app_from_env", "--host", "127.0.0.1",
             "--port", url.rsplit(":", 1)[1], "--log-level", "warning", "--no-access-log"],
            env=env, cwd=str(Path(__file__).resolve().parents[1]),
        )  # fmt: skip
        try:
            _wait_ready(url, server)
            alone = percentiles(time_health(url, seconds))
            attacker = start_attack(url, token, seconds + 1, clients)
            time.sleep(0.5)  # the attack under way
            under_attack = percentiles(time_health(url, seconds))
            out, _ = attacker.communicate(timeout=seconds + 120)
            statuses = {int(k): v for k, v in json.loads(out).items()}
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {
        "benchmark": "hostile",
        "server": "uvicorn, 1 process, default settings, SQLite",
        "clients": clients,
        "seconds": seconds,
        "hostile_answers": statuses,
        "all_4xx": all(400 <= s < 500 for s in statuses),
        "health_alone": alone,
        "health_under_attack": under_attack,
        "hardware": hardware(),
    }


def benchmarks_line(report: dict[str, Any]) -> str:
    """The line for BENCHMARKS.md."""
    hw, attacked, alone = report["hardware"], report["health_under_attack"], report["health_alone"]
    n = sum(report["hostile_answers"].values())
    return (
        f"| {hw['cpu']} ({hw['cores']} cores, load {hw['load_average_1m']}) | {report['clients']} hostile clients, "
        f"{n} hostile requests, {'all 4xx' if report['all_4xx'] else 'NOT all 4xx'} "
        f"| /health p50 {attacked['p50_ms']} ms, p99 {attacked['p99_ms']} ms (alone: p99 {alone['p99_ms']} ms) |"
    )


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "attack":
        url, token, seconds = sys.argv[2], sys.argv[3], float(sys.argv[4])
        clients = int(sys.argv[5]) if len(sys.argv) > 5 else 3
        print(json.dumps(attack(url, token, seconds, clients)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="Seconds /health is timed, alone and under attack.")
    parser.add_argument("--clients", type=int, default=4, help="Hostile clients (threads of the attacking process).")
    parser.add_argument("--json", action="store_true", help="Print JSON only.")
    args = parser.parse_args()
    report = run(args.seconds, args.clients)
    report["benchmarks_line"] = benchmarks_line(report)
    print(json.dumps(report, indent=None if args.json else 2))
    return 0 if report["all_4xx"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
