"""Ablation effects: hand-computed cases for the paired effects, and ``recgov evaluate --ablate`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from governance.cli import app
from recommender import metrics as M
from recommender.ablation import METRICS, _gini_rows, paired_effects
from recommender.data import InteractionMatrix
from recommender.errors import ConfigError
from tests.governance.cli_helpers import import_consent

DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"


def _world() -> tuple[InteractionMatrix, sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 30
    train = sp.random(n_users, n_items, density=0.2, random_state=1, format="csr")
    train.data[:] = 1.0
    relevant = sp.csr_matrix((np.ones(n_users), (np.arange(n_users), rng.integers(20, 30, n_users))), shape=(n_users, n_items))
    return InteractionMatrix(train, np.array([f"u{i}" for i in range(n_users)]), np.array([f"i{j}" for j in range(n_items)])), relevant, np.arange(n_users)


def test_effects_are_full_minus_without_by_hand_and_an_identical_variant_has_none() -> None:
    train, relevant, rows = _world()
    hit_col = relevant.indices  # each user's one test positive
    full = np.column_stack([hit_col, np.tile(np.arange(4), (len(rows), 1))])  # the positive first, then 4 others
    miss = np.tile(np.arange(5), (len(rows), 1))  # no positive (the positives are items 20..29)
    result = paired_effects({"full": ("full", "", full), "same": ("model", "", full.copy()), "worse": ("model", "", miss)}, relevant, train, rows, n_bootstrap=200)
    # by hand: the positive at rank 1 gives ndcg 1 and recall 1; the miss gives 0
    assert result.full["ndcg"] == pytest.approx(1.0) and result.full["recall"] == pytest.approx(1.0)
    worse = result.components["worse"]["effect"]
    assert worse["ndcg"]["value"] == pytest.approx(1.0) and worse["ndcg"]["ci_low"] == pytest.approx(1.0) and worse["ndcg"]["significant"]
    assert worse["exposure_gini"]["value"] == pytest.approx(M.exposure_gini(full, 30) - M.exposure_gini(miss, 30))
    for metric in METRICS:
        same = result.components["same"]["effect"][metric]
        assert same["value"] == 0 and same["ci_low"] == 0 and same["ci_high"] == 0 and not same["significant"], metric


def test_the_paired_interval_is_the_spread_of_the_difference_and_gini_per_resample_is_the_library_s() -> None:
    train, relevant, rows = _world()
    rng = np.random.default_rng(3)
    full = np.stack([rng.permutation(30)[:5] for _ in rows])
    other = full.copy()
    other[::2, 0] = relevant.indices[::2]  # half the users get their positive at rank 1 in the variant only
    result = paired_effects({"full": ("full", "", full), "v": ("model", "", other)}, relevant, train, rows, n_bootstrap=400, seed=5)
    per_full = np.nan_to_num(M.ndcg_at_k(full, relevant))
    per_other = np.nan_to_num(M.ndcg_at_k(other, relevant))
    diff = per_full - per_other
    effect = result.components["v"]["effect"]["ndcg"]
    assert effect["value"] == pytest.approx(diff.mean())
    idx = np.random.default_rng(5).integers(0, len(rows), size=(400, len(rows)))  # the same resamples, recomputed here
    assert effect["ci_low"] == pytest.approx(np.quantile(diff[idx].mean(axis=1), 0.025))
    assert _gini_rows(full, np.arange(len(rows))[None, :], 30)[0] == pytest.approx(M.exposure_gini(full, 30))
    with pytest.raises(ConfigError, match="'full'"):
        paired_effects({"v": ("model", "", other)}, relevant, train, rows)
    with pytest.raises(ConfigError, match="n_bootstrap"):
        paired_effects({"full": ("full", "", full)}, relevant, train, rows, n_bootstrap=0)


def test_evaluate_ablate_reports_every_component_as_json_and_a_table(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RECGOV_HOME", str(tmp_path))
    import_consent(DATA, tmp_path)  # under the pack the fits see only consented subjects: no record means no
    runner = CliRunner()
    args = ["evaluate", DATA, "--no-tune", "--ablate", "--bootstrap", "100", "--pack", "eu-gdpr-dsa"]
    done = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    names = set(report["components"])
    assert {"als.regularization", "als.confidence_weighting"} <= names
    assert {n for n in names if n.startswith("event_type.")} == {"event_type.view", "event_type.click", "event_type.add_to_cart", "event_type.purchase", "event_type.rating"}
    assert any(n.startswith("reranker.1.") for n in names) and report["reranking"]
    for comp in report["components"].values():
        for metric in METRICS:
            e = comp["effect"][metric]
            assert e["value"] == pytest.approx(report["full"][metric] - comp["without"][metric])
            assert e["ci_low"] <= e["ci_high"]
    table = runner.invoke(app, args, catch_exceptions=False)
    assert table.exit_code == 0 and "als.regularization" in table.stdout and "paired bootstrap" in table.stdout
    bad = runner.invoke(app, ["evaluate", DATA, "--no-tune", "--pack", "eu-gdpr-dsa"])
    assert bad.exit_code == 2 and "--ablate" in bad.output
    assert runner.invoke(app, [*args[:-2], "--bootstrap", "0"]).exit_code == 2
