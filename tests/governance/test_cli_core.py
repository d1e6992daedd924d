"""The core commands through the public CLI: exit codes, JSON on stdout, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from governance.cli import app
from recommender.loaders import write_movielens_100k
from recommender.synthetic import SyntheticSpec, generate

runner = CliRunner()
SMALL = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=2"


@pytest.fixture(scope="module")
def ml_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny directory in the MovieLens-100K layout, written by the project itself."""
    data = generate(SyntheticSpec(n_users=200, n_items=150, n_interactions=8000, seed=5, event_mix={"rating": 1.0}))
    return write_movielens_100k(data, tmp_path_factory.mktemp("ml") / "ml-100k")


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_evaluate_reports_every_model_under_the_same_split(ml_dir: Path) -> None:
    result = invoke("evaluate", str(ml_dir), "--json", "--split", "random", "--test-fraction", "0.2", "--trials", "5", "--k", "10")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc["models"]) == {"als", "item_knn", "popularity", "random"}
    hashes = {m["test_hash"] for m in doc["models"].values()}
    assert len(hashes) == 1, "every model must be evaluated on the same test positives"
    assert doc["split"]["kind"] == "random" and doc["split"]["test_fraction"] == 0.2
    assert doc["tuning"]["als"]["n_trials"] >= 5
    for model in doc["models"].values():
        assert 0 <= model["metrics"]["ndcg"] <= 1
    assert doc["lift"]["popularity"]["popularity"]["ndcg"] == pytest.approx(1.0)


