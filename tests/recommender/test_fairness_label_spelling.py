"""Group labels spelt two ways are one group; a blank label is a missing one.

Bug pinned: on the plain path (an audit attribute read straight from the users table, no bins nor
intersections), ``"é"`` in NFC and ``"e\\u0301"`` in NFD were two groups that print alike, ``"F "`` was a
group apart from ``"F"``, and ``""`` and ``"  "`` were groups judged like any other (the grouped path and
the provider labels already read blanks as missing). Each true group was split into smaller ones, so a gap
could be hidden by noise or made up by it. The figures below are fairlearn's and hand-computed rates over
labels cleaned by the test itself.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame

from recommender import fairness as F

SPELLINGS = ["\u00e9", "e\u0301", " \u00e9", "F", "F ", "\tF", "M", "", "  ", None]


def _clean(label: object) -> str:
    """The label as a reader names the group: NFC, no surrounding blanks, blank or absent as missing."""
    text = unicodedata.normalize("NFC", label).strip() if isinstance(label, str) else ""
    return text or F.MISSING_GROUP


@pytest.fixture
def sample() -> tuple[np.ndarray, list[object], pd.Series]:
    rng = np.random.default_rng(7)
    n = 600
    labels = [SPELLINGS[i] for i in rng.integers(0, len(SPELLINGS), size=n)]
    values = rng.random(n) * np.where(np.asarray([_clean(x) == "M" for x in labels]), 1.0, 0.6)
    return values, labels, pd.Series([_clean(x) for x in labels], dtype="string")


def test_group_labels_read_spellings_as_one_group() -> None:
    codes, names = F.group_labels(SPELLINGS)
    assert names == ("F", "M", F.MISSING_GROUP, "\u00e9")
    assert [names[c] for c in codes] == [_clean(x) for x in SPELLINGS]


def test_compare_groups_matches_metricframe_over_cleaned_labels(sample) -> None:  # noqa: ANN001
    values, labels, clean = sample
    out = F.compare_groups({"ndcg": values}, labels, attribute="a", n_boot=50)["ndcg"]
    frame = pd.DataFrame({"v": values, "g": clean})
    assert out.n_users == frame.groupby("g").size().to_dict()
    assert out.by_group == pytest.approx(frame.groupby("g")["v"].mean().to_dict(), rel=1e-12)
    known = frame[frame["g"] != F.MISSING_GROUP]
    mf = MetricFrame(metrics=lambda t, p: float(np.mean(t)), y_true=known["v"], y_pred=known["v"], sensitive_features=known["g"])
    assert out.difference == pytest.approx(mf.difference(), rel=1e-12)
    assert out.ratio == pytest.approx(mf.ratio(), rel=1e-12)


def test_parity_and_census_read_spellings_as_one_group(sample) -> None:  # noqa: ANN001
    values, labels, clean = sample
    hits = (values > 0.3).astype(float)
    (report,) = F.parity(hits, labels, privileged="M", attribute="a", n_boot=50).values()
    rates = pd.DataFrame({"y": hits, "g": clean}).groupby("g")["y"].mean()
    assert report.by_group["F"]["disparate_impact"] == pytest.approx(rates["F"] / rates["M"], rel=1e-12)
    assert report.by_group["\u00e9"]["statistical_parity_difference"] == pytest.approx(rates["\u00e9"] - rates["M"], rel=1e-12)
    assert set(report.by_group) == {"F", "\u00e9", F.MISSING_GROUP}
    counted = F.census(labels, min_size=2)
    assert counted.n == clean.value_counts().to_dict()
    assert counted.judged[F.MISSING_GROUP] is False


def test_intersections_and_their_cells_read_each_part_as_one_group(sample) -> None:  # noqa: ANN001
    """Bug pinned: an intersection joined the parts as written, so ``"F "`` crossed with ``"18-24"`` was the cell
    ``"F  x 18-24"``, apart from ``"F x 18-24"``, and the census listed both spellings' cells."""
    _, labels, clean = sample
    rng = np.random.default_rng(11)
    ages = [["18-24", " 18-24", "25-34", "25-34\t", ""][i] for i in rng.integers(0, 5, size=len(labels))]
    joined = F.intersect({"gender": labels, "age": ages}).tolist()
    parts = [(g, _clean(a)) for g, a in zip(clean.tolist(), ages)]
    expected = [None if F.MISSING_GROUP in (g, a) else f"{g}{F.INTERSECTION_SEPARATOR}{a}" for g, a in parts]
    assert joined == expected
    cells = F.intersection_cells({"gender": labels, "age": ages})
    genders = sorted(set(clean) - {F.MISSING_GROUP})
    assert cells == tuple(sorted(f"{g}{F.INTERSECTION_SEPARATOR}{a}" for g in genders for a in ("18-24", "25-34")))


def test_a_privileged_group_is_named_as_labels_are_read(sample) -> None:  # noqa: ANN001
    """A pack naming its privileged group in NFD (or with a blank) finds the group its users' labels form."""
    values, labels, clean = sample
    hits = (values > 0.3).astype(float)
    (report,) = F.parity(hits, labels, privileged="e\u0301 ", attribute="a", n_boot=50).values()
    rates = pd.DataFrame({"y": hits, "g": clean}).groupby("g")["y"].mean()
    assert report.privileged == "\u00e9"
    assert report.by_group["F"]["disparate_impact"] == pytest.approx(rates["F"] / rates["\u00e9"], rel=1e-12)
