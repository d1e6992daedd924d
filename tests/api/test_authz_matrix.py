"""The authorization matrix of the whole API: every operation, every role, no key and a revoked key.

:data:`MATRIX` maps each operation of the OpenAPI document (method and path
template) to the least role that may call it and to a valid request with the
status it then gets. A test holds the table to ``app.openapi()``: an endpoint
added without a row (or a row left after its endpoint went) fails it, so the
matrix cannot silently fall behind the API.

For each operation, over real HTTP on both engines: no key and a revoked key
get 401 (with ``WWW-Authenticate: Bearer``), each role below the minimum gets
403, and each role at or above it gets the row's status. Every refusal is a
problem document. Operations that only an admin may call are sent once (by the
admin), so stateful ones (a case transition, an erasure) run exactly once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from governance.api import ApiSettings, create_app
from governance.api.errors import PROBLEM_JSON

ROLES = ("viewer", "auditor", "operator", "admin")
PUBLIC = None
PACK = "apiVersion: recgov/v1\nmetadata:\n  name: authz-matrix\n  version: {version}\n  owner: compliance team\n"
AUDIT_DATA = "synthetic:n_users=60,n_items=40,n_interactions=900,seed=2"
AUDIT_DEADLINE_S = 180


@dataclass(frozen=True)
class Row:
    """The least role for an operation (``PUBLIC``: none), a valid request, and its status when allowed.

    Strings in ``path`` and ``request`` may name ``{model_version}``, ``{case_id}``,
    ``{job_id}`` and ``{new_version}``, filled in from what :func:`ids` prepared.
    """

    minimum: str | None
    status: int
    path: str
    request: dict[str, Any] = field(default_factory=dict)


YAML = {"Content-Type": "application/yaml"}
EXPERIMENT = (
    "apiVersion: recgov/v1\nkind: Experiment\nmetadata:\n  name: authz-experiment\n  owner: growth team\n"
    "hypothesis: The other pack's lists are clicked more often.\nvariants:\n  - name: control\n    control: true\n"
    "  - name: other\n    pack: california-ccpa\nallocation:\n  control: 0.5\n  other: 0.5\nprimary_metric: click_through\n"
    "design:\n  baseline: 0.1\n  mde: 0.05\n"
)
MATRIX: dict[tuple[str, str], Row] = {
    ("GET", "/health"): Row(PUBLIC, 200, "/health"),
    ("GET", "/ready"): Row(PUBLIC, 200, "/ready"),
    ("GET", "/metrics"): Row("viewer", 200, "/metrics"),
    ("POST", "/v1/packs/validate"): Row("viewer", 200, "/v1/packs/validate", {"content": PACK.format(version="1.0.0"), "headers": YAML}),
    ("GET", "/v1/packs"): Row("viewer", 200, "/v1/packs"),
    ("POST", "/v1/packs"): Row("admin", 201, "/v1/packs", {"content": PACK.replace("{version}", "{new_version}"), "headers": YAML}),
    ("GET", "/v1/packs/{name}/diff"): Row("viewer", 200, "/v1/packs/authz-matrix/diff", {"params": {"from": "1.0.0", "to": "1.1.0"}}),
    ("GET", "/v1/trail/verify"): Row("auditor", 200, "/v1/trail/verify"),
    ("POST", "/v1/trail/checkpoint"): Row("admin", 201, "/v1/trail/checkpoint"),
    ("GET", "/v1/lineage/{model_version}"): Row("viewer", 200, "/v1/lineage/{model_version}"),
    ("POST", "/v1/consent"): Row("operator", 201, "/v1/consent", {"json": {"subject": "authz-1", "purpose": "personalization", "status": "granted", "basis": "consent"}}),
    ("GET", "/v1/consent/{subject}"): Row("operator", 200, "/v1/consent/authz-1"),
    ("POST", "/v1/consent-state"): Row("operator", 200, "/v1/consent-state", {"json": {"subject": "authz-1", "pack": "baseline"}}),
    ("GET", "/v1/datasets"): Row("auditor", 200, "/v1/datasets"),
    ("POST", "/v1/consent-imports"): Row(
        "operator", 200, "/v1/consent-imports",
        {"content": "subject,purpose,status,time,basis\nauthz-2,personalization,granted,2026-01-05T09:30:00Z,consent\n", "headers": {"Content-Type": "text/csv"}},
    ),
    ("POST", "/v1/feedback"): Row("operator", 200, "/v1/feedback", {"json": [{"subject": "authz-3", "item": "i1", "kind": "impression", "time": "2026-01-05T09:30:00Z"}]}),
    ("POST", "/v1/feedback/imports"): Row(
        "operator", 200, "/v1/feedback/imports",
        {"content": "subject,item,kind,time\nauthz-4,i1,click,2026-01-05T09:30:00Z\n", "headers": {"Content-Type": "text/csv"}},
    ),
    ("POST", "/v1/recommendations"): Row("operator", 200, "/v1/recommendations", {"json": {"subject": "u000005", "k": 3, "model_version": "{model_version}"}}),
    ("GET", "/v1/ping"): Row("operator", 200, "/v1/ping"),
    ("GET", "/v1/deployments"): Row("viewer", 200, "/v1/deployments"),
    ("POST", "/v1/deployments/{model_version}/promote"): Row("admin", 200, "/v1/deployments/{model_version}/promote", {"json": {"stage": "shadow"}}),
    # Nothing is in production in this module's store: the admin reaches the handler, which refuses (422).
    ("POST", "/v1/deployments/rollback"): Row("admin", 409, "/v1/deployments/rollback"),
    # An unknown version: the admin reaches the handler, which answers 404 (the module's model stays where it is).
    ("POST", "/v1/deployments/{model_version}/retire"): Row("admin", 404, "/v1/deployments/authz-missing/retire"),
    ("GET", "/v1/deployments/policy"): Row("viewer", 200, "/v1/deployments/policy"),
    ("PUT", "/v1/deployments/policy/{stage}"): Row("admin", 200, "/v1/deployments/policy/production", {"json": {"pack": "baseline"}}),
    ("POST", "/v1/items/{item_id}/reports"): Row("operator", 201, "/v1/items/authz-item/reports", {"json": {"reason": "spam"}}),
    ("POST", "/v1/items/{item_id}/flags"): Row("operator", 201, "/v1/items/authz-item/flags", {"json": {"category": "spam", "confidence": 0.2}}),
    ("POST", "/v1/escalations/evaluate"): Row("admin", 200, "/v1/escalations/evaluate", {"json": {"pack": "baseline"}}),
    ("GET", "/v1/escalations"): Row("auditor", 200, "/v1/escalations", {"params": {"status": "open"}}),
    ("PUT", "/v1/items/{item_id}/block"): Row("admin", 200, "/v1/items/authz-blocked-item/block", {"json": {"reason": "court order"}}),
    ("GET", "/v1/flags"): Row("auditor", 200, "/v1/flags"),
    ("PUT", "/v1/flags/{flag_id}/active"): Row("admin", 404, "/v1/flags/2147483647/active", {"json": {"active": False}}),
    ("PUT", "/v1/items/{item_id}/availability"): Row("operator", 200, "/v1/items/authz-item/availability", {"json": {"status": "out_of_stock"}}),
    ("POST", "/v1/availability"): Row("operator", 200, "/v1/availability", {"json": {"changes": [{"item_id": "authz-item", "status": "withdrawn"}]}}),
    ("GET", "/v1/availability"): Row("auditor", 200, "/v1/availability"),
    ("POST", "/v1/escalations/{case_id}"): Row("admin", 200, "/v1/escalations/{case_id}", {"json": {"status": "triaged"}}),
    ("POST", "/v1/subjects/{subject_id}/export"): Row("admin", 200, "/v1/subjects/authz-1/export"),
    ("POST", "/v1/subjects/{subject_id}/erasure"): Row("admin", 200, "/v1/subjects/authz-erased/erasure", {"json": {"pack": "baseline"}}),
    ("POST", "/v1/requests/access"): Row("admin", 200, "/v1/requests/access", {"json": {"subject": "authz-2"}}),
    ("POST", "/v1/requests/erasure"): Row("admin", 200, "/v1/requests/erasure", {"json": {"subject": "authz-erased-2", "pack": "baseline"}}),
    ("GET", "/v1/requests"): Row("auditor", 200, "/v1/requests"),
    ("POST", "/v1/audits"): Row("auditor", 202, "/v1/audits", {"json": {"pack": "baseline", "data": AUDIT_DATA}}),
    ("GET", "/v1/audits"): Row("viewer", 200, "/v1/audits"),
    ("GET", "/v1/audits/{job_id}"): Row("viewer", 200, "/v1/audits/{job_id}"),
    ("GET", "/v1/audits/{job_id}/gate"): Row("viewer", 200, "/v1/audits/{job_id}/gate"),
    ("GET", "/v1/models"): Row("viewer", 200, "/v1/models"),
    ("GET", "/v1/models/{version}"): Row("viewer", 200, "/v1/models/{model_version}"),
    ("GET", "/v1/reports/{model_version}"): Row("auditor", 200, "/v1/reports/{model_version}"),
    ("GET", "/v1/records/processing"): Row("auditor", 200, "/v1/records/processing", {"params": {"pack": "baseline"}}),
    ("GET", "/v1/records/disclosure"): Row("viewer", 200, "/v1/records/disclosure", {"params": {"pack": "baseline"}}),
    ("GET", "/v1/packs/{name}/{version}/text"): Row("viewer", 200, "/v1/packs/authz-matrix/1.0.0/text"),
    ("GET", "/v1/trail/events"): Row("auditor", 200, "/v1/trail/events"),
    ("GET", "/v1/trail/export"): Row("auditor", 200, "/v1/trail/export"),
    ("GET", "/v1/trail/keys"): Row("viewer", 200, "/v1/trail/keys"),
    # baseline declares no analytics purpose: the auditor reaches the handler, which refuses (422, located)
    ("POST", "/v1/ope"): Row("auditor", 422, "/v1/ope", {"json": {"logged_pack": "baseline", "target_pack": "baseline"}}),
    ("GET", "/v1/ope/{report_id}"): Row("viewer", 404, "/v1/ope/9007199254740991"),
    ("POST", "/v1/monitor/runs"): Row("operator", 201, "/v1/monitor/runs", {"json": {"pack": "baseline"}}),
    ("GET", "/v1/monitor/runs"): Row("viewer", 200, "/v1/monitor/runs"),
    ("GET", "/v1/monitor/runs/{run_id}"): Row("viewer", 404, "/v1/monitor/runs/999999"),
    ("GET", "/v1/monitor/tickets"): Row("viewer", 200, "/v1/monitor/tickets"),
    ("GET", "/v1/experiments"): Row("viewer", 200, "/v1/experiments"),
    ("POST", "/v1/experiments"): Row("admin", 201, "/v1/experiments", {"content": EXPERIMENT, "headers": YAML}),
    # The operations on one experiment reach their handler, which answers that none of that name is planned.
    ("GET", "/v1/experiments/{name}"): Row("viewer", 404, "/v1/experiments/authz-none"),
    ("POST", "/v1/experiments/{name}/start"): Row("admin", 404, "/v1/experiments/authz-none/start", {"json": {}}),
    ("POST", "/v1/experiments/{name}/stop"): Row("admin", 404, "/v1/experiments/authz-none/stop"),
    ("GET", "/v1/experiments/{name}/status"): Row("auditor", 404, "/v1/experiments/authz-none/status"),
    ("POST", "/v1/experiments/{name}/analyses"): Row("auditor", 404, "/v1/experiments/authz-none/analyses", {"json": {}}),
}


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    """``value`` with ``{name}`` placeholders in its strings replaced from ``ids``."""
    if isinstance(value, str):
        return value.format(**ids) if "{" in value else value
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def ids(server) -> dict[str, Any]:
    """What the rows refer to: two stored versions of a pack, an open case, a finished audit job, a new pack version."""
    with server.client("admin", **YAML) as client:
        for version in ("1.0.0", "1.1.0"):
            assert client.post("/v1/packs", content=PACK.format(version=version)).status_code in (200, 201)
    with server.client("admin") as client:
        for n in range(3):  # the baseline pack opens a case at three reports
            assert client.post("/v1/items/authz-case-item/reports", json={"reason": f"abusive ({n})"}).status_code == 201
        evaluated = client.post("/v1/escalations/evaluate", json={"pack": "baseline"})
        assert evaluated.status_code == 200, evaluated.text
        case_id = next(c["case_id"] for c in evaluated.json()["opened"] if c["item_id"] == "authz-case-item")
        started = client.post("/v1/audits", json={"pack": "baseline", "data": AUDIT_DATA})
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        deadline = time.monotonic() + AUDIT_DEADLINE_S
        while (job := client.get(f"/v1/audits/{job_id}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, f"audit job {job_id} still {job['status']} after {AUDIT_DEADLINE_S} s"
            time.sleep(0.2)
        assert job["status"] == "succeeded", job
    # The engines' servers share the module's RECGOV_HOME: each stores a version of its own.
    new_version = f"2.0.{uuid.uuid4().int % 10**9}"
    return {"model_version": server.model_version, "case_id": case_id, "job_id": job_id, "new_version": new_version}


def _operations(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(ApiSettings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'unused.db'}"))
    return {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}


def test_the_matrix_covers_exactly_the_documented_operations(tmp_path: Path) -> None:
    operations = _operations(tmp_path)
    assert operations - set(MATRIX) == set(), "operations without a row in MATRIX: add one"
    assert set(MATRIX) - operations == set(), "rows in MATRIX for operations the API no longer has"


@pytest.mark.parametrize("operation", sorted(MATRIX), ids=lambda op: f"{op[0]} {op[1]}")
def test_every_role_no_key_and_a_revoked_key(server, ids: dict[str, Any], operation: tuple[str, str]) -> None:
    row = MATRIX[operation]
    method, path, request = operation[0], _fill(row.path, ids), _fill(row.request, ids)
    if row.minimum is PUBLIC:
        expected = {caller: row.status for caller in (None, "revoked", *ROLES)}
    else:
        expected = {None: 401, "revoked": 401} | {
            role: row.status if ROLES.index(role) >= ROLES.index(row.minimum) else 403 for role in ROLES
        }
    got = {}
    for caller in expected:
        with server.client(caller) as client:
            response = client.request(method, path, **request)
        got[caller] = response.status_code
        if response.status_code >= 400:
            assert response.headers["content-type"] == PROBLEM_JSON, (caller, response.text)
            assert response.json()["status"] == response.status_code
        if response.status_code == 401:
            assert response.headers["www-authenticate"] == "Bearer"
    assert got == expected
