"""The amortised exposure re-ranker: its ledger, its budget, the halving against per-list re-ranking, and its store."""

from __future__ import annotations

import json
import pickle
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sqlalchemy import select

from audits.models import ExposureLedgerRow

from governance.rerank import AmortisedExposureReranker, Candidates, config_from_params
from governance.rerank.base import relevance
from recommender.errors import ConfigError, DataError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

TARGETS = {0: 0.25, 1: 0.25, 2: 0.25, 3: 0.25}


def biased_world(n_users: int = 40, c: int = 40, n_items: int = 400, bias: float = 0.6, seed: int = 0) -> dict:
    """Four provider groups of equal appeal; the model's scores favour group 0 by ``bias`` (the planted bias).
    Each user's relevant items are those of highest true appeal (scores without the bias)."""
    rng = np.random.default_rng(seed)
    group = np.arange(n_items) % 4
    items = np.stack([rng.permutation(n_items)[:c] for _ in range(n_users)]).astype(np.int64)
    appeal = rng.normal(size=(n_users, c))
    scores = appeal + bias * (group[items] == 0)
    order = np.argsort(-scores, axis=1, kind="stable")
    items, scores, appeal = (np.take_along_axis(a, order, axis=1) for a in (items, scores, appeal))
    top = np.argsort(-appeal, axis=1)[:, :5]
    rel_items = np.take_along_axis(items, top, axis=1)
    relevant = sp.csr_matrix((np.ones(rel_items.size), (np.repeat(np.arange(n_users), 5), rel_items.ravel())), shape=(n_users, n_items))
    return {"rows": np.arange(n_users), "items": items, "scores": scores.astype(np.float32), "group": group, "relevant": relevant}


def test_amortised_halves_the_pooled_gap_of_per_list_reranking_at_equal_ndcg():
    from bench_amortised import NDCG_SLACK, compare

    world = biased_world()
    result = compare(
        world, requests=400, k=10, weights=(0.25, 1.0, 5.0), budgets=(0.02, 0.05, 0.1, 0.2), max_ndcg_loss=(0.02,), one_by_one=False
    )
    found = result["matches"][0]
    assert result["plain"]["pooled_gap"] > 0.1  # the planted bias shows
    assert found["amortised"] is not None
    assert found["amortised"]["ndcg"] >= found["per_list"]["ndcg"] - NDCG_SLACK
    assert found["per_list"]["ndcg"] >= result["plain"]["ndcg"] - 0.02
    assert found["amortised"]["pooled_gap"] <= 0.5 * found["per_list"]["pooled_gap"], found


def _cands(world: dict, rows: slice) -> Candidates:
    return Candidates(items=world["items"][rows], scores=world["scores"][rows], item_group=world["group"])


def test_every_list_keeps_its_dcg_budget():
    world = biased_world(n_users=30)
    for budget in (0.02, 0.1, 0.3):
        step = AmortisedExposureReranker(targets=TARGETS, weight=50.0, ndcg_budget=budget, item_weight=1.0)
        cands = _cands(world, slice(None))
        out = step(cands, 10)
        rel = relevance(cands.scores, cands.valid)
        w = 1 / np.log2(np.arange(2, 12))
        for u in range(30):
            lookup = dict(zip(cands.items[u].tolist(), rel[u].tolist()))
            dcg = sum(lookup[i] * wi for i, wi in zip(out.items[u].tolist(), w))
            ideal = np.sort(rel[u])[::-1][:10] @ w
            assert dcg >= (1 - budget) * ideal - 1e-9


