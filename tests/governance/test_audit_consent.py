"""The audit's offline evaluation refits a model's recipe: under a pack with consent rules it sees only who may be profiled.

Built on the ``consented_store`` fixture (every sixth synthetic user denied personalization
under the EU pack): the refit, and so every offline figure, leaves their events out, as the
training run under that pack did; nothing of theirs is profiled by the audit either.
"""

from __future__ import annotations

import numpy as np
import pytest
from report_store import CONSENTED_DATA, ConsentedStore, consent_denied

from audits import open_store
from governance.audit import evaluation_events
from governance.packs import resolve_pack
from governance.policy import load_pack
from recommender.loaders import load_data


def test_the_evaluation_refits_only_on_who_may_be_profiled(consented_store: ConsentedStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECGOV_HOME", str(consented_store.root / "home"))  # its installation key
    dataset = load_data(CONSENTED_DATA)
    users = dataset.events["user_id"].astype(str)
    denied = users.map(lambda u: consent_denied(int(u[1:]))).to_numpy(dtype=bool)
    assert denied.any() and not denied.all()
    store = open_store(consented_store.url)
    try:
        kept, left_out = evaluation_events(load_pack(resolve_pack("eu-gdpr-dsa")), dataset, store)
        baseline_kept, baseline_left_out = evaluation_events(load_pack(resolve_pack("baseline")), dataset, store)
    finally:
        store.close()
    kept_users = set(kept.events["user_id"].astype(str))
    assert not any(consent_denied(int(u[1:])) for u in kept_users)
    assert left_out == {"denied": int(denied.sum())}  # the retention window is the retention rule's to judge
    assert len(kept.events) == int((~denied).sum())
    # a pack without consent rules leaves out erased subjects' events and recorded refusals (a recorded no needs no pack)
    assert len(baseline_kept.events) == int((~denied).sum()) and baseline_left_out == {"denied": int(denied.sum())}
    assert np.isin(sorted(kept_users), sorted(set(users))).all()
