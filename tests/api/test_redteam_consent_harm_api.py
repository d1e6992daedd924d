"""Red team over real HTTP, on SQLite and PostgreSQL: consent that claims evidence brings it, and a harm flag names a
category the pack knows. Each test names the hole it pins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tc_strings import tc_string

from governance.api.errors import PROBLEM_JSON
from governance.consent.evidence import MSG_MISSING, MSG_TC_NOT_A_SOURCE

SUBJECT = "redteam-subj-4471"
VENDOR = 755
ALLOWS = tc_string(purposes={1, 5, 6}, vendors={VENDOR})
REFUSES = tc_string(purposes={1, 2}, vendors={VENDOR})


def _consent(server, **fields):  # noqa: ANN001, ANN003, ANN202
    body = {"subject": SUBJECT, "purpose": "personalization", "status": "granted", "basis": "consent"} | fields
    with server.client("operator") as client:
        return client.post("/v1/consent", json=body)


def _refused(response, field: str) -> str:  # noqa: ANN001
    """The problem document's detail, after checking it is a 422 naming ``field`` without the subject's id."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert [e["field"] for e in problem["errors"]] == [field]
    assert SUBJECT not in response.text
    return problem["detail"]


def _history(server) -> list[dict]:  # noqa: ANN001
    with server.client("operator") as client:
        return client.get(f"/v1/consent/{SUBJECT}").json()["history"]


@pytest.mark.parametrize(("source", "key", "what"), [("banner", "banner_version", "the version of the consent dialogue the subject answered"), ("import", "origin", "where the record was imported from"), ("tcf", "tc_string", "the IAB TCF v2.2 TC string the choice was read from")])
def test_a_source_that_claims_evidence_needs_it(server, source: str, key: str, what: str) -> None:  # noqa: ANN001
    """Hole: POST /v1/consent accepted source banner/import/tcf with no evidence at all (GDPR Art. 7(1))."""
    before = len(_history(server))
    detail = _refused(_consent(server, source=source), "evidence")
    assert detail == MSG_MISSING.format(source=source, key=key, what=what)
    assert _refused(_consent(server, source=source, evidence={"note": "trust me"}), f"evidence.{key}")
    assert len(_history(server)) == before  # nothing written


def test_banner_and_import_evidence_is_stored(server) -> None:  # noqa: ANN001
    """Hole: the API had no way to store the evidence a record claims; it is now kept with the record."""
    assert _consent(server, source="banner", evidence={"banner_version": "2026-03"}).status_code == 201
    assert _consent(server, source="import", status="denied", evidence={"origin": "crm-export-2026-03.csv"}).status_code == 201
    evidence = [h["evidence"] for h in _history(server) if h["source"] in ("banner", "import")]
    assert {"banner_version": "2026-03"} in evidence and {"origin": "crm-export-2026-03.csv"} in evidence


def test_a_tcf_grant_needs_a_string_that_grants(server) -> None:  # noqa: ANN001
    """Hole: a tcf-sourced grant was accepted whatever string (or none) backed it."""
    tcf = {"source": "tcf", "pack": "eu-gdpr-dsa"}
    detail = _refused(_consent(server, **tcf, evidence={"tc_string": REFUSES, "vendor_id": VENDOR}), "evidence.tc_string")
    assert detail.startswith("the TC string does not support status 'granted'") and "purpose 5" in detail
    assert "is not a TC string" in _refused(_consent(server, **tcf, evidence={"tc_string": "not-a-tc-string!", "vendor_id": VENDOR}), "evidence.tc_string")
    stale = tc_string(purposes={1, 5, 6}, vendors={VENDOR}, created=datetime.now(UTC) - timedelta(days=800))
    assert "390 days" in _refused(_consent(server, **tcf, evidence={"tc_string": stale, "vendor_id": VENDOR}), "evidence.tc_string")
    assert _refused(_consent(server, **tcf, evidence={"tc_string": ALLOWS}), "evidence.vendor_id")
    assert _refused(_consent(server, source="tcf", evidence={"tc_string": ALLOWS, "vendor_id": VENDOR}), "source") == MSG_TC_NOT_A_SOURCE
    granted = _consent(server, **tcf, evidence={"tc_string": ALLOWS, "vendor_id": VENDOR})
    assert granted.status_code == 201, granted.text
    record = [h for h in _history(server) if h["source"] == "tcf"][-1]
    assert record["status"] == "granted" and record["evidence"]["tc_string"] == ALLOWS
    assert "may profile for personalised content" in record["evidence"]["decision"]


