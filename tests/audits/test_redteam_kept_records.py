"""Red team: what recgov keeps after an erasure must not single the person out.

An erasure crypto-shreds the subject's pseudonym secret and keeps their decisions,
consent records and trail events under the former pseudonym (the proof of lawful
processing). The holes pinned here: those kept rows used to carry the person's
history in the clear (the served items, their scores, and explanation tags that
name the items of their history), and consent evidence could hold their raw id in
another spelling. An attacker with a dump of every table and the raw event log
(which recgov does not control) could then match the kept rows against the log
and name the erased person.

Each test plays that attacker on SQLite and PostgreSQL, and checks that the
trail and the decision log still verify after erasure, and still catch tampering.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from audits import DecisionLog, Store, consent_history, record_consent, report_item, verify_decisions, verify_trail
from audits.models import DecisionRecord
from audits.sealing import KEPT_IN_THE_CLEAR, SEALED_CONTENT, SEALING_SAFEGUARD
from governance.consent.state import ConsentRecord
from governance.policy import load_pack
from governance.privacy import erase_subject, export_subject, processing_record
from governance.serving import ServeRequest, ServingEngine
from recommender.als import ALSRecommender
from recommender.data import Dataset
from recommender.feedback import to_implicit
from recommender.synthetic import SyntheticSpec, generate

POLICIES = Path(__file__).resolve().parents[2] / "policies"
EU = load_pack(POLICIES / "eu-gdpr-dsa.yaml")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
GRANTED = (ConsentRecord(purpose="personalization", status="granted", lawful_basis="consent", source="api", time=T0),)
VICTIM = "dsr-victim-7Qx9"
N_SERVED = 8  # lists served to each subject before the erasure


def _spelling_note(subject: str) -> str:
    return "signed by " + " ".join(subject)


def _spellings(subject: str) -> dict[str, str]:
    """Evidence that names the subject in spellings the raw-id guard does not recognise."""
    return {
        "banner_url": "https://cmp.example/consent?uid=" + urllib.parse.quote(subject.upper()),
        "note": _spelling_note(subject),
    }


@pytest.fixture
def world(store: Store, recgov_home: Path) -> tuple[Dataset, ALSRecommender, list[str]]:
    """A raw log, a model, and personalized lists served to the victim and to 11 others, with consent evidence."""
    data = generate(SyntheticSpec(n_users=80, n_items=300, n_interactions=4000, seed=4, event_mix={"rating": 1.0}))
    events = data.events.copy()
    events["user_id"] = events["user_id"].astype(str)
    busiest = events["user_id"].value_counts().index[2]
    events.loc[events["user_id"] == busiest, "user_id"] = VICTIM
    dataset = Dataset(events=events, items=data.items, name="redteam", source="synthetic:redteam")
    model = ALSRecommender(factors=16, iterations=8, random_state=0).fit(to_implicit(events))
    others = [u for u in events["user_id"].value_counts().index[:12] if u != VICTIM][:11]
    subjects = [VICTIM, *others]
    with store.session() as session:
        for subject in subjects:
            record_consent(
                session, subject_id=subject, purpose="personalization", status="granted", lawful_basis="consent",
                source="banner", evidence=_spellings(subject), at=T0,
            )  # fmt: skip
    with DecisionLog(store) as log:
        engine = ServingEngine(EU, model, data.items, sink=log)
        for _ in range(N_SERVED):
            for subject in subjects:
                served = engine.serve(ServeRequest(subject, k=10, consent=GRANTED))
                assert served.mode == "personalized"
    export_subject(store, VICTIM, dataset=dataset, pack=EU)  # an access request, answered from the raw log
    with store.session() as session:  # a DSA notice, its free text signed in another spelling
        report_item(session, item_id="i00001", reason="misleading; " + _spelling_note(VICTIM), reporter_id=VICTIM)
    return dataset, model, subjects


def _dump(store: Store) -> list[tuple[str, str]]:
    """Every row of every table, as (table, text): what an attacker with a database dump sees."""
    rows = []
    with store.engine.connect() as connection:
        for table in inspect(store.engine).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                rows.append((table, json.dumps([v if isinstance(v, (dict, list)) else str(v) for v in row])))
    return rows


def _erased_pseudonyms(store: Store) -> set[str]:
    with store.engine.connect() as connection:
        return set(
            connection.execute(text("SELECT subject FROM trail_events WHERE action = 'subject.shredded'")).scalars()
        )


def _normalise(value: str) -> str:
    return re.sub(r"[^0-9a-z]", "", urllib.parse.unquote_plus(value).lower())


def _single_out(kept: Counter[str], data: Dataset, model: ALSRecommender) -> str | None:
    """The one user of the raw log that these item ids point at, if any.

    Each user is scored by how many of the distinct items are in their history
    or in the list a model trained on the log would serve them; a user who
    scores highest alone and covers most of the items is picked out.
    """
    events = data.events
    history = events.groupby("user_id")["item_id"].apply(lambda s: set(s.astype(str))).to_dict()
    users = list(history)
    recs, _, _ = model.recommend_index(model.train_.user_index(users), 20)
    served = {u: {str(model.train_.item_ids[i]) for i in row if i >= 0} for u, row in zip(users, recs, strict=True)}
    items = set(kept)
    scores = {u: len(items & (history[u] | served[u])) for u in users}
    ranked = sorted(scores.values(), reverse=True)
    leader = max(scores, key=scores.__getitem__)
    return leader if ranked[0] > ranked[1] and ranked[0] >= 0.8 * len(items) else None


def _history_match(store: Store, data: Dataset, model: ALSRecommender) -> dict[str, str]:
    """Per erased pseudonym, the user of the raw log that the kept rows naming it point at (if any):
    every item id in every row of every table that names the pseudonym, scored by :func:`_single_out`."""
    catalog = set(data.events["item_id"].astype(str))
    rows = _dump(store)
    found = {}
    for pseudonym in _erased_pseudonyms(store):
        kept = Counter(
            token
            for _, row in rows
            if pseudonym in row
            for token in re.findall(r"[A-Za-z0-9_]+", row)
            if token in catalog
        )
        if kept and (user := _single_out(kept, data, model)) is not None:
            found[pseudonym] = user
    return found


def _spelling_match(kept: str, data: Dataset) -> set[str]:
    """The users of the raw log whose id, normalised (case, URL quoting, separators), appears in ``kept``."""
    ids = {_normalise(u): u for u in data.events["user_id"].astype(str).unique() if len(_normalise(u)) >= 6}
    found = _normalise(kept.replace("\\", ""))
    return {raw for normal, raw in ids.items() if normal in found}


def _count_match(store: Store, data: Dataset) -> set[str]:
    """The users of the raw log whose number of events is a count kept in a row naming an erased pseudonym,
    and nobody else's (a count under a key that speaks of interactions, events or counts)."""
    per_user = data.events["user_id"].astype(str).value_counts()
    unique = {int(n): u for n, u in zip(per_user.to_numpy(), per_user.index, strict=True) if (per_user == n).sum() == 1}
    found = set()
    for pseudonym in _erased_pseudonyms(store):
        for _, row in _dump(store):
            if pseudonym in row:
                for n in re.findall(r'(?:interaction|event|count)[a-z_]*\\?"\s*:\s*(\d+)', row):
                    if int(n) >= 5 and int(n) in unique:
                        found.add(unique[int(n)])
    return found


