"""Red team: erasure that really forgets (GDPR Art. 17), over real HTTP, on SQLite and PostgreSQL.

Each test names the hole it pins. The attacks: warm the service's engine cache with the
person's list, erase them over the API, then ask again for their list from the version they
were in, from the deployed version, from the unlearned one, under another pack, after a grant.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from audits.models import ModelVersion

PACKS = ("california-ccpa", "baseline", "eu-gdpr-dsa")  # under the opt-out pack no record means "profile them"
DATA = "synthetic:n_users=300,n_items=200,n_interactions=12000,seed=4"


def _list(client, subject: str, pack: str, model_version: str | None) -> dict:
    body = {"subject": subject, "k": 5, "pack": pack}
    if model_version is not None:
        body["model_version"] = model_version
    answer = client.post("/v1/recommendations", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _non_profiling(served: dict) -> bool:
    return (
        served["mode"] == "non_profiling"
        and "erased" in served["consent"]
        and all(i["score"] is None for i in served["items"])
    )


def test_cached_engines_do_not_serve_an_erased_subject_from_old_factors(server) -> None:
    """Hole: the API's cached engine kept serving the erased person a personalised list from the
    version they were erased from, under any pack that lets it profile them."""
    subject = "u000021"
    with server.client("operator") as client:
        warm = _list(client, subject, "california-ccpa", server.model_version)
    assert warm["mode"] == "personalized"  # the attack works before erasure
    with server.client("admin") as client:
        assert client.post(f"/v1/subjects/{subject}/erasure", json={"pack": "baseline", "approximate": True}).status_code == 200
    with server.client("operator") as client:
        for pack in PACKS:
            assert _non_profiling(_list(client, subject, pack, server.model_version)), pack


def test_erasure_over_the_api_unlearns_the_recorded_artifacts_that_hold_the_subject(server) -> None:
    """Hole: erasure over HTTP unlearned no model: the artifacts that serve kept the person's factors."""
    subject = "u000025"
    with server.client("admin") as client:
        erased = client.post(f"/v1/subjects/{subject}/erasure", json={"pack": "baseline", "approximate": True})
    assert erased.status_code == 200, erased.text
    report = erased.json()
    # the newest version of the served model's lineage (itself, or one an earlier erasure unlearned from it)
    (step,) = [u for u in report["unlearning"] if u["status"] == "unlearned"]
    assert subject not in erased.text
    with server.store.session() as session:
        recorded = session.get(ModelVersion, step["version"])
    assert recorded is not None
    with np.load(recorded.artifact_location, allow_pickle=False) as npz:
        assert subject not in set(npz["user_ids"].astype(str).tolist())
    with server.client("operator") as client:
        for version in (server.model_version, step["previous_version"], step["version"]):
            for pack in PACKS:  # every version here read its data before the erasure
                assert _non_profiling(_list(client, subject, pack, version)), (version, pack)


def test_a_grant_after_erasure_over_the_api_does_not_revive_old_factors(server) -> None:
    """Hole: after erasure, a new consent grant made the old version personalise from pre-erasure factors."""
    subject = "u000022"
    with server.client("admin") as client:
        assert client.post(f"/v1/subjects/{subject}/erasure", json={"pack": "eu-gdpr-dsa", "approximate": True}).status_code == 200
    with server.client("operator") as client:
        granted = client.post(
            "/v1/consent",
            json={"subject": subject, "purpose": "personalization", "status": "granted", "basis": "consent"},
        )
        assert granted.status_code == 201, granted.text
        served = _list(client, subject, "eu-gdpr-dsa", server.model_version)
    assert _non_profiling(served)


def test_the_deployed_version_serves_an_erased_subject_the_non_profiling_list(server) -> None:
    """Hole: the deployed version (no model named in the request) kept personalising for an erased person."""
    subject = "u000023"
    with server.client("admin") as client:
        for stage in ("canary", "production"):  # the installation's deployment policy: the baseline pack gates both
            assert client.put(f"/v1/deployments/policy/{stage}", json={"pack": "baseline"}).status_code == 200
        for stage in ("shadow", "canary", "production"):
            done = client.post(f"/v1/deployments/{server.model_version}/promote", json={"stage": stage, "data": DATA})
            assert done.status_code == 200, done.text
    with server.client("operator") as client:
        assert _list(client, subject, "california-ccpa", None)["mode"] == "personalized"
    with server.client("admin") as client:
        assert client.post(f"/v1/subjects/{subject}/erasure", json={"pack": "baseline", "approximate": True}).status_code == 200
    with server.client("operator") as client:
        served = _list(client, subject, "california-ccpa", None)
        others = _list(client, "u000024", "california-ccpa", None)
    assert served["deployment"]["stage"] == "production" and _non_profiling(served)
    assert others["mode"] == "personalized"  # the deployed version still serves everyone else
    with server.store.session() as session:
        assert session.scalar(select(ModelVersion).where(ModelVersion.version_id == server.model_version)) is not None
