"""The full retrain an erasure calls for, and the suppression record that keeps an erasure in force,
through the public CLI and library on SQLite and PostgreSQL.

An erasure opens a ``retrain`` request with the pack's deadline listing the models trained on the
subject; ``subject erase --retrain DATA`` or ``retrain run DATA`` replaces them by a model trained
with the same recipe without the subject; ``retrain due`` lists what is left and the
``erasure_deadline`` rule fails once a retrain is overdue. After erasure and retrain the raw id is
in no table and no artifact, the trail verifies, and a subject who had opted out stays out of
serving and training under their new pseudonym.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import recent_events_csv, count, dump, invoke, ok
from sqlalchemy import text

from audits import list_requests, open_request, open_store
from audits.models import REQUEST_KINDS
from governance.audit import _with_store_facts
from governance.engine import evaluate
from governance.facts import AuditFacts
from governance.policy import PolicyError, load_pack, parse_pack
from governance.privacy import pending_retrains

POLICIES = Path(__file__).resolve().parents[2] / "policies"
VICTIM = "dsr-retrain-victim-K8p3"
NEEDLES = (VICTIM.encode("utf-8"), VICTIM.encode("utf-32-le"))  # numpy keeps str arrays as UTF-32
MAP = "user_id=user_id,item_id=item_id,timestamp=timestamp,event_type=event_type,value=value"








@pytest.fixture(scope="module")
def events_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small event log of the last weeks (inside every pack's retention) whose busiest user is the subject."""
    return recent_events_csv(tmp_path_factory.mktemp("retrain") / "events.csv", VICTIM, n_users=70, n_items=45, n_interactions=2200, seed=11)


def train(events_csv: Path, db_url: str, pack: str = "california-ccpa") -> dict:
    return ok("train", events_csv, "--map", MAP, "--pack", pack, "--no-tune", "--no-carbon",
              "--factors", "6", "--iterations", "3", "--database-url", db_url)  # fmt: skip


def opt_out(db_url: str, purposes: tuple[str, ...] = ("personalization", "sale_sharing")) -> None:
    for purpose in purposes:
        ok("consent", "set", VICTIM, "--purpose", purpose, "--status", "opted_out", "--source", "gpc",
           "--pack", "california-ccpa", "--database-url", db_url)  # fmt: skip


