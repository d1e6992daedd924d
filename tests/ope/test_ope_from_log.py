"""Off-policy evaluation from a real decision log and real outcome events (SQLite and PostgreSQL), and the CLI.

A simulated world with a known position-based click model: lists drawn by the pack's
logging policy through the serving path's own hook (:class:`governance.ope_logging.LoggingHook`),
stored by the decision log, clicks stored as outcome events joined by decision id. The
target packs' true click rate per list is computed exactly (every slate enumerated).
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from audits import DecisionLog, Store
from audits.consent import record_consent
from audits.outcomes import BATCH_COLUMNS, record_outcomes
from governance.cli import app
from governance.ope import OpeSettings, evaluate_from_log
from governance.ope_logging import LoggingHook
from governance.policy import parse_pack
from recommender.errors import ConfigError
from recommender.ope import enumerate_slates

EXAM = np.array([1.0, 0.7, 0.5, 0.35])
K, M, TYPES = 4, 6, 3
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def pack_text(logging_policy: dict[str, Any] | None, version: str = "9.0.0") -> str:
    yaml = YAML(typ="safe", pure=True)
    with open("policies/eu-gdpr-dsa.yaml") as handle:
        doc = yaml.load(handle)
    doc["metadata"]["version"] = version
    if logging_policy is not None:
        doc["logging_policy"] = logging_policy
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


LOGGED = {"kind": "plackett_luce", "pool": M, "temperature": 0.7}
TARGETS = {
    "deterministic": None,
    "colder": {"kind": "plackett_luce", "pool": M, "temperature": 0.4},
    "epsilon": {"kind": "epsilon_slots", "pool": M, "epsilon": 0.5, "explore_slots": [3, 4]},
}


def _world() -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    rng = np.random.default_rng(2026)
    scores = np.round(np.sort(rng.normal(size=(TYPES, M)), axis=1)[:, ::-1], 6)  # governed order: by score
    attract = rng.uniform(0.05, 0.6, size=(TYPES, M))
    items = [[f"item-{t}-{j}" for j in range(M)] for t in range(TYPES)]
    return scores, attract, items


def _truth(target: dict[str, Any] | None, types: np.ndarray, segment: tuple[int, ...] | None = None) -> float:
    scores, attract, _ = _world()
    if segment is not None:  # only the outcomes on the segment's items (pool places) count
        attract = attract * np.isin(np.arange(M), segment)[None, :]
    hook = LoggingHook.from_section(parse_pack(pack_text(target)).pack.logging_policy)
    values = np.zeros(TYPES)
    for t in range(TYPES):
        if hook is None:
            values[t] = float((EXAM * attract[t, :K]).sum())
            continue
        slates, probs = enumerate_slates(hook.policy_for(M, K), scores[t], K)
        values[t] = float(sum(p * (EXAM * attract[t, s]).sum() for s, p in zip(slates, probs)))
    return float(values[types].mean())


def _fill(store: Store, n: int, logged_text: str, *, objecting: int = 0, seed: int = 7, world: tuple[np.ndarray, np.ndarray, list[list[str]]] | None = None) -> np.ndarray:
    """Serve ``n`` lists under the logged pack and record their clicks; the first ``objecting`` subjects object to analytics."""
    loaded = parse_pack(logged_text, "logged.yaml")
    hook = LoggingHook.from_section(loaded.pack.logging_policy)
    scores, attract, items = world or _world()
    rng = np.random.default_rng(seed)
    types = rng.integers(0, TYPES, n)
    stamp = loaded.stamp()
    events = []
    with DecisionLog(store) as log:
        futures = []
        for i, t in enumerate(types.tolist()):
            decision_id = str(uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | int(rng.integers(0, 2**62)), version=4))  # seeded: the draws repeat
            pool = items[t]
            if hook is None:
                picks, logging = list(range(K)), None
            else:
                picks, logging = hook.draw(pool, scores[t].tolist(), [[] for _ in pool], K, decision_id)
            slate: dict[str, Any] = {"items": [pool[p] for p in picks], "scores": [float(scores[t, p]) for p in picks], "tags": [[] for _ in picks]}
            if logging is not None:
                slate["logging"] = logging
            at = T0 + timedelta(seconds=i)
            futures.append(log.submit({
                "mode": "personalized", "pack_name": stamp["pack"], "pack_version": stamp["pack_version"], "pack_hash": stamp["pack_hash"],
                "model_version": "m1", "slate": slate, "context": {}, "decision_id": decision_id, "decided_at": at, "subject_id": f"user-{i % 400}",
            }))  # fmt: skip
            clicks = rng.random(K) < EXAM * attract[t, picks]
            for j in np.flatnonzero(clicks):
                events.append({"subject": f"user-{i % 400}", "kind": "click", "item_id": pool[picks[j]], "occurred_at": at + timedelta(seconds=1), "decision_id": decision_id})
        for future in futures:
            future.result(timeout=120)
    frame = pd.DataFrame([{"line": line, "value": np.nan, "event_id": "", **e} for line, e in enumerate(events, start=2)], columns=list(BATCH_COLUMNS))
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True).astype("datetime64[us, UTC]")
    frame["value"] = frame["value"].astype(float)
    with store.session() as session:
        record_outcomes(session, frame, source="import", anchor={"file_sha256": "e" * 64})
        for s in range(objecting):
            record_consent(session, subject_id=f"user-{s}", purpose="analytics", status="objected", lawful_basis="legitimate_interest", source="api", at=T0)
    return types


def test_every_estimator_finds_the_truth_for_three_target_packs_and_consent_is_honoured(store: Store) -> None:
    logged_text = pack_text(LOGGED)
    types = _fill(store, 3000, logged_text, objecting=40)
    kept = np.array([i % 400 >= 40 for i in range(3000)])
    logged = parse_pack(logged_text, "logged.yaml")
    segment = (4, 5)  # the pool's last two places: items the governed order ranks low, rarely shown
    settings = OpeSettings(kinds=("click",), n_bootstrap=300, segment=frozenset(f"item-{t}-{j}" for t in range(TYPES) for j in segment))
    for name, target in TARGETS.items():
        report = evaluate_from_log(store, logged, parse_pack(pack_text(target, "9.1.0"), f"{name}.yaml"), settings)
        assert report["decisions_read"] == 3000 and report["decisions_used"] == int(kept.sum())
        assert report["excluded"] == {"analytics_consent_not_in_force": int((~kept).sum())}
        assert report["subjects_excluded_for_consent"] == 40
        truth = _truth(target, types[kept])
        estimates = report["metrics"]["click"]
        for estimator in ("slate_standard_ips", "slate_independent_ips", "slate_cascade_ips", "slate_pseudo_inverse"):
            est = estimates[estimator]
            assert not est["refused"], (name, estimator, est["reason"])
            # within three half-widths (coverage itself is measured over 100 seeds in test_ope_slate.py)
            assert abs(est["value"] - truth) <= 3 * (est["ci_high"] - est["ci_low"]) / 2, (name, estimator, est, truth)
        assert estimates["logged_policy"]["value"] == pytest.approx(_observed_clicks(store) / int(kept.sum()), rel=0.2)
        for estimator in ("ips", "snips", "dm", "dr"):
            assert estimates[estimator]["view"] == "first position"
        # the segment's own estimates, with their own (wider, relative to the value) intervals
        rare = report["segment"]["metrics"]["click"]
        seg_truth = _truth(target, types[kept], segment)
        assert report["segment"]["items"] == 6 and 0 < report["segment"]["lists_showing_one"] < int(kept.sum())
        for estimator in ("slate_standard_ips", "slate_independent_ips", "slate_cascade_ips", "slate_pseudo_inverse"):
            est = rare[estimator]
            if name == "deterministic":  # the governed top 4 never shows the last two places: nothing to find
                assert seg_truth == 0.0
            assert not est["refused"] and abs(est["value"] - seg_truth) <= 3 * (est["ci_high"] - est["ci_low"]) / 2 + 1e-12, (name, estimator, est, seg_truth)
    text = json.dumps(report)
    assert "user-" not in text  # no raw subject id in the report


def _observed_clicks(store: Store) -> int:
    from sqlalchemy import func, select

    from audits.models import OutcomeEvent

    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(OutcomeEvent)))


def test_deterministic_logs_are_refused_and_a_different_reranking_is_refused(store: Store) -> None:
    logged_text = pack_text(None)
    _fill(store, 200, logged_text)
    logged = parse_pack(logged_text, "logged.yaml")
    report = evaluate_from_log(store, logged, parse_pack(pack_text(TARGETS["colder"], "9.1.0")), OpeSettings(kinds=("click",), n_bootstrap=50))
    for estimator in ("slate_standard_ips", "slate_independent_ips", "slate_cascade_ips", "slate_pseudo_inverse", "ips", "snips", "dm", "dr"):
        est = report["metrics"]["click"][estimator]
        assert est["refused"] and est["value"] is None, estimator
        assert "overlap fails" in est["reason"] or "range" in est["reason"], (estimator, est["reason"])
    assert report["logging_policies"] == {"deterministic (no logging policy declared)": 200}
    yaml = YAML(typ="safe", pure=True)
    doc = yaml.load(pack_text(None, "9.2.0"))
    doc["reranking"]["steps"][0]["params"]["tradeoff"] = 0.1
    out = io.StringIO()
    yaml.dump(doc, out)
    with pytest.raises(ConfigError, match="re-ranks differently"):
        evaluate_from_log(store, logged, parse_pack(out.getvalue()), OpeSettings())


def test_the_command_line_reports_json_and_refuses_bad_input(store: Store, db_url: str, tmp_path: Path) -> None:
    logged_text = pack_text(LOGGED)
    _fill(store, 300, logged_text)
    (tmp_path / "logged.yaml").write_text(logged_text)
    (tmp_path / "target.yaml").write_text(pack_text(TARGETS["colder"], "9.1.0"))
    runner = CliRunner()
    args = ["ope", db_url, "--logged-pack", str(tmp_path / "logged.yaml"), "--target-pack", str(tmp_path / "target.yaml"), "--kind", "click", "--bootstrap", "100"]
    result = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["decisions_used"] == 300 and set(report["metrics"]) == {"click"}
    assert report["target_pack"]["pack_version"] == "9.1.0"
    (tmp_path / "new.txt").write_text("item-0-4\nitem-1-5\n\n")
    seg = json.loads(runner.invoke(app, [*args, "--segment-items", str(tmp_path / "new.txt"), "--json"], catch_exceptions=False).stdout)
    assert seg["segment"]["items"] == 2 and set(seg["segment"]["metrics"]["click"]) == set(report["metrics"]["click"])
    (tmp_path / "none.txt").write_text("\n")
    assert runner.invoke(app, [*args, "--segment-items", str(tmp_path / "none.txt")]).exit_code == 2
    human = runner.invoke(app, args, catch_exceptions=False)
    assert human.exit_code == 0 and "slate_cascade_ips" in human.stdout
    bad = runner.invoke(app, ["ope", str(tmp_path / "nothing.db"), "--logged-pack", str(tmp_path / "logged.yaml"), "--target-pack", str(tmp_path / "target.yaml")])
    assert bad.exit_code == 2 and "neither a database URL" in bad.output
    worse = runner.invoke(app, [*args, "--bootstrap", "-1"])
    assert worse.exit_code == 2 and "--bootstrap" in worse.output
    for flag, value, says in (("--kind", "hover", "unknown outcome kind"), ("--confidence", "2", "confidence"), ("--min-ess", "-1", "min_ess")):
        refused = runner.invoke(app, [*args, flag, value])
        assert refused.exit_code == 2 and says in refused.output, refused.output


def test_a_logged_pack_whose_hash_differs_from_the_decisions_is_refused(store: Store, db_url: str, tmp_path: Path) -> None:
    """A pack file with the served pack's name and version but another content (here analytics made opt-out) must not
    decide whose lists are opened: the decisions record the served pack's hash, and the file must carry it."""
    logged_text = pack_text(LOGGED)
    _fill(store, 120, logged_text, objecting=40)
    yaml = YAML(typ="safe", pure=True)
    doc = yaml.load(logged_text)
    doc["consent"]["purposes"]["analytics"]["model"] = "opt_out" if doc["consent"]["purposes"]["analytics"]["model"] != "opt_out" else "opt_in"
    out = io.StringIO()
    yaml.dump(doc, out)
    forged = parse_pack(out.getvalue(), "forged.yaml")
    assert (forged.name, forged.version) == (parse_pack(logged_text).name, parse_pack(logged_text).version)
    target = parse_pack(pack_text(TARGETS["colder"], "9.1.0"))
    with pytest.raises(ConfigError, match=r"forged.yaml: the logged pack .* 120 decision\(s\) of that name and version carry another pack hash"):
        evaluate_from_log(store, forged, target, OpeSettings(kinds=("click",), n_bootstrap=50))
    (tmp_path / "forged.yaml").write_text(out.getvalue())
    (tmp_path / "target.yaml").write_text(pack_text(TARGETS["colder"], "9.1.0"))
    result = CliRunner().invoke(app, ["ope", db_url, "--logged-pack", str(tmp_path / "forged.yaml"), "--target-pack", str(tmp_path / "target.yaml"), "--kind", "click", "--bootstrap", "50"])
    assert result.exit_code != 0 and "carry another pack hash" in result.output, result.output
    # the genuine file is still read, consent as it served
    report = evaluate_from_log(store, parse_pack(logged_text, "logged.yaml"), target, OpeSettings(kinds=("click",), n_bootstrap=50))
    assert report["decisions_read"] == 120 and report["excluded"] == {"analytics_consent_not_in_force": 40}


