"""Red team: an item-table harm flag spelt another way is still a harm flag.

Hole pinned: the item table's ``flags`` were matched byte for byte against ``harmful:``. A flag written
``HARMFUL:violence``, ``Harmful : adult``, with a zero-width space inside (``harm\\u200bful:``), in full-width
letters, or with a Cyrillic ``а`` that reads as a Latin ``a`` was no flag at all: the item was served although
its category was blocked, the audit's vocabulary result saw nothing, and monitoring's ``harmful_share``
counted it as clean. Each case below was served (and uncounted) before the fix.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from governance.harm_vocabulary import item_harm_categories, items_kept_out, vocabulary_result
from governance.monitoring import WindowInputs, window_figures
from governance.policy import parse_pack

PACK = """\
apiVersion: recgov/v1
metadata: {name: harm-spelling, version: 0.1.0, owner: tests}
harmful_content:
  categories: [hate]
  blocked_categories: [adult, violence]
"""

HIDDEN = [
    "HARMFUL:violence",
    "Harmful : adult",
    " harmful:violence ",
    "harm\u200bful:adult",
    "\uff48\uff41\uff52\uff4d\uff46\uff55\uff4c\uff1aadult",  # full-width letters and colon
    "h\u0430rmful:violence",  # Cyrillic a
    "harmfuI:adult",  # capital I for l
    "promoted|HARMFUL:violence",
]
"""Flags of a blocked category, each spelt as a person or a careless export writes it."""
NOT_HARM = ["", "promoted", "harmless:violence", "charmful:adult", "harmful"]


def _pack():  # noqa: ANN202
    return parse_pack(PACK, "pack.yaml").pack


@pytest.mark.parametrize("flag", HIDDEN)
def test_a_hidden_spelling_of_a_blocked_flag_keeps_the_item_out(flag: str) -> None:
    kept = items_kept_out(_pack(), [flag, "harmful:hate", ""])
    assert kept.tolist() == [True, False, False]


@pytest.mark.parametrize("flag", HIDDEN)
def test_a_hidden_spelling_is_counted_as_its_category(flag: str) -> None:
    (category,) = item_harm_categories([flag])
    assert category in {"adult", "violence"}


@pytest.mark.parametrize("flag", NOT_HARM)
def test_other_flags_are_no_harm_flags(flag: str) -> None:
    assert item_harm_categories([flag]) == {}
    assert not items_kept_out(_pack(), [flag]).any()


def test_an_unknown_category_behind_a_hidden_prefix_fails_the_audit() -> None:
    result = vocabulary_result(_pack(), item_harm_categories(["HARMFUL:self-harm"]))
    assert result is not None and result["status"] == "error" and "self-harm (1 item(s))" in result["message"]


def test_monitoring_counts_hidden_flags_as_harmful() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    items = pd.DataFrame({"flags": [HIDDEN[0], HIDDEN[5], "", "promoted"]}, index=["a", "b", "c", "d"])
    decisions = pd.DataFrame({
        "decision_id": ["d1", "d2"], "decided_at": pd.to_datetime([now - timedelta(hours=1)] * 2, utc=True),
        "mode": ["personalized"] * 2, "model_version": ["m1"] * 2, "items": [["a", "c"], ["b", "d"]],
        "scores": [[0.9, 0.5], [0.8, 0.4]], "shadow": [False, False],
    })  # fmt: skip
    outcomes = pd.DataFrame({c: [] for c in ("kind", "item_id", "decision_id", "position", "attribution", "occurred_at")})
    inputs = WindowInputs(decisions=decisions, outcomes=outcomes, failed=0, unreadable=0, items=items, profiles={})
    figures = window_figures(inputs)["models"]["m1"]
    expected = np.mean([flag in HIDDEN for flag in items["flags"].reindex(["a", "c", "b", "d"])])
    assert figures["harmful_share"] == pytest.approx(expected)