def test_erase_with_retrain_replaces_the_models_and_leaves_the_raw_id_nowhere(
    db_url: str, events_csv: Path, tmp_path: Path
) -> None:
    trained = train(events_csv, db_url)
    artifact = Path(trained["artifact"])
    assert any(n in artifact.read_bytes() for n in NEEDLES), "the check must be able to see the id in an artifact"
    opt_out(db_url)  # an opted-out consumer (CCPA §1798.120) asks to be deleted

    result = invoke("subject", "erase", "--approximate", VICTIM, "--pack", "california-ccpa", "--model", artifact, "--delete-previous",
                    "--no-residual", "--retrain", events_csv, "--map", MAP, "--no-carbon", "--json",
                    "--database-url", db_url)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert VICTIM not in result.output
    report = json.loads(result.stdout)
    (step,) = report["unlearning"]
    retrain, run = report["retrain"]["request"], report["retrain"]["run"]
    assert retrain["status"] == "completed" and sorted(retrain["models"]) == sorted([trained["model_version"], step["version"]])
    assert "45 days: consent.requests.retrain_days of pack california-ccpa" in retrain["deadline_basis"]
    (new,) = run["retrained"]
    assert sorted(new["replaces"]) == sorted(retrain["models"]) and new["recipe_of"] == trained["model_version"]
    assert new["params"] == {k: trained["params"][k] for k in ("factors", "regularization", "alpha", "iterations")}
    assert new["version"] not in (trained["model_version"], step["version"])
    assert not any("retrain run" in item for item in report["not_done"])
    assert report["suppression"]["denied"] == {
        "personalization": {"status": "opted_out", "lawful_basis": "legitimate_interest"},
        "sale_sharing": {"status": "opted_out", "lawful_basis": "consent"},
    }
    # the subject's events were left out, as opted out (the suppression keeps the opt-out), nothing else was
    n_victim = sum(1 for line in events_csv.read_text().splitlines() if line.startswith(VICTIM + ","))
    assert new["events"]["excluded"]["opted_out"] == n_victim > 0
    assert new["events"]["kept"] == trained["privacy_filter"]["events"]["kept"] - n_victim

    # No artifact, no table, no trail export holds the raw id; the trail verifies.
    artifacts = list((Path(trained["artifact"]).parent).glob("*.npz"))
    assert Path(new["artifact"]) in artifacts and len(artifacts) == 2  # the unlearned and the retrained model
    for path in artifacts:
        assert not any(n in path.read_bytes() for n in NEEDLES), path
    assert VICTIM not in dump(db_url)
    trail_file = tmp_path / "trail.jsonl"
    assert invoke("trail", "export", trail_file, "--no-checkpoint", "--database-url", db_url).exit_code == 0
    assert not any(n in trail_file.read_bytes() for n in NEEDLES)
    verified = invoke("trail", "verify", "--database-url", db_url)
    assert verified.exit_code == 0 and "intact" in verified.stdout

    # Lineage records the replacement; nothing is left to retrain.
    lineage = ok("lineage", new["version"], "--database-url", db_url)
    assert VICTIM not in json.dumps(lineage)
    store = open_store(db_url)
    try:
        with store.session() as session:
            (request,) = list_requests(session, kind="retrain")
            events = session.execute(
                text("SELECT objects, payload FROM trail_events WHERE action = 'model.retrained'")
            ).all()
    finally:
        store.close()
    assert request["status"] == "completed" and request["result"]["retrained"][0]["version"] == new["version"]
    ((objects, payload),) = events
    assert new["version"] in str(objects) and all(v in str(payload) for v in retrain["models"])
    assert ok("retrain", "due", "--database-url", db_url)["pending"] == []

    # The suppression keeps them out: serving does not profile them, training leaves them out.
    served = ok("recommend", VICTIM, "--model", new["version"], "--pack", "california-ccpa", "--k", "3",
                "--database-url", db_url)  # fmt: skip
    assert served["mode"] == "non_profiling" and "opted_out via import" in served["consent"]
    again = train(events_csv, db_url)
    assert again["privacy_filter"]["events"]["excluded"]["opted_out"] == n_victim
    assert VICTIM not in dump(db_url)


