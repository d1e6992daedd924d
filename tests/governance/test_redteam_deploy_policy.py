"""A gate nobody can pick around, over the command line on SQLite and PostgreSQL.

The installation, not the caller, decides which pack gates each deployment
stage: ``recgov deploy policy set`` binds a stage to a pack (pinned by content
hash) and to what the gate's data must cover. Each test names the hole it pins:
before the deployment policy, ``recgov deploy promote --pack baseline`` put a
model in production that the EU pack refuses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from audits import open_store
from audits.models import AuditRun, Deployment, DeploymentPolicy, TrailEvent
from audits.settings import get_settings
from audits.verify import verify_trail
from governance.cli import app as cli
from governance.cli.deploy_policy import installation_pack_loader, packs_dir
from governance.cli.policy import SHIPPED
from governance.deploy import promote
from governance.deploy_policy import (
    BOUND_PACK_CHANGED,
    DATA_NOT_TRAINING,
    DATA_TOO_SMALL,
    NO_BINDING,
    NOT_A_GATED_STAGE,
    PACK_NOT_BOUND,
    POLICY_CHANGED,
    ROLLBACK_UNDER_OTHER_PACK,
    DeploymentPolicyRefused,
    StageRequirements,
    set_binding,
)
from governance.policy import LoadedPack
from governance.report import collect, render_html
from recommender.loaders import load_data

DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"
OTHER_DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=5"
runner = CliRunner()


def _cli(db_url: str, *args: str):
    return runner.invoke(cli, [*args, "--database-url", db_url])


def _train(db_url: str, factors: int = 8) -> str:
    done = _cli(
        db_url, "train", DATA, "--no-tune", "--no-carbon", "--factors", str(factors), "--iterations", "4", "--json"
    )
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)["model_version"]


def _set(db_url: str, stage: str, pack: str, *extra: str):
    return _cli(db_url, "deploy", "policy", "set", stage, "--pack", pack, *extra, "--json")


def _promote(db_url: str, mv: str, stage: str, tmp_path: Path, *extra: str, data: str = DATA):
    args = ["deploy", "promote", mv, "--to", stage, *extra]
    if stage != "shadow":
        args += ["--data", data, "--out", str(tmp_path / f"gate-{mv}-{stage}")]
    return _cli(db_url, *args, "--json")


def _rows(db_url: str, model, *where):
    store = open_store(db_url)
    try:
        with store.session() as session:
            rows = list(session.scalars(select(model).where(*where)))
            for row in rows:
                session.expunge(row)
            return rows
    finally:
        store.close()


def _one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_caller_cannot_gate_production_with_a_weaker_pack(db_url: str, tmp_path: Path) -> None:
    """Hole: ``promote --pack baseline`` passed a model the installation's EU pack refuses."""
    mv = _train(db_url)
    for stage in ("canary", "production"):
        assert _set(db_url, stage, "eu-gdpr-dsa").exit_code == 0
    assert _promote(db_url, mv, "shadow", tmp_path).exit_code == 0
    audits_before = len(_rows(db_url, AuditRun))
    weaker = _promote(db_url, mv, "canary", tmp_path, "--pack", "baseline")
    assert weaker.exit_code == 2, weaker.output
    assert _one_line(weaker).startswith("error: " + PACK_NOT_BOUND.split("{")[0].rstrip())
    assert "eu-gdpr-dsa@1.0.0" in weaker.stderr and "baseline@1.0.0" in weaker.stderr
    assert len(_rows(db_url, AuditRun)) == audits_before, "no gate runs under a pack the policy does not bind"
    # Without --pack the installation's pack gates, and it refuses this model: exit 1.
    bound = _promote(db_url, mv, "canary", tmp_path)
    assert bound.exit_code == 1, bound.output
    # Nobody here consented under the EU pack: its gate may evaluate the model on no one, so it refuses.
    assert "eu-gdpr-dsa@1.0.0" in bound.stderr and "no_consent_record" in bound.stderr
    assert [d.stage for d in _rows(db_url, Deployment)] == ["shadow"]


