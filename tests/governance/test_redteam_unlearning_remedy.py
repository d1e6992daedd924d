"""Red team: an unlearned model is a provisional stand-in until the full retrain, on SQLite and PostgreSQL.

The held-out-half protocol found the models ``recgov subject erase`` leaves behind outside the
range of retrains without the subject (BENCHMARKS.md), so the remedy is the full retrain: the
erasure schedules it for every model it unlearned, records each unlearned model as provisional,
and serving stamps that standing on every decision and stops profiling from the model once its
retrain is overdue. Each test names the hole it pins.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import invoke, ok
from sqlalchemy import select, update

from audits import open_store
from audits.db import Store
from audits.decisions import Decision
from audits.models import DecisionRecord, ModelVersion, SubjectRequest, TrainingRun
from audits.sealing import open_decisions
from governance import serving
from governance.packs import resolve_pack
from governance.policy import load_pack
from governance.privacy import CANNOT_RETRAIN, erase_subject, pending_retrains
from governance.serving import ServeRequest, ServingEngine
from governance.suppressed import PROVISIONAL, REPLACED, TRAINED, ModelStanding, model_standing
from governance.training import train_and_record
from recommender.als import ALSRecommender
from recommender.synthetic import SyntheticSpec, generate
from recommender.unlearning_quality import NOT_MEASURED

CCPA = load_pack(resolve_pack("california-ccpa"))  # opt-out: no record means "profile them"
MAP = "user_id=user_id,item_id=item_id,timestamp=timestamp,event_type=event_type,value=value"


def _data():
    """Tiny synthetic data whose events end two days ago (inside every shipped pack's retention window)."""
    data = generate(SyntheticSpec(n_users=60, n_items=40, n_interactions=1500, seed=11, event_mix={"rating": 1.0}))
    stamps = pd.to_datetime(data.events["timestamp"], utc=True)
    data.events["timestamp"] = stamps + (pd.Timestamp(datetime.now(UTC) - timedelta(days=2)) - stamps.max())
    return data


@pytest.fixture
def trained(store: Store, recgov_home: Path):
    """A recorded model, its data, the busiest user (the one erased) and another user (a bystander)."""
    data = _data()
    run = train_and_record(
        data, store=store, models_dir=recgov_home / "models", params={"factors": 8, "iterations": 4}, measure_carbon=False
    )
    counts = data.events["user_id"].astype(str).value_counts()
    return data, run, str(counts.index[0]), str(counts.index[1])


def _erase(store: Store, victim: str) -> dict:
    return erase_subject(store, exact=False, subject_id=victim, pack=CCPA, measure_residual=False, measure_carbon=False)


def _unlearned(report: dict) -> dict:
    (step,) = [u for u in report["unlearning"] if u["status"] == "unlearned"]
    return step


def _engine(store: Store, version: str) -> ServingEngine:
    with store.session() as session:
        row = session.get(ModelVersion, version)
        standing = model_standing(session, version)
    return ServingEngine(CCPA, ALSRecommender.load(row.artifact_location), standing=standing)


def _make_overdue(store: Store, request_id: int) -> None:
    with store.session() as session:
        session.execute(
            update(SubjectRequest).where(SubjectRequest.id == request_id).values(deadline=datetime.now(UTC) - timedelta(days=1))
        )


def test_the_erasure_records_each_unlearned_model_as_provisional_with_its_retrain(store: Store, trained) -> None:
    """Hole: an unlearned model was recorded like any trained one: nothing said it is a stand-in the
    held-out-half protocol found outside the retrain range, nor which retrain replaces it, by when."""
    _, _run, victim, _other = trained
    report = _erase(store, victim)
    step = _unlearned(report)
    retrain = report["retrain"]["request"]
    assert step["version"] in retrain["models"] and retrain["provisional"] == [step["version"]]
    standing = step["standing"]
    assert standing["standing"] == PROVISIONAL and standing["reason"] == NOT_MEASURED and standing["retrainable"]
    assert standing["retrain_request"] == retrain["id"] and standing["deadline"] == retrain["deadline"]
    with store.session() as session:
        params = session.execute(
            select(TrainingRun.params).join(ModelVersion, ModelVersion.training_run_id == TrainingRun.id).where(ModelVersion.version_id == step["version"])
        ).scalar_one()
        read = model_standing(session, step["version"])
    assert params["unlearning"]["standing"]["retrain_request"] == retrain["id"]
    assert read.standing == PROVISIONAL and read.retrain_request == retrain["id"] and not read.overdue(datetime.now(UTC))


def test_an_unlearned_model_whose_source_is_not_recorded_still_gets_a_retrain(store: Store, recgov_home: Path, tmp_path: Path) -> None:
    """Hole: a --model artifact recgov never recorded was unlearned and then forgotten: no retrain
    request at all, and nothing said that recgov cannot retrain it, nor what to do instead."""
    data = _data()
    victim = str(data.events["user_id"].astype(str).value_counts().index[0])
    other_store = open_store(f"sqlite:///{tmp_path / 'elsewhere.db'}")  # trained and recorded elsewhere, not here
    try:
        artifact = train_and_record(
            data, store=other_store, models_dir=tmp_path / "elsewhere", params={"factors": 8, "iterations": 4}, measure_carbon=False
        ).artifact
    finally:
        other_store.close()
    report = erase_subject(store, exact=False, subject_id=victim, pack=CCPA, model_path=artifact, measure_residual=False, unlearn_recorded=False)
    step = _unlearned(report)
    retrain = report["retrain"]["request"]
    assert retrain is not None and step["version"] in retrain["models"]
    assert not step["standing"]["retrainable"]
    line = CANNOT_RETRAIN.format(version=step["version"], why=step["standing"]["why_not"], pack=CCPA.name)
    assert line in report["not_done"] and "recgov train DATA --pack california-ccpa" in line
    due = pending_retrains(store)["pending"]
    assert [e["provisional"] for e in due] == [[step["version"]]]
    ran = invoke("retrain", "run", _csv(data, tmp_path), "--pack", "california-ccpa", "--map", MAP, "--no-carbon", "--database-url", _url(store), "--json")
    assert ran.exit_code == 1, ran.output  # the request still waits on the version recgov cannot retrain
    run = json.loads(ran.stdout)
    assert run["not_retrainable"] == [step["version"]] and run["retrained"] == []
    assert [c["version"] for c in run["cannot_retrain"]] == [step["version"]]
    assert "recgov train DATA --pack california-ccpa" in run["cannot_retrain"][0]["message"]


def _csv(data, tmp_path: Path) -> Path:
    path = tmp_path / "events.csv"
    if not path.exists():
        events = data.events.copy()
        events["user_id"] = events["user_id"].astype(str)
        events.drop(columns=[c for c in ("session_id", "context") if c in events]).to_csv(path, index=False)
    return path


def test_serving_stamps_the_standing_on_every_decision(store: Store, trained) -> None:
    """Hole: lists from a provisional unlearned model looked like any other: neither the list nor
    its decision record said the model is a stand-in awaiting its retrain."""
    _, run, victim, other = trained
    report = _erase(store, victim)
    step = _unlearned(report)
    engine = _engine(store, step["version"])
    engine.sink = _Kept()
    served = engine.serve(ServeRequest(other, k=5))
    assert served.mode == "personalized"
    assert served.model_standing == PROVISIONAL and served.retrain_request == report["retrain"]["request"]["id"]
    assert served.to_dict()["model_standing"] == PROVISIONAL
    context = engine.sink.records[-1].context
    assert context["model_standing"] == PROVISIONAL and context["retrain_request"] == served.retrain_request
    plain = _engine(store, run.model_version).serve(ServeRequest(other, k=5))
    # the version the subject was erased from is trained, and owed the same retrain (it stops profiling when overdue)
    assert plain.model_standing == TRAINED and plain.retrain_request == served.retrain_request


class _Kept:
    def __init__(self) -> None:
        self.records: list[Decision] = []

    def submit_and_wait(self, record: Decision, timeout: float = 0) -> None:
        self.records.append(record)


def test_an_overdue_retrain_stops_the_unlearned_model_profiling_anyone(store: Store, trained) -> None:
    """Hole: once the retrain deadline passed with the stand-in still serving, it kept profiling
    everyone from factors the held-out-half protocol showed still carry the erased history."""
    _, _run, victim, other = trained
    report = _erase(store, victim)
    step = _unlearned(report)
    request_id = report["retrain"]["request"]["id"]
    _make_overdue(store, request_id)
    served = _engine(store, step["version"]).serve(ServeRequest(other, k=5))
    assert served.mode == "non_profiling" and all(score is None for score in served.scores)
    assert f"retrain request #{request_id}" in served.consent_reason
    assert "recgov retrain run DATA --pack california-ccpa" in served.consent_reason
    assert pending_retrains(store)["pending"][0]["provisional"] == [step["version"]]


def test_the_retrain_ends_the_standing_and_says_what_it_replaced(store: Store, trained, tmp_path: Path) -> None:
    """Hole: a retrain did not say it replaced provisional stand-ins, and nothing ended their
    standing: the overdue block (or its absence) did not follow what the retrain did."""
    data, _run, victim, other = trained
    report = _erase(store, victim)
    step = _unlearned(report)
    request_id = report["retrain"]["request"]["id"]
    _make_overdue(store, request_id)
    stale = _engine(store, step["version"])  # built while the retrain is overdue
    run = ok("retrain", "run", _csv(data, tmp_path), "--pack", "california-ccpa", "--map", MAP, "--no-carbon", "--database-url", _url(store))
    assert run["provisional_replaced"] == [step["version"]]
    (entry,) = run["retrained"]
    assert entry["replaces_provisional"] == [step["version"]]
    with store.session() as session:
        replaced = model_standing(session, step["version"])
        fresh = model_standing(session, entry["version"])
        params = session.execute(
            select(TrainingRun.params).join(ModelVersion, ModelVersion.training_run_id == TrainingRun.id).where(ModelVersion.version_id == entry["version"])
        ).scalar_one()
    assert "unlearning" not in params  # trained from the data, never from unlearned factors
    assert replaced.standing == REPLACED and replaced.replaced_by == (entry["version"],)
    assert fresh.standing == TRAINED
    assert _engine(store, step["version"]).serve(ServeRequest(other, k=5)).mode == "personalized"
    # an engine built while overdue re-reads its standing (rarely) and sees the retrain
    assert stale.serve(ServeRequest(other, k=5)).mode == "non_profiling"
    stale._reread_standing = lambda: model_standing_of(store, step["version"])
    stale._standing_read_at -= serving.STANDING_RECHECK_S + 1
    served = stale.serve(ServeRequest(other, k=5))
    assert served.mode == "personalized" and served.model_standing == REPLACED


def model_standing_of(store: Store, version: str) -> ModelStanding:
    with store.session() as session:
        return model_standing(session, version)


def test_the_cli_serves_the_standing_and_blocks_when_overdue(store: Store, trained, tmp_path: Path) -> None:
    """Hole: ``recgov recommend`` on an unlearned version neither said it is provisional nor stopped
    profiling once its retrain was overdue; ``recgov subject erase`` did not state the standing."""
    _, _run, victim, other = trained
    erased = ok("subject", "erase", "--approximate", victim, "--pack", "california-ccpa", "--no-residual", "--database-url", _url(store))
    step = _unlearned(erased)
    assert step["standing"]["standing"] == PROVISIONAL
    request_id = erased["retrain"]["request"]["id"]
    args = ("recommend", other, "--model", step["version"], "--pack", "california-ccpa", "--k", "5", "--database-url", _url(store))
    served = ok(*args)
    assert served["mode"] == "personalized" and served["model_standing"] == PROVISIONAL and served["retrain_request"] == request_id
    _make_overdue(store, request_id)
    blocked = ok(*args)
    assert blocked["mode"] == "non_profiling" and "recgov retrain run DATA --pack california-ccpa" in blocked["consent"]
    with store.session() as session:
        rows = session.execute(
            select(DecisionRecord.decision_id, DecisionRecord.subject, DecisionRecord.slate, DecisionRecord.context).where(
                DecisionRecord.decision_id == blocked["decision_id"]
            )
        ).all()
        ((_slate, context),) = open_decisions(session, [tuple(r) for r in rows])
    assert context["model_standing"] == PROVISIONAL and context["retrain_request"] == request_id
    assert pending_retrains(store)["pending"][0]["provisional"] == [step["version"]]


def _url(store: Store) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def test_the_erasure_and_retrain_reports_say_it_in_words(store: Store, trained, tmp_path: Path) -> None:
    """Hole: the readable reports of ``recgov subject erase`` and ``recgov retrain run`` did not say
    that the unlearned model is provisional, nor that the retrain replaced a provisional version."""
    data, _run, victim, _other = trained
    erased = invoke("subject", "erase", "--approximate", victim, "--pack", "california-ccpa", "--no-residual", "--database-url", _url(store))
    assert erased.exit_code == 0, erased.output
    assert "standing: provisional until the full retrain (request #" in erased.output
    ran = invoke("retrain", "run", _csv(data, tmp_path), "--pack", "california-ccpa", "--map", MAP, "--no-carbon", "--database-url", _url(store))
    assert ran.exit_code == 0, ran.output
    assert "provisional unlearned version(s)" in ran.output and "their standing ends" in ran.output


def test_the_deployed_engines_know_a_shadowed_unlearned_model_is_provisional(db_url: str, tmp_path: Path, recgov_home: Path) -> None:
    """Hole: the deployed engines (``open_deployed``) served an unlearned version like a trained
    one: its records did not say it is provisional, and it kept profiling once its retrain was overdue."""
    from governance.shadow import open_deployed

    data = "synthetic:n_users=120,n_items=80,n_interactions=3000,seed=4"
    live = ok("train", data, "--no-tune", "--no-carbon", "--factors", "8", "--iterations", "4", "--database-url", db_url)["model_version"]
    erased = ok("subject", "erase", "--approximate", "u000003", "--pack", "baseline", "--no-residual", "--database-url", db_url)
    unlearned = _unlearned(erased)["version"]
    ok("deploy", "promote", live, "--to", "shadow", "--database-url", db_url)
    for stage in ("canary", "production"):  # the installation's deployment policy: baseline gates both
        assert invoke("deploy", "policy", "set", stage, "--pack", "baseline", "--database-url", db_url).exit_code == 0
        ok("deploy", "promote", live, "--to", stage, "--data", data, "--out", str(tmp_path / stage), "--database-url", db_url)
    ok("deploy", "promote", unlearned, "--to", "shadow", "--database-url", db_url)
    store = open_store(db_url)
    try:
        _make_overdue(store, erased["retrain"]["request"]["id"])
        with open_deployed(store, load_pack(resolve_pack("baseline"))) as deployed:
            served = deployed.serve(ServeRequest("u000010", k=5))
        with store.session() as session:
            rows = session.execute(
                select(DecisionRecord.decision_id, DecisionRecord.subject, DecisionRecord.slate, DecisionRecord.context, DecisionRecord.mode)
                .where(DecisionRecord.model_version == unlearned)
            ).all()
            opened = open_decisions(session, [tuple(r[:4]) for r in rows])
    finally:
        store.close()
    assert served.model_version == live and served.model_standing == TRAINED
    ((_slate, context),) = opened
    assert rows[0].mode == "non_profiling" and context["model_standing"] == PROVISIONAL
    assert "recgov retrain run DATA --pack baseline" in context["consent"]


def test_a_model_unlearned_before_standings_were_recorded_is_provisional_too(store: Store, trained) -> None:
    """Hole: a model an earlier erasure unlearned (recorded before its standing was) would pass for
    a trained one and never be blocked: its erasure's retrain request is found instead."""
    _, _run, victim, other = trained
    report = _erase(store, victim)
    version = _unlearned(report)["version"]
    request_id = report["retrain"]["request"]["id"]
    with store.session() as session:
        run_id = session.get(ModelVersion, version).training_run_id
        run = session.get(TrainingRun, run_id)
        params = dict(run.params)
        params["unlearning"] = {k: v for k, v in params["unlearning"].items() if k != "standing"}
        session.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(params=params))
    _make_overdue(store, request_id)
    standing = model_standing_of(store, version)
    assert standing.standing == PROVISIONAL and standing.retrain_request == request_id
    assert _engine(store, version).serve(ServeRequest(other, k=5)).mode == "non_profiling"