def _every_row(store: Store) -> str:
    return "\n".join(row for _, row in _dump(store))


def test_the_attack_picks_out_a_person_from_their_readable_decisions(store: Store, world) -> None:
    """The attacker's tools are sharp: given the content of one person's decisions in the clear (their
    access export, read while the key exists), the match against the raw log names them."""
    data, model, _ = world
    doc = export_subject(store, VICTIM, pack=EU)
    kept = Counter(item for d in doc["decisions"] for item in d["items"])
    kept += Counter(i for d in doc["decisions"] for tags in d["tags"] for tag in tags for i in tag.get("items", []))
    assert len(doc["decisions"]) == N_SERVED and kept
    assert _single_out(kept, data, model) == VICTIM
    per_user = data.events["user_id"].value_counts()
    assert (per_user == per_user[VICTIM]).sum() == 1, "their number of events alone names them"


def test_kept_decisions_and_evidence_do_not_single_out_the_erased_person(store: Store, world) -> None:
    """Hole: kept decisions listed the erased person's history items (tags), their served lists and
    scores in the clear, consent evidence and a report's free text named them in another spelling, and
    their access request kept
    the number of their interactions; matching against the raw log picked them out. Now that content is
    sealed under a per-subject key that erasure destroys."""
    data, model, _ = world
    with store.session() as session:  # the matcher is sharp: the evidence, read with the key, names the person
        readable = json.dumps(consent_history(session, VICTIM, include_suppressions=False), default=str)
    assert VICTIM in _spelling_match(readable, data)
    erase_subject(store, VICTIM, pack=EU, measure_residual=False)

    assert _history_match(store, data, model) == {}, "the kept rows point at the erased person's history"
    assert VICTIM not in _spelling_match(_every_row(store), data), (
        "a kept row names the erased person in another spelling"
    )
    assert VICTIM not in _count_match(store, data), "a kept count is the erased person's number of events"


