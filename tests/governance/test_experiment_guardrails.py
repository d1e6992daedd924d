"""Experiment guardrails on latency, errors, harmful exposure and a provider exposure gap; futility; the holdback after
the stop; on SQLite and PostgreSQL.

A small world writes what serving would: each subject's lists (assigned by the experiment's own hash, with
``latency_ms`` and the experiment in the context), failed requests carrying the assignment, harmful-content flags,
and clicks. A treatment that is slower, fails more, serves flagged items and one provider's items is caught by each
guardrail, and the gate refuses it; a treatment that changes nothing on them holds every guardrail.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from audits.decisions import DecisionLog, log_failure
from audits.harm import flag_item
from audits.lineage import record_dataset_version, record_model_version, record_training_run
from audits.models import Experiment
from audits.outcomes import BATCH_COLUMNS, record_outcomes
from governance.cli import app as cli
from governance.experiments import lifecycle
from governance.experiments.assign import assign, assign_in_force
from governance.experiments.spec import parse_experiment
from governance.located import PolicyError
from recommender.errors import ConfigError

pytestmark = pytest.mark.usefixtures("fixed_experiment_salts")

ITEMS = [f"i{j:03d}" for j in range(60)]
HARMFUL = set(ITEMS[:6])
PROVIDER = {item: ("small" if j % 3 == 0 else "large") for j, item in enumerate(ITEMS)}  # the catalogue: 1/3 small

PLAN = """apiVersion: recgov/v1
kind: Experiment
metadata:
  name: {name}
  owner: growth team
hypothesis: The retrained model raises the share of subjects who click.
variants:
  - name: control
    control: true
    model_version: {control}
  - name: treatment
    model_version: {treatment}
allocation:
  control: 0.5
  treatment: 0.5
holdback: 0.1
holdback_days: {holdback_days}
primary_metric: click_through
guardrails:
  - metric: latency_ms
    margin: 10
    direction: lower_is_better
  - metric: error_rate
    margin: 0.02
    direction: lower_is_better
  - metric: harmful_exposure
    margin: 0.02
    direction: lower_is_better
  - metric: provider_exposure_gap
    margin: 0.05
    direction: lower_is_better
    items: {items}
