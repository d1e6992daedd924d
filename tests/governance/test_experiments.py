"""Experiment plans (located errors), assignment (deterministic, at the planned shares, consent-aware),
the command line's lifecycle on both engines (bad input changes nothing), and the gate's verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from audits.models import Experiment, TrailEvent
from governance.cli import app as cli
from governance.experiments.assign import RunningExperiment, assign, bucket
from governance.experiments.lifecycle import gate_verdict
from governance.experiments.spec import parse_experiment
from governance.located import PolicyError

pytestmark = pytest.mark.usefixtures("fixed_experiment_salts")

PLAN = """apiVersion: recgov/v1
kind: Experiment
metadata:
  name: pack-lift
  owner: growth team
hypothesis: Lists under the other pack are clicked more often.
variants:
  - name: control
    control: true
  - name: other
    pack: california-ccpa
allocation:
  control: 0.5
  other: 0.5
primary_metric: click_through
guardrails:
  - metric: non_profiling_share
    margin: 0.05
    direction: lower_is_better
design:
  baseline: 0.1
  mde: 0.05
"""


def _issues(text: str) -> list:
    with pytest.raises(PolicyError) as err:
        parse_experiment(text, "plan.yaml")
    return err.value.issues


def test_a_valid_plan_has_a_stable_hash_that_any_change_moves() -> None:
    one, two = parse_experiment(PLAN), parse_experiment(PLAN + "\n# a comment\n")
    assert one.content_hash == two.content_hash and len(one.content_hash) == 64
    assert parse_experiment(PLAN.replace("mde: 0.05", "mde: 0.04")).content_hash != one.content_hash


@pytest.mark.parametrize(
    ("change", "path", "line", "words"),
    [
        (("  other: 0.5\n", "  other: 0.6\n"), "allocation", 13, "add up to 1.1"),
        (("  other: 0.5\n", "  another: 0.5\n"), "allocation", 13, "no such variant: another"),
        (("    pack: california-ccpa\n", "    pack: california-ccpa\n    control: true\n"), "variants.1", 10, "exactly one variant"),
        (("primary_metric: click_through", "primary_metric: revenue"), "primary_metric", 15, "unknown primary metric 'revenue'"),
        (("  - metric: non_profiling_share", "  - metric: latency_p99"), "guardrails.0.metric", 17, "unknown guardrail metric"),
        (("  mde: 0.05\n", "  mde: 0.05\n  looks: 3\n"), "design.looks", 23, "a fixed design looks once"),
        (("primary_metric: click_through", "primary_metric: clicks_per_subject"), "design", 21, "design.sd"),
        (("    margin: 0.05", "    margin: -1"), "guardrails.0.margin", 18, "greater than 0"),
        (("hypothesis:", "unit: session\nhypothesis:"), "unit", 6, "'subject'"),
    ],
)
def test_every_problem_is_located(change, path, line, words) -> None:
    issues = _issues(PLAN.replace(*change))
    found = [i for i in issues if i.path == path]
    assert found, [str(i) for i in issues]
    assert found[0].line == line and words in found[0].message, str(found[0])
    assert str(found[0]).startswith(f"plan.yaml:{line}:")


@pytest.mark.parametrize(
    ("change", "path", "served"),
    [
        (("    control: true\n", "    control: true\n    pack: california-ccpa\n"), "variants.1.pack", "the production model under california-ccpa"),
        (("    control: true\n", "    control: true\n    model_version: als-1\n    pack: california-ccpa\n"), None, None),
        (("    pack: california-ccpa\n", "    model_version: als-1\n  - name: third\n    model_version: als-1\n"), "variants.2.model_version", "als-1 under the request's pack"),
    ],
)
def test_arms_that_serve_the_same_model_under_the_same_pack_are_refused(change, path, served) -> None:
    """Regression: a treatment serving exactly what the control (or another treatment) serves was frozen, and its
    looks compared an arm with itself."""
    text = PLAN.replace(*change).replace("  other: 0.5\n", "  other: 0.25\n  third: 0.25\n") if "third" in change[1] else PLAN.replace(*change)
    if path is None:  # the same pack, another model: the arms differ
        assert parse_experiment(text, "plan.yaml").content_hash
        return
    found = [i for i in _issues(text) if i.path == path]
    assert found and f"serves ({served}): the two arms cannot be told apart" in found[0].message, [str(i) for i in _issues(text)]
    assert found[0].line is not None and str(found[0]).startswith(f"plan.yaml:{found[0].line}:")


def test_assignment_is_deterministic_at_the_planned_shares_and_consent_aware() -> None:
    spec = parse_experiment(PLAN.replace("  control: 0.5\n  other: 0.5", "  control: 0.7\n  other: 0.3") + "holdback: 0.1\n").spec.model_dump(mode="json")
    running = RunningExperiment.from_row(1, "pack-lift", {"spec": spec}, "ab" * 32)
    ids = [f"user-{i}" for i in range(40_000)]
    got = [assign(running, s, may_profile=True) for s in ids]
    assert got == [assign(running, s, may_profile=True) for s in ids]  # the same subject, the same arm
    reasons = np.array([g["reason"] for g in got])
    variants = np.array([g["variant"] for g in got])
    assert abs((reasons == "holdback").mean() - 0.1) < 0.01
    randomised = variants[reasons == "randomised"]
    assert abs((randomised == "control").mean() - 0.7) < 0.01
    assert all(v == "control" for v in variants[reasons == "holdback"])
    assert assign(running, "user-1", may_profile=False) == {"id": 1, "variant": "control", "reason": "not_profiled"}
    other = RunningExperiment.from_row(2, "other", {"spec": spec}, "cd" * 32)  # another salt shuffles anew
    same = np.mean([bucket(running.salt, s) < 0.5 for s in ids[:5000]] == np.array([bucket(other.salt, s) < 0.5 for s in ids[:5000]]))
    assert 0.45 < same < 0.55


def _cli(*args: str) -> object:
    return CliRunner().invoke(cli, ["experiment", *args])


def test_the_lifecycle_from_the_command_line_and_bad_input_changes_nothing(db_url: str, tmp_path: Path) -> None:
    plan, bad = tmp_path / "plan.yaml", tmp_path / "bad.yaml"
    plan.write_text(PLAN)
    bad.write_text(PLAN.replace("  other: 0.5\n", "  other: 0.6\n"))
    db = ["--database-url", db_url]
    refused = _cli("plan", str(bad), *db)
    assert refused.exit_code == 2 and f"{bad}:13:" in refused.output and "add up to 1.1" in refused.output
    as_json = _cli("plan", str(bad), *db, "--json")
    assert as_json.exit_code == 2 and json.loads(as_json.stdout)["issues"][0]["path"] == "allocation"
    listed = _cli("list", *db, "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout) == {"experiments": []}

    planned = _cli("plan", str(plan), *db, "--json")
    assert planned.exit_code == 0, planned.output
    frozen = json.loads(planned.stdout)
    assert frozen["status"] == "planned" and frozen["sample_size"]["n_per_arm"][0] > 100
    again = _cli("plan", str(plan), *db)
    assert again.exit_code == 2 and "already planned" in again.output
    early = _cli("analyze", "pack-lift", *db)
    assert early.exit_code == 2 and "has not started" in early.output

    plan.write_text(PLAN.replace("mde: 0.05", "mde: 0.04"))  # the file changed after it was frozen
    changed = _cli("start", "pack-lift", "--plan", str(plan), *db)
    assert changed.exit_code == 2 and "differs from the one frozen" in changed.output
    assert _cli("stop", "pack-lift", *db).exit_code == 2  # not running
    assert _cli("start", "nope", *db).exit_code == 2
    plan.write_text(PLAN)
    assert _cli("start", "pack-lift", "--plan", str(plan), *db).exit_code == 0
    status = _cli("status", "pack-lift", *db, "--json")
    assert status.exit_code == 0 and json.loads(status.stdout)["counts"] == {}
    unknown = _cli("analyze", "pack-lift", "--metric", "revenue", *db)
    assert unknown.exit_code == 2 and "unknown metric 'revenue'" in unknown.output
    thin = _cli("analyze", "pack-lift", *db)  # no subject yet: the library refuses, nothing is stored
    assert thin.exit_code == 2 and "pack-lift" in thin.output
    assert _cli("stop", "pack-lift", *db).exit_code == 0

    from audits import open_store

    store = open_store(db_url)
    try:
        with store.session() as session:
            row = session.scalars(select(Experiment)).one()
            actions = list(session.scalars(select(TrailEvent.action).where(TrailEvent.action.like("experiment.%")).order_by(TrailEvent.seq)))
            assert row.status == "stopped" and row.plan_hash == frozen["plan_hash"]
            assert actions == ["experiment.planned", "experiment.started", "experiment.viewed", "experiment.stopped"]
            assert session.scalar(select(func.count()).select_from(Experiment)) == 1
            passed, reasons, _ = gate_verdict(session, "als-never-in-one")
            assert not passed and "was in no planned experiment" in reasons[0]
    finally:
        store.close()
