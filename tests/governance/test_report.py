"""``recgov report``: the regulator's lineage report (HTML) and its OpenLineage events."""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from report_store import build_report_store, run_cli
from typer.testing import CliRunner

from governance.cli import app

SUBJECTS = ("report-subject-alice-7", "report-subject-bob-9")
SECTIONS = (
    "1. The system and its purpose",
    "2. DSA Art. 27 disclosure in force",
    "3. Policy pack",
    "4. Data",
    "5. Consent basis and data minimization",
    "6. Audit results",
    "7. Energy and emissions",
    "8. Escalations of harmful content",
    "9. Erasure and other data subject requests",
    "10. Audit trail and how to verify it",
)


_run = run_cli


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A store with a trained, audited model, consent records, an erasure, a checkpoint and a report."""
    root = tmp_path_factory.mktemp("report")
    db = root / "recgov.db"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RECGOV_HOME", str(root / "home"))
        for name in ("RECGOV_DATABASE_URL", "RECGOV_SIGNING_KEY_PATH", "RECGOV_INSTALLATION_KEY", "RECGOV_ACTOR"):
            env.delenv(name, raising=False)
        env.setenv("RECGOV_DATABASE_URL", f"sqlite:///{db}")
        runner = CliRunner()
        version = build_report_store(root, SUBJECTS)
        html, events = root / "report.html", root / "events.jsonl"
        summary = json.loads(
            _run(runner, "report", version, "--out", str(html), "--openlineage", str(events), "--json")
        )
        yield {
            "root": root,
            "db": db,
            "version": version,
            "html": html.read_text(encoding="utf-8"),
            "events": [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()],
            "summary": summary,
        }


def test_report_has_every_section(built: dict) -> None:
    html = built["html"]
    for heading in SECTIONS:
        assert f"{heading}</h2>" in html, heading
    assert built["version"] in html
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)=["']?https?://""", html), "the page must not load anything from the network"


def test_report_embeds_plots_as_inline_png(built: dict) -> None:
    assert built["html"].count('img alt="') >= 1
    assert 'src="data:image/png;base64,' in built["html"]
    # absent data is said, not silently dropped
    assert "the item popularity of the training data is not stored" in built["html"]


def test_report_shows_pack_checkpoint_and_how_to_verify(built: dict) -> None:
    html, summary = built["html"], built["summary"]
    assert summary["pack"]["pack"] == "baseline" and summary["pack"]["hash"] in html
    assert summary["checkpoint"]["key_id"] in html
    assert "recgov trail export" in html and "recgov trail verify-export" in html and "--public-key" in html
    assert "quality-beats-popularity" in html  # every rule of the audit is in the table


def test_report_names_no_subject_nor_pseudonym(built: dict) -> None:
    html = built["html"]
    for subject in SUBJECTS:
        assert subject not in html
    with sqlite3.connect(built["db"]) as db:
        secrets = set()
        for sql in (
            "SELECT subject FROM consent_records",
            "SELECT subject FROM subject_requests",
            "SELECT subject FROM trail_events WHERE subject IS NOT NULL",
            "SELECT lookup FROM subject_secrets",
            "SELECT secret FROM subject_secrets",
        ):
            secrets |= {row[0] for row in db.execute(sql)}
    assert len(secrets) >= 2  # the store does hold pseudonyms: the check below is not vacuous
    hexes = set(re.findall(r"[0-9a-f]{64}", html))
    assert not hexes & secrets
    for secret in secrets:
        assert secret[:16] not in html  # not even a shortened pseudonym
    # the erasure is reported as a count
    assert re.search(r"<td>erasure</td><td>0</td><td>0</td><td>1</td><td>0</td>", html)


