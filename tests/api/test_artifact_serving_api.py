"""``POST /v1/recommendations`` never serves a model file changed on disk after it was recorded, on both engines.

The engine cache re-reads a model when its file's size or modification time changes; it did not check the file
against the SHA-256 recorded with the version, so a file whose factors were zeroed was served. Now the load
hashes the file once and a changed one is a 409 ``artifact-changed`` (as promotion answers it), not served,
until the recorded file is back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from audits.models import ModelVersion
from governance.api.errors import PROBLEM_JSON
from governance.cli import app as cli

DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"


def test_a_model_file_changed_on_disk_is_a_409_not_a_list(server, tmp_path: Path) -> None:
    trained = CliRunner().invoke(cli, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "5", "--iterations", "3", "--database-url", server.db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout)["model_version"]
    with server.store.session() as session:
        path = session.get(ModelVersion, version).artifact_location
    kept = tmp_path / "recorded.npz"
    shutil.copyfile(path, kept)
    request = {"subject": "u000003", "k": 3, "model_version": version, "pack": "california-ccpa"}  # opt-out: profiled
    with server.client("operator") as client:
        served = client.post("/v1/recommendations", json=request)
        assert served.status_code == 200 and served.json()["mode"] == "personalized", served.text

        arrays = dict(np.load(path, allow_pickle=False))
        arrays["item_factors"] = np.zeros_like(arrays["item_factors"])
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
        for _ in range(2):  # refused again without a new load (the refusal is kept for the file as it is)
            refused = client.post("/v1/recommendations", json=request)
            assert refused.status_code == 409 and refused.headers["content-type"] == PROBLEM_JSON, refused.text
            problem = refused.json()
            assert problem["type"].endswith("/artifact-changed")
            assert version in problem["detail"] and "changed on disk" in problem["detail"]

        shutil.copyfile(kept, path)  # the recorded file back: served again
        again = client.post("/v1/recommendations", json=request)
        assert again.status_code == 200 and again.json()["mode"] == "personalized", again.text


def test_a_corrected_record_of_the_artifact_hash_is_seen_without_touching_the_file(server) -> None:
    """The refusal of a file that does not match its record was kept for the file's stat alone: a record edited to
    a wrong hash and corrected again kept the model refused until someone touched the file."""
    from sqlalchemy import update

    trained = CliRunner().invoke(cli, ["train", DATA.replace("seed=4", "seed=9"), "--no-tune", "--no-carbon", "--factors", "5", "--iterations", "3",
                                       "--database-url", server.db_url, "--json"])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout)["model_version"]
    with server.store.session() as session:
        recorded = session.get(ModelVersion, version).artifact_hash
        session.execute(update(ModelVersion).where(ModelVersion.version_id == version).values(artifact_hash="sha256:" + "0" * 64))
    request = {"subject": "u000003", "k": 3, "model_version": version, "pack": "california-ccpa"}
    with server.client("operator") as client:
        refused = client.post("/v1/recommendations", json=request)
        assert refused.status_code == 409 and refused.json()["type"].endswith("/artifact-changed"), refused.text
        with server.store.session() as session:
            session.execute(update(ModelVersion).where(ModelVersion.version_id == version).values(artifact_hash=recorded))
        served = client.post("/v1/recommendations", json=request)
        assert served.status_code == 200 and served.json()["mode"] == "personalized", served.text