def test_a_forged_file_that_carries_the_bound_name_is_refused(db_url: str, tmp_path: Path) -> None:
    """Hole: a pack file renamed ``eu-gdpr-dsa`` 1.0.0 with the baseline's rules would pass as the EU pack."""
    forged = tmp_path / "eu-gdpr-dsa.yaml"
    forged.write_text((SHIPPED / "baseline.yaml").read_text().replace("name: baseline", "name: eu-gdpr-dsa"))
    mv = _train(db_url)
    assert _set(db_url, "canary", "eu-gdpr-dsa").exit_code == 0
    assert _promote(db_url, mv, "shadow", tmp_path).exit_code == 0
    refused = _promote(db_url, mv, "canary", tmp_path, "--pack", str(forged))
    assert refused.exit_code == 2 and "eu-gdpr-dsa@1.0.0" in _one_line(refused)
    assert "pack eu-gdpr-dsa@1.0.0 (hash" in refused.stderr, (
        "the same name and version with another hash is another pack"
    )
    assert [d.stage for d in _rows(db_url, Deployment)] == ["shadow"]


def test_without_a_policy_a_gated_stage_fails_closed_and_says_how_to_set_one(db_url: str, tmp_path: Path) -> None:
    """Hole: with no policy stored, any caller's pack gated production."""
    mv = _train(db_url)
    assert _promote(db_url, mv, "shadow", tmp_path).exit_code == 0, "shadow is never served: no gate, no policy needed"
    refused = _promote(db_url, mv, "canary", tmp_path, "--pack", "baseline")
    assert refused.exit_code == 2
    assert _one_line(refused) == "error: " + NO_BINDING.format(stage="canary")
    assert "recgov deploy policy set canary --pack" in refused.stderr
    assert _rows(db_url, AuditRun) == []


def test_the_gate_data_must_cover_what_the_policy_requires(db_url: str, tmp_path: Path) -> None:
    """Hole: the gate ran on whatever data the caller chose (a sample, another data set) and passed."""
    mv = _train(db_url)
    assert _set(db_url, "canary", "baseline", "--min-events", "50000").exit_code == 0
    assert _promote(db_url, mv, "shadow", tmp_path).exit_code == 0
    small = _promote(db_url, mv, "canary", tmp_path)
    assert small.exit_code == 2
    assert _one_line(small) == "error: " + DATA_TOO_SMALL.format(stage="canary", n=12000, what="events", minimum=50000)
    assert _set(db_url, "canary", "baseline", "--dataset", "training").exit_code == 0
    other = _promote(db_url, mv, "canary", tmp_path, data=OTHER_DATA)
    assert other.exit_code == 2
    assert _one_line(other).startswith("error: " + DATA_NOT_TRAINING.split("(")[0].format(stage="canary"))
    assert _rows(db_url, AuditRun) == [], "a refused requirement runs no gate"
    done = _promote(db_url, mv, "canary", tmp_path)
    assert done.exit_code == 0, done.output


def test_every_move_records_the_pack_that_gated_it_and_the_report_shows_it(db_url: str, tmp_path: Path) -> None:
    """Hole: a deployment row and its trail event did not say under which pack the move was allowed."""
    old, new = _train(db_url, 8), _train(db_url, 6)
    for stage in ("canary", "production"):
        assert _set(db_url, stage, "baseline", "--min-users", "100").exit_code == 0
    for mv in (old, new):
        for stage in ("shadow", "canary", "production"):
            done = _promote(db_url, mv, stage, tmp_path)
            assert done.exit_code == 0, done.output
            gate = json.loads(done.stdout)["gate"]
            assert (gate is None) == (stage == "shadow")
    assert _cli(db_url, "deploy", "rollback").exit_code == 0
    rows = _rows(db_url, Deployment)
    moves = [(d.model_version_id, d.stage, d.gate_pack, d.gate_pack_version) for d in rows]
    assert moves == [
        (old, "shadow", None, None),
        (old, "canary", "baseline", "1.0.0"),
        (old, "production", "baseline", "1.0.0"),
        (new, "shadow", None, None),
        (new, "canary", "baseline", "1.0.0"),
        (old, "shadow", "baseline", "1.0.0"),  # displaced by the production gate of `new`
        (new, "production", "baseline", "1.0.0"),
        (new, "retired", "baseline", "1.0.0"),  # the rollback restores `old` under its production gate
        (old, "production", "baseline", "1.0.0"),
    ]
    baseline_hash = rows[1].gate_pack_hash
    assert baseline_hash and all(d.gate_pack_hash == baseline_hash for d in rows if d.gate_pack)
    assert all(d.gate_audit_id for d in rows if d.gate_pack)
    assert rows[-1].gate_audit_id == rows[2].gate_audit_id, (
        "the rollback names the audit that let `old` into production"
    )
    events = {
        e.seq: json.loads(e.payload) for e in _rows(db_url, TrailEvent, TrailEvent.action == "deployment.changed")
    }
    for d in rows:
        gate = events[d.trail_seq]["gate"]
        assert (
            (gate is None)
            if d.gate_pack is None
            else (gate["pack_hash"] == d.gate_pack_hash and gate["audit_id"] == d.gate_audit_id)
        )

    store = open_store(db_url)
    try:
        with store.session() as session:
            document = collect(session, old)
        with store.engine.connect() as connection:
            assert verify_trail(connection).intact
    finally:
        store.close()
    gates = [d["gate"] for d in document["deployments"]]
    assert gates[0] is None and all(g["pack"] == "baseline" and g["pack_hash"] == baseline_hash for g in gates[1:])
    page = render_html(document)
    assert "Gated by" in page and page.count(baseline_hash) >= len(gates) - 1
    table = _cli(db_url, "deploy", "status")
    assert table.exit_code == 0 and f"baseline@1.0.0 ({baseline_hash[:12]})" in table.stdout


