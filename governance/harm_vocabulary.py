"""Harm categories in a dataset's item table, read against the pack's vocabulary (pure, no I/O).

A dataset's item table may flag items ``harmful:<category>`` (its ``flags`` column,
``|``-separated). The pack's harm categories are a vocabulary
(``harmful_content.categories`` and ``blocked_categories``,
:meth:`~governance.policy.HarmfulContentSection.known_categories`): a flag whose
category the pack does not know (a misspelling, ``self_harm`` for ``self-harm``, or
a vocabulary from another system) must never be a flag that silently blocks
nothing. So, as the store does for such a flag (a ``harm.unknown_category`` review
case keeps the item out of lists until someone decides):

* serving keeps every item with an unknown category out of lists, as it does the
  items of a blocked category, and warns once per engine, naming the unknown
  categories and the known ones (:func:`items_kept_out`);
* ``recgov policy validate PACK --data DATA`` reports an error naming them
  (:func:`vocabulary_issue_message`, through the pack's static analysis);
* an audit of such data carries an ``error`` result that blocks the gate
  (:func:`vocabulary_result`).

A flag is read as a person reads it (:func:`_harm_category`): ``HARMFUL : violence``, a zero-width character
inside the prefix, full-width letters or letters of another script that look like its own are still
``harmful:violence``; a flag that nothing reads would keep nothing out.

A pack that declares no harm vocabulary at all (no ``harmful_content`` categories)
takes no position on harm: serving still keeps every flagged item out and warns,
and validation warns, but its audits are not failed for it.
"""

from __future__ import annotations

import logging
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = [
    "UNKNOWN_ITEM_CATEGORIES",
    "VOCABULARY_RULE_ID",
    "is_harm_flagged",
    "item_harm_categories",
    "items_kept_out",
    "unknown_item_categories",
    "vocabulary_issue_message",
    "vocabulary_result",
]

log = logging.getLogger("recgov.serving")

FLAG_PREFIX = "harmful:"
VOCABULARY_RULE_ID = "harmful_content.vocabulary"
"""The id of the audit result that reports unknown item-table harm categories (no pack rule has a dot in its id)."""
UNKNOWN_ITEM_CATEGORIES = (
    "the item table flags {n_items} item(s) harmful with {n_unknown} category(ies) pack {pack} does not know: "
    "{unknown}; known: {known} (harmful_content.categories and blocked_categories). Such items are kept out of "
    "lists until the pack knows the category or the flags are corrected"
)
VOCABULARY_DESCRIPTION = (
    "Every harm category the item table flags is one the pack knows: an unknown one would block nothing by itself."
)


_LOOKALIKES = str.maketrans({
    "\u0430": "a", "\u0251": "a", "\u03b1": "a",  # Cyrillic a, Latin alpha, Greek alpha
    "\u04bb": "h", "\u0570": "h",  # Cyrillic shha, Armenian ho
    "\u0433": "r", "\u1d26": "r",  # Cyrillic ghe, small capital gamma
    "\u043c": "m", "\u217f": "m",  # Cyrillic em, Roman numeral one thousand
    "\u03c5": "u", "\u057d": "u", "\u0446": "u",  # Greek upsilon, Armenian seh, Cyrillic tse
    "\u04cf": "l", "\u0131": "l", "\u01c0": "l", "\u05c0": "l", "i": "l",  # lookalikes of l, and I folded to i
    "\u0192": "f", "\u0493": "f",  # Latin f with hook, Cyrillic ghe with stroke
})
"""Letters that read as those of ``harmful``: a flag spelt with them (``hаrmful:`` with a Cyrillic ``а``, or
``harmfuI`` with a capital I) is a harm flag, never one that nothing reads."""
_PREFIX_SKELETON = "harmful".translate(_LOOKALIKES)


