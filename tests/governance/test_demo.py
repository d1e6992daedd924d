"""The README's main job: `recgov demo` on the embedded default, nothing configured."""

from __future__ import annotations

import json
from pathlib import Path

from junitparser import JUnitXml
from typer.testing import CliRunner

from governance.cli import app


def test_demo_runs_the_governed_path_end_to_end(recgov_home: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    # dirt planted by the demo's generator is found and removed
    assert {"duplicate_events", "bot_users", "missing_user_id", "future_timestamp"} <= set(doc["data"]["findings"])
    assert doc["data"]["n_events_after_cleaning"] < doc["data"]["n_events"]
    # tuned ALS beats the baselines on the held-out part
    ev = doc["evaluation"]
    assert ev["als"]["ndcg@10"] > ev["popularity"]["ndcg@10"] > ev["random"]["ndcg@10"]
    # the model, its audit and the gate decision are recorded and written out
    assert doc["model_version"].startswith("als-")
    assert doc["audit"]["gate"] == "pass"
    assert doc["audit"]["counts"]["fail"] == 0 and doc["audit"]["counts"]["error"] == 0
    outputs = {k: Path(v) for k, v in doc["audit"]["outputs"].items()}
    assert all(p.exists() for p in outputs.values())
    assert len(list(next(iter(JUnitXml.fromfile(str(outputs["junit"])))))) == 8
    # the store is the embedded SQLite file under RECGOV_HOME and the trail verifies
    assert doc["database"] == f"sqlite:///{recgov_home / 'recgov.db'}"
    assert doc["trail"]["intact"] is True and doc["trail"]["head"] >= 5
    assert doc["carbon"]["energy_kwh"] > 0
    # the governed tour: tags on every item, escalation, withdrawal, export, erasure
    g = doc["governed"]
    assert g["list"] and all(row["why"] for row in g["list"])
    assert g["escalation"]["cases"] and g["escalation"]["still_served"] is False
    assert g["after_withdrawal"]["mode"] == "non_profiling"
    assert g["access_export"]["consent"] == 2 and g["access_export"]["decisions"] >= 2
    assert g["erasure"]["request"] == "completed" and g["erasure"]["shredded"] is True
    assert g["eu_audit"]["ndcg_plain"] is not None and g["eu_audit"]["exposure_gap_plain"] is not None
    # the demo's data plants a group-provider link: the re-ranking narrows both the provider exposure
    # gap and the gender gap in the lists' provider miscalibration
    e = g["eu_audit"]
    assert e["exposure_gap_reranked"] < e["exposure_gap_plain"]
    assert e["gender_calibration_gap_reranked"] < e["gender_calibration_gap_plain"]
    # it ends with the regulator's report: a self-contained page naming the model, and OpenLineage events
    report = Path(doc["regulator_report"]["html"])
    page = report.read_text(encoding="utf-8")
    assert report.parent == recgov_home / "demo" and doc["model_version"] in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")
    events = [json.loads(line) for line in Path(doc["regulator_report"]["openlineage"]).read_text().splitlines()]
    assert {e["eventType"] for e in events} == {"START", "COMPLETE"}