design:
  baseline: 0.2
  mde: 0.2
  method: {method}
  looks: {looks}
{extra}"""


def _eu_stamp() -> dict[str, str]:
    """The shipped EU pack as a decision records it: its analytics purpose is opt-out (objections excluded)."""
    from governance.packs import shipped_pack_path
    from governance.policy import load_pack

    pack = load_pack(shipped_pack_path("eu-gdpr-dsa"))
    return {"pack_name": pack.pack.metadata.name, "pack_version": pack.pack.metadata.version, "pack_hash": pack.content_hash}


_EU_STAMP = _eu_stamp()


def _model(session: Any, name: str) -> str:
    data = record_dataset_version(session, content_hash=f"sha256:{name}", name=name, source="synthetic:seed=1", n_events=1, n_users=1, n_items=1, schema={}, validation=None)
    end = datetime.now(UTC) - timedelta(seconds=1)
    run = record_training_run(session, dataset_version=data, params={}, library_versions={}, started_at=end - timedelta(seconds=1), ended_at=end)
    record_model_version(session, version_id=f"als-{name}", kind="als", training_run=run, artifact_hash="sha256:0", artifact_location=f"/nowhere/{name}.npz")
    return f"als-{name}"


def _plan_file(tmp_path: Path, name: str, control: str, treatment: str, *, method: str = "fixed", looks: int = 1,
               extra: str = "", holdback_days: int = 0) -> Path:  # fmt: skip
    items = tmp_path / "items.csv"
    pd.DataFrame({"item_id": ITEMS, "provider_group": [PROVIDER[i] for i in ITEMS]}).to_csv(items, index=False)
    path = tmp_path / f"{name}.yaml"
    path.write_text(PLAN.format(name=name, control=control, treatment=treatment, items=items, method=method, looks=looks, extra=extra, holdback_days=holdback_days))
    return path


def _serve(store: Any, name: str, subjects: list[str], arms: dict[str, dict[str, float]], rng: np.random.Generator, lists: int = 3,
           stamp: dict[str, str] | None = None) -> dict[str, int]:  # fmt: skip
    """Lists, failures and clicks of ``subjects`` as serving would record them; ``arms`` says how each variant behaves;
    ``stamp``: the pack the lists are recorded under (a pack no one can read by default)."""
    with store.session() as session:
        experiment = lifecycle.in_force(session).running
    stamp = stamp or _EU_STAMP
    clicks, counts = [], {}
    with DecisionLog(store) as log:
        futures = []
        for s in subjects:
            a = assign(experiment, s, may_profile=True)
            counts[a["variant"]] = counts.get(a["variant"], 0) + 1
            arm = arms[a["variant"] if a["reason"] == "randomised" else "control"]
            for _ in range(lists):
                if rng.random() < arm["fail"]:
                    log_failure(store, "serve.RuntimeError", {"message": "boom", "experiment": a})
                small = rng.random(10) < arm["small"]
                pool_small, pool_large = [i for i in ITEMS if PROVIDER[i] == "small"], [i for i in ITEMS if PROVIDER[i] == "large"]
                items = [str(rng.choice(pool_small if sm else pool_large)) for sm in small]
                if rng.random() < arm["harm"]:
                    items[0] = str(rng.choice(sorted(HARMFUL)))
                if "empty" in arm and rng.random() < arm["empty"]:
                    items = []  # nothing could be served (every candidate blocked)
                context = {"experiment": a, "latency_ms": float(rng.normal(arm["latency"], 8.0))}
                futures.append(log.submit({**stamp, "mode": "personalized", "model_version": "m", "subject_id": s, "context": context,
                                           "slate": {"items": items, "scores": [1.0] * len(items), "tags": [[] for _ in items]}}))  # fmt: skip
            if rng.random() < arm["click"]:
                clicks.append({"subject": s, "kind": "click", "item_id": ITEMS[0], "decision_id": ""})
        for f in futures:
            f.result(timeout=120)
    at = datetime.now(UTC)
    frame = pd.DataFrame([{"line": n, "value": np.nan, "event_id": f"e{n}", "occurred_at": at, **c} for n, c in enumerate(clicks, start=2)], columns=list(BATCH_COLUMNS))
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True).astype("datetime64[us, UTC]")
    frame["value"] = frame["value"].astype(float)
    with store.session() as session:
        record_outcomes(session, frame, source="import", anchor={"file_sha256": "a" * 64})
    return counts


def _flags(store: Any) -> None:
    with store.session() as session:
        for item in sorted(HARMFUL):
            flag_item(session, item_id=item, category="violence", confidence=0.9, source="model")


SAME = {"latency": 50.0, "fail": 0.01, "harm": 0.02, "small": 0.30, "click": 0.15}
WORSE = {"latency": 80.0, "fail": 0.15, "harm": 0.6, "small": 0.05, "click": 0.5}
SUBJECTS = [f"user-{i:05d}" for i in range(700)]


def _guardrails(look: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["metric"]: g for g in look["guardrails"]}


def test_a_harmless_treatment_holds_every_guardrail_and_a_harmful_one_breaches_each(store: Any, tmp_path: Path) -> None:
    with store.session() as session:
        control, good, bad = _model(session, "control"), _model(session, "good"), _model(session, "bad")
    _flags(store)
    rng = np.random.default_rng(5)
    results = {}
    for name, treatment, arm in (("harmless", good, {**SAME, "click": 0.5}), ("harmful", bad, WORSE)):
        path = _plan_file(tmp_path, name, control, treatment)
        lifecycle.plan(store, parse_experiment(path.read_text(), str(path)), actor="tester")
        lifecycle.start(store, name, actor="tester")
        _serve(store, name, SUBJECTS, {"control": SAME, "treatment": arm}, rng)
        lifecycle.stop(store, name, actor="tester")
        results[name] = lifecycle.analyze(store, name, actor="tester")
    held, breached = _guardrails(results["harmless"]), _guardrails(results["harmful"])
    assert set(held) == {"latency_ms", "error_rate", "harmful_exposure", "provider_exposure_gap"}
    assert not any(g["failed"] for g in held.values()), {m: (g["failed"], g["result"]) for m, g in held.items()}
    assert results["harmless"]["verdict"] == "treatment_won" and results["harmless"]["winners"] == ["treatment"]
    assert all(g["failed"] for g in breached.values()), breached
    assert results["harmful"]["verdict"] == "guardrail_failed" and results["harmful"]["winners"] == []
    assert "not promotable" in results["harmful"]["recommendation"]
    # the figures are what the world served: latency +30 ms, harmful share up, the small provider starved
    assert breached["latency_ms"]["result"]["estimate"] == pytest.approx(30.0, abs=3.0)
    harmful = breached["harmful_exposure"]["result"]  # a flagged item first in 60% of the lists, not 2%: about +5.8 points
    assert harmful["method"] == "delta" and harmful["estimate"] == pytest.approx(0.058 * (1 - 0.1), abs=0.02)
    gap = breached["provider_exposure_gap"]["result"]
    assert gap["method"] == "bootstrap" and gap["groups"] == ["large", "small"] and gap["estimate"] > 0.15
    assert breached["error_rate"]["result"]["failed"]["treatment"] > breached["error_rate"]["result"]["failed"]["control"]
    with store.session() as session:
        assert lifecycle.gate_verdict(session, good)[0] is True
        passed, reasons, _ = lifecycle.gate_verdict(session, bad)
        assert not passed and "guardrail_failed" in reasons[0]


def test_a_changed_item_table_fails_the_gap_guardrail_and_a_bad_one_is_refused_at_plan(store: Any, tmp_path: Path) -> None:
    with store.session() as session:
        control, treatment = _model(session, "c2"), _model(session, "t2")
    path = _plan_file(tmp_path, "gap-table", control, treatment)
    broken = tmp_path / "broken.yaml"
    broken.write_text(path.read_text().replace(str(tmp_path / "items.csv"), str(tmp_path / "absent.csv")))
    with pytest.raises(PolicyError) as err:
        lifecycle.plan(store, parse_experiment(broken.read_text(), str(broken)), actor="tester")
    assert err.value.issues[0].path == "guardrails.3.items" and "cannot be read" in err.value.issues[0].message
    with store.session() as session:
        assert session.scalars(select(Experiment)).first() is None  # nothing stored
    lifecycle.plan(store, parse_experiment(path.read_text(), str(path)), actor="tester")
    lifecycle.start(store, "gap-table", actor="tester")
    _serve(store, "gap-table", SUBJECTS[:300], {"control": SAME, "treatment": {**SAME, "click": 0.6}}, np.random.default_rng(2))
    (tmp_path / "items.csv").write_text("item_id,provider_group\ni000,small\ni001,large\n")
    look = lifecycle.analyze(store, "gap-table", actor="tester")
    gap = _guardrails(look)["provider_exposure_gap"]
    assert gap["failed"] and "changed since the plan was frozen" in gap["result"]["reason"]


def test_a_treatment_that_serves_empty_lists_fails_the_empty_list_guardrail(store: Any, tmp_path: Path) -> None:
    """Every per-subject guardrail the plan language offers is computed: here the share of a subject's lists that came
    out empty (30% in the treatment, none in the control), beside the non-profiling and fallback shares (none in either)."""
    with store.session() as session:
        control, treatment = _model(session, "ec"), _model(session, "et")
    extra_guardrails = "".join(
        f"  - metric: {m}\n    margin: 0.05\n    direction: lower_is_better\n" for m in ("empty_list_share", "non_profiling_share", "fallback_share")
    )
    path = _plan_file(tmp_path, "empties", control, treatment)
    path.write_text(path.read_text().replace("design:\n", extra_guardrails + "design:\n"))
    lifecycle.plan(store, parse_experiment(path.read_text(), str(path)), actor="tester")
    lifecycle.start(store, "empties", actor="tester")
    _serve(store, "empties", SUBJECTS[:400], {"control": {**SAME, "empty": 0.0}, "treatment": {**SAME, "empty": 0.3}}, np.random.default_rng(4))
    look = lifecycle.analyze(store, "empties", actor="tester")
    guard = _guardrails(look)
    empty = guard["empty_list_share"]
    assert empty["failed"] and empty["result"]["estimate"] == pytest.approx(0.3, abs=0.06), repr(empty)
    assert not guard["non_profiling_share"]["failed"] and guard["non_profiling_share"]["result"]["estimate"] == 0
    assert not guard["fallback_share"]["failed"] and guard["fallback_share"]["result"]["estimate"] == 0
    assert look["verdict"] == "guardrail_failed"


def test_arm_level_metrics_are_not_compared_per_subject(store: Any) -> None:
    with pytest.raises(ConfigError, match="judged as a guardrail of the arm's whole traffic"):
        lifecycle.analyze(store, "anything", actor="tester", metric="harmful_exposure")


def test_futility_declared_in_the_plan_stops_a_hopeless_experiment(store: Any, db_url: str, tmp_path: Path) -> None:
    """No effect at all and a futility boundary at 50% conditional power: the first interim look says stop for futility."""
    with store.session() as session:
        control, treatment = _model(session, "fc"), _model(session, "ft")
    extra = "  futility_power: 0.5\n"
    path = _plan_file(tmp_path, "hopeless", control, treatment, method="group_sequential", looks=3, extra=extra)
    path.write_text(path.read_text().replace("mde: 0.2", "mde: 0.06"))  # about 700 subjects per arm
    loaded = parse_experiment(path.read_text(), str(path))
    frozen = lifecycle.plan(store, loaded, actor="tester")
    lifecycle.start(store, "hopeless", actor="tester")
    per_arm = frozen["sample_size"]["n_per_arm"][0]
    n = int(per_arm * 2 / 0.9 * 0.4)  # about 40% of the planned information
    same = {**SAME, "click": 0.2}
    _serve(store, "hopeless", [f"s{i:05d}" for i in range(n)], {"control": {**same, "click": 0.30}, "treatment": {**same, "click": 0.12}},
           np.random.default_rng(9), lists=1)  # fmt: skip
    said = CliRunner().invoke(cli, ["experiment", "analyze", "hopeless", "--database-url", db_url])
    assert said.exit_code == 0 and "planned look 1" in said.output and "=> stop for futility" in said.output, said.output
    assert re.search(r"guardrail provider_exposure_gap \(treatment, margin 0\.05\): (held|FAILED) \(estimate [+-][0-9.e-]+, one-sided bound", said.output)
    look = lifecycle.get(store, "hopeless")["looks"][-1]
    assert look["kind"] == "planned" and look["decision"] == "futility" and look["verdict"] == "futility", (n, look["comparisons"])
    assert look["recommendation"].startswith("stop for futility")
    comparison = look["comparisons"][0]["result"]
    assert comparison["conditional_power"] < 0.5 and 0 < comparison["information_fraction"] < 1
    after = lifecycle.analyze(store, "hopeless", actor="tester")  # the planned looks concluded: anything later explores
    assert after["kind"] == "exploratory"


def test_futility_is_refused_outside_a_group_sequential_design(tmp_path: Path) -> None:
    path = _plan_file(tmp_path, "fixed-futility", "a", "b", extra="  futility_power: 0.3\n")
    with pytest.raises(PolicyError) as err:
        parse_experiment(path.read_text(), str(path))
    issue = err.value.issues[0]
    assert issue.path == "design.futility_power" and issue.line is not None and "group_sequential" in issue.message


def test_holdback_days_without_a_holdback_is_refused(tmp_path: Path) -> None:
    path = _plan_file(tmp_path, "no-holdback", "a", "b", holdback_days=30)
    with pytest.raises(PolicyError) as err:
        parse_experiment(path.read_text().replace("holdback: 0.1\n", ""), str(path))
    assert err.value.issues[0].path == "holdback_days"


def test_the_holdback_stays_held_back_after_the_stop_for_its_declared_period(store: Any, tmp_path: Path) -> None:
    with store.session() as session:
        control, treatment = _model(session, "hc"), _model(session, "ht")
    path = _plan_file(tmp_path, "long-term", control, treatment, holdback_days=30)
    lifecycle.plan(store, parse_experiment(path.read_text(), str(path)), actor="tester")
    lifecycle.start(store, "long-term", actor="tester")
    with store.session() as session:
        during = lifecycle.in_force(session)
    before = {s: assign_in_force(during, s, may_profile=True)[1] for s in SUBJECTS}
    held = {s for s, a in before.items() if a["reason"] == "holdback"}
    assert 40 < len(held) < 100  # 10% of 700
    stopped = lifecycle.stop(store, "long-term", actor="tester")
    assert stopped["holdback_until"] is not None
    with store.session() as session:
        after = lifecycle.in_force(session)
    assert after is not None and after.running is None and [e.name for e in after.holdbacks] == ["long-term"]
    for s in SUBJECTS:
        taken = assign_in_force(after, s, may_profile=True)
        if s in held:
            assert taken is not None and taken[1] == {**before[s], "variant": "control"} and taken[1]["reason"] == "holdback"
        else:
            assert taken is None  # out of the experiment: served what is deployed
    assert assign_in_force(after, next(iter(held)), may_profile=False) is None  # no consent, no holdback
    # a new experiment does not take the subjects the old one still holds back
    other = _plan_file(tmp_path, "next-one", control, treatment)
    lifecycle.plan(store, parse_experiment(other.read_text(), str(other)), actor="tester")
    lifecycle.start(store, "next-one", actor="tester")
    with store.session() as session:
        both = lifecycle.in_force(session)
    for s in SUBJECTS[:200]:
        experiment, assignment = assign_in_force(both, s, may_profile=True)
        assert (experiment.name == "long-term") == (s in held)
    # the period ends: nobody is held back any more
    with store.session() as session:
        row = session.scalars(select(Experiment).where(Experiment.name == "long-term")).one()
        assert row.holdback_until - row.stopped_at == timedelta(days=30)
        row.holdback_until = datetime.now(UTC) - timedelta(seconds=1)
    with store.session() as session:
        ended = lifecycle.in_force(session)
    assert ended.holdbacks == () and ended.running.name == "next-one"


def test_the_analysis_reads_the_experiments_decisions_through_the_index(store: Any) -> None:
    """The query plan of the analysis's read uses ix_decisions_experiment on either engine."""
    from audits.models import DecisionRecord
    from governance.experiments.guardrails import experiment_id_of_decision

    with store.session() as session:
        query = select(DecisionRecord.subject).where(experiment_id_of_decision(session) == 7, DecisionRecord.decided_at >= datetime(2026, 1, 1, tzinfo=UTC))
        compiled = query.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SET LOCAL enable_seqscan = off"))  # an empty table: ask whether the index can serve
            plan = " ".join(r[0] for r in session.execute(text(f"EXPLAIN {compiled}")))
        else:
            plan = " ".join(str(r[-1]) for r in session.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
    assert "ix_decisions_experiment" in plan, plan


def test_a_plan_frozen_before_the_optional_fields_existed_keeps_its_hash() -> None:
    """Regression: holdback_days, design.futility_power and a guardrail's items/attribute left at their defaults are
    not hashed, so a plan frozen before they existed (this one, hashed by the earlier code) is still the same plan."""
    from governance.experiments.spec import ExperimentSpec, experiment_hash
    from tests.governance.test_experiments import PLAN as EARLIER

    loaded = parse_experiment(EARLIER)
    assert loaded.content_hash == "1befbba767a4ef8ef4f39e8b380e88bbf7083e7a8a1e3554b7e5e7ed20312bf4"
    stored = loaded.spec.model_dump(mode="json")  # what plan() freezes now: the new fields at their defaults
    assert "holdback_days" in stored and experiment_hash(ExperimentSpec.model_validate(stored)) == loaded.content_hash
    assert parse_experiment(EARLIER.replace("design:\n", "holdback: 0.1\nholdback_days: 7\ndesign:\n")).content_hash != parse_experiment(
        EARLIER.replace("design:\n", "holdback: 0.1\ndesign:\n")).content_hash  # fmt: skip


def test_the_final_look_waits_for_the_planned_size_and_the_primary_metric_is_not_peeked_at(store: Any, tmp_path: Path) -> None:
    """A fixed design's single look is final: taken before each arm reached the frozen sample size it is refused (with
    how many units are missing), and nothing is stored; an exploratory look at the primary metric (here on a segment)
    is refused while the planned look remains, a look at another metric is not."""
    with store.session() as session:
        control, treatment = _model(session, "pc"), _model(session, "pt")
    path = _plan_file(tmp_path, "peek", control, treatment)
    frozen = lifecycle.plan(store, parse_experiment(path.read_text(), str(path)), actor="tester")
    lifecycle.start(store, "peek", actor="tester")
    per_arm = frozen["sample_size"]["n_per_arm"]
    assert 20 < per_arm[0] < 150
    rng = np.random.default_rng(3)
    _serve(store, "peek", SUBJECTS[:40], {"control": SAME, "treatment": SAME}, rng, lists=1)
    with pytest.raises(lifecycle.ExperimentConflict, match=r"planned look 1 is the plan's final look.* still missing \(\d+ in all\)"):
        lifecycle.analyze(store, "peek", actor="tester")
    with pytest.raises(lifecycle.ExperimentConflict, match="exploratory look at the pre-registered primary metric 'click_through'.*0 of 1 taken"):
        lifecycle.analyze(store, "peek", actor="tester", segment="known")
    other = lifecycle.analyze(store, "peek", actor="tester", metric="clicks_per_subject")
    assert other["kind"] == "exploratory"
    assert [x["kind"] for x in lifecycle.get(store, "peek")["looks"]] == ["exploratory"]  # the refused looks stored nothing
    _serve(store, "peek", SUBJECTS[40:], {"control": SAME, "treatment": SAME}, rng, lists=1)
    look = lifecycle.analyze(store, "peek", actor="tester")
    assert look["kind"] == "planned" and look["look"] == 1
    assert look["comparisons"][0]["result"]["information_fraction"] == 1.0
    after = lifecycle.analyze(store, "peek", actor="tester", segment="known")  # no planned look remains: exploring is allowed
    assert after["kind"] == "exploratory" and after["metric"] == "click_through"


def test_subjects_who_object_to_analytics_are_left_out_of_every_look(store: Any, tmp_path: Path) -> None:
    """The rule off-policy evaluation applies: under an opt-out analytics purpose an objection excludes the subject,
    their outcomes with them; each look and the status count the exclusions per arm."""
    from audits.consent import record_consent

    with store.session() as session:
        control, treatment = _model(session, "cc"), _model(session, "ct")
    path = _plan_file(tmp_path, "objections", control, treatment)
    lifecycle.plan(store, parse_experiment(path.read_text(), str(path)), actor="tester")
    lifecycle.start(store, "objections", actor="tester")
    objecting = SUBJECTS[:200]
    with store.session() as session:
        for s in objecting:
            record_consent(session, subject_id=s, purpose="analytics", status="objected", lawful_basis="legitimate_interest", source="api")
    counts = _serve(store, "objections", SUBJECTS, {"control": SAME, "treatment": SAME}, np.random.default_rng(8), lists=1)
    look = lifecycle.analyze(store, "objections", actor="tester")
    excluded = look["consent"]["excluded"]["analytics_consent_not_in_force"]
    assert sum(excluded.values()) == 200 and set(excluded) <= {"control", "treatment", "holdback"}, excluded
    assert look["consent"]["model"] == "opt_out" and look["consent"]["purpose"] == "analytics"
    analysed = sum(sum(reasons.values()) for reasons in look["counts"].values())
    assert analysed == sum(counts.values()) - 200
    state = lifecycle.status(store, "objections", actor="tester")
    assert state["consent"]["excluded"] == look["consent"]["excluded"]
    assert sum(state["srm"]["observed"].values()) == look["randomised"]


def test_lists_served_under_a_stored_pack_that_asks_an_analytics_grant_analyse_only_the_subjects_who_gave_one(store: Any, tmp_path: Path) -> None:
    """The experiment reads a stored pack's analytics rule as off-policy evaluation does: under an ``opt_in`` purpose
    only subjects holding a grant are analysed. A pack it cannot read (here: without the installation's packs) is
    named, and the strict rule applies to it: never the looser opt-out one."""
    from audits.consent import record_consent
    from governance import packs as pack_store
    from governance.packs import shipped_pack_path

    text = shipped_pack_path("eu-gdpr-dsa").read_text()
    text = text.replace("name: eu-gdpr-dsa", "name: acme-eu", 1).replace(
        "    analytics:\n      lawful_basis: legitimate_interest\n      model: opt_out", "    analytics:\n      lawful_basis: consent\n      model: opt_in", 1
    )
    packs_dir = tmp_path / "packs"
    loaded, _ = pack_store.store_pack(packs_dir, text=text)
    assert loaded.pack.consent.purposes["analytics"].model == "opt_in"
    stamp = {"pack_name": loaded.pack.metadata.name, "pack_version": loaded.pack.metadata.version, "pack_hash": loaded.content_hash}
    with store.session() as session:
        control, treatment = _model(session, "sc"), _model(session, "st")
    path = _plan_file(tmp_path, "stored-opt-in", control, treatment)
    lifecycle.plan(store, parse_experiment(path.read_text(), str(path)), actor="tester")
    lifecycle.start(store, "stored-opt-in", actor="tester")
    granting = SUBJECTS[:300]
    with store.session() as session:
        for s in granting:
            record_consent(session, subject_id=s, purpose="analytics", status="granted", lawful_basis="consent", source="api")
    counts = _serve(store, "stored-opt-in", SUBJECTS, {"control": SAME, "treatment": SAME}, np.random.default_rng(9), lists=1, stamp=stamp)

    state = lifecycle.status(store, "stored-opt-in", actor="tester")  # read from the shipped packs only
    assert state["consent"]["model"] == "opt_in" and state["consent"]["packs_not_read"] == [f"acme-eu {stamp['pack_version']}"]
    assert sum(state["consent"]["excluded"]["analytics_consent_not_in_force"].values()) == len(SUBJECTS) - len(granting)

    look = lifecycle.analyze(store, "stored-opt-in", actor="tester", packs_dir=packs_dir)
    assert look["consent"]["model"] == "opt_in" and look["consent"]["packs_not_read"] == []
    excluded = look["consent"]["excluded"]["analytics_consent_not_in_force"]
    assert sum(excluded.values()) == len(SUBJECTS) - len(granting), excluded
    analysed = sum(sum(reasons.values()) for reasons in look["counts"].values())
    assert analysed == sum(counts.values()) - (len(SUBJECTS) - len(granting))
    state = lifecycle.status(store, "stored-opt-in", actor="tester", packs_dir=packs_dir)
    assert state["consent"]["excluded"] == look["consent"]["excluded"]


def test_an_infinite_or_never_failing_margin_and_an_undetectable_mde_are_refused_where_they_are_written(store: Any, tmp_path: Path) -> None:
    path = _plan_file(tmp_path, "absurd", "a", "b")
    text = path.read_text()
    with pytest.raises(PolicyError) as err:
        parse_experiment(text.replace("margin: 10\n", "margin: .inf\n"), str(path))
    assert err.value.issues[0].path.startswith("guardrails.0.margin") and err.value.issues[0].line is not None
    with pytest.raises(PolicyError) as err:
        parse_experiment(text.replace("margin: 0.02\n    direction: lower_is_better\n  - metric: harmful", "margin: 5\n    direction: lower_is_better\n  - metric: harmful"), str(path))
    assert err.value.issues[0].path == "guardrails.1.margin" and "could never fail" in err.value.issues[0].message
    with store.session() as session:
        control, treatment = _model(session, "ac"), _model(session, "at")
    path = _plan_file(tmp_path, "tiny-mde", control, treatment)
    tiny = path.read_text().replace("mde: 0.2", "mde: 0.000000001")
    with pytest.raises(PolicyError) as err:
        lifecycle.plan(store, parse_experiment(tiny, str(path)), actor="tester")
    issue = err.value.issues[0]
    assert issue.path == "design.mde" and issue.line is not None and "cannot be detected" in issue.message
    with store.session() as session:
        assert session.scalars(select(Experiment)).first() is None  # nothing stored


def _serve_by_mode(store: Any, subjects: list[str], fail: dict[tuple[str, str], float], rng: np.random.Generator, lists: int = 3) -> dict[tuple[str, str], int]:
    """Lists and failed requests as serving records them: even subjects are known to the model (personalized lists),
    odd ones new (fallback lists); each failure carries its assignment and the mode its list was being made in, and a
    shadow deployment's failed copy of every request is recorded too. ``fail[(variant, mode)]`` is the failure rate."""
    with store.session() as session:
        experiment = lifecycle.in_force(session).running
    stamp = _EU_STAMP
    failed: dict[tuple[str, str], int] = {}
    with DecisionLog(store) as log:
        futures = []
        for n, s in enumerate(subjects):
            a = assign(experiment, s, may_profile=True)
            mode = "personalized" if n % 2 == 0 else "fallback"
            variant = a["variant"] if a["reason"] == "randomised" else "control"
            for _ in range(lists):
                if rng.random() < fail[(variant, mode)]:
                    log_failure(store, "serve.RuntimeError", {"message": "boom", "mode": mode, "experiment": a})
                    failed[(variant, mode)] = failed.get((variant, mode), 0) + (a["reason"] == "randomised")
                log_failure(store, "serve.RuntimeError", {"message": "shadow boom", "mode": mode, "shadow": True, "experiment": a})
                futures.append(log.submit({**stamp, "mode": mode, "model_version": "m", "subject_id": s, "context": {"experiment": a, "latency_ms": 50.0},
                                           "slate": {"items": ITEMS[:5], "scores": [1.0] * 5, "tags": [[] for _ in range(5)]}}))  # fmt: skip
        for f in futures:
            f.result(timeout=120)
    clicks = [{"subject": s, "kind": "click", "item_id": ITEMS[0], "decision_id": ""} for s in subjects if rng.random() < 0.3]
    at = datetime.now(UTC)
    frame = pd.DataFrame([{"line": n, "value": np.nan, "event_id": f"c{n}", "occurred_at": at, **c} for n, c in enumerate(clicks, start=2)], columns=list(BATCH_COLUMNS))
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True).astype("datetime64[us, UTC]")
    frame["value"] = frame["value"].astype(float)
    with store.session() as session:
        record_outcomes(session, frame, source="import", anchor={"file_sha256": "b" * 64})
    return failed


