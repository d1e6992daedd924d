"""``GET /v1/requests`` page by page: a cursor, a bounded page, the filters on every page, a located 422.

Real uvicorn on SQLite and PostgreSQL (``tests/api/conftest.py``). Requests are
listed oldest first by the time they were made (a request may be recorded
after it was made: its id is then later than its place), ties by id; following
``next_after`` reads each request exactly once, whatever the page size.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from audits import list_requests, open_request, update_request
from governance.api.errors import PROBLEM_JSON


@pytest.fixture(scope="module")
def opened(server) -> list[int]:
    """Eleven requests: made out of id order, two at the same moment, some open past their deadline, some completed."""
    now = datetime.now(UTC)
    same = now - timedelta(days=20)
    made = [now - timedelta(days=2), now - timedelta(days=45), same, same, now - timedelta(days=1), now - timedelta(days=60),
            now - timedelta(days=5), same, now - timedelta(days=33), now - timedelta(hours=3), now - timedelta(days=50)]  # fmt: skip
    ids = []
    with server.store.session() as session:
        for n, when in enumerate(made):
            kind = ("access", "erasure", "objection")[n % 3]
            row = open_request(session, subject_id=f"paging-subject-{n}", kind=kind, deadline_days=30, requested_at=when)
            if n % 4 == 1:
                update_request(session, row.id, status="in_progress")
                update_request(session, row.id, status="completed", result={"done": True})
            ids.append(row.id)
    return ids


def _stored(server, **filters) -> list[int]:
    with server.store.session() as session:
        return [r["id"] for r in list_requests(session, **filters)]


def _all_pages(http, limit: int, **params) -> list[int]:
    seen, after, pages = [], 0, 0
    while after is not None:
        response = http.get("/v1/requests", params={**params, "limit": limit, "after": after})
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["requests"]) <= limit
        seen += [r["id"] for r in page["requests"]]
        after, pages = page["next_after"], pages + 1
        assert pages <= 100
    return seen


@pytest.mark.parametrize("limit", [1, 2, 3, 1000])
def test_the_cursor_reads_every_request_once_oldest_first(server, opened, limit) -> None:
    expected = _stored(server)
    assert sorted(opened) != [i for i in expected if i in opened], "the fixture makes requests out of id order"
    with server.client("auditor") as http:
        assert _all_pages(http, limit) == expected


@pytest.mark.parametrize(
    "params", [{"kind": "erasure"}, {"status": "completed"}, {"status": "received", "kind": "access"}, {"overdue": "true"}]
)
def test_the_filters_hold_on_every_page(server, opened, params) -> None:
    moment = datetime.now(UTC)
    filters = {k: v for k, v in params.items() if k != "overdue"} | ({"overdue_at": moment} if "overdue" in params else {})
    expected = _stored(server, **filters)
    assert expected, params
    with server.client("auditor") as http:
        assert _all_pages(http, 2, **params) == expected


def test_the_default_page_is_bounded_and_says_the_next(server, opened) -> None:
    with server.client("auditor") as http:
        first = http.get("/v1/requests").json()
        assert len(first["requests"]) <= 100 and set(first) == {"requests", "next_after"}
        one = http.get("/v1/requests", params={"limit": 1}).json()
        assert one["next_after"] == one["requests"][0]["id"]
        assert http.get("/v1/requests", params={"limit": 1000}).json()["next_after"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"after": -1}, "after"), ({"after": "x"}, "after"), ({"after": 2**31}, "after"), ({"overdue": "maybe"}, "overdue")],
)
def test_a_bad_parameter_is_a_422_naming_it(server, opened, params, field) -> None:
    with server.client("auditor") as http:
        response = http.get("/v1/requests", params=params)
    assert response.status_code == 422 and response.headers["content-type"].startswith(PROBLEM_JSON)
    assert {("query", field)} == {(e["location"], e["field"]) for e in response.json()["errors"]}


def test_a_cursor_that_names_no_request_is_a_422_naming_after(server, opened) -> None:
    with server.client("auditor") as http:
        before = http.get("/v1/requests", params={"limit": 1000}).json()
        response = http.get("/v1/requests", params={"after": max(opened) + 10_000})
        assert response.status_code == 422 and response.headers["content-type"].startswith(PROBLEM_JSON)
        problem = response.json()
        assert {"location": "query", "field": "after"}.items() <= problem["errors"][0].items()
        assert f"no subject request {max(opened) + 10_000}" in problem["detail"]
        assert http.get("/v1/requests", params={"limit": 1000}).json() == before  # nothing changed


def test_the_largest_id_the_column_holds_is_a_cursor_refused_in_a_422_not_a_database_error(server, opened) -> None:
    """PostgreSQL's integer column: a cursor past it was a 500 (found by the fuzz); the largest it holds is looked up."""
    with server.client("auditor") as http:
        response = http.get("/v1/requests", params={"after": 2**31 - 1})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "after"


def test_a_viewer_is_refused(server) -> None:
    with server.client("viewer") as http:
        assert http.get("/v1/requests", params={"limit": 1}).status_code == 403