def test_others_are_still_readable_and_the_chain_verifies_after_erasure(store: Store, world) -> None:
    """What is sealed reads back as written while the key exists; erasure keeps the trail and the
    decision log verifiable (digests cover what is stored), and tampering is still detected."""
    data, _, subjects = world
    kept = subjects[1]
    before = export_subject(store, kept, dataset=data, pack=EU)
    erase_subject(store, VICTIM, pack=EU, measure_residual=False)

    after = export_subject(store, kept, dataset=data, pack=EU)
    assert len(after["decisions"]) == N_SERVED and after["decisions"] == before["decisions"]
    assert all(d["items"] and d["tags"] and d["scores"] for d in after["decisions"])
    with store.session() as session:
        (record,) = consent_history(session, kept, include_suppressions=False)
    assert record["evidence"] == _spellings(kept)

    with store.snapshot() as connection:
        assert verify_trail(connection).intact
        assert verify_decisions(connection) == []

    # Tampering: a kept decision of the erased person swapped for another's sealed slate, and a trail event changed.
    (erased,) = _erased_pseudonyms(store)
    with store.engine.begin() as connection:
        victim_id = connection.execute(
            select(DecisionRecord.decision_id).where(DecisionRecord.subject == erased).limit(1)
        ).scalar_one()
        other_slate = connection.execute(
            select(DecisionRecord.slate).where(DecisionRecord.subject != erased).limit(1)
        ).scalar_one()
        connection.execute(
            DecisionRecord.__table__.update().where(DecisionRecord.decision_id == victim_id).values(slate=other_slate)
        )
    with store.snapshot() as connection:
        problems = verify_decisions(connection)
    assert len(problems) == 1 and "changed" in problems[0]["problem"]
    with store.engine.begin() as connection:
        seq = connection.execute(
            text("SELECT MIN(seq) FROM trail_events WHERE action = 'consent.recorded'")
        ).scalar_one()
        if store.dialect == "postgresql":
            connection.execute(text("ALTER TABLE trail_events DISABLE TRIGGER USER"))
        else:
            connection.execute(text("DROP TRIGGER trail_events_no_update"))
        connection.execute(
            text("UPDATE trail_events SET payload = REPLACE(payload, 'banner', 'import') WHERE seq = :s"), {"s": seq}
        )
        if store.dialect == "postgresql":
            connection.execute(text("ALTER TABLE trail_events ENABLE TRIGGER USER"))
    with store.snapshot() as connection:
        report = verify_trail(connection)
    assert (report.intact, report.first_bad_seq, report.reason) == (False, seq, "hash_mismatch")


