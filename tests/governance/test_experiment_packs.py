"""An arm's pack and model when a plan is frozen, and guardrails an old plan froze the wrong way round; on SQLite and PostgreSQL.

A variant that names a pack serves its subjects under it instead of the request's: a pack weaker than the production
pack (or the control's) is refused unless the plan says why, and the model an arm serves must be one its pack admits
(the minimisation allow-list, the forbidden attributes), as a governed fit under that pack would require. A plan
frozen before guardrail directions were checked is judged by each metric's own direction, does not start, and its
looks judged the other way do not pass the gate.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from audits.lineage import record_dataset_version, record_model_version, record_training_run
from audits.models import Experiment, ExperimentLook, TrailEvent
from governance.cli import app as cli
from governance.deploy_policy import StageRequirements, set_binding
from governance.experiments import lifecycle
from governance.experiments.spec import ExperimentSpec, canonical_plan, parse_experiment
from governance.located import PolicyError
from governance.packs import shipped_pack_path
from governance.policy import load_pack
from tests.governance.test_experiment_guardrails import SAME, SUBJECTS, WORSE, _flags, _plan_file, _serve
from tests.governance.test_experiment_guardrails import _model as _guardrail_model

pytestmark = pytest.mark.usefixtures("fixed_experiment_salts")

PLAN = """apiVersion: recgov/v1
kind: Experiment
metadata:
  name: {name}
  owner: growth team
hypothesis: Lists under the other arm are clicked more often.
variants:
  - name: control
    control: true
{control}
  - name: treatment
{treatment}
allocation:
  control: 0.5
  treatment: 0.5
primary_metric: click_through
guardrails:
  - metric: non_profiling_share
    margin: 0.05
    direction: lower_is_better
design:
  baseline: 0.1
  mde: 0.05
