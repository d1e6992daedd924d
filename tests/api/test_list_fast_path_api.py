"""The list route's direct path over real HTTP, on SQLite and PostgreSQL: the same answers as FastAPI's own path.

A list request in the usual shape (``Content-Type: application/json``, a bearer token, a body orjson reads and
the request model validates) reaches the endpoint without FastAPI's dependency solving
(:class:`governance.api.routes.recommendations.KeyFirstRoute`). For well-formed requests (three packs, with and
without ``Sec-GPC: 1``, a TC string and a region) and for broken ones (bodies that do not parse or validate,
other content types and encodings, no key, another scheme, a wrong key, a role without the scope), each answer
with the direct path is compared byte for byte with the answer FastAPI's path gives (this decision's id and time
put aside), and which path took each request is checked, so that no comparison is of one path with itself.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from served_packs import list_requests, served_packs
from tc_strings import tc_string

from governance.api.routes import recommendations

VENDOR = 755
GRANTS = tc_string(purposes={1, 5, 6}, vendors={VENDOR})
STORED = "eu-fast-tcf@1.0.0"


@pytest.fixture(scope="module")
def packs(server) -> list[str]:  # noqa: ANN001
    return served_packs(server, "eu-fast-tcf", VENDOR)


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the direct path took each request since (True) or left it to FastAPI's path (False)."""
    seen: list[bool] = []
    direct = recommendations._direct

    async def counted(request):  # noqa: ANN001, ANN202
        found = await direct(request)
        seen.append(found is not None)
        return found

    monkeypatch.setattr(recommendations, "_direct", counted)
    return seen


def _post(client, content: bytes, headers: dict[str, str]) -> tuple[int, bytes, list[tuple[str, str]]]:  # noqa: ANN001
    answer = client.post("/v1/recommendations", content=content, headers=headers)
    body = answer.content
    if answer.status_code == 200:
        found = answer.json()
        body = body.replace(found["decision_id"].encode(), b"<id>").replace(found["decided_at"].encode(), b"<at>")
    kept = [(name, value) for name, value in answer.headers.multi_items() if name not in ("date", "content-length")]
    return answer.status_code, body, kept


