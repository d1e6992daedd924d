"""``POST /v1/consent-state`` and ``GET /v1/datasets`` over real HTTP, on SQLite and PostgreSQL.

The consent state is what a DPO reads of one person under a pack: each
purpose's verdict must be the pack's judgement of the records (worked by hand
below), the raw id must appear in no URL, no answer and no trail event, and the
read itself must be on the trail. The data sets are what an audit asked for over
the API may name: a file listed as usable must be one such an audit then reads.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from audits.models import TrailEvent

PACK = "eu-gdpr-dsa"  # personalization: opt-in (consent); analytics: opt-out (legitimate interest)
RAW = "dpo-lookup-subject-7"


def _trail(server) -> list[TrailEvent]:  # noqa: ANN001
    with server.store.session() as session:
        return list(session.scalars(select(TrailEvent).order_by(TrailEvent.seq)))


def test_a_subjects_consent_is_judged_under_the_named_pack_and_the_read_is_on_the_trail(server) -> None:  # noqa: ANN001
    with server.client("operator") as client:
        granted = client.post("/v1/consent", json={"subject": RAW, "purpose": "personalization", "status": "granted", "basis": "consent",
                                                   "source": "api", "pack": PACK})  # fmt: skip
        assert granted.status_code == 201, granted.text
        objected = client.post("/v1/consent", json={"subject": RAW, "purpose": "analytics", "status": "objected", "basis": "legitimate_interest",
                                                    "source": "api", "pack": PACK})  # fmt: skip
        assert objected.status_code == 201, objected.text
        answer = client.post("/v1/consent-state", json={"subject": RAW, "pack": PACK})
        unknown = client.post("/v1/consent-state", json={"subject": "never-seen-subject", "pack": PACK})
    assert answer.status_code == 200, answer.text
    state = answer.json()
    verdicts = {v["purpose"]: v["allowed"] for v in state["verdicts"]}
    # By hand: a grant of the opt-in purpose allows it; an objection to the opt-out purpose stops it.
    assert verdicts["personalization"] is True and verdicts["analytics"] is False
    assert {r["purpose"]: r["status"] for r in state["in_force"]} == {"personalization": "granted", "analytics": "objected"}
    assert state["pack"]["pack"] == PACK and state["subject"] and state["subject"] != RAW
    assert RAW not in answer.text
    # Nobody on record: the opt-in purpose needs a grant, the opt-out one holds until an objection; no pseudonym made.
    assert unknown.status_code == 200
    assert unknown.json()["subject"] is None and unknown.json()["history"] == []
    assert {v["purpose"]: v["allowed"] for v in unknown.json()["verdicts"]} == {"personalization": False, "analytics": True}
    events = _trail(server)
    reads = [e for e in events if e.action == "api.consent.state.read"]
    assert [e.subject for e in reads[-2:]] == [state["subject"], None]
    assert reads[-1].actor.startswith(f"key:{server.key_ids['operator']}:")
    assert all(RAW not in json.dumps([e.subject, e.objects, e.payload], default=str) for e in events)


def test_consent_state_refuses_other_roles_unknown_packs_and_broken_bodies_and_records_nothing(server) -> None:  # noqa: ANN001
    before = len(_trail(server))
    with server.client("auditor") as client:
        assert client.post("/v1/consent-state", json={"subject": RAW, "pack": PACK}).status_code == 403
    with server.client("operator") as client:
        missing = client.post("/v1/consent-state", json={"subject": RAW, "pack": "no-such-pack"})
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
        assert RAW not in missing.text
        for body in ({"subject": RAW}, {"subject": "", "pack": PACK}, {"subject": RAW, "pack": PACK, "extra": 1}, {"subject": "a\nb", "pack": PACK}):
            refused = client.post("/v1/consent-state", json=body)
            assert refused.status_code == 422, body
            assert RAW not in refused.text
        assert client.get("/v1/consent-state").status_code == 405
    assert not [e for e in _trail(server)[before:] if e.action == "api.consent.state.read"]


def test_the_data_sets_an_audit_may_use_are_the_ones_an_audit_reads(server) -> None:  # noqa: ANN001
    data = server.home / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "events.csv").write_text("user_id,item_id,timestamp\nu1,i1,2026-01-01T00:00:00Z\nu2,i1,2026-01-02T00:00:00Z\n")
    (data / "notes.bin").write_bytes(b"\x00\x01")
    (data / ".hidden.csv").write_text("user_id,item_id\n")
    with server.client("viewer") as client:
        assert client.get("/v1/datasets").status_code == 403
    with server.client("auditor") as client:
        listed = client.get("/v1/datasets")
    assert listed.status_code == 200, listed.text
    body = listed.json()
    entries = {e["name"]: e for e in body["entries"]}
    assert entries["events.csv"]["usable"] is True and entries["events.csv"]["layout"] == "event log"
    assert entries["notes.bin"]["usable"] is False
    assert ".hidden.csv" not in entries
    assert str(server.home) not in listed.text  # server paths are not shown to an auditor
    # The model the server trained on synthetic data: recorded, and an audit could load it again by that name.
    synthetic = [r for r in body["recorded"] if r["source"].startswith("synthetic")]
    assert synthetic and synthetic[0]["audit_data"] == synthetic[0]["source"] and synthetic[0]["why_not"] is None
    assert body["synthetic"]["max_interactions"] > 0
