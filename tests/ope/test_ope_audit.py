"""Off-policy rules judged inside ``recgov audit|gate`` on the store's decision log (SQLite and PostgreSQL).

The same world as the off-policy gate's tests: lists drawn by the logged pack's logging policy, clicks from a
known position-based model. Given the logged pack, the audit estimates the candidate on that log and its
off-policy rules are judged with the rest of the pack, recorded with the audit run, and decide the gate;
without it they are skipped as before; bad options stop the audit before anything is recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from audits import Store
from audits.models import AuditResult, AuditRun
from governance.cli import app
from tests.ope.test_ope_from_log import LOGGED, TYPES, _fill, pack_text
from tests.ope.test_ope_gate import CLICKS, COLD, HOT, TAIL, _exposure_rule, _rules_text, _world

DATA = "synthetic:n_users=60,n_items=40,n_interactions=900,seed=3"


def _gate(db_url: str, out: Path, *args: str) -> tuple[int, dict]:
    """``recgov gate`` of logged slates (no model to train: the off-policy rules are what is under test)."""
    slates = out.parent / "slates.csv"
    slates.write_text("user_id,item_id,rank\n" + "".join(f"{u},{i},{r}\n" for u in range(5) for r, i in enumerate(range(3), start=1)))
    done = CliRunner().invoke(app, ["gate", DATA, "--slates", str(slates), "--database-url", db_url, "--out", str(out), "--json", *args], catch_exceptions=False)
    parsed = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    return done.exit_code, (parsed if "results" in parsed else {"output": done.output, **parsed})


def _ope_results(doc: dict) -> dict[str, dict]:
    return {r["rule_id"]: r for r in doc["results"] if r["rule_id"].startswith("ope-")}


def test_the_audit_judges_the_off_policy_rules_on_the_decision_log(store: Store, db_url: str, tmp_path: Path) -> None:
    logged_text = pack_text(LOGGED)
    _fill(store, 2000, logged_text, world=_world())
    (tmp_path / "logged.yaml").write_text(logged_text)
    (tmp_path / "tail.txt").write_text("".join(f"item-{t}-{j}\n" for t in range(TYPES) for j in TAIL))
    ope = ["--ope-logged-pack", str(tmp_path / "logged.yaml"), "--ope-provider-group", f"tail={tmp_path / 'tail.txt'}"]
    outcomes = {}
    for name, target, exposure in (("better", COLD, _exposure_rule(max_drop=0.2)), ("worse", HOT, _exposure_rule(min_share=0.05))):
        pack = tmp_path / f"{name}.yaml"
        pack.write_text(_rules_text(target, "9.1.0", {"quality": [CLICKS], "fairness": [exposure]}, required=["ope-clicks", "ope-tail"]))
        outcomes[name] = _gate(db_url, tmp_path / name, "--pack", str(pack), *ope)
        outcomes[f"{name}-unestimated"] = _gate(db_url, tmp_path / f"{name}-plain", "--pack", str(pack))
    better, worse = _ope_results(outcomes["better"][1]), _ope_results(outcomes["worse"][1])
    assert {r["status"] for r in better.values()} == {"pass"}, better
    assert worse["ope-clicks"]["status"] == "fail" and "judged on the lower bound" in worse["ope-clicks"]["message"]
    assert worse["ope-tail"]["status"] == "pass"
    assert outcomes["worse"][0] == 1 and any("ope-clicks" in reason for reason in outcomes["worse"][1]["decision"]["reasons"])
    assert not any("ope-" in reason for reason in outcomes["better"][1]["decision"]["reasons"])
    for name in ("better", "worse"):  # without the logged pack: skipped, and a required rule skipped blocks
        plain = _ope_results(outcomes[f"{name}-unestimated"][1])
        assert {r["status"] for r in plain.values()} == {"skipped"} and "--ope-logged-pack" in plain["ope-clicks"]["message"]
        assert outcomes[f"{name}-unestimated"][0] == 1
    with store.session() as session:  # recorded with the audit run: the results and the log they were judged on
        run_id = int(outcomes["worse"][1]["audit_id"])
        stored = {r.rule_id: r.status for r in session.scalars(select(AuditResult).where(AuditResult.audit_run_id == run_id))}
        summary = session.get(AuditRun, run_id).summary
    assert stored["ope-clicks"] == "fail" and stored["ope-tail"] == "pass"
    used = summary["dataset"]["off_policy"]
    assert used["decisions_used"] == 2000 and used["logged_pack"]["pack_version"] == "9.0.0" and used["provider_groups"] == ["tail"]


def test_bad_off_policy_options_stop_the_audit_before_anything_is_recorded(store: Store, db_url: str, tmp_path: Path) -> None:
    logged_text = pack_text(LOGGED)
    (tmp_path / "logged.yaml").write_text(logged_text)
    (tmp_path / "plain.yaml").write_text(pack_text(COLD, "9.2.0"))  # no off-policy rule
    (tmp_path / "rules.yaml").write_text(_rules_text(COLD, "9.1.0", {"quality": [CLICKS]}))
    with store.session() as session:
        before = session.scalar(select(func.count()).select_from(AuditRun))
    cases = (
        (["--pack", str(tmp_path / "plain.yaml"), "--ope-logged-pack", str(tmp_path / "logged.yaml")], "declares no off-policy rule"),
        (["--pack", str(tmp_path / "rules.yaml"), "--ope-logged-pack", str(tmp_path / "absent.yaml")], "absent.yaml"),
        (["--pack", str(tmp_path / "rules.yaml"), "--ope-provider-group", f"tail={tmp_path / 'x.txt'}"], "needs --ope-logged-pack"),
        (["--pack", str(tmp_path / "rules.yaml"), "--ope-logged-pack", str(tmp_path / "logged.yaml"), "--ope-provider-group", "tail"], "--ope-provider-group: expected NAME=FILE"),
    )
    for args, says in cases:
        code, doc = _gate(db_url, tmp_path / "out", *args)
        assert code == 2 and says in json.dumps(doc), (args, doc)
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditRun)) == before
