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

The inputs are named in the vocabulary, but a fit reads columns: the event
fields under the columns a mapping read them from (``--map value=gender``), the
item-table columns a family's parameters name (``text_columns=["religion"]``)
and the item categories under the item table's own column. :func:`columns_read`
lists them, and none may name a forbidden or audit-only attribute, in any
spelling (``Religion``, ``religion_code``: :mod:`recommender.attribute_names`).
The item columns the lists read whatever the family (:data:`LISTED_ITEM_COLUMNS`,
:data:`PROVIDER_ITEM_COLUMNS`) are held to the same rule for every family, and
:func:`refuse_banned_item_columns` holds item metadata to it where lists are made.

:func:`check_family_inputs` refuses a family with a located
:class:`~recommender.errors.ConfigError` (the pack path, and its line when the
pack came from a file) before anything is fitted: the governed fits
(``recgov evaluate --families ... --pack``, ``recgov train --pack``) call it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from recommender.attribute_names import named_attributes
from recommender.errors import ConfigError
from recommender.family import Family
from recommender.feedback import MODEL_INPUT_COLUMNS

__all__ = [
    "BANNED_COLUMN", "BANNED_ITEM_COLUMN", "INPUT_FIELDS", "LISTED_ITEM_COLUMNS", "PROVIDER_ITEM_COLUMNS", "check_family_inputs", "columns_read",
    "family_input_verdict", "listed_item_columns", "refuse_banned_columns", "refuse_banned_item_columns",
    "renamed_columns_read",
]  # fmt: skip

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

BANNED_COLUMN = (
    "{where}: model family {family!r} would read a forbidden or audit-only attribute: {columns}; it is not "
    "fitted; leave the column out of the column mappings and the parameters"
)


BANNED_ITEM_COLUMN = (
    "{where}: the item table's column mapping would put a forbidden or audit-only attribute into the lists: {columns}; "
    "no list is made with it; leave the column out of --items-map"
)

LISTED_ITEM_COLUMNS: dict[str, str] = {
    "categories": "item categories",
    "release_year": "item release",
    "release_decade": "item release",
}
"""Item columns the lists read whatever the model family (the calibration re-ranker, a request's category, the
release-date rules and metrics) -> what reads them. Mapped from a column naming a forbidden or audit-only attribute
(``--items-map category=religion``), they are refused for every family, not only for one declaring the input."""


PROVIDER_ITEM_COLUMNS: dict[str, str] = {"provider": "item provider", "provider_group": "item provider group"}
"""Item columns the provider re-rankers and rules read into the lists whatever the family -> what reads them. A
provider's attribute a fairness audit groups by may be declared audit-only; one forbidden (and not audit-only) is
refused (``--items-map provider_group=owner_ethnicity`` under a pack forbidding ``ethnicity`` for every use)."""


