"""An erasure retrain ticket completes only the requests a retrain under its pack may close, on SQLite and PostgreSQL.

``recgov retrain run`` never lets a retrain under one pack replace a model another pack's consent rules trained
(it could learn from subjects those rules left out): such a version waits for a run under its own pack. The
pipeline's ``erasure_retrains`` ticket, once its model was promoted, completed every request whose versions
shared its model's recipe (parameters, seed, feedback), whichever pack's rules had trained them. Now it follows
the same rule: such a request stays open, naming the version it waits on.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from audits import list_requests, open_request
from governance.lifecycle.pipeline import _complete_erasures
from governance.packs import resolve_pack
from governance.training import train_and_record
from recommender.synthetic import SyntheticSpec, generate
from tests.governance.lifecycle_world import lifecycle_pack

PARAMS = {"factors": 4, "regularization": 0.05, "alpha": 10.0, "iterations": 2}
RULES = "consent:\n  purposes:\n    personalization:\n      lawful_basis: legitimate_interest\n      model: opt_out\n"


def _pack(name: str):
    return lifecycle_pack(resolve_pack("baseline").read_text().replace("name: baseline", f"name: {name}"), RULES)


def test_a_ticket_leaves_open_a_request_for_a_model_another_packs_rules_trained(store, tmp_path: Path) -> None:
    ours, theirs = _pack("rules-ours"), _pack("rules-theirs")
    trained = {}
    for name, pack, seed in (("theirs", theirs, 1), ("same", ours, 3), ("new", ours, 2)):
        data = generate(SyntheticSpec(n_users=60, n_items=30, n_interactions=900, seed=seed))
        trained[name] = train_and_record(data, store=store, models_dir=tmp_path / "models", params=PARAMS, measure_carbon=False, pack=pack).model_version
    with store.session() as session:
        other = open_request(session, subject_id="gone-1", kind="retrain", deadline_days=30, details={"models": [trained["theirs"]]}).id
        mine = open_request(session, subject_id="gone-2", kind="retrain", deadline_days=30, details={"models": [trained["same"]]}).id
    ticket = {"id": "t-1", "kind": "erasure_retrains", "evidence": {"retrain_requests": [other, mine]}, "new_model_version": trained["new"]}
    with store.session() as session:
        done = _complete_erasures(session, SimpleNamespace(pack=ours, actor="test"), ticket)
    assert done["erasure_requests_completed"] == [mine]
    assert done["erasure_requests_open"] == [{"id": other, "waits_on": [trained["theirs"]]}]
    with store.session() as session:
        assert [r["id"] for r in list_requests(session, kind="retrain", open_only=True)] == [other]
