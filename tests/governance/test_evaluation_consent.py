"""Offline evaluations under a pack fit models only on what the pack's audit refits on.

``recgov evaluate --families/--ablate --pack`` and ``recgov tradeoff --pack`` fit models on
subjects' events, which is profiling them: under the EU pack (personalization is opt-in, no record
means no) a subject without a consent record is left out before any fit, one with a grant is fitted,
what was left out is counted per reason, and when nobody is left the command refuses (exit 2) and
writes nothing. Without a pack, erasures and refusals are honoured as before. Each model-fitting
entry point is wrapped to see the events it is given.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from governance.audit_inputs import NothingToEvaluate
from recommender.loaders import load_data
from tests.governance.cli_helpers import import_consent, invoke

DATA = "synthetic:n_users=150,n_items=90,n_interactions=5000,seed=6"
EU = "eu-gdpr-dsa"
REFUSED = "no event may be used for the offline evaluation under the pack"


@pytest.fixture(scope="module")
def events() -> Any:
    return load_data(DATA).events.assign(user_id=lambda e: e["user_id"].astype(str))


@pytest.fixture
def fitted(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """The subjects whose events reach each fitting entry point, by its name (filled when it is called)."""
    import governance.ablation as ablation
    import governance.tradeoff_front as front
    import recgov
    import recommender.pipeline as pipeline

    seen: dict[str, set[str]] = {}
    for module, name in ((pipeline, "run_evaluation"), (recgov, "run_evaluation"), (ablation, "run_ablation"), (front, "tradeoff_front")):
        original = getattr(module, name)

        def wrapped(dataset: Any, *args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            seen[_name] = set(dataset.events["user_id"].astype(str))
            return _original(dataset, *args, **kwargs)

        monkeypatch.setattr(module, name, wrapped)
    return seen


COMMANDS = {
    "run_evaluation": ("evaluate", DATA, "--families", "ease", "--pack", EU, "--no-tune", "--no-carbon"),
    "run_ablation": ("evaluate", DATA, "--ablate", "--pack", EU, "--no-tune", "--bootstrap", "100"),
    "tradeoff_front": ("tradeoff", DATA, "--pack", EU, "--grid", "provider_calibration.tradeoff=0,1", "--bootstrap", "100"),
}


def _filter_of(entry: str, doc: dict[str, Any]) -> dict[str, Any]:
    return doc["lineage"]["privacy_filter"] if entry == "tradeoff_front" else doc["privacy_filter"]


@pytest.mark.parametrize("entry", sorted(COMMANDS))
def test_under_the_eu_pack_a_subject_without_a_record_is_not_fitted_and_one_with_a_grant_is(
    entry: str, db_url: str, tmp_path: Any, events: Any, fitted: dict[str, set[str]]
) -> None:
    subjects = sorted(events["user_id"].unique())
    unrecorded = set(subjects[::3])  # a third of the subjects never answered the banner
    granted = import_consent(DATA, tmp_path, database_url=db_url, without=unrecorded, refusals=0, withdrawals=0, gpc=0)
    assert granted and not granted & unrecorded

    result = invoke(*COMMANDS[entry], "--database-url", db_url, "--json")
    assert result.exit_code == 0, result.output
    assert fitted[entry] == granted  # every granted subject is fitted, nobody else
    report = _filter_of(entry, json.loads(result.stdout))
    n_unrecorded = int(events["user_id"].isin(unrecorded).sum())
    assert report["pack"] == EU and report["pack_hash"]
    assert report["events"] == {"total": len(events), "kept": len(events) - n_unrecorded, "excluded": {"no_consent_record": n_unrecorded}}

    table = invoke(*COMMANDS[entry], "--database-url", db_url)
    assert table.exit_code == 0, table.output
    assert f"left out {n_unrecorded:,} of {len(events):,} events under pack {EU}: {n_unrecorded:,} no_consent_record" in table.stdout.replace("\n", " ")


@pytest.mark.parametrize("entry", sorted(COMMANDS))
def test_nobody_with_consent_means_no_fit_exit_2_and_nothing_written(entry: str, db_url: str, tmp_path: Any, fitted: dict[str, set[str]]) -> None:
    out = ("--out", tmp_path / "front") if entry == "tradeoff_front" else ()
    result = invoke(*COMMANDS[entry], "--database-url", db_url, *out, "--json")
    assert result.exit_code == 2, result.output
    assert REFUSED in result.stderr and "5,000 no_consent_record" in result.stderr and "recgov consent" in result.stderr
    [issue] = json.loads(result.stdout)["issues"]  # under --json the error is the one document on stdout
    assert REFUSED in issue["message"] and "5,000 no_consent_record" in issue["message"] and fitted == {}
    assert not (tmp_path / "front").exists()


def test_a_withdrawal_and_an_erasure_are_left_out_too_and_counted_per_reason(db_url: str, tmp_path: Any, events: Any, fitted: dict[str, set[str]]) -> None:
    from audits import open_store, record_consent
    from governance.packs import resolve_pack
    from governance.policy import load_pack
    from governance.privacy import erase_subject

    subjects = sorted(events["user_id"].unique())
    granted = import_consent(DATA, tmp_path, database_url=db_url, refusals=0, withdrawals=0, gpc=0)
    objector, erased = subjects[0], subjects[1]
    store = open_store(db_url)
    try:
        with store.session() as session:
            record_consent(session, subject_id=objector, purpose="personalization", status="withdrawn", lawful_basis="consent", source="api")
        erase_subject(store, erased, pack=load_pack(resolve_pack(EU)), measure_residual=False)
    finally:
        store.close()
    result = invoke(*COMMANDS["run_evaluation"], "--database-url", db_url, "--json")
    assert result.exit_code == 0, result.output
    assert fitted["run_evaluation"] == granted - {objector, erased}
    excluded = json.loads(result.stdout)["privacy_filter"]["events"]["excluded"]
    count = events["user_id"].value_counts()
    # the erasure shredded the erased subject's grant with them: their events go first for want of a record
    assert excluded == {"withdrawn": int(count[objector]), "no_consent_record": int(count[erased])}


def test_without_a_pack_a_subject_without_a_record_is_still_evaluated(db_url: str, fitted: dict[str, set[str]], events: Any) -> None:
    result = invoke("evaluate", DATA, "--families", "ease", "--no-tune", "--no-carbon", "--database-url", db_url, "--json")
    assert result.exit_code == 0, result.output
    assert fitted["run_evaluation"] == set(events["user_id"])  # no pack: erasures and refusals only, as before
    assert "pack_hash" not in json.loads(result.stdout)["privacy_filter"]


def test_the_python_evaluate_applies_the_pack_the_same_way(db_url: str, tmp_path: Any, events: Any, fitted: dict[str, set[str]]) -> None:
    import recgov

    pack = recgov.load_pack(EU)
    data = recgov.load_data(DATA)
    store = recgov.open_store(db_url)
    try:
        with pytest.raises(NothingToEvaluate, match=REFUSED):
            recgov.evaluate(data, tune=False, store=store, pack=pack)
        assert fitted == {}
        with pytest.raises(recgov.ConfigError, match="pass store="):
            recgov.evaluate(data, tune=False, pack=pack)
        unrecorded = set(sorted(events["user_id"].unique())[::2])
        granted = import_consent(DATA, tmp_path, database_url=db_url, without=unrecorded, refusals=0, withdrawals=0, gpc=0)
        recgov.evaluate(data, tune=False, store=store, pack=pack)
        assert fitted["run_evaluation"] == granted
    finally:
        store.close()
