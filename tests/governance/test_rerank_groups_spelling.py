"""The re-rankers protect the items the fairness audit counts as protected, however their labels are spelt.

Bug pinned: ``provider_codes`` matched the item table's provider labels byte for byte, so an item of
``"indie "`` or of a decomposed ``"e\\u0301"`` was coded as a non-protected group (the majors' side of an
exposure cap or of FA*IR), and a blank label as a known group rather than an unknown one, while the audit
reads these labels as the protected group and as missing (:func:`recommender.fairness.group_labels`).
"""

from __future__ import annotations

import pandas as pd
import pytest

from governance.rerank.groups import provider_codes
from recommender import fairness as F

LABELS = ["indie", "indie ", " indie", "major", "\u00e9t\u00e9", "e\u0301te\u0301", "", "  ", None]


@pytest.mark.parametrize("protected", ["indie", "\u00e9t\u00e9", "e\u0301te\u0301"])
def test_protected_items_are_the_audits(protected: str) -> None:
    codes = provider_codes(pd.Series(LABELS, dtype="string"), protected)
    audit_codes, names = F.group_labels(LABELS)
    audit = [names[c] for c in audit_codes]
    expected = [-1 if g == F.MISSING_GROUP else int(g == F.group_labels([protected])[1][0]) for g in audit]
    assert codes.tolist() == expected


def test_declared_codes_are_matched_as_the_audit_reads_labels() -> None:
    codes = provider_codes(pd.Series(LABELS, dtype="string"), "indie", {"major ": 0, "indie": 1, "e\u0301te\u0301": 2})
    _, names = F.group_labels(LABELS)
    by_name = {"major": 0, "indie": 1, "\u00e9t\u00e9": 2}
    audit_codes, _ = F.group_labels(LABELS)
    assert codes.tolist() == [by_name.get(names[c], -1) for c in audit_codes]