def test_evaluate_table_for_people(ml_dir: Path) -> None:
    result = invoke("evaluate", str(ml_dir), "--no-tune", "--split", "time")
    assert result.exit_code == 0
    assert "ndcg@10" in result.stdout and "lift vs popularity" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "/no/such/dir"], "no such file or directory"),
        (["evaluate", SMALL, "--test-fraction", "1.5"], "--test-fraction must be a number in the range (0, 1). Got 1.5 instead."),
        (["evaluate", "synthetic:n_users=-3"], "invalid synthetic spec: n_users"),
        (["evaluate", "synthetic:nonsense"], "is not of the form name=value"),
        (["evaluate", "synthetic:group_provider_affinity=X"], "group_provider_affinity: 'X' is not of the form name:number"),
        (["evaluate", "synthetic:group_provider_affinity=X:many"], "invalid synthetic spec: group_provider_affinity.X"),
        (["evaluate", "synthetic:group_provider_affinity=Q:2"], "group_provider_affinity names group(s) ['Q']"),
        (["data", "validate", "x.csv", "--map", "user=uid"], "--map: unknown field(s) user"),
        (["train", SMALL, "--country", "France"], "--country must be an ISO 3166-1 alpha-3 code"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_broken_movielens_file_exits_2_naming_the_file(tmp_path: Path) -> None:
    d = tmp_path / "ml"
    d.mkdir()
    (d / "u.data").write_text("1,2,5,881250949\n")
    result = runner.invoke(app, ["evaluate", str(d)])
    assert result.exit_code == 2
    assert f"{d / 'u.data'} line 1: expected 4 tab-separated fields" in result.stderr


def test_usage_errors_exit_2() -> None:
    result = runner.invoke(app, ["evaluate", SMALL, "--split", "sideways"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["evaluate", SMALL, "--k", "0"])
    assert result.exit_code == 2


@pytest.mark.parametrize(
    "args",
    [
        ["evaluate", SMALL, "--no-tune"],
        ["batch", SMALL, "--pack", "eu-gdpr-dsa", "--out", "never-written"],
        ["online-store", "warm", "--model", "als-none", "--pack", "eu-gdpr-dsa"],
    ],
)
def test_a_list_longer_than_any_pack_allows_is_a_usage_error(args: list[str], tmp_path: Path) -> None:
    """Regression: `evaluate --k 1000000000000` allocated users x k and died with a MemoryError traceback."""
    from governance.policy import MAX_LIST_LENGTH

    result = runner.invoke(app, [*args, "--k", str(10**12)])
    assert result.exit_code == 2, result.output
    assert f"less than or equal to {MAX_LIST_LENGTH}" in result.output
    assert "Traceback" not in result.output and not Path("never-written").exists()


def test_validate_finds_planted_dirt_and_strict_exits_1(tmp_path: Path) -> None:
    dirty = SMALL + ",duplicate_rate=0.05,missing_id_rate=0.01"
    result = invoke("data", "validate", dirty, "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    codes = {f["code"] for f in doc["findings"]}
    assert {"duplicate_events", "missing_user_id"} <= codes or {"duplicate_events", "missing_item_id"} <= codes
    strict = runner.invoke(app, ["data", "validate", dirty, "--strict"])
    assert strict.exit_code == 1
    clean = runner.invoke(app, ["data", "validate", SMALL, "--strict"])
    assert clean.exit_code == 0, clean.output


def test_train_records_lineage_and_the_same_data_gives_the_same_version(recgov_home: Path) -> None:
    first = invoke("train", SMALL, "--no-tune", "--no-carbon", "--factors", "8", "--iterations", "3", "--json")
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert doc["model_version"].startswith("als-")
    assert Path(doc["artifact"]).exists()
    assert doc["model_inputs"] == ["user_id", "item_id", "event_type", "value"]
    second = json.loads(invoke("train", SMALL, "--no-tune", "--no-carbon", "--factors", "8", "--iterations", "3", "--json").stdout)
    assert second["model_version"] == doc["model_version"]
    lineage = invoke("lineage", doc["model_version"], "--json")
    assert lineage.exit_code == 0, lineage.output
    assert doc["dataset_version"] in lineage.stdout


def test_train_under_a_pack_leaves_out_who_may_not_be_profiled(recgov_home: Path) -> None:
    """Withdrawal and objection take effect at the next training run; retention counts from --as-of."""
    base = ["train", SMALL, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--json", "--as-of", "2024-07-01"]
    opt_out = json.loads(invoke(*base, "--pack", "california-ccpa").stdout)
    assert opt_out["privacy_filter"]["events"]["excluded"]["objected"] == 0
    everyone = opt_out["privacy_filter"]["events"]["kept"]
    assert invoke("consent", "set", "u000007", "--purpose", "personalization", "--status", "objected", "--basis", "legitimate_interest").exit_code == 0
    after = json.loads(invoke(*base, "--pack", "california-ccpa").stdout)["privacy_filter"]
    assert after["events"]["excluded"]["objected"] > 0
    assert after["events"]["kept"] == everyone - after["events"]["excluded"]["objected"]
    assert after["subjects"]["excluded"]["objected"] == 1
    # opt-in consent: nobody has granted, so nothing may be trained on
    refused = runner.invoke(app, [*base, "--pack", "eu-gdpr-dsa"])
    assert refused.exit_code == 2
    assert "no event may be used for training under the pack" in refused.stderr and "no_consent_record" in refused.stderr
    assert runner.invoke(app, [*base[:-2], "--as-of", "soon"]).exit_code == 2


def test_train_under_a_pack_without_consent_rules_trains_as_its_audit_does(recgov_home: Path) -> None:
    """The baseline pack lists no consent purpose: every event but erased subjects' is kept, not a refusal."""
    base = ["train", SMALL, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--json"]
    doc = json.loads(invoke(*base, "--pack", "baseline").stdout)
    plain = json.loads(invoke(*base).stdout)
    assert doc["privacy_filter"]["events"] == plain["privacy_filter"]["events"]
    assert doc["privacy_filter"]["events"]["kept"] == doc["privacy_filter"]["events"]["total"] > 0
    erased = invoke("subject", "erase", "u000003", "--pack", "baseline")
    assert erased.exit_code == 0, erased.output
    after = json.loads(invoke(*base, "--pack", "baseline").stdout)["privacy_filter"]["events"]
    assert after["excluded"]["erased"] > 0 and after["kept"] == doc["privacy_filter"]["events"]["kept"] - after["excluded"]["erased"]