def test_debt_is_carried_only_in_amortised_memory_and_lists_follow_the_state():
    world = biased_world(n_users=20)
    a = AmortisedExposureReranker(targets=TARGETS, weight=2.0, ndcg_budget=0.2)
    p = AmortisedExposureReranker(targets=TARGETS, weight=2.0, ndcg_budget=0.2, memory="per_list")
    a(_cands(world, slice(0, 10)), 10)
    p(_cands(world, slice(0, 10)), 10)
    assert (a.ledger.debt != 0).any() and (p.ledger.debt == 0).all()
    assert a.ledger.lists == p.ledger.lists == 10
    # deterministic given the state: a fresh step loaded with the state gives the same next lists
    twin = AmortisedExposureReranker(targets=TARGETS, weight=2.0, ndcg_budget=0.2)
    twin.ledger.load(a.ledger.to_dict())
    assert twin.ledger.digest() == a.ledger.digest()
    nxt = _cands(world, slice(10, 20))
    assert (twin(nxt, 10).items == a(nxt, 10).items).all()
    # and the state matters: a step without the carried debt gives other lists
    assert (AmortisedExposureReranker(targets=TARGETS, weight=2.0, ndcg_budget=0.2)(nxt, 10).items != twin(nxt, 10).items).any()


def test_the_constraint_reports_the_amortised_target_without_changing_the_ledger():
    world = biased_world(n_users=40)
    step = AmortisedExposureReranker(targets=TARGETS, weight=5.0, ndcg_budget=0.3, tolerance=0.05)
    out = step(_cands(world, slice(None)), 10)
    assert step.states_constraint()  # so the share of lists where it held is reported with the others (tradeoff, gate)
    met = out.constraints_met["amortised_exposure"]
    assert met.dtype == bool and met[-10:].all()
    plain = AmortisedExposureReranker(targets=TARGETS, weight=0.0, tolerance=0.05)(_cands(world, slice(None)), 10)
    assert not plain.constraints_met["amortised_exposure"][-10:].any()  # the planted bias: group 0 takes too much
    before = step.ledger.digest()
    step.check(out.items, _cands(world, slice(None)).validate())
    assert step.ledger.digest() == before


@pytest.mark.parametrize(
    "params, where",
    [
        ({"targets": {0: 0.7, 1: 0.5}}, "targets: Value error, the shares must sum to at most 1"),
        ({"targets": {-1: 0.5}}, "must be >= 0"),
        ({"ndcg_budget": 1.5}, "ndcg_budget: Input should be less than or equal to 1"),
        ({"weight": -1}, "weight: Input should be greater than or equal to 0"),
        ({"memory": "forever"}, "memory: Input should be 'amortised' or 'per_list'"),
        ({"max_debt": 0}, "max_debt"),
    ],
)
def test_bad_params_are_refused_with_their_location(params, where):
    with pytest.raises(ConfigError, match=f"invalid params for re-ranker 'amortised_exposure': .*{where}"):
        config_from_params("amortised_exposure", params)


def test_a_stored_state_of_another_version_or_with_non_finite_numbers_is_refused():
    step = AmortisedExposureReranker(targets=TARGETS)
    with pytest.raises(DataError, match="version"):
        step.ledger.load({"version": 99})
    state = step.ledger.to_dict() | {"total": float("nan")}
    with pytest.raises(DataError, match="non-finite"):
        step.ledger.load(state)


