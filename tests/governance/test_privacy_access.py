"""The access export (GDPR Art. 15) over data sets as recgov reads them: events that name no
subject are someone else's, never a crash, and the subject's own events all come out."""

from __future__ import annotations

import pandas as pd
import pytest

from audits import Store
from governance.privacy import export_subject
from recommender.data import Dataset
from recommender.synthetic import SyntheticSpec, generate

SUBJECT = "access-subject-Kp3w"


def _data(user_dtype: str) -> Dataset:
    data = generate(SyntheticSpec(n_users=20, n_items=15, n_interactions=300, seed=7, event_mix={"rating": 1.0}))
    events = data.events.copy()
    events["user_id"] = events["user_id"].astype(str)
    busiest = events["user_id"].value_counts().index[0]
    events.loc[events["user_id"] == busiest, "user_id"] = SUBJECT
    events.loc[events.index[:4], "user_id"] = None  # events that name no subject
    events["user_id"] = events["user_id"].astype(user_dtype)
    return Dataset(events=events, items=data.items, name="access-test", source="synthetic:access-test")


@pytest.mark.parametrize("user_dtype", ["object", "category", "string"])
def test_the_export_skips_events_that_name_no_subject(store: Store, user_dtype: str) -> None:
    data = _data(user_dtype)
    theirs = data.events.loc[data.events["user_id"].astype("string").eq(SUBJECT).fillna(False).to_numpy(bool)]
    doc = export_subject(store, SUBJECT, dataset=data)
    assert doc["interactions"]["count"] == len(theirs) > 0
    assert sorted(e["item_id"] for e in doc["interactions"]["events"]) == sorted(theirs["item_id"].astype(str))
    assert doc["requests"][0]["status"] == "completed"
    assert pd.isna(data.events["user_id"]).sum() == 4