def test_a_deferred_retrain_is_due_by_the_pack_deadline_and_run_later(
    db_url: str, events_csv: Path
) -> None:
    trained = train(events_csv, db_url, pack="california-ccpa")
    report = ok("subject", "erase", "--approximate", VICTIM, "--pack", "eu-gdpr-dsa", "--database-url", db_url)
    retrain = report["retrain"]["request"]
    # the recorded artifact was unlearned too (fast unlearning approximates a retrain): both are due for one
    unlearned = [u["version"] for u in report["unlearning"] if u["status"] == "unlearned"]
    holding = [trained["model_version"], *unlearned]
    assert len(unlearned) == 1 and retrain["status"] == "received" and retrain["models"] == holding
    assert retrain["deadline_basis"].startswith("30 days: consent.requests.retrain_days of pack eu-gdpr-dsa")
    # the retrain runs under the pack whose consent rules trained the model, not the erasure's
    assert any("recgov retrain run DATA --pack california-ccpa" in item for item in report["not_done"])
    assert retrain["retrain_under"] == dict.fromkeys(holding, "california-ccpa")

    due = ok("retrain", "due", "--database-url", db_url)
    (entry,) = due["pending"]
    assert (entry["id"], entry["overdue"], entry["models"]) == (retrain["id"], False, holding)
    assert 29.9 < entry["days_left"] <= 30
    assert due["overdue"] == 0
    text_out = invoke("retrain", "due", "--database-url", db_url)
    assert text_out.exit_code == 0 and "1 retrain(s) due, 0 overdue" in text_out.stdout

    # Broken data changes nothing: the request stays open.
    broken = invoke("retrain", "run", "/no/such/events.csv", "--pack", "california-ccpa", "--database-url", db_url)
    assert broken.exit_code == 2 and len(broken.stderr.strip().splitlines()) == 1
    unknown = invoke("retrain", "run", events_csv, "--map", MAP, "--pack", "california-ccpa", "--request", "999",
                     "--no-carbon", "--database-url", db_url)  # fmt: skip
    assert unknown.exit_code == 2
    assert f"retrain request 999 is not open (open ones: {retrain['id']})" in unknown.stderr
    assert len(ok("retrain", "due", "--database-url", db_url)["pending"]) == 1

    done = ok("retrain", "run", events_csv, "--map", MAP, "--pack", "california-ccpa", "--no-carbon",
              "--database-url", db_url)  # fmt: skip
    (new,) = done["retrained"]
    assert new["replaces"] == holding and done["requests"][0]["met_deadline"] is True
    # no restriction was in force (an opt-out purpose, no record): the events go as erased
    n_victim = sum(1 for line in events_csv.read_text().splitlines() if line.startswith(VICTIM + ","))
    assert new["events"]["excluded"]["erased"] == n_victim > 0
    assert new["events"]["kept"] == trained["privacy_filter"]["events"]["kept"] - n_victim
    assert not any(n in Path(new["artifact"]).read_bytes() for n in NEEDLES)
    assert ok("retrain", "due", "--database-url", db_url)["pending"] == []
    again = ok("retrain", "run", events_csv, "--map", MAP, "--pack", "california-ccpa", "--no-carbon",
               "--database-url", db_url)  # fmt: skip
    assert again["requests"] == [] and again["note"] == "no retrain is due"
    assert VICTIM not in dump(db_url)
    assert invoke("trail", "verify", "--database-url", db_url).exit_code == 0


