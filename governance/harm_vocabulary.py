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

A pack that declares no harm vocabulary at all (no ``harmful_content`` categories)
takes no position on harm: serving still keeps every flagged item out and warns,
and validation warns, but its audits are not failed for it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = [
    "UNKNOWN_ITEM_CATEGORIES",
    "VOCABULARY_RULE_ID",
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


def _categories_of(flags: str) -> list[str]:
    return [part[len(FLAG_PREFIX) :].strip() for part in str(flags).split("|") if part.strip().startswith(FLAG_PREFIX)]


def item_harm_categories(flags: Iterable[Any]) -> dict[str, int]:
    """Harm category -> number of items flagged with it, from an item table's ``flags`` values."""
    counts: Counter[str] = Counter()
    for value in flags:
        if isinstance(value, str) and FLAG_PREFIX in value:
            counts.update(set(_categories_of(value)))
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
    kept_out = np.array(
        [any(c in blocked or c not in known for c in _categories_of(v)) if FLAG_PREFIX in v else False for v in values],
        dtype=bool,
    )
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
