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
    assert params["fairness_reweighting"] == {"attribute": "gender", "side": "consumer", "strength": 1.0, "group_weights": None}
    assert set(params["fairness_weights"]) == set(dataset.users["gender"].astype(str).unique())
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


@pytest.mark.parametrize(
    ("minimization", "message"),
    [
        ("{forbidden_attributes: [gender], audit_only_attributes: []}", "forbidden_attributes"),
        ("{audit_only_attributes: [age_band]}", "is not declared by the pack"),
    ],
)
def test_a_pack_that_forbids_or_does_not_declare_the_attribute_refuses_before_recording(store, dataset, tmp_path, minimization, message):
    pack = parse_pack(
        f"apiVersion: recgov/v1\nmetadata: {{name: p, version: 1.0.0, owner: o}}\nminimization: {minimization}\n", "p.yaml"
    )
    with pytest.raises(ConfigError, match=f"fairness_reweighting.attribute: 'gender' {message}" if "declared" in message else message):
        train_and_record(dataset, store=store, models_dir=tmp_path / "models", params=PARAMS, measure_carbon=False, pack=pack)
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