def test_a_sealed_record_is_unreadable_once_the_key_is_gone(store: Store, world) -> None:
    """After erasure no key for the former pseudonym is left in the store: nothing can open what is sealed."""
    with store.session() as session:
        rows = session.execute(select(DecisionRecord.subject, DecisionRecord.slate)).all()
    assert all("items" not in (s if isinstance(s, dict) else json.loads(s)) for _, s in rows), (
        "slates are stored sealed"
    )
    report = erase_subject(store, VICTIM, pack=EU, measure_residual=False)
    with store.session() as session:
        mine = session.scalars(select(DecisionRecord).where(DecisionRecord.subject == report["pseudonym"])).all()
    assert len(mine) == N_SERVED
    assert all(not d.slate.get("items") for d in mine), "an erased person's decision still opens"
    assert all(d.mode == "personalized" for d in mine)


def test_the_art30_record_says_what_is_sealed_and_what_erasure_destroys(store: Store, world) -> None:
    """Hole: the Art. 30 record said decisions kept "items, scores, explanation tags, context" as merely
    pseudonymised, and that the database refuses UPDATE and DELETE of everything. It now states what is
    sealed, what stays in the clear and what shredding destroys, from the constants the store acts on."""
    record = processing_record(EU, store)
    assert SEALING_SAFEGUARD in record["safeguards"]
    assert any("record key are deleted" in line for line in record["safeguards"])
    kept = record["categories_of_data"]["kept_by_recgov"]
    for table in ("decisions", "consent_records", "subject_requests", "item_reports"):
        (line,) = [k for k in kept if SEALED_CONTENT[table] in k]
        assert KEPT_IN_THE_CLEAR[table] in line
    safeguards = record["safeguards"]
    assert not any(line.endswith("UPDATE and DELETE are refused by the database") for line in safeguards)
    # what the record says is sealed is stored sealed: slate, context beyond routing, evidence (row and trail)
    with store.engine.connect() as connection:
        slates = connection.execute(select(DecisionRecord.slate, DecisionRecord.context)).all()
        evidence = connection.execute(text("SELECT evidence FROM consent_records")).scalars().all()
        payloads = (
            connection.execute(text("SELECT payload FROM trail_events WHERE action = 'consent.recorded'"))
            .scalars()
            .all()
        )
    # in the clear beside the sealed list: only the serving latency (these lists are neither shadows nor in experiments)
    assert slates and all(set(s) == {"sealed"} and set(c) <= {"latency_ms"} for s, c in slates)
    assert any(set(c) == {"latency_ms"} for _, c in slates)
    assert evidence and all(set(e if isinstance(e, dict) else json.loads(e)) == {"sealed"} for e in evidence)
    assert all(set(json.loads(p)["evidence"]) == {"sealed"} for p in payloads)


def test_the_erasure_result_keeps_no_count_of_the_persons_data_in_the_clear(store: Store, world) -> None:
    """Regression: the erasure's own result was stored after the shredding with the counts of the person's
    consent records, decisions and removed interactions in the clear: figures that match a raw log."""
    report = erase_subject(store, VICTIM, pack=EU, measure_residual=False)
    assert report["unlinked"], "the caller's answer still says what was unlinked"
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT kind, result FROM subject_requests")).all()
    stored = [json.loads(result) if isinstance(result, str) else result for kind, result in rows if kind == "erasure"]
    assert stored
    for result in stored:
        assert "unlinked" not in result
        assert all("n_interactions_removed" not in step for step in result.get("unlearning", []))
        assert "sealed" in result