def test_a_segmented_look_counts_the_failures_of_the_segments_requests_and_refuses_failures_it_cannot_place(store: Any, tmp_path: Path) -> None:
    """The treatment fails 40% of the requests of subjects the model does not know and 1% of the others. Each segment's
    error rate counts its own requests' failures (a shadow's failed copies never count); the whole arm's look counts all.
    One failure that recorded no mode cannot be placed in a segment: the segment's error rate is then refused, with the
    reason in the look, and the whole arm's is still computed."""
    with store.session() as session:
        control, treatment = _model(session, "sc"), _model(session, "st")
    path = _plan_file(tmp_path, "segments", control, treatment)
    lifecycle.plan(store, parse_experiment(path.read_text(), str(path)), actor="tester")
    lifecycle.start(store, "segments", actor="tester")
    rates = {("control", "personalized"): 0.01, ("control", "fallback"): 0.01, ("treatment", "personalized"): 0.01, ("treatment", "fallback"): 0.4}
    failed = _serve_by_mode(store, SUBJECTS, rates, np.random.default_rng(6))
    looks = {segment: lifecycle.analyze(store, "segments", actor="tester", metric="clicks_per_subject", segment=segment) for segment in ("known", "new", None)}
    errors = {segment: _guardrails(look)["error_rate"] for segment, look in looks.items()}
    mode = {"known": "personalized", "new": "fallback"}
    for segment in ("known", "new"):
        result = errors[segment]["result"]
        assert result["segment"] == segment and result["failed"] == {v: failed.get((v, mode[segment]), 0) for v in ("control", "treatment")}, result
        lists = {v: 3 * looks[segment]["srm"]["observed"][v] for v in ("control", "treatment")}
        assert result["requests"] == {v: lists[v] + result["failed"][v] for v in lists}
    assert not errors["known"]["failed"] and errors["new"]["failed"]
    assert errors[None]["failed"] and errors[None]["result"]["failed"] == {v: failed.get((v, "personalized"), 0) + failed.get((v, "fallback"), 0) for v in ("control", "treatment")}
    with store.session() as session:
        experiment = lifecycle.in_force(session).running
    log_failure(store, "serve.RuntimeError", {"message": "boom", "experiment": {"id": experiment.id, "variant": "control", "reason": "randomised"}})
    refused = _guardrails(lifecycle.analyze(store, "segments", actor="tester", metric="clicks_per_subject", segment="known"))["error_rate"]
    assert refused["failed"] and refused["result"]["refused"] and refused["result"]["failed_without_mode"] == {"control": 1, "treatment": 0}
    assert "error_rate within segment 'known' is refused: 1 failed request(s)" in refused["result"]["reason"]
    whole = _guardrails(lifecycle.analyze(store, "segments", actor="tester", metric="clicks_per_subject"))["error_rate"]["result"]
    assert whole["failed"]["control"] == errors[None]["result"]["failed"]["control"] + 1 and "refused" not in whole


