"""Data minimisation before a fit: a model family reads only what the pack allows for the purpose.

A family declares its inputs in the family vocabulary
(:data:`recommender.family.KNOWN_INPUTS`: ``interactions``, ``item_text``,
``user_attributes``, ...); a pack's ``minimization.purposes.<purpose>.allowed_inputs``
lists fields (``user_id``, ``item_id``, ``timestamp``, ...). :data:`INPUT_FIELDS`
maps one onto the other: a family input is allowed when the allow-list holds
its own name or every field it stands for. ``user_attributes`` are personal
data about the subject: they reach a model only where the allow-list names
``user_attributes`` (or the attributes themselves) and none of the attributes
the model would read is forbidden or audit-only.

:func:`check_family_inputs` refuses a family with a located
:class:`~recommender.errors.ConfigError` (the pack path, and its line when the
pack came from a file) before anything is fitted: the governed fits
(``recgov evaluate --families ... --pack``, ``recgov train --pack``) call it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from recommender.errors import ConfigError
from recommender.family import Family

__all__ = ["INPUT_FIELDS", "check_family_inputs", "family_input_verdict"]

INPUT_FIELDS: dict[str, tuple[str, ...]] = {
    "interactions": ("user_id", "item_id"),
    "timestamp": ("timestamp",),
    "session_id": ("session_id",),
    "item_text": ("item_text",),
    "item_category": ("item_category",),
    "item_price": ("item_price",),
    "item_release": ("item_release",),
    "user_attributes": ("user_attributes",),
}
"""Family input -> the allow-list fields that stand for it (any of the input's own name, or all of these)."""

ALIASES: dict[str, tuple[str, ...]] = {
    "item_category": ("category", "categories"),
    "item_release": ("release", "release_date"),
    "item_price": ("price",),
    "item_text": ("title", "description", "text"),
}
"""Allow-list field names a pack may use for an item input instead of the family's own name."""


def _allowed(name: str, allowed: set[str]) -> bool:
    if name in allowed:
        return True
    if any(alias in allowed for alias in ALIASES.get(name, ())):
        return True
    return set(INPUT_FIELDS.get(name, (name,))) <= allowed


def family_input_verdict(
    family: Family, pack: Any, *, purpose: str = "personalization", user_attributes: Iterable[str] = ()
) -> dict[str, Any]:
    """What the pack says about ``family``'s inputs: ``{ok, not_allowed, banned_attributes, allowed, path}``.

    ``user_attributes`` are the attribute columns a family reading ``user_attributes`` would get.
    """
    inner = getattr(pack, "pack", pack)
    minimization = getattr(inner, "minimization", None)
    purposes = getattr(minimization, "purposes", {}) or {}
    path = f"minimization.purposes.{purpose}.allowed_inputs"
    spec = purposes.get(purpose)
    if spec is None:
        # No allow-list for the purpose (the input_allowlist check skips too): the interactions every recommender
        # reads pass, anything more (item metadata, sessions, user attributes) needs the pack to allow it.
        beyond = sorted(set(family.inputs) - {"interactions"})
        return {"ok": not beyond, "path": f"minimization.purposes.{purpose}", "allowed": None, "not_allowed": beyond, "banned_attributes": []}
    allowed = set(spec.allowed_inputs)
    not_allowed = sorted(n for n in family.inputs if not _allowed(n, allowed))
    banned: list[str] = []
    if "user_attributes" in family.inputs:
        attrs = set(user_attributes)
        forbidden = set(minimization.forbidden_attributes) | set(minimization.audit_only_attributes)
        banned = sorted(attrs & forbidden)
        if "user_attributes" not in allowed and "user_attributes" not in not_allowed:
            not_allowed.append("user_attributes")
        if "user_attributes" in not_allowed and attrs and attrs <= allowed:
            not_allowed.remove("user_attributes")  # the allow-list names each attribute the model reads
    return {"ok": not not_allowed and not banned, "path": path, "allowed": sorted(allowed), "not_allowed": not_allowed, "banned_attributes": banned}


def check_family_inputs(
    family: Family, pack: Any, *, purpose: str = "personalization", user_attributes: Iterable[str] = ()
) -> None:
    """Refuse ``family`` before a fit when it reads an input the pack does not allow for ``purpose``.

    A pack without an allow-list for ``purpose`` lets through the interactions only.

    ``pack`` is a :class:`~governance.policy.LoadedPack` (its line numbers locate the error) or a
    :class:`~governance.policy.PolicyPack`.
    """
    verdict = family_input_verdict(family, pack, purpose=purpose, user_attributes=user_attributes)
    if verdict["ok"]:
        return
    positions = getattr(pack, "positions", {}) or {}
    line_col = positions.get(verdict["path"]) or positions.get(verdict["path"].rsplit(".", 1)[0])
    source = getattr(pack, "source", None)
    where = verdict["path"] + (f" ({source}:{line_col[0]}:{line_col[1]})" if line_col and source else "")
    if verdict["allowed"] is None:
        raise ConfigError(
            f"{where}: the pack lists no allowed inputs for {purpose!r}, and model family {family.name!r} reads "
            f"{', '.join(verdict['not_allowed'])} beyond the interactions; it is not fitted"
        )
    parts = []
    if verdict["not_allowed"]:
        parts.append(f"reads {', '.join(verdict['not_allowed'])}, not on the {purpose} allow-list ({', '.join(verdict['allowed'])})")
    if verdict["banned_attributes"]:
        parts.append(f"would read forbidden or audit-only attribute(s) {', '.join(verdict['banned_attributes'])}")
    raise ConfigError(f"{where}: model family {family.name!r} {'; '.join(parts)}; it is not fitted")
