"""Two `retrain run`s at once, on SQLite and PostgreSQL: the second to finish does not fail on a request the first
completed meanwhile.

Each run reads the open requests, trains (minutes, outside any transaction), then completes them. The
run that finished second still held its first reading ("received") and asked to move a completed
request back to in_progress: the workflow refused, its whole transaction (its trail event included)
rolled back and the run failed with an error about a transition, after its training had been
recorded. Now the requests are read again under the lock before they are completed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from audits import list_requests
from audits.db import Store
from governance.packs import resolve_pack
from governance.policy import load_pack
from governance.privacy import erase_subject, pending_retrains, run_retrains
from governance.privacy import retrains as retrains_module
from governance.training import train_and_record
from recommender.synthetic import SyntheticSpec, generate

CCPA = load_pack(resolve_pack("california-ccpa"))


def test_a_retrain_run_that_finishes_second_reports_the_request_completed_meanwhile(
    store: Store, recgov_home: Path, monkeypatch
) -> None:
    data = generate(SyntheticSpec(n_users=50, n_items=40, n_interactions=1400, seed=21, event_mix={"rating": 1.0}))
    stamps = pd.to_datetime(data.events["timestamp"], utc=True)
    data.events["timestamp"] = stamps + (pd.Timestamp(datetime.now(UTC) - timedelta(days=2)) - stamps.max())
    train_and_record(data, store=store, models_dir=recgov_home / "models", params={"factors": 6, "iterations": 3}, measure_carbon=False)
    victim = str(data.events["user_id"].astype(str).value_counts().index[0])
    erase_subject(store, exact=False, subject_id=victim, pack=CCPA, measure_residual=False, measure_carbon=False)
    (due,) = pending_retrains(store)["pending"]

    real = retrains_module._retrained
    other: list[dict] = []
    started: list[bool] = []

    def meanwhile(*args, **kwargs):  # the other run starts and ends while this one trains
        if not started:
            started.append(True)
            other.append(run_retrains(store, data, pack=CCPA, measure_carbon=False, models_dir=recgov_home / "models"))
        return real(*args, **kwargs)

    monkeypatch.setattr(retrains_module, "_retrained", meanwhile)
    second = run_retrains(store, data, pack=CCPA, measure_carbon=False, models_dir=recgov_home / "models")
    (first,) = other
    assert [r["status"] for r in first["requests"]] == ["completed"]
    assert second["requests"] == [{"id": due["id"], "status": "completed", "deadline": due["deadline"], "closed_meanwhile": True}]
    assert pending_retrains(store)["pending"] == []
    with store.session() as session:
        (request,) = list_requests(session, kind="retrain")
    assert request["status"] == "completed"
    assert [e["version"] for e in request["result"]["retrained"]] == [e["version"] for e in first["retrained"]]