CONSUMER_PLAN = """apiVersion: recgov/v1
kind: Experiment
metadata:
  name: {name}
  owner: growth team
hypothesis: The retrained model raises the share of subjects who click.
variants:
  - name: control
    control: true
    model_version: {control}
  - name: treatment
    model_version: {treatment}
allocation:
  control: 0.5
  treatment: 0.5
primary_metric: click_through
guardrails:
  - metric: consumer_quality_gap
    quality: click_through
    attribute: region
    min_group_size: 20
    margin: 0.05
    direction: lower_is_better
  - metric: consumer_quality_gap
    quality: click_through
    attribute: region
    min_group_size: 20
    margin: 0.5
    direction: lower_is_better
design:
  baseline: 0.3
  mde: 0.25
"""


def test_the_consumer_quality_gap_is_the_hand_computed_gap_between_region_groups_of_consenting_subjects(store: Any, tmp_path: Path) -> None:
    """Subjects in DE and FR (and 8 in MT, a group too small to judge, and some whose lists named no region). In the
    control DE clicks at 1/2 and FR at 3/10; in the treatment DE at 3/5 and FR at 1/5: the gap between the groups'
    click-through grows from about 0.2 to about 0.4. The look's figure is that difference, computed here by hand from
    the subjects' clicks; the subjects who object to analytics (all of them FR clickers) are in no group's mean. The
    guardrail with margin 0.05 fails (the look's verdict and the gate say so), the one with margin 0.5 holds."""
    from audits.consent import record_consent

    with store.session() as session:
        control, treatment = _model(session, "qc"), _model(session, "qt")
    path = tmp_path / "consumer.yaml"
    path.write_text(CONSUMER_PLAN.format(name="consumer-gap", control=control, treatment=treatment))
    lifecycle.plan(store, parse_experiment(path.read_text(), str(path)), actor="tester")
    lifecycle.start(store, "consumer-gap", actor="tester")
    with store.session() as session:
        experiment = lifecycle.in_force(session).running
    subjects = [f"q{i:04d}" for i in range(700)]
    region = {s: ("MT" if i < 8 else None if i < 20 else "DE" if i % 2 else "FR") for i, s in enumerate(subjects)}
    objecting = {s for i, s in enumerate(subjects) if region[s] == "FR" and i % 10 == 0}
    variant = {s: assign(experiment, s, may_profile=True)["variant"] for s in subjects}
    rates = {("control", "DE"): 0.5, ("control", "FR"): 0.3, ("treatment", "DE"): 0.6, ("treatment", "FR"): 0.2,
             ("control", "MT"): 1.0, ("treatment", "MT"): 0.0, ("control", None): 1.0, ("treatment", None): 0.0}  # fmt: skip
    clicking: set[str] = set(objecting)  # every objecting subject clicks: counted, they would move FR's means
    for (v, r), rate in rates.items():
        cell = [s for s in subjects if variant[s] == v and region[s] == r and s not in objecting]
        clicking |= set(cell[: round(rate * len(cell))])
    stamp = _EU_STAMP
    with DecisionLog(store) as log:
        futures = []
        for s in subjects:
            for n in range(2):  # a later list naming another region does not move the subject's group
                context = {"experiment": assign(experiment, s, may_profile=True), **({"region": region[s] if n == 0 else "XX"} if region[s] else {})}
                futures.append(log.submit({**stamp, "mode": "personalized", "model_version": "m", "subject_id": s, "context": context,
                                           "slate": {"items": ITEMS[:3], "scores": [1.0] * 3, "tags": [[] for _ in range(3)]}}))  # fmt: skip
        for f in futures:
            f.result(timeout=120)
    at = datetime.now(UTC)
    clicks = [{"subject": s, "kind": "click", "item_id": ITEMS[0], "decision_id": ""} for s in sorted(clicking)]
    frame = pd.DataFrame([{"line": n, "value": np.nan, "event_id": f"q{n}", "occurred_at": at, **c} for n, c in enumerate(clicks, start=2)], columns=list(BATCH_COLUMNS))
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True).astype("datetime64[us, UTC]")
    frame["value"] = frame["value"].astype(float)
    with store.session() as session:
        record_outcomes(session, frame, source="import", anchor={"file_sha256": "c" * 64})
        for s in sorted(objecting):
            record_consent(session, subject_id=s, purpose="analytics", status="objected", lawful_basis="legitimate_interest", source="api")
    # by hand: each arm's click-through per judged region over its consenting subjects, and the gap between them
    means = {}
    for v in ("control", "treatment"):
        for r in ("DE", "FR"):
            cell = [s for s in subjects if variant[s] == v and region[s] == r and s not in objecting]
            means[(v, r)] = sum(s in clicking for s in cell) / len(cell)
    gap = {v: abs(means[(v, "DE")] - means[(v, "FR")]) for v in ("control", "treatment")}
    look = lifecycle.analyze(store, "consumer-gap", actor="tester")
    strict, loose = (g for g in look["guardrails"] if g["metric"] == "consumer_quality_gap")
    result = strict["result"]
    assert "reason" not in result, (result.get("reason"), result.get("groups"))
    assert result["control"] == pytest.approx(gap["control"], abs=1e-12) and result["treatment"] == pytest.approx(gap["treatment"], abs=1e-12)
    assert result["estimate"] == pytest.approx(gap["treatment"] - gap["control"], abs=1e-12) and 0.15 < result["estimate"] < 0.25
    assert result["groups"]["DE"]["control"]["mean"] == pytest.approx(means[("control", "DE")]) and result["groups"]["DE"]["judged"]
    assert not result["groups"]["MT"]["judged"] and result["groups"]["MT"]["control"]["subjects"] + result["groups"]["MT"]["treatment"]["subjects"] == 8
    assert "XX" not in result["groups"] and sum(result["without_group"].values()) == 12
    assert result["n_control"] + result["n_treatment"] == sum(1 for s in subjects if region[s] in ("DE", "FR") and s not in objecting)
    assert result["method"] == "bootstrap" and result["ci_high"] > result["estimate"] and result["ci_low"] is None
    assert strict["failed"] and not loose["failed"] and loose["result"]["estimate"] == result["estimate"]
    assert look["verdict"] == "guardrail_failed" and look["consent"]["excluded"]["analytics_consent_not_in_force"]
    with store.session() as session:
        passed, reasons, _ = lifecycle.gate_verdict(session, treatment)
    assert not passed


