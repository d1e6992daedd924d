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

A name is first freed of what hides a word from the eye but not from a
comparison: characters that print nothing (a soft hyphen or a zero-width space
inside ``gen\u00adder``: read both as gone and as a break between words),
accents (``gendér``), and letters of other scripts drawn like Latin ones
(Cyrillic ``е`` in ``gеnder``, Greek ``ο``, the IPA ``ɡ``: :data:`LOOKALIKES`).

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

LOOKALIKES: dict[str, str] = {
    **dict(zip("АВЕЅІЈКМНОРСТХУԁеѕіјорсхуһԛԝ", "ABESIJKMHOPCTXYdesijopcxyhqw")),  # Cyrillic
    **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧαιονρτυ", "ABEZHIKMNOPTYXaiovptu")),  # Greek
    **dict(zip("ɡıȷɑ", "gija")),  # Latin letters outside ASCII drawn like ASCII ones
}
"""Letters of other scripts drawn like a Latin letter -> that letter (from Unicode's confusables, TR39)."""

_FOLD = str.maketrans(LOOKALIKES)


def _unseen(char: str) -> bool:
    """Whether ``char`` prints nothing of its own: a format character (soft hyphen, zero-width space, bidi
    marks) or a combining mark (an accent)."""
    return unicodedata.category(char) in ("Cf", "Mn", "Me")


def _spellings(name: object) -> tuple[tuple[str, ...], ...]:
    """The words of ``name`` with its unseen characters read as gone, and as breaks between words."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", str(name)).translate(_FOLD))
    joined = "".join(char for char in text if not _unseen(char))
    split = "".join(" " if unicodedata.category(char) == "Cf" else char for char in text if unicodedata.category(char) not in ("Mn", "Me"))
    return tuple(dict.fromkeys(_words(unicodedata.normalize("NFKC", variant)) for variant in (joined, split)))


def _words(text: str) -> tuple[str, ...]:
    text = _CAMEL.sub("_", text.translate(_FOLD))
    return tuple(word for word in _SEPARATORS.split(text.casefold()) if word)


def name_words(name: object) -> tuple[str, ...]:
    """The words of a column or attribute name: ``" User-Religion "`` -> ``("user", "religion")``."""
    return _spellings(name)[0]


def _names(words: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    if not wanted or not words:
        return False
    n = len(wanted)
    if any(words[i : i + n] == wanted for i in range(len(words) - n + 1)):
        return True
    return "".join(wanted) in words or "".join(words) == "".join(wanted)


def names_attribute(column: object, attribute: object) -> bool:
    """Whether ``column``'s name names ``attribute`` (see the module)."""
    wanted = name_words(attribute)
    return any(_names(words, wanted) for words in _spellings(column))


def named_attributes(column: object, attributes: Iterable[str]) -> list[str]:
    """The ``attributes`` that ``column``'s name names, in their order."""
    return [attribute for attribute in attributes if names_attribute(column, attribute)]