def _both(client, content: bytes, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN202
    monkeypatch.setattr(recommendations, "FAST_PATH", True)
    direct = _post(client, content, headers)
    monkeypatch.setattr(recommendations, "FAST_PATH", False)
    reference = _post(client, content, headers)
    monkeypatch.setattr(recommendations, "FAST_PATH", True)
    return direct, reference


def test_well_formed_lists_take_the_direct_path_with_fastapis_answers(server, packs, taken, monkeypatch) -> None:  # noqa: ANN001
    base: list[tuple[dict[str, Any], dict[str, str]]] = [({}, {}), ({}, {"Sec-GPC": "1"}), ({"region": "EU"}, {})]
    requests = list_requests(server, packs, lambda pack: base + ([({"tcf": GRANTS}, {})] if pack == STORED else []), first=500, lengths=(5,))
    with server.client("operator") as client:
        auth = {"Authorization": client.headers["Authorization"], "Content-Type": "application/json"}
        for body, headers in requests:  # first answers: a signal recorded, an engine built
            assert _post(client, json.dumps(body).encode(), {**auth, **headers})[0] == 200, body
        del taken[:]
        for body, headers in requests:
            direct, reference = _both(client, json.dumps(body).encode(), {**auth, **headers}, monkeypatch)
            assert direct[0] == 200, (body, direct[1])
            assert direct == reference, (body, headers)
    assert taken == [True] * len(requests), "every well-formed list went the direct way (the reference never asks it)"


BROKEN: list[tuple[str, bytes, dict[str, str]]] = [
    ("not JSON", b'{"subject": ', {}),
    ("empty body", b"", {}),
    ("an array", b'[{"subject": "u000001"}]', {}),
    ("NaN", b'{"subject": "u000001", "k": NaN}', {}),
    ("an integer past 64 bits", b'{"subject": "u000001", "k": 123456789012345678901234567890}', {}),
    ("an unknown field", b'{"subject": "u000001", "colour": "red"}', {}),
    ("no subject", b'{"k": 5}', {}),
    ("k of 0", b'{"subject": "u000001", "k": 0}', {}),
    ("k as a string", b'{"subject": "u000001", "k": "7"}', {}),
    ("a subject with a tab", b'{"subject": "u\\t1"}', {}),
    ("a byte-order mark", b'\xef\xbb\xbf{"subject": "u000001"}', {}),
    ("UTF-16", '{"subject": "u000001", "pack": "eu-gdpr-dsa"}'.encode("utf-16"), {}),
    ("a lone surrogate", b'{"subject": "\\ud800"}', {}),
    ("duplicate keys", b'{"subject": "nobody", "subject": "u000001", "pack": "eu-gdpr-dsa"}', {}),
    ("a charset parameter", b'{"subject": "u000001", "pack": "eu-gdpr-dsa"}', {"Content-Type": "application/json; charset=utf-8"}),
    ("a +json type", b'{"subject": "u000001", "pack": "eu-gdpr-dsa"}', {"Content-Type": "application/vnd.list+json"}),
    ("text/plain", b'{"subject": "u000001"}', {"Content-Type": "text/plain"}),
    ("no content type", b'{"subject": "u000001"}', {"Content-Type": ""}),
    ("no key", b'{"subject": "u000001"}', {"Authorization": ""}),
    ("another scheme", b'{"subject": "u000001"}', {"Authorization": "Basic dXNlcjpwYXNz"}),
    ("a scheme with no token", b'{"subject": "u000001"}', {"Authorization": "Bearer"}),
    ("an unknown key", b'{"subject": "u000001"}', {"Authorization": "Bearer rgk_unknown"}),
    ("an unknown key and a broken body", b'{"k": 0}', {"Authorization": "Bearer rgk_unknown"}),
]

DIRECT = {"duplicate keys", "an unknown key"}  # read and validated as FastAPI reads them (the last key wins); the key is the route's


@pytest.mark.parametrize(("case", "content", "headers"), BROKEN, ids=[case for case, _, _ in BROKEN])
def test_other_requests_get_fastapis_answers(server, packs, taken, monkeypatch, case: str, content: bytes, headers: dict[str, str]) -> None:  # noqa: ANN001
    with server.client("operator") as keyed:
        sent = {"Authorization": keyed.headers["Authorization"], "Content-Type": "application/json", **headers}
    sent = {name: value for name, value in sent.items() if value}
    if b"model_version" not in content and content.startswith(b"{") and b"u000001" in content and "UTF" not in case:
        content = content[:-1] + f', "model_version": "{server.model_version}"}}'.encode()
    with httpx.Client(base_url=str(keyed.base_url), timeout=60) as client:  # only the headers given here
        direct, reference = _both(client, content, sent, monkeypatch)
    assert direct == reference, case
    assert taken[0] is (case in DIRECT), (case, taken)


@pytest.mark.parametrize("body_ok", [True, False], ids=["valid body", "broken body"])
def test_a_role_without_the_lists_scope_is_refused_alike(server, taken, monkeypatch, body_ok: bool) -> None:  # noqa: ANN001
    body = {"subject": "u000001", "k": 3, "model_version": server.model_version} if body_ok else {"subject": "u000001", "k": 0}
    with server.client("viewer") as client:
        direct, reference = _both(client, json.dumps(body).encode(), {"Content-Type": "application/json"}, monkeypatch)
    assert direct[0] == 403 and direct == reference
    assert taken[0] is body_ok


def test_a_body_past_the_limit_sent_without_a_length_is_the_same_413(server, taken, monkeypatch) -> None:  # noqa: ANN001
    """Chunked, with no Content-Length to refuse it by: the limit stops the read on either path, answered alike."""
    limit = server.app.state.settings.max_body_bytes
    big = b'{"subject": "u000001", "pad": "' + b"x" * (limit + 10) + b'"}'

    def chunks():  # noqa: ANN202 - a generator body: httpx sends it chunked
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    with server.client("operator") as keyed:
        headers = {"Authorization": keyed.headers["Authorization"], "Content-Type": "application/json"}
    answers = []
    with httpx.Client(base_url=str(keyed.base_url), timeout=60) as client:
        for fast in (True, False):
            monkeypatch.setattr(recommendations, "FAST_PATH", fast)
            answer = client.post("/v1/recommendations", content=chunks(), headers=headers)
            answers.append((answer.status_code, answer.content))
    assert answers[0] == answers[1] and answers[0][0] == 413, answers[0]
    assert taken == [], "the read stopped inside the direct path, before it could decide anything"