# -- the store -------------------------------------------------------------------------------------
def test_ledgers_are_saved_with_a_trail_event_and_loaded_by_a_new_engine(store):
    from audits.exposure_ledgers import STATE_ACTION, load_ledger
    from audits.models import ExposureLedgerRow, TrailEvent
    from governance.exposure_state import ExposureState
    from governance.rerank import build_pipeline

    world = biased_world(n_users=12)
    spec = [{"name": "amortised_exposure", "params": {"targets": TARGETS, "weight": 2.0, "ndcg_budget": 0.2, "item_weight": 0.5}}]
    pipe = build_pipeline(spec)
    state = ExposureState.attach(pipe, store, "pack-a", "model-1", every=5)
    for u in range(7):
        pipe(_cands(world, slice(u, u + 1)), 10)
        state.tick()
    with store.session() as session:
        row = session.get(ExposureLedgerRow, ("pack-a", "amortised_exposure"))
        assert row.lists == 5  # written behind, every 5 lists: 2 not saved yet
        event = session.scalars(select(TrailEvent).where(TrailEvent.action == STATE_ACTION)).one()
        # the state's hash and counts: nothing per item, nothing of a subject
        payload = json.loads(event.payload)
        assert event.subject is None and set(payload) == {"state_hash", "config_key", "lists", "groups", "items_with_debt", "shares"}
        assert set(payload["shares"]) == {"0", "1", "2", "3"} and payload["lists"] == 5
    state.close()
    live = pipe.steps[0].ledger
    with store.session() as session:
        saved, version = load_ledger(session, pack_name="pack-a", step="amortised_exposure")
        assert saved["lists"] == 7 and version == "model-1"
        assert session.get(ExposureLedgerRow, ("pack-a", "amortised_exposure")).state_hash == live.digest()
    # a restart (a new process: no live ledger to share) reads the saved state back
    from governance import exposure_state

    exposure_state._LIVE.clear()
    fresh = build_pipeline(spec)
    ExposureState.attach(fresh, store, "pack-a", "model-1")
    assert fresh.steps[0].ledger.digest() == live.digest()
    # under another model the item debts (catalog rows) are dropped, the group debts kept
    exposure_state._LIVE.clear()
    other = build_pipeline(spec)
    ExposureState.attach(other, store, "pack-a", "model-2")
    assert other.steps[0].ledger.item_debt == {} and np.allclose(other.steps[0].ledger.debt, live.debt)
    exposure_state._LIVE.clear()


def test_a_state_changed_outside_recgov_is_refused(store):
    from audits.exposure_ledgers import load_ledger, save_ledger
    from audits.models import ExposureLedgerRow

    step = AmortisedExposureReranker(targets=TARGETS)
    with store.session() as session:
        save_ledger(session, pack_name="p", step="amortised_exposure", state=step.ledger.to_dict(), counts=step.ledger.counts(), model_version=None)
    with store.session() as session:
        row = session.get(ExposureLedgerRow, ("p", "amortised_exposure"))
        row.state = {**row.state, "lists": 1000}
    with store.session() as session, pytest.raises(DataError, match="does not match its hash"):
        load_ledger(session, pack_name="p", step="amortised_exposure")


# -- the serving engine ------------------------------------------------------------------------------
def test_the_serving_engine_carries_the_ledger_across_requests_and_restarts(store):
    import io

    from ruamel.yaml import YAML

    from governance import exposure_state
    from governance.consent.state import ConsentRecord
    from governance.policy import parse_pack
    from governance.serving import ServeRequest, ServingEngine
    from recommender.als import ALSRecommender
    from recommender.feedback import to_implicit
    from recommender.synthetic import SyntheticSpec, generate

    data = generate(SyntheticSpec(n_users=120, n_items=150, n_interactions=5000, seed=9))
    matrix = to_implicit(data.events)
    model = ALSRecommender(factors=8, iterations=3).fit(matrix)
    yaml = YAML(typ="safe", pure=True)
    doc = yaml.load(open("policies/eu-gdpr-dsa.yaml"))
    doc["reranking"] = {"enabled": True, "steps": [{"name": "amortised_exposure", "params": {"targets": {0: 0.5, 1: 0.5}, "ndcg_budget": 0.2}}]}
    out = io.StringIO()
    yaml.dump(doc, out)
    pack = parse_pack(out.getvalue(), "eu-amortised.yaml")
    granted = (ConsentRecord(purpose="personalization", status="granted", lawful_basis="consent", source="api", time=datetime(2025, 1, 1, tzinfo=UTC)),)
    exposure_state._LIVE.clear()
    try:
        engine = ServingEngine(pack, model, data.items, exposure_store=store)
        assert engine.personalizer.stateful  # made in this process: never in the compute process, never from a list cache
        with pytest.raises(TypeError, match="not copied to another process"):
            pickle.dumps(engine.personalizer)
        engine.exposure_state.every = 5
        for u in range(12):
            assert engine.serve(ServeRequest(str(matrix.user_ids[u]), k=10, consent=granted)).mode == "personalized"
        engine.serve(ServeRequest(str(matrix.user_ids[20]), k=10))  # not profiled: no re-ranking, nothing counted
        ledger = engine.personalizer._pipeline.steps[0].ledger
        assert ledger.lists == 12
        with store.session() as session:
            assert session.get(ExposureLedgerRow, (pack.pack.metadata.name, "amortised_exposure")).lists == 10
        # an engine rebuilt in the same process (new blocks, say) shares the live ledger
        again = ServingEngine(pack, model, data.items, exposure_store=store)
        assert again.personalizer._pipeline.steps[0].ledger is ledger
        engine.close_exposure_state()
        exposure_state._LIVE.clear()  # a restart: a new process
        restarted = ServingEngine(pack, model, data.items, exposure_store=store)
        assert restarted.personalizer._pipeline.steps[0].ledger.digest() == ledger.digest()
    finally:
        exposure_state._LIVE.clear()


