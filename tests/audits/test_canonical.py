"""Canonical JSON: the fast orjson path and the rfc8785 reference give the same bytes."""

from __future__ import annotations

import enum
import math
import re
from datetime import UTC, datetime

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from audits.canonical import MAX_SAFE_INTEGER, _check, _Refused, _scan, canonical_json
from audits.trail import event_message
from recommender.errors import DataError

safe_ints = st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
# Keys below U+D800: orjson's code-point order equals JCS's UTF-16 order there.
low_keys = st.text(st.characters(max_codepoint=0xD7FF), max_size=8)
any_text = st.text(max_size=20)  # hypothesis never generates lone surrogates


def json_values(scalars: st.SearchStrategy, keys: st.SearchStrategy) -> st.SearchStrategy:
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
        max_leaves=12,
    )


fast_values = json_values(st.none() | st.booleans() | safe_ints | any_text, low_keys)
all_values = json_values(st.none() | st.booleans() | safe_ints | any_text | finite_floats, any_text)


@settings(max_examples=200, deadline=None)
@given(fast_values)
def test_orjson_with_sorted_keys_is_canonical_on_the_fast_domain(value: object) -> None:
    assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == rfc8785.dumps(value)


@settings(max_examples=200, deadline=None)
@given(all_values)
def test_canonical_json_equals_the_rfc8785_reference(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


class _Level(enum.IntEnum):
    low = 1


class _Kind(str, enum.Enum):
    a = "a"


def _verdict(fn: object, value: object) -> object:
    """What a checker says of ``value``: its fast/slow answer, or that it refuses it."""
    try:
        return fn(value)  # type: ignore[operator]
    except (_Refused, DataError):
        return "refused"


class _Dict(dict):
    pass


class _Key(str):
    pass


odd_scalars = st.sampled_from([_Level.low, _Kind.a, math.nan, math.inf, -math.inf, 2**53, -(2**60), 1.0, -0.0, 1e-7, 1e16, True, False])
odd_keys = any_text | st.sampled_from([_Key("k"), 1, _Kind.a])
mixed_values = st.recursive(
    st.none() | st.booleans() | safe_ints | any_text | finite_floats | odd_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(odd_keys, children, max_size=4)
        | st.dictionaries(any_text, children, max_size=3).map(_Dict)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(mixed_values)
def test_the_path_free_scan_agrees_with_the_located_check(value: object) -> None:
    """canonical_json trusts _scan on the hot path: wherever _scan accepts, _check gives the same answer
    (where _scan refuses, canonical_json asks _check); the bytes are RFC 8785's, and what _check refuses
    is refused with a DataError."""
    scanned, checked = _verdict(_scan, value), _verdict(lambda v: _check(v, "$"), value)
    if scanned != "refused":  # where _scan refuses, canonical_json takes _check's verdict itself
        assert scanned == checked
    if checked != "refused":
        assert canonical_json(value) == rfc8785.dumps(value)
    else:
        with pytest.raises(DataError):
            canonical_json(value)


# Floats canonical_json sends through orjson: non-integral, magnitude in [1e-4, 1e15).
fast_floats = finite_floats.filter(lambda x: 1e-4 <= abs(x) < 1e15 and not x.is_integer())
rounded_scores = st.floats(-100, 100, allow_nan=False).map(lambda x: round(x, 6)).filter(lambda x: 1e-4 <= abs(x) and not x.is_integer())


@settings(max_examples=500, deadline=None)
@given(json_values(fast_floats | rounded_scores | safe_ints | any_text, low_keys))
def test_orjson_prints_floats_of_the_fast_range_as_rfc8785_does(value: object) -> None:
    assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == rfc8785.dumps(value)


@pytest.mark.parametrize("value", [1e-5, 9.99e-5, 1e-6, 2.5e-6, 1.5e-7, 1e15, 1.5e16, 1e21, 2.0, -0.0, 0.0, 1e300, 5e-324])
def test_floats_outside_the_fast_range_still_encode_as_rfc8785(value: float) -> None:
    assert canonical_json({"x": [value, 0.5]}) == rfc8785.dumps({"x": [value, 0.5]})


def test_keys_sort_by_utf16_code_units_not_code_points() -> None:
    value = {"\ue000": 1, "\U0001f600": 2, "a": 3}
    # U+1F600 is the surrogate pair D83D DE00, which sorts before U+E000 in UTF-16.
    assert canonical_json(value) == '{"a":3,"\U0001f600":2,"\ue000":1}'.encode()


def test_escapes_and_numbers_follow_rfc8785() -> None:
    assert canonical_json({"s": '\u0000\u001f\b\t\n\f\r"\\/\u007f\u2028é'}) == (
        b'{"s":"\\u0000\\u001f\\b\\t\\n\\f\\r\\"\\\\/\x7f\xe2\x80\xa8\xc3\xa9"}'
    )
    assert canonical_json([1.0, 1e21, 1e-7, 0.1, -0.0, 123456789012345680000.0]) == (
        b"[1,1e+21,1e-7,0.1,0,123456789012345680000]"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (2**53, "outside +-(2**53 - 1)"),
        ({"x": -(2**60)}, "$.x: integer"),
        (math.nan, "not a finite number"),
        ({"x": [math.inf]}, "$.x[0]: inf"),
        ({1: "a"}, "object keys must be strings"),
        ({"when": datetime.now(UTC)}, "a datetime cannot go into canonical JSON"),
        ({"s": {1, 2}}, "a set cannot go into canonical JSON"),
        ("\ud800", "cannot encode"),
    ],
)
def test_values_json_cannot_hold_exactly_are_refused(value: object, message: str) -> None:
    with pytest.raises(DataError, match=re.escape(message)):
        canonical_json(value)


@settings(max_examples=100, deadline=None)
@given(
    seq=st.integers(min_value=1, max_value=MAX_SAFE_INTEGER),
    actor=st.text(min_size=1, max_size=10),
    action=st.from_regex(r"[a-z][a-z0-9_]{0,8}(\.[a-z0-9_]{1,8}){0,2}", fullmatch=True),
    subject=st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    objects=st.dictionaries(any_text, st.none() | safe_ints | any_text, max_size=3),
    payload=all_values.filter(lambda v: isinstance(v, dict)) | st.just({}),
)
def test_the_fast_event_message_is_the_canonical_json_of_the_event(
    seq: int, actor: str, action: str, subject: str | None, objects: dict, payload: dict
) -> None:
    time = "2026-01-31T12:34:56.123456Z"
    message = event_message(
        seq, time, actor, action, subject, canonical_json(objects).decode(), canonical_json(payload).decode()
    )
    expected = rfc8785.dumps(
        {
            "seq": seq,
            "time": time,
            "actor": actor,
            "action": action,
            "subject": subject,
            "objects": objects,
            "payload": payload,
        }
    )
    assert message == expected