@pytest.mark.parametrize(
    ("guardrail", "path", "says"),
    [
        ("  - metric: consumer_quality_gap\n    attribute: region\n    margin: 0.05\n    direction: lower_is_better\n", "guardrails.0", "needs 'quality'"),
        ("  - metric: consumer_quality_gap\n    quality: conversion\n    margin: 0.05\n    direction: lower_is_better\n", "guardrails.0", "got attribute 'provider_group'"),
        ("  - metric: consumer_quality_gap\n    quality: conversion\n    attribute: user_id\n    margin: 0.05\n    direction: lower_is_better\n", "guardrails.0.attribute", "(region); got attribute 'user_id'"),
        ("  - metric: consumer_quality_gap\n    quality: click_through\n    attribute: region\n    margin: 1.5\n    direction: lower_is_better\n", "guardrails.0.margin", "could never fail"),
        ("  - metric: latency_ms\n    quality: click_through\n    margin: 5\n    direction: lower_is_better\n", "guardrails.0.quality", "applies to consumer_quality_gap only"),
        ("  - metric: latency_ms\n    min_group_size: 5\n    margin: 5\n    direction: lower_is_better\n", "guardrails.0.min_group_size", "applies to consumer_quality_gap only"),
        ("  - metric: error_rate\n    attribute: region\n    margin: 0.1\n    direction: lower_is_better\n", "guardrails.0.attribute", "applies to provider_exposure_gap and consumer_quality_gap only"),
    ],
)
def test_a_consumer_quality_gap_is_declared_with_its_quality_metric_and_a_recorded_attribute(guardrail: str, path: str, says: str) -> None:
    text = CONSUMER_PLAN.format(name="bad-gap", control="a", treatment="b")
    text = text[: text.index("guardrails:\n") + len("guardrails:\n")] + guardrail + text[text.index("design:\n") :]
    with pytest.raises(PolicyError) as err:
        parse_experiment(text)
    assert any(i.path == path and says in i.message for i in err.value.issues), err.value.issues


