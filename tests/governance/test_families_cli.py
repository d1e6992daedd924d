"""Model families through the CLI and under a pack: ``recgov evaluate --families``, ``recgov models families``,
and the minimisation allow-list that gates a family's inputs before a fit."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import recommender.family as family_registry
from governance.cli import app
from governance.family_inputs import check_family_inputs, family_input_verdict
from governance.packs import resolve_pack
from governance.policy import load_pack
from recommender.errors import ConfigError
from recommender.families.ease import EASEModel
from recommender.family import ErasureKind, Family, families
from tests.governance.cli_helpers import import_consent

runner = CliRunner()
SMALL = "synthetic:n_users=200,n_items=120,n_interactions=6000,seed=3"


def _probe(name: str, inputs: set[str]) -> Family:
    """A family reading ``inputs`` (built as EASE: what it reads is all that matters here)."""
    return Family(name=name, build=EASEModel, description="probe", inputs=frozenset(inputs), erasure=ErasureKind.exact)


@pytest.fixture(scope="module")
def eu():
    return load_pack(resolve_pack("eu-gdpr-dsa"))


def test_evaluate_families_reports_every_family_with_full_tags():
    result = runner.invoke(app, ["evaluate", SMALL, "--families", "ease,user_knn", "--no-tune", "--no-carbon", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc["families"]) == {"ease", "user_knn", "popularity", "random"} == set(doc["models"])
    assert len({m["test_hash"] for m in doc["models"].values()}) == 1
    for name, fam in doc["families"].items():
        assert fam["tags"]["share_tagged"] == 1.0, name
        assert fam["tags"]["served_items"] > 0
        assert fam["ndcg"] == pytest.approx(doc["models"][name]["metrics"]["ndcg"])
        assert fam["fit_seconds"] >= 0 and fam["carbon"] is None
        assert fam["erasure"] == families()[name].erasure.value
        assert fam["version_id"].startswith(name + "-")
    assert doc["families"]["user_knn"]["tags"]["tag_kinds"].keys() <= {"similar_users", "no_neighbour_signal", "popularity_fallback"}


def test_evaluate_families_tunes_each_family_on_validation_and_records_the_search():
    result = runner.invoke(app, ["evaluate", SMALL, "--families", "ease,pure_svd,user_knn", "--no-carbon", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    for name in ("ease", "pure_svd", "user_knn"):
        search = doc["tuning"][name]
        assert search["n_trials"] == len(search["trials"]) > 1
        scored = [t["ndcg"] for t in search["trials"] if t["ndcg"] is not None]
        assert search["best_score"] == pytest.approx(max(scored), abs=1e-6)
        chosen = doc["families"][name]["params"]
        assert all(chosen[key] == value for key, value in search["best_params"].items()), name
    # 120 items: PureSVD's 128 factors cannot be fitted; the search says so instead of failing the run
    skipped = [t for t in doc["tuning"]["pure_svd"]["trials"] if t["ndcg"] is None]
    assert [t["params"]["factors"] for t in skipped] == [128] and "factors" in skipped[0]["skipped"]


def test_evaluate_families_measures_each_fit_with_codecarbon():
    result = runner.invoke(app, ["evaluate", SMALL, "--families", "popularity", "--no-tune", "--json", "--country", "DEU"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    for fam in doc["families"].values():
        carbon = fam["carbon"]
        assert carbon["country_iso_code"] == "DEU"
        assert carbon["energy_kwh"] >= 0 and carbon["emissions_kg"] >= 0 and carbon["method"]


def test_evaluate_without_families_is_unchanged():
    result = runner.invoke(app, ["evaluate", SMALL, "--no-tune", "--json"], catch_exceptions=False)
    doc = json.loads(result.stdout)
    assert "families" not in doc
    assert set(doc["models"]) == {"als", "item_knn", "popularity", "random"}


def test_evaluate_families_table():
    result = runner.invoke(app, ["evaluate", SMALL, "--families", "pure_svd", "--no-tune", "--no-carbon"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "model families" in result.stdout and "pure_svd" in result.stdout and "1.000" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--families", "ease,nope"], "--families: unknown model family 'nope'; the families are: als, bpr, "),
        (["--families", " , "], "--families: give 'all' or family names separated by commas"),
        (["--families", "ease", "--ablate"], "--families and --ablate are separate runs"),
        (["--families", "ease", "--country", "France"], "--country must be an ISO 3166-1 alpha-3 code"),
        (["--pack", "eu-gdpr-dsa"], "--pack is for --ablate"),
    ],
)
def test_bad_families_input_is_one_located_line_and_exit_2(args, message):
    result = runner.invoke(app, ["evaluate", SMALL, "--no-tune", "--no-carbon", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_models_families_lists_inputs_erasure_and_availability():
    result = runner.invoke(app, ["models", "families", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    by_name = {f["name"]: f for f in doc["families"]}
    assert set(by_name) == set(families())
    assert by_name["ease"]["erasure"] == "exact" and by_name["bpr"]["erasure"] == "retrain" and by_name["als"]["erasure"] == "exact"
    assert all(f["available"] and f["inputs"] for f in doc["families"])
    table = runner.invoke(app, ["models", "families"], catch_exceptions=False)
    assert "user_knn" in table.stdout and "retrain" in table.stdout


# -- minimisation ---------------------------------------------------------------------------------------------


def test_interactions_are_allowed_by_every_shipped_pack():
    """A family reading the interactions (with their times and sessions) trains under every shipped pack; item
    metadata (a two-tower model's categories, a content model's text) is each pack's call, and the shipped packs
    do not allow it."""
    for name in ("baseline", "eu-gdpr-dsa", "california-ccpa"):
        pack = load_pack(resolve_pack(name))
        for family in families().values():
            if family.inputs <= {"interactions", "timestamp", "session_id"}:
                check_family_inputs(family, pack)
            else:  # the shipped packs allow interaction fields only: a family reading item content is refused
                with pytest.raises(ConfigError, match="not on the personalization allow-list"):
                    check_family_inputs(family, pack)


def test_an_input_off_the_allow_list_is_refused_with_the_pack_line(eu):
    with pytest.raises(ConfigError) as info:
        check_family_inputs(_probe("text_probe", {"interactions", "item_text"}), eu)
    message = str(info.value)
    assert message.startswith("minimization.purposes.personalization.allowed_inputs (")
    assert "eu-gdpr-dsa.yaml:36:" in message
    assert "reads item_text, not on the personalization allow-list" in message


def test_user_attributes_reach_a_model_only_where_the_pack_allows(eu):
    reader = _probe("attr_probe", {"interactions", "user_attributes"})
    verdict = family_input_verdict(reader, eu, user_attributes=["gender", "occupation"])
    assert not verdict["ok"] and verdict["not_allowed"] == ["user_attributes"] and verdict["banned_attributes"] == ["gender"]
    allowing = eu.pack.model_copy(deep=True)
    allowing.minimization.purposes["personalization"].allowed_inputs.append("user_attributes")
    check_family_inputs(reader, allowing, user_attributes=["occupation"])
    with pytest.raises(ConfigError, match="forbidden or audit-only attribute\\(s\\) gender"):
        check_family_inputs(reader, allowing, user_attributes=["occupation", "gender"])
    naming = eu.pack.model_copy(deep=True)
    naming.minimization.purposes["personalization"].allowed_inputs.append("occupation")
    check_family_inputs(reader, naming, user_attributes=["occupation"])


def test_a_pack_without_an_allow_list_lets_through_interactions_only(eu):
    bare = eu.pack.model_copy(deep=True)
    bare.minimization.purposes.clear()
    check_family_inputs(families()["ease"], bare)
    with pytest.raises(ConfigError, match="lists no allowed inputs for 'personalization'"):
        check_family_inputs(_probe("session_probe", {"interactions", "session_id"}), bare)


def test_evaluate_refuses_a_family_the_pack_does_not_allow_before_any_fit(monkeypatch, tmp_path):
    probe = _probe("attr_probe", {"interactions", "user_attributes"})
    family_registry.families()  # discover first, so the probe joins a full registry
    fitted = []
    # Only these patches are undone after (the test's private RECGOV_HOME stays: a later step must never write
    # into the user's own store).
    with monkeypatch.context() as patch:
        patch.setitem(family_registry._FAMILIES, "attr_probe", probe)
        patch.setattr(EASEModel, "_fit", lambda self, *a, **k: fitted.append(1))
        result = runner.invoke(app, ["evaluate", SMALL, "--families", "attr_probe", "--pack", "eu-gdpr-dsa", "--no-tune", "--no-carbon"])
    assert result.exit_code == 2, result.output
    assert "minimization.purposes.personalization.allowed_inputs" in result.stderr and "'attr_probe'" in result.stderr
    assert fitted == []
    import_consent(SMALL, tmp_path)  # under the pack only consented subjects are fitted: no record means no
    ok = runner.invoke(app, ["evaluate", SMALL, "--families", "ease", "--pack", "eu-gdpr-dsa", "--no-tune", "--no-carbon", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["pack"] == "eu-gdpr-dsa"