def test_a_tcf_refusal_needs_a_string_that_refuses(server) -> None:  # noqa: ANN001
    """Hole: a tcf-sourced withdrawal could cite a string in which the subject consented to everything."""
    tcf = {"source": "tcf", "pack": "eu-gdpr-dsa", "status": "withdrawn"}
    detail = _refused(_consent(server, **tcf, evidence={"tc_string": ALLOWS, "vendor_id": VENDOR}), "evidence.tc_string")
    assert detail.startswith("the TC string does not support status 'withdrawn'")
    assert _consent(server, **tcf, evidence={"tc_string": REFUSES, "vendor_id": VENDOR}).status_code == 201


def test_a_flag_with_a_category_the_pack_does_not_know_is_a_422(server) -> None:  # noqa: ANN001
    """Hole: POST /v1/items/{id}/flags stored `self_harm` under a pack blocking `self-harm`: a flag that blocked nothing."""
    with server.client("operator") as client:
        refused = client.post("/v1/items/rt-item-1/flags", json={"category": "self_harm", "confidence": 0.95, "pack": "eu-gdpr-dsa"})
        default = client.post("/v1/items/rt-item-1/flags", json={"category": "selfharm", "confidence": 0.95})
        unknown_pack = client.post("/v1/items/rt-item-1/flags", json={"category": "self-harm", "confidence": 0.95, "pack": "no-such-pack"})
        accepted = client.post("/v1/items/rt-item-1/flags", json={"category": "self-harm", "confidence": 0.95, "pack": "eu-gdpr-dsa"})
    detail = _refused(refused, "category")
    assert refused.json()["type"].endswith("/unknown-harm-category")
    assert "'self_harm' is not one pack eu-gdpr-dsa knows; known: adult, csam," in detail and "self-harm" in detail
    assert "is not one pack baseline knows" in _refused(default, "category")
    assert unknown_pack.status_code == 404
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["category"] == "self-harm" and "keeps it out of lists (a blocked category)" in accepted.json()["effect"]
    assert accepted.json()["in_catalogue"] is False  # no model serves rt-item-1: the effect says no list holds it now
    with server.client("admin") as client:
        cases = client.get("/v1/escalations").json()["cases"]
    assert all(c["item_id"] != "rt-item-1" or c["rule_id"] != "harm.unknown_category" for c in cases)


@pytest.mark.parametrize("padded", [f"{SUBJECT} ", f" {SUBJECT}", f"{SUBJECT}\u00a0"])
def test_a_subject_id_with_surrounding_whitespace_is_refused_and_nothing_is_written(server, padded: str) -> None:  # noqa: ANN001
    """Hole: event logs and imports read ids stripped, so a withdrawal or an erasure recorded under a padded id reached
    nobody while the answer said it was done."""
    before = len(_history(server))
    response = _consent(server, subject=padded, status="withdrawn")
    assert response.status_code == 422 and [e["field"] for e in response.json()["errors"]] == ["subject"], response.text
    with server.client("admin") as client:
        erased = client.post("/v1/requests/erasure", json={"subject": padded, "pack": "eu-gdpr-dsa"})
        requests = client.get("/v1/requests").json()
    assert erased.status_code == 422 and "whitespace" in erased.json()["detail"] and padded.strip() not in erased.text, erased.text
    assert len(_history(server)) == before
    with server.client("admin") as client:
        assert client.get("/v1/requests").json() == requests  # no request opened


def test_a_subject_recorded_under_a_padded_id_before_such_ids_were_refused_can_still_be_erased(server) -> None:  # noqa: ANN001
    """Records made under ``"id "`` (accepted once) stay reachable: access and erasure answer for exactly that id."""
    from audits import open_store, record_consent

    padded = "legacy-padded-9931 "
    with open_store(server.db_url).session() as session:
        record_consent(session, subject_id=padded, purpose="personalization", status="granted", lawful_basis="consent", source="api")
    with server.client("admin") as client:
        access = client.post("/v1/requests/access", json={"subject": padded})
        assert access.status_code == 200, access.text
        assert [r["status"] for r in access.json()["consent"]["history"]] == ["granted"]
        erased = client.post("/v1/requests/erasure", json={"subject": padded, "pack": "eu-gdpr-dsa"})
        assert erased.status_code == 200 and erased.json()["shredded"] is True, erased.text