def test_an_erasure_that_retrains_at_once_reports_its_stand_in_replaced(store: Store, trained, recgov_home: Path) -> None:
    """Hole: with the retrain run by the erasure itself, its report still called the unlearned
    model provisional, although the retrain had just replaced it."""
    data, _run, victim, _other = trained
    report = erase_subject(
        store, victim, pack=CCPA, exact=False, measure_residual=False, measure_carbon=False, retrain_data=data, retrain_models_dir=recgov_home / "retrained"
    )
    step = _unlearned(report)
    assert report["retrain"]["run"]["provisional_replaced"] == [step["version"]]
    assert step["standing"]["standing"] == REPLACED
    assert model_standing_of(store, step["version"]).standing == REPLACED


def test_an_overdue_retrain_stops_the_model_trained_on_the_erased_subject_profiling_anyone(store: Store, trained) -> None:
    """Hole: the version the subject was erased from (trained on their data, listed in the retrain request) kept
    profiling everyone past the retrain's deadline; only the unlearned stand-in stopped."""
    _, run, victim, other = trained
    report = _erase(store, victim)
    request_id = report["retrain"]["request"]["id"]
    assert run.model_version in report["retrain"]["request"]["models"]
    with store.session() as session:
        before = model_standing(session, run.model_version)
    assert before.standing == TRAINED and before.retrain_request == request_id and not before.overdue(datetime.now(UTC))
    assert _engine(store, run.model_version).serve(ServeRequest(other, k=5)).mode == "personalized"  # within the deadline
    _make_overdue(store, request_id)
    served = _engine(store, run.model_version).serve(ServeRequest(other, k=5))
    assert served.mode == "non_profiling" and all(score is None for score in served.scores)
    assert "was trained on data of a subject since erased" in served.consent_reason and f"#{request_id}" in served.consent_reason
    with store.session() as session:  # a model no request lists is not touched
        other_run = session.scalars(select(ModelVersion.version_id).where(ModelVersion.version_id != run.model_version)).all()
        assert all(model_standing(session, v).standing != TRAINED or model_standing(session, v).retrain_request is None
                   for v in other_run if v not in report["retrain"]["request"]["models"])  # fmt: skip
