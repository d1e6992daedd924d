"""A model file changed on disk after it was recorded is not deployed, on SQLite and PostgreSQL.

The gate refits a version's recorded recipe and serving loads its file: a file altered after recording
(factors zeroed here) passed the canary and production gates and was served. Promotion (every stage)
and rollback now check the file's SHA-256 against the one recorded with the version: exit 2, one line,
nothing moved.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from sqlalchemy import select

from audits import open_store
from audits.models import ModelVersion, TrailEvent
from test_deploy import _deploy, _promote, _train  # the same small model and the same moves


def _trail(db_url: str) -> list[int]:
    store = open_store(db_url)
    try:
        with store.session() as session:
            return list(session.scalars(select(TrailEvent.seq).order_by(TrailEvent.seq)))
    finally:
        store.close()


def _artifact(db_url: str, version: str) -> Path:
    store = open_store(db_url)
    try:
        with store.session() as session:
            return Path(session.get(ModelVersion, version).artifact_location)
    finally:
        store.close()


def _tamper(path: Path) -> None:
    """The same version id in the file's metadata, other factors: nothing but the hash tells."""
    arrays = dict(np.load(path, allow_pickle=False))
    arrays["item_factors"] = np.zeros_like(arrays["item_factors"])
    with path.open("wb") as handle:
        np.savez(handle, **arrays)


def test_a_model_file_changed_on_disk_is_neither_promoted_nor_rolled_back_to(db_url: str, tmp_path: Path) -> None:
    old, new = _train(db_url, 8), _train(db_url, 6)
    for stage in ("canary", "production"):
        assert _deploy(db_url, "policy", "set", stage, "--pack", "baseline").exit_code == 0
    for stage in ("shadow", "canary", "production"):
        assert _promote(db_url, old, stage, tmp_path).exit_code == 0
    assert _promote(db_url, new, "shadow", tmp_path).exit_code == 0

    path = _artifact(db_url, new)
    kept = tmp_path / "kept.npz"
    shutil.copyfile(path, kept)
    _tamper(path)
    before = _trail(db_url)
    refused = _promote(db_url, new, "canary", tmp_path)
    assert refused.exit_code == 2, refused.output
    assert "changed on disk" in refused.stderr and new in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert _trail(db_url) == before  # no gate ran, nothing moved

    path.unlink()
    missing = _promote(db_url, new, "canary", tmp_path)
    assert missing.exit_code == 2 and "is missing" in missing.stderr
    shutil.copyfile(kept, path)
    for stage in ("canary", "production"):
        done = _promote(db_url, new, stage, tmp_path)
        assert done.exit_code == 0, done.output

    # The previous production version's file changed: a rollback would serve it, so it is refused.
    old_path = _artifact(db_url, old)
    shutil.copyfile(old_path, kept)
    _tamper(old_path)
    before = _trail(db_url)
    back = _deploy(db_url, "rollback")
    assert back.exit_code == 2 and "changed on disk" in back.stderr and old in back.stderr
    assert _trail(db_url) == before
    status = json.loads(_deploy(db_url, "status", "--json").stdout)
    assert [s["model_version"] for s in status["production"]] == [new]
    shutil.copyfile(kept, old_path)
    assert _deploy(db_url, "rollback").exit_code == 0
