"""A retired model version profiles nobody, on SQLite and PostgreSQL.

`recgov deploy retire` promises a retired version "is never served again", and it is how a DPO
closes a retrain request waiting on a version that holds an erased subject's data. Yet a list asked
of it by name (`recgov recommend --model V`, `POST /v1/recommendations` with `model_version`) was
still made from its factors. Now its standing says retired and the list is not personalized; an
engine opened before the retirement learns it at its next re-read of the standing.
"""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import invoke, ok

from audits import open_store
from governance import serving
from governance.governed_list import open_engine
from governance.packs import resolve_pack
from governance.policy import load_pack
from governance.serving import ServeRequest

DATA = "synthetic:n_users=120,n_items=80,n_interactions=4000,seed=9"
CCPA = load_pack(resolve_pack("california-ccpa"))  # opt-out: no record means "profile them"


def test_a_retired_version_profiles_nobody_whether_asked_by_name_or_already_open(db_url: str, recgov_home: Path, monkeypatch) -> None:
    version = ok("train", DATA, "--no-tune", "--no-carbon", "--factors", "6", "--iterations", "3", "--database-url", db_url)["model_version"]
    args = ("recommend", "u000003", "--model", version, "--pack", "california-ccpa", "--database-url", db_url)
    assert ok(*args)["mode"] == "personalized"
    store = open_store(db_url)
    try:
        engine, log = open_engine(store, CCPA, version)
        try:
            assert engine.serve(ServeRequest("u000004", k=5)).mode == "personalized"
            assert invoke("deploy", "retire", version, "--database-url", db_url).exit_code == 0
            asked = ok(*args)
            assert asked["mode"] == "non_profiling" and "is retired" in asked["consent"]
            assert all(item["score"] is None for item in asked["items"])
            monkeypatch.setattr(serving, "STANDING_RECHECK_S", 0.0)  # the engine already open re-reads its standing
            served = engine.serve(ServeRequest("u000004", k=5))
            assert served.mode == "non_profiling" and "is retired" in served.consent_reason
        finally:
            log.close()
    finally:
        store.close()
