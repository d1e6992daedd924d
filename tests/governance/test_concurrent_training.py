"""Two trainings of the same model at once, into one folder, both end with an intact, recorded file.

Regression: training wrote each model through a temporary file named after the version and the process id only,
so two trainings of the same version in one process (the API's threads, its audit jobs) wrote through the same
file: the first moved it into place and the second, finding it gone, failed with a FileNotFoundError (or moved
bytes the other was still writing).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from audits.db import Store
from governance.deploy import check_artifact
from recommender.synthetic import SyntheticSpec, generate

DATA = SyntheticSpec(n_users=50, n_items=30, n_interactions=900, seed=3)


def _both_save_before_either_moves(monkeypatch: pytest.MonkeyPatch, cls: type) -> None:
    """Make each of two threads write its file before either moves it into place (the interleaving that collided)."""
    saved = threading.Barrier(2, timeout=60)
    original = cls.save

    def save(self, path):
        digest = original(self, path)
        saved.wait()
        return digest

    monkeypatch.setattr(cls, "save", save)


def _at_once(train) -> list[object]:
    outcomes: list[object] = []

    def run() -> None:
        try:
            outcomes.append(train())
        except Exception as err:  # noqa: BLE001 - the test reports it
            outcomes.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return outcomes


def _intact(store: Store, folder: Path, version: str) -> None:
    with store.session() as session:
        check_artifact(session, version)  # the file at the recorded place has the recorded SHA-256
    assert sorted(p.name for p in folder.iterdir()) == [f"{version}.npz"]  # no temporary file left behind


def test_two_als_trainings_of_one_version_at_once_both_record_an_intact_file(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from governance.training import train_and_record
    from recommender.als import ALSRecommender

    data, folder = generate(DATA), tmp_path / "models"
    _both_save_before_either_moves(monkeypatch, ALSRecommender)
    outcomes = _at_once(
        lambda: train_and_record(data, store=store, models_dir=folder, params={"factors": 4, "iterations": 2}, measure_carbon=False)
    )
    assert len(outcomes) == 2 and all(not isinstance(o, Exception) for o in outcomes), outcomes
    (version,) = {o.model_version for o in outcomes}
    _intact(store, folder, version)


def test_two_family_trainings_of_one_version_at_once_both_record_an_intact_file(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from governance.family_training import family_model_class, train_family_and_record
    from recommender.family import get_family

    data, folder = generate(DATA), tmp_path / "models"
    _both_save_before_either_moves(monkeypatch, family_model_class(get_family("popularity")))
    outcomes = _at_once(lambda: train_family_and_record(data, "popularity", store=store, models_dir=folder, measure_carbon=False))
    assert len(outcomes) == 2 and all(not isinstance(o, Exception) for o in outcomes), outcomes
    (version,) = {o.model.version_id_ for o in outcomes}
    _intact(store, folder, version)