def test_openlineage_events_validate_against_the_openlineage_model(built: dict) -> None:
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.generated.base import RunFacet
    from openlineage.client.serde import Serde

    events = built["events"]
    assert [(e["job"]["name"], e["eventType"]) for e in events] == [
        ("train", "START"),
        ("train", "COMPLETE"),
        ("audit", "START"),
        ("audit", "COMPLETE"),
    ]
    for event in events:
        facets = {
            name: RunFacet(producer=f["_producer"]).with_additional_properties(
                **{k: v for k, v in f.items() if not k.startswith("_")}
            )
            for name, f in event["run"]["facets"].items()
        }
        model = RunEvent(  # attrs validators: eventTime ISO 8601 with time, runId a UUID, URIs parse
            eventType=RunState(event["eventType"]),
            eventTime=event["eventTime"],
            producer=event["producer"],
            run=Run(runId=event["run"]["runId"], facets=facets),
            job=Job(namespace=event["job"]["namespace"], name=event["job"]["name"]),
            inputs=[InputDataset(namespace=d["namespace"], name=d["name"]) for d in event["inputs"]],
            outputs=[OutputDataset(namespace=d["namespace"], name=d["name"]) for d in event["outputs"]],
        )
        assert event["schemaURL"] == model.schemaURL
        expected = Serde.to_dict(model)
        for facet in expected["run"].get("facets", {}).values():
            facet.pop("_schemaURL")  # ours point at recgov's facet schemas
        for facet in event["run"]["facets"].values():
            facet.pop("_schemaURL")
        assert json.loads(Serde.to_json(event)) == json.loads(Serde.to_json(expected))
        assert event["job"]["namespace"] == "recgov"
        assert uuid.UUID(event["run"]["runId"])
    train_start, train_done, _audit_start, audit_done = events
    assert train_start["run"]["runId"] == train_done["run"]["runId"] != audit_done["run"]["runId"]
    assert train_done["outputs"][0]["name"] == built["version"]
    with sqlite3.connect(built["db"]) as db:
        (dataset_hash,) = db.execute("SELECT content_hash FROM dataset_versions").fetchone()
    assert [d["name"] for d in train_done["inputs"]] == [dataset_hash]
    assert audit_done["run"]["facets"]["recgov_policy"]["pack"] == "baseline"
    assert audit_done["run"]["facets"]["recgov_audit"]["counts"]["fail"] >= 0


def test_openlineage_says_a_training_run_not_measured_is_not_measured(built: dict) -> None:
    """The run was trained with --no-carbon: its carbon facet says so, with null figures, never zeros."""
    with sqlite3.connect(built["db"]) as db:
        assert db.execute("SELECT energy_kwh, emissions_kg FROM training_runs").fetchall() == [(None, None)]
    train_done = built["events"][1]
    carbon = train_done["run"]["facets"]["recgov_carbon"]
    assert (carbon["measured"], carbon["energyKwh"], carbon["emissionsKg"]) == (False, None, None)
    assert carbon["note"] == "not measured for this training run"


def test_openlineage_run_ids_are_deterministic(built: dict, tmp_path: Path) -> None:
    again = tmp_path / "again.jsonl"
    _run(
        CliRunner(),
        "report",
        built["version"],
        "--database-url",
        f"sqlite:///{built['db']}",
        "--out",
        str(tmp_path / "again.html"),
        "--openlineage",
        str(again),
    )
    ids = [json.loads(line)["run"]["runId"] for line in again.read_text().splitlines()]
    assert ids == [e["run"]["runId"] for e in built["events"]]


def test_unknown_model_version_exits_2(built: dict) -> None:
    done = CliRunner().invoke(
        app, ["report", "no-such-model", "--database-url", f"sqlite:///{built['db']}"], catch_exceptions=False
    )
    assert done.exit_code == 2
    assert "unknown model version 'no-such-model'" in done.stderr


def _document(built: dict) -> dict:
    from audits import open_store
    from governance.report import collect

    store = open_store(f"sqlite:///{built['db']}")
    try:
        with store.session() as session:
            return collect(session, built["version"])
    finally:
        store.close()


