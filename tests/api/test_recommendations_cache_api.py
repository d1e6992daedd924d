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
    from governance.api.services import engines

    monkeypatch.setattr(engines, "MAX_CACHED_MODELS", 1)
    trained = CliRunner().invoke(cli, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "5", "--iterations", "3", "--database-url", server.db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    other = json.loads(trained.stdout)["model_version"]
    with server.client("operator") as client:
        for mv in (server.model_version, other, server.model_version):
            answer = client.post("/v1/recommendations", json={"subject": "u000005", "k": 3, "model_version": mv, "pack": "california-ccpa"})
            assert answer.status_code == 200 and answer.json()["model_version"] == mv
    cache = engines.engines_of(server.app)
    assert list(cache._models) == [server.model_version]
    assert {k[1] for k in cache._engines} <= {server.model_version}


def test_a_key_revoked_between_two_requests_is_refused_at_the_second(server) -> None:
    from governance.api.keys import create_key, revoke_key

    with server.store.session() as session:
        key, token = create_key(session, name="soon-revoked", role="operator")
    request = {"subject": "u000031", "k": 3, "model_version": server.model_version, "pack": PACK}
    with server.client(None, Authorization=f"Bearer {token}") as client:
        assert client.get("/v1/ping").status_code == 200
        assert client.post("/v1/recommendations", json=request).status_code == 200
        with server.store.session() as session:
            revoke_key(session, key.id)
        ping, listed = client.get("/v1/ping"), client.post("/v1/recommendations", json=request)
    assert ping.status_code == 401 and listed.status_code == 401


def test_a_consent_withdrawal_holds_from_the_next_request_on(server) -> None:
    subject = "u000042"
    # CCPA: an opt-out purpose, and no re-ranking (the EU pack's personalized path has its own test below)
    request = {"subject": subject, "k": 5, "model_version": server.model_version, "pack": "california-ccpa"}
    record = {"subject": subject, "purpose": "personalization", "basis": "consent", "source": "api"}
    with server.client("operator") as client:
        assert client.post("/v1/consent", json=record | {"status": "granted"}).status_code == 201
        granted = client.post("/v1/recommendations", json=request).json()
        assert client.post("/v1/consent", json=record | {"status": "withdrawn"}).status_code == 201
        withdrawn = client.post("/v1/recommendations", json=request).json()
        assert client.post("/v1/consent", json=record | {"status": "granted"}).status_code == 201
        again = client.post("/v1/recommendations", json=request).json()
    assert granted["mode"] == "personalized"
    assert withdrawn["mode"] == "non_profiling", "a withdrawal must hold from the very next request"
    assert again["mode"] == "personalized"


def test_a_personalized_eu_list_is_the_engines_list_with_the_models_item_table(server) -> None:
    """The service serves with the item table of the model's dataset, so the EU pack's provider
    calibration has the groups to work with: over HTTP the list is the one the engine makes in process."""
    from datetime import UTC, datetime

    from sqlalchemy.orm import Session

    from audits.models import DatasetVersion, ModelVersion
    from governance.cli.policy import resolve_pack
    from governance.consent.state import ConsentRecord
    from governance.escalation import items_out_of_lists
    from governance.policy import load_pack
    from governance.serving import ServeRequest, ServingEngine
    from recommender.als import ALSRecommender
    from recommender.loaders import load_data

    record = {"purpose": "personalization", "basis": "consent", "source": "api", "status": "granted"}
    subjects = [f"u{n:06d}" for n in range(40, 52)]
    with server.client("operator") as client:
        for subject in subjects:
            assert client.post("/v1/consent", json=record | {"subject": subject}).status_code == 201
        answers = [client.post("/v1/recommendations", json={"subject": s, "k": 5, "model_version": server.model_version, "pack": PACK}) for s in subjects]
    assert all(a.status_code == 200 and a.json()["mode"] == "personalized" for a in answers), answers[0].text
    with server.store.snapshot() as connection, Session(bind=connection) as session:
        location, source = connection.execute(
            select(ModelVersion.artifact_location, DatasetVersion.source).join(DatasetVersion, DatasetVersion.id == ModelVersion.dataset_version_id).where(ModelVersion.version_id == server.model_version)
        ).one()
        pack = load_pack(resolve_pack(PACK))
        blocked = items_out_of_lists(session, pack.pack)
    engine = ServingEngine(pack, ALSRecommender.load(location), load_data(source).items, blocked=blocked)
    granted = (ConsentRecord(purpose="personalization", status="granted", lawful_basis="consent", source="api", time=datetime.now(UTC)),)
    moved = 0
    for subject, answer in zip(subjects, answers, strict=True):
        local = engine.serve(ServeRequest(subject, k=5, consent=granted))
        served = answer.json()["items"]
        assert [i["item_id"] for i in served] == local.items
        assert [i["tags"] for i in served] == local.tags
        moved += sum(any(t["kind"] == "provider_calibration" for t in i["tags"]) for i in served)
    assert moved > 0, "no list was re-ranked: the service did not have the items' provider groups"


def test_a_dataset_the_service_cannot_read_leaves_lists_served_without_item_metadata(server, monkeypatch, caplog) -> None:  # noqa: ANN001
    from governance import model_catalog
    from governance.api.services import engines

    cache = engines.engines_of(server.app)

    def unreadable(source):  # noqa: ANN001, ANN202
        raise FileNotFoundError(f"no such file: {source}")

    monkeypatch.setattr(model_catalog, "load_data", unreadable)
    with cache._lock:
        cache._catalogs.clear()
        cache._engines.clear()
    with server.client("operator") as client, caplog.at_level("WARNING", logger=engines.__name__):
        answer = client.post("/v1/recommendations", json={"subject": "u000043", "k": 5, "model_version": server.model_version, "pack": PACK})
    assert answer.status_code == 200 and len(answer.json()["items"]) == 5
    assert any("can be read here" in r.getMessage() and "without item metadata" in r.getMessage() for r in caplog.records)
    with cache._lock:  # the next test reads the real table again
        cache._catalogs.clear()
        cache._engines.clear()


def test_each_answered_list_has_its_call_record_in_its_decisions_transaction(server) -> None:
    from audits.models import TrailEvent

    with server.client("operator") as client:
        answers = [client.post("/v1/recommendations", json={"subject": f"u{n:06d}", "k": 3, "model_version": server.model_version, "pack": PACK}).json() for n in (50, 51, 52)]
    with server.store.snapshot() as connection:
        for answer in answers:
            batch_seq = connection.execute(select(DecisionRecord.batch_seq).where(DecisionRecord.decision_id == answer["decision_id"])).scalar_one()
            calls = connection.execute(
                select(TrailEvent.seq, TrailEvent.actor, TrailEvent.objects, TrailEvent.payload).where(TrailEvent.action == "api.recommendations.create", TrailEvent.seq > batch_seq)
            ).all()
            seq, actor, objects, payload = next(c for c in calls if _json(c[2])["decision"] == answer["decision_id"])
            between = connection.execute(select(TrailEvent.action).where(TrailEvent.seq > batch_seq, TrailEvent.seq < seq)).scalars().all()
            assert set(between) <= {"api.recommendations.create"}, "the call record is not in its decision's batch"
            assert actor == f"key:{server.key_ids['operator']}:test-operator"
            assert _json(objects) == {"decision": answer["decision_id"], "model": server.model_version}
            assert _json(payload) == {"mode": answer["mode"], "gpc": False, "pack": answer["pack"], "pack_version": answer["pack_version"], "pack_hash": answer["pack_hash"]}
            assert "u0000" not in json.dumps(_json(objects)) + json.dumps(_json(payload))  # no raw subject id


def test_the_answer_is_exactly_the_documented_model(server) -> None:
    from governance.api.schemas import GovernedList

    with server.client("operator") as client:
        response = client.post("/v1/recommendations", json={"subject": "u000060", "k": 4, "model_version": server.model_version, "pack": PACK})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert GovernedList.model_validate(body).model_dump(mode="json") == body
    assert list(body) == list(GovernedList.model_fields)


def _json(value: object) -> object:
    """A JSON column as the engine gives it back (text on SQLite, decoded on PostgreSQL)."""
    return json.loads(value) if isinstance(value, str) else value


def test_a_commit_that_fails_or_comes_late_fails_the_request_and_is_logged(server, monkeypatch) -> None:  # noqa: ANN001
    """The route awaits its decision's commit off the worker thread; a failed or late commit is no answer."""
    from concurrent.futures import Future

    from audits.models import FailedRequest
    from governance.api.services import call_sink
    from governance.api.services import engines
    from recommender.errors import ConfigError

    body = {"subject": "u000061", "k": 3, "model_version": server.model_version, "pack": PACK}
    with server.client("operator") as client:
        assert client.post("/v1/recommendations", json=body).status_code == 200  # the shared log exists
        log = engines.engines_of(server.app)._log
        queued: list[Future] = []

        def refused(record, *, events=(), consent=None):  # noqa: ANN001, ANN202 - the database refuses the batch
            future = Future()
            future.set_exception(ConfigError("the database refused the batch"))
            queued.append(future)
            return future

        def never(record, *, events=(), consent=None):  # noqa: ANN001, ANN202 - the batch never commits
            queued.append(Future())
            return queued[-1]

        before = _decision_ids(server)
        with monkeypatch.context() as patch:  # only these are undone: the test's private RECGOV_HOME stays
            patch.setattr(log, "submit", refused)
            answer = client.post("/v1/recommendations", json=body)
            assert answer.status_code == 422 and "refused the batch" in answer.json()["detail"]
            patch.setattr(log, "submit", never)
            patch.setattr(call_sink, "DECISION_TIMEOUT_S", 0.3)
            answer = client.post("/v1/recommendations", json=body)
            assert answer.status_code == 500
        assert len(queued) == 2 and not queued[1].done()  # the log's own future is left alone, never cancelled
    with server.client("operator") as client:  # (a 500 closes its connection)
        assert client.post("/v1/recommendations", json=body).status_code == 200  # the service goes on
    assert len(_decision_ids(server) - before) == 1  # only the last list was recorded (and answered)
    with server.store.snapshot() as connection:
        rows = connection.execute(select(FailedRequest.cause, FailedRequest.detail).order_by(FailedRequest.id.desc()).limit(2)).all()
    assert [cause for cause, _ in rows] == ["serve.TimeoutError", "serve.ConfigError"]
    assert all("u000061" not in json.dumps(_json(detail)) for _, detail in rows)  # the subject is scrubbed


def test_warm_lists_are_decided_on_the_event_loop(server) -> None:
    """A list that writes nothing of its own (a first opt-out goes with its decision) and finds its engine built is
    decided inline: on SQLite its reads are local; on PostgreSQL statements awaited on the loop answer them (one for
    a subject whose consent state is cached and unchanged, a second with their records when it is not)."""
    from governance.api.services import engines

    cache = engines.engines_of(server.app)
    body = {"subject": "u000070", "k": 3, "model_version": server.model_version, "pack": PACK}
    with server.client("operator") as client:
        assert client.post("/v1/recommendations", json=body).status_code == 200  # builds what is missing
        inline, threaded = cache.decided_inline, cache.decided_on_threads
        for _ in range(5):
            assert client.post("/v1/recommendations", json=body).status_code == 200
        # a first opt-out is written with its decision, in the decision log's batch: no write of the request's own
        assert client.post("/v1/recommendations", json=body, headers={"Sec-GPC": "1"}).status_code == 200
    # on PostgreSQL the first list gave the subject a secret (with its decision): the next reads their state again,
    # on the loop too
    assert (cache.decided_inline - inline, cache.decided_on_threads - threaded) == (6, 0)


def test_a_consent_signal_already_on_record_is_a_read_and_one_that_changes_it_a_write(server) -> None:
    """A browser sends Sec-GPC: 1 on every request: the first records the opt-out (with its decision),
    the next ones find it in force and write nothing, so they are prepared on the event loop (on PostgreSQL the
    first of them reads the state written again, by a second statement awaited there); every
    answer says what the recording path would, and the store holds one GPC record however many requests came.
    A later grant makes the signal new again: recorded once more."""
    from audits import record_consent
    from audits.models import ConsentRecordRow, DecisionRecord
    from governance.api.services import engines

    cache = engines.engines_of(server.app)
    body = {"subject": "u000072", "k": 3, "model_version": server.model_version, "pack": PACK}
    gpc = {"Sec-GPC": "1"}

    def gpc_records() -> int:
        with server.store.snapshot() as connection:
            return len(connection.execute(select(ConsentRecordRow.id).where(ConsentRecordRow.source == "gpc")).all())

    with server.client("operator") as client:
        assert client.post("/v1/recommendations", json=body).status_code == 200  # builds what is missing
        before = gpc_records()
        first = client.post("/v1/recommendations", json=body, headers=gpc)
        assert first.status_code == 200
        recorded = first.json()["signals"]
        assert [r["status"] for r in recorded["recorded"]] == ["opted_out"] and recorded["unchanged"] == []
        assert gpc_records() == before + 1
        # written with the decision made on it: the answer names the stored record, which precedes the decision's batch
        entry = recorded["recorded"][0]
        with server.store.snapshot() as connection:
            row = connection.execute(select(ConsentRecordRow.trail_seq).where(ConsentRecordRow.id == entry["id"])).one()
            batch_seq = connection.execute(select(DecisionRecord.batch_seq).where(DecisionRecord.decision_id == first.json()["decision_id"])).scalar_one()
        assert row.trail_seq == entry["trail_seq"] and entry["trail_seq"] < batch_seq
        inline, threaded = cache.decided_inline, cache.decided_on_threads
        answers = [client.post("/v1/recommendations", json=body, headers=gpc) for _ in range(4)]
        assert [a.status_code for a in answers] == [200] * 4
        for answer in answers:
            signals = answer.json()["signals"]
            assert signals["recorded"] == [] and [u["status"] for u in signals["unchanged"]] == ["opted_out"]
            assert answer.json()["mode"] == first.json()["mode"]
        assert gpc_records() == before + 1  # nothing written again
        assert (cache.decided_inline - inline, cache.decided_on_threads - threaded) == (4, 0)
        purpose = recorded["recorded"][0]["purpose"]
        with server.store.session() as session:  # a later grant is the record in force: the signal is new again
            record_consent(
                session, subject_id="u000072", purpose=purpose, status="granted", lawful_basis="legitimate_interest", source="api"
            )
        again = client.post("/v1/recommendations", json=body, headers=gpc)
        assert [r["status"] for r in again.json()["signals"]["recorded"]] == ["opted_out"]
        assert gpc_records() == before + 2


def test_a_list_that_fails_while_deciding_is_logged_and_not_answered(server, monkeypatch) -> None:  # noqa: ANN001
    """The decision log refuses the record at once (e.g. full): the failure is logged (off the event
    loop when the list was decided on it), with the subject scrubbed, and the list is not answered."""
    from audits.models import FailedRequest
    from governance.api.services import engines
    from recommender.errors import ConfigError

    body = {"subject": "u000071", "k": 3, "model_version": server.model_version, "pack": PACK}
    with server.client("operator") as client:
        assert client.post("/v1/recommendations", json=body).status_code == 200
        log = engines.engines_of(server.app)._log

        def full(record, *, events=(), consent=None):  # noqa: ANN001, ANN202
            raise ConfigError("the decision log is full for u000071")

        with monkeypatch.context() as patch:  # only this is undone: the test's private RECGOV_HOME stays
            patch.setattr(log, "submit", full)
            answer = client.post("/v1/recommendations", json=body)
    assert answer.status_code == 422 and "decision log is full" in answer.json()["detail"]
    with server.store.snapshot() as connection:
        cause, detail = connection.execute(select(FailedRequest.cause, FailedRequest.detail).order_by(FailedRequest.id.desc()).limit(1)).one()
    assert cause == "serve.ConfigError" and "<subject>" in _json(detail)["message"] and "u000071" not in json.dumps(_json(detail))


def test_lists_made_in_the_compute_process_are_the_engines_lists(server) -> None:
    """Every list has its model part made in the compute process (RECGOV_API_COMPUTE, default ``process``):
    on SQLite warm lists prepared on the event loop, on PostgreSQL lists prepared on worker threads (their
    reads are network round trips); the answers are the in-process engine's either way."""
    import time

    from governance.api.services import engines

    cache = engines.engines_of(server.app)
    assert cache.compute is not None
    subjects = [f"u{n:06d}" for n in range(80, 95)]
    record = {"purpose": "personalization", "basis": "consent", "source": "api", "status": "granted"}
    with server.client("operator") as client:
        for subject in subjects:
            assert client.post("/v1/consent", json=record | {"subject": subject}).status_code == 201
        body = {"subject": subjects[0], "k": 5, "model_version": server.model_version, "pack": PACK}
        before = cache.compute.made_there
        deadline = time.monotonic() + 90
        while cache.compute.made_there == before and time.monotonic() < deadline:
            assert client.post("/v1/recommendations", json=body).status_code == 200  # starts it, sends the engine
            time.sleep(0.05)
        there = cache.compute.made_there
        answers = [client.post("/v1/recommendations", json=body | {"subject": s}) for s in subjects]
    assert all(a.status_code == 200 and a.json()["mode"] == "personalized" for a in answers), answers[0].text
    assert cache.compute.made_there - there == len(subjects)
    engine = next(cached.engine for key, cached in cache._engines.items() if key[1] == server.model_version)
    for subject, answer in zip(subjects, answers, strict=True):
        ids, scores, tags = engine.personalizer.personalize(int(engine.model.train_.user_index(subject)[0]), 5)
        served = answer.json()["items"]
        assert [i["item_id"] for i in served] == [str(engine.model.train_.item_ids[i]) for i in ids]
        assert [i["score"] for i in served] == scores and [i["tags"] for i in served] == tags


def test_a_list_served_over_http_records_its_latency_readable_without_unsealing(server) -> None:
    """The stored record (its list sealed under the subject's key) gives ``latency_ms`` in the clear,
    measured from the request's preparation: positive and no longer than the HTTP round trip."""
    import time
    from datetime import UTC, timedelta

    from audits.monitoring import window_decisions
    from audits.sealing import is_sealed

    with server.client("operator") as client:
        started = time.perf_counter()
        response = client.post("/v1/recommendations", json={"subject": "u000033", "k": 5, "model_version": server.model_version, "pack": PACK})
        round_trip_ms = (time.perf_counter() - started) * 1000.0
    assert response.status_code == 200, response.text
    decision_id = response.json()["decision_id"]
    with server.store.snapshot() as connection:
        slate, context, decided_at = connection.execute(
            select(DecisionRecord.slate, DecisionRecord.context, DecisionRecord.decided_at).where(DecisionRecord.decision_id == decision_id)
        ).one()
    context = context if isinstance(context, dict) else json.loads(context)
    slate = slate if isinstance(slate, dict) else json.loads(slate)
    assert is_sealed(slate) and set(context) == {"latency_ms"}
    assert 0 < context["latency_ms"] <= round_trip_ms
    # monitoring reads it from the opened record, as stored
    moment = decided_at if decided_at.tzinfo else decided_at.replace(tzinfo=UTC)
    with server.store.session() as session:
        frame = window_decisions(session, moment, moment + timedelta(microseconds=1)).frame
    assert frame.set_index("decision_id").loc[decision_id, "latency_ms"] == context["latency_ms"]


def test_the_key_is_judged_before_the_body_the_pack_and_the_consent_signal(server) -> None:
    """The list reads its key in its own snapshot: a bad key is still 401 and a role without ``lists`` still 403
    before a 422 (a body that fails validation, a TC string that does not decode) or a 404 (no such pack)."""
    good = {"subject": "u000007", "k": 3, "model_version": server.model_version, "pack": PACK}
    wrong = [
        {"subject": "u000007", "k": "many"},  # fails validation
        {**good, "pack": "no-such-pack"},  # 404 with a good key
        {**good, "tcf": "not-a-tc-string"},  # 422 naming tcf with a good key
        {**good, "model_version": "no-such-model"},  # 404 with a good key
        {"subject": "u000007", "k": 3, "pack": PACK},  # what is deployed: read in a snapshot of another kind
    ]
    with server.client("operator") as client:
        with_good_key = [client.post("/v1/recommendations", json=body).status_code for body in wrong[:4]]
        not_json = client.post("/v1/recommendations", content=b"{not json", headers={"content-type": "application/json"})
    assert with_good_key == [422, 404, 422, 404] and not_json.status_code == 422
    with server.client(None, Authorization="Bearer rgk_not-a-key") as client:
        unknown = [client.post("/v1/recommendations", json=body) for body in wrong]
        unknown.append(client.post("/v1/recommendations", content=b"{not json", headers={"content-type": "application/json"}))
    with server.client() as client:
        missing = [client.post("/v1/recommendations", json=body) for body in wrong]
    with server.client("viewer") as client:
        forbidden = [client.post("/v1/recommendations", json=body) for body in wrong]
    assert [r.status_code for r in unknown] == [401] * 6, [r.text for r in unknown]
    assert all(r.headers["www-authenticate"] == "Bearer" and r.headers["content-type"] == PROBLEM_JSON for r in unknown)
    assert [r.status_code for r in missing] == [401] * 5
    assert [r.status_code for r in forbidden] == [403] * 5, [r.text for r in forbidden]
    assert all("scope 'lists'" in r.json()["detail"] for r in forbidden)


def test_a_revoked_key_is_refused_at_once_on_every_kind_of_list(server) -> None:
    """Revocation holds from the next request on: with a named model (prepared statements) and for what is
    deployed (a SQLAlchemy snapshot), with and without a consent signal; nothing is recorded for the refused."""
    from governance.api.keys import create_key, revoke_key

    with server.store.session() as session:
        key, token = create_key(session, name="revoked-at-once", role="operator")
    requests = [
        ({"subject": "u000033", "k": 3, "model_version": server.model_version, "pack": PACK}, {}),
        ({"subject": "u000034", "k": 3, "model_version": server.model_version, "pack": PACK}, {"Sec-GPC": "1"}),
    ]
    with server.client(None, Authorization=f"Bearer {token}") as client:
        for body, headers in requests:
            assert client.post("/v1/recommendations", json=body, headers=headers).status_code == 200
        with server.store.session() as session:
            revoke_key(session, key.id)
        before = _decision_ids(server)
        refused = [client.post("/v1/recommendations", json=body, headers=headers) for body, headers in requests]
        refused.append(client.post("/v1/recommendations", json={"subject": "u000035", "k": 3, "pack": PACK}, headers={"Sec-GPC": "1"}))
    assert [r.status_code for r in refused] == [401, 401, 401]
    assert _decision_ids(server) == before