def listed_item_columns(sources: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """``(what, column)`` for each item column of :data:`LISTED_ITEM_COLUMNS` read from a file column of another
    name (``sources``: :attr:`recommender.data.Dataset.columns_from`, or an item table's own record of them)."""
    out: list[tuple[str, str]] = []
    for column, what in LISTED_ITEM_COLUMNS.items():
        source = (sources or {}).get(f"items.{column}", (sources or {}).get(column))
        if source is not None and (what, source) not in out:
            out.append((what, source))
    return out


def _banned_names(pack: Any) -> list[str]:
    minimization = getattr(getattr(pack, "pack", pack), "minimization", None)
    return [*getattr(minimization, "forbidden_attributes", []), *getattr(minimization, "audit_only_attributes", [])]


def _listed_banned(pack: Any, sources: Mapping[str, str] | None) -> list[str]:
    """``"what reads column (attribute)"`` for each item column the lists read (:data:`LISTED_ITEM_COLUMNS`, and
    :data:`PROVIDER_ITEM_COLUMNS` held to the attributes forbidden for every use) read from a banned column."""
    minimization = getattr(getattr(pack, "pack", pack), "minimization", None)
    audit_only = set(getattr(minimization, "audit_only_attributes", []))
    for_no_use = [a for a in getattr(minimization, "forbidden_attributes", []) if a not in audit_only]
    given = sources or {}
    providers = [(what, source) for column, what in PROVIDER_ITEM_COLUMNS.items()
                 if (source := given.get(f"items.{column}", given.get(column))) is not None]  # fmt: skip
    return [*_banned_columns(listed_item_columns(sources), _banned_names(pack)), *_banned_columns(providers, for_no_use)]


def _located(pack: Any, banned_columns: list[str]) -> str:
    where = _banned_list(pack, banned_columns)
    line_col = (getattr(pack, "positions", {}) or {}).get(where)
    source = getattr(pack, "source", None)
    return where + (f" ({source}:{line_col[0]}:{line_col[1]})" if line_col and source else "")


def refuse_banned_item_columns(pack: Any, sources: Mapping[str, str] | None) -> None:
    """Refuse item metadata whose listed columns (:data:`LISTED_ITEM_COLUMNS`) were read from a column naming a
    forbidden or audit-only attribute of ``pack``, in any spelling (:data:`BANNED_ITEM_COLUMN`, located at the pack
    list): what every path that makes lists with an item table calls before it changes anything."""
    banned = _listed_banned(pack, sources)
    if banned:
        raise ConfigError(BANNED_ITEM_COLUMN.format(where=_located(pack, banned), columns="; ".join(banned)))


def _banned_read(family: Family, pack: Any, dataset: Any, params: Mapping[str, Any] | None) -> list[str]:
    """The banned columns a fit of ``family`` reads (:func:`columns_read`) and those its lists will read."""
    banned = _banned_columns(columns_read(family, dataset, params), _banned_names(pack))
    return banned + [b for b in _listed_banned(pack, getattr(dataset, "columns_from", None)) if b not in banned]


def _allowed(name: str, allowed: set[str]) -> bool:
    if name in allowed:
        return True
    if any(alias in allowed for alias in ALIASES.get(name, ())):
        return True
    return set(INPUT_FIELDS.get(name, (name,))) <= allowed


def _param_columns(params: Any, path: str = "") -> list[tuple[str, str]]:
    """``(parameter, column)`` for every parameter named ``*_column`` or ``*_columns``, nested ones included
    (the hybrid's ``content_params``): the item-table columns a family's fit reads, whatever the family."""
    out: list[tuple[str, str]] = []
    if not isinstance(params, Mapping):
        return out
    for key, value in params.items():
        name = f"{path}{key}"
        if isinstance(value, Mapping):
            out.extend(_param_columns(value, f"{name}."))
        elif str(key).endswith(("_column", "_columns")) and value is not None:
            values = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else []
            out.extend((name, str(v)) for v in values)
    return out


def columns_read(family: Family, dataset: Any = None, params: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """``(what, column)`` for every column of the data a fit of ``family`` reads, by its name in the source.

    The event fields the conversion reads (:data:`recommender.feedback.MODEL_INPUT_COLUMNS`), and
    ``session_id``/``timestamp`` where the family declares them, under the column they were read from
    (``--map value=gender`` reads ``gender``); the item-table columns its parameters name
    (``text_columns``, ``category_column``, ...) and the item categories a family declaring
    ``item_category`` reads, under the item table's own column (``--items-map category=...``).
    """
    sources: Mapping[str, str] = getattr(dataset, "columns_from", None) or {}
    fields = [*MODEL_INPUT_COLUMNS, *(f for f in ("session_id", "timestamp") if f in family.inputs)]
    out = [(f"event field {field}", sources.get(field, field)) for field in fields]
    if "item_category" in family.inputs:
        out.append(("item categories", sources.get("items.categories", "categories")))
    for parameter, column in _param_columns(params or {}):
        out.append((f"parameter {parameter}", column))
        source = sources.get(f"items.{column}")
        if source is not None and source != column:
            out.append((f"parameter {parameter} (item-table column {column!r})", source))
    return out


def renamed_columns_read(family: Family, dataset: Any = None, params: Mapping[str, Any] | None = None) -> dict[str, str]:
    """What a fit of ``family`` reads -> the column it reads it from, for the columns not read under the field's own
    name (``{"event field value": "gender"}`` for ``--map value=gender``) and every item-table column its parameters
    name.

    A training run records it (``input_sources`` of its parameters), so that an audit of the recorded model judges
    the columns the model was fitted on, not only those of the data the audit is given.
    """
    out: dict[str, str] = {}
    for what, column in columns_read(family, dataset, params):
        own = {"item categories": "categories"}.get(what, what.removeprefix("event field "))
        if column != own:
            out[what] = column
    return out


def _banned_columns(read: list[tuple[str, str]], banned: list[str]) -> list[str]:
    """``"what reads column (attribute)"`` for each column read whose name names a banned attribute."""
    found = []
    for what, column in read:
        hits = named_attributes(column, banned)
        if hits:
            found.append(f"{what} reads column {column!r} ({', '.join(hits)})")
    return found


def _banned_list(pack: Any, banned_columns: list[str]) -> str:
    """The pack list that names the attributes of ``banned_columns``: ``forbidden_attributes`` when it names one of
    them, else ``audit_only_attributes``."""
    minimization = getattr(getattr(pack, "pack", pack), "minimization", None)
    forbidden = list(getattr(minimization, "forbidden_attributes", []) or [])
    named = any(named_attributes(column, forbidden) for column in banned_columns) if forbidden else False
    return "minimization.forbidden_attributes" if named else "minimization.audit_only_attributes"


def _refuse_banned(family: Family, pack: Any, banned_columns: list[str]) -> None:
    """Raise :data:`BANNED_COLUMN`, located at the pack list that names the attributes (file, line, column)."""
    raise ConfigError(BANNED_COLUMN.format(where=_located(pack, banned_columns), family=family.name, columns="; ".join(banned_columns)))


def refuse_banned_columns(
    family: Family, pack: Any, *, dataset: Any = None, params: Mapping[str, Any] | None = None
) -> None:
    """Refuse a fit of ``family`` on ``dataset`` that would read a column naming a forbidden or audit-only attribute
    of ``pack`` (:data:`BANNED_COLUMN`), whatever else the pack holds (an allow-list or none, consent rules or none).

    The part of :func:`check_family_inputs` that holds for every fit under a pack, also one that records nothing (an
    audit's refit of a recorded model's parameters on a split of its data)."""
    banned = _banned_read(family, pack, dataset, params)
    if banned:
        _refuse_banned(family, pack, banned)


def family_input_verdict(
    family: Family,
    pack: Any,
    *,
    purpose: str = "personalization",
    user_attributes: Iterable[str] = (),
    dataset: Any = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What the pack says about ``family``'s inputs: ``{ok, not_allowed, banned_attributes, banned_columns, allowed, path}``.

    ``user_attributes`` are the attribute columns a family reading ``user_attributes`` would get;
    ``dataset`` (its column mapping) and ``params`` (the family's parameters) give the columns the fit
    reads (:func:`columns_read`): none may name a forbidden or audit-only attribute, in any spelling
    (:mod:`recommender.attribute_names`).
    """
    inner = getattr(pack, "pack", pack)
    minimization = getattr(inner, "minimization", None)
    forbidden = [*getattr(minimization, "forbidden_attributes", []), *getattr(minimization, "audit_only_attributes", [])]
    banned_columns = _banned_read(family, pack, dataset, params)
    purposes = getattr(minimization, "purposes", {}) or {}
    path = f"minimization.purposes.{purpose}.allowed_inputs"
    spec = purposes.get(purpose)
    if spec is None:
        # No allow-list for the purpose (the input_allowlist check skips too): the interactions every recommender
        # reads pass, anything more (item metadata, sessions, user attributes) needs the pack to allow it.
        beyond = sorted(set(family.inputs) - {"interactions"})
        return {"ok": not beyond and not banned_columns, "path": f"minimization.purposes.{purpose}", "allowed": None,
                "not_allowed": beyond, "banned_attributes": [], "banned_columns": banned_columns}  # fmt: skip
    allowed = set(spec.allowed_inputs)
    not_allowed = sorted(n for n in family.inputs if not _allowed(n, allowed))
    banned: list[str] = []
    if "user_attributes" in family.inputs:
        attrs = set(user_attributes)
        banned = sorted(a for a in attrs if named_attributes(a, forbidden))
        if "user_attributes" not in allowed and "user_attributes" not in not_allowed:
            not_allowed.append("user_attributes")
        if "user_attributes" in not_allowed and attrs and attrs <= allowed:
            not_allowed.remove("user_attributes")  # the allow-list names each attribute the model reads
    return {"ok": not not_allowed and not banned and not banned_columns, "path": path, "allowed": sorted(allowed),
            "not_allowed": not_allowed, "banned_attributes": banned, "banned_columns": banned_columns}  # fmt: skip


def check_family_inputs(
    family: Family,
    pack: Any,
    *,
    purpose: str = "personalization",
    user_attributes: Iterable[str] = (),
    dataset: Any = None,
    params: Mapping[str, Any] | None = None,
) -> None:
    """Refuse ``family`` before a fit when it reads an input the pack does not allow for ``purpose``, or a
    column of ``dataset`` (mapped, or named by ``params``) whose name names a forbidden or audit-only attribute.

    A pack without an allow-list for ``purpose`` lets through the interactions only.

    ``pack`` is a :class:`~governance.policy.LoadedPack` (its line numbers locate the error) or a
    :class:`~governance.policy.PolicyPack`.
    """
    verdict = family_input_verdict(family, pack, purpose=purpose, user_attributes=user_attributes, dataset=dataset, params=params)
    if verdict["ok"]:
        return
    positions = getattr(pack, "positions", {}) or {}
    if verdict["banned_columns"]:
        _refuse_banned(family, pack, verdict["banned_columns"])
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