def test_report_renders_fairness_exposure_popularity_carbon_consent_and_pack_history(built: dict) -> None:
    """Evidence the baseline pack does not produce: every plot is drawn from what the evidence holds."""
    from governance.report import render_html
    from governance.report.html import plots

    doc = _document(built)
    assert doc["policy"] is None  # no --pack: the disclosure is left out with a note
    audit = doc["audit_runs"][0]
    group = {"n": 50, "value": 0.2, "ci": [0.15, 0.25]}
    audit["results"] += [
        {
            "rule_id": "gap-gender",
            "section": "fairness",
            "check": "consumer_gap",
            "severity": "block",
            "status": "pass",
            "message": "ok",
            "value": 0.01,
            "threshold": "<= 0.05",
            "legal_reference": "AI Act Art. 10",
            "evidence": {
                "attribute": "gender",
                "metric": "ndcg",
                "groups": {"f": group, "m": {**group, "value": 0.21}},
            },
        },
        {
            "rule_id": "exposure-providers",
            "section": "fairness",
            "check": "exposure_share",
            "severity": "warn",
            "status": "warn",
            "message": "low",
            "value": 0.4,
            "threshold": ">= 0.5",
            "legal_reference": None,
            "evidence": {"before": {"small": 0.1, "large": 0.9}, "after": {"small": 0.3, "large": 0.7}},
        },
        {
            "rule_id": "popularity",
            "section": "fairness",
            "check": "popularity_bias",
            "severity": "warn",
            "status": "pass",
            "message": "ok",
            "value": 1.2,
            "threshold": "<= 2",
            "legal_reference": None,
            "evidence": {"arp_ratio": 1.2, "arp_ratio_ci": [1.1, 1.3], "long_tail_share": 0.3},
        },
    ]
    doc["audit_runs"].append({**audit, "id": 99, "policy_version": "1.1.0", "policy_hash": "f" * 64})
    doc["policy_history"].append(
        {
            "pack": "baseline",
            "version": "1.1.0",
            "hash": "f" * 64,
            "audits": 1,
            "first_used": "later",
            "last_used": "later",
        }
    )
    doc["training_run"].update(energy_kwh=0.002, emissions_kg=0.0007, carbon_method="codecarbon")
    doc["privacy_filter"] = {
        "purpose": "personalization",
        "lawful_basis": "consent",
        "model": "opt_in",
        "legal_reference": "GDPR Art. 6(1)(a)",
        "events": {"total": 100, "kept": 80, "excluded": {"no_consent": 15, "withdrawn": 5}},
        "subjects": {"total": 10, "kept": 8, "excluded": {"no_consent": 1, "withdrawn": 1}},
        "reasons": {"no_consent": "no consent recorded", "withdrawn": "consent withdrawn"},
    }
    figures = plots(doc)
    assert all(p["png"] for section in ("groups", "exposure", "popularity", "carbon") for p in figures[section])
    assert "whiskers: confidence interval" in figures["groups"][-1]["note"]
    html = render_html(doc)
    assert html.count('src="data:image/png;base64,') >= 5
    assert "revision history" in html and "1.1.0" in html
    assert "Excluded: no_consent" in html and "<td>80</td>" in html
    assert "codecarbon" in html and "pass --pack" not in html.replace("recgov report MODEL --pack PACK", "")


def test_out_must_be_html_exits_2(built: dict, tmp_path: Path) -> None:
    done = CliRunner().invoke(
        app,
        ["report", built["version"], "--database-url", f"sqlite:///{built['db']}", "--out", str(tmp_path / "r.txt")],
        catch_exceptions=False,
    )
    assert done.exit_code == 2
    assert "--out must name an .html file" in done.stderr
    assert not (tmp_path / "r.txt").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--openlineage", "{folder}"], "cannot be written (it is a folder)"),
        (["--openlineage", "{missing}/events.jsonl"], "cannot be written (No such file or directory)"),
        (["--dsa-audit-export", "{missing}/audit.json"], "cannot be written (No such file or directory)"),
    ],
)
def test_an_unwritable_second_output_writes_no_report(built: dict, tmp_path: Path, extra: list[str], message: str) -> None:
    """Regression: the HTML report was written, then the --openlineage or --dsa-audit-export target failed (exit 2,
    half the outputs on disk)."""
    folder = tmp_path / "a-folder"
    folder.mkdir()
    html = tmp_path / "r.html"
    args = [a.format(folder=folder, missing=tmp_path / "no-such-folder") for a in extra]
    done = CliRunner().invoke(
        app,
        ["report", built["version"], "--database-url", f"sqlite:///{built['db']}", "--out", str(html), *args],
        catch_exceptions=False,
    )
    assert done.exit_code == 2, done.output
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-folder"] and not any(folder.iterdir())


@pytest.mark.parametrize("which", ["out", "model_version"])
def test_a_file_name_too_long_for_the_file_system_is_one_line(built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str) -> None:
    """Regression: a name over the file system's limit (an --out name, or the default report-MODEL_VERSION.html of a
    very long model version) raised a traceback instead of the one-line error."""
    monkeypatch.chdir(tmp_path)
    long = "x" * 5000
    args = [built["version"], "--out", str(tmp_path / f"{long}.html")] if which == "out" else [long]
    done = CliRunner().invoke(app, ["report", *args, "--database-url", f"sqlite:///{built['db']}"])
    assert done.exit_code == 2, done.output
    assert "cannot be written (File name too long)" in done.stderr and "Traceback" not in done.output
    assert list(tmp_path.iterdir()) == []
