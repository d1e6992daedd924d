"""Red team: an offline evaluation never learns from an erased person's history.

Regression: `recgov evaluate` fitted ALS, item-kNN and the baselines on the raw
log as given, so an erased person's events from before their erasure trained
models again (in memory, for the evaluation's figures), although training, the
audit's refits and serving all leave them out.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from audits import open_store, record_consent
from governance.cli import app
from governance.policy import load_pack
from governance.privacy import erase_subject
from recommender.loaders import load_data, write_movielens_100k
from recommender.synthetic import SyntheticSpec, generate

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def _evaluate(data_dir: Path) -> dict:
    result = CliRunner().invoke(app, ["evaluate", str(data_dir), "--no-tune", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_evaluate_leaves_out_the_events_of_an_erased_subject(tmp_path: Path, recgov_home: Path) -> None:
    data = generate(SyntheticSpec(n_users=120, n_items=80, n_interactions=3000, seed=5, event_mix={"rating": 1.0}))
    data_dir = write_movielens_100k(data, tmp_path / "ml")
    before = _evaluate(data_dir)
    assert before["privacy_filter"] is None, "no store yet: nothing to leave out, and no store is created"
    assert not (recgov_home / "recgov.db").exists()

    events = load_data(data_dir).events  # the ids as the MovieLens layout gives them
    victim = str(events["user_id"].astype(str).value_counts().index[0])
    n_victim = int((events["user_id"].astype(str) == victim).sum())
    store = open_store()
    try:
        with store.session() as session:
            record_consent(session, subject_id=victim, purpose="personalization", status="granted", lawful_basis="consent", source="api")
        erase_subject(store, victim, pack=load_pack(POLICIES / "eu-gdpr-dsa.yaml"), measure_residual=False)
    finally:
        store.close()

    after = _evaluate(data_dir)
    assert after["privacy_filter"]["events"]["excluded"]["erased"] == n_victim
    assert after["dataset"]["n_events"] == before["dataset"]["n_events"] - n_victim
    assert after["dataset"]["n_users"] == before["dataset"]["n_users"] - 1
