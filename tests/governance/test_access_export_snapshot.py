"""The access export reads the store in one snapshot: an erasure committed between its reads is wholly after it.

Regression: on PostgreSQL the export read consent, decisions and the subject's requests with several SELECTs in
READ COMMITTED, so an erasure committed between them gave an export that listed the consent from before the
erasure and the erasure request from after it. Now every read is in one REPEATABLE READ READ ONLY snapshot (SQLite:
one read transaction).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import governance.privacy.access as access
from audits import open_store, record_consent
from governance.policy import load_pack
from governance.privacy import erase_subject

EU = load_pack(Path(__file__).resolve().parents[2] / "policies" / "eu-gdpr-dsa.yaml")
SUBJECT = "snapshot-subject"


def test_an_erasure_between_the_exports_reads_is_wholly_after_it(db_url: str, recgov_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(db_url)
    try:
        with store.session() as session:
            record_consent(session, subject_id=SUBJECT, purpose="personalization", status="granted", lawful_basis="consent", source="api")
        read_holdings = access._read_holdings

        def then_erase(session, subject, pseudonym):  # noqa: ANN001, ANN202 - the erasure commits between two reads
            held = read_holdings(session, subject, pseudonym)
            erase_subject(store, SUBJECT, pack=EU, measure_carbon=False)
            return held

        monkeypatch.setattr(access, "_read_holdings", then_erase)
        document = access.export_subject(store, SUBJECT)
    finally:
        store.close()
    kinds = [r["kind"] for r in document["requests"]]
    assert document["consent"]["history"], document["consent"]  # read before the erasure ...
    assert "erasure" not in kinds, kinds  # ... and so were the requests: the export is wholly before it
    assert kinds == ["access"] and document["requests"][0]["status"] == "completed"
