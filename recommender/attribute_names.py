"""Whether a column's name names an attribute, whatever its spelling.

A pack forbids attributes by name (``religion``, ``sexual_orientation``); data
arrive with the names their producers chose (``Religion``, `` religion ``,
``sexual-orientation``, ``userReligion``, ``religion_code``). An exact string
comparison lets every one of these through, so names are compared as words:
each name is NFKC-normalised, split at camelCase boundaries and at every run of
characters that are not letters or digits, and case-folded; a column names an
attribute when the attribute's words appear in it, in order and side by side
(``religion_code`` and ``user_religion`` name ``religion``; ``healthcare`` does
not name ``health``), or when its words run together into the attribute's
(``sexualorientation``).

Names only: a column that encodes an attribute under an unrelated name is a
proxy, which the ``proxy_leakage`` check measures on the fitted model.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = ["name_words", "named_attributes", "names_attribute"]

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[\W_]+", re.UNICODE)


def name_words(name: object) -> tuple[str, ...]:
    """The words of a column or attribute name: ``" User-Religion "`` -> ``("user", "religion")``."""
    text = unicodedata.normalize("NFKC", str(name))
    text = _CAMEL.sub("_", text)
    return tuple(word for word in _SEPARATORS.split(text.casefold()) if word)


def names_attribute(column: object, attribute: object) -> bool:
    """Whether ``column``'s name names ``attribute`` (see the module)."""
    words, wanted = name_words(column), name_words(attribute)
    if not wanted or not words:
        return False
    n = len(wanted)
    if any(words[i : i + n] == wanted for i in range(len(words) - n + 1)):
        return True
    return "".join(wanted) in words or "".join(words) == "".join(wanted)


def named_attributes(column: object, attributes: Iterable[str]) -> list[str]:
    """The ``attributes`` that ``column``'s name names, in their order."""
    return [attribute for attribute in attributes if names_attribute(column, attribute)]
