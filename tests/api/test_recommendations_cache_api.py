"""The cached serving path over real HTTP: blocks take effect at once, decisions are durable, GET /v1/ping.

Engines are cached per (pack, model version) on the app; these tests pin what
the cache must not change: a harmful item flagged through the API is out of the
very next list, every answered list has its decision row before the answer, and
concurrent requests share the decision log without losing a decision.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select
from typer.testing import CliRunner

from audits.models import DecisionRecord
from governance.api.errors import PROBLEM_JSON
from governance.cli import app as cli

PACK = "eu-gdpr-dsa"  # blocks the categories csam, terrorism and self-harm


DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"


def _decision_ids(server) -> set[str]:
    with server.store.snapshot() as connection:
        return set(connection.execute(select(DecisionRecord.decision_id)).scalars())


def test_an_item_flagged_in_a_blocked_category_leaves_the_next_list(server) -> None:
    request = {"subject": "u000021", "k": 10, "model_version": server.model_version, "pack": PACK}
    with server.client("operator") as client:
        before = client.post("/v1/recommendations", json=request)
        assert before.status_code == 200, before.text
        top = before.json()["items"][0]["item_id"]
        flagged = client.post(f"/v1/items/{top}/flags", json={"category": "terrorism", "confidence": 0.9, "source": "model"})
        after = client.post("/v1/recommendations", json=request)
    assert flagged.status_code == 201, flagged.text
    assert after.status_code == 200, after.text
    assert top not in [i["item_id"] for i in after.json()["items"]]
    assert after.json()["blocked_removed"] == before.json()["blocked_removed"] + 1


def test_every_answered_list_has_its_decision_row_even_under_concurrency(server) -> None:
    before = _decision_ids(server)

    def one(n: int) -> str:
        with server.client("operator") as client:
            response = client.post("/v1/recommendations", json={"subject": f"u{n:06d}", "k": 5, "model_version": server.model_version})
        assert response.status_code == 200, response.text
        assert response.json()["decision_id"] in _decision_ids(server), "answered before its decision was written"
        return response.json()["decision_id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answered = list(pool.map(one, range(40)))
    assert len(set(answered)) == 40
    assert _decision_ids(server) - before == set(answered)


def test_ping_checks_the_key_and_writes_nothing(server) -> None:
    with server.store.snapshot() as connection:
        decisions_before = connection.execute(select(func.count()).select_from(DecisionRecord)).scalar_one()
    with server.client("operator") as client:
        pong = client.get("/v1/ping")
    with server.client("viewer") as client:
        forbidden = client.get("/v1/ping")
    with server.client() as client:
        missing = client.get("/v1/ping")
    assert pong.status_code == 200 and pong.json() == {"status": "ok", "key_id": server.key_ids["operator"]}
    assert forbidden.status_code == 403 and forbidden.headers["content-type"] == PROBLEM_JSON
    assert missing.status_code == 401
    with server.store.snapshot() as connection:
        assert connection.execute(select(func.count()).select_from(DecisionRecord)).scalar_one() == decisions_before


def test_the_engine_cache_keeps_only_the_latest_models(server, monkeypatch) -> None:  # noqa: ANN001
    from governance.api.routes import recommendations as routes

    monkeypatch.setattr(routes, "MAX_CACHED_MODELS", 1)
    trained = CliRunner().invoke(cli, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "5", "--iterations", "3", "--database-url", server.db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    other = json.loads(trained.stdout)["model_version"]
    with server.client("operator") as client:
        for mv in (server.model_version, other, server.model_version):
            answer = client.post("/v1/recommendations", json={"subject": "u000005", "k": 3, "model_version": mv, "pack": "california-ccpa"})
            assert answer.status_code == 200 and answer.json()["model_version"] == mv
    cache = routes.engines_of(server.app)
    assert list(cache._models) == [server.model_version]
    assert {k[1] for k in cache._engines} <= {server.model_version}


def test_closing_the_call_log_fails_what_a_stuck_writer_never_took(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import threading
    import time as _time

    from sqlalchemy import create_engine

    from audits import open_store
    from audits.trail import NewEvent
    from governance.api.routes.recommendations import CallRecordLog
    from recommender.errors import ConfigError

    monkeypatch.setenv("RECGOV_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'stuck.db'}"
    store = open_store(url)
    blocker = create_engine(url, connect_args={"timeout": 60}).connect()
    blocker.exec_driver_sql("BEGIN EXCLUSIVE")  # the database stops taking writes
    calls = CallRecordLog(store)
    event = NewEvent(actor="test", action="api.test")
    first: list[BaseException | None] = []
    waiting = threading.Thread(target=lambda: first.append(_record_or_error(calls, event)), daemon=True)
    waiting.start()
    _time.sleep(0.5)  # the writer took the first record and waits for the lock
    second: list[BaseException | None] = []
    queued = threading.Thread(target=lambda: second.append(_record_or_error(calls, event)), daemon=True)
    queued.start()
    _time.sleep(0.2)
    started = _time.monotonic()
    calls.close(timeout=0.5)
    assert _time.monotonic() - started < 5
    queued.join(5)
    assert second and isinstance(second[0], ConfigError) and "stopped before" in str(second[0])
    blocker.exec_driver_sql("ROLLBACK")  # the database comes back: the record in flight is written
    blocker.close()
    waiting.join(60)
    assert first == [None]
    store.close()


def _record_or_error(calls, event) -> BaseException | None:  # noqa: ANN001
    try:
        calls.record(event, timeout=60)
    except BaseException as err:  # noqa: BLE001
        return err
    return None
