"""Experiment looks, red-teamed: an erased subject is no longer analysed (on SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from audits.models import Experiment

from governance.experiments import lifecycle
from governance.experiments.spec import parse_experiment
from tests.governance.test_experiment_guardrails import PLAN, SAME, SUBJECTS, _model, _plan_file, _serve

pytestmark = pytest.mark.usefixtures("fixed_experiment_salts")


def test_an_erased_subject_is_left_out_of_every_look_and_the_status(store: Any, tmp_path: Path) -> None:
    """Erasure deletes a subject's outcome events but keeps their decisions under the shredded pseudonym: counted, they
    would enter the look as a subject who never clicked. They are left out, and counted per arm as excluded."""
    from governance.packs import shipped_pack_path
    from governance.policy import load_pack
    from governance.privacy.erasure import erase_subject

    with store.session() as session:
        control, treatment = _model(session, "ec"), _model(session, "et")
    path = _plan_file(tmp_path, "erasures", control, treatment)
    lifecycle.plan(store, parse_experiment(path.read_text(), str(path)), actor="tester")
    lifecycle.start(store, "erasures", actor="tester")
    counts = _serve(store, "erasures", SUBJECTS, {"control": SAME, "treatment": {**SAME, "click": 1.0}}, np.random.default_rng(3), lists=1)
    erased = SUBJECTS[:40]
    pack = load_pack(shipped_pack_path("eu-gdpr-dsa"))
    for subject in erased:
        erase_subject(store, subject, pack=pack, measure_residual=False, measure_carbon=False)
    look = lifecycle.analyze(store, "erasures", actor="tester", metric="clicks_per_subject")
    analysed = sum(sum(reasons.values()) for reasons in look["counts"].values())
    assert analysed == sum(counts.values()) - len(erased)
    assert sum(look["consent"]["excluded"]["erased_subjects"].values()) == len(erased)
    state = lifecycle.status(store, "erasures", actor="tester")
    assert state["consent"]["excluded"] == look["consent"]["excluded"]


def test_a_reversed_guardrail_would_let_a_harmful_treatment_through_so_the_plan_refuses_it(store: Any, tmp_path: Path) -> None:
    """A guardrail's direction is the metric's own: written the other way round (harmful exposure 'higher is better'),
    it holds while the treatment serves more flagged items, and the gate lets the treatment's model through."""
    from governance.located import PolicyError

    with store.session() as session:
        control, treatment = _model(session, "rc"), _model(session, "rt")
    path = _plan_file(tmp_path, "reversed", control, treatment)
    for metric in ("latency_ms", "error_rate", "harmful_exposure", "provider_exposure_gap"):
        text = path.read_text()
        start = text.index(f"metric: {metric}")
        end = text.index("direction: lower_is_better", start) + len("direction: ")
        path.write_text(text[:end] + "higher" + text[end + len("lower"):])
    with pytest.raises(PolicyError) as refused:
        lifecycle.plan(store, parse_experiment(path.read_text(), str(path)), actor="tester")
    messages = [(i.path, i.message) for i in refused.value.issues]
    assert [p for p, _ in messages] == [f"guardrails.{i}.direction" for i in range(4)], messages
    assert all("lower_is_better" in m and str(path) not in m for _, m in messages)
    assert all(i.line is not None for i in refused.value.issues)
    with store.session() as session:
        assert session.scalars(select(Experiment)).first() is None  # nothing stored


@pytest.mark.parametrize(("metric", "direction"), [("click_through", "lower_is_better"), ("non_profiling_share", "higher_is_better"),
                                                   ("empty_list_share", "higher_is_better")])  # fmt: skip
def test_every_guardrail_metric_has_one_direction(metric: str, direction: str) -> None:
    from governance.located import PolicyError

    text = PLAN.format(name="dirs", control="m1", treatment="m2", items="x.csv", method="fixed", looks=1, extra="", holdback_days=0)
    text = text.replace("guardrails:\n", f"guardrails:\n  - metric: {metric}\n    margin: 0.01\n    direction: {direction}\n", 1)
    with pytest.raises(PolicyError, match=rf"guardrails\.0\.direction: {metric} is better"):
        parse_experiment(text, "dirs.yaml")


def test_a_guardrail_the_model_failed_in_a_later_experiment_outweighs_an_earlier_win(store: Any, tmp_path: Path) -> None:
    """The gate took the first experiment with a win, so a model version that won once was promoted after a later
    experiment found it serving flagged items, slower lists and a wider provider gap."""
    from tests.governance.test_experiment_guardrails import WORSE, _flags

    with store.session() as session:
        control, model = _model(session, "gc"), _model(session, "gm")
    _flags(store)
    rng = np.random.default_rng(5)
    for name, arm in (("first-win", {**SAME, "click": 0.5}), ("later-harm", {**WORSE, "click": 0.5})):
        path = _plan_file(tmp_path, name, control, model)
        lifecycle.plan(store, parse_experiment(path.read_text(), str(path)), actor="tester")
        lifecycle.start(store, name, actor="tester")
        _serve(store, name, SUBJECTS, {"control": SAME, "treatment": arm}, rng)
        lifecycle.stop(store, name, actor="tester")
        look = lifecycle.analyze(store, name, actor="tester")
        assert look["verdict"] == ("treatment_won" if name == "first-win" else "guardrail_failed"), look["verdict"]
    with store.session() as session:
        passed, reasons, evidence = lifecycle.gate_verdict(session, model)
    assert not passed and evidence is None
    assert any("later-harm" in r and "guardrail" in r and "harmful_exposure" in r for r in reasons), reasons


def test_an_exploratory_look_does_not_show_the_primary_metric_through_its_guardrail(store: Any, tmp_path: Path) -> None:
    """While planned looks remain, an exploratory look at the primary metric is refused; a guardrail on that same metric
    showed its estimate and bound in every exploratory look at another metric, so the analyst could time the planned
    look anyway. It says whether it failed (a harm still stops the experiment), not the figures, until no planned look
    remains."""
    with store.session() as session:
        control, treatment = _model(session, "kc"), _model(session, "kt")
    path = _plan_file(tmp_path, "proxy", control, treatment, method="group_sequential", looks=2)
    text = path.read_text().replace("guardrails:\n", "guardrails:\n  - metric: click_through\n    margin: 0.05\n    direction: higher_is_better\n", 1)
    path.write_text(text)
    lifecycle.plan(store, parse_experiment(path.read_text(), str(path)), actor="tester")
    lifecycle.start(store, "proxy", actor="tester")
    _serve(store, "proxy", SUBJECTS, {"control": SAME, "treatment": {**SAME, "click": 0.6}}, np.random.default_rng(4), lists=1)
    look = lifecycle.analyze(store, "proxy", actor="tester", metric="latency_ms")
    assert look["kind"] == "exploratory"
    primary = [g for g in look["guardrails"] if g["metric"] == "click_through"]
    assert len(primary) == 1 and primary[0]["failed"] is False
    shown = primary[0]["result"]
    assert not {"estimate", "ci_low", "ci_high", "p_value"} & set(shown), shown
    assert "primary metric" in shown["reason"]
    others = [g for g in look["guardrails"] if g["metric"] == "latency_ms"]
    assert others and "estimate" in others[0]["result"]  # other guardrails keep their figures
    planned = lifecycle.analyze(store, "proxy", actor="tester")
    assert planned["kind"] == "planned" and "estimate" in next(g for g in planned["guardrails"] if g["metric"] == "click_through")["result"]
