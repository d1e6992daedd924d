"""Red team over real HTTP, on SQLite and PostgreSQL: the serving system passes a TC string with a list request.

Hole pinned: ``POST /v1/recommendations`` had no way to carry an IAB TCF v2.2 TC string (a 422 for any
``tcf`` field), although the serving path judges one and ``recgov recommend --tcf`` passes it: a
frontend whose CMP holds the user's choices could not let them grant or refuse personalisation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tc_strings import tc_string

from governance.api.keys import create_key
from governance.api.services.lists import TCF_NO_VENDOR
from governance.packs import resolve_pack

VENDOR = 755
GRANTS = tc_string(purposes={1, 5, 6}, vendors={VENDOR})
REFUSES = tc_string(purposes={1, 2}, vendors={VENDOR})
STALE = tc_string(purposes={1, 5, 6}, vendors={VENDOR}, created=datetime.now(UTC) - timedelta(days=400))


@pytest.fixture(scope="module")
def serving_token(server) -> str:  # noqa: ANN001
    """The serving system's key: role ``serving``, scope ``lists`` only."""
    with server.store.session() as session:
        _, token = create_key(session, name="web-frontend-tcf", role="serving")
    return token


@pytest.fixture(scope="module")
def tcf_pack(server) -> str:  # noqa: ANN001
    """The EU pack with the installation's IAB vendor id set, stored over the API; its NAME@VERSION."""
    text = Path(resolve_pack("eu-gdpr-dsa")).read_text(encoding="utf-8")
    text = text.replace("name: eu-gdpr-dsa", "name: eu-tcf-vendor", 1).replace("vendor_id: null", f"vendor_id: {VENDOR}", 1)
    with server.client("admin") as client:
        stored = client.post("/v1/packs", content=text, headers={"Content-Type": "application/yaml"})
    assert stored.status_code in (200, 201), stored.text
    return "eu-tcf-vendor@1.0.0"


def _list(server, token: str, subject: str, pack: str, tcf: str | None):  # noqa: ANN001, ANN202
    body = {"subject": subject, "k": 4, "model_version": server.model_version, "pack": pack} | ({"tcf": tcf} if tcf else {})
    with server.client(Authorization=f"Bearer {token}") as client:
        return client.post("/v1/recommendations", json=body)


def _tcf_history(server, subject: str) -> list[dict]:  # noqa: ANN001
    with server.client("operator") as client:
        return [h for h in client.get(f"/v1/consent/{subject}").json()["history"] if h["source"] == "tcf"]


def test_a_string_that_grants_personalises_and_is_recorded(server, serving_token: str, tcf_pack: str) -> None:  # noqa: ANN001
    """Hole: the serving key could not pass the user's TCF grant; under opt-in consent the list stayed non-profiling."""
    subject = "u000031"
    assert _list(server, serving_token, subject, tcf_pack, None).json()["mode"] == "non_profiling"  # no record: opt-in says no
    answer = _list(server, serving_token, subject, tcf_pack, GRANTS)
    assert answer.status_code == 200, answer.text
    served = answer.json()
    assert served["mode"] == "personalized", served["consent"]
    assert served["signals"]["tcf"] is not None and served["signals"]["recorded"][0]["status"] == "granted"
    (record,) = _tcf_history(server, subject)
    assert record["status"] == "granted" and record["evidence"]["tc_string"] == GRANTS
    again = _list(server, serving_token, subject, tcf_pack, GRANTS).json()  # the same string is not recorded twice
    assert again["mode"] == "personalized" and again["signals"]["recorded"] == [] and len(_tcf_history(server, subject)) == 1


def test_a_string_that_refuses_or_is_too_old_refuses_and_says_why(server, serving_token: str, tcf_pack: str) -> None:  # noqa: ANN001
    """Hole: a refusal in the user's TC string could not reach serving; a stale string could not be judged."""
    subject = "u000032"
    assert _list(server, serving_token, subject, tcf_pack, GRANTS).json()["mode"] == "personalized"
    refused = _list(server, serving_token, subject, tcf_pack, REFUSES).json()
    assert refused["mode"] == "non_profiling" and "withdrawn via tcf" in refused["consent"], refused["consent"]
    assert [h["status"] for h in _tcf_history(server, subject)] == ["granted", "withdrawn"]
    stale = _list(server, serving_token, "u000033", tcf_pack, STALE).json()  # no record, and a string too old to grant
    assert stale["mode"] == "non_profiling"
    (ignored,) = stale["signals"]["ignored"]
    assert ignored["signal"] == "tcf" and "390" in ignored["reason"], ignored
    assert _tcf_history(server, "u000033") == []  # a string unusable in itself grants and refuses nothing on record
    assert _list(server, serving_token, "u000033", tcf_pack, GRANTS).json()["mode"] == "personalized"
    after = _list(server, serving_token, "u000033", tcf_pack, STALE).json()  # the grant stands, but this string is stale
    assert after["mode"] == "non_profiling" and "390" in after["consent"], after["consent"]


def test_a_string_that_cannot_be_judged_is_a_422_naming_tcf(server, serving_token: str, tcf_pack: str) -> None:  # noqa: ANN001
    """A string that does not decode, or a pack with no vendor id to judge it for: 422 on ``tcf``, nothing recorded."""
    subject = "u000034"
    for pack, tcf, detail in ((tcf_pack, "not-a-tc-string!", "tcf is not a TC string"), ("eu-gdpr-dsa", GRANTS, TCF_NO_VENDOR.format(pack="eu-gdpr-dsa"))):
        answer = _list(server, serving_token, subject, pack, tcf)
        assert answer.status_code == 422, answer.text
        problem = answer.json()
        assert [e["field"] for e in problem["errors"]] == ["tcf"] and problem["detail"].startswith(detail)
        assert subject not in answer.text
    assert _tcf_history(server, subject) == []
