"""The raw-identifier guard of stored JSON: its byte-level shortcut never lets a raw-id key through."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audits._common import RAW_ID_KEYS, canonical_object, refuse_raw_ids
from recommender.errors import DataError


def _case_variants(key: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(key), max_size=len(key)).map(
        lambda upper: "".join(c.upper() if u else c for c, u in zip(key, upper))
    )


keys = (
    st.sampled_from(sorted(RAW_ID_KEYS)).flatmap(_case_variants)
    | st.sampled_from(["items", "scores", "tags", "kind", "text", "user", "id", "user_idx", "xuser_id", "email_hash"])
    | st.text(max_size=8)
)
scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=12) | st.floats(allow_nan=False, allow_infinity=False)
values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(keys, c, max_size=4), max_leaves=16)


def _refused(call) -> bool:  # noqa: ANN001
    try:
        call()
    except DataError:
        return True
    return False


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(keys, values, max_size=4))
def test_the_shortcut_refuses_exactly_what_the_full_walk_refuses(value: dict) -> None:
    assert _refused(lambda: canonical_object(value, "slate")) == _refused(lambda: refuse_raw_ids(value, field="slate"))


@pytest.mark.parametrize("key", ["user_id", "USER_ID", "Email", "iP", "ip_address", "subject_id"])
def test_a_raw_id_key_deep_in_a_slate_is_refused_and_located(key: str) -> None:
    slate = {"items": ["i1"], "tags": [[{"kind": "x", "meta": {key: "u-123456"}}]]}
    with pytest.raises(DataError, match=r"\$\.tags\[0\]\[0\]\.meta"):
        canonical_object(slate, "slate")
