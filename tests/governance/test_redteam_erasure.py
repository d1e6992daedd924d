"""Red team: erasure that really forgets (GDPR Art. 17), through the public CLI, on SQLite and PostgreSQL.

Each test names the hole it pins. The attacks: after ``recgov subject erase``, ask for the
person's list from every model version that still exists, under another pack, after a new
grant; retrain from the unpurged raw log, with and without ``--pack``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import count, invoke, ok

from recommender.synthetic import SyntheticSpec, generate

VICTIM = "erase-redteam-victim-Q7"
MAP = "user_id=user_id,item_id=item_id,timestamp=timestamp,event_type=event_type,value=value"
TRAIN = ("--no-tune", "--no-carbon", "--factors", "8", "--iterations", "4", "--map", MAP)


@pytest.fixture(scope="module")
def events_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small event log whose busiest user is the victim."""
    data = generate(SyntheticSpec(n_users=80, n_items=50, n_interactions=2500, seed=7, event_mix={"rating": 1.0}))
    events = data.events.copy()
    events["user_id"] = events["user_id"].astype(str)
    busiest = events["user_id"].value_counts().index[0]
    events.loc[events["user_id"] == busiest, "user_id"] = VICTIM
    path = tmp_path_factory.mktemp("redteam-erasure") / "events.csv"
    events.drop(columns=["session_id", "context"]).to_csv(path, index=False)
    return path


def _train(csv: Path, db_url: str, *extra: str) -> dict:
    return ok("train", csv, *TRAIN, *extra, "--database-url", db_url)


def _recommend(version: str, pack: str, db_url: str) -> dict:
    return ok("recommend", VICTIM, "--model", version, "--pack", pack, "--k", "5", "--database-url", db_url)


def _user_ids(artifact: str) -> set[str]:
    with np.load(artifact, allow_pickle=False) as npz:
        return set(npz["user_ids"].astype(str).tolist())


def test_an_old_version_serves_the_erased_subject_the_non_profiling_list(events_csv: Path, db_url: str) -> None:
    """Hole: after an erasure, a model version that still holds the person's row served them a
    personalised list under an opt-out pack (no record means yes), built from their erased history."""
    version = _train(events_csv, db_url)["model_version"]
    assert _recommend(version, "california-ccpa", db_url)["mode"] == "personalized"  # the attack works before erasure
    ok("subject", "erase", "--approximate", VICTIM, "--pack", "baseline", "--no-residual", "--database-url", db_url)
    for pack in ("california-ccpa", "baseline"):
        served = _recommend(version, pack, db_url)
        assert served["mode"] == "non_profiling", (pack, served["mode"])
        assert "erased" in served["consent"] and "GDPR Art. 17" in served["consent"]
        assert all(item["score"] is None for item in served["items"]) and len(served["items"]) == 5


def test_a_grant_after_erasure_does_not_revive_old_factors(events_csv: Path, db_url: str) -> None:
    """Hole: a consent grant after erasure (a new history) made every version that still holds the
    old row, and the unlearned one, serve the person again from their pre-erasure factors."""
    version = _train(events_csv, db_url)["model_version"]
    erased = ok("subject", "erase", "--approximate", VICTIM, "--pack", "eu-gdpr-dsa", "--no-residual", "--database-url", db_url)
    unlearned = [u["version"] for u in erased["unlearning"] if u["status"] == "unlearned"]
    ok(
        "consent",
        "set",
        VICTIM,
        "--purpose",
        "personalization",
        "--status",
        "granted",
        "--pack",
        "eu-gdpr-dsa",
        "--database-url",
        db_url,
    )
    for served_by in (version, *unlearned):
        served = _recommend(served_by, "eu-gdpr-dsa", db_url)
        assert served["mode"] == "non_profiling", (served_by, served["mode"])
        assert "erased" in served["consent"]


def test_cli_erasure_unlearns_every_recorded_artifact_that_holds_the_subject(events_csv: Path, db_url: str) -> None:
    """Hole: without --model, `recgov subject erase` unlearned nothing: every recorded artifact that
    recgov can open and that holds the person kept their factors."""
    first = _train(events_csv, db_url)
    second = _train(events_csv, db_url, "--seed", "3")
    assert first["model_version"] != second["model_version"]
    report = ok("subject", "erase", "--approximate", VICTIM, "--pack", "baseline", "--no-residual", "--database-url", db_url)
    done = {u["previous_version"]: u for u in report["unlearning"]}
    assert set(done) == {first["model_version"], second["model_version"]}
    for step in done.values():
        assert step["status"] == "unlearned" and VICTIM not in _user_ids(step["artifact"])
    assert VICTIM not in json.dumps(report)


def test_training_without_a_pack_leaves_the_erased_subject_out(events_csv: Path, db_url: str) -> None:
    """Hole: `recgov train` without --pack learned the erased person's pre-erasure events again from
    the unpurged raw log, and even "reproduced" the very version they were erased from."""
    before = _train(events_csv, db_url)
    assert VICTIM in _user_ids(before["artifact"])
    ok("subject", "erase", "--approximate", VICTIM, "--pack", "baseline", "--no-residual", "--database-url", db_url)
    after = _train(events_csv, db_url)
    assert after["reproduced"] is False
    assert after["model_version"] != before["model_version"] and after["dataset_version"] != before["dataset_version"]
    assert VICTIM not in _user_ids(after["artifact"])
    assert after["privacy_filter"]["events"]["excluded"]["erased"] > 0


