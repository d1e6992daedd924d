"""Schema-driven fuzzing: schemathesis over every operation of the app's own OpenAPI document.

The schema is read from the running server (real uvicorn, real HTTP, on SQLite
and on PostgreSQL) and every operation gets a bounded, reproducible batch of
generated requests (``derandomize=True``), schema-valid and schema-violating
ones, sent with an admin key so that the handlers are reached. Every response
must pass every schemathesis check that applies to a single request:

* ``not_a_server_error``: no 5xx, ever;
* ``status_code_conformance``: the status is one the document declares;
* ``content_type_conformance``: so is the media type (errors: ``application/problem+json``);
* ``response_headers_conformance``: declared response headers are there, as declared;
* ``response_schema_conformance``: the body matches the declared schema;
* ``negative_data_rejection``: a request the schema forbids is refused (4xx);
* ``positive_data_acceptance``: a request the schema allows is not refused as
  malformed, but for the operations of :data:`STATEFUL_422` (below);
* ``missing_required_header``: a request without a required header is refused;
* ``unsupported_method``: a method the path does not document is a 405 with ``Allow``;
* ``allow_header_conformance``: ``Allow`` (on ``OPTIONS`` and 405) names the documented methods;
* ``ignored_auth``: an operation that declares security refuses a request without it.

The checks that cannot apply: ``use_after_free`` and ``ensure_resource_availability``
follow a created resource through OpenAPI links in a stateful run; the document
declares no links and the API deletes nothing (erasure is a recorded request, not
a DELETE). ``object_level_authorization`` needs resources owned by two callers
in a stateful run; the API has no per-caller resources (access is by role, held
to the matrix of ``test_authz_matrix``).

The document states what a JSON Schema can: the harm categories and consent
purposes of each pack the server knows (completed when it is served, see
:mod:`governance.api.schemas.vocabulary`), the evidence each consent source
claims; a request that conflicts with the store's state (a promotion out of
order, a rollback with nothing in production) is a 409, which
``positive_data_acceptance`` accepts. A few operations still refuse schema-valid
requests on what no schema can state (a pack's validity, a consent export's
columns, a TC string's bits, a data file's presence, ``since`` after ``until``):
there a 422 of the kinds listed in :data:`STATEFUL_422` is a rejection on content,
not a document that lies. ``schemathesis.toml`` at the repository's root excepts
the same operations, for the same reasons, from the CLI's ``--checks all``, and
:func:`test_the_reviewers_command_finds_no_failure` runs that command against
this module's server.

The module has its own server: the fuzz erases subjects and moves deployments,
which no other module should see. The tests after the fuzz check that the store
is still whole (the trail verifies) and that every operation was fuzzed past
authentication; the regression tests at the end pin each bug the fuzz found.

Beside the generated examples, schemathesis's coverage phase sends each
operation's boundary values, missing required parts and undocumented methods:
those test the document, the same on every engine, so they run on SQLite only;
PostgreSQL gets the generated examples (what reaches its store).
``RECGOV_FUZZ_EXAMPLES`` raises the number of examples per operation for a
deeper run (default 10).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from governance import packs as pack_store
from governance.api.errors import BODY_NOT_PARSED, PROBLEM_BASE, PROBLEM_JSON

EXAMPLES = int(os.environ.get("RECGOV_FUZZ_EXAMPLES", "10"))
CLI_EXAMPLES = int(os.environ.get("RECGOV_FUZZ_CLI_EXAMPLES", "5"))
"""Examples per operation of the CLI's run (the README's command uses 20; ``RECGOV_FUZZ_CLI_EXAMPLES`` raises it)."""
CONFIG = Path(__file__).resolve().parents[2] / "schemathesis.toml"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
    ignored_auth,
]
# Operations that refuse some schema-valid requests on content only the store or a pack can judge,
# with the problem types of those refusals: (method, path) -> (type suffixes, why[, which requests]).
# A marker is a problem type (after .../problems/), an ``errors`` entry's "location.field", or text of the detail.
# schemathesis.toml lets the CLI accept a 422 on the same operations, for the same reasons.
STATEFUL_422: dict[tuple[str, str], tuple[set[str], str] | tuple[set[str], str, Callable[[schemathesis.Case], bool]]] = {
    ("POST", "/v1/packs"): ({"invalid-pack"}, "any text is a string; only a valid policy pack is stored"),
    ("POST", "/v1/packs/validate"): ({"invalid-pack"}, "any text is a string; the answer says if it is a pack"),
    ("POST", "/v1/experiments"): ({"invalid-experiment"}, "any text is a string; only a valid experiment plan is frozen"),
    ("POST", "/v1/audits"): (
        {"body.data", "body.slates", "body.baseline"},
        "a data spec names a file that must be under $RECGOV_HOME/data",
    ),
    ("POST", "/v1/consent"): (
        {"consent-evidence"},
        "a TC string must decode and support the record under the pack's consent.tcf",
        lambda case: isinstance(case.body, dict) and case.body.get("source") == "tcf",
    ),
    ("POST", "/v1/consent-imports"): ({"body"}, "the upload must be a consent export (a table, its mapped columns)"),
    ("POST", "/v1/feedback"): (
        {"feedback-refused", "query.window"},
        "a window of at most 365 days; a time must not be in the future, a dwell needs seconds, a decision id must name a list served to the subject",
    ),
    ("POST", "/v1/feedback/imports"): ({"body", "invalid-data", "query.window", "query.map"}, "the upload must be a table of outcome events (its rows, its columns)"),
    ("POST", "/v1/recommendations"): ({"consent-signal"}, "a TC string must decode, and meet the pack"),
    ("POST", "/v1/deployments/{model_version}/promote"): ({"invalid-data"}, "the gate's data must be a dataset under $RECGOV_HOME/data"),
    ("GET", "/v1/trail/events"): ({"is after 'until'"}, "JSON Schema cannot compare two parameters (since, until)"),
    ("GET", "/v1/requests"): ({"query.after"}, "the cursor must be the id of a subject request the store holds"),
    ("POST", "/v1/monitor/runs"): ({"invalid-data"}, "a pass must not end in the future (a schema has no now); its data must be a dataset under $RECGOV_HOME/data"),
    ("PUT", "/v1/items/{item_id}/availability"): (
        {"invalid-availability"},
        "an item id of a feed must be printable text (no format, private-use or unassigned characters): Unicode categories have no pattern in the document's regex dialect",
    ),
    ("POST", "/v1/availability"): (
        {"invalid-availability"},
        "each change's item id must be printable text (no format, private-use or unassigned characters)",
    ),
    ("POST", "/v1/items/{item_id}/reports"): (
        {"invalid-item", "item-id-spelling", "not-a-new-item", "must not carry a raw subject id"},
        "an item id must be printable text (no format, private-use or unassigned characters), and not a near spelling of a catalogue's id (nor, claimed new, one a catalogue holds); a report whose item id is the reporter's own id would store the raw id",
    ),
    ("POST", "/v1/items/{item_id}/flags"): (
        {"invalid-item", "item-id-spelling", "not-a-new-item"},
        "an item id must be printable text (no format, private-use or unassigned characters), and not a near spelling of a catalogue's id (nor, claimed new, one a catalogue holds: the store's models say which)",
    ),
    ("PUT", "/v1/items/{item_id}/block"): (
        {"invalid-item", "item-id-spelling", "not-a-new-item"},
        "an item id must be printable text (no format, private-use or unassigned characters), and not a near spelling of a catalogue's id (nor, claimed new, one a catalogue holds: the store's models say which)",
    ),
    ("POST", "/v1/ope"): (
        {"ope-refused"},
        "the logged lists must overlap the target (a logging policy, enough effective samples) and the packs must re-rank alike and declare analytics",
    ),
}
# Operations whose status codes are not held to the document (none: every route documents its problems).
UNDOCUMENTED_STATUS: set[tuple[str, str]] = set()

# server URL -> (method, path template) -> statuses seen; filled by the fuzz, read by the test after it.
seen: dict[str, dict[tuple[str, str], Counter[int]]] = defaultdict(lambda: defaultdict(Counter))


@pytest.fixture(scope="module")
def api_schema(server) -> schemathesis.BaseSchema:
    """The OpenAPI document as the running server serves it."""
    loaded = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    # Unknown query parameters and headers are ignored, as HTTP lets them be: the document cannot forbid them.
    loaded.config.generation.update(allow_extra_parameters=False)
    if not server.db_url.startswith("sqlite"):  # the document's boundaries are the same on every engine: checked once
        loaded.config.phases.coverage.enabled = False
    return loaded


@schemathesis.serializer("application/yaml")
def _yaml_text(ctx: Any, value: Any) -> bytes:
    """A pack body is YAML text: a string is sent as it is, not as a YAML document holding one string."""
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else yaml.safe_dump(value).encode()


schema = schemathesis.pytest.from_fixture("api_schema")


def _with_known_ids(case: schemathesis.Case, server, n: int) -> None:
    """Every other schema-valid case names the trained model version, so the fuzz also reaches past the 404s."""
    if n % 2 or case.meta is None or not case.meta.generation.mode.is_positive:
        return
    if case.path_parameters and "model_version" in case.path_parameters:
        case.path_parameters["model_version"] = server.model_version
    if isinstance(case.body, dict) and isinstance(case.body.get("model_version"), str):
        case.body["model_version"] = server.model_version


def test_regression_a_rollback_with_nothing_in_production_is_a_409_conflict(server) -> None:
    """It was a 422, which says the request is malformed; the same request is right once a version is in production.

    Before the fuzz (which may promote), on the module's fresh store: nothing is in production.
    """
    with server.client("admin") as client:
        problem = _problem(client.post("/v1/deployments/rollback"), 409)
    assert problem["type"].endswith("/deployment-state") and "nothing to roll back to" in problem["detail"]


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_no_operation_answers_5xx_or_off_its_schema(case: schemathesis.Case, server) -> None:
    operation = (case.method.upper(), case.operation.path)
    statuses = seen[server.url][operation]
    _with_known_ids(case, server, sum(statuses.values()))
    excluded = [status_code_conformance] if operation in UNDOCUMENTED_STATUS else []
    if operation == ("GET", "/ready"):  # 503 is its documented answer while a helper process (re)starts
        excluded.append(not_a_server_error)
    headers = {"Authorization": f"Bearer {server.tokens['admin']}"}
    response = case.call(headers=headers, timeout=60)
    statuses[response.status_code] += 1
    if _refused_on_content(operation, case, response):
        excluded.append(positive_data_acceptance)
    case.validate_response(response, checks=[c for c in CHECKS if c not in excluded], headers=headers)


def _refused_on_content(operation: tuple[str, str], case: schemathesis.Case, response) -> bool:
    """A 422 of a kind :data:`STATEFUL_422` lists for the operation (and the request): a refusal the schema cannot state."""
    entry = STATEFUL_422.get(operation)
    if response.status_code != 422 or entry is None or (len(entry) > 2 and not entry[2](case)):
        return False
    kinds = entry[0]
    problem = response.json()
    found = {problem["type"].removeprefix(PROBLEM_BASE)}
    found |= {f"{e.get('location')}.{e.get('field', '')}".rstrip(".") for e in problem.get("errors") or ()}
    return bool(found & kinds) or any(marker in problem["detail"] for marker in kinds)


def _schemathesis() -> str:
    """The schemathesis CLI of the environment the tests run in."""
    beside = Path(sys.executable).parent / "schemathesis"
    found = str(beside) if beside.is_file() else shutil.which("schemathesis")
    assert found, "the schemathesis CLI is not installed"
    return found


def test_the_reviewers_command_finds_no_failure(server) -> None:
    """The README's command as a reviewer runs it: ``--checks all`` with the repository's schemathesis.toml, zero failures.

    ``--checks all`` adds what the in-suite fuzz cannot run on one request (the
    stateful phase, its links and ``use_after_free``, ``ensure_resource_availability``,
    ``object_level_authorization``), and the CLI's own phases (examples, coverage,
    fuzzing, stateful). The seed is fixed so a failure reproduces; the document is
    the same on every engine, so the run is held on SQLite (the in-suite fuzz
    above reaches PostgreSQL's store).
    """
    if not server.db_url.startswith("sqlite"):
        pytest.skip("the CLI's run checks the document, the same on every engine: held on SQLite")
    command = [
        _schemathesis(), "--no-color", "--config-file", str(CONFIG), "run", f"{server.url}/openapi.json",
        "--checks", "all", "-H", f"Authorization: Bearer {server.tokens['admin']}",
        "--max-examples", str(CLI_EXAMPLES), "--seed", "20261205", "--generation-deterministic",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    summary = done.stdout[-6000:]
    assert done.returncode == 0, summary
    last = summary.strip().splitlines()[-1]
    assert "passed" in summary and "failure" not in last and "error" not in last, summary


def test_every_operation_was_fuzzed_past_authentication(server) -> None:
    """The admin key got past authentication everywhere: each operation answered something besides 401 or 403."""
    with server.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    operations = {(method.upper(), path) for path, item in paths.items() for method in item}
    fuzzed = seen[server.url]
    assert operations - set(fuzzed) == set(), "operations the fuzz never called"
    unreached = {op: dict(statuses) for op, statuses in fuzzed.items() if not set(statuses) - {401, 403}}
    assert unreached == {}, "operations whose every fuzzed request stopped at authentication"
    assert any(200 <= status < 300 for statuses in fuzzed.values() for status in statuses)


def test_the_store_is_whole_after_the_fuzz(server) -> None:
    """Erasures, consent records and deployments made by the fuzz left a trail that still verifies."""
    with server.client("auditor") as client:
        health = client.get("/health")
        report = client.get("/v1/trail/verify")
        missing = client.get("/v1/lineage/no-such-model")
    assert health.status_code == 200
    assert report.status_code == 200 and report.json()["intact"] is True, report.text
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM_JSON


# Regression tests: what the fuzz found, each pinned by the request that found it.


def _problem(response, status: int) -> dict[str, Any]:
    assert response.status_code == status and response.headers["content-type"] == PROBLEM_JSON, response.text
    return response.json()


def test_regression_a_json_body_that_is_not_utf8_is_a_422_problem_not_a_400(server) -> None:
    """FastAPI answered 400, undocumented; malformed UTF-8 JSON was already a 422."""
    with server.client("operator", **{"Content-Type": "application/json"}) as client:
        problem = _problem(client.post("/v1/recommendations", content=b"\xff\x04"), 422)
    assert problem["errors"] == [{"location": "body", "field": "", "message": BODY_NOT_PARSED, "type": "json_invalid"}]


def test_regression_nul_in_ids_and_text_is_a_422_not_a_postgresql_error(server) -> None:
    """PostgreSQL text cannot hold NUL: the driver's error was a 500 (SQLite stored it)."""
    with server.client("admin") as client:
        consent = client.post("/v1/consent", json={"subject": "a\u0000b", "purpose": "personalization", "status": "granted", "basis": "consent"})
        report = client.post("/v1/items/nul-item/reports", json={"reason": "spam\u0000"})
        in_path = client.get("/v1/consent/a%00b")
        note = client.post("/v1/escalations/1", json={"status": "triaged", "note": "\u0000"})
    for response in (consent, report, in_path, note):
        _problem(response, 422)
    assert consent.json()["errors"][0]["field"] == "subject"


def test_regression_a_case_id_beyond_the_integer_column_is_a_422(server) -> None:
    """``POST /v1/escalations/313091500807`` overflowed PostgreSQL's integer: a 500."""
    with server.client("admin") as client:
        problem = _problem(client.post("/v1/escalations/313091500807", json={"status": "triaged"}), 422)
    assert problem["errors"][0]["location"] == "path"


def test_regression_a_data_spec_the_file_system_refuses_is_a_422(server) -> None:
    """A 'data' of 5,000 zeros made ``Path.is_dir`` raise ENAMETOOLONG: a 500."""
    with server.client("admin") as client:
        response = client.post(f"/v1/deployments/{server.model_version}/promote", json={"stage": "canary", "data": "0" * 5000})
    problem = _problem(response, 422)
    assert "File name too long" in problem["detail"]


def test_promotion_reads_data_files_only_from_the_data_folder(server) -> None:
    with server.client("admin") as client:
        response = client.post(f"/v1/deployments/{server.model_version}/promote", json={"stage": "canary", "data": "/etc/passwd"})
    problem = _problem(response, 422)
    assert "outside $RECGOV_HOME/data" in problem["detail"] and "root:" not in response.text


def test_regression_numbers_and_times_are_what_the_document_says(server) -> None:
    """A Unix time for a date-time, a boolean for a number: accepted before, refused as the schema says."""
    with server.client("admin") as client:
        until = client.get("/v1/trail/events", params={"until": "0.5"})
        since = client.post("/v1/escalations/evaluate", json={"pack": "baseline", "since": 0})
        confidence = client.post("/v1/items/bool-item/flags", json={"category": "spam", "confidence": False})
        users = client.put("/v1/deployments/policy/canary", json={"pack": "baseline", "min_users": False})
        blank = client.post("/v1/items/%C2%85/reports", json={"reason": "spam"})
        iso = client.get("/v1/trail/events", params={"until": "2026-03-01T09:30:00Z"})
    for response in (until, since, confidence, users, blank):
        _problem(response, 422)
    assert iso.status_code == 200, iso.text


def test_the_document_states_what_the_handlers_check(server) -> None:
    with server.client() as client:
        document = client.get("/openapi.json").json()
    paths, schemas = document["paths"], document["components"]["schemas"]
    stage = next(p for p in paths["/v1/deployments/policy/{stage}"]["put"]["parameters"] if p["name"] == "stage")
    assert stage["schema"]["enum"] == ["canary", "production"]
    assert schemas["PromotionCreate"]["then"]["required"] == ["data"]
    assert schemas["AuditCreate"]["not"]["required"] == ["model_version", "slates"]
    for path in ("/v1/packs", "/v1/packs/validate"):
        content = paths[path]["post"]["requestBody"]["content"]
        assert set(content) == {"application/yaml"} and content["application/yaml"]["schema"] == {"type": "string"}


def test_regression_the_consent_import_has_a_path_of_its_own(server) -> None:
    """``POST /v1/consent/imports`` shared its path with a subject's history: its Allow could not say what the document did."""
    with server.client("admin") as client:
        imports = client.options("/v1/consent-imports")
        history = client.options("/v1/consent/imports")
        old = client.post("/v1/consent/imports", content="subject,purpose,status\n", headers={"Content-Type": "text/csv"})
    assert imports.status_code == 204 and imports.headers["allow"] == "OPTIONS, POST"
    assert history.status_code == 204 and history.headers["allow"] == "GET, OPTIONS"
    _problem(old, 405)
    assert old.headers["allow"] == "GET, OPTIONS"


def test_the_document_names_each_packs_vocabulary(server) -> None:
    """Flags and consent records: the document lists what each pack knows, and a pack stored later joins it."""
    baseline = (pack_store.shipped_pack_path("baseline")).read_text(encoding="utf-8")
    name = f"fuzz-vocabulary-{uuid.uuid4().hex[:8]}"  # the engines' servers share one RECGOV_HOME: a pack new to each
    text = baseline.replace("name: baseline", f"name: {name}").replace("categories: [csam,", "categories: [fuzzed-harm, csam,")
    with server.client("admin") as client:
        before = client.get("/openapi.json").json()["components"]["schemas"]
        stored = client.post("/v1/packs", content=text, headers={"Content-Type": "application/yaml"})
        assert stored.status_code in (200, 201), stored.text
        after = client.get("/openapi.json").json()["components"]["schemas"]
        ref = f"{name}@{stored.json()['pack_version']}"
        accepted = client.post("/v1/items/i-vocab/flags", json={"category": "fuzzed-harm", "confidence": 0.5, "pack": ref})
        refused = client.post("/v1/items/i-vocab/flags", json={"category": "fuzzed-harm", "confidence": 0.5})
    branches = {b["properties"]["pack"]["const"]: b["properties"]["category"]["enum"] for b in after["FlagCreate"]["anyOf"] if "const" in b.get("properties", {}).get("pack", {})}
    assert "fuzzed-harm" in branches[ref] and "fuzzed-harm" not in branches["baseline"]
    assert ref not in {b.get("properties", {}).get("pack", {}).get("const") for b in before["FlagCreate"]["anyOf"]}
    default = next(b for b in after["FlagCreate"]["anyOf"] if b.get("not") == {"required": ["pack"]})
    assert default["properties"]["category"]["enum"] == branches["baseline"]
    purposes = {b["properties"]["pack"]["const"]: b["properties"]["purpose"]["enum"] for b in after["ConsentCreate"]["anyOf"] if "const" in b.get("properties", {}).get("pack", {})}
    assert purposes["eu-gdpr-dsa"] == sorted(pack_store.load_ref(server.home / "packs", "eu-gdpr-dsa").pack.consent.purposes)
    assert accepted.status_code == 201, accepted.text
    assert _problem(refused, 422)["type"].endswith("/unknown-harm-category")
    evidence = {c["if"]["properties"]["source"]["const"]: c["then"]["properties"]["evidence"]["required"] for c in after["ConsentCreate"]["allOf"]}
    assert evidence == {"banner": ["banner_version"], "import": ["origin"], "tcf": ["tc_string"]}
