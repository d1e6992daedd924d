"""A pack's stochastic logging policy on the serving path: draws only what the governed path allows, records
exact propensities and its seed, reproduces from its record, and leaves packs without it unchanged."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from ruamel.yaml import YAML

from governance.consent.state import ConsentRecord
from governance.policy import PolicyError, load_pack, parse_pack
from governance.serving import ServeRequest, ServingEngine
from recommender.als import ALSRecommender
from recommender.feedback import to_implicit
from recommender.ope import SlatePolicy, position_marginals, sample_slate, slate_probabilities
from recommender.synthetic import SyntheticSpec, generate

GRANTED = (ConsentRecord(purpose="personalization", status="granted", lawful_basis="consent", source="api", time=datetime(2025, 1, 1, tzinfo=UTC)),)


@pytest.fixture(scope="module")
def world():
    data = generate(SyntheticSpec(n_users=200, n_items=150, n_interactions=8000, seed=5, harmful_share=0.05))
    model = ALSRecommender(factors=8, iterations=5).fit(to_implicit(data.events))
    return data, model


def eu_pack(logging_policy: dict[str, Any] | None, **changes: Any):
    yaml = YAML(typ="safe", pure=True)
    with open("policies/eu-gdpr-dsa.yaml") as handle:
        doc = yaml.load(handle)
    if logging_policy is not None:
        doc["logging_policy"] = logging_policy
    doc.update(changes)
    out = io.StringIO()
    yaml.dump(doc, out)
    return parse_pack(out.getvalue(), "eu-logging.yaml")


class Sink:
    def __init__(self) -> None:
        self.records: list[Any] = []

    def submit_and_wait(self, record: Any, timeout: float = 0) -> None:
        self.records.append(record)


def serve(world, pack, user_index: int = 3, k: int = 5, blocked: tuple[str, ...] = (), consent=GRANTED):
    data, model = world
    sink = Sink()
    engine = ServingEngine(pack, model, data.items, sink=sink, blocked=blocked)
    user = str(model.train_.user_ids[user_index])
    served = engine.serve(ServeRequest(user, k=k, consent=consent))
    return engine, served, sink.records[-1]


def test_a_pack_without_a_logging_policy_keeps_its_hash_and_its_records() -> None:
    shipped = load_pack("policies/eu-gdpr-dsa.yaml")
    assert eu_pack(None).content_hash == shipped.content_hash
    assert "logging_policy" not in shipped.pack.model_dump(mode="json")


def test_plackett_luce_draws_from_the_governed_list_and_records_exact_propensities(world) -> None:
    pack = eu_pack({"kind": "plackett_luce", "pool": 8, "temperature": 0.5, "fixed_slots": [1]})
    seen: set[tuple[str, ...]] = set()
    for user in range(12):
        engine, served, record = serve(world, pack, user_index=user, k=4)
        if served.mode != "personalized":
            continue
        log = record.slate["logging"]
        pool = log["pool"]["items"]
        # the pool is the governed list made 8 long: every served item is in it, the fixed slot keeps its item
        governed = engine.personalizer.personalize(engine.model.train_.user_index(str(engine.model.train_.user_ids[user]))[0], 8)
        assert pool == [str(engine._item_ids[i]) for i in governed.items]
        assert served.items == [pool[p] for p in log["positions"]] and served.items[0] == pool[0]
        policy = SlatePolicy.from_dict(log["policy"])
        scores = np.array(log["pool"]["scores"])
        positions = np.array(log["positions"])
        prob, prefix = slate_probabilities(policy, scores, positions)
        assert log["slate_probability"] == pytest.approx(prob) and log["prefix_probabilities"] == pytest.approx(prefix.tolist())
        assert 0 < prob < 1
        assert log["marginals"] is None  # Plackett-Luce marginals: computed exactly from the record off the serving path
        assert position_marginals(policy, scores, 4)[np.arange(4), positions].min() > 0
        # the record reproduces the draw
        again = sample_slate(policy, scores, 4, np.random.Generator(np.random.PCG64(log["seed"])))
        assert again.tolist() == log["positions"]
        # an item not where the governed order put it says it is exploratory
        for j, p in enumerate(log["positions"]):
            kinds = [t["kind"] for t in served.tags[j]]
            assert ("exploration" in kinds) or p == j
        seen.add(tuple(served.items))
    assert len(seen) > 1


def test_a_blocked_item_is_never_drawn(world) -> None:
    data, model = world
    pack = eu_pack({"kind": "plackett_luce", "pool": 10, "temperature": 5.0})
    _, served, record = serve(world, pack, user_index=7, k=5)
    blocked = tuple(record.slate["logging"]["pool"]["items"][:3])
    for _ in range(5):
        _, served, record = serve(world, pack, user_index=7, k=5, blocked=blocked)
        assert not set(served.items) & set(blocked)
        assert not set(record.slate["logging"]["pool"]["items"]) & set(blocked)


def test_epsilon_slots_explore_only_their_slots(world) -> None:
    pack = eu_pack({"kind": "epsilon_slots", "pool": 9, "epsilon": 0.5, "explore_slots": [3, 4]})
    for user in range(8):
        _, served, record = serve(world, pack, user_index=user, k=4)
        if served.mode != "personalized":
            continue
        log = record.slate["logging"]
        assert log["positions"][:2] == [0, 1]
        assert all(p in (j, *range(4, 9)) for j, p in zip((2, 3), log["positions"][2:]))
        expected, replaced = 1.0, 0
        for j, p in zip((2, 3), log["positions"][2:]):
            expected *= 0.5 if p == j else 0.5 / (5 - replaced)  # kept, or one of the 5 beyond the list not yet drawn
            replaced += p != j
        assert log["slate_probability"] == pytest.approx(expected)
        marginals = [0.5 if p == j else 0.5 / 5 for j, p in zip((2, 3), log["positions"][2:])]
        assert log["marginals"] == pytest.approx([1.0, 1.0, *marginals])


def test_a_list_that_is_not_personalized_is_recorded_as_deterministic(world) -> None:
    pack = eu_pack({"kind": "plackett_luce", "pool": 8})
    _, served, record = serve(world, pack, consent=())
    assert served.mode != "personalized"
    assert record.slate["logging"] == {"policy": {"kind": "deterministic"}, "slate_probability": 1.0}


def test_logging_policies_that_could_undo_a_constraint_or_are_inconsistent_are_refused() -> None:
    fair = {"enabled": True, "steps": [{"name": "fair_star", "params": {}}]}
    with pytest.raises(PolicyError, match="fair_star"):
        eu_pack({"kind": "plackett_luce"}, reranking=fair)
    with pytest.raises(PolicyError, match="at most 20"):
        eu_pack({"kind": "plackett_luce", "pool": 30})
    with pytest.raises(PolicyError, match="needs explore_slots"):
        eu_pack({"kind": "epsilon_slots"})
    with pytest.raises(PolicyError, match="distinct 1-based"):
        eu_pack({"kind": "epsilon_slots", "explore_slots": [0]})
    with pytest.raises(PolicyError):
        eu_pack({"kind": "thompson"})


@pytest.mark.parametrize("step", ["group_proportions", "exposure_targets", "amortised_exposure", "exposure_cap"])
def test_every_constraint_step_refuses_a_stochastic_logging_policy(step: str) -> None:
    # A draw permutes the governed list and serves part of it: target proportions per list (group_proportions,
    # exposure_targets), caps and exposure windows would no longer hold for the list served.
    reranking = {"enabled": True, "steps": [{"name": "provider_calibration", "params": {}}, {"name": step, "params": {}}]}
    eu_pack(None, reranking=reranking)  # the steps themselves are a valid pack
    for kind in ({"kind": "plackett_luce", "pool": 15}, {"kind": "epsilon_slots", "explore_slots": [2]}):
        with pytest.raises(PolicyError, match=rf"logging_policy: re-ranking step\(s\) \['{step}'\]"):
            eu_pack(kind, reranking=reranking)


def test_the_constraint_steps_are_every_step_that_states_a_constraint() -> None:
    from governance.policy import CONSTRAINT_RERANKERS
    from governance.rerank import Reranker, registered_rerankers

    stating = {name for name, cls in registered_rerankers().items() if cls.check is not Reranker.check}
    assert set(CONSTRAINT_RERANKERS) == stating
    assert {"fair_star", "exposure_cap", "group_proportions", "amortised_exposure", "exposure_targets"} <= stating


def test_the_published_schema_takes_a_logging_policy_and_refuses_a_bad_one() -> None:
    import json

    import jsonschema

    schema = json.loads(open("schemas/policy-pack.schema.json").read())
    yaml = YAML(typ="safe", pure=True)
    with open("policies/eu-gdpr-dsa.yaml") as handle:
        doc = yaml.load(handle)
    validator = jsonschema.Draft202012Validator(schema)
    doc["logging_policy"] = {"kind": "plackett_luce", "pool": 12, "temperature": 0.5, "fixed_slots": [1]}
    assert not list(validator.iter_errors(doc))
    doc["logging_policy"] = {"kind": "plackett_luce", "temperature": 0}
    assert list(validator.iter_errors(doc))


@pytest.mark.parametrize("fixed", [(), (0,), (1, 3)])
def test_the_serving_draw_is_the_library_draw(fixed: tuple[int, ...]) -> None:
    """The serving path's plain-Python Plackett-Luce draw gives the library's slate and probabilities."""
    import uuid

    from governance.ope_logging import LoggingHook, decision_seed

    hook = LoggingHook("plackett_luce", pool=12, temperature=0.3, fixed=fixed)
    rng = np.random.default_rng(11)
    for _ in range(200):
        scores = np.round(rng.normal(size=12), 6)
        decision_id = str(uuid.uuid4())
        picks, log = hook.draw([f"i{j}" for j in range(12)], scores.tolist(), [[] for _ in range(12)], 6, decision_id)
        policy = SlatePolicy.from_dict(log["policy"])
        expected = sample_slate(policy, scores, 6, np.random.Generator(np.random.PCG64(decision_seed(decision_id))))
        assert picks == expected.tolist() == log["positions"]
        prob, prefix = slate_probabilities(policy, scores, expected)
        assert log["slate_probability"] == pytest.approx(prob, rel=1e-12)
        assert log["prefix_probabilities"] == pytest.approx(prefix.tolist(), rel=1e-12)


def test_the_serving_epsilon_draw_is_the_library_draw() -> None:
    import uuid

    from governance.ope_logging import LoggingHook, decision_seed

    hook = LoggingHook("epsilon_slots", pool=12, epsilon=0.4, explore=(1, 3, 4))
    for _ in range(300):
        decision_id = str(uuid.uuid4())
        scores = np.zeros(12)
        picks, log = hook.draw([f"i{j}" for j in range(12)], scores.tolist(), [[] for _ in range(12)], 6, decision_id)
        policy = SlatePolicy.from_dict(log["policy"])
        expected = sample_slate(policy, scores, 6, np.random.Generator(np.random.PCG64(decision_seed(decision_id))))
        assert picks == expected.tolist() == log["positions"]
        prob, prefix = slate_probabilities(policy, scores, expected)
        assert log["slate_probability"] == pytest.approx(prob, rel=1e-12)
        assert log["prefix_probabilities"] == pytest.approx(prefix.tolist(), rel=1e-12)
        assert log["marginals"] == pytest.approx(position_marginals(policy, scores, 6)[np.arange(6), expected].tolist(), rel=1e-12)


def test_pool_tags_are_the_tags_of_the_whole_list_made_on_reading(world) -> None:
    """A logging policy's governed list tags only what it serves; read whole, its tags are the eager ones exactly,
    and the served list's tags are the eager tags of the drawn items (the exploration tag first on those moved)."""
    import pickle

    from governance.ope_logging import explored
    from governance.serving import PoolTags

    pack = eu_pack({"kind": "plackett_luce", "pool": 12, "temperature": 0.5})
    engine, served, record = serve(world, pack, k=5)
    personalizer = engine.personalizer
    row = int(world[1].train_.user_index(served_subject := str(world[1].train_.user_ids[3]))[0])
    eager = personalizer.personalize(row, 12)
    lazy = personalizer.personalize(row, 12, tag_all=False)
    assert isinstance(lazy.tags, PoolTags) and isinstance(eager.tags, list) and served_subject
    assert list(lazy.tags) == eager.tags and lazy.tags[-1] == eager.tags[-1] and lazy.tags[2:5] == eager.tags[2:5]
    assert list(lazy.items) == list(eager.items) and lazy.scores == eager.scores
    assert list(pickle.loads(pickle.dumps(lazy.tags))) == eager.tags
    picks = record.slate["logging"]["positions"]
    assert served.tags == [eager.tags[i] if i == j else explored(eager.tags[i]) for j, i in enumerate(picks)]


def test_the_seeded_generator_is_numpys_pcg64_of_the_seed() -> None:
    """The serving path's generator (one per thread, put in the seed's state) draws exactly what
    ``Generator(PCG64(seed))`` draws, for the recorded seeds' whole range, in any thread."""
    from concurrent.futures import ThreadPoolExecutor

    from governance.ope_logging import seeded

    seeds = [0, 1, 2, 2**32 - 1, 2**32, 2**52 - 1, *np.random.default_rng(7).integers(0, 2**52, 500).tolist()]

    def check(seed: int) -> bool:
        ours, theirs = seeded(seed), np.random.Generator(np.random.PCG64(seed))
        return ours.bit_generator.state == theirs.bit_generator.state and (ours.gumbel(size=25) == theirs.gumbel(size=25)).all()

    assert all(check(s) for s in seeds)
    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(check, seeds))