def test_an_overdue_retrain_fails_the_deadline_rule_and_exits_1(store, db_url: str) -> None:
    assert "retrain" in REQUEST_KINDS
    with store.session() as session:
        open_request(session, subject_id="erased-long-ago", kind="retrain", deadline_days=30,
                     requested_at=datetime.now(UTC) - timedelta(days=31),
                     details={"erasure_request": None, "models": ["als-0000"]})  # fmt: skip
        open_request(session, subject_id="erased-today", kind="retrain", deadline_days=30,
                     details={"erasure_request": None, "models": ["als-0000"]})  # fmt: skip
    doc = pending_retrains(store)
    assert [e["overdue"] for e in doc["pending"]] == [True, False] and doc["overdue"] == 1
    result = invoke("retrain", "due", "--database-url", db_url)
    assert result.exit_code == 1 and "OVERDUE" in result.stdout and "erased-long-ago" not in result.output

    facts = _with_store_facts(AuditFacts(), store, None)
    assert facts.privacy.overdue_requests["retrain"] == 1
    for pack, rule in (("eu-gdpr-dsa", "eu-retrain-deadline"), ("california-ccpa", "ca-retrain-deadline")):
        results = {r.rule_id: r for r in evaluate(load_pack(POLICIES / f"{pack}.yaml"), facts).results}
        assert results[rule].status == "fail" and "retrain(s) overdue" in results[rule].message
    results = {r.rule_id: r for r in evaluate(load_pack(POLICIES / "eu-gdpr-dsa.yaml"), facts).results}
    assert results["eu-erasure-deadline"].status == "pass"  # the erasures themselves were answered


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--retrain", "/no/such/events.csv"], "no such file"),
        (["--retrain", "BROKEN"], "missing column(s) user_id (for user_id), item_id (for item_id)"),
        (["--map", MAP], "error: --map describes the columns of the --retrain DATA; give --retrain DATA too"),
        (["--retrain", "ONLY_VICTIM", "--map", MAP],
         "leaves no event to train on once the subject's events and those the pack excludes are out"),
    ],
)  # fmt: skip
def test_erase_with_broken_retrain_data_is_one_line_exit_2_and_changes_nothing(
    db_url: str, events_csv: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    train(events_csv, db_url)
    opt_out(db_url, ("sale_sharing",))
    only_victim = tmp_path / "only-victim.csv"
    lines = events_csv.read_text().splitlines()
    only_victim.write_text("\n".join([lines[0], *(line for line in lines if line.startswith(VICTIM + ","))]) + "\n")
    broken = tmp_path / "broken.csv"
    broken.write_text("who,what\n1,2\n")
    args = [{"ONLY_VICTIM": str(only_victim), "BROKEN": str(broken)}.get(a, a) for a in args]
    before = sorted(dump(db_url).splitlines())  # as a set of rows: PostgreSQL returns them in no fixed order

    result = invoke("subject", "erase", "--approximate", VICTIM, "--pack", "california-ccpa", *args, "--no-carbon",
                    "--database-url", db_url)  # fmt: skip
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.output and VICTIM not in result.output
    assert sorted(dump(db_url).splitlines()) == before
    assert count(db_url, "subject_requests") == 0 and count(db_url, "suppressions") == 0
    shown = ok("consent", "show", VICTIM, "--database-url", db_url)
    assert shown["subject"] is not None and len(shown["history"]) == 1  # still linked: nothing was erased


@pytest.mark.parametrize(
    ("requests", "path", "message"),
    [
        ("{erasure_days: 0}", "consent.requests.erasure_days", "greater than or equal to 1"),
        ("{retrain_days: 400}", "consent.requests.retrain_days", "less than or equal to 366"),
        ("{access_days: thirty}", "consent.requests.access_days", "valid integer"),
        ("{access_days: '30'}", "consent.requests.access_days", "valid integer"),
        ("{erasure_days: 12.5}", "consent.requests.erasure_days", "valid integer"),
        ("{deletion_days: 30}", "consent.requests.deletion_days", "unknown key"),
    ],
)
def test_bad_deadlines_in_a_pack_are_located_errors(requests: str, path: str, message: str) -> None:
    text_ = f"apiVersion: recgov/v1\nmetadata: {{name: deadlines, version: 0.1.0, owner: tests}}\nconsent:\n  requests: {requests}\n"
    with pytest.raises(PolicyError) as caught:
        parse_pack(text_, "deadlines.yaml")
    (issue,) = caught.value.issues
    assert (issue.file, issue.line, issue.path) == ("deadlines.yaml", 4, path)
    assert message in issue.message


def test_deadlines_default_to_one_month_and_the_shipped_packs_cite_their_law() -> None:
    default = parse_pack("apiVersion: recgov/v1\nmetadata: {name: plain, version: 0.1.0, owner: tests}\n").pack
    assert default.consent.requests.model_dump() == {
        "access_days": 30, "erasure_days": 30, "objection_days": 30, "retrain_days": 30, "legal_reference": "GDPR Art. 12(3)",
    }  # fmt: skip
    eu = load_pack(POLICIES / "eu-gdpr-dsa.yaml").pack.consent.requests
    ca = load_pack(POLICIES / "california-ccpa.yaml").pack.consent.requests
    assert (eu.erasure_days, eu.retrain_days) == (30, 30) and "GDPR Art. 12(3)" in eu.legal_reference
    assert (ca.access_days, ca.erasure_days, ca.retrain_days) == (45, 45, 45) and "§1798.130" in ca.legal_reference
    assert np.all([ca.days_for(kind) >= 1 for kind in REQUEST_KINDS])
