"""Red team: hostile input cannot stall the service (real uvicorn, real HTTP, SQLite and PostgreSQL).

Each test names the hole it pins. The holes, as found:

* a pack was parsed on the event loop, with no limit on size, depth or aliases:
  a "billion laughs" pack of a few hundred bytes expanded on the loop while
  ``/health`` waited, and brackets or mappings nested thousands deep ended in a
  ``RecursionError``, a 500 (an alias inside the node it names is pinned too,
  as a guard: ruamel did not build that cycle);
* a request body had no size limit: a declared ten gigabytes was waited for, and
  a chunked body was read whole, however long;
* an audit could ask for any synthetic size the generator accepts (two billion
  events) or any file under ``$RECGOV_HOME/data``: the job was queued (202) and
  ran out the server's memory and time;
* nothing said when the service could serve: no readiness endpoint beside ``/health``.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from governance.api.errors import PROBLEM_JSON
from governance.api.limits import BODY_TOO_LARGE
from governance.api.audit_jobs import SPEC_TOO_LARGE
from governance.api.routes.packs import PACK_TOO_LARGE
from governance.api.settings import ApiSettings
from governance.located import ALIAS_CYCLE, TOO_DEEP, TOO_MANY_NODES, UNKNOWN_TAG, YAML_LIMITS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_hostile import alias_bomb, percentiles, start_attack, time_health

HEADER = "apiVersion: recgov/v1\nmetadata: {name: hostile, version: 1.0.0, owner: red team}\n"
YAML = {"Content-Type": "application/yaml"}
LIMIT = ApiSettings().max_body_bytes
HEALTH_P99_MS = 100
ATTACK_S = 4.0


@pytest.fixture(scope="module")
def ready(server):
    """The module's server once ``/ready`` says it can serve (its helper processes started)."""
    with server.client() as client:
        deadline = time.monotonic() + 120
        while (answer := client.get("/ready")).status_code != 200:
            assert answer.status_code == 503 and time.monotonic() < deadline, answer.text
            time.sleep(0.1)
    return server


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == PROBLEM_JSON
    return response.json()


def test_an_alias_bomb_is_refused_cheaply_with_its_reason(ready) -> None:
    """Hole: the pack's aliases were expanded (10^6 values here) on the event loop before validation."""
    with ready.client("viewer") as client:
        began = time.monotonic()
        response = client.post("/v1/packs/validate", content=alias_bomb(levels=6), headers=YAML)
        took = time.monotonic() - began
    body = _problem(response, 422)
    assert body["type"] == "https://recgov.dev/problems/invalid-pack"
    assert body["errors"][0]["message"] == TOO_MANY_NODES.format(limit=YAML_LIMITS.max_nodes)
    assert body["errors"][0]["line"] == 8  # the alias that crossed the limit
    assert took < 1.0, f"the bomb took {took:.2f} s to refuse"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x: " + "[" * 100_000, TOO_DEEP.format(limit=YAML_LIMITS.max_depth)),
        ("x: " + "{a: " * 20_000, TOO_DEEP.format(limit=YAML_LIMITS.max_depth)),
        (HEADER + "x: &loop [1, *loop]\n", ALIAS_CYCLE.format(anchor="loop")),
        (HEADER + "quality:\n  k: !!python/object/apply:os.system [echo pwned]\n", UNKNOWN_TAG.format(tag="!!python/object/apply:os.system")),
    ],
    ids=["100k-nested-sequences", "20k-nested-mappings", "alias-cycle", "python-tag"],
)
def test_deep_or_cyclic_yaml_is_a_located_422_never_a_500(server, text: str, message: str) -> None:
    """Hole: composing such a tree recursed past Python's limit: a RecursionError, a 500 (the cycle: a guard)."""
    with server.client("admin") as client:
        for path in ("/v1/packs/validate", "/v1/packs"):
            body = _problem(client.post(path, content=text, headers=YAML), 422)
            assert [e["message"] for e in body["errors"]] == [message]


