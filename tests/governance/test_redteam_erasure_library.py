"""Red team: erasure through the library's serving path (``ServingEngine``, ``open_deployed``), on SQLite and PostgreSQL.

The CLI and API tests attack the commands; these attack what a platform embedding recgov
calls in process: an engine for a recorded version, the deployed engines, and the
lineage an unlearned version is judged by.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from audits.db import Store
from governance.policy import load_pack
from governance.privacy import erase_subject
from governance.serving import ERASED_HISTORY, ServeRequest, ServingEngine, erasure_decision
from governance.packs import resolve_pack
from governance.suppressed import ERASURES_SEEN, drop_erased_events, erasure_seq, erasures_seen
from governance.training import train_and_record
from recommender.als import ALSRecommender
from recommender.errors import DataError
from recommender.synthetic import SyntheticSpec, generate

CCPA = load_pack(resolve_pack("california-ccpa"))  # opt-out: no record means "profile them"
BASELINE = load_pack(resolve_pack("baseline"))


@pytest.fixture
def trained(store: Store, recgov_home: Path):
    data = generate(SyntheticSpec(n_users=60, n_items=40, n_interactions=1500, seed=11, event_mix={"rating": 1.0}))
    run = train_and_record(
        data,
        store=store,
        models_dir=recgov_home / "models",
        params={"factors": 8, "iterations": 4},
        measure_carbon=False,
    )
    victim = str(data.events["user_id"].astype(str).value_counts().index[0])
    return data, run, victim


def _serve(store: Store, version: str, artifact: str | Path, subject: str) -> str:
    with store.session() as session:
        seen = erasures_seen(session, version)
        erased = erasure_seq(session, subject)
    engine = ServingEngine(CCPA, ALSRecommender.load(artifact), erasures_seen=seen)
    return engine.serve(ServeRequest(subject, k=5, erasure_seq=erased)).mode


def test_erasure_decision_is_decided_by_the_order_of_erasure_and_training() -> None:
    """The rule itself: never erased, or erased before the model read its data -> consent decides;
    erased after, or the model cannot tell -> the non-profiling list, with the reason."""
    assert erasure_decision(None, None, "m") is None
    assert erasure_decision(7, 7, "m") is None and erasure_decision(7, 9, "m") is None
    for seq, seen in ((8, 7), (1, None)):
        decision = erasure_decision(seq, seen, "als-x")
        assert decision is not None and not decision.allowed and decision.reason == ERASED_HISTORY.format(model="als-x")


def test_an_in_process_engine_does_not_profile_the_erased_subject(store: Store, trained) -> None:
    """Hole: an in-process ServingEngine for the recorded version served the erased person a
    personalised list; the unlearned version, judged by the run it came from, must not either."""
    data, run, victim = trained
    assert _serve(store, run.model_version, run.artifact, victim) == "personalized"
    report = erase_subject(store, victim, pack=BASELINE, measure_residual=False, exact=False)
    (step,) = report["unlearning"]
    with store.session() as session:
        assert erasures_seen(session, step["version"]) == erasures_seen(session, run.model_version) is not None
    assert _serve(store, run.model_version, run.artifact, victim) == "non_profiling"
    assert _serve(store, step["version"], step["artifact"], victim) == "non_profiling"
    others = [u for u in data.events["user_id"].astype(str).unique() if u != victim][:3]
    assert {_serve(store, run.model_version, run.artifact, u) for u in others} == {"personalized"}


def test_drop_erased_events_leaves_out_only_the_erased_and_says_up_to_when(store: Store, trained) -> None:
    """Hole: a run without a pack kept every event of an erased subject."""
    data, _run, victim = trained
    erase_subject(store, victim, pack=BASELINE, measure_residual=False, unlearn_recorded=False)
    kept, report = drop_erased_events(data, store)
    n_victim = int((data.events["user_id"].astype(str) == victim).sum())
    assert report["events"]["excluded"]["erased"] == n_victim > 0 and len(kept.events) == len(data.events) - n_victim
    assert victim not in set(kept.events["user_id"].astype(str))
    with store.session() as session:
        assert report[ERASURES_SEEN] >= erasure_seq(session, victim)


def test_an_audit_does_not_fit_its_evaluation_models_on_erased_events(store: Store, trained, recgov_home: Path) -> None:
    """Hole: an audit of an unpurged log refitted the model's recipe on every event in it, the
    erased subject's pre-erasure events included: their data trained (evaluation) models again."""
    from governance.audit import audit_facts

    data, run, victim = trained
    erase_subject(store, victim, pack=BASELINE, measure_residual=False, unlearn_recorded=False)
    facts, _, dataset_version = audit_facts(
        BASELINE, data, store=store, model_version=run.model_version, train=False, baseline=None,
        models_dir=recgov_home / "models", actor=None, show_progress=False,
    )  # fmt: skip
    n_victim = int((data.events["user_id"].astype(str) == victim).sum())
    assert facts.dataset["n_users"] == data.events["user_id"].nunique() - 1
    assert facts.dataset["n_events"] == len(data.events) - n_victim
    assert facts.dataset["erased_events_left_out"] == n_victim
    assert dataset_version == data.content_hash()  # the audit still names the data it was given


@pytest.mark.parametrize("subject", ["personalization", "granted"])
def test_a_subject_whose_id_is_one_of_the_packs_words_can_be_erased(store: Store, subject: str) -> None:
    """Hole: erasing a subject whose id equals a consent purpose or a status failed with 'raw id in the
    result' (the purpose is a key of the result's suppression), shredding nothing. A word of the pack or
    the store is not the person's id; a longer string holding the id is still refused."""
    from audits import record_consent
    from governance.privacy.common import guard, vocabulary_of

    with store.session() as session:
        # The purpose is the pack's word, kept in clear although the subject's id is the same word (a purpose
        # that carries an id outside the pack's vocabulary is refused: tests/audits/test_consent_clear_fields.py).
        purposes = load_pack(resolve_pack("eu-gdpr-dsa")).pack.consent.purposes
        record_consent(session, subject_id=subject, purpose="personalization", status="denied", lawful_basis="consent", source="api", vocabulary=purposes)
        session.commit()
    result = erase_subject(store, subject, pack=BASELINE, measure_residual=False, unlearn_recorded=False)
    assert result["request"]["status"] == "completed"
    with pytest.raises(DataError):
        guard({"path": f"/models/{subject}/x"}, "the result", subject, vocabulary=vocabulary_of(load_pack(resolve_pack("baseline"))))