def test_policy_changes_are_on_the_trail_and_bad_settings_are_located(db_url: str, tmp_path: Path) -> None:
    """Hole: nothing recorded who bound which pack to which stage, nor refused a nonsense binding."""
    done = _set(db_url, "production", "baseline", "--min-events", "1000", "--min-users", "50", "--dataset", "any")
    assert done.exit_code == 0, done.output
    binding = json.loads(done.stdout)
    assert {k: binding[k] for k in ("stage", "pack", "pack_version", "min_events", "min_users", "dataset")} == {
        "stage": "production", "pack": "baseline", "pack_version": "1.0.0", "min_events": 1000, "min_users": 50, "dataset": "any",
    }  # fmt: skip
    shown = json.loads(_cli(db_url, "deploy", "policy", "show", "--json").stdout)
    assert shown["stages"]["production"]["pack_hash"] == binding["pack_hash"] and shown["stages"]["canary"] is None
    assert "production" in _cli(db_url, "deploy", "policy", "show").stdout
    shadow = _set(db_url, "shadow", "baseline")
    assert shadow.exit_code == 2 and _one_line(shadow) == "error: " + NOT_A_GATED_STAGE.format(stage="shadow")
    assert _set(db_url, "production", "no-such-pack").exit_code == 2
    assert _set(db_url, "production", "baseline", "--min-events", "-1").exit_code == 2
    assert _set(db_url, "production", "baseline", "--dataset", "yesterday").exit_code == 2
    policies = _rows(db_url, DeploymentPolicy)
    assert len(policies) == 1, "a refused setting stores nothing"
    events = _rows(db_url, TrailEvent, TrailEvent.action == "deployment.policy_set")
    assert [e.seq for e in events] == [policies[0].trail_seq]
    assert json.loads(events[0].payload)["pack_hash"] == binding["pack_hash"]


def test_a_bound_pack_edited_after_the_policy_was_set_is_refused(db_url: str, tmp_path: Path) -> None:
    """Hole: binding by name let an edited pack file gate under the reviewed pack's name."""
    own = tmp_path / "house.yaml"
    own.write_text((SHIPPED / "baseline.yaml").read_text().replace("name: baseline", "name: house"))
    mv = _train(db_url)
    assert _set(db_url, "canary", str(own)).exit_code == 0
    binding = json.loads(_cli(db_url, "deploy", "policy", "show", "--json").stdout)["stages"]["canary"]
    assert binding["ref"] == "house@1.0.0", "a pack file is stored with the installation's packs and bound by reference"
    assert _promote(db_url, mv, "shadow", tmp_path).exit_code == 0
    stored = (
        Path(json.loads(_cli(db_url, "deploy", "policy", "show", "--json").stdout)["packs_dir"])
        / "house"
        / "1.0.0.yaml"
    )
    stored.write_text(stored.read_text().replace("min_ratio: 2.0", "min_ratio: 0.0"))
    refused = _promote(db_url, mv, "canary", tmp_path)
    assert refused.exit_code == 2
    assert _one_line(refused).startswith("error: " + BOUND_PACK_CHANGED.split("(")[0].format(stage="canary"))
    assert _rows(db_url, AuditRun) == []