def test_a_consumer_quality_gap_of_clicks_per_subject_may_have_a_margin_above_one() -> None:
    text = CONSUMER_PLAN.format(name="clicks-gap", control="a", treatment="b").replace("quality: click_through", "quality: clicks_per_subject").replace("margin: 0.5", "margin: 1.5")
    loaded = parse_experiment(text)
    assert [g.margin for g in loaded.spec.guardrails] == [0.05, 1.5] and loaded.spec.guardrails[0].quality == "clicks_per_subject"


def test_a_win_served_under_a_pack_the_control_did_not_serve_does_not_promote_the_model(store: Any, tmp_path: Path) -> None:
    """A treatment that serves the model under a pack of its own measures the pack and the model together: its win is
    no evidence for the model alone, and the gate says so rather than promote it on that win."""
    with store.session() as session:
        control, treatment = _model(session, "pc"), _model(session, "pt")
    path = _plan_file(tmp_path, "own-pack", control, treatment)
    text = path.read_text().replace(f"    model_version: {treatment}\n", f"    model_version: {treatment}\n    pack: california-ccpa\n")
    path.write_text(text)
    lifecycle.plan(store, parse_experiment(text, str(path)), actor="tester")
    lifecycle.start(store, "own-pack", actor="tester")
    _serve(store, "own-pack", SUBJECTS, {"control": SAME, "treatment": {**SAME, "click": 0.5}}, np.random.default_rng(7))
    lifecycle.stop(store, "own-pack", actor="tester")
    look = lifecycle.analyze(store, "own-pack", actor="tester")
    assert look["verdict"] == "treatment_won" and look["winners"] == ["treatment"]
    with store.session() as session:
        passed, reasons, evidence = lifecycle.gate_verdict(session, treatment)
    assert not passed and evidence is None
    assert "under pack 'california-ccpa'" in reasons[0] and "not evidence for the model alone" in reasons[0]
