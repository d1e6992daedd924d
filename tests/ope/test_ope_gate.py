"""Off-policy gate checks on a real decision log (SQLite and PostgreSQL): a candidate that is better passes, a worse one
is refused, one the logs cannot show (no overlap) is refused with the reason, and a provider group's estimated
exposure share is judged on its interval; the figures are checked against the exact truth of a known click model."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from ruamel.yaml import YAML

from audits import Store
from governance.checks.off_policy import OffPolicyExposure, OffPolicyNonInferiority
from governance.facts import AuditFacts, OffPolicyFacts, OffPolicyFigure
from governance.ope import OpeSettings, evaluate_from_log
from governance.ope_logging import LoggingHook
from governance.policy import PolicyError, parse_pack
from recommender.ope import enumerate_slates
from tests.ope.test_ope_from_log import EXAM, K, LOGGED, M, TYPES, _fill, pack_text

# A world where the governed order is right: attraction falls with the pool place, so a greedier candidate earns more.
ATTRACT = np.array([0.7, 0.5, 0.32, 0.18, 0.08, 0.03])
COLD = {"kind": "plackett_luce", "pool": M, "temperature": 0.25}
HOT = {"kind": "plackett_luce", "pool": M, "temperature": 4.0}
TAIL = (4, 5)  # the pool's last two places: the small provider's items


def _world() -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    rng = np.random.default_rng(11)
    scores = np.round(np.sort(rng.normal(size=(TYPES, M)), axis=1)[:, ::-1], 6)
    items = [[f"item-{t}-{j}" for j in range(M)] for t in range(TYPES)]
    return scores, np.tile(ATTRACT, (TYPES, 1)), items


def _rules_text(target: dict[str, Any] | None, version: str, rules: dict[str, list[dict[str, Any]]], required: list[str] | None = None) -> str:
    yaml = YAML(typ="safe", pure=True)
    doc = yaml.load(pack_text(target, version))
    for section, extra in rules.items():
        doc[section]["rules"] = [*doc[section].get("rules", []), *extra]
    if required is not None:
        doc["gate"]["required_rules"] = [*doc["gate"].get("required_rules", []), *required]
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


CLICKS = {"id": "ope-clicks", "check": "off_policy_non_inferiority", "description": "Not fewer clicks per list.", "params": {"outcome": "click", "estimator": "slate_independent_ips", "margin": 0.0}}
"""The world's click model is position-based, the independent estimator's model: its intervals are the tightest."""


def _exposure_rule(**params: float) -> dict[str, Any]:
    return {"id": "ope-tail", "check": "off_policy_exposure", "description": "The small provider keeps its attention.", "params": {"group": "tail", **params}}


def _truth(target: dict[str, Any] | None, types: np.ndarray) -> tuple[float, float]:
    """The candidate's exact clicks per list and the tail's attention share on these contexts (every slate enumerated)."""
    scores, attract, _ = _world()
    hook = LoggingHook.from_section(parse_pack(pack_text(target)).pack.logging_policy)
    attention = 1 / np.log2(np.arange(K) + 2)
    attention = attention / attention.sum()
    clicks, share = np.zeros(TYPES), np.zeros(TYPES)
    for t in range(TYPES):
        slates, probs = (np.arange(K)[None, :], np.ones(1)) if hook is None else enumerate_slates(hook.policy_for(M, K), scores[t], K)
        clicks[t] = sum(p * (EXAM * attract[t, s]).sum() for s, p in zip(slates, probs))
        share[t] = sum(p * (attention * np.isin(s, TAIL)).sum() for s, p in zip(slates, probs))
    return float(clicks[types].mean()), float(share[types].mean())


def _settings() -> OpeSettings:
    return OpeSettings(kinds=("click",), n_bootstrap=400, provider_groups={"tail": frozenset(f"item-{t}-{j}" for t in range(TYPES) for j in TAIL)})


def test_better_passes_worse_is_refused_and_exposure_is_judged_on_its_interval(store: Store) -> None:
    logged_text = pack_text(LOGGED)
    types = _fill(store, 3000, logged_text, world=_world())
    logged = parse_pack(logged_text, "logged.yaml")
    truth_logged, share_logged = _truth(LOGGED, types)
    cases = {
        # greedier: more clicks (passes), the tail loses attention but within 0.2
        "better": (COLD, [_exposure_rule(max_drop=0.2)], True),
        # near uniform: fewer clicks (refused on the lower bound), the tail gains
        "worse": (HOT, [_exposure_rule(min_share=0.05)], False),
        # greedier again, but the tail may not lose more than 0.01 of the attention: refused on exposure
        "starves_the_tail": (COLD, [_exposure_rule(max_drop=0.01)], False),
    }
    for name, (target, exposure_rules, passes) in cases.items():
        text = _rules_text(target, "9.1.0", {"quality": [CLICKS], "fairness": exposure_rules}, required=["ope-clicks", "ope-tail"])
        report = evaluate_from_log(store, logged, parse_pack(text, f"{name}.yaml"), _settings())
        truth, share = _truth(target, types)
        for estimator in ("slate_standard_ips", "slate_independent_ips", "slate_cascade_ips"):  # every interval covers the truth
            diff = report["differences"]["click"][estimator]
            assert diff["ci_low"] <= truth - truth_logged <= diff["ci_high"], (name, estimator, diff, truth - truth_logged)
        tail = report["exposure"]["groups"]["tail"]
        assert tail["target"]["ci_low"] <= share <= tail["target"]["ci_high"], (name, tail["target"], share)
        assert tail["logged_policy"]["value"] == pytest.approx(share_logged, abs=0.02)
        gate = report["gate"]
        by_id = {r["rule_id"]: r for r in gate["results"]}
        assert set(by_id) == {"ope-clicks", "ope-tail"}  # only the off-policy rules are judged here
        assert gate["decision"]["passed"] is passes, (name, gate)
        clicks = by_id["ope-clicks"]
        judged = report["differences"]["click"]["slate_independent_ips"]
        assert clicks["value"] == pytest.approx(judged["ci_low"]) and "judged on the lower bound" in clicks["message"]
        assert clicks["status"] == ("pass" if name != "worse" else "fail"), (name, clicks)
        assert by_id["ope-tail"]["status"] == ("fail" if name == "starves_the_tail" else "pass"), (name, by_id["ope-tail"])
    assert _truth(COLD, types)[0] > truth_logged > _truth(HOT, types)[0]  # the world is as the cases say


def test_a_candidate_the_logs_cannot_show_is_refused_with_the_reason(store: Store) -> None:
    logged_text = pack_text(None)  # no logging policy: every list was the governed top k
    _fill(store, 400, logged_text, world=_world())
    text = _rules_text(COLD, "9.1.0", {"quality": [CLICKS], "fairness": [_exposure_rule(min_share=0.0)]})
    report = evaluate_from_log(store, parse_pack(logged_text, "logged.yaml"), parse_pack(text), _settings())
    gate = report["gate"]
    assert gate["decision"]["passed"] is False
    for result in gate["results"]:
        assert result["status"] == "fail" and "was refused (overlap fails" in result["message"] and "missing evidence is not a pass" in result["message"], result
    assert any("ope-clicks" in reason and "overlap fails" in reason for reason in gate["decision"]["reasons"])


def test_the_checks_alone_refused_missing_or_intervalless_evidence_never_passes() -> None:
    def facts(**figure: Any) -> AuditFacts:
        fig = OffPolicyFigure(**figure)
        return AuditFacts(off_policy=OffPolicyFacts(logged_pack="a 1", target_pack="b 2", differences={"click": {"slate_standard_ips": fig}}, exposure={"tail": {"target": fig, "difference": fig}}))

    clicks, exposure = OffPolicyNonInferiority(), OffPolicyExposure()
    c_cfg = OffPolicyNonInferiority.Config(margin=0.01)
    e_cfg = OffPolicyExposure.Config(group="tail", min_share=0.1)
    assert clicks.evaluate(c_cfg, AuditFacts(), None).status.value == "skipped"
    assert clicks.evaluate(c_cfg, facts(value=0.0, ci=(-0.009, 0.02)), None).status.value == "pass"
    assert clicks.evaluate(c_cfg, facts(value=0.05, ci=(-0.011, 0.2)), None).status.value == "fail"  # a good estimate, a wide interval
    for bad in ({"refused": True, "reason": "overlap fails: ..."}, {"value": 0.1, "ci": None}, {"value": 0.1, "ci": (None, None)}):
        assert clicks.evaluate(c_cfg, facts(**bad), None).status.value == "fail"
        assert exposure.evaluate(e_cfg, facts(**bad), None).status.value == "fail"
    assert exposure.evaluate(OffPolicyExposure.Config(group="head", max_share=0.5), facts(value=0.2, ci=(0.1, 0.3)), None).status.value == "fail"
    assert exposure.evaluate(e_cfg, facts(value=0.2, ci=(0.1, 0.3)), None).status.value == "pass"
    assert exposure.evaluate(e_cfg, facts(value=0.2, ci=(0.09, 0.3)), None).status.value == "fail"


def test_a_bad_off_policy_rule_is_a_located_pack_error() -> None:
    for params, says in (({"group": "tail"}, "at least one of min_share"), ({"group": "tail", "min_share": 1.5}, "min_share"), ({"outcome": "hover"}, "outcome")):
        check = "off_policy_non_inferiority" if "outcome" in params else "off_policy_exposure"
        section = "quality" if check == "off_policy_non_inferiority" else "fairness"
        text = _rules_text(None, "9.3.0", {section: [{"id": "ope-bad", "check": check, "description": "x", "params": params}]})
        with pytest.raises(PolicyError) as err:
            parse_pack(text, "bad.yaml")
        issues = [i for i in err.value.issues if i.severity == "error"]
        assert issues and any(says in i.message or says in i.path for i in issues), issues
        assert all(i.line is not None for i in issues), issues


def test_the_command_line_gate_exit_codes(store: Store, db_url: str, tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from governance.cli import app

    logged_text = pack_text(LOGGED)
    _fill(store, 1500, logged_text, world=_world())
    (tmp_path / "logged.yaml").write_text(logged_text)
    (tmp_path / "tail.txt").write_text("".join(f"item-{t}-{j}\n" for t in range(TYPES) for j in TAIL))
    runner = CliRunner()
    base = ["ope", db_url, "--logged-pack", str(tmp_path / "logged.yaml"), "--kind", "click", "--bootstrap", "200", "--provider-group", f"tail={tmp_path / 'tail.txt'}"]
    for name, target, code in (("better", COLD, 0), ("worse", HOT, 1)):
        (tmp_path / f"{name}.yaml").write_text(_rules_text(target, "9.1.0", {"quality": [CLICKS]}))
        args = [*base, "--target-pack", str(tmp_path / f"{name}.yaml"), "--gate"]
        done = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
        assert done.exit_code == code, done.output
        assert json.loads(done.stdout)["gate"]["decision"]["passed"] is (code == 0)
        human = runner.invoke(app, args, catch_exceptions=False)
        assert human.exit_code == code and ("gate: passed" if code == 0 else "gate: blocked") in human.stdout
        assert "exposure tail" in human.stdout
        assert runner.invoke(app, [*base, "--target-pack", str(tmp_path / f"{name}.yaml")]).exit_code == 0  # without --gate: a report
    for bad, says in (("tail", "NAME=FILE"), (f"tail={tmp_path / 'none.txt'}", "cannot be read")):
        done = runner.invoke(app, ["ope", db_url, "--logged-pack", str(tmp_path / "logged.yaml"), "--target-pack", str(tmp_path / "better.yaml"), "--provider-group", bad])
        assert done.exit_code == 2 and says in done.output, done.output
