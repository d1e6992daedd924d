"""The accuracy-fairness front over a grid of the pack's re-ranking parameters, and its paired statistics.

Every figure is cross-checked against an independent computation: NDCG against
``recgov evaluate``'s own evaluation of the same fit, the exposure gap against
:func:`recommender.fairness.provider_exposure`, the bootstrap interval against
``scipy.stats.bootstrap``, the detectable group size against statsmodels' power
solver and a simulation.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from governance.policy import load_pack, parse_pack
from governance.tradeoff_front import (
    default_grid,
    detectable_group_size,
    exposure_gap_of,
    paired_bootstrap,
    pareto_front,
    parse_grid,
    tradeoff_front,
    user_exposure_shares,
)
from recommender.errors import ConfigError
from recommender.synthetic import SyntheticSpec, generate
from tests.governance.cli_helpers import import_consent, invoke

EU = "policies/eu-gdpr-dsa.yaml"
SMALL = "synthetic:n_users=300,n_items=200,n_interactions=9000,seed=3"
HEAD = """apiVersion: recgov/v1
metadata: {name: front, version: 1.0.0, owner: tests}
fairness:
  audit_attributes: [gender]
  provider_attribute: provider_group
  protected_provider_group: independent
"""


def pack_with(*steps: str) -> object:
    body = "reranking:\n  enabled: true\n  candidates: 40\n  steps:\n" + "".join(f"    - {s}\n" for s in steps)
    return parse_pack(HEAD + body, "front.yaml").pack


@pytest.fixture(scope="module")
def data():
    return generate(SyntheticSpec(n_users=300, n_items=200, n_interactions=9000, exposure_bias=3.0, seed=3))


# -- the grid ------------------------------------------------------------------------------------
def test_the_default_grid_adds_the_packs_own_value():
    grid = default_grid(pack_with("{name: fair_star, params: {p: 0.55}}", "{name: exposure_cap, params: {max_share: 0.6}}"))
    assert 0.55 in grid["fair_star.p"] and 0.1 in grid["fair_star.p"]
    assert grid["exposure_cap.max_share"][0] == 0.3 and 0.6 in grid["exposure_cap.max_share"]


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("mmr.tradeoff=0.1", "unknown step 'mmr'; the pack's steps are: fair_star"),
        ("fair_star.q=0.1", "step 'fair_star' (fair_star) has no parameter 'q'"),
        ("fair_star.p=", "gives no value"),
        ("fair_star=0.3", "give step.param=v1,v2"),
    ],
)
def test_a_bad_grid_is_a_located_error(spec, needle):
    with pytest.raises(ConfigError, match="--grid") as err:
        parse_grid([spec], pack_with("{name: fair_star, params: {p: 0.5}}"))
    assert needle in str(err.value)


def test_a_value_a_step_refuses_names_its_grid_point(data):
    pack = pack_with("{name: fair_star, params: {p: 0.5}}")
    with pytest.raises(ConfigError, match=r"grid point \{'fair_star.p': 1.5\}: invalid params for re-ranker 'fair_star'"):
        tradeoff_front(data, pack, grid=parse_grid(["fair_star.p=0.5,1.5"], pack))


def test_a_pack_without_reranking_has_no_front(data):
    pack = parse_pack(HEAD, "front.yaml").pack
    with pytest.raises(ConfigError, match="does not enable re-ranking"):
        parse_grid([], pack)
    with pytest.raises(ConfigError, match="does not enable re-ranking"):
        tradeoff_front(data, pack)


def test_an_empty_grid_is_refused(data):
    pack = pack_with("{name: fair_star, params: {p: 0.5}}")
    with pytest.raises(ConfigError, match="the grid is empty"):
        tradeoff_front(data, pack, grid={})


# -- the front -----------------------------------------------------------------------------------
def test_pareto_front_by_hand():
    acc = np.array([0.30, 0.20, 0.25, 0.10, 0.30, np.nan])
    gap = np.array([0.50, 0.10, 0.30, 0.20, 0.60, 0.0])
    # 3 is dominated by 1 (more accurate, smaller gap); 4 by 0 (same accuracy, larger gap); NaN never on it
    assert pareto_front(acc, gap).tolist() == [True, True, True, False, False, False]


def test_the_front_reuses_one_fit_and_agrees_with_the_evaluation(data):
    from governance.ablation import DEFAULT_ALS
    from recommender.feedback import FeedbackConfig
    from recommender.pipeline import run_evaluation
    from recommender.split import SplitConfig

    pack = pack_with("{name: exposure_cap, params: {max_share: 0.6}}")
    result = tradeoff_front(data, pack, grid={"exposure_cap.max_share": [0.4, 0.6, 1.0]}, n_boot=200)
    ids = [p["id"] for p in result["points"]]
    assert ids == [0, 1, 2, "plain"] and result["chosen"] == 1 and result["points"][1]["chosen"]
    by = {p["id"]: p for p in result["points"]}
    # a cap of 1.0 never binds: exactly the plain lists
    assert by[2]["ndcg"]["mean"] == by["plain"]["ndcg"]["mean"]
    assert by[2]["provider_exposure_gap"]["mean"] == by["plain"]["provider_exposure_gap"]["mean"]
    # the plain point is the ALS model recgov evaluate fits with the same parameters on the same split
    q = parse_pack(HEAD, "x.yaml").pack.quality
    run = run_evaluation(
        data, split_config=SplitConfig(kind=q.split, test_fraction=q.test_fraction, random_state=0),
        feedback=FeedbackConfig(rating_threshold=q.rating_threshold), k=q.k, tune=False, als_params=DEFAULT_ALS, random_state=0,
    )  # fmt: skip
    assert by["plain"]["ndcg"]["mean"] == pytest.approx(run.comparison.evaluations["als"].metrics["ndcg"], abs=1e-12)
    # the front is read off the figures: a point is on it iff no other point dominates it
    acc = np.array([by[i]["ndcg"]["mean"] for i in range(3)])
    gap = np.array([by[i]["provider_exposure_gap"]["mean"] for i in range(3)])
    assert [by[i]["on_front"]["provider_exposure_gap"] for i in range(3)] == pareto_front(acc, gap).tolist()
    assert "consumer_gap:gender" in result["objectives"]
    assert result["comparisons"][0]["a"] == "plain" and result["comparisons"][0]["b"] == result["chosen"]
    assert result["lineage"]["seeds"][0]["train_hash"]


def test_the_packs_setting_off_the_grid_is_added(data):
    pack = pack_with("{name: exposure_cap, params: {max_share: 0.65}}")
    result = tradeoff_front(data, pack, grid={"exposure_cap.max_share": [0.5, 1.0]}, n_boot=200)
    chosen = result["points"][result["chosen"]]
    assert chosen["setting"] == {"exposure_cap.max_share": 0.65} and result["chosen"] == 2


def test_seeds_give_a_spread(data):
    pack = pack_with("{name: exposure_cap, params: {max_share: 0.6}}")
    result = tradeoff_front(data, pack, grid={"exposure_cap.max_share": [0.6]}, seeds=[0, 1], n_boot=200)
    nd = result["points"][0]["ndcg"]
    assert len(nd["by_seed"]) == 2 and nd["by_seed"][0] != nd["by_seed"][1]
    assert nd["mean"] == pytest.approx(np.mean(nd["by_seed"])) and nd["sd"] == pytest.approx(np.std(nd["by_seed"], ddof=1))
    assert {c["seed"] for c in result["comparisons"]} == {0, 1}


def test_group_proportions_targets_take_the_protected_share(data):
    pack = pack_with("{name: group_proportions, params: {targets: {0: 0.6, 1: 0.4}}}")
    grid = default_grid(pack)
    assert 0.4 in grid["group_proportions.targets"]
    result = tradeoff_front(data, pack, grid={"group_proportions.targets": [0.2, 0.4]}, n_boot=200)
    assert result["chosen"] == 1
    assert result["points"][0]["steps"][0]["params"]["targets"] == {0: pytest.approx(0.8), 1: 0.2}


# -- figures cross-checked -----------------------------------------------------------------------
def test_exposure_gap_matches_provider_exposure():
    from recommender.fairness import provider_exposure

    rng = np.random.default_rng(1)
    n, n_items, k = 60, 30, 5
    lists = np.stack([rng.permutation(n_items)[:k] for _ in range(n)])
    lists[0, 3:] = -1
    rel = sp.random(n, n_items, density=0.15, random_state=2, format="csr")
    rel.data[:] = 1.0
    rel = rel.tolil()
    rel[5, 2] = 1
    rel = rel.tocsr()
    names = np.array(["a", "b", "c"])[rng.integers(0, 3, n_items)]
    codes = np.searchsorted(np.unique(names), names)
    shares = user_exposure_shares(lists, codes, rel, 3)
    keep = ~np.isnan(shares[:, 0])
    mine = float(exposure_gap_of(shares[keep].mean(axis=0)))
    report = provider_exposure(lists, names, rel, attention="log", n_boot=20)
    expected = max(abs(r - 1) for r in report.exposure_ratio.values())
    assert mine == pytest.approx(expected, rel=1e-12)


def test_the_paired_bootstrap_interval_agrees_with_scipy():
    rng = np.random.default_rng(7)
    a = rng.binomial(1, 0.3, 800) * rng.random(800)
    b = np.clip(a + rng.normal(-0.01, 0.05, 800), 0, 1)
    mine = paired_bootstrap(a, b, n_boot=9999, seed=3)["ndcg"]
    ref = stats.bootstrap((a, b), lambda x, y, axis=-1: (y - x).mean(axis=axis), paired=True, vectorized=True,
                          n_resamples=9999, method="percentile", random_state=11).confidence_interval  # fmt: skip
    width = ref.high - ref.low
    assert mine["difference"] == pytest.approx((b - a).mean())
    assert abs(mine["interval"][0] - ref.low) < 0.05 * width
    assert abs(mine["interval"][1] - ref.high) < 0.05 * width


def test_the_paired_gap_difference_is_the_difference_of_gaps():
    rng = np.random.default_rng(2)
    n = 200
    sa = np.column_stack([p := rng.random(n), 1 - p, q := rng.random(n), 1 - q])
    sb = np.column_stack([p2 := np.clip(p + 0.1, 0, 1), 1 - p2, q, 1 - q])
    out = paired_bootstrap(np.zeros(n), np.zeros(n), sa, sb, n_boot=500)["exposure_gap"]
    assert out["a"] == pytest.approx(float(exposure_gap_of(sa.mean(axis=0))))
    assert out["difference"] == pytest.approx(out["b"] - out["a"])
    assert out["interval"][0] <= out["difference"] <= out["interval"][1]


def test_detectable_group_size_against_statsmodels_and_simulation():
    from statsmodels.stats.power import NormalIndPower

    rng = np.random.default_rng(0)
    rest = rng.normal(0, 1, 200_000)
    group = rng.normal(0, 1, 50)
    need = detectable_group_size(group, rest, 0.3)
    # with a huge rest, the group alone carries the variance: n = ((z_a + z_b) s / gap)^2
    ref = NormalIndPower().solve_power(effect_size=0.3 / group.std(ddof=1), alpha=0.05, power=0.8, ratio=len(rest) / need)
    assert need == pytest.approx(ref, rel=0.02)
    # simulated: a group of that size detects the gap about 80% of the time
    # (the group drawn with its observed spread, the rest's mean drawn from its sampling distribution)
    s_g, n_r, n_g = group.std(ddof=1), len(rest), int(need)
    g = rng.normal(0.3, s_g, (2000, n_g))
    rest_mean = rng.normal(0.0, 1.0 / math.sqrt(n_r), 2000)
    z = (g.mean(axis=1) - rest_mean) / np.sqrt(g.var(axis=1, ddof=1) / n_g + 1.0 / n_r)
    assert 0.76 < np.mean(np.abs(z) > 1.96) < 0.84
    assert math.isinf(detectable_group_size(group, rng.normal(0, 1, 30), 0.3))


# -- the command -----------------------------------------------------------------------------------
def test_the_command_draws_the_front_fast(tmp_path):
    import_consent(SMALL, tmp_path)  # the fits see only consented subjects under the pack: no record means no
    started = time.perf_counter()
    result = invoke("tradeoff", SMALL, "--pack", EU, "--grid", "provider_calibration.tradeoff=0,0.35,0.7,1",
                    "--seeds", "0,1", "--bootstrap", "200", "--out", tmp_path / "front", "--json")  # fmt: skip
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [p["setting"]["provider_calibration.tradeoff"] for p in doc["points"][:-1]] == [0, 0.35, 0.7, 1]
    assert doc["points"][2]["chosen"] and doc["points"][-1]["id"] == "plain"
    assert set(doc["objectives"]) == {"provider_exposure_gap", "consumer_gap:gender", "consumer_gap:age_band"}
    saved = json.loads((tmp_path / "front" / "tradeoff.json").read_text())
    assert saved["points"] == doc["points"]
    assert (tmp_path / "front" / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (tmp_path / "front" / "tradeoff.svg").read_bytes()[:400]
    assert elapsed < 60


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--pack", EU, "--grid", "fair_star.p=0.3"], "unknown step 'fair_star'"),
        (["--pack", EU, "--grid", "provider_calibration.beta=0.3"], "has no parameter 'beta'"),
        (["--pack", EU, "--grid", "provider_calibration.tradeoff="], "gives no value"),
        (["--pack", "policies/baseline.yaml"], "does not enable re-ranking"),
        (["--pack", EU, "--seeds", "a"], "--seeds must be"),
        (["--pack", EU, "--grid", "provider_calibration.tradeoff=0,2"], "grid point {'provider_calibration.tradeoff': 2}"),
        (["--pack", EU, "--compare", "0"], "--compare takes two grid point ids"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, needle):
    result = invoke("tradeoff", SMALL, *args, "--out", tmp_path / "front")
    assert result.exit_code == 2
    assert needle in result.output.replace("\n", " ")
    assert not (tmp_path / "front").exists()


# -- on the trail and in the regulator's report --------------------------------------------------
def test_a_recorded_front_is_on_the_trail_and_in_the_report(db_url, tmp_path, monkeypatch):
    import hashlib

    from audits import open_store
    from governance.report import collect, render_html
    from governance.report.tradeoff_section import ACTION, tradeoff_evidence

    monkeypatch.setenv("RECGOV_HOME", str(tmp_path / "home"))
    trained = invoke("train", SMALL, "--no-tune", "--no-carbon", "--factors", "8", "--iterations", "4", "--json", "--database-url", db_url)
    assert trained.exit_code == 0, trained.output
    model = json.loads(trained.stdout)["model_version"]
    import_consent(SMALL, tmp_path, database_url=db_url)
    unknown = invoke("tradeoff", SMALL, "--pack", EU, "--record", "no-such-model", "--database-url", db_url, "--out", tmp_path / "x")
    assert unknown.exit_code == 2 and "no-such-model" in unknown.output and not (tmp_path / "x").exists()
    result = invoke("tradeoff", SMALL, "--pack", EU, "--grid", "provider_calibration.tradeoff=0,0.7,1", "--bootstrap", "200",
                    "--record", model, "--database-url", db_url, "--out", tmp_path / "front", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    store = open_store(db_url)
    try:
        with store.session() as session:
            fronts = tradeoff_evidence(session, model)
            assert len(fronts) == 1 and fronts[0]["seq"] == doc["trail_seq"]
            assert tradeoff_evidence(session, "another-model") == []
            document = collect(session, model, None)
    finally:
        store.close()
    front = fronts[0]
    saved = json.loads((tmp_path / "front" / "tradeoff.json").read_text())
    canonical = json.dumps(saved, sort_keys=True, separators=(",", ":"), allow_nan=False)
    assert front["result_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert [p["id"] for p in front["points"]] == [0, 1, 2, "plain"] and front["chosen"] == 1
    assert document["tradeoff"][0]["seq"] == doc["trail_seq"]
    html = render_html(document)
    assert 'id="tradeoff"' in html and f'data-tradeoff="{doc["trail_seq"]}"' in html
    assert 'data-point="1"' in html and "data-point=\"plain\"" in html and "(the pack" in html
    assert ACTION == "tradeoff.front_drawn"


def test_without_provider_groups_only_the_consumer_gaps_are_objectives(data):
    import dataclasses

    pack = pack_with("{name: mmr, params: {tradeoff: 0.3}}")
    result = tradeoff_front(dataclasses.replace(data, items=None), pack, grid={"mmr.tradeoff": [0.0, 0.3]}, n_boot=200)
    assert result["objectives"] == ["consumer_gap:gender"]
    assert "exposure_gap" not in result["comparisons"][0]
    bare = dataclasses.replace(data, items=None, users=None)
    with pytest.raises(ConfigError, match="no fairness objective can be measured"):
        tradeoff_front(bare, pack, grid={"mmr.tradeoff": [0.0, 0.3]}, n_boot=200)


def test_the_events_of_an_erased_subject_are_left_out(tmp_path, recgov_home):
    from audits import open_store, record_consent
    from governance.privacy import erase_subject
    from recommender.loaders import load_data, write_movielens_100k

    data_dir = write_movielens_100k(
        generate(SyntheticSpec(n_users=150, n_items=90, n_interactions=4000, seed=5, event_mix={"rating": 1.0})), tmp_path / "ml"
    )
    events = load_data(data_dir).events
    victim = str(events["user_id"].astype(str).value_counts().index[0])
    n_victim = int((events["user_id"].astype(str) == victim).sum())
    import_consent(data_dir, tmp_path, refusals=0, withdrawals=0, gpc=0)  # everyone granted
    store = open_store()
    try:
        with store.session() as session:  # a grant given after the data's last event, which outlives the erasure
            record_consent(session, subject_id=victim, purpose="personalization", status="granted", lawful_basis="consent", source="api")
        erase_subject(store, victim, pack=load_pack(EU), measure_residual=False)
    finally:
        store.close()
    result = invoke("tradeoff", data_dir, "--pack", EU, "--grid", "provider_calibration.tradeoff=0,1", "--bootstrap", "100", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert sum(doc["lineage"]["privacy_filter"]["events"]["excluded"].values()) == n_victim
    assert doc["lineage"]["dataset"]["n_events"] == len(events) - n_victim
    assert f"\"{victim}\"" not in result.stdout  # no identifier in the output (counts only)


def test_the_bootstrap_in_blocks_agrees_with_the_bootstrap_at_once(monkeypatch):
    import governance.tradeoff_front as front

    rng = np.random.default_rng(4)
    a, b = rng.random(300), rng.random(300)
    sa = np.column_stack([p := rng.random(300), 1 - p, q := rng.random(300), 1 - q])
    sb = np.column_stack([1 - p, p, q, 1 - q])
    whole = paired_bootstrap(a, b, sa, sb, n_boot=4000, seed=1)
    monkeypatch.setattr(front, "_BOOT_CELLS", 300 * 7)  # blocks of 7 draws
    blocks = paired_bootstrap(a, b, sa, sb, n_boot=4000, seed=1)
    for figure in ("ndcg", "exposure_gap"):
        assert blocks[figure]["difference"] == whole[figure]["difference"]
        width = whole[figure]["interval"][1] - whole[figure]["interval"][0]
        assert np.allclose(blocks[figure]["interval"], whole[figure]["interval"], atol=0.06 * width)


def test_the_packs_bins_and_intersections_are_the_consumer_groups(data):
    head = HEAD.replace("  audit_attributes: [gender]\n", "  audit_attributes: [gender, age_band]\n  intersections: [[gender, age_band]]\n")
    pack = parse_pack(head + "reranking:\n  enabled: true\n  candidates: 40\n  steps:\n    - {name: mmr, params: {tradeoff: 0.3}}\n", "f.yaml").pack
    result = tradeoff_front(data, pack, grid={"mmr.tradeoff": [0.3]}, n_boot=100)
    groups = {g["attribute"] for g in result["group_power"]["groups"]}
    assert {"gender", "age_band", "gender_x_age_band"} <= groups


def test_a_group_whose_value_is_unknown_is_judged_and_the_users_without_the_attribute_are_not():
    """The front left out of its consumer gaps every group named 'unknown' (the label missing values were given):
    a real group of that name was never judged, although the audit judges it; missing labels are what is left out."""
    from governance.tradeoff_front import _consumer_gaps

    labels = np.array(["a"] * 40 + ["unknown"] * 40 + [None] * 40, dtype=object)
    ndcg = np.r_[np.full(40, 0.5), np.full(40, 0.1), np.full(40, 0.9)]
    assert _consumer_gaps(ndcg, {"g": labels}, 30) == {"g": pytest.approx(0.4)}  # a vs unknown; the missing left out
    assert _consumer_gaps(ndcg, {"g": np.where(labels == "unknown", None, labels)}, 30) == {"g": None}  # one group left