"""


def _load(ref: str) -> Any:
    return load_pack(shipped_pack_path(ref))


def _plan(name: str, control: str = "", treatment: str = "") -> Any:
    text = PLAN.format(name=name, control=control or "    pack: eu-gdpr-dsa", treatment=treatment)
    return parse_experiment(text, f"{name}.yaml")


def _model(session: Any, name: str, *, kind: str = "als", params: dict[str, Any] | None = None) -> str:
    data = record_dataset_version(session, content_hash=f"sha256:{name}", name=name, source="synthetic:seed=1", n_events=1, n_users=1, n_items=1, schema={}, validation=None)
    end = datetime.now(UTC) - timedelta(seconds=1)
    run = record_training_run(session, dataset_version=data, params=params or {}, library_versions={}, started_at=end - timedelta(seconds=1), ended_at=end)
    record_model_version(session, version_id=f"{kind}-{name}", kind=kind, training_run=run, artifact_hash="sha256:0", artifact_location=f"/nowhere/{name}.npz")
    return f"{kind}-{name}"


def _refused(store: Any, loaded: Any) -> list[tuple[str, str]]:
    with pytest.raises(PolicyError) as refused:
        lifecycle.plan(store, loaded, actor="tester", load_pack=_load)
    with store.session() as session:
        assert session.scalars(select(Experiment).where(Experiment.name == loaded.name)).first() is None  # nothing stored
    return [(i.path, i.message) for i in refused.value.issues]


def test_a_treatment_under_a_pack_weaker_than_the_controls_is_refused_unless_acknowledged(store: Any) -> None:
    issues = _refused(store, _plan("weaker", treatment="    pack: baseline"))
    assert [p for p, _ in issues] == ["variants.1.pack"], issues
    message = issues[0][1]
    assert "variant 'treatment' would serve its subjects under pack 'baseline', which protects them less than the control's pack eu-gdpr-dsa" in message
    assert "consent: 0 consent_coverage rule(s), not 1" in message and "fairness: 0 provider_exposure rule(s), not 1" in message
    assert "weaker_pack_acknowledged" in message
    acknowledged = _plan("weaker", treatment="    pack: baseline\n    weaker_pack_acknowledged: the baseline pack is the question itself, approved by the DPO")
    summary = lifecycle.plan(store, acknowledged, actor="tester", load_pack=_load)
    with store.session() as session:
        event = session.scalars(select(TrailEvent).where(TrailEvent.seq == summary["plan_seq"])).one()
    import json

    payload = json.loads(event.payload) if isinstance(event.payload, str) else event.payload
    recorded = payload["weaker_packs_acknowledged"]["treatment"]
    assert recorded["pack"] == "baseline" and recorded["why"].startswith("the baseline pack is the question")
    assert any("consent_coverage" in f for f in recorded["weaker_than"]["the control's pack eu-gdpr-dsa"])
    assert "weaker_pack_acknowledged" not in payload["variants"][0]  # recorded only where given


def test_an_arm_pack_weaker_than_the_production_pack_is_refused(store: Any) -> None:
    eu = _load("eu-gdpr-dsa")
    with store.session() as session:
        set_binding(session, stage="production", ref="eu-gdpr-dsa", pack=eu, requirements=StageRequirements(), actor="admin")
    issues = _refused(store, _plan("below-production", control="    model_version: null", treatment="    pack: california-ccpa"))
    assert [p for p, _ in issues] == ["variants.1.pack"], issues
    assert f"protects them less than the production pack eu-gdpr-dsa@{eu.version}: " in issues[0][1]
    assert "consent purpose 'personalization' is opt_out, not opt_in (no grant needed)" in issues[0][1]
    # the control itself under a weaker pack is refused too: its subjects are served under it
    issues = _refused(store, _plan("weak-control", control="    pack: baseline", treatment="    pack: eu-gdpr-dsa"))
    assert [p for p, _ in issues] == ["variants.0.pack"], issues
    # as protective as production: planned
    assert lifecycle.plan(store, _plan("as-strong", control="    model_version: null", treatment="    pack: eu-gdpr-dsa"), actor="tester", load_pack=_load)


def test_an_acknowledgement_without_a_pack_is_a_located_error_and_old_plans_hash_as_before() -> None:
    text = PLAN.format(name="no-pack", control="    pack: eu-gdpr-dsa", treatment="    model_version: m2\n    weaker_pack_acknowledged: nothing to acknowledge here")
    with pytest.raises(PolicyError) as refused:
        parse_experiment(text, "no-pack.yaml")
    assert [(i.path, i.line) for i in refused.value.issues] == [("variants.1.weaker_pack_acknowledged", 13)]
    loaded = _plan("same-hash", treatment="    pack: california-ccpa")
    assert all("weaker_pack_acknowledged" not in v for v in canonical_plan(loaded.spec)["variants"])


def test_a_model_its_arms_pack_does_not_admit_is_refused(store: Any) -> None:
    with store.session() as session:
        content = _model(session, "content", kind="content_tfidf", params={"family": "content_tfidf", "family_params": {}, "model_inputs": ["user_id", "item_id", "item_text"]})
        religious = _model(session, "religion", params={"model_inputs": ["user_id", "item_id", "religion_code"]})
        plain = _model(session, "plain", params={"model_inputs": ["user_id", "item_id", "event_type", "value"]})
    issues = _refused(store, _plan("content-arm", treatment=f"    model_version: {content}\n    pack: eu-gdpr-dsa"))
    assert [p for p, _ in issues] == ["variants.1.model_version"], issues
    assert issues[0][1].startswith(f"variant 'treatment' would serve under its pack 'eu-gdpr-dsa', which does not admit the model: model version {content!r} (family content_tfidf) reads ")
    assert "not on minimization.purposes.personalization.allowed_inputs" in issues[0][1] and "item_text" in issues[0][1]
    issues = _refused(store, _plan("religion-arm", treatment=f"    model_version: {religious}\n    pack: eu-gdpr-dsa"))
    assert [p for p, _ in issues] == ["variants.1.model_version"], issues
    assert "was trained on religion_code, which the pack's minimization.forbidden_attributes or audit_only_attributes name" in issues[0][1]
    # under a pack that allows it (baseline has no such attribute), and for a model reading what eu allows: planned
    assert lifecycle.plan(store, _plan("plain-arm", treatment=f"    model_version: {plain}\n    pack: eu-gdpr-dsa"), actor="tester", load_pack=_load)
    # an arm without a pack of its own serves under the request's: the production pack when one is bound
    with store.session() as session:
        set_binding(session, stage="production", ref="eu-gdpr-dsa", pack=_load("eu-gdpr-dsa"), requirements=StageRequirements(), actor="admin")
    issues = _refused(store, _plan("content-production", control="    model_version: null", treatment=f"    model_version: {content}"))
    assert [p for p, _ in issues] == ["variants.1.model_version"], issues
    assert "would serve under the production pack eu-gdpr-dsa@" in issues[0][1]


def test_a_model_fitted_from_a_forbidden_column_under_another_name_is_refused(store: Any) -> None:
    """Regression: the arm's check read only the recorded field names (``value``), not the column the fit read it
    from (``--map value=religion_code``, the run's ``input_sources``), so such a model was served under a pack
    forbidding religion."""
    fields = ["user_id", "item_id", "event_type", "value"]
    with store.session() as session:
        mapped = _model(session, "mapped", params={"model_inputs": fields, "input_sources": {"event field value": "religion_code"}})
        renamed = _model(session, "renamed", params={"model_inputs": fields, "input_sources": {"event field value": "rating"}})
    issues = _refused(store, _plan("mapped-arm", treatment=f"    model_version: {mapped}\n    pack: eu-gdpr-dsa"))
    assert [p for p, _ in issues] == ["variants.1.model_version"], issues
    assert "was trained on religion_code, which the pack's minimization.forbidden_attributes or audit_only_attributes name" in issues[0][1]
    assert lifecycle.plan(store, _plan("renamed-arm", treatment=f"    model_version: {renamed}\n    pack: eu-gdpr-dsa"), actor="tester", load_pack=_load)


def _models(store: Any, name: str) -> tuple[str, str]:
    """A control and a treatment model version, recorded for the experiment ``name``."""
    with store.session() as session:
        return _guardrail_model(session, f"{name}-c"), _guardrail_model(session, f"{name}-t")


def _planned(store: Any, tmp_path: Path, name: str, *, edit: Any = None, load_pack: Any = None) -> tuple[str, str, dict[str, Any]]:
    """The guardrail world's plan for two new model versions (its text changed by ``edit``), frozen:
    ``(control, treatment, summary)``."""
    control, treatment = _models(store, name)
    path = _plan_file(tmp_path, name, control, treatment)
    text = edit(path.read_text()) if edit else path.read_text()
    return control, treatment, lifecycle.plan(store, parse_experiment(text, str(path)), actor="tester", load_pack=load_pack)


def _served(store: Any, name: str, treatment: dict[str, float], seed: int, *, subjects: list[str] = SUBJECTS, lists: int = 3) -> None:
    """Start ``name``, serve ``subjects`` (the control as usual, the treatment as ``treatment`` says), stop it."""
    lifecycle.start(store, name, actor="tester")
    _serve(store, name, subjects, {"control": SAME, "treatment": treatment}, np.random.default_rng(seed), lists=lists)
    lifecycle.stop(store, name, actor="tester")


def _plan_as_before_directions_were_checked(store: Any, text: str, source: str) -> None:
    """Freeze ``text`` with its first guardrail reversed, as a recgov that did not check directions froze it."""
    from governance.experiments.spec import LoadedExperiment

    loaded = parse_experiment(text, source)
    document = loaded.spec.model_dump(mode="json")
    document["guardrails"][0]["direction"] = "higher_is_better"
    lifecycle.plan(store, LoadedExperiment(ExperimentSpec.model_validate(document), source, loaded.positions), actor="tester")


def test_a_plan_frozen_with_a_reversed_guardrail_is_judged_by_the_metrics_direction(store: Any, tmp_path: Path) -> None:
    control, treatment = _models(store, "old-plan")
    _flags(store)
    path = _plan_file(tmp_path, "old-plan", control, treatment)
    text = path.read_text()
    start = text.index("guardrails:\n")
    end = text.index("design:")
    path.write_text(text[:start] + "guardrails:\n  - metric: harmful_exposure\n    margin: 0.02\n    direction: lower_is_better\n" + text[end:])
    _plan_as_before_directions_were_checked(store, path.read_text(), str(path))
    with pytest.raises(lifecycle.ExperimentConflict, match=r"harmful_exposure \(higher_is_better, but it is lower_is_better\).*It does not start"):
        lifecycle.start(store, "old-plan", actor="tester")
    with store.session() as session:  # started before this recgov refused it
        session.execute(update(Experiment).where(Experiment.name == "old-plan").values(status="running", started_at=datetime.now(UTC)))
    _serve(store, "old-plan", SUBJECTS, {"control": SAME, "treatment": {**WORSE, "click": 0.5}}, np.random.default_rng(7))
    lifecycle.stop(store, "old-plan", actor="tester")
    look = lifecycle.analyze(store, "old-plan", actor="tester")
    harm = [g for g in look["guardrails"] if g["metric"] == "harmful_exposure"]
    assert harm and harm[0]["failed"] is True, harm  # judged as the harm it is
    assert (harm[0]["direction"], harm[0]["plan_direction"]) == ("lower_is_better", "higher_is_better")
    assert look["verdict"] == "guardrail_failed"
    with store.session() as session:
        passed, reasons, _ = lifecycle.gate_verdict(session, treatment)
    assert not passed and any("harmful_exposure" in r for r in reasons), reasons


def test_a_look_judged_the_wrong_way_round_does_not_pass_the_gate(store: Any, tmp_path: Path) -> None:
    """A look stored before directions were fixed says the harm held: the gate cannot tell, and refuses it."""
    _, treatment, _ = _planned(store, tmp_path, "won")
    _served(store, "won", {**SAME, "click": 0.5}, 5)
    assert lifecycle.analyze(store, "won", actor="tester")["verdict"] == "treatment_won"
    with store.session() as session:
        assert lifecycle.gate_verdict(session, treatment)[0] is True
        look = session.scalars(select(ExperimentLook).order_by(ExperimentLook.id.desc())).first()
        result = {**look.result, "guardrails": [{**g, "direction": "higher_is_better"} if g["metric"] == "harmful_exposure" else g for g in look.result["guardrails"]]}
        session.execute(update(ExperimentLook).where(ExperimentLook.id == look.id).values(result=result))
    with store.session() as session:
        passed, reasons, evidence = lifecycle.gate_verdict(session, treatment)
    assert not passed and evidence is None
    assert any("judged the guardrail(s) harmful_exposure (higher_is_better) the wrong way round" in r for r in reasons), reasons


def test_switching_harm_flags_off_before_the_look_does_not_hide_the_harm(store: Any, tmp_path: Path) -> None:
    """harmful_exposure counted the flags active when the look ran: an admin who switched them off after the
    treatment served the flagged items (and on again after the look) let the harm pass the guardrail."""
    from audits.harm import set_flag_active
    from audits.models import ItemFlag

    _flags(store)
    _, treatment, _ = _planned(store, tmp_path, "flags-off")
    _served(store, "flags-off", {**SAME, "harm": 0.6, "click": 0.5}, 11)
    with store.session() as session:
        for flag in session.scalars(select(ItemFlag.id)).all():
            set_flag_active(session, flag, active=False, note="false positive", actor="admin")
    look = lifecycle.analyze(store, "flags-off", actor="tester")
    harm = next(g for g in look["guardrails"] if g["metric"] == "harmful_exposure")
    assert harm["failed"] is True, harm
    assert look["verdict"] == "guardrail_failed"
    with store.session() as session:
        assert lifecycle.gate_verdict(session, treatment)[0] is False


def test_a_sample_size_lowered_in_the_store_is_caught_before_the_look(store: Any, tmp_path: Path) -> None:
    """The final look waits for the sample size the plan froze; that size sat in a table that is not append-only,
    so lowering it there let the final look (and a win) come early."""
    _, _, planned = _planned(store, tmp_path, "early", edit=lambda text: text.replace("  mde: 0.2\n", "  mde: 0.02\n"))  # far more subjects than served
    _served(store, "early", {**SAME, "click": 0.5}, 2, subjects=SUBJECTS[:200], lists=1)
    with pytest.raises(lifecycle.ExperimentConflict, match="planned look 1 is the plan's final look"):
        lifecycle.analyze(store, "early", actor="tester")
    with store.session() as session:
        row = session.scalars(select(Experiment).where(Experiment.name == "early")).one()
        lowered = {**row.plan, "sample_size": {**row.plan["sample_size"], "n_per_arm": [10 for _ in row.plan["sample_size"]["n_per_arm"]]}}
        session.execute(update(Experiment).where(Experiment.id == row.id).values(plan=lowered))
    with pytest.raises(lifecycle.ExperimentConflict, match=rf"the stored sample size is not the one the trail anchored .*event {planned['plan_seq']}"):
        lifecycle.analyze(store, "early", actor="tester")
    with store.session() as session:
        assert session.scalars(select(ExperimentLook)).first() is None  # nothing stored


def _upgraded_eu(tmp_path: Path) -> Any:
    """The pack eu-gdpr-dsa under the same name and version, with other content (as an upgrade in place would be)."""
    text = shipped_pack_path("eu-gdpr-dsa").read_text().replace("  owner: Data Protection Officer\n", "  owner: Another Officer\n", 1)
    path = tmp_path / "eu-gdpr-dsa.yaml"
    path.write_text(text)
    return load_pack(path)


def test_an_arms_pack_is_pinned_by_content_and_a_changed_pack_refuses_start_and_looks(store: Any, tmp_path: Path) -> None:
    eu, upgraded = _load("eu-gdpr-dsa"), _upgraded_eu(tmp_path)
    assert upgraded.content_hash != eu.content_hash and upgraded.pack.metadata.name == "eu-gdpr-dsa"
    current = {"eu-gdpr-dsa": eu}
    with store.session() as session:
        plain = _model(session, "plain", params={"model_inputs": ["user_id", "item_id", "event_type", "value"]})
    treatment = f"    model_version: {plain}\n    pack: eu-gdpr-dsa"
    loaded = _plan("pinned", treatment=treatment)
    before = loaded.content_hash
    summary = lifecycle.plan(store, loaded, actor="tester", load_pack=current.__getitem__)
    assert summary["plan_hash"] == before == parse_experiment(PLAN.format(name="pinned", control="    pack: eu-gdpr-dsa", treatment=treatment), "x").content_hash
    pins = {"control": {"pack": "eu-gdpr-dsa", "content_hash": eu.content_hash}, "treatment": {"pack": "eu-gdpr-dsa", "content_hash": eu.content_hash}}
    with store.session() as session:
        assert session.scalars(select(Experiment.plan).where(Experiment.name == "pinned")).one()["pack_pins"] == pins
        event = session.scalars(select(TrailEvent).where(TrailEvent.seq == summary["plan_seq"])).one()
    import json

    assert (json.loads(event.payload) if isinstance(event.payload, str) else event.payload)["pack_pins"] == pins  # anchored
    current["eu-gdpr-dsa"] = upgraded
    changed = rf"experiment 'pinned', variant 'control' \(variants\.0\.pack\): pack 'eu-gdpr-dsa' has changed since the plan was frozen \(content hash {eu.content_hash} pinned, {upgraded.content_hash} now\)"
    with pytest.raises(lifecycle.ExperimentConflict, match=changed):
        lifecycle.start(store, "pinned", actor="tester", load_pack=current.__getitem__)
    assert lifecycle.get(store, "pinned")["status"] == "planned"  # nothing changed
    current["eu-gdpr-dsa"] = eu
    assert lifecycle.start(store, "pinned", actor="tester", load_pack=current.__getitem__)["status"] == "running"
    current["eu-gdpr-dsa"] = upgraded  # upgraded while the experiment runs
    with pytest.raises(lifecycle.ExperimentConflict, match=changed):
        lifecycle.analyze(store, "pinned", actor="tester", load_pack=current.__getitem__)
    with store.session() as session:
        assert session.scalars(select(ExperimentLook)).first() is None  # no look stored
        row = session.scalars(select(Experiment).where(Experiment.name == "pinned")).one()
        session.execute(update(Experiment).where(Experiment.id == row.id).values(plan={**row.plan, "pack_pins": {**pins, "control": {"pack": "eu-gdpr-dsa", "content_hash": upgraded.content_hash}}}))
    # re-pinning the upgraded content in the store is caught against the trail
    with pytest.raises(lifecycle.ExperimentConflict, match=r"the stored arms' pack pins is not the one the trail anchored"):
        lifecycle.analyze(store, "pinned", actor="tester", load_pack=current.__getitem__)


def test_an_arm_without_a_model_version_is_checked_against_the_production_model(store: Any) -> None:
    from audits.lineage import record_deployment

    with store.session() as session:
        content = _model(session, "pcontent", kind="content_tfidf", params={"family": "content_tfidf", "family_params": {}, "model_inputs": ["user_id", "item_id", "item_text"]})
        plain = _model(session, "pplain", params={"model_inputs": ["user_id", "item_id", "event_type", "value"]})
        record_deployment(session, model_version=content, stage="production", actor="test")
    arms = dict(control=f"    model_version: {plain}", treatment="    pack: eu-gdpr-dsa")
    issues = _refused(store, _plan("pack-only", **arms))
    assert [p for p, _ in issues] == ["variants.1.model_version"], issues
    assert "variant 'treatment' names no model version, so it serves the production model, which its pack 'eu-gdpr-dsa' does not admit" in issues[0][1]
    assert "item_text" in issues[0][1]

    def production(version: str) -> None:
        with store.session() as session:
            other = content if version == plain else plain
            if session.scalar(select(Deployment.stage).where(Deployment.model_version_id == other).order_by(Deployment.id.desc()).limit(1)) == "production":
                record_deployment(session, model_version=other, stage="shadow", actor="test")
            record_deployment(session, model_version=version, stage="production", actor="test")

    from audits.models import Deployment

    production(plain)
    assert lifecycle.plan(store, _plan("pack-only", **arms), actor="tester", load_pack=_load)
    production(content)  # deployed after the plan was frozen: the arm would serve it
    refused = rf"experiment 'pack-only', variant 'treatment' \(variants\.1\.model_version\): the arm names no model version, so it serves the production model '{content}', which its pack 'eu-gdpr-dsa' does not admit: .*item_text"
    with pytest.raises(lifecycle.ExperimentConflict, match=refused):
        lifecycle.start(store, "pack-only", actor="tester", load_pack=_load)
    assert lifecycle.get(store, "pack-only")["status"] == "planned"
    production(plain)
    assert lifecycle.start(store, "pack-only", actor="tester", load_pack=_load)["status"] == "running"
    production(content)
    with pytest.raises(lifecycle.ExperimentConflict, match=refused):
        lifecycle.analyze(store, "pack-only", actor="tester", load_pack=_load)
    with store.session() as session:
        assert session.scalars(select(ExperimentLook)).first() is None


def test_lists_served_under_other_content_than_the_pinned_pack_void_a_stopped_experiments_look(store: Any, db_url: str, tmp_path: Path) -> None:
    """A stopped experiment was analysed whatever its lists were served under: an arm whose pack changed in place
    while it ran (before serving checked it) compared other rules than the plan's, and could pass the gate."""
    eu, other = _load("eu-gdpr-dsa"), _load("california-ccpa")
    control, treatment, _ = _planned(
        store, tmp_path, "drifted", load_pack=lambda ref: eu,
        edit=lambda text: text.replace("  - name: treatment\n", "  - name: treatment\n    pack: eu-gdpr-dsa\n"),
    )  # fmt: skip
    changed = {"pack_name": other.name, "pack_version": other.version, "pack_hash": other.content_hash}  # a pack read: analytics judged
    lifecycle.start(store, "drifted", actor="tester")
    rng = np.random.default_rng(5)
    _serve(store, "drifted", SUBJECTS[:600], {"control": SAME, "treatment": {**SAME, "click": 0.5}}, rng)
    _serve(store, "drifted", SUBJECTS[600:], {"control": SAME, "treatment": {**SAME, "click": 0.5}}, rng, stamp=changed)
    lifecycle.stop(store, "drifted", actor="tester")
    look = lifecycle.analyze(store, "drifted", actor="tester")
    drift = look["pack_drift"]
    assert list(drift) == ["treatment"] and drift["treatment"]["pinned"] == eu.content_hash, drift  # the control pinned nothing
    assert 20 <= drift["treatment"]["subjects"] <= 80 and drift["treatment"]["lists"] == 3 * drift["treatment"]["subjects"], drift
    assert look["kind"] == "planned" and look["verdict"] == "invalid_pack" and look["winners"] == [], look["verdict"]
    assert look["comparisons"][0]["won"] is True  # the lift is there; it is not the plan's comparison
    with store.session() as session:
        passed, reasons, _ = lifecycle.gate_verdict(session, treatment)
    assert not passed and any("found no win (invalid_pack)" in r for r in reasons), reasons
    assert lifecycle.status(store, "drifted", actor="tester")["pack_drift"] == drift
    shown = CliRunner().invoke(cli, ["experiment", "status", "drifted", "--database-url", db_url])
    assert shown.exit_code == 0, shown.output
    assert f"  PACK DRIFT treatment: {drift['treatment']['lists']} list(s), to {drift['treatment']['subjects']} subject(s), served under a pack whose content is not the pinned {eu.content_hash[:12]}" in shown.output


def test_an_item_table_swapped_with_its_hash_in_the_store_is_caught_before_the_look(store: Any, tmp_path: Path) -> None:
    """A provider-gap guardrail judges the arms against the item table the plan froze (by its SHA-256); that hash sat
    in the stored plan only, so a table swapped together with its hash there was judged as the planned one."""
    import hashlib

    from governance.experiments.guardrails import item_table

    _, _, planned = _planned(store, tmp_path, "swapped")
    _served(store, "swapped", {**SAME, "click": 0.5}, 3)
    items = tmp_path / "items.csv"
    items.write_text(items.read_text().replace(",small", ",large"), encoding="utf-8")  # every item of one provider...
    items.write_text(items.read_text().replace("i000,large", "i000,small"), encoding="utf-8")  # ...but one
    digest = hashlib.sha256(items.read_bytes()).hexdigest()
    assert item_table(str(items), "provider_group")[1] == digest
    with store.session() as session:
        row = session.scalars(select(Experiment).where(Experiment.name == "swapped")).one()
        frozen = row.plan["guardrail_items"]
        swapped = {k: {**v, "sha256": digest} for k, v in frozen.items()}
        session.execute(update(Experiment).where(Experiment.id == row.id).values(plan={**row.plan, "guardrail_items": swapped}))
    with pytest.raises(lifecycle.ExperimentConflict, match=rf"the stored guardrail item tables is not the one the trail anchored .*event {planned['plan_seq']}"):
        lifecycle.analyze(store, "swapped", actor="tester")
    with store.session() as session:
        assert session.scalars(select(ExperimentLook)).first() is None


def test_an_arm_naming_the_production_model_under_the_controls_pack_is_refused(store: Any) -> None:
    """Regression: a control that names no model (so serves production) and a treatment naming the production
    version under the same pack were frozen, and every look compared the production model with itself."""
    from audits.lineage import record_deployment

    with store.session() as session:
        deployed = _model(session, "deployed", params={"model_inputs": ["user_id", "item_id", "event_type", "value"]})
        newer = _model(session, "newer", params={"model_inputs": ["user_id", "item_id", "event_type", "value"]})
        record_deployment(session, model_version=deployed, stage="production", actor="test")
    issues = _refused(store, _plan("self-lift", treatment=f"    model_version: {deployed}\n    pack: eu-gdpr-dsa"))
    assert [p for p, _ in issues] == ["variants.1.model_version"], issues
    assert issues[0][1].startswith(f"variant 'treatment' serves what variant 'control' serves ({deployed}, the model in production, under eu-gdpr-dsa)")
    assert lifecycle.plan(store, _plan("newer-lift", treatment=f"    model_version: {newer}\n    pack: eu-gdpr-dsa"), actor="tester", load_pack=_load)
    with store.session() as session:  # the treatment's model reaches production before the start: the arms are one again
        record_deployment(session, model_version=deployed, stage="shadow", actor="test")
        record_deployment(session, model_version=newer, stage="production", actor="test")
    alike = rf"experiment 'newer-lift' cannot start \(variants\.1\): variant 'treatment' serves what variant 'control' serves \({newer}, the model in production now, under eu-gdpr-dsa\)"
    with pytest.raises(lifecycle.ExperimentConflict, match=alike):
        lifecycle.start(store, "newer-lift", actor="tester", load_pack=_load)
    assert lifecycle.get(store, "newer-lift")["status"] == "planned"  # nothing changed
    with store.session() as session:
        record_deployment(session, model_version=newer, stage="shadow", actor="test")
        record_deployment(session, model_version=deployed, stage="production", actor="test")
    assert lifecycle.start(store, "newer-lift", actor="tester", load_pack=_load)["status"] == "running"


def test_a_look_while_the_treatments_model_is_in_production_is_refused_and_recorded(store: Any) -> None:
    """The arms were checked at plan and start only: a promotion of the treatment's model while the experiment ran
    made the control (which serves production) serve the treatment's lists, and every look compared them with themselves."""
    from audits.lineage import record_deployment

    with store.session() as session:
        deployed = _model(session, "deployed", params={"model_inputs": ["user_id", "item_id", "event_type", "value"]})
        newer = _model(session, "newer", params={"model_inputs": ["user_id", "item_id", "event_type", "value"]})
        record_deployment(session, model_version=deployed, stage="production", actor="test")
    text = PLAN.format(name="running-lift", control="    pack: eu-gdpr-dsa", treatment=f"    model_version: {newer}\n    pack: eu-gdpr-dsa")
    sequential = parse_experiment(text + "  method: group_sequential\n  looks: 3\n", "running-lift.yaml")  # interim looks come first
    assert lifecycle.plan(store, sequential, actor="tester", load_pack=_load)
    assert lifecycle.start(store, "running-lift", actor="tester", load_pack=_load)["status"] == "running"
    _serve(store, "running-lift", SUBJECTS, {"control": SAME, "treatment": {**SAME, "click": 0.5}}, np.random.default_rng(3), lists=3)
    with store.session() as session:  # the treatment's model is promoted while the experiment runs
        record_deployment(session, model_version=deployed, stage="shadow", actor="test")
        record_deployment(session, model_version=newer, stage="production", actor="test")
    alike = (
        rf"experiment 'running-lift': no look while its arms serve the same lists \(variants\.1\): variant 'treatment' serves what "
        rf"variant 'control' serves \({newer}, the model in production now, under eu-gdpr-dsa\)"
    )
    for _ in range(2):
        with pytest.raises(lifecycle.ExperimentConflict, match=alike):
            lifecycle.analyze(store, "running-lift", actor="tester", load_pack=_load)
    with store.session() as session:
        assert session.scalars(select(ExperimentLook)).first() is None  # no look is spent
        refused = session.scalars(select(TrailEvent).where(TrailEvent.action == "experiment.look_refused")).all()
    assert len(refused) == 2 and all(newer in e.payload and "running-lift" in e.objects for e in refused)
    assert lifecycle.get(store, "running-lift")["status"] == "running"
    with store.session() as session:  # the control's model back in production: the arms differ again, the look is taken
        record_deployment(session, model_version=deployed, stage="production", actor="test")
    assert lifecycle.analyze(store, "running-lift", actor="tester", load_pack=_load)["look"] == 1


def test_an_arm_naming_a_retired_model_version_is_refused(store: Any) -> None:
    """Regression: a plan naming a retired version was frozen; that version profiles nobody, so its arm served
    non-personalized lists and the looks compared them with production as if they were the treatment."""
    from audits.lineage import record_deployment

    with store.session() as session:
        old = _model(session, "old", params={"model_inputs": ["user_id", "item_id", "event_type", "value"]})
        record_deployment(session, model_version=old, stage="shadow", actor="test")
        record_deployment(session, model_version=old, stage="retired", actor="test")
    issues = _refused(store, _plan("retired-arm", treatment=f"    model_version: {old}\n    pack: eu-gdpr-dsa"))
    assert [p for p, _ in issues] == ["variants.1.model_version"], issues
    assert issues[0][1] == (
        f"variant 'treatment' names model version {old!r}, which may not serve again: it is retired, and a retired version "
        "profiles nobody. Its subjects would get lists no one could ship; name a version that may be deployed"
    )


def _loosened(name: str, *, minimization: dict[str, Any] | None = None, gate: dict[str, Any] | None = None) -> Any:
    """The pack eu-gdpr-dsa under another name, with ``minimization`` and ``gate`` fields replaced."""
    eu = _load("eu-gdpr-dsa")
    pack = eu.pack.model_copy(update={
        "metadata": eu.pack.metadata.model_copy(update={"name": name}),
        "minimization": eu.pack.minimization.model_copy(update=minimization or {}),
        "gate": eu.pack.gate.model_copy(update=gate or {}),
    })  # fmt: skip
    return type(eu)(pack=pack, source=f"{name}.yaml", content_hash=f"sha256:{name}")


@pytest.mark.parametrize(
    ("minimization", "gate", "said"),
    [
        ({"retention_days": None}, None, "minimization.retention_days is not set (no limit), not 730"),
        ({"retention_days": 3650}, None, "minimization.retention_days is 3650, not 730"),
        (None, {"block_on": ["fail"]}, "gate.block_on drops error"),
        (None, {"required_rules": ["eu-min-inputs"]}, "gate.required_rules: 0 required baseline_lift rule(s), not 1"),
        (None, {"max_warnings": None}, "gate.max_warnings is not set (no limit), not 3"),
        (None, {"max_warnings": 10}, "gate.max_warnings is 10, not 3"),
    ],
)
def test_an_arm_pack_that_keeps_data_longer_or_loosens_the_gate_is_refused_unless_acknowledged(
    store: Any, minimization: dict[str, Any] | None, gate: dict[str, Any] | None, said: str
) -> None:
    loose = _loosened("eu-loose", minimization=minimization, gate=gate)

    def load(ref: str) -> Any:
        return loose if ref == "eu-loose" else _load(ref)

    with pytest.raises(PolicyError) as refused:
        lifecycle.plan(store, _plan("loose", treatment="    pack: eu-loose"), actor="tester", load_pack=load)
    [issue] = refused.value.issues
    assert issue.path == "variants.1.pack" and said in issue.message, issue.message
    acknowledged = _plan("loose", treatment="    pack: eu-loose\n    weaker_pack_acknowledged: the longer window is what the arm tests, approved by the DPO")
    summary = lifecycle.plan(store, acknowledged, actor="tester", load_pack=load)
    with store.session() as session:
        event = session.scalars(select(TrailEvent).where(TrailEvent.seq == summary["plan_seq"])).one()
    import json

    payload = json.loads(event.payload) if isinstance(event.payload, str) else event.payload
    assert any(said in found for found in payload["weaker_packs_acknowledged"]["treatment"]["weaker_than"]["the control's pack eu-gdpr-dsa"])


def test_an_arm_pack_as_strict_on_retention_and_the_gate_is_planned(store: Any) -> None:
    strict = _loosened("eu-strict", minimization={"retention_days": 365}, gate={"block_on": ["fail", "error", "warn"], "max_warnings": 1})

    def load(ref: str) -> Any:
        return strict if ref == "eu-strict" else _load(ref)

    assert lifecycle.plan(store, _plan("strict", treatment="    pack: eu-strict"), actor="tester", load_pack=load)


def _running_lift(store: Any, name: str) -> tuple[str, str]:
    """A running group-sequential experiment whose control serves production (``deployed``) and whose treatment names ``newer``."""
    from audits.lineage import record_deployment

    with store.session() as session:
        deployed = _model(session, f"{name}-deployed", params={"model_inputs": ["user_id", "item_id", "event_type", "value"]})
        newer = _model(session, f"{name}-newer", params={"model_inputs": ["user_id", "item_id", "event_type", "value"]})
        record_deployment(session, model_version=deployed, stage="production", actor="test")
    text = PLAN.format(name=name, control="    pack: eu-gdpr-dsa", treatment=f"    model_version: {newer}\n    pack: eu-gdpr-dsa")
    assert lifecycle.plan(store, parse_experiment(text + "  method: group_sequential\n  looks: 3\n", f"{name}.yaml"), actor="tester", load_pack=_load)
    assert lifecycle.start(store, name, actor="tester", load_pack=_load)["status"] == "running"
    return deployed, newer


def _promote(store: Any, model: str, other: str) -> None:
    from audits.lineage import record_deployment

    with store.session() as session:
        record_deployment(session, model_version=other, stage="shadow", actor="test")
        record_deployment(session, model_version=model, stage="production", actor="test")


def test_a_look_after_the_treatments_model_served_production_and_went_back_is_refused(store: Any) -> None:
    """Regression: only the production model at the time of the look was compared with the arms. The treatment's model
    promoted and rolled back between two looks made the control serve the treatment's lists meanwhile; the next look
    mixed them (biased toward no difference) as if nothing had happened."""
    deployed, newer = _running_lift(store, "round-trip")
    rng = np.random.default_rng(3)
    _serve(store, "round-trip", SUBJECTS[:400], {"control": SAME, "treatment": {**SAME, "click": 0.5}}, rng, lists=2)
    _promote(store, newer, deployed)
    _serve(store, "round-trip", SUBJECTS[400:], {"control": SAME, "treatment": {**SAME, "click": 0.5}}, rng, lists=2)
    _promote(store, deployed, newer)  # rolled back before the look
    said = (
        rf"experiment 'round-trip': no look \(variants\.1\): from \S+ to \S+ the model in production was {newer}, which variant "
        rf"'treatment' names, so variant 'control' \(which serves production\) served the treatment's lists: \d+ of its lists"
    )
    for _ in range(2):
        with pytest.raises(lifecycle.ArmsAlike, match=said):
            lifecycle.analyze(store, "round-trip", actor="tester", load_pack=_load)
    lifecycle.stop(store, "round-trip", actor="tester")
    with pytest.raises(lifecycle.ArmsAlike, match=said):  # stopped, the data still hold that time
        lifecycle.analyze(store, "round-trip", actor="tester", load_pack=_load)
    with store.session() as session:
        assert session.scalars(select(ExperimentLook)).first() is None  # no look is spent
        refused = session.scalars(select(TrailEvent).where(TrailEvent.action == "experiment.look_refused")).all()
    assert len(refused) == 3 and all('"arms_alike_since_start"' in e.payload and newer in e.payload for e in refused)
    assert all("user-" not in e.payload for e in refused)  # counts and times, no subject


def test_a_promotion_and_rollback_while_no_list_was_served_leaves_the_look_alone(store: Any) -> None:
    """The control served no list while the treatment's model was in production: nothing was mixed, the look is taken."""
    deployed, newer = _running_lift(store, "quiet-trip")
    _serve(store, "quiet-trip", SUBJECTS, {"control": SAME, "treatment": {**SAME, "click": 0.5}}, np.random.default_rng(3), lists=2)
    _promote(store, newer, deployed)
    _promote(store, deployed, newer)
    assert lifecycle.analyze(store, "quiet-trip", actor="tester", load_pack=_load)["look"] == 1