@pytest.mark.parametrize("kind", ["plackett_luce", "epsilon_slots"])
def test_a_target_drawing_from_a_larger_pool_than_the_logged_one_is_refused(store: Store, kind: str) -> None:
    """The logger's pool was cut at its 6 places; a target with a pool of 10 would draw from places 7 to 10, which the
    logs never held."""
    big = M + 4
    logged_text = pack_text(LOGGED)
    _fill(store, 150, logged_text)
    logged = parse_pack(logged_text, "logged.yaml")
    section = {"kind": "plackett_luce", "pool": big, "temperature": 0.7} if kind == "plackett_luce" else {"kind": "epsilon_slots", "pool": big, "epsilon": 0.5, "explore_slots": [3, 4]}
    settings = OpeSettings(kinds=("click",), n_bootstrap=50, provider_groups={"g": frozenset({"item-0-0", "item-1-0"})})
    report = evaluate_from_log(store, logged, parse_pack(pack_text(section, "9.1.0")), settings)
    for estimator, est in report["metrics"]["click"].items():
        if estimator == "logged_policy":
            assert not est["refused"]
            continue
        assert est["refused"] and est["value"] is None, estimator
        assert f"pool of {big} places, beyond the logged pool of {M}" in est["reason"], est["reason"]
    assert all(d["refused"] for d in report["differences"]["click"].values())
    assert report["exposure"]["groups"]["g"]["target"]["refused"] and report["exposure"]["groups"]["g"]["difference"]["refused"]
    # the same policy on the logged pool's size is not refused for its pool
    same = {**section, "pool": M}
    report = evaluate_from_log(store, logged, parse_pack(pack_text(same, "9.2.0")), settings)
    assert not any("beyond the logged pool" in (est["reason"] or "") for est in report["metrics"]["click"].values())


