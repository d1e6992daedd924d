"""Canonical JSON (RFC 8785, JCS): the exact bytes that the trail hashes.

:func:`canonical_json` returns the RFC 8785 encoding of a JSON value: object keys
sorted by their UTF-16 code units, no whitespace, UTF-8, the shortest escapes,
numbers as ECMAScript prints them. The reference is the ``rfc8785`` package; for
speed the common case goes through ``orjson`` with sorted keys, which gives the
same bytes when every float is non-integral with a magnitude in [1e-4, 1e15)
and no object key has a character at or above U+D800 (where UTF-16 order and
code-point order part ways). In that float range both print the shortest digits
that round-trip, closest to the value, in plain decimal notation (ECMAScript
switches to exponents only below 1e-6 or from 1e21; integral floats print as
``1`` there and ``1.0`` in orjson). Anything else goes through ``rfc8785``. ``tests/audits/test_canonical.py`` checks that both
paths agree.

Accepted values: ``None``, ``bool``, ``int`` within +-(2**53 - 1) (what JSON's
IEEE doubles represent exactly), finite ``float``, ``str`` (valid Unicode), and
lists, tuples and dicts of those with ``str`` keys. Anything else raises
:class:`~recommender.errors.DataError`.
"""

from __future__ import annotations

from typing import Any

import orjson
import rfc8785

from recommender.errors import DataError

__all__ = ["canonical_json", "MAX_SAFE_INTEGER"]

MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer JSON numbers (IEEE doubles) hold exactly; larger ones must be strings."""

_SORT = orjson.OPT_SORT_KEYS
_FIRST_SURROGATE = "\ud800"
_FAST_FLOAT_MIN = 1e-4
_FAST_FLOAT_MAX = 1e15
_INF = float("inf")


def _check(value: Any, path: str) -> bool:
    """Raise ``DataError`` on values JCS cannot encode; return True if orjson's output is canonical."""
    if value is None or value is True or value is False or type(value) is str:
        return True
    kind = type(value)
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return True
        raise DataError(
            f"{path}: integer {value} is outside +-(2**53 - 1), which JSON numbers cannot hold "
            "exactly; store it as a string"
        )
    if isinstance(value, dict):
        fast = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise DataError(f"{path}: object keys must be strings, got {type(key).__name__} {key!r}")
            if type(key) is not str or (not key.isascii() and max(key) >= _FIRST_SURROGATE):
                fast = False  # orjson takes only exact str keys; a str Enum key goes to rfc8785
            fast = _check(item, f"{path}.{key}") and fast
        return fast
    if isinstance(value, (list, tuple)):
        fast = True
        for index, item in enumerate(value):
            fast = _check(item, f"{path}[{index}]") and fast
        return fast
    if kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise DataError(f"{path}: {value} is not a finite number; JSON cannot hold it")
        return _FAST_FLOAT_MIN <= abs(value) < _FAST_FLOAT_MAX and not value.is_integer()
    if isinstance(value, (bool, int, str, float)):  # subclasses (IntEnum, str Enum): take the slow path
        return False
    raise DataError(
        f"{path}: a {type(value).__name__} cannot go into canonical JSON; use None, bool, int, float, str, list or dict"
    )


class _Refused(Exception):
    """:func:`_scan` met a value it does not accept; :func:`_check` says where and why."""


def _scan(value: Any) -> bool:
    """:func:`_check` without the paths: True if orjson's output is canonical; raises :class:`_Refused`.

    Every record of the decision log and the trail goes through here, so it
    builds no path string per value; only a refused value is walked again by
    :func:`_check`, which names where it is.
    """
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return True
    if kind is float:
        if value != value or value == _INF or value == -_INF:
            raise _Refused
        return _FAST_FLOAT_MIN <= abs(value) < _FAST_FLOAT_MAX and not value.is_integer()
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return True
        raise _Refused
    if kind is list or kind is tuple:
        fast = True
        for item in value:
            if type(item) is str:
                continue
            if type(item) is float:  # the scores and weights of a slate: checked here, no call per number
                if item != item or item == _INF or item == -_INF:
                    raise _Refused
                if not (_FAST_FLOAT_MIN <= abs(item) < _FAST_FLOAT_MAX) or item.is_integer():
                    fast = False
            elif not _scan(item):
                fast = False
        return fast
    if kind is dict:
        fast = True
        for key, item in value.items():
            if type(key) is not str:
                raise _Refused
            if not key.isascii() and max(key) >= _FIRST_SURROGATE:
                fast = False
            if type(item) is not str and not _scan(item):
                fast = False
        return fast
    raise _Refused  # subclasses (IntEnum, str Enum, dict subclasses) and other types: _check decides


def canonical_json(value: Any) -> bytes:
    """Return the RFC 8785 canonical JSON encoding of ``value`` as UTF-8 bytes.

    Examples
    --------
    >>> canonical_json({"b": [1, "x"], "a": None})
    b'{"a":null,"b":[1,"x"]}'
    """
    try:
        try:
            fast = _scan(value)
        except _Refused:
            fast = _check(value, "$")  # raises DataError naming the value, or accepts a subclass (slow path)
        if fast:
            return orjson.dumps(value, option=_SORT)
        return rfc8785.dumps(value)
    except (orjson.JSONEncodeError, rfc8785.CanonicalizationError) as err:
        raise DataError(f"cannot encode the value as canonical JSON: {err}") from err
