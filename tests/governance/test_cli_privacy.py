"""The DPO's commands through the public CLI, on SQLite and PostgreSQL: consent set/show, the
access export, an erasure after which the raw id is in no table, no artifact and no later
output while `recgov trail verify` still passes, the record of processing, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import count, dump, invoke, ok

from audits import DecisionLog, open_store
from recommender.synthetic import SyntheticSpec, generate

VICTIM = "dsr-cli-victim-R2d7"
NEEDLES = (VICTIM.encode("utf-8"), VICTIM.encode("utf-32-le"))  # numpy keeps str arrays as UTF-32
MAP = "user_id=user_id,item_id=item_id,timestamp=timestamp,event_type=event_type,value=value"








@pytest.fixture(scope="module")
def events_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small event log whose busiest user has a distinctive id."""
    data = generate(SyntheticSpec(n_users=80, n_items=50, n_interactions=2500, seed=7, event_mix={"rating": 1.0}))
    events = data.events.copy()
    events["user_id"] = events["user_id"].astype(str)
    busiest = events["user_id"].value_counts().index[0]
    events.loc[events["user_id"] == busiest, "user_id"] = VICTIM
    path = tmp_path_factory.mktemp("privacy-cli") / "events.csv"
    events.drop(columns=["session_id", "context"]).to_csv(path, index=False)
    return path


def test_consent_set_and_show_round_trip(db_url: str) -> None:
    granted = ok("consent", "set", VICTIM, "--purpose", "personalization", "--status", "granted", "--pack", "eu-gdpr-dsa",
                 "--source", "banner", "--jurisdiction", "EU", "--evidence", "banner v2024-05",
                 "--evidence-banner-version", "2024-05", "--database-url", db_url)  # fmt: skip
    assert granted["recorded"]["lawful_basis"] == "consent"  # the pack's basis for the purpose
    ok(
        "consent",
        "set",
        VICTIM,
        "--purpose",
        "analytics",
        "--status",
        "objected",
        "--basis",
        "legitimate_interest",
        "--database-url",
        db_url,
    )
    ok(
        "consent",
        "set",
        VICTIM,
        "--purpose",
        "personalization",
        "--status",
        "withdrawn",
        "--pack",
        "eu-gdpr-dsa",
        "--database-url",
        db_url,
    )
    shown = ok("consent", "show", VICTIM, "--pack", "eu-gdpr-dsa", "--database-url", db_url)
    assert shown["subject"] == granted["recorded"]["subject"]
    assert [(h["purpose"], h["status"]) for h in shown["history"]] == [
        ("personalization", "granted"),
        ("analytics", "objected"),
        ("personalization", "withdrawn"),
    ]
    assert shown["history"][0]["evidence"] == {"via": "recgov consent set", "note": "banner v2024-05", "banner_version": "2024-05"}
    assert shown["history"][0]["jurisdiction"] == "EU"
    assert {p: e["status"] for p, e in shown["in_force"].items()} == {
        "analytics": "objected",
        "personalization": "withdrawn",
    }
    assert shown["profiling"]["personalization"]["allowed"] is False
    assert "GDPR Art. 7(3)" in shown["profiling"]["personalization"]["reason"]
    table = invoke("consent", "show", VICTIM, "--database-url", db_url)
    assert table.exit_code == 0 and "withdrawn" in table.stdout
    assert ok("consent", "show", "nobody-here", "--database-url", db_url) == {
        "subject": None,
        "history": [],
        "in_force": {},
        "profiling": None,
    }
    assert VICTIM not in dump(db_url)


