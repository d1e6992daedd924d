"""A model's whole life, on SQLite and PostgreSQL, in simulated time.

A world whose tastes shift on day 45 is served by a model trained before it.
Monitoring passes on a schedule find nothing before the shift and find it
within one window after; the trigger opens a retrain ticket; the pipeline
retrains, gates, shadows and canaries the new model; a canary with a planted
fairness regression (its lists starve the protected provider group) is rolled
back, and the next retrain, crashed half-way and run again, is promoted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from audits import open_store
from audits.lineage import lineage_of
from audits.models import RetrainTicket, TrailEvent
from audits.monitoring import list_tickets
from audits.verify import verify_trail
from governance import deploy
from governance.cli.policy import SHIPPED
from governance.deploy_policy import StageRequirements, set_binding
from governance.lifecycle import pipeline
from governance.lifecycle.passes import run_monitor
from governance.lifecycle.pipeline import PipelineContext, run_ticket
from governance.monitoring import build_profile
from governance.policy import load_pack
from governance.report import render_html
from governance.report.gather import report_document
from governance.training import train_and_record
from audits.monitoring import record_profile
from recommender.als import ALSRecommender
from recommender.errors import ConfigError
from recommender.feedback import FeedbackConfig
from tests.governance.lifecycle_world import LIFECYCLE, K, World, lifecycle_pack

PARAMS = {"factors": 8, "regularization": 0.05, "alpha": 10.0, "iterations": 6}


@pytest.fixture(scope="module")
def world() -> World:
    return World.make()


def _load(ref: str):
    return load_pack(SHIPPED / f"{ref}.yaml")


def _hand_ticket(store, world: World, pack, model_version: str) -> int:
    """A retrain ticket opened by hand (a monthly schedule's firing) on ``model_version`` at day 50."""
    from audits.monitoring import evidence_key, open_ticket

    with store.session() as session:
        return open_ticket(
            session, trigger_id="monthly", trigger_kind="schedule", model_version=model_version, evidence={"by": "hand"},
            key=evidence_key("monthly", model_version, {"by": "hand"}), stamp=pack.stamp(), now=world.at(50),
        ).ticket.id  # fmt: skip


def _deploy_first(store, world: World, pack, tmp_path: Path) -> str:
    """Model A, trained on days 0-30 (before the shift), profiled and promoted to production through the gate."""
    baseline = _load("baseline")
    with store.session() as session:
        for stage in ("canary", "production"):
            set_binding(session, stage=stage, ref="baseline", pack=baseline, requirements=StageRequirements(), actor="test")
    data = world.between(0, 30)
    run = train_and_record(data, store=store, models_dir=tmp_path / "models", params=PARAMS, measure_carbon=False, pack=pack)
    profile = build_profile(run.result.model, data.events, k=K, feedback=FeedbackConfig(), filter_seen=False)
    with store.session() as session:
        record_profile(session, model_version=run.model_version, dataset_hash=run.dataset_version, profile=profile)
    for stage in ("shadow", "canary", "production"):
        deploy.promote(store, model_version=run.model_version, to_stage=stage, pack=None, load_pack=_load, dataset=data, out_dir=tmp_path / "gate", models_dir=tmp_path / "models")
    return run.model_version


def _ctx(store, world: World, pack, tmp_path: Path, data: tuple[int, int], day: float) -> PipelineContext:
    """The pipeline at simulated ``day``, given the ticket's data (the same at every run: the gates audit it)."""
    return PipelineContext(
        store=store, pack=pack, dataset=world.between(*data), load_pack=_load, models_dir=tmp_path / "models",
        out_dir=tmp_path / "gate", items=world.dataset.items, now=world.at(day),
    )  # fmt: skip


def _model(store, version: str) -> ALSRecommender:
    from audits.models import ModelVersion

    with store.session() as session:
        return ALSRecommender.load(session.get(ModelVersion, version).artifact_location)


def test_a_shift_is_found_retrained_a_bad_canary_rolled_back_and_a_good_one_promoted(db_url: str, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pack = lifecycle_pack((SHIPPED / "baseline.yaml").read_text())
    store = open_store(db_url)
    try:
        first = _deploy_first(store, world, pack, tmp_path)
        world.served[first] = _model(store, first)

        # Before the shift: a pass on schedule finds nothing.
        world.serve(store, pack, first_day=35, last_day=38, production=first)
        before = run_monitor(store, pack, items=world.dataset.items, now=world.at(38))
        assert before["fired"] == [], before["metrics"]["models"][first]
        # After the shift (day 45), the pass whose window covers days 47-50 finds it: clicks below the offline
        # baseline with confidence, and the feedback's spread over the training deciles drifted.
        world.serve(store, pack, first_day=47, last_day=50, production=first)
        after = run_monitor(store, pack, items=world.dataset.items, now=world.at(50))
        assert {f["trigger"] for f in after["fired"]} == {"clicks-below-offline", "taste-drift"}, after["metrics"]["models"][first]
        tickets = {f["ticket"] for f in after["fired"]}
        assert len(tickets) == 1  # one retrain per model: the second firing joins the ticket in progress
        ticket = tickets.pop()
        # Cron retries the same pass: the stored pass comes back and nothing new opens.
        again = run_monitor(store, pack, items=world.dataset.items, now=world.at(50))
        assert again["created"] is False and again["id"] == after["id"]

        # The retrain: trained on what happened since the shift, gated, shadowed, canaried at day 50.
        done = run_ticket(_ctx(store, world, pack, tmp_path, (45, 50), 50), ticket)
        assert done["state"] == "canary" and done["waiting"] is True
        second = done["new_model_version"]
        world.served[second] = _model(store, second)
        # The canary's lists starve the protected providers (a planted regression).
        world.serve(store, pack, first_day=50, last_day=52, production=first, canary=second, share=0.3, starve_protected=True)
        waiting = run_ticket(_ctx(store, world, pack, tmp_path, (45, 50), 51), ticket)
        assert waiting["state"] == "canary" and waiting["waiting"] is True
        judged = run_ticket(_ctx(store, world, pack, tmp_path, (45, 50), 52), ticket)
        assert judged["state"] == "rolled_back", judged["steps"][-1]
        assert any("provider_gap" in r for r in judged["steps"][-1]["report"]["reasons"])
        stages = deploy.status(store)
        assert [s["model_version"] for s in stages["production"]] == [first]
        assert [s["model_version"] for s in stages["retired"]] == [second]

        # The stale model still serves; the next window fires again and opens a new ticket.
        world.serve(store, pack, first_day=53, last_day=56, production=first)
        later = run_monitor(store, pack, items=world.dataset.items, now=world.at(56))
        fresh = {f["ticket"] for f in later["fired"] if f["opened"]}
        assert len(fresh) == 1 and ticket not in fresh
        ticket = fresh.pop()

        # A crash right after the canary move, before the ticket records it: the re-run resumes.
        real_promote = pipeline.promote

        def crashing(*args, **kwargs):
            moved = real_promote(*args, **kwargs)
            if kwargs["to_stage"] == "canary":
                raise RuntimeError("power cut")
            return moved

        monkeypatch.setattr(pipeline, "promote", crashing)
        with pytest.raises(RuntimeError, match="power cut"):
            run_ticket(_ctx(store, world, pack, tmp_path, (45, 56), 56), ticket)
        monkeypatch.setattr(pipeline, "promote", real_promote)
        with store.session() as session:
            assert session.get(RetrainTicket, ticket).state == "shadow"
        resumed = run_ticket(_ctx(store, world, pack, tmp_path, (45, 56), 56), ticket)
        assert resumed["state"] == "canary"
        third = resumed["new_model_version"]
        world.served[third] = _model(store, third)
        world.serve(store, pack, first_day=56, last_day=58, production=first, canary=third, share=0.3)
        promoted = run_ticket(_ctx(store, world, pack, tmp_path, (45, 56), 58), ticket)
        assert promoted["state"] == "promoted", promoted["steps"][-1]
        stages = deploy.status(store)
        assert [s["model_version"] for s in stages["production"]] == [third]

        with store.session() as session:
            steps = [s["step"] for t in list_tickets(session) for s in t.steps]
            actions = list(session.scalars(select(TrailEvent.action).where(TrailEvent.action.in_(["retrain.ticket_opened", "retrain.step", "lifecycle.rolled_back", "monitor.run"]))))
        assert actions.count("retrain.ticket_opened") == 2 and actions.count("lifecycle.rolled_back") == 1 and actions.count("monitor.run") == 3
        assert steps.count("promote") == 1
        # Lineage: the promoted model names the ticket that produced it and its profile; the stale one, its tickets.
        with store.session() as session:
            produced, stale_chain = lineage_of(session, third)["monitoring"], lineage_of(session, first)["monitoring"]
        assert [t["id"] for t in produced["retrain_tickets"]] == [ticket] and produced["retrain_tickets"][0]["role"] == "produced"
        assert produced["profile"]["offline_hit_rate"] is not None
        assert [t["state"] for t in stale_chain["retrain_tickets"]] == ["rolled_back", "promoted"]
        # The regulator's report shows the stale model's series and the canary's rollback, with why.
        with store.session() as session:
            stale, rolled = report_document(session, first, pack=pack), report_document(session, second, pack=pack)
        assert [x["window_end"] for x in stale["lifecycle"]["series"]] == [world.at(d).isoformat() for d in (38, 50, 56)]
        assert stale["lifecycle"]["series"][1]["click_rate"] < stale["lifecycle"]["series"][0]["click_rate"]
        assert {t["role"] for t in stale["lifecycle"]["tickets"]} == {"retrained"}
        page = render_html(stale)
        assert 'data-plot="lifecycle"' in page and 'id="lifecycle"' in page
        assert "Rolled back at the watch step" in render_html(rolled) and "provider_gap" in rolled["lifecycle"]["rolled_back"][0]["reasons"][0]
        with store.engine.connect() as connection:
            assert verify_trail(connection).intact
    finally:
        store.close()


def _canary_ticket(store, world: World, pack, tmp_path: Path) -> tuple[str, str, str]:
    """Model A in production, a ticket to retrain it run at day 50 to canary; (ticket, A, the canary)."""
    from audits.monitoring import evidence_key, open_ticket

    first = _deploy_first(store, world, pack, tmp_path)
    with store.session() as session:
        opened = open_ticket(
            session, trigger_id="taste-drift", trigger_kind="input_drift", model_version=first, evidence={"psi": 0.5},
            key=evidence_key("taste-drift", first, {"window_end": "day-50"}), stamp=pack.stamp(), now=world.at(50),
        )  # fmt: skip
        ticket = opened.ticket.id
    done = run_ticket(_ctx(store, world, pack, tmp_path, (45, 50), 50), ticket)
    assert done["state"] == "canary" and done["waiting"] is True
    return ticket, first, done["new_model_version"]


def test_a_roll_back_interrupted_before_the_ticket_records_it_is_finished_by_the_next_run(
    db_url: str, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The canary passes its watch, the production gate refuses it: a crash as the ticket records the roll-back leaves nothing half-done."""
    pack = lifecycle_pack((SHIPPED / "baseline.yaml").read_text())
    store = open_store(db_url)
    try:
        ticket, first, second = _canary_ticket(store, world, pack, tmp_path)
        world.served.update({v: _model(store, v) for v in (first, second)})
        world.serve(store, pack, first_day=50, last_day=52, production=first, canary=second, share=0.3)
        real_promote, real_advance = pipeline.promote, pipeline.advance_ticket

        def refusing(*args, **kwargs):  # the production gate refuses the canary (a retired model is refused earlier, as ever)
            if kwargs["to_stage"] == "production" and pipeline._stage(store, kwargs["model_version"]) == "canary":
                raise deploy.GateRefused("refused", reasons=["planted refusal"], audit_id=None)
            return real_promote(*args, **kwargs)

        def crashing(*args, **kwargs):
            if kwargs["state"] == "rolled_back":
                raise RuntimeError("power cut")
            return real_advance(*args, **kwargs)

        monkeypatch.setattr(pipeline, "promote", refusing)
        monkeypatch.setattr(pipeline, "advance_ticket", crashing)
        with pytest.raises(RuntimeError, match="power cut"):
            run_ticket(_ctx(store, world, pack, tmp_path, (45, 50), 53), ticket)
        monkeypatch.setattr(pipeline, "advance_ticket", real_advance)
        with store.session() as session:
            assert session.get(RetrainTicket, ticket).state == "canary"

        judged = run_ticket(_ctx(store, world, pack, tmp_path, (45, 50), 53), ticket)
        assert judged["state"] == "rolled_back" and judged["steps"][-1]["step"] == "promote"
        assert judged["steps"][-1]["report"]["reasons"] == ["planted refusal"]
        stages = deploy.status(store)
        assert [s["model_version"] for s in stages["production"]] == [first] and [s["model_version"] for s in stages["retired"]] == [second]
        with store.session() as session:
            actions = list(session.scalars(select(TrailEvent.action).where(TrailEvent.action == "lifecycle.rolled_back")))
        assert actions == ["lifecycle.rolled_back"]  # the crashed run left no event behind
        with store.engine.connect() as connection:
            assert verify_trail(connection).intact
    finally:
        store.close()


def test_a_ticket_whose_canary_was_retired_meanwhile_is_rolled_back_not_stuck(db_url: str, world: World, tmp_path: Path) -> None:
    """Retired outside the pipeline (by hand, by age, or by a run that crashed before this fix): the next run ends the ticket."""
    from audits.lineage import record_deployment

    pack = lifecycle_pack((SHIPPED / "baseline.yaml").read_text())
    store = open_store(db_url)
    try:
        ticket, first, second = _canary_ticket(store, world, pack, tmp_path)
        with store.session() as session:
            record_deployment(session, model_version=second, stage="retired", actor="test")
        judged = run_ticket(_ctx(store, world, pack, tmp_path, (45, 50), 53), ticket)
        assert judged["state"] == "rolled_back" and judged["waiting"] is False
        assert f"model {second} was retired before its ticket moved on" in judged["steps"][-1]["report"]["reasons"][0]
        assert [s["model_version"] for s in deploy.status(store)["production"]] == [first]
        again = run_ticket(_ctx(store, world, pack, tmp_path, (45, 50), 54), ticket)
        assert again["state"] == "rolled_back" and len(again["steps"]) == len(judged["steps"])  # terminal: nothing more
    finally:
        store.close()


def test_an_erasure_retrain_ticket_completes_the_erasure_requests_when_its_model_is_promoted(
    db_url: str, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The erased subject's retrain, run by the pipeline: once promoted, the request is closed with what replaced the model."""
    from audits import list_requests
    from audits.monitoring import evidence_key, open_ticket
    from governance.privacy import erase_subject, pending_retrains

    pack = lifecycle_pack((SHIPPED / "baseline.yaml").read_text())
    store = open_store(db_url)
    try:
        first = _deploy_first(store, world, pack, tmp_path)
        erased = str(world.between(0, 30).events["user_id"].astype(str).iloc[0])
        erase_subject(store, erased, pack=pack, measure_residual=False, measure_carbon=False, unlearn_recorded=False)
        (due,) = pending_retrains(store, now=world.at(50))["pending"]
        assert due["models"] == [first]
        # A model of another recipe, then a second erasure: its request lists both, and this retrain replaces only one.
        other = train_and_record(world.between(0, 30), store=store, models_dir=tmp_path / "models", params={**PARAMS, "factors": 4}, measure_carbon=False, pack=pack)
        erase_subject(store, str(world.between(0, 30).events["user_id"].astype(str).iloc[-1]), pack=pack, measure_residual=False, measure_carbon=False, unlearn_recorded=False)
        (_, both) = pending_retrains(store, now=world.at(50))["pending"]
        assert set(both["models"]) == {first, other.model_version}
        requests = [due["id"], both["id"]]
        with store.session() as session:
            ticket = open_ticket(
                session, trigger_id="erasures", trigger_kind="erasure_retrains", model_version=first,
                evidence={"retrain_requests": requests, "within_days": 30}, key=evidence_key("erasures", first, {"retrain_requests": requests}),
                stamp=pack.stamp(), now=world.at(50),
            ).ticket.id  # fmt: skip
        import recommender.feedback

        fitted: list[set[str]] = []
        real_implicit = recommender.feedback.to_implicit

        def spy(events, *args, **kwargs):
            fitted.append(set(events["user_id"].astype(str)))
            return real_implicit(events, *args, **kwargs)

        monkeypatch.setattr(recommender.feedback, "to_implicit", spy)
        canary = run_ticket(_ctx(store, world, pack, tmp_path, (45, 50), 50), ticket)
        monkeypatch.setattr(recommender.feedback, "to_implicit", real_implicit)
        second = canary["new_model_version"]
        erased_both = {erased, str(world.between(0, 30).events["user_id"].astype(str).iloc[-1])}
        assert fitted and not any(users & erased_both for users in fitted)  # the profile's refit (training converts through recommender.pipeline)
        assert canary["state"] == "canary" and erased not in set(_model(store, second).train_.user_ids)
        # The retrain's profile refits without the erased subjects either, and counts what it left out.
        from audits.monitoring import profiles_of

        with store.session() as session:
            left_out = profiles_of(session, [second])[second]["left_out"]
        users = world.between(45, 50).events["user_id"].astype(str)
        gone = int(users.isin(sorted(erased_both)).sum())
        assert gone > 0 and sum(left_out.values()) == gone, left_out
        with store.session() as session:
            assert [r["id"] for r in list_requests(session, kind="retrain", open_only=True)] == requests  # open until promoted
        world.served.update({v: _model(store, v) for v in (first, second)})
        world.serve(store, pack, first_day=50, last_day=52, production=first, canary=second, share=0.3)
        promoted = run_ticket(_ctx(store, world, pack, tmp_path, (45, 50), 53), ticket)
        assert promoted["state"] == "promoted", promoted["steps"][-1]
        assert promoted["steps"][-1]["report"]["erasure_requests_completed"] == [due["id"]]
        assert promoted["steps"][-1]["report"]["erasure_requests_open"] == [{"id": both["id"], "waits_on": [other.model_version]}]
        assert [e["id"] for e in pending_retrains(store, now=world.at(53))["pending"]] == [both["id"]]  # `recgov retrain run` still owes it
        with store.session() as session:
            (request,) = [r for r in list_requests(session, kind="retrain") if r["id"] == due["id"]]
        assert request["status"] == "completed" and request["result"]["retrained"] == [{"version": second, "replaces": due["models"]}]
        with store.engine.connect() as connection:
            assert verify_trail(connection).intact
    finally:
        store.close()


def test_an_erasure_retrain_ticket_completes_a_request_whose_other_version_was_retired(
    db_url: str, world: World, tmp_path: Path
) -> None:
    """A request listing the ticket's model and a version of another recipe that was retired meanwhile: retired, that
    version holds nobody's data in service any more (`retrain run` completes such a request), so the ticket's
    promotion completes it too; it used to stay open, waiting on the retired version."""
    from audits import list_requests
    from audits.monitoring import evidence_key, open_ticket
    from governance.privacy import erase_subject, pending_retrains

    pack = lifecycle_pack((SHIPPED / "baseline.yaml").read_text())
    store = open_store(db_url)
    try:
        first = _deploy_first(store, world, pack, tmp_path)
        other = train_and_record(world.between(0, 30), store=store, models_dir=tmp_path / "models", params={**PARAMS, "factors": 4}, measure_carbon=False, pack=pack)
        erase_subject(store, str(world.between(0, 30).events["user_id"].astype(str).iloc[-1]), pack=pack, measure_residual=False, measure_carbon=False, unlearn_recorded=False)
        (both,) = pending_retrains(store, now=world.at(50))["pending"]
        assert set(both["models"]) == {first, other.model_version}
        with store.session() as session:
            ticket = open_ticket(
                session, trigger_id="erasures", trigger_kind="erasure_retrains", model_version=first,
                evidence={"retrain_requests": [both["id"]], "within_days": 30}, key=evidence_key("erasures", first, {"retrain_requests": [both["id"]]}),
                stamp=pack.stamp(), now=world.at(50),
            ).ticket.id  # fmt: skip
        canary = run_ticket(_ctx(store, world, pack, tmp_path, (45, 50), 50), ticket)
        second = canary["new_model_version"]
        deploy.retire(store, model_version=other.model_version)
        world.served.update({v: _model(store, v) for v in (first, second)})
        world.serve(store, pack, first_day=50, last_day=52, production=first, canary=second, share=0.3)
        promoted = run_ticket(_ctx(store, world, pack, tmp_path, (45, 50), 53), ticket)
        assert promoted["state"] == "promoted", promoted["steps"][-1]
        assert promoted["steps"][-1]["report"]["erasure_requests_completed"] == [both["id"]]
        assert promoted["steps"][-1]["report"]["erasure_requests_open"] == []
        assert pending_retrains(store, now=world.at(53))["pending"] == []
        with store.session() as session:
            (request,) = list_requests(session, kind="retrain")
        assert request["status"] == "completed"
    finally:
        store.close()


def test_a_canary_whose_lists_are_slow_is_rolled_back_by_its_latency_guardrail(db_url: str, world: World, tmp_path: Path) -> None:
    """``latency_p99_ms`` max 50: the canary's records give 80 ms (production's 5 ms), so its watch rolls it back."""
    guarded = LIFECYCLE.replace("      - metric: provider_gap\n", "      - metric: latency_p99_ms\n        max: 50\n      - metric: provider_gap\n")
    pack = lifecycle_pack((SHIPPED / "baseline.yaml").read_text(), guarded)
    assert [g.metric for g in pack.pack.lifecycle.canary.guardrails] == ["latency_p99_ms", "provider_gap"]
    store = open_store(db_url)
    try:
        ticket, first, second = _canary_ticket(store, world, pack, tmp_path)
        world.served.update({v: _model(store, v) for v in (first, second)})
        world.serve(store, pack, first_day=50, last_day=52, production=first, canary=second, share=0.3, latency_ms={first: 5.0, second: 80.0})
        judged = run_ticket(_ctx(store, world, pack, tmp_path, (45, 50), 53), ticket)
        assert judged["state"] == "rolled_back" and judged["steps"][-1]["step"] == "watch", judged["steps"][-1]
        report = judged["steps"][-1]["report"]
        assert report["reasons"] == ["latency_p99_ms 80.0000 above the guardrail's max 50"]
        assert report["watch"]["figures"]["latency_p50_ms"] == 80.0 and report["watch"]["figures"]["latency_lists"] >= 30
        assert [s["model_version"] for s in deploy.status(store)["production"]] == [first]
    finally:
        store.close()


def test_a_canary_promoted_by_hand_during_its_watch_is_rolled_back_without_emptying_production(db_url: str, world: World, tmp_path: Path) -> None:
    """The watch ends with a breach (no lists served) after an operator moved the canary to production by hand:
    the ticket's rollback used to retire the production version and leave production empty (serving refuses);
    now it rolls back the governed way, and the previous production version serves again."""
    pack = lifecycle_pack((SHIPPED / "baseline.yaml").read_text())
    store = open_store(db_url)
    try:
        first = _deploy_first(store, world, pack, tmp_path)
        ticket = _hand_ticket(store, world, pack, first)
        canary = run_ticket(_ctx(store, world, pack, tmp_path, (45, 50), 50), ticket)
        assert canary["state"] == "canary" and canary["waiting"] is True
        second = canary["new_model_version"]
        deploy.promote(store, model_version=second, to_stage="production", pack=None, load_pack=_load, dataset=world.between(45, 50), out_dir=tmp_path / "gate", models_dir=tmp_path / "models")
        judged = run_ticket(_ctx(store, world, pack, tmp_path, (45, 50), 53), ticket)
        assert judged["state"] == "rolled_back", judged["steps"][-1]
        reasons = judged["steps"][-1]["report"]["reasons"]
        assert any("min_decisions" in r for r in reasons) and any(f"{first} restored" in r for r in reasons), reasons
        stages = deploy.status(store)
        assert [s["model_version"] for s in stages["production"]] == [first]
        assert [s["model_version"] for s in stages["retired"]] == [second]
        with store.engine.connect() as connection:
            assert verify_trail(connection).intact
    finally:
        store.close()


def test_a_production_model_meeting_a_retirement_criterion_is_retired_even_when_the_rollback_is_refused(db_url: str, world: World, tmp_path: Path) -> None:
    """Retirement restores the previous production version by a rollback; when the deployment policy refuses that
    rollback (the previous version passed production under another pack than the one bound now), the pass used to
    fail after it was stored, and its retry retired nothing: the model the pack retires kept serving. Now it is
    retired all the same, production is left empty (fail closed), and the reason says why nothing came back."""
    from governance.lifecycle.retirement import retire_models

    pack = lifecycle_pack((SHIPPED / "baseline.yaml").read_text(), LIFECYCLE + "  retirement:\n    min_click_rate: 0.05\n")
    store = open_store(db_url)
    try:
        first = _deploy_first(store, world, pack, tmp_path)
        second = train_and_record(world.between(0, 30), store=store, models_dir=tmp_path / "models", params={**PARAMS, "factors": 6}, measure_carbon=False, pack=pack).model_version
        for stage in ("shadow", "canary", "production"):
            deploy.promote(store, model_version=second, to_stage=stage, pack=None, load_pack=_load, dataset=world.between(0, 30), out_dir=tmp_path / "gate", models_dir=tmp_path / "models")
        other = _load("california-ccpa")  # production is bound to another pack since the first version passed it
        with store.session() as session:
            set_binding(session, stage="production", ref="california-ccpa", pack=other, requirements=StageRequirements(), actor="test")
        figures = {"models": {second: {"served": 500, "click_rate": 0.01}, first: {"served": 500, "click_rate": 0.2}}}
        (done,) = retire_models(store, pack, figures=figures, now=world.at(53))
        assert done["model_version"] == second and done["stage"] == "production" and done["restored"] is None
        assert any(f"{first} was not restored" in r for r in done["reasons"]), done["reasons"]
        stages = deploy.status(store)
        assert stages["production"] == [] and [s["model_version"] for s in stages["retired"]] == [second]
    finally:
        store.close()


def test_a_ticket_run_under_another_pack_than_its_models_consent_rules_is_refused(db_url: str, world: World, tmp_path: Path) -> None:
    """The ticket's model learned under one pack's consent rules; a run under another pack's would retrain it on
    subjects those rules left out. Refused, naming the pack, with the ticket untouched (it runs under the right one)."""
    from audits.monitoring import get_ticket, ticket_doc

    pack = lifecycle_pack((SHIPPED / "baseline.yaml").read_text())
    ccpa = lifecycle_pack((SHIPPED / "california-ccpa.yaml").read_text(), "\nlifecycle:" + LIFECYCLE.split("\nlifecycle:", 1)[1])
    store = open_store(db_url)
    try:
        first = _deploy_first(store, world, pack, tmp_path)
        ticket = _hand_ticket(store, world, pack, first)
        with pytest.raises(ConfigError, match=f"model {first} was trained under the consent rules of pack baseline.*--pack baseline"):
            run_ticket(_ctx(store, world, ccpa, tmp_path, (45, 50), 50), ticket)
        with store.session() as session:
            assert ticket_doc(get_ticket(session, ticket))["state"] == "open"
        assert run_ticket(_ctx(store, world, pack, tmp_path, (45, 50), 50), ticket)["state"] == "canary"
    finally:
        store.close()
