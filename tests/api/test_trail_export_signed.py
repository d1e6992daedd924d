"""The trail export over HTTP: signed only as far as the last checkpoint on request, so it verifies whole.

On a live installation events are appended all the time (every list served, every call recorded), so a
download after an admin's checkpoint almost always ends in an unsigned tail, which the auditor's default check
(and the client's) refuses. ``signed_only=true`` ends the export at the last checkpoint; its header is signed as
any export's. On SQLite and PostgreSQL (``tests/api/conftest.py``).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from audits import NewEvent, Store, append_many, verify_export
from governance.api.errors import Problem
from recgov.client import Client


def _more_events(store: Store, n: int) -> None:
    with store.session() as session:
        append_many(session, [NewEvent(actor="svc", action="decision.served", objects={"d": i}, payload={"i": i}) for i in range(n)])


def test_an_export_signed_only_to_the_last_checkpoint_verifies_whole(server, tmp_path: Path) -> None:
    with server.client("admin") as http:
        signed = http.post("/v1/trail/checkpoint")
        assert signed.status_code == 201, signed.text
        keys = http.get("/v1/trail/keys").json()["keys"]
    _more_events(server.store, 3)  # served after the checkpoint
    pems = [k["public_key_pem"] for k in keys]
    with server.client("auditor") as http:
        whole = http.get("/v1/trail/export")
        upto = http.get("/v1/trail/export", params={"signed_only": "true"})
    assert whole.status_code == 200 and upto.status_code == 200, (whole.text, upto.text)
    (tmp_path / "whole.jsonl").write_bytes(whole.content)
    (tmp_path / "signed.jsonl").write_bytes(upto.content)
    report = verify_export(tmp_path / "whole.jsonl", pems)
    assert (report.intact, report.reason) == (False, "unsigned_tail")
    report = verify_export(tmp_path / "signed.jsonl", pems)
    assert report.intact, report.summary()
    assert report.head_seq == report.signed_through == signed.json()["seq"] == int(upto.headers["x-trail-head-seq"])
    assert int(whole.headers["x-trail-head-seq"]) >= report.head_seq + 3


def test_signed_only_without_any_checkpoint_is_a_409(store: Store, recgov_home: Path) -> None:
    from governance.api.routes.trail import _export

    _more_events(store, 2)
    with pytest.raises(Problem) as refused:
        _export(store, signed_only=True)
    assert refused.value.status == 409 and "no checkpoint was signed yet" in str(refused.value.detail)


def test_the_client_asks_for_an_export_signed_only_to_the_last_checkpoint(tmp_path: Path) -> None:
    asked = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        return httpx.Response(200, content=b"{}\n")

    with Client("http://recgov.test", "rgk_test", transport=httpx.MockTransport(answer)) as client:
        client.download_trail_export(tmp_path / "a.jsonl")
        client.download_trail_export(tmp_path / "b.jsonl", signed_only=True)
    assert asked == [{}, {"signed_only": "true"}]