def test_a_stochastic_target_drawing_from_a_smaller_pool_than_the_logged_one_is_refused(store: Store) -> None:
    """The logs hold a pool of 6 places; a Plackett-Luce target over 5 would draw from its own governed 5, which the
    replay does not have (it would read a draw over the 6 logged places as the target's)."""
    logged_text = pack_text(LOGGED)
    _fill(store, 120, logged_text)
    logged = parse_pack(logged_text, "logged.yaml")
    settings = OpeSettings(kinds=("click",), n_bootstrap=50)
    smaller = {"kind": "plackett_luce", "pool": M - 1, "temperature": 0.7}
    report = evaluate_from_log(store, logged, parse_pack(pack_text(smaller, "9.3.0")), settings)
    for estimator, est in report["metrics"]["click"].items():
        if estimator != "logged_policy":
            assert est["refused"] and f"pool of {M - 1} places, fewer than the logged pool of {M}" in est["reason"], (estimator, est)
    # a deterministic target (it serves its first K places) is replayed as before
    report = evaluate_from_log(store, logged, parse_pack(pack_text(None, "9.4.0")), settings)
    assert not any("fewer than the logged pool" in (est.get("reason") or "") for est in report["metrics"]["click"].values())


def test_an_empty_log_reports_every_estimator_refused_with_its_reason(store: Store) -> None:
    """Regression: on a log with no list the single-action estimators (ips, snips, dm, dr) were left out of the
    report, while the slate ones were there, refused; a report's shape must not depend on how much was logged."""
    logged = parse_pack(pack_text(LOGGED), "logged.yaml")
    target = parse_pack(pack_text(TARGETS["colder"], "9.1.0"), "colder.yaml")
    report = evaluate_from_log(store, logged, target, OpeSettings(kinds=("click",), n_bootstrap=10))
    assert report["decisions_read"] == 0
    estimates = report["metrics"]["click"]
    expected = {"logged_policy", "slate_standard_ips", "slate_independent_ips", "slate_cascade_ips", "slate_pseudo_inverse", "ips", "snips", "dm", "dr"}
    assert set(estimates) == expected
    for name, est in estimates.items():
        assert est["refused"] and est["value"] is None and est["reason"] == "no logged contexts to estimate from", (name, est)