def test_rollback_cannot_restore_a_version_gated_under_a_pack_production_no_longer_binds(
    db_url: str, tmp_path: Path
) -> None:
    """Hole: after production was bound to a stricter pack, a rollback put back a version only the old pack passed."""
    old, new = _train(db_url, 8), _train(db_url, 6)
    relaxed = tmp_path / "relaxed.yaml"
    relaxed.write_text((SHIPPED / "baseline.yaml").read_text().replace("name: baseline", "name: relaxed"))
    for stage in ("canary", "production"):
        assert _set(db_url, stage, str(relaxed)).exit_code == 0
    for mv in (old, new):
        for stage in ("shadow", "canary", "production"):
            assert _promote(db_url, mv, stage, tmp_path).exit_code == 0
    assert _set(db_url, "production", "baseline").exit_code == 0
    refused = _cli(db_url, "deploy", "rollback")
    assert refused.exit_code == 2
    assert _one_line(refused).startswith("error: " + ROLLBACK_UNDER_OTHER_PACK.split("(")[0].format(version=old))
    assert [d.stage for d in _rows(db_url, Deployment, Deployment.model_version_id == new)][-1] == "production"


def test_a_binding_replaced_while_the_gate_ran_moves_nothing(db_url: str, tmp_path: Path) -> None:
    """Hole: a move recorded under a binding that an admin replaced while its gate was running."""
    mv = _train(db_url)
    assert _set(db_url, "canary", "baseline").exit_code == 0
    assert _promote(db_url, mv, "shadow", tmp_path).exit_code == 0
    store = open_store(db_url)
    installation = installation_pack_loader(packs_dir())

    def meanwhile_an_admin_rebinds(ref: str) -> LoadedPack:
        loaded = installation(ref)
        with store.session() as session:
            stricter = StageRequirements(min_users=250)
            set_binding(session, stage="canary", ref=ref, pack=loaded, requirements=stricter, actor="another-admin")
        return loaded

    try:
        with pytest.raises(DeploymentPolicyRefused) as refused:
            promote(
                store, model_version=mv, to_stage="canary", pack=None, load_pack=meanwhile_an_admin_rebinds,
                dataset=load_data(DATA), out_dir=tmp_path / "gate", models_dir=get_settings().home / "models",
            )  # fmt: skip
    finally:
        store.close()
    first, second = (p.id for p in _rows(db_url, DeploymentPolicy))
    assert str(refused.value) == POLICY_CHANGED.format(stage="canary", was=first, now=second)
    assert [d.stage for d in _rows(db_url, Deployment)] == ["shadow"]


def test_the_bound_pack_may_be_named_as_stored_and_nothing_else(db_url: str, tmp_path: Path) -> None:
    """Hole: a caller naming a stored NAME@VERSION could not be checked against the binding (it was read as a file)."""
    own = tmp_path / "house.yaml"
    own.write_text((SHIPPED / "baseline.yaml").read_text().replace("name: baseline", "name: house"))
    mv = _train(db_url)
    assert _set(db_url, "canary", str(own)).exit_code == 0
    assert _promote(db_url, mv, "shadow", tmp_path).exit_code == 0
    missing = _promote(db_url, mv, "canary", tmp_path, "--pack", "house@9.9.9")
    assert missing.exit_code == 2 and "no stored pack 'house' at version '9.9.9'" in _one_line(missing)
    named = _promote(db_url, mv, "canary", tmp_path, "--pack", "house@1.0.0")
    assert named.exit_code == 0, named.output
    assert json.loads(named.stdout)["gate"]["pack"] == "house"


@pytest.mark.parametrize(
    ("option", "value"),
    [("--min-users", "99999999999999999999"), ("--min-users", "10000000001"), ("--min-events", "1000000000001")],
)
def test_a_requirement_out_of_range_is_named_not_blamed_on_dataset(db_url: str, recgov_home: Path, option: str, value: str) -> None:
    """A --min-users or --min-events above the stored bound was reported as a bad --dataset ('training')."""
    refused = runner.invoke(cli, ["deploy", "policy", "set", "canary", "--pack", "baseline", option, value, "--database-url", db_url])
    assert refused.exit_code == 2
    assert option in refused.output and "--dataset" not in refused.output, refused.output
    shown = runner.invoke(cli, ["deploy", "policy", "show", "--json", "--database-url", db_url])
    assert shown.exit_code == 0 and "baseline" not in shown.stdout  # nothing bound
