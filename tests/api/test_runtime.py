"""The serving process's heap out of the collector's full walks: frozen while an app runs, collectable after."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from governance.api import runtime


class _Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def _cycle() -> weakref.ref[_Node]:
    return weakref.ref(_Node())


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No app of this process tuned, no engine counted: each test starts from the module's defaults."""
    monkeypatch.setattr(runtime, "_apps", [0])
    monkeypatch.setattr(runtime, "_builds", [0])
    yield
    gc.unfreeze()


def test_what_is_frozen_at_startup_is_not_collected_until_the_app_stops(fresh: None) -> None:
    garbage = _cycle()
    runtime.tune()
    assert gc.get_freeze_count() > 0
    gc.collect()
    assert garbage() is not None  # frozen: no collection walks it
    runtime.restore()
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert garbage() is None  # collectable again once the app stopped


def test_an_engine_build_freezes_and_every_settle_every_th_collects_what_was_frozen_first(fresh: None) -> None:
    runtime.tune()
    try:
        garbage = _cycle()
        for _ in range(runtime.SETTLE_EVERY - 1):
            runtime.freeze_heap()
        gc.collect()
        assert garbage() is not None and gc.get_freeze_count() > 0
        runtime.freeze_heap()  # the SETTLE_EVERY-th engine: everything collected once, then frozen again
        assert garbage() is None and gc.get_freeze_count() > 0
    finally:
        runtime.restore()


def test_outside_a_running_app_an_engine_build_freezes_nothing(fresh: None) -> None:
    runtime.freeze_heap()
    assert gc.get_freeze_count() == 0


def test_a_running_app_has_its_heap_frozen_and_unfreezes_it_when_it_stops(fresh: None, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from governance.api import ApiSettings, create_app

    app = create_app(ApiSettings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'store.db'}"))
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
