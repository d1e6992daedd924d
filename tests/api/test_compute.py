"""The API's compute process: the lists it makes are the server's, and a process that fails changes no answer."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from governance.api import compute as compute_module
from governance.api.compute import ComputeProcess
from governance.policy import load_pack
from governance.serving import Personalizer, ServingEngine
from recommender.als import ALSRecommender
from recommender.feedback import to_implicit
from recommender.synthetic import SyntheticSpec, generate

EU = Path(__file__).resolve().parents[2] / "policies" / "eu-gdpr-dsa.yaml"


@pytest.fixture(scope="module")
def engine() -> ServingEngine:
    data = generate(SyntheticSpec(n_users=200, n_items=150, n_interactions=6000, seed=3, harmful_share=0.05))
    model = ALSRecommender(factors=16, iterations=5).fit(to_implicit(data.events))
    return ServingEngine(load_pack(EU), model, data.items)


def _same(there: tuple, here: tuple) -> None:
    assert np.array_equal(there[0], here[0])
    assert there[1] == here[1]
    assert there[2] == here[2]


async def _until_made_there(process: ComputeProcess, personalizer: Personalizer, row: int, k: int, seconds: float = 90) -> tuple:
    """Ask until the compute process answers (it starts, imports, then receives the engine)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        answer = await process.personalize(personalizer, row, k)
        if answer is not None:
            return answer
        await asyncio.sleep(0.05)
    raise AssertionError("the compute process never answered")


def test_lists_made_in_the_compute_process_are_the_servers(engine: ServingEngine) -> None:
    async def scenario() -> None:
        process = ComputeProcess(answer_timeout_s=30)
        try:
            personalizer = engine.personalizer
            first = await _until_made_there(process, personalizer, 0, 10)
            _same(first, personalizer.personalize(0, 10))
            for row in range(1, 40):
                answer = await process.personalize(personalizer, row, 7)
                assert answer is not None
                _same(answer, personalizer.personalize(row, 7))
            # New blocks make a new model part (a new token): the process gets it, and its lists leave the blocked item out.
            blocked = str(engine.personalizer.personalize(5, 3)[0][0])
            engine.set_blocked([engine.model.train_.item_ids[int(blocked)]])
            assert engine.personalizer.token != personalizer.token
            answer = await _until_made_there(process, engine.personalizer, 5, 10)
            _same(answer, engine.personalizer.personalize(5, 10))
            assert int(blocked) not in answer[0].tolist()
            # A list it cannot make (an error there) is made here: None, and the process stays up.
            restarts = process.restarts
            assert await process.personalize(engine.personalizer, 10**9, 5) is None
            assert process.running and process.restarts == restarts
        finally:
            engine.set_blocked([])
            process.close()
        assert not process.running and process.made_there >= 41

    asyncio.run(scenario())


def test_a_dead_or_stuck_compute_process_changes_no_answer(engine: ServingEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compute_module, "RESTART_AFTER_S", 0.2)

    async def scenario() -> None:
        process = ComputeProcess(answer_timeout_s=1.0)
        personalizer = engine.personalizer
        try:
            await _until_made_there(process, personalizer, 1, 5)
            os.kill(process._process.pid, signal.SIGKILL)  # dies: the lists are made here meanwhile
            for _ in range(50):
                if await process.personalize(personalizer, 2, 5) is None and not process.running:
                    break
                await asyncio.sleep(0.05)
            assert process.restarts == 1 and not process.running
            # after RESTART_AFTER_S another process starts and answers again
            _same(await _until_made_there(process, personalizer, 3, 5), personalizer.personalize(3, 5))
            # a process that stops answering (SIGSTOP) is given up after the timeout, and replaced
            os.kill(process._process.pid, signal.SIGSTOP)
            assert await process.personalize(personalizer, 4, 5) is None
            assert process.restarts == 2
            _same(await _until_made_there(process, personalizer, 4, 5), personalizer.personalize(4, 5))
        finally:
            process.close()
        assert process.made_here > 0

    asyncio.run(scenario())


def test_inline_keeps_the_model_part_in_the_server(tmp_path: Path) -> None:
    from audits import open_store
    from governance.api.services.engines import EngineCache

    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        assert EngineCache(store, compute="inline").compute is None
        assert isinstance(EngineCache(store, compute="process").compute, ComputeProcess)
    finally:
        store.close()


def test_a_request_never_waits_longer_than_its_deadline_behind_a_stuck_transfer(engine: ServingEngine) -> None:
    """A stuck process that stops reading mid-transfer (a new engine's model part) must not hold up the
    lists of the engines it already has: each is made here after the deadline, and the process replaced."""

    async def scenario() -> None:
        process = ComputeProcess(answer_timeout_s=1.0)
        held = engine.personalizer
        try:
            await _until_made_there(process, held, 1, 5)
            os.kill(process._process.pid, signal.SIGSTOP)
            engine.set_blocked([engine.model.train_.item_ids[0]])  # a new model part: sent in the background
            assert await process.personalize(engine.personalizer, 1, 5) is None
            started = asyncio.get_running_loop().time()
            answer = await asyncio.wait_for(process.personalize(held, 2, 5), 10)
            assert answer is None and asyncio.get_running_loop().time() - started < 5
            assert process.restarts == 1
        finally:
            engine.set_blocked([])
            process.close()

    asyncio.run(scenario())


def test_an_app_started_twice_serves_with_a_fresh_cache(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from governance.api import ApiSettings, create_app

    app = create_app(ApiSettings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'store.db'}"))
    with TestClient(app):
        first = app.state.engines
        assert first.compute is not None and first.compute._process is not None  # started with the app
    assert first.closed and app.state.engines is None and not first.compute.running
    with TestClient(app):
        second = app.state.engines
        assert second is not first and not second.closed and second.store is app.state.store
