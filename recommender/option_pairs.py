"""``field=column,field=column`` options (``--map``, ``--items-map``, ``?map=``), read one way everywhere."""

from __future__ import annotations

from recommender.errors import DataError

__all__ = ["parse_pairs"]


def parse_pairs(text: str, option: str, example: str) -> dict[str, str | None]:
    """``"a=x,b=y"`` as ``{"a": "x", "b": "y"}`` (an empty value gives None: the field keeps its default).

    ``option`` names the option in messages (``--map``), ``example`` is one well-formed pair. A part without ``=`` and
    a field given twice (the last would otherwise win silently) are refused with a :class:`DataError`.
    """
    pairs: dict[str, str | None] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise DataError(f"{option}: {part!r} is not of the form field=column (e.g. {example})")
        key, _, value = part.partition("=")
        key = key.strip()
        if key in pairs:
            raise DataError(f"{option}: the field {key!r} is given twice; map each field once")
        pairs[key] = value.strip() or None
    return pairs