@pytest.mark.parametrize("seed", range(6))
def test_the_heads_greedy_makes_the_full_scans_picks(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    world = biased_world(n_users=25, c=int(rng.integers(3, 60)), seed=seed)
    if seed % 2:  # ties in relevance
        world["scores"] = np.round(world["scores"], 1)
    params = {"targets": {0: 0.4, 1: 0.3, 2: 0.2}, "weight": float(rng.uniform(0.1, 5)), "ndcg_budget": float(rng.uniform(0.01, 0.5))}
    k = int(rng.integers(1, 15))
    fast = AmortisedExposureReranker(**params)(_cands(world, slice(None)), k)
    full = AmortisedExposureReranker(**params)
    monkeypatch.setattr(full, "_greedy_heads", lambda rel, g, carried, w, w_full, places: full._greedy(rel, g, carried, w, w_full, places, None))
    assert (full(_cands(world, slice(None)), k).items == fast.items).all()


def test_a_failed_save_is_logged_and_tried_again_serving_goes_on(store, caplog):
    from contextlib import contextmanager

    from governance import exposure_state
    from governance.exposure_state import ExposureState
    from governance.rerank import build_pipeline

    class Refusing:
        """A store whose writes fail until ``ok`` is set."""

        ok = False
        engine = store.engine

        @contextmanager
        def session(self):
            if not self.ok:
                raise ConfigError("the database refused the write")
            with store.session() as session:
                yield session

    flaky = Refusing()
    exposure_state._LIVE.clear()
    try:
        flaky.ok = True
        pipe = build_pipeline([{"name": "amortised_exposure", "params": {"targets": TARGETS}}])
        state = ExposureState.attach(pipe, flaky, "pack-f", None, every=2)
        flaky.ok = False
        world = biased_world(n_users=4)
        for u in range(3):
            pipe(_cands(world, slice(u, u + 1)), 10)
            state.tick()  # never raises
        assert "saving the exposure ledgers of pack pack-f failed (ConfigError)" in caplog.text
        assert pipe.steps[0].ledger.changes == 3  # nothing marked saved
        flaky.ok = True
        pipe(_cands(world, slice(3, 4)), 10)
        state.tick()
        assert pipe.steps[0].ledger.changes == 0
        with store.session() as session:
            assert session.get(ExposureLedgerRow, ("pack-f", "amortised_exposure")).lists == 4
    finally:
        exposure_state._LIVE.clear()


def test_gaps_are_matched_at_equal_ndcg_by_interpolating_each_arms_frontier():
    """Hand-computed: the frontier drops dominated settings, and the gap between two frontier points is linear in NDCG."""
    from bench_amortised import frontier, gap_at, matched

    points = [(0.30, 0.30), (0.29, 0.20), (0.285, 0.25), (0.27, 0.10)]
    assert frontier(points) == [(0.30, 0.30), (0.29, 0.20), (0.27, 0.10)]
    assert gap_at(points, 0.28) == pytest.approx(0.15)  # halfway from (0.29, 0.20) to (0.27, 0.10)
    assert gap_at(points, 0.28, interpolate=False) == 0.20  # the best setting at or above 0.28
    assert gap_at(points, 0.31) is None and gap_at(points, 0.20) == 0.10
    plain = {"ndcg": 0.30, "pooled_gap": 0.30}
    grid = {
        "amortised": [{"ndcg": 0.28, "pooled_gap": 0.02}],
        "per_list": [{"ndcg": 0.28, "pooled_gap": 0.10}],
        "per_list_window": [{"ndcg": 0.29, "pooled_gap": 0.12}],
    }
    row = matched(grid, plain, levels=(0.01,))[0]  # NDCG 0.29
    # amortised: halfway from (0.30, 0.30) to (0.28, 0.02) = 0.16; per-list: the window's measured 0.12
    assert row["interpolated"]["amortised"] == pytest.approx(0.16)
    assert row["interpolated"]["per_list"] == pytest.approx(0.12)
    assert row["interpolated"]["ratio"] == pytest.approx(0.16 / 0.12)
    assert row["measured"]["amortised"] == 0.30  # no amortised setting at or above 0.29 but the plain lists


def test_the_amortised_arm_is_read_at_the_per_list_windows_own_ndcg():
    """Hand-computed: the per-list window at tolerance 0.05 sets the NDCG; the amortised gap is read there."""
    from bench_amortised import at_window

    plain = {"ndcg": 0.30, "pooled_gap": 0.30}
    grid = {
        "amortised": [{"ndcg": 0.28, "pooled_gap": 0.02}, {"ndcg": 0.295, "pooled_gap": 0.2}],
        "per_list_window": [{"tolerance": 0.02, "ndcg": 0.27, "pooled_gap": 0.02}, {"tolerance": 0.05, "ndcg": 0.29, "pooled_gap": 0.04}],
    }
    found = at_window(grid, plain)
    assert found["ndcg_loss_points"] == pytest.approx(1.0) and found["per_list_gap"] == 0.04
    # interpolated halfway from (0.295, 0.2) at the level 0.29 toward (0.28, 0.02): 0.2 + (0.005/0.015) * (0.02 - 0.2) = 0.14
    assert found["interpolated"]["amortised_gap"] == pytest.approx(0.14)
    assert found["interpolated"]["ratio"] == pytest.approx(3.5)
    assert found["measured"]["amortised_gap"] == 0.2  # the best setting at or above NDCG 0.29
    assert at_window({"amortised": [], "per_list_window": []}, plain) is None


def test_amortised_halves_the_interpolated_gap_two_points_of_ndcg_down():
    from bench_amortised import compare

    world = biased_world()
    result = compare(
        world, requests=400, k=10, weights=(0.25, 1.0, 5.0), budgets=(0.02, 0.05, 0.1, 0.2), max_ndcg_loss=(0.02,),
        one_by_one=False, tolerances=(0.02, 0.05, 0.1, 0.2),
    )  # fmt: skip
    two_points = next(m for m in result["matched"] if m["ndcg_loss_points"] == pytest.approx(2.0))
    assert two_points["interpolated"]["ratio"] is not None and two_points["interpolated"]["ratio"] <= 0.5, two_points
    # against the per-list re-ranker that holds every list within 5 points, at that re-ranker's own NDCG
    window = result["at_window"]
    assert window is not None and window["measured"]["ratio"] is not None and window["measured"]["ratio"] <= 0.5, window


# -- lists never shown, and ledgers of another configuration -------------------------------------------
def test_unserved_lists_are_made_on_the_ledger_but_add_nothing_to_it():
    from governance.rerank import build_pipeline
    from governance.rerank.amortised import unserved_lists

    world = biased_world(n_users=8)
    spec = [{"name": "amortised_exposure", "params": {"targets": TARGETS, "weight": 2.0, "ndcg_budget": 0.2}}]
    pipe, twin = build_pipeline(spec), build_pipeline(spec)
    for u in range(4):  # both carry the same debt
        pipe(_cands(world, slice(u, u + 1)), 10)
        twin(_cands(world, slice(u, u + 1)), 10)
    before = pipe.steps[0].ledger.digest()
    with unserved_lists():
        shadow = pipe(_cands(world, slice(4, 8)), 10)
    assert pipe.steps[0].ledger.digest() == before and pipe.steps[0].ledger.lists == 4
    # the shadow lists are the lists the served pipeline would have made from the same state
    served = twin(_cands(world, slice(4, 8)), 10)
    assert np.array_equal(shadow.items, served.items)
    assert twin.steps[0].ledger.lists == 8


def test_a_shadow_engines_lists_leave_the_production_ledger_untouched(store):
    from governance import exposure_state
    from governance.serving import ServeRequest

    pack, model, matrix, data, granted = _amortised_serving_world()
    from governance.serving import ServingEngine

    exposure_state._LIVE.clear()
    try:
        production = ServingEngine(pack, model, data.items, exposure_store=store)
        shadow = ServingEngine(pack, model, data.items, exposure_store=store)  # the shadow deployment's engine
        ledger = production.personalizer._pipeline.steps[0].ledger
        assert shadow.personalizer._pipeline.steps[0].ledger is ledger  # one live ledger per pack and step
        for u in range(3):
            production.serve(ServeRequest(str(matrix.user_ids[u]), k=10, consent=granted))
        digest = ledger.digest()
        for u in range(3, 9):
            assert shadow.serve(ServeRequest(str(matrix.user_ids[u]), k=10, consent=granted), shadow_of="d-1").mode == "personalized"
        assert ledger.lists == 3 and ledger.digest() == digest
        production.serve(ServeRequest(str(matrix.user_ids[9]), k=10, consent=granted))
        assert ledger.lists == 4
    finally:
        exposure_state._LIVE.clear()


def _amortised_serving_world(codes: dict | None = None, targets: dict | None = None):
    import io

    from ruamel.yaml import YAML

    from governance.consent.state import ConsentRecord
    from governance.policy import parse_pack
    from recommender.als import ALSRecommender
    from recommender.feedback import to_implicit
    from recommender.synthetic import SyntheticSpec, generate

    data = generate(SyntheticSpec(n_users=60, n_items=100, n_interactions=2500, seed=9))
    matrix = to_implicit(data.events)
    model = ALSRecommender(factors=8, iterations=2).fit(matrix)
    yaml = YAML(typ="safe", pure=True)
    doc = yaml.load(open("policies/eu-gdpr-dsa.yaml"))
    doc["reranking"] = {"enabled": True, "steps": [{"name": "amortised_exposure", "params": {"targets": targets or {0: 0.5, 1: 0.5}, "ndcg_budget": 0.2}}]}
    if codes is not None:
        doc["fairness"]["provider_group_codes"] = codes
    out = io.StringIO()
    yaml.dump(doc, out)
    granted = (ConsentRecord(purpose="personalization", status="granted", lawful_basis="consent", source="api", time=datetime(2025, 1, 1, tzinfo=UTC)),)
    return parse_pack(out.getvalue(), "eu-amortised.yaml"), model, matrix, data, granted


def _attached(store, pack, spec):
    from governance.exposure_state import ExposureState
    from governance.rerank import build_pipeline

    pipe = build_pipeline(spec)
    return pipe, ExposureState.attach(pipe, store, "pack-v", "model-1", pack=pack)


def test_a_ledger_saved_under_other_group_codes_or_targets_is_reset_on_the_trail(store):
    from audits.exposure_ledgers import RESET_ACTION
    from audits.models import TrailEvent
    from governance import exposure_state
    from governance.policy import parse_pack

    head = "apiVersion: recgov/v1\nmetadata: {name: pack-v, version: VERSION, owner: tests}\n"
    v1 = parse_pack(head.replace("VERSION", "1.0.0") + "fairness: {provider_group_codes: {major: 0, independent: 1, regional: 2}}\n", "v1.yaml").pack
    v1b = parse_pack(head.replace("VERSION", "1.0.1") + "fairness: {provider_group_codes: {major: 0, independent: 1, regional: 2}}\n", "v1b.yaml").pack
    v2 = parse_pack(head.replace("VERSION", "2.0.0") + "fairness: {provider_group_codes: {major: 0, independent: 1, self_published: 2}}\n", "v2.yaml").pack
    world = biased_world(n_users=6)
    spec = [{"name": "amortised_exposure", "params": {"targets": TARGETS, "weight": 2.0, "ndcg_budget": 0.2}}]
    exposure_state._LIVE.clear()
    try:
        pipe, state = _attached(store, v1, spec)
        for u in range(6):
            pipe(_cands(world, slice(u, u + 1)), 10)
        state.close()
        saved = pipe.steps[0].ledger.digest()
        exposure_state._LIVE.clear()  # a restart
        same, _ = _attached(store, v1b, spec)  # another version, the same codes and targets: the debt carries on
        assert same.steps[0].ledger.digest() == saved
        exposure_state._LIVE.clear()
        remapped, state2 = _attached(store, v2, spec)  # code 2 now names another group: the old debt is not its debt
        assert remapped.steps[0].ledger.lists == 0 and not remapped.steps[0].ledger.debt.any()
        with store.session() as session:
            events = session.scalars(select(TrailEvent).where(TrailEvent.action == RESET_ACTION)).all()
            assert len(events) == 1
            payload = json.loads(events[0].payload)
            assert payload["previous_lists"] == 6 and payload["reason"] == "configuration changed"
            assert payload["config_key"] == state2.key("amortised_exposure") != payload["previous_config_key"]
            assert session.get(ExposureLedgerRow, ("pack-v", "amortised_exposure")) is None
        exposure_state._LIVE.clear()
        # other targets under the same codes: reset as well
        pipe, state = _attached(store, v1, spec)
        pipe(_cands(world, slice(0, 3)), 10)
        state.close()
        exposure_state._LIVE.clear()
        other = [{"name": "amortised_exposure", "params": {"targets": {0: 0.1, 1: 0.3, 2: 0.3, 3: 0.3}, "weight": 2.0, "ndcg_budget": 0.2}}]
        retargeted, _ = _attached(store, v1, other)
        assert retargeted.steps[0].ledger.lists == 0
        # within a process too: an engine of the remapped pack does not share the live ledger of the old one
        live, _ = _attached(store, v1, spec)
        again, _ = _attached(store, v2, spec)
        assert live.steps[0].ledger is not again.steps[0].ledger
    finally:
        exposure_state._LIVE.clear()


def test_a_ledger_saved_before_keys_were_recorded_is_reset(store):
    from audits.exposure_ledgers import RESET_ACTION, load_ledger, save_ledger
    from audits.models import TrailEvent

    step = AmortisedExposureReranker(targets=TARGETS)
    with store.session() as session:
        save_ledger(session, pack_name="p", step="amortised_exposure", state=step.ledger.to_dict(), counts=step.ledger.counts(), model_version=None)
    with store.session() as session:
        assert load_ledger(session, pack_name="p", step="amortised_exposure", key="k" * 64) is None
    with store.session() as session:
        event = session.scalars(select(TrailEvent).where(TrailEvent.action == RESET_ACTION)).one()
        assert json.loads(event.payload)["reason"] == "saved without a configuration key"