def test_a_pack_over_the_size_limit_is_a_413_and_is_not_read_whole(server) -> None:
    """Hole: a pack of any size (under no limit) was read and parsed."""
    big = HEADER + "# padding\n" * (YAML_LIMITS.max_bytes // 10 + 1)
    with server.client("admin") as client:
        for path in ("/v1/packs/validate", "/v1/packs"):
            body = _problem(client.post(path, content=big, headers=YAML), 413)
            assert body["detail"] == PACK_TOO_LARGE.format(limit=YAML_LIMITS.max_bytes)
            assert body["title"] == "Content too large"


def _complete(answer: bytes) -> bool:
    """Whether ``answer`` holds a whole response: its headers and as many body bytes as they declare."""
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return True


def _raw_request(server, head: str, chunks: list[bytes], *, wait_s: float = 10.0) -> bytes:
    """Send ``head`` and ``chunks`` on a raw socket, never finishing the body; what the server answers."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as sock:
        sock.sendall(head.encode("ascii"))
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except OSError:  # the server answered and closed: stop sending
                break
        answer = b""
        deadline = time.monotonic() + wait_s
        while not _complete(answer) and time.monotonic() < deadline:
            try:
                part = sock.recv(65536)
            except (TimeoutError, OSError):
                break
            if not part:
                break
            answer += part
        return answer


def test_a_declared_body_over_the_limit_is_a_413_before_it_is_sent(server) -> None:
    """Hole: a request declaring 10 GB was waited for (the body is never sent here: the answer must not need it)."""
    head = (
        f"POST /v1/audits HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {server.tokens['auditor']}\r\n"
        "Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
    )
    answer = _raw_request(server, head, [b"{"])
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert PROBLEM_JSON.encode() in answer
    assert BODY_TOO_LARGE.format(limit=LIMIT).encode() in answer


@pytest.mark.parametrize("path", ["/v1/audits", "/v1/consent", "/v1/packs/validate"])
def test_a_streamed_body_is_cut_off_with_a_413_as_it_passes_the_limit(server, path: str) -> None:
    """Hole: a chunked body was read to its end, however long (here it never ends: the 413 must come first)."""
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {server.tokens['admin']}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = b"[" * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * (LIMIT // len(piece) + 2)
    answer = _raw_request(server, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"pack": "baseline", "data": "synthetic:n_interactions=2000000000"}, "data"),
        ({"pack": "baseline", "data": "synthetic:n_users=50000000"}, "data"),
        ({"pack": "baseline", "data": "synthetic", "baseline": "synthetic:n_items=10000000"}, "baseline"),
    ],
    ids=["events", "users", "baseline-items"],
)
def test_an_oversized_audit_spec_is_a_422_and_never_queued(server, body: dict[str, Any], field: str) -> None:
    """Hole: any synthetic size the generator accepts was queued (202) and generated in the server."""
    with server.client("auditor") as client:
        before = client.get("/v1/audits").json()["total"]
        problem = _problem(client.post("/v1/audits", json=body), 422)
        assert client.get("/v1/audits").json()["total"] == before
    assert [e["field"] for e in problem["errors"]] == [field]
    assert problem["errors"][0]["message"].endswith(SPEC_TOO_LARGE.split("}")[-1]) and "RECGOV_AUDIT_MAX_" in problem["errors"][0]["message"]


def test_an_audit_data_file_over_the_limit_is_a_422(server) -> None:
    """Hole: any file under $RECGOV_HOME/data, however large, was queued for loading in the server."""
    data_dir = server.home / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    huge = data_dir / "huge.csv"
    with huge.open("wb") as handle:  # sparse: no disk is used
        handle.truncate(ApiSettings().audit_max_file_bytes + 1)
    try:
        with server.client("auditor") as client:
            problem = _problem(client.post("/v1/audits", json={"pack": "baseline", "data": "huge.csv"}), 422)
    finally:
        huge.unlink()
    assert problem["errors"][0]["field"] == "data" and "RECGOV_AUDIT_MAX_FILE_BYTES" in problem["errors"][0]["message"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"[" * 100_000, "application/json"),
        (b'{"subject": "\xff\xfe", "purpose": "personalization"}', "application/json"),
        (b'{"subject": "u1", "purpose": "personalization", "status": "granted"}', "text/plain"),
        (b"<consent subject='u1'/>", "application/xml"),
        (b'{"subject": "u1", "purpose": "personalization", "status": "granted", "basis": ' + b"9" * 100_000 + b"}", "application/json"),
        (b'{"subject": "u1", "purpose": "personalization", "status": "granted", "basis": 1e999999}', "application/json"),
    ],
    ids=["100k-nested-arrays", "invalid-utf8", "text-plain", "xml", "huge-integer", "huge-float"],
)
def test_deeply_nested_or_malformed_json_is_a_4xx_never_a_500(server, content: bytes, content_type: str) -> None:
    """Pins: JSON bodies that break parsers (depth, encoding, type, number size) are answered 4xx."""
    with server.client("admin") as client:
        for path in ("/v1/consent", "/v1/audits", "/v1/recommendations"):
            response = client.post(path, content=content, headers={"Content-Type": content_type})
            assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:300])
            assert response.headers["content-type"] == PROBLEM_JSON


def test_ready_says_what_it_waits_for_and_then_a_governed_list_is_served(server) -> None:
    """Hole: no readiness endpoint; a client had only /health, which answers before the service can serve."""
    with server.client() as client:  # open, as /health is
        deadline = time.monotonic() + 60
        while (ready := client.get("/ready")).status_code != 200:
            assert ready.status_code == 503 and time.monotonic() < deadline, ready.text
            time.sleep(0.1)
    body = ready.json()
    assert body["ready"] is True
    assert {"store", "migrations", "decision_log", "compute", "pack_parser"} <= set(body["checks"])
    assert all(check["ok"] for check in body["checks"].values())
    # Lists are made in the compute process on either store (PostgreSQL's awaited lists too): /ready says so on both.
    assert body["checks"]["compute"]["detail"] == "process up", body["checks"]["compute"]
    with server.client("operator") as client:
        served = client.post("/v1/recommendations", json={"subject": "u000004", "k": 3, "model_version": server.model_version, "pack": "baseline"})
    assert served.status_code == 200, served.text


def test_health_p99_stays_under_100ms_while_hostile_requests_are_refused(ready) -> None:
    """Hole: hostile packs were parsed on the event loop, so /health waited behind each of them.

    The hostile clients run in a process of their own (bench/bench_hostile.py's
    attacking half), so that only the server shares this process's interpreter.
    """
    attacker = start_attack(ready.url, ready.tokens["auditor"], ATTACK_S + 1, clients=3)
    try:
        time.sleep(0.5)  # the attack under way
        latencies = time_health(ready.url, ATTACK_S)
        out, _ = attacker.communicate(timeout=120)
    finally:
        attacker.kill()
    statuses = {int(k): v for k, v in json.loads(out).items()}
    p99 = percentiles(latencies)["p99_ms"]
    assert sum(statuses.values()) >= 5, f"the hostile clients hardly ran: {statuses}"
    assert all(400 <= s < 500 for s in statuses), statuses
    assert p99 < HEALTH_P99_MS, f"/health p99 {p99:.0f} ms over {len(latencies)} calls under hostile load"


@pytest.mark.parametrize("data", ["synthetic:n_interactions=2000000000", "synthetic:n_users=50000000"])
def test_an_oversized_promotion_dataset_is_a_422_before_anything_is_generated(server, data: str) -> None:
    """Hole: a promotion's gate generated any synthetic size the generator accepts, in the request's thread."""
    with server.client("admin") as client:
        response = client.post(f"/v1/deployments/{server.model_version}/promote", json={"stage": "canary", "data": data})
    problem = _problem(response, 422)
    assert "RECGOV_AUDIT_MAX_" in problem["detail"] and problem["detail"].startswith("data asks for ")
