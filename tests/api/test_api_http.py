"""The REST API over real HTTP, on both engines: authorization, problem details, packs, GPC, keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select, text

from audits.api_keys import ApiKey
from audits.models import TrailEvent
from governance.api.deps import BAD_KEY, MISSING_KEY
from governance.api.errors import PROBLEM_JSON

ROLES = ("viewer", "auditor", "operator", "admin")
PACK_V1 = "apiVersion: recgov/v1\nmetadata:\n  name: reviewed\n  version: 1.0.0\n  owner: compliance team\n"
PACK_V2 = PACK_V1.replace("1.0.0", "1.1.0").replace("compliance team", "privacy office")
BROKEN_PACK = "apiVersion: recgov/v1\nmetadata:\n  name: broken\n  version: one\n  owner: x\nquality:\n  rules:\n    - id: q\n      check: no_such_check\n"


def _endpoints(server) -> list[tuple[str, str, str, dict, int]]:
    """(name, method, path, request kwargs, minimum role, status when allowed)."""
    mv = server.model_version
    return [
        ("packs.validate", "POST", "/v1/packs/validate", {"content": PACK_V1, "headers": {"Content-Type": "application/yaml"}}, "viewer", 200),
        ("packs.create", "POST", "/v1/packs", {"content": PACK_V1, "headers": {"Content-Type": "application/yaml"}}, "admin", 200),
        ("packs.list", "GET", "/v1/packs", {}, "viewer", 200),
        ("packs.diff", "GET", "/v1/packs/reviewed/diff", {"params": {"from": "1.0.0", "to": "1.1.0"}}, "viewer", 200),
        ("trail.verify", "GET", "/v1/trail/verify", {}, "auditor", 200),
        ("trail.checkpoint", "POST", "/v1/trail/checkpoint", {}, "admin", 201),
        ("lineage", "GET", f"/v1/lineage/{mv}", {}, "viewer", 200),
        ("consent.create", "POST", "/v1/consent", {"json": {"subject": "u000001", "purpose": "personalization", "status": "granted", "basis": "consent", "source": "api"}}, "operator", 201),
        ("consent.show", "GET", "/v1/consent/u000001", {}, "operator", 200),
        ("recommendations", "POST", "/v1/recommendations", {"json": {"subject": "u000003", "k": 3, "model_version": mv, "pack": "baseline"}}, "operator", 200),
    ]


ENDPOINT_NAMES = ["packs.validate", "packs.create", "packs.list", "packs.diff", "trail.verify", "trail.checkpoint", "lineage", "consent.create", "consent.show", "recommendations"]


@pytest.fixture(scope="module")
def stored_packs(server) -> None:
    with server.client("admin", **{"Content-Type": "application/yaml"}) as client:
        for text_ in (PACK_V1, PACK_V2):
            assert client.post("/v1/packs", content=text_).status_code in (200, 201)


def test_health_is_the_one_open_endpoint(server) -> None:
    with server.client() as client:
        response = client.get("/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"


@pytest.mark.parametrize("endpoint", ENDPOINT_NAMES)
def test_authorization_matrix(server, stored_packs, endpoint: str) -> None:
    _, method, path, kwargs, minimum, ok = next(e for e in _endpoints(server) if e[0] == endpoint)
    expected = {None: 401, "revoked": 401} | {role: ok if ROLES.index(role) >= ROLES.index(minimum) else 403 for role in ROLES}
    got = {}
    for role in expected:
        with server.client(role) as client:
            response = client.request(method, path, **kwargs)
        got[role] = response.status_code
        if response.status_code >= 400:
            assert response.headers["content-type"] == PROBLEM_JSON, (role, response.text)
            assert response.json()["status"] == response.status_code
    assert got == expected


def test_no_key_and_revoked_key_are_told_apart_from_forbidden(server) -> None:
    with server.client() as client:
        missing = client.get("/v1/packs")
    with server.client("revoked") as client:
        revoked = client.get("/v1/packs")
    with server.client("viewer") as client:
        forbidden = client.get("/v1/trail/verify")
    assert missing.json()["detail"] == MISSING_KEY and missing.headers["www-authenticate"] == "Bearer"
    assert revoked.json()["detail"] == BAD_KEY
    assert forbidden.status_code == 403
    assert forbidden.json() | {"detail": None} == {
        "type": "https://recgov.dev/problems/forbidden", "title": "Forbidden", "status": 403,
        "detail": None, "instance": "/v1/trail/verify",
    }  # fmt: skip
    assert f"key {server.key_ids['viewer']} has the role viewer" in forbidden.json()["detail"]


def test_a_malformed_pack_is_a_422_problem_with_located_issues(server) -> None:
    with server.client("viewer", **{"Content-Type": "application/yaml"}) as client:
        broken = client.post("/v1/packs/validate", content=BROKEN_PACK)
        not_yaml = client.post("/v1/packs/validate", content="apiVersion: recgov/v1\nmetadata: [unclosed\n")
    assert broken.status_code == 422 and broken.headers["content-type"] == PROBLEM_JSON
    problem = broken.json()
    assert problem["type"] == "https://recgov.dev/problems/invalid-pack" and problem["instance"] == "/v1/packs/validate"
    by_path = {e["path"]: e for e in problem["errors"]}
    assert by_path["metadata.version"]["line"] == 4 and by_path["metadata.version"]["column"] is not None
    assert any(e["line"] == 8 and e["path"] == "quality.rules.0" and "no_such_check" in e["message"] for e in problem["errors"]), problem["errors"]
    assert not_yaml.status_code == 422 and all(e["line"] for e in not_yaml.json()["errors"])


def test_a_valid_pack_gives_its_identity(server) -> None:
    with server.client("viewer", **{"Content-Type": "application/yaml"}) as client:
        response = client.post("/v1/packs/validate", content=PACK_V1)
    assert response.status_code == 200
    assert response.json() | {"pack_hash": None} == {"valid": True, "pack": "reviewed", "pack_version": "1.0.0", "pack_hash": None, "rules": 0, "warnings": []}


def test_a_validation_error_names_the_field_and_why(server) -> None:
    with server.client("operator") as client:
        response = client.post("/v1/recommendations", json={"subject": "u1", "k": 0, "model_version": server.model_version, "colour": "red"})
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM_JSON
    errors = {e["field"]: e for e in response.json()["errors"]}
    assert errors["k"]["location"] == "body" and "greater than or equal to 1" in errors["k"]["message"]
    assert "colour" in errors and "body.k" in response.json()["detail"]


def test_stored_packs_are_listed_diffed_and_immutable(server, stored_packs) -> None:
    with server.client("admin") as client:
        listed = client.get("/v1/packs").json()["packs"]
        diff = client.get("/v1/packs/reviewed/diff", params={"from": "1.0.0", "to": "1.1.0"}).json()
        conflict = client.post("/v1/packs", content=PACK_V1.replace("compliance team", "someone else"))
        missing = client.get("/v1/packs/reviewed/diff", params={"from": "1.0.0", "to": "9.9.9"})
    refs = {p["ref"] for p in listed}
    assert {"baseline", "eu-gdpr-dsa", "california-ccpa", "reviewed@1.0.0", "reviewed@1.1.0"} <= refs
    assert (server.home / "packs" / "reviewed" / "1.1.0.yaml").read_text() == PACK_V2
    assert {"kind": "changed", "path": "metadata.owner", "before": "compliance team", "after": "privacy office", "threshold": False, "effect": None} in diff["changes"]
    assert conflict.status_code == 409 and conflict.headers["content-type"] == PROBLEM_JSON
    assert missing.status_code == 404 and "stored versions: 1.0.0, 1.1.0" in missing.json()["detail"]


def test_gpc_header_is_honoured_and_recorded(server) -> None:
    subject = "u000012"
    request = {"subject": subject, "k": 5, "model_version": server.model_version, "pack": "california-ccpa"}
    with server.client("operator") as client:
        before = client.post("/v1/recommendations", json=request).json()
        gpc = client.post("/v1/recommendations", json=request, headers={"Sec-GPC": "1"})
        consent = client.get(f"/v1/consent/{subject}").json()
        after = client.post("/v1/recommendations", json=request).json()
    assert before["mode"] == "personalized" and before["signals"]["gpc"] is False
    assert gpc.status_code == 200, gpc.text
    served = gpc.json()
    assert served["mode"] == "non_profiling" and "opted_out via gpc" in served["consent"] and len(served["items"]) == 5
    assert after["mode"] == "non_profiling", "the recorded opt-out outlives the request that carried it"
    assert served["signals"]["gpc"] is True and served["signals"]["recorded"]
    gpc_records = [r for r in consent["history"] if r["source"] == "gpc"]
    assert gpc_records and {r["status"] for r in gpc_records} == {"opted_out"}
    with server.store.snapshot() as connection:
        events = connection.execute(select(TrailEvent.actor, TrailEvent.action).where(TrailEvent.action == "api.recommendations.create")).all()
    assert (f"key:{server.key_ids['operator']}:test-operator", "api.recommendations.create") in events


def test_writes_are_attributed_to_their_key_in_the_trail(server) -> None:
    with server.client("operator") as client:
        assert client.post("/v1/consent", json={"subject": "u000077", "purpose": "personalization", "status": "denied", "basis": "consent"}).status_code == 201
    with server.store.snapshot() as connection:
        actors = set(connection.execute(select(TrailEvent.actor).where(TrailEvent.action == "api.consent.create")).scalars())
    assert f"key:{server.key_ids['operator']}:test-operator" in actors
    with server.client("auditor") as client:
        assert client.get("/v1/trail/verify").json()["intact"] is True


@pytest.mark.parametrize(
    ("role", "method", "path"),
    [(None, "GET", "/v1/nowhere"), ("viewer", "DELETE", "/v1/packs"), ("viewer", "GET", "/v1/lineage/no-such-model"), ("admin", "GET", "/v1/_boom")],
)
def test_every_error_is_problem_json(server, role, method, path) -> None:
    with server.client(role) as client:
        response = client.request(method, path)
    assert response.status_code >= 400 and response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert set(problem) >= {"type", "title", "status", "detail", "instance"} and problem["instance"] == path
    if path == "/v1/_boom":
        assert response.status_code == 500 and "kaboom" not in response.text


def test_keys_are_stored_only_as_hashes(server) -> None:
    with server.store.snapshot() as connection:
        rows = [tuple(r) for r in connection.execute(select(ApiKey)).all()]
        trail = [tuple(r) for r in connection.execute(select(TrailEvent)).all()]
        dump = repr(rows) + repr(trail)
        if connection.dialect.name == "postgresql":
            dump += repr(connection.execute(text("SELECT * FROM api_keys")).all())
    assert rows
    for token in server.tokens.values():
        assert token not in dump
    if server.db_url.startswith("sqlite:///"):
        raw = b"".join(p.read_bytes() for p in __import__("pathlib").Path(server.db_url.removeprefix("sqlite:///")).parent.glob("store-*.db*"))
        assert not any(token.encode() in raw for token in server.tokens.values())


def test_openapi_documents_the_routes_with_examples(server) -> None:
    with server.client() as client:
        spec = client.get("/openapi.json").json()
    assert {"/v1/packs/validate", "/v1/recommendations", "/v1/consent", "/v1/trail/checkpoint"} <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    assert schemas["ConsentCreate"]["examples"] and schemas["RecommendationCreate"]["examples"]
    assert "application/yaml" in spec["paths"]["/v1/packs/validate"]["post"]["requestBody"]["content"]
    assert json.dumps(spec).count("HTTPBearer") >= 1
    # A subject's id in a URL is kept by proxies and access logs: every such route is deprecated for one
    # that takes the id in the body.
    id_in_url = {path: item for path, item in spec["paths"].items() if "{subject" in path or "{user" in path}
    assert id_in_url, "expected the deprecated GET /v1/consent/{subject}"
    assert all(op.get("deprecated") for item in id_in_url.values() for op in item.values() if isinstance(op, dict))


ERASING_PACK = (
    (Path(__file__).resolve().parents[2] / "policies" / "eu-gdpr-dsa.yaml").read_text()
    .replace("  name: eu-gdpr-dsa\n", "  name: eu-erasing\n", 1)
    .replace("      model: opt_in\n", "      model: opt_in\n      erase_on_withdrawal: true\n", 1)
)


def test_consent_under_a_pack_that_erases_on_withdrawal_opens_the_erasure_request(server) -> None:
    assert "erase_on_withdrawal: true" in ERASING_PACK and "name: eu-erasing" in ERASING_PACK
    with server.client("admin", **{"Content-Type": "application/yaml"}) as admin:
        stored = admin.post("/v1/packs", content=ERASING_PACK)
    assert stored.status_code in (200, 201), stored.text
    ref = f"eu-erasing@{stored.json()['pack_version']}"
    body = {"subject": "u000031", "purpose": "personalization", "basis": "consent", "pack": ref}
    with server.client("operator") as client:
        granted = client.post("/v1/consent", json=body | {"status": "granted"})
        withdrawn = client.post("/v1/consent", json=body | {"status": "withdrawn"})
        unknown = client.post("/v1/consent", json=body | {"status": "withdrawn", "pack": "no-such-pack"})
        foreign = client.post("/v1/consent", json=body | {"status": "withdrawn", "purpose": "sale_or_sharing"})
    assert granted.status_code == 201 and granted.json()["erasure_request"] is None
    assert withdrawn.status_code == 201, withdrawn.text
    request = withdrawn.json()["erasure_request"]
    assert request["status"] == "received"
    assert unknown.status_code == 404 and unknown.headers["content-type"] == PROBLEM_JSON
    assert foreign.status_code == 422 and "not one of pack eu-erasing" in foreign.json()["detail"]
    with server.client("auditor") as client:
        erasures = client.get("/v1/requests", params={"kind": "erasure", "status": "received"}).json()["requests"]
    assert request["id"] in [r["id"] for r in erasures]


def test_a_stored_file_that_is_no_pack_is_listed_with_its_fault_not_a_500(server) -> None:
    broken = server.home / "packs" / "handmade" / "0.1.0.yaml"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text("metadata: [not, a, mapping\n", encoding="utf-8")
    try:
        with server.client("viewer") as client:
            response = client.get("/v1/packs")
    finally:
        broken.unlink()
        broken.parent.rmdir()
    assert response.status_code == 200, response.text
    entry = next(p for p in response.json()["packs"] if p["ref"] == "handmade@0.1.0")
    assert entry["pack_hash"] == "" and entry["error"] and "handmade/0.1.0.yaml" in entry["error"]
    assert str(server.home) not in entry["error"]  # the server's own paths stay on the server
    assert all(p["error"] is None for p in response.json()["packs"] if p["ref"] != "handmade@0.1.0")


def test_a_gzip_pack_body_is_read_and_held_to_the_pack_limit_once_decompressed(server) -> None:
    """Every route reading its raw body reads gzip alike: the pack's own limit holds for what it inflates to."""
    import gzip

    with server.client("viewer", **{"Content-Type": "application/yaml", "Content-Encoding": "gzip"}) as client:
        packed = client.post("/v1/packs/validate", content=gzip.compress(PACK_V1.encode()))
        bomb = client.post("/v1/packs/validate", content=gzip.compress(PACK_V1.encode() + b"#" * (32 * 1024 * 1024)))
    with server.client("viewer", **{"Content-Type": "application/yaml", "Content-Encoding": "zstd"}) as client:
        zstd = client.post("/v1/packs/validate", content=PACK_V1)
    assert packed.status_code == 200 and packed.json()["valid"] is True, packed.text
    assert bomb.status_code == 413 and zstd.status_code == 415 and "'zstd'" in zstd.json()["detail"]
