"""The gate computes once what training already computed: its consent-filtered events and their validation.

A gate that trains (``run_audit(train=True)``) filters the data under the pack and validates
what it kept before fitting; the audit's offline evaluation then refits on the events a
training run under the pack may learn from (:func:`governance.audit.evaluation_events`).
When the run's retention window left nothing out these are the same events, so the audit
reuses them and their validation report: the facts must be those of the path that reads the
store, filters and validates a second time, to the last figure. When retention did leave
events out, the evaluation still refits on every event the consent rules allow, as before.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

import governance.audit as audit_module
import governance.audit_inputs as audit_inputs
import governance.training_filter as training_filter
import recommender.validate as validate_module
from audits import open_store
from governance.audit import evaluation_events, reused_evaluation_events, run_audit
from governance.consent.imports import import_consent
from governance.consent.synthetic_export import synthetic_consent_export, write_consent_export
from governance.packs import resolve_pack
from governance.policy import LoadedPack, load_pack
from recommender.data import Dataset
from recommender.synthetic import SyntheticSpec, generate


def _small_eu_pack(tmp_path: Path, bots: dict[str, Any] | None = None) -> LoadedPack:
    """The EU pack without tuning and carbon metering (fast, and no measured figure differs between runs);
    ``bots``: bot thresholds of its validation rule."""
    doc = yaml.safe_load(Path(resolve_pack("eu-gdpr-dsa")).read_text())
    if bots is not None:
        rule = next(r for r in doc["data"]["rules"] if r["check"] == "validation_findings")
        rule["params"]["bots"] = bots
    doc["quality"]["tune"] = False
    doc["carbon"]["measure"] = False
    path = tmp_path / "eu-small.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_pack(path)


def _data(days: int) -> Dataset:
    """Synthetic events over the ``days`` days up to today."""
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    spec = SyntheticSpec(n_users=240, n_items=150, n_interactions=9000, seed=5, start=end - timedelta(days=days), end=end)
    return generate(spec)


def _consented_store(home: Path, dataset: Dataset, loaded: LoadedPack) -> Any:
    """A store holding a synthetic consent export for ``dataset``'s subjects (refusals, withdrawals, GPC opt-outs)."""
    purposes = loaded.pack.consent.purposes
    export = synthetic_consent_export(
        dataset,
        opt_in_purposes=sorted(p for p, c in purposes.items() if c.model == "opt_in"),
        opt_out_purposes=sorted(p for p, c in purposes.items() if c.model == "opt_out"),
        random_state=1,
    )
    store = open_store(f"sqlite:///{home / 'store.db'}")
    import_consent(store, write_consent_export(export, home / "consent.parquet"), pack=loaded)
    return store


def _gate(loaded: LoadedPack, dataset: Dataset, store: Any, home: Path, name: str) -> dict[str, Any]:
    outcome = run_audit(loaded, dataset, store=store, out_dir=home / name, models_dir=home / "models", train=True)
    return {
        "facts": json.loads(outcome.facts.model_dump_json()),
        "results": [r.model_dump(mode="json") for r in outcome.report.results],
        "passed": outcome.decision.passed,
    }


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, also: tuple[Any, ...] = ()) -> list[int]:
    """Count the calls of ``module.name`` (and of the same function imported into ``also``)."""
    calls = [0]
    original = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    for where in (module, *also):
        monkeypatch.setattr(where, name, counted)
    return calls


@pytest.mark.parametrize("bots", [None, {"min_events": 5, "rate_threshold": 2.0}], ids=["default-bots", "pack-bots"])
def test_the_gate_reuses_trainings_events_and_its_facts_are_those_of_filtering_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bots: dict[str, Any] | None
) -> None:
    """With the pack's own bot thresholds too: training validates with them, so its report is the audit's."""
    loaded = _small_eu_pack(tmp_path, bots)
    dataset = _data(days=120)  # well inside the 730-day retention window
    store = _consented_store(tmp_path, dataset, loaded)
    try:
        filters = _counting(monkeypatch, training_filter, "filter_training_events")
        validations = _counting(monkeypatch, validate_module, "validate_events")
        reused = _gate(loaded, dataset, store, tmp_path, "reused")
        assert (filters[0], validations[0]) == (1, 1)  # once for training, reused by the audit

        # The path without reuse: the audit reads the store, filters and validates again.
        monkeypatch.setattr(audit_module, "reused_evaluation_events", lambda *_: None)
        filters[0] = validations[0] = 0
        twice = _gate(loaded, dataset, store, tmp_path, "twice")
        assert (filters[0], validations[0]) == (2, 2)
    finally:
        store.close()
    left_out = reused["facts"]["dataset"]["evaluation_events_left_out"]
    assert left_out and "retention" not in left_out  # the consent export did leave subjects out
    if bots is not None:  # the thresholds bite: the facts would differ from a default-threshold report
        assert reused["facts"]["validation"]["findings"].get("bot_users", {}).get("count", 0) > 0
    assert reused == twice


def test_with_events_out_of_retention_the_evaluation_refits_on_every_consented_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = _small_eu_pack(tmp_path)
    dataset = _data(days=1200)  # about 40% of the events are older than the 730-day window
    store = _consented_store(tmp_path, dataset, loaded)
    try:
        evaluations = _counting(monkeypatch, audit_inputs, "evaluation_events", also=(audit_module,))
        outcome = run_audit(loaded, dataset, store=store, out_dir=tmp_path / "out", models_dir=tmp_path / "models", train=True)
        assert evaluations[0] == 1  # not reusable: the training set is smaller than the evaluation's
        expected, expected_left_out = evaluation_events(loaded, dataset, store)
    finally:
        store.close()
    training = outcome.facts.privacy.training_filter
    assert training["events"]["excluded"]["retention"] > 0
    assert outcome.facts.dataset["evaluation_events_left_out"] == expected_left_out
    assert "retention" not in expected_left_out
    assert outcome.facts.evaluation.models["als"].n_test_users > 0
    assert outcome.facts.validation.n_rows == len(expected.events) > training["events"]["kept"]


def test_reused_events_only_when_retention_left_nothing_out() -> None:
    import pandas as pd

    events = Dataset(events=pd.DataFrame({"user_id": ["u1"], "item_id": ["i1"], "event_type": ["click"], "timestamp": [pd.Timestamp("2026-01-01")]}))
    kept = {"events": {"total": 3, "kept": 1, "excluded": {"denied": 2, "erased": 0, "retention": 0}}}
    assert reused_evaluation_events(kept, events) == (events, {"denied": 2})
    aged = {"events": {"total": 3, "kept": 1, "excluded": {"denied": 1, "retention": 1}}}
    assert reused_evaluation_events(aged, events) is None
    assert reused_evaluation_events(kept, None) is None  # the run did not keep its events
    assert reused_evaluation_events(None, events) is None
    assert reused_evaluation_events({"events": {}}, events) is None
