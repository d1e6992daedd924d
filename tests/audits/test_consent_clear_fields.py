"""A consent record's clear fields (purpose, jurisdiction) never carry the subject's raw id.

Evidence is sealed under the subject's record key and checked for their id; the purpose
and the jurisdiction are stored in clear, in the record and in its ``consent.recorded``
trail event, and stay after an erasure shreds the pseudonym. Without a pack any purpose
text is accepted, so an id typed there (``--purpose``, ``POST /v1/consent``, an import's
purpose or jurisdiction column) would be the raw id on the append-only trail.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from audits import record_consent, shred_subject, verify_trail
from audits.consent import append_consent_batch, consent_history
from audits.consent_write import ConsentWrite
from audits.db import Store
from audits.models import ConsentRecordRow, TrailEvent
from governance.consent.import_rows import RAW_ID_IN_FIELD
from governance.consent.imports import import_consent
from recommender.errors import DataError
from store_dump import dump_store

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
EMAIL, NUMBER = "canary-7c1f@example.org", "918273645"


def _count(store: Store, model: type) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize(
    ("subject", "purpose", "jurisdiction", "field"),
    [
        (EMAIL, EMAIL, None, "purpose"),
        (EMAIL, f"newsletter for {EMAIL}", None, "purpose"),
        (NUMBER, NUMBER, None, "purpose"),
        (EMAIL, "personalization", EMAIL, "jurisdiction"),
        (NUMBER, "personalization", NUMBER, "jurisdiction"),
        (int(NUMBER), NUMBER, None, "purpose"),
    ],
)
def test_a_record_whose_clear_fields_carry_the_subject_id_is_refused(
    store: Store, subject: str | int, purpose: str, jurisdiction: str | None, field: str
) -> None:
    with pytest.raises(DataError, match=rf"^{field} must not carry a raw subject id, but the value at \$ does") as err:
        with store.session() as session:
            record_consent(
                session, subject_id=subject, purpose=purpose, status="granted", lawful_basis="consent",
                source="api", jurisdiction=jurisdiction, at=T0,
            )  # fmt: skip
    assert str(subject) not in str(err.value)
    assert _count(store, ConsentRecordRow) == 0 and _count(store, TrailEvent) == 0
    assert str(subject) not in dump_store(store)


def test_short_ids_and_other_subjects_purposes_are_kept(store: Store) -> None:
    """The guard's own rule: ids under four characters are not looked for (subject "EU" in jurisdiction "EU")."""
    fields = {"purpose": "personalization", "status": "granted", "lawful_basis": "consent", "source": "api"}
    with store.session() as session:
        record_consent(session, subject_id="EU", jurisdiction="EU", at=T0, **fields)
        record_consent(session, subject_id=EMAIL, jurisdiction="EU", at=T0, **fields)
    with store.session() as session:
        assert [r["jurisdiction"] for r in consent_history(session, "EU")] == ["EU"]


def test_the_decision_log_writer_checks_the_clear_fields_too() -> None:
    fields = {"status": "opted_out", "lawful_basis": "consent", "source": "gpc", "evidence": {}, "at": T0}
    with pytest.raises(DataError, match=r"^purpose must not carry a raw subject id"):
        ConsentWrite(purpose=f"gpc {EMAIL}", **fields).checked(EMAIL)
    write = ConsentWrite(purpose="personalization", jurisdiction=NUMBER, **fields)
    with pytest.raises(DataError, match=r"^jurisdiction must not carry a raw subject id"):
        write.checked(NUMBER)


def _batch(purposes: list[str], jurisdictions: list[str | None]) -> pd.DataFrame:
    n = len(purposes)
    return pd.DataFrame(
        {
            "subject": [EMAIL, NUMBER][:n],
            "purpose": purposes,
            "status": ["granted"] * n,
            "lawful_basis": ["consent"] * n,
            "source": ["import"] * n,
            "jurisdiction": jurisdictions,
            "recorded_at": pd.to_datetime([T0 + timedelta(minutes=i) for i in range(n)], utc=True),
            "evidence": [{"origin": "crm"}] * n,
        }
    )