def _plain(text: str) -> str:
    """``text`` in NFKC, without format characters (zero-width spaces and joiners), stripped of white space."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if unicodedata.category(ch) != "Cf").strip()


def _harm_category(part: str) -> str | None:
    """The category of one flag, or None when it is no harm flag.

    The prefix is read as a person reads it: in any case, with white space around the colon, in compatibility
    forms (full-width letters), with zero-width characters or letters of other scripts that look like its own:
    ``HARMFUL : violence`` is a harm flag, not a flag nothing reads and that keeps nothing out. The category is
    kept as written (normalized and stripped): one the pack does not know keeps the item out and is reported."""
    prefix, colon, category = _plain(part).partition(":")
    if not colon:
        return None
    skeleton = "".join(prefix.split()).casefold().translate(_LOOKALIKES)
    return category.strip() if skeleton == _PREFIX_SKELETON else None


def _categories_of(flags: str) -> list[str]:
    if not flags:
        return []
    return [c for c in (_harm_category(part) for part in str(flags).split("|")) if c is not None]


def is_harm_flagged(flags: Any) -> bool:
    """Whether an item table's ``flags`` value holds at least one harm flag (read as :func:`_harm_category` reads it)."""
    return isinstance(flags, str) and bool(_categories_of(flags))


def item_harm_categories(flags: Iterable[Any]) -> dict[str, int]:
    """Harm category -> number of items flagged with it, from an item table's ``flags`` values."""
    counts: Counter[str] = Counter()
    items_by_value = Counter(value for value in flags if isinstance(value, str) and value)  # few distinct values
    for value, n_items in items_by_value.items():
        for category in set(_categories_of(value)):
            counts[category] += n_items
    return dict(sorted(counts.items()))


def unknown_item_categories(pack: Any, categories: Mapping[str, int]) -> dict[str, int]:
    """The categories of ``categories`` (category -> items) that ``pack`` (a PolicyPack) does not know."""
    known = set(pack.harmful_content.known_categories())
    return {c: n for c, n in sorted(categories.items()) if c not in known}


def vocabulary_issue_message(pack: Any, categories: Mapping[str, int]) -> str | None:
    """The error naming the unknown categories and the known ones, or None when the pack knows them all."""
    unknown = unknown_item_categories(pack, categories)
    if not unknown:
        return None
    return UNKNOWN_ITEM_CATEGORIES.format(
        n_items=sum(unknown.values()), n_unknown=len(unknown), pack=pack.metadata.name,
        unknown=", ".join(f"{c} ({n} item(s))" for c, n in unknown.items()),
        known=", ".join(pack.harmful_content.known_categories()) or "none",
    )  # fmt: skip


def items_kept_out(pack: Any, flags: Iterable[Any]) -> np.ndarray:
    """Which items (in the order of ``flags``) the pack keeps out of lists for their flags: a blocked
    category, or a category the pack does not know (warned about here, once per call)."""
    values = [str(v) if isinstance(v, str) else "" for v in flags]
    blocked = set(pack.harmful_content.blocked_categories)
    known = set(pack.harmful_content.known_categories())
    out_by_value = {v: any(c in blocked or c not in known for c in _categories_of(v)) for v in set(values)}  # few distinct
    kept_out = np.fromiter((out_by_value[v] for v in values), dtype=bool, count=len(values))
    message = vocabulary_issue_message(pack, item_harm_categories(values))
    if message is not None:
        log.warning("%s", message)
    return kept_out


def vocabulary_result(pack: Any, categories: Mapping[str, int] | None) -> dict[str, Any] | None:
    """The audit result (the fields of :class:`~governance.engine.RuleResult`) for unknown item-table
    harm categories: an ``error``, which blocks the gate; None when the pack knows every category."""
    message = vocabulary_issue_message(pack, categories or {})
    if message is None or not pack.harmful_content.known_categories():
        return None
    return {
        "rule_id": VOCABULARY_RULE_ID,
        "section": "harmful_content",
        "check": "harm_vocabulary",
        "description": VOCABULARY_DESCRIPTION,
        "legal_reference": "DSA Art. 34, 35",
        "severity": "block",
        "status": "error",
        "message": message,
        "evidence": {"unknown": unknown_item_categories(pack, categories or {}), "known": pack.harmful_content.known_categories()},
    }
