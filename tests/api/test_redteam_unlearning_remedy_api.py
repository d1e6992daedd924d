"""Red team over real HTTP, on SQLite and PostgreSQL: the service treats an unlearned model as a
provisional stand-in until the full retrain the erasure scheduled replaces it.

Each test names the hole it pins.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from audits.models import SubjectRequest


def _list(client, subject: str, model_version: str) -> dict:
    answer = client.post("/v1/recommendations", json={"subject": subject, "k": 5, "pack": "california-ccpa", "model_version": model_version})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _erase(server, subject: str) -> tuple[str, dict]:
    with server.client("admin") as client:
        erased = client.post(f"/v1/subjects/{subject}/erasure", json={"pack": "baseline", "approximate": True})
    assert erased.status_code == 200, erased.text
    report = erased.json()
    (step,) = [u for u in report["unlearning"] if u["status"] == "unlearned"]
    return step["version"], report


def test_the_service_states_the_standing_of_an_unlearned_model(server) -> None:
    """Hole: over the API, lists from the model an erasure left behind looked like lists from any
    trained model, and the erasure's answer did not say that model is provisional."""
    version, report = _erase(server, "u000031")
    standing = next(u for u in report["unlearning"] if u["status"] == "unlearned")["standing"]
    assert standing["standing"] == "provisional" and standing["retrain_request"] == report["retrain"]["request"]["id"]
    with server.client("operator") as client:
        served = _list(client, "u000032", version)
        trained = _list(client, "u000032", server.model_version)
    assert served["mode"] == "personalized" and served["model_standing"] == "provisional"
    assert served["retrain_request"] == standing["retrain_request"]
    assert trained["model_standing"] == "trained" and trained["retrain_request"] == standing["retrain_request"]  # owed the same retrain


def test_an_overdue_retrain_stops_the_service_profiling_from_the_unlearned_model(server) -> None:
    """Hole: the service kept personalising everyone's lists from an unlearned model after the
    full retrain that should have replaced it was overdue."""
    version, report = _erase(server, "u000033")
    request_id = report["retrain"]["request"]["id"]
    with server.store.session() as session:
        session.execute(
            update(SubjectRequest).where(SubjectRequest.id == request_id).values(deadline=datetime.now(UTC) - timedelta(hours=1))
        )
    with server.client("operator") as client:
        for subject in ("u000034", "u000035"):
            served = _list(client, subject, version)
            assert served["mode"] == "non_profiling" and all(i["score"] is None for i in served["items"])
            assert f"retrain request #{request_id}" in served["consent"]
            assert "recgov retrain run DATA --pack california-ccpa" in served["consent"]
            assert served["model_standing"] == "provisional"