def test_a_new_history_after_erasure_is_personalised_again(events_csv: Path, db_url: str, tmp_path: Path) -> None:
    """Control (the fix must not over-block): events after the erasure are a new history; a model
    trained after the erasure, which left the old events out, personalises from them."""
    _train(events_csv, db_url)
    ok("subject", "erase", "--approximate", VICTIM, "--pack", "baseline", "--no-residual", "--database-url", db_url)
    events = pd.read_csv(events_csv)
    items = events["item_id"].value_counts().index[:12]
    moment = datetime.now(UTC) + timedelta(seconds=1)
    fresh = pd.DataFrame(
        {"user_id": VICTIM, "item_id": items, "timestamp": [(moment + timedelta(seconds=i)).isoformat() for i in range(len(items))],
         "event_type": "rating", "value": 5.0}
    )  # fmt: skip
    log = tmp_path / "events-with-new-history.csv"
    pd.concat([events, fresh], ignore_index=True).to_csv(log, index=False)
    retrained = _train(log, db_url, "--pack", "california-ccpa", "--as-of", "2024-12-31")
    assert retrained["privacy_filter"]["events"]["excluded"]["erased"] > 0
    served = _recommend(retrained["model_version"], "california-ccpa", db_url)
    assert served["mode"] == "personalized"
    assert all(item not in set(items.astype(str)) for item in (i["item_id"] for i in served["items"]))


def test_trail_verifies_after_the_attacks(events_csv: Path, db_url: str) -> None:
    """The erasure, the refused lists and the retrain leave a trail that still verifies."""
    version = _train(events_csv, db_url)["model_version"]
    ok("subject", "erase", "--approximate", VICTIM, "--pack", "baseline", "--no-residual", "--database-url", db_url)
    _recommend(version, "california-ccpa", db_url)
    assert invoke("trail", "verify", "--database-url", db_url).exit_code == 0


def test_erasures_unlearn_each_lineage_once_instead_of_doubling_the_versions(events_csv: Path, db_url: str) -> None:
    """Hole: unlearning every recorded artifact that held the subject also unlearned the versions
    earlier erasures had already replaced, so each erasure doubled the recorded versions (1, 2, 4, 8...)."""
    _train(events_csv, db_url)
    users = pd.read_csv(events_csv)["user_id"].astype(str).value_counts().index[1:4]
    for n, subject in enumerate(users, start=1):
        report = ok("subject", "erase", "--approximate", subject, "--pack", "baseline", "--no-residual", "--database-url", db_url)
        assert [u["status"] for u in report["unlearning"]] == ["unlearned"], n  # the lineage's newest version only
        assert count(db_url, "model_versions") == 1 + n
        superseded = [v for v in report["models"]["versions"] if v["action"].startswith("withdrawn from serving")]
        assert len(superseded) == n - 1


def test_the_erasure_names_every_file_that_still_lists_the_subject(events_csv: Path, db_url: str) -> None:
    """Hole: after an erasure, the files of a model family that forgets only by a retrain (bpr) and of
    an older version of an unlearned lineage still listed the person's raw id in the clear, for as long
    as nobody deleted them (a retrain and a retirement delete no file), and the erasure's answer named
    only the files it had unlearned from."""
    from governance.privacy.erasure import STILL_LISTED

    als = _train(events_csv, db_url)["model_version"]
    bpr = ok("train", events_csv, "--family", "bpr", "--no-carbon", "--map", MAP, "--database-url", db_url)
    bpr_version, bpr_file = bpr["model_version"], bpr["artifact"]
    first = ok("subject", "erase", "--approximate", VICTIM, "--pack", "eu-gdpr-dsa", "--no-residual", "--database-url", db_url)
    assert STILL_LISTED.format(version=bpr_version) in first["not_done"]
    assert VICTIM in set(np.load(bpr_file, allow_pickle=False)["train_user_ids"].astype(str))  # the file at stake
    # the subject comes back and is erased again: the first erasure's source still lists the first history
    grant = ("--purpose", "personalization", "--status", "granted", "--pack", "eu-gdpr-dsa")
    ok("consent", "set", VICTIM, *grant, "--database-url", db_url)
    again = ok("subject", "erase", "--approximate", VICTIM, "--pack", "eu-gdpr-dsa", "--no-residual", "--database-url", db_url)
    listed = {v["version_id"] for v in again["models"]["versions"] if v["membership"] == "includes"}
    assert als in listed and VICTIM in _user_ids(ok("models", "show", als, "--database-url", db_url)["artifact"])
    for version in listed - {u["previous_version"] for u in again["unlearning"] if u.get("status") == "unlearned"}:
        assert STILL_LISTED.format(version=version) in again["not_done"], version