def test_the_command_line_refuses_an_evaluation_whose_every_estimate_is_refused_as_the_api_does(store: Store, db_url: str, tmp_path: Path) -> None:
    logged_text = pack_text(None)  # a deterministic log: no policy overlaps it
    _fill(store, 200, logged_text)
    (tmp_path / "logged.yaml").write_text(logged_text)
    (tmp_path / "target.yaml").write_text(pack_text(TARGETS["colder"], "9.1.0"))
    runner = CliRunner()
    args = ["ope", db_url, "--logged-pack", str(tmp_path / "logged.yaml"), "--target-pack", str(tmp_path / "target.yaml"), "--kind", "click", "--bootstrap", "50"]
    human = runner.invoke(app, args, catch_exceptions=False)
    assert human.exit_code == 2, human.output
    assert "every estimate of click is refused" in human.stderr and "metrics.click.ips: " in human.stderr
    assert "refused: " in human.stdout  # the report is printed all the same
    as_json = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert as_json.exit_code == 2, as_json.output
    doc = json.loads(as_json.stdout)  # one document: the error, an issue per refused estimator
    assert doc["valid"] is False
    assert {i["path"] for i in doc["issues"]} == {f"metrics.click.{n}" for n in ("slate_standard_ips", "slate_independent_ips", "slate_cascade_ips", "slate_pseudo_inverse", "ips", "snips", "dm", "dr")}
    assert all(i["severity"] == "error" and i["message"] for i in doc["issues"])