@pytest.mark.parametrize(
    ("purposes", "jurisdictions", "field"),
    [
        ([EMAIL, "personalization"], ["EU", None], "purpose"),
        (["personalization", "personalization"], ["EU", NUMBER], "jurisdiction"),
    ],
)
def test_a_bulk_batch_carrying_an_id_in_a_clear_field_writes_nothing(
    store: Store, purposes: list[str], jurisdictions: list[str | None], field: str
) -> None:
    with pytest.raises(DataError, match=rf"^{field} must not carry a raw subject id"):
        with store.session() as session:
            append_consent_batch(session, _batch(purposes, jurisdictions), anchor={})
    assert _count(store, ConsentRecordRow) == 0 and _count(store, TrailEvent) == 0
    assert EMAIL not in dump_store(store) and NUMBER not in dump_store(store)


def test_an_import_refuses_those_rows_keeps_the_others_and_leaves_no_raw_id(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "cmp.csv"
    path.write_text(
        "subject,purpose,status,time,basis,jurisdiction\n"
        f"{EMAIL},{EMAIL},granted,2026-01-01T00:00:00Z,consent,EU\n"
        f"{EMAIL},personalization,granted,2026-01-02T00:00:00Z,consent,{EMAIL}\n"
        f"{NUMBER},personalization,granted,2026-01-02T00:00:00Z,consent,{NUMBER}\n"
        f"{NUMBER},personalization,granted,2026-01-03T00:00:00Z,consent,EU\n"
    )
    report = import_consent(store, path)  # no pack: any purpose text is taken
    assert report.added == 1
    assert [(p.position, p.field, p.reason) for p in report.problems] == [
        (2, "purpose", RAW_ID_IN_FIELD.format(field="purpose")),
        (3, "jurisdiction", RAW_ID_IN_FIELD.format(field="jurisdiction")),
        (4, "jurisdiction", RAW_ID_IN_FIELD.format(field="jurisdiction")),
    ]
    with store.session() as session:
        shred_subject(session, NUMBER)
    dump = dump_store(store)
    assert EMAIL not in dump and NUMBER not in dump
    with store.engine.connect() as connection:
        assert verify_trail(connection).intact


def test_a_subject_whose_id_is_one_of_the_packs_purposes_can_record_that_purpose(store: Store, tmp_path: Path) -> None:
    # The purpose "personalization" is the pack's word, not the person's: a subject whose id is that word records it
    # (through the library, the decision log's writer and an import under the pack), while the same id as a purpose
    # outside the pack's vocabulary stays refused.
    from governance.packs import resolve_pack
    from governance.policy import load_pack

    eu = load_pack(resolve_pack("eu-gdpr-dsa"))
    purposes = eu.pack.consent.purposes
    subject = "personalization"
    with store.session() as session:
        record_consent(session, subject_id=subject, purpose=subject, status="denied", lawful_basis="consent", source="api", vocabulary=purposes)
        with pytest.raises(DataError, match="purpose must not carry a raw subject id"):
            record_consent(session, subject_id=subject, purpose=subject, status="denied", lawful_basis="consent", source="api")
    write = ConsentWrite(subject, "opted_out", "consent", "gpc", {"header": "Sec-GPC: 1"}, T0, vocabulary=frozenset(purposes))
    assert write.checked(subject).purpose == subject
    path = tmp_path / "cmp.csv"
    path.write_text(f"subject,purpose,status,time,source\n{subject},{subject},denied,2026-01-01T00:00:00Z,api\n")
    assert import_consent(store, path, pack=eu).added == 1
    with store.session() as session:
        assert [r["status"] for r in consent_history(session, subject)] == ["denied", "denied"]
