"""Fairness-reweighted training is governed like any training run: consent filter, lineage, model inputs.

The reweighting is recorded with the run (its configuration and the per-group
multipliers), the model's inputs stay the allow-listed event columns, a pack
that forbids the attribute (or does not declare it for audits) refuses the run
before anything is recorded, and the CLI's ``--fair-reweight`` gives located,
one-line errors.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from audits import TrainingRun
from governance.cli import app
from governance.policy import load_pack, parse_pack
from governance.training import train_and_record
from recommender.errors import ConfigError
from recommender.feedback import MODEL_INPUT_COLUMNS
from recommender.synthetic import SyntheticSpec, generate

PARAMS = {"factors": 8, "iterations": 4, "fairness_reweighting": {"attribute": "gender", "strength": 1.0}}
SMALL = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=2"
runner = CliRunner()
NOW = datetime(2024, 7, 1, tzinfo=UTC)  # the synthetic log's end: every event within retention


@pytest.fixture(scope="module")
def dataset():
    return generate(SyntheticSpec(n_users=300, n_items=200, n_interactions=12_000, seed=2))


def _runs(store) -> list[TrainingRun]:
    with store.session() as session:
        return list(session.scalars(select(TrainingRun)))


def test_a_reweighted_run_records_its_weights_under_the_packs_consent_filter(store, dataset, tmp_path: Path):
    pack = load_pack("policies/california-ccpa.yaml")  # opt-out consent: the filter runs and keeps the events
    run = train_and_record(dataset, store=store, models_dir=tmp_path, params=PARAMS, measure_carbon=False, pack=pack, now=NOW)
    (recorded,) = _runs(store)
    params = recorded.params
    minimum = pack.pack.fairness.min_group_size  # the pack's: groups under it are left at weight 1
    assert params["fairness_reweighting"] == {"attribute": "gender", "side": "consumer", "strength": 1.0, "group_weights": None, "min_group_size": minimum}
    sizes = dataset.users["gender"].astype(str).value_counts()
    assert set(params["fairness_weights"]) == {g for g, n in sizes.items() if n >= minimum}
    assert params["fairness_weights"] == pytest.approx(run.result.model.fairness_weights_)
    assert params["model_inputs"] == list(MODEL_INPUT_COLUMNS) and "gender" not in params["model_inputs"]
    assert params["privacy_filter"]["pack"]  # the consent filter ran, as for any training run
    doc = run.to_dict()
    assert doc["model_inputs"] == list(MODEL_INPUT_COLUMNS)
    plain = train_and_record(dataset, store=store, models_dir=tmp_path, params={"factors": 8, "iterations": 4}, measure_carbon=False, pack=pack, now=NOW)
    assert plain.model_version != run.model_version
    assert "fairness_weights" not in _runs(store)[-1].params
    # an audit of the recorded version refits the reweighted recipe, not a plain one
    from governance.audit_inputs import recorded_model

    recipe, _, _ = recorded_model(store, run.model_version)
    assert recipe["fairness_reweighting"]["attribute"] == "gender"
    assert "fairness_reweighting" not in recorded_model(store, plain.model_version)[0]
    # and a retrain after an erasure (the way to forget for a reweighted model) keeps the reweighting
    from governance.privacy.retrains import training_recipe

    with store.session() as session:
        assert training_recipe(session, run.model_version)["params"]["fairness_reweighting"]["attribute"] == "gender"
        assert "fairness_reweighting" not in training_recipe(session, plain.model_version)["params"]


# explicit group weights shape the model whatever the strength (ALS applies them at strength 0 too)
WEIGHTS_AT_ZERO = {"factors": 8, "iterations": 4, "fairness_reweighting": {"attribute": "gender", "strength": 0.0, "group_weights": {"F": 0.2, "M": 5.0}}}


@pytest.mark.parametrize(
    ("minimization", "message", "params"),
    [
        ("{forbidden_attributes: [gender], audit_only_attributes: []}", "forbidden_attributes", PARAMS),
        ("{audit_only_attributes: [age_band]}", "is not declared by the pack", PARAMS),
        ("{forbidden_attributes: [gender], audit_only_attributes: []}", "forbidden_attributes", WEIGHTS_AT_ZERO),
        ("{audit_only_attributes: [age_band]}", "is not declared by the pack", WEIGHTS_AT_ZERO),
    ],
)
def test_a_pack_that_forbids_or_does_not_declare_the_attribute_refuses_before_recording(store, dataset, tmp_path, minimization, message, params):
    pack = parse_pack(
        f"apiVersion: recgov/v1\nmetadata: {{name: p, version: 1.0.0, owner: o}}\nminimization: {minimization}\n", "p.yaml"
    )
    with pytest.raises(ConfigError, match=f"fairness_reweighting.attribute: 'gender' {message}" if "declared" in message else message):
        train_and_record(dataset, store=store, models_dir=tmp_path / "models", params=params, measure_carbon=False, pack=pack)
    assert _runs(store) == []
    assert not (tmp_path / "models").exists()


def test_cli_fair_reweight_trains_and_records(recgov_home: Path):
    base = ["train", SMALL, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--json"]
    doc = json.loads(runner.invoke(app, [*base, "--fair-reweight", "gender:0.5"], catch_exceptions=False).stdout)
    assert doc["params"]["fairness_reweighting"]["strength"] == 0.5
    assert doc["model_inputs"] == list(MODEL_INPUT_COLUMNS)
    plain = json.loads(runner.invoke(app, base, catch_exceptions=False).stdout)
    assert plain["model_version"] != doc["model_version"]
    provider = json.loads(runner.invoke(app, [*base, "--fair-reweight", "provider:provider_group:0.25"], catch_exceptions=False).stdout)
    assert provider["params"]["fairness_reweighting"] == {"attribute": "provider_group", "side": "provider", "strength": 0.25, "group_weights": None}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fair-reweight", "gender:-1"], "--fair-reweight.strength"),
        (["--fair-reweight", "gender:x"], "--fair-reweight: the strength after ':' must be a number"),
        (["--fair-reweight", "religion"], "no column 'religion'"),
        (["--fair-reweight", "gender", "--pack", "baseline"], "'gender' is not declared by the pack"),
        (["--fair-reweight", "gender", "--engine", "spark"], "only the inprocess engine"),
    ],
)
def test_cli_bad_fair_reweight_is_one_line_and_exit_2(recgov_home: Path, extra: list[str], message: str):
    result = runner.invoke(app, ["train", SMALL, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", *extra])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output + result.stderr


# -- the pack's training.fairness ------------------------------------------------------------
PACK_HEAD = "apiVersion: recgov/v1\nmetadata: {name: p, version: 1.0.0, owner: o}\nminimization: {audit_only_attributes: [gender]}\n"
TRAINING = "training:\n  fairness: {attribute: gender, strength: 0.5}\n"


def test_a_pack_declares_in_training_fairness_and_packs_without_it_keep_their_hash():
    plain = parse_pack(PACK_HEAD, "p.yaml")
    declared = parse_pack(PACK_HEAD + TRAINING, "p.yaml")
    assert "training" not in plain.pack.model_dump(mode="json")  # absent: left out, so the hash is the one it had
    assert plain.pack.training_reweighting() is None
    assert declared.content_hash != plain.content_hash
    got = declared.pack.training_reweighting()
    assert (got.attribute, got.side, got.strength) == ("gender", "consumer", 0.5)
    for shipped in ("baseline", "eu-gdpr-dsa", "california-ccpa"):
        assert "training" not in load_pack(f"policies/{shipped}.yaml").pack.model_dump(mode="json")


@pytest.mark.parametrize(
    ("section", "path", "words"),
    [
        ("training:\n  fairness: {attribute: gender, strength: -1}\n", "training.fairness.strength", "greater than or equal to 0"),
        ("training:\n  fairness: {attribute: gender, strenght: 1}\n", "training.fairness.strenght", "unknown key"),
        ("training:\n  fairness: {attribute: gender, side: both}\n", "training.fairness.side", "'consumer' or 'provider'"),
        ("training:\n  fairness: {attribute: gender, group_weights: {F: 0}}\n", "training.fairness.group_weights", "finite number > 0"),
        ("training:\n  fairness: {attribute: age_band}\n", "training.fairness.attribute", "'age_band' is not declared by the pack"),
        ("minimization: {forbidden_attributes: [gender]}\ntraining:\n  fairness: {attribute: gender}\n", "training.fairness.attribute", "forbidden_attributes"),
        (
            "minimization: {forbidden_attributes: [gender]}\ntraining:\n  fairness: {attribute: gender, strength: 0, group_weights: {F: 0.2, M: 5}}\n",
            "training.fairness.attribute",
            "forbidden_attributes",
        ),
        ("training:\n  fairness: {attribute: age_band, strength: 0, group_weights: {a: 2}}\n", "training.fairness.attribute", "'age_band' is not declared by the pack"),
    ],
)
def test_a_bad_training_section_is_a_located_error(section, path, words):
    from governance.policy import PolicyError

    head = PACK_HEAD if "minimization" not in section else PACK_HEAD.replace("minimization: {audit_only_attributes: [gender]}\n", "")
    with pytest.raises(PolicyError) as info:
        parse_pack(head + section, "p.yaml")
    (issue,) = info.value.issues
    assert issue.path == path and words in issue.message and issue.line == head.count("\n") + section.count("\n")


def test_a_governed_run_under_the_pack_applies_its_reweighting_and_refuses_another(store, dataset, tmp_path: Path):
    # a pack with consent rules (its filter runs), plus the training section
    pack = parse_pack(Path("policies/california-ccpa.yaml").read_text() + TRAINING, "p.yaml")
    run = train_and_record(dataset, store=store, models_dir=tmp_path, params={"factors": 8, "iterations": 4}, measure_carbon=False, pack=pack, now=NOW)
    (recorded,) = _runs(store)
    assert recorded.params["fairness_reweighting"] == {"attribute": "gender", "side": "consumer", "strength": 0.5, "group_weights": None, "min_group_size": pack.pack.fairness.min_group_size}
    assert run.result.model.fairness_reweighting["strength"] == 0.5
    # the same model as the explicit parameter gives: the pack's section is that parameter, nothing else
    explicit = train_and_record(dataset, store=store, models_dir=tmp_path, params={"factors": 8, "iterations": 4, "fairness_reweighting": "gender:0.5"}, measure_carbon=False, pack=pack, now=NOW)
    assert explicit.model_version == run.model_version
    with pytest.raises(ConfigError, match="differs from the pack's training.fairness"):
        train_and_record(dataset, store=store, models_dir=tmp_path / "other", params={"fairness_reweighting": "gender:1"}, measure_carbon=False, pack=pack, now=NOW)
    assert not (tmp_path / "other").exists() and len(_runs(store)) == 2


def test_cli_train_under_a_pack_with_training_fairness_applies_it(recgov_home: Path, tmp_path: Path):
    pack_file = tmp_path / "p.yaml"
    pack_file.write_text(PACK_HEAD + TRAINING)
    base = ["train", SMALL, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--pack", str(pack_file)]
    doc = json.loads(runner.invoke(app, [*base, "--json"], catch_exceptions=False).stdout)
    assert doc["params"]["fairness_reweighting"]["strength"] == 0.5
    clash = runner.invoke(app, [*base, "--fair-reweight", "gender:1"])
    assert clash.exit_code == 2 and "--fair-reweight" in clash.stderr and "training.fairness" in clash.stderr
    spark = runner.invoke(app, [*base, "--engine", "spark"])
    assert spark.exit_code == 2 and "only the inprocess engine" in spark.stderr


def test_a_group_under_the_packs_minimum_is_left_at_one_and_its_multiplier_not_recorded(store, dataset, tmp_path: Path):
    import dataclasses

    users = dataset.users.copy()
    lone = users.index[0]
    users["gender"] = users["gender"].astype("string")
    users.loc[lone, "gender"] = "Z"  # one person alone in a group
    alone = dataclasses.replace(dataset, users=users)
    pack = load_pack("policies/california-ccpa.yaml")
    run = train_and_record(alone, store=store, models_dir=tmp_path, params=PARAMS, measure_carbon=False, pack=pack, now=NOW)
    params = _runs(store)[-1].params
    minimum = pack.pack.fairness.min_group_size
    assert params["fairness_reweighting"]["min_group_size"] == minimum
    assert "Z" not in params["fairness_weights"] and "Z" not in run.result.model.fairness_weights_
    assert params["fairness_unweighted"]["Z"] == f"under min_group_size {minimum}: left at weight 1 (its multiplier is not recorded)"
    assert all("left at weight 1" in why for why in params["fairness_unweighted"].values())
    # the audit's side-by-side comparison applies the same rule
    from governance.training import with_pack_minimum
    from recommender.fair_training import parse_fair_reweighting

    assert with_pack_minimum(parse_fair_reweighting(PARAMS["fairness_reweighting"]), pack).min_group_size == minimum


def test_cli_fair_reweight_under_a_pack_takes_its_minimum(recgov_home: Path):
    base = ["train", SMALL, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--json"]
    doc = json.loads(runner.invoke(app, [*base, "--fair-reweight", "gender:0.5", "--pack", "california-ccpa", "--as-of", "2024-07-01"], catch_exceptions=False).stdout)
    assert doc["params"]["fairness_reweighting"]["min_group_size"] == load_pack("policies/california-ccpa.yaml").pack.fairness.min_group_size