def test_erasure_leaves_the_raw_id_nowhere_and_the_trail_verifies(
    db_url: str, events_csv: Path, tmp_path: Path
) -> None:
    trained = ok(
        "train",
        events_csv,
        "--map",
        MAP,
        "--no-tune",
        "--no-carbon",
        "--factors",
        "8",
        "--iterations",
        "5",
        "--database-url",
        db_url,
    )
    artifact = Path(trained["artifact"])
    assert any(n in artifact.read_bytes() for n in NEEDLES), "the grep must be able to see the id in an artifact"
    ok(
        "consent",
        "set",
        VICTIM,
        "--purpose",
        "personalization",
        "--status",
        "granted",
        "--pack",
        "eu-gdpr-dsa",
        "--database-url",
        db_url,
    )
    store = open_store(db_url)
    try:
        with DecisionLog(store) as log:
            log.submit_and_wait({
                "subject_id": VICTIM, "mode": "personalized", "pack_name": "eu-gdpr-dsa", "pack_version": "1.0.0",
                "pack_hash": "0" * 64, "model_version": trained["model_version"],
                "slate": {"items": ["i00003"], "scores": [0.5], "tags": [["because_you_rated"]]},
            })  # fmt: skip
    finally:
        store.close()

    # Access (Art. 15): the export goes to the subject and holds their history and events.
    export = tmp_path / "export.json"
    summary = ok(
        "subject",
        "export",
        VICTIM,
        "--data",
        events_csv,
        "--map",
        MAP,
        "--pack",
        "eu-gdpr-dsa",
        "--out",
        export,
        "--database-url",
        db_url,
    )
    doc = json.loads(export.read_text())
    n_events = sum(1 for line in events_csv.read_text().splitlines() if line.startswith(VICTIM + ","))
    assert doc["subject"]["id"] == VICTIM
    assert [h["status"] for h in doc["consent"]["history"]] == ["granted"]
    assert doc["interactions"]["count"] == n_events == summary["counts"]["interactions"] > 0
    assert doc["decisions"][0]["tags"] == [["because_you_rated"]]
    assert doc["models"][0]["version_id"] == trained["model_version"]
    assert VICTIM not in json.dumps(summary)

    # Erasure (Art. 17).
    result = invoke(
        "subject",
        "erase",
        VICTIM,
        "--pack",
        "eu-gdpr-dsa",
        "--model",
        artifact,
        "--delete-previous",
        "--json",
        "--database-url",
        db_url,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (step,) = report["unlearning"]
    assert report["request"]["status"] == "completed" and report["shredded"]
    assert step["status"] == "unlearned" and step["exact"] is True  # refit without them: nothing left to measure
    assert step["residual_influence"]["measured"] is False and step["replaced_in_serving"]["replaced"] == trained["model_version"]
    assert not artifact.exists()
    new_artifact = Path(step["artifact"])
    assert new_artifact.exists() and not any(n in new_artifact.read_bytes() for n in NEEDLES)
    assert VICTIM not in result.output

    # Nowhere in the database, whatever the engine.
    assert VICTIM not in dump(db_url)
    # Nowhere in the output of later commands, nor in the trail export for an auditor.
    trail_file = tmp_path / "trail.jsonl"
    later = [
        invoke("trail", "verify", "--database-url", db_url),
        invoke("trail", "export", trail_file, "--no-checkpoint", "--database-url", db_url),
        invoke("consent", "show", VICTIM, "--pack", "eu-gdpr-dsa", "--database-url", db_url),
        invoke("consent", "show", VICTIM, "--json", "--database-url", db_url),
        invoke("processing-record", "--pack", "eu-gdpr-dsa", "--json", "--database-url", db_url),
        invoke("processing-record", "--pack", "eu-gdpr-dsa", "--database-url", db_url),
        invoke("lineage", step["version"], "--json", "--database-url", db_url),
    ]
    for outcome in later:
        assert outcome.exit_code == 0, outcome.output
        assert VICTIM not in outcome.output
    assert "intact" in later[0].stdout
    assert not any(n in trail_file.read_bytes() for n in NEEDLES)
    # A later access request finds nothing linked to the id: it is named only as the addressee.
    after = tmp_path / "after.json"
    ok("subject", "export", VICTIM, "--pack", "eu-gdpr-dsa", "--out", after, "--database-url", db_url)
    later_doc = json.loads(after.read_text())
    assert later_doc["consent"]["history"] == [] and later_doc["decisions"] == []
    # The old version was replaced by the exact erasure and its file deleted: it holds nobody; the new one is clean.
    assert later_doc["models"] == []
    later_doc.pop("subject")
    assert VICTIM not in json.dumps(later_doc)
    assert VICTIM not in dump(db_url)
    assert invoke("trail", "verify", "--database-url", db_url).exit_code == 0


def test_the_processing_record_lists_purposes_and_retention(db_url: str) -> None:
    ok(
        "consent",
        "set",
        "subject-one-1",
        "--purpose",
        "sale_sharing",
        "--status",
        "opted_out",
        "--source",
        "gpc",
        "--pack",
        "california-ccpa",
        "--database-url",
        db_url,
    )
    doc = ok(
        "processing-record", "--pack", "california-ccpa", "--recipient", "CDN (processor)", "--database-url", db_url
    )
    assert [p["purpose"] for p in doc["purposes"]] == ["personalization", "sale_sharing"]
    assert doc["purposes"][1]["legal_reference"] == "CCPA §1798.120; CCPA regs §7025, §7026"
    assert doc["retention"]["training_events_days"] == 365
    assert doc["recipients"] == ["CDN (processor)"]
    assert doc["counts"]["consent_records"] == {"sale_sharing": {"opted_out": 1}}
    text_out = invoke("processing-record", "--pack", "california-ccpa", "--database-url", db_url)
    assert text_out.exit_code == 0 and "365 days" in text_out.stdout and "sale_sharing" in text_out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["consent", "set", VICTIM, "--purpose", "personalization", "--status", "maybe", "--pack", "eu-gdpr-dsa"],
         "error: --status must be one of granted, denied, withdrawn, opted_out, objected; got 'maybe'"),
        (["consent", "set", VICTIM, "--purpose", "marketing", "--status", "granted", "--pack", "eu-gdpr-dsa"],
         "error: --purpose 'marketing' is not a purpose of pack eu-gdpr-dsa (its purposes: analytics, personalization)"),
        (["consent", "set", VICTIM, "--purpose", "personalization", "--status", "granted", "--source", "fax", "--basis", "consent"],
         "error: --source must be one of api, banner, tcf, gpc, import; got 'fax'"),
        (["consent", "set", VICTIM, "--purpose", "personalization", "--status", "granted"],
         "error: --basis is needed without --pack"),
        (["consent", "set", VICTIM, "--purpose", "personalization", "--status", "granted", "--pack", "no-such-pack.yaml"],
         "no-such-pack.yaml: error: no such file; expected a YAML policy pack"),
        (["subject", "erase", VICTIM, "--pack", "eu-gdpr-dsa", "--model", "missing-model.npz"],
         "error: model artifact missing-model.npz does not exist; expected a .npz file written by `recgov train`"),
        (["subject", "erase", VICTIM, "--pack", "eu-gdpr-dsa", "--propagate", "11"],
         "error: --propagate must be an integer from 0 to 10; got 11"),
        (["subject", "export", VICTIM, "--data", "/no/such/events.csv"], "no such file"),
        (["subject", "export", VICTIM, "--out", "/no/such/folder/export.json"], "error: --out /no/such/folder/export.json: the folder /no/such/folder does not exist"),
        (["processing-record", "--pack", "missing.yaml"], "missing.yaml: error: no such file"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_stores_nothing(db_url: str, args: list[str], message: str) -> None:
    result = invoke(*args, "--database-url", db_url)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.output and VICTIM not in result.output
    for table in ("consent_records", "subject_requests", "subject_secrets"):
        assert count(db_url, table) == 0, table


def _refused_storing_nothing(db_url: str, result: object, message: str) -> None:
    """Exit 2 with ``message`` (as the terminal wraps it), no traceback, no raw id, nothing stored for anyone."""
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    output = result.output  # type: ignore[attr-defined]
    assert " ".join(message.split()[:8]) in " ".join(output.replace("│", " ").split())
    assert "Traceback" not in output and VICTIM not in output
    for table in ("consent_records", "subject_requests", "subject_secrets"):
        assert count(db_url, table) == 0, table


@pytest.mark.parametrize("padded", [f"{VICTIM} ", f" {VICTIM}", f"{VICTIM}\n", "\t"])
@pytest.mark.parametrize(
    "args",
    [
        ["consent", "set", "{subject}", "--purpose", "personalization", "--status", "withdrawn", "--pack", "eu-gdpr-dsa"],
        ["subject", "erase", "{subject}", "--pack", "eu-gdpr-dsa"],
        ["subject", "export", "{subject}"],
    ],
)
def test_a_subject_id_with_surrounding_whitespace_is_refused_and_stores_nothing(
    db_url: str, args: list[str], padded: str
) -> None:
    """Regression: `consent set "ID "` recorded a withdrawal, and `subject erase "ID "` a completed erasure,
    under a pseudonym no event can have (ids in data are read stripped): the subject stayed profiled."""
    from audits.subjects import SUBJECT_ID_PADDED

    result = invoke(*[a.format(subject=padded) for a in args], "--database-url", db_url)
    _refused_storing_nothing(db_url, result, SUBJECT_ID_PADDED)


def test_a_subject_recorded_under_a_padded_id_stays_reachable_by_access_and_erasure(db_url: str) -> None:
    """Records made under ``"ID "`` before such ids were refused: the access export and the erasure answer for exactly
    that id (and only because records exist under it)."""
    from audits import open_store, record_consent

    padded = f"{VICTIM} "
    with open_store(db_url).session() as session:
        record_consent(session, subject_id=padded, purpose="personalization", status="granted", lawful_basis="consent", source="api")
    result = invoke("subject", "export", padded, "--database-url", db_url)
    assert result.exit_code == 0, result.output
    result = invoke("subject", "erase", padded, "--pack", "eu-gdpr-dsa", "--database-url", db_url, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["shredded"] is True


@pytest.mark.parametrize("odd", ["\udcff", f"{VICTIM}\udc80", "\ud800x"])
@pytest.mark.parametrize(
    "args",
    [
        ["consent", "set", "{subject}", "--purpose", "personalization", "--status", "withdrawn", "--pack", "eu-gdpr-dsa"],
        ["subject", "erase", "{subject}", "--pack", "eu-gdpr-dsa"],
        ["subject", "export", "{subject}"],
    ],
)
def test_a_subject_id_that_is_not_utf8_is_refused_and_stores_nothing(db_url: str, args: list[str], odd: str) -> None:
    """Regression: an id holding bytes that are not UTF-8 (the shell passes them as lone surrogates, e.g.
    `recgov subject erase $'\\xff'`) was a UnicodeEncodeError traceback where it was pseudonymized."""
    from audits.subjects import SUBJECT_ID_NOT_TEXT

    result = invoke(*[a.format(subject=odd) for a in args], "--database-url", db_url)
    _refused_storing_nothing(db_url, result, SUBJECT_ID_NOT_TEXT)


@pytest.mark.parametrize("odd", ["\udcff", f"{VICTIM}\udc80"])
def test_the_library_refuses_a_subject_id_that_is_not_utf8_with_a_data_error(db_url: str, odd: str) -> None:
    from audits.subjects import SUBJECT_ID_NOT_TEXT
    from governance.policy import load_pack
    from governance.privacy import erase_subject, export_subject
    from recommender.errors import DataError

    pack = load_pack(Path(__file__).resolve().parents[2] / "policies" / "eu-gdpr-dsa.yaml")
    store = open_store(db_url)
    try:
        for call in (lambda: export_subject(store, odd), lambda: erase_subject(store, odd, pack=pack, measure_carbon=False)):
            with pytest.raises(DataError, match="lone surrogate") as caught:
                call()
            assert str(caught.value) == SUBJECT_ID_NOT_TEXT
    finally:
        store.close()
    for table in ("subject_requests", "subject_secrets"):
        assert count(db_url, table) == 0, table
