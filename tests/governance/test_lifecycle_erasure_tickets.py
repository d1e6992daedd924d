"""A monitoring pass opens no erasure retrain ticket that cannot run, on SQLite and PostgreSQL.

An ``erasure_retrains`` ticket retrains the production model. With nothing in production, a pass opened one
anyway, which failed at its first run ("names no model to retrain and nothing is in production"), and every
new set of due requests opened another. Now no ticket is opened, and the pass's notes name the requests and
the command that retrains them (``recgov retrain run``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from audits import open_request
from audits.models import RetrainTicket
from governance.lifecycle.passes import run_monitor
from governance.policy import LoadedPack
from governance.packs import resolve_pack
from tests.governance.lifecycle_world import lifecycle_pack

ERASURES = "lifecycle:\n  window_hours: 24\n  triggers:\n    - {id: erasures, kind: erasure_retrains, within_days: 30}\n"


def _pack() -> LoadedPack:
    return lifecycle_pack(resolve_pack("baseline").read_text(), ERASURES)


def test_no_erasure_ticket_is_opened_with_nothing_in_production(store) -> None:
    pack = _pack()
    now = datetime.now(UTC) - timedelta(minutes=30)
    ids = []
    for n, subject in enumerate(("gone-1", "gone-2")):
        with store.session() as session:
            ids.append(open_request(session, subject_id=subject, kind="retrain", deadline_days=30, details={"models": ["als-x"]}).id)
        doc = run_monitor(store, pack, now=now + timedelta(minutes=n))  # a pass per new set of due requests
        assert doc["fired"] == []
        notes = " ".join(doc["metrics"].get("notes", []))
        assert all(f"#{i}" in notes for i in ids) and "recgov retrain run" in notes
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(RetrainTicket)) == 0
