"""A model file changed on disk after it was recorded is never served, on SQLite and PostgreSQL.

Promotion and rollback refuse a version whose file no longer has its recorded SHA-256; serving loaded the
file without looking, so a file whose factors were zeroed after recording was served by ``recgov recommend``,
by :func:`governance.governed_list.open_engine` (the online-store warm-up, ``recgov.serve``) and by the
deployed engines (:func:`governance.shadow.open_deployed`). Now each refuses it, naming the version and the file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import invoke, ok

from audits import open_store
from audits.models import ModelVersion
from governance.artifacts import ArtifactChanged
from governance.governed_list import open_engine
from governance.packs import resolve_pack
from governance.policy import load_pack
from governance.serving import ServeRequest

DATA = "synthetic:n_users=120,n_items=80,n_interactions=4000,seed=9"
BASELINE = load_pack(resolve_pack("baseline"))
CCPA = load_pack(resolve_pack("california-ccpa"))  # opt-out: no record means "profile them"


def _zero_factors(path: str) -> None:
    """What a careless or hostile edit does: the file's item factors zeroed, everything else as it was."""
    arrays = dict(np.load(path, allow_pickle=False))
    arrays["item_factors"] = np.zeros_like(arrays["item_factors"])
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def test_a_model_file_changed_on_disk_is_not_served(db_url: str, recgov_home: Path, tmp_path: Path) -> None:
    version = ok("train", DATA, "--no-tune", "--no-carbon", "--factors", "6", "--iterations", "3", "--database-url", db_url)["model_version"]
    args = ("recommend", "u000003", "--model", version, "--pack", "california-ccpa", "--database-url", db_url)
    assert ok(*args)["mode"] == "personalized"
    store = open_store(db_url)
    try:
        with store.session() as session:
            path = session.get(ModelVersion, version).artifact_location
        kept = tmp_path / "recorded.npz"
        shutil.copyfile(path, kept)
        _zero_factors(path)

        refused = invoke(*args)
        assert refused.exit_code == 2
        message = " ".join(refused.stderr.split())
        assert f"model version {version!r} cannot be served" in message and "changed on disk" in message
        with pytest.raises(ArtifactChanged, match="changed on disk"):
            open_engine(store, CCPA, version)

        Path(path).unlink()
        missing = invoke(*args)
        assert missing.exit_code == 2 and "is missing" in " ".join(missing.stderr.split())

        shutil.copyfile(kept, path)  # the recorded file back: served again
        assert ok(*args)["mode"] == "personalized"
        engine, log = open_engine(store, CCPA, version)
        try:
            assert engine.serve(ServeRequest("u000004", k=5)).mode == "personalized"
        finally:
            log.close()
    finally:
        store.close()


def test_the_deployed_engines_refuse_a_changed_file(db_url: str, recgov_home: Path, tmp_path: Path) -> None:
    from governance.shadow import open_deployed

    data = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"
    version = ok("train", data, "--no-tune", "--no-carbon", "--factors", "8", "--iterations", "4", "--database-url", db_url)["model_version"]
    for stage in ("shadow", "canary", "production"):
        if stage != "shadow":
            assert invoke("deploy", "policy", "set", stage, "--pack", "baseline", "--database-url", db_url).exit_code == 0
        extra = () if stage == "shadow" else ("--data", data, "--out", tmp_path / f"gate-{stage}")
        ok("deploy", "promote", version, "--to", stage, *extra, "--database-url", db_url)
    store = open_store(db_url)
    try:
        with open_deployed(store, BASELINE) as serving:  # the recorded file: served
            assert serving.production.model.version_id_ == version
        with store.session() as session:
            path = session.get(ModelVersion, version).artifact_location
        _zero_factors(path)
        with pytest.raises(ArtifactChanged, match="changed on disk"):
            open_deployed(store, BASELINE)
    finally:
        store.close()
