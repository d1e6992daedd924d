"""Governed lists over real HTTP, on SQLite and PostgreSQL: the same request gets the same answer on every path.

A list is decided on the event loop when its pack, model and engine are loaded (the key read as a plain row,
the pack's file found from what its name alone says plus a ``stat``), and on a worker thread when something
must be loaded first (the pack parsed again from its file, as after a restart). For a set of requests (three
packs, a stored one among them; with and without ``Sec-GPC: 1`` and a TC string; subjects with and without
consent on record; several lengths and a region) both answers are compared byte for byte: the JSON body (its
``decision_id`` and ``decided_at``, which name this decision, put aside), the headers, the decision record and
the call's trail record. Which path decided each is checked too, so that the comparison is never of one path
with itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from served_packs import list_requests, served_packs
from tc_strings import tc_string

from audits.models import DecisionRecord, TrailEvent
from audits.sealing import open_decisions
from governance.api.services import engines
from governance.api.services.engines import _pack_path, engines_of
from governance.packs import SHIPPED_PACKS, resolve_pack

VENDOR = 755
GRANTS = tc_string(purposes={1, 5, 6}, vendors={VENDOR})
REFUSES = tc_string(purposes={1, 2}, vendors={VENDOR})
STORED = "eu-answers-tcf@1.0.0"


@pytest.fixture(scope="module")
def packs(server) -> list[str]:  # noqa: ANN001
    """The packs served: a shipped opt-out pack, the shipped EU pack, and the EU pack stored with a vendor id."""
    return served_packs(server, "eu-answers-tcf", VENDOR)


def _requests(server, packs: list[str]) -> list[tuple[dict[str, Any], dict[str, str]]]:  # noqa: ANN001
    """(body, extra headers) of every request compared. Each signal has subjects of its own (one granted
    personalization beforehand, one with no record), so that a request's first answer leaves their consent
    as every later one finds it."""
    signals: list[tuple[dict[str, Any], dict[str, str]]] = [({}, {}), ({}, {"Sec-GPC": "1"}), ({"region": "EU"}, {})]
    tcf = [({"tcf": GRANTS}, {}), ({"tcf": REFUSES}, {"Sec-GPC": "1"})]
    return list_requests(server, packs, lambda pack: signals + (tcf if pack == STORED else []), first=100, lengths=(1, 7))


def _answer(server, client, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes, list[tuple[str, str]], dict[str, Any]]:  # noqa: ANN001
    """The status, the body and headers (this decision's id and time put aside) and the records the list wrote."""
    answer = client.post("/v1/recommendations", content=json.dumps(body), headers={"Content-Type": "application/json", **headers})
    assert answer.status_code == 200, answer.text
    decision_id, decided_at = answer.json()["decision_id"], answer.json()["decided_at"]
    content = answer.content.replace(decision_id.encode(), b"<id>").replace(decided_at.encode(), b"<at>")
    kept = [(name, value) for name, value in answer.headers.multi_items() if name not in ("date", "content-length")]
    with server.store.snapshot() as connection:
        row = connection.execute(select(DecisionRecord).where(DecisionRecord.decision_id == decision_id)).one()._mapping
        trail = connection.execute(select(TrailEvent).where(TrailEvent.action == "api.recommendations.create").order_by(TrailEvent.seq.desc()).limit(1)).one()._mapping
        # The slate is sealed under the subject's key, with a nonce of its own: compared as it opens.
        (opened,) = open_decisions(connection, [(decision_id, row["subject"], row["slate"], row["context"])])
    assert opened is not None, body
    record = {name: row[name] for name in ("subject", "mode", "pack_name", "pack_version", "pack_hash", "model_version")}
    record["slate"], context = opened
    record["context"] = {name: value for name, value in context.items() if name != "latency_ms"}
    record["stored_context"] = {name: value for name, value in row["context"].items() if name != "latency_ms"}
    record["trail"] = {name: trail[name] for name in ("actor", "subject")}
    record["trail_payload"] = json.loads(trail["payload"])
    record["trail_objects"] = sorted(json.loads(trail["objects"]))
    return answer.status_code, content, kept, record


def test_every_path_gives_the_same_answer_byte_for_byte(server, packs: list[str]) -> None:  # noqa: ANN001
    cache = engines_of(server.app)
    requests = _requests(server, packs)
    with server.client("operator") as client:
        for body, headers in requests:  # the first of each: a consent signal recorded, the engine built
            _answer(server, client, body, headers)
        for body, headers in requests:
            cache._packs.clear()  # the pack parsed again from its file, on a worker thread
            engines._ref_path.cache_clear()
            threads_before = cache.decided_on_threads
            on_thread = _answer(server, client, body, headers)
            assert cache.decided_on_threads == threads_before + 1, (body, headers)
            inline_before = cache.decided_inline
            on_loop = _answer(server, client, body, headers)  # everything loaded: decided on the event loop
            assert cache.decided_inline == inline_before + 1, (body, headers)
            for part, (a, b) in zip(("status", "body", "headers", "records"), zip(on_loop, on_thread, strict=True), strict=True):
                assert a == b, (part, body, headers)


def _pack_path_as_resolved(packs_dir: Path, ref: str) -> Path | None:
    """What the file read for ``ref`` is by ``resolve_pack`` and the stored packs' layout, step by step."""
    if "@" in ref:
        name, version = ref.split("@", 1)
        if "/" in name or "/" in version or ".." in name or ".." in version:
            return None
        return packs_dir / name / f"{version}.yaml"
    path = resolve_pack(ref)
    return path if path.parent == SHIPPED_PACKS else None


REFS = ["baseline", "california-ccpa", "eu-gdpr-dsa", "no-such-pack", "baseline.yaml", "x.yml", ".yaml", "..", "a@1.0.0", "a/b@1", "a@..", "a@b/c",
        str(SHIPPED_PACKS / "baseline.yaml"), "policies/baseline.yaml"]  # fmt: skip


@pytest.mark.parametrize("ref", REFS)
def test_the_pack_file_is_the_one_resolve_pack_names(ref: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    engines._ref_path.cache_clear()
    assert _read(_pack_path(tmp_path / "packs", ref)) == _read(_pack_path_as_resolved(tmp_path / "packs", ref))


def _read(path: Path | None) -> Path | None:
    """The file whose (size, mtime) the engine cache keys the pack by: None for none, or one that is not there."""
    return path if path is not None and path.exists() else None


def test_a_file_named_as_a_shipped_pack_in_the_working_directory_is_not_that_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """resolve_pack takes an existing file as given: the shipped pack of that name is not the one read, then."""
    monkeypatch.chdir(tmp_path)
    engines._ref_path.cache_clear()
    assert _pack_path(tmp_path / "packs", "baseline") == SHIPPED_PACKS / "baseline.yaml"
    (tmp_path / "baseline").write_text("not a pack\n", encoding="utf-8")
    assert _pack_path(tmp_path / "packs", "baseline") is None  # asked again, though the ref's own part is cached
    assert _pack_path_as_resolved(tmp_path / "packs", "baseline") is None
