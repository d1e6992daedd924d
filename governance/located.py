"""YAML documents whose every problem is reported with file, line, column and path.

Shared by policy packs and their fixture cases: ruamel.yaml keeps each node's
position, pydantic validates the plain data, and every validation error is mapped
back to where it stands in the file.

A document is a hostile input until it has passed :data:`YAML_LIMITS`: before any
tree is built, one pass over the parser's events (linear in the text, iterative,
never recursive) measures its size, its nesting depth, its aliases and the number
of nodes it would have once every alias is expanded. An alias bomb ("billion
laughs": anchors of anchors, a few hundred bytes that expand to billions of
nodes), a cycle (an alias inside the node it names), ten thousand nested
brackets or a tag outside plain YAML (``!!python/object/apply:...``) is refused
there, at the cost of reading it once, with the line where the limit was crossed. The same limits hold for the command line and the API.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from recommender.errors import ConfigError

__all__ = [
    "BOOLEAN_FOR_NUMBER", "YAML_LIMITS", "PackIssue", "PolicyError", "YamlLimits", "booleans_read_as_numbers", "load_yaml",
    "validate_located",
]  # fmt: skip


@dataclass(frozen=True)
class YamlLimits:
    """What a YAML document may hold before it is even built into a tree."""

    max_bytes: int = 256 * 1024
    """Size of the text, in bytes (UTF-8); the largest shipped file is about 21 KiB."""
    max_depth: int = 32
    """Nesting of mappings and sequences; a pack nests about six deep."""
    max_aliases: int = 100
    """Aliases (``*name``) in the document."""
    max_nodes: int = 20_000
    """Nodes once every alias is expanded (what the validated data would hold)."""


YAML_LIMITS = YamlLimits()
"""The limits of every pack and cases file, for the command line and the API alike."""

TOO_LARGE = "the document is {size} bytes; at most {limit} bytes are accepted; split it or remove what it does not need"
TOO_DEEP = "nesting deeper than {limit} levels; a policy document nests a few levels deep"
TOO_MANY_ALIASES = "more than {limit} aliases (*name); write the values out, or use fewer anchors"
TOO_MANY_NODES = "the document would expand to more than {limit} values once its aliases are resolved (an alias bomb?); write the values out"
ALIAS_CYCLE = "the alias *{anchor} stands inside the node it names (a cycle); an alias must name a finished node"
UNKNOWN_TAG = (
    "the YAML tag {tag} is not allowed: a policy document is plain YAML (text, numbers, true/false, null, lists and "
    "mappings); remove the tag"
)
PLAIN_TAGS = frozenset(
    {None, "!", *(f"tag:yaml.org,2002:{kind}" for kind in ("str", "int", "float", "bool", "null", "seq", "map"))}
)
"""Tags a document may carry: none (the usual case), the non-specific ``!`` and the core schema's own. Any other
(``!!python/object/apply:...``, ``!!binary``, ``!custom``) is refused where it stands: ruamel builds nodes of such
tags whose positions it does not keep, and no field of a policy document reads them."""


@dataclass(frozen=True)
class PackIssue:
    """One problem found in a pack (or a cases file), located."""

    file: str
    line: int | None
    column: int | None
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        inside = f" {self.path}:" if self.path else ""
        return f"{where}: {self.severity}:{inside} {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"file": self.file, "line": self.line, "column": self.column, "path": self.path, "message": self.message, "severity": self.severity}


class PolicyError(ConfigError):
    """A document that cannot be loaded; ``issues`` holds every located problem."""

    def __init__(self, issues: list[PackIssue]) -> None:
        self.issues = issues
        errors = [i for i in issues if i.severity == "error"]
        head = f"{errors[0].file}: {len(errors)} error(s)" if errors else "rejected"
        super().__init__(head + "\n" + "\n".join(f"  {i}" for i in issues))


def _positions(node: Any, prefix: str = "") -> dict[str, tuple[int, int]]:
    """Map every path of a ruamel round-trip tree to its 1-based (line, column)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    out: dict[str, tuple[int, int]] = {}
    if isinstance(node, CommentedMap):
        for key in node:
            path = f"{prefix}.{key}" if prefix else str(key)
            try:
                kline, kcol = node.lc.key(key)
            except KeyError:  # merged in by "<<: *anchor": positioned where the anchor is
                out.update(_positions(node[key], path))
                continue
            try:
                line, col = node.lc.value(key)
            except (KeyError, TypeError):
                line, col = kline, kcol
            out[path] = (line + 1, col + 1)
            out[path + "#key"] = (kline + 1, kcol + 1)
            out.update(_positions(node[key], path))
    elif isinstance(node, CommentedSeq):
        for i, item in enumerate(node):
            line, col = node.lc.item(i)
            out[f"{prefix}.{i}"] = (line + 1, col + 1)
            out.update(_positions(item, f"{prefix}.{i}"))
    return out


def _plain(node: Any) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(node, CommentedMap):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    for kind in (str, int, float):
        if isinstance(node, kind):
            return kind(node)
    return node


def load_yaml(text: str, source: str, what: str) -> tuple[dict[str, Any], dict[str, tuple[int, int]]]:
    """Parse ``text`` into plain data and the position of every path.

    ``what`` names the expected document in messages ("a YAML policy pack").
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    if not text.strip():
        raise PolicyError([PackIssue(source, 1, 1, "", f"the file is empty; expected {what}")])
    if "\x00" in text:
        raise PolicyError([PackIssue(source, None, None, "", f"not a text file (it contains NUL bytes); expected {what}")])
    size = len(text.encode("utf-8"))
    if size > YAML_LIMITS.max_bytes:
        raise PolicyError([PackIssue(source, None, None, "", TOO_LARGE.format(size=size, limit=YAML_LIMITS.max_bytes))])
    try:
        measure_yaml(text, source)
        tree = YAML(typ="rt").load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = " ".join(filter(None, [err.context, err.problem])) or "invalid YAML"
        raise PolicyError([PackIssue(source, line, col, "", f"YAML syntax error: {problem}")]) from err
    except YAMLError as err:
        raise PolicyError([PackIssue(source, None, None, "", f"YAML error: {err}")]) from err
    if not isinstance(tree, dict):
        kind = "nothing" if tree is None else "a list" if isinstance(tree, list) else "a single value"
        raise PolicyError([PackIssue(source, 1, 1, "", f"expected a mapping at the top level ({what}); found {kind}")])
    return _plain(tree), _positions(tree)


def measure_yaml(text: str, source: str, limits: YamlLimits = YAML_LIMITS) -> int:
    """Refuse ``text`` when it crosses ``limits``; the number of nodes it expands to otherwise.

    One pass over the parser's events, before any tree is built: the expanded
    size of each anchored node is recorded when the node closes, and an alias
    counts as that many nodes. Raises :class:`PolicyError` located at the event
    that crossed a limit; YAML syntax errors propagate as ruamel raises them.

    Flow brackets (``[`` and ``{``) opened deeper than the limit are refused first,
    by one regular expression: ruamel's scanner keeps a possible key per open
    bracket and rescans them all on each token, so its cost grows with their
    square (seconds for a few thousand). Brackets inside quoted text count too:
    no real pack opens that many in a row.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, NodeEvent

    def refuse(event: Any, message: str) -> PolicyError:
        mark = event.start_mark
        return PolicyError([PackIssue(source, mark.line + 1, mark.column + 1, "", message)])

    deep = re.search(r"(?:[\[{][^\[\]{}]*){" + str(limits.max_depth + 1) + "}", text)
    if deep is not None:  # flow brackets opened and never closed: refused before the scanner, whose cost grows with their square
        line = text.count("\n", 0, deep.end()) + 1
        column = deep.end() - (text.rfind("\n", 0, deep.end()) + 1)
        raise PolicyError([PackIssue(source, line, column, "", TOO_DEEP.format(limit=limits.max_depth))])
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, expanded count when it opened)
    sizes: dict[str, int] = {}
    expanded = aliases = 0
    for event in YAML(typ="rt").parse(text):
        tag = getattr(event, "tag", None)
        if tag is not None and str(tag) not in PLAIN_TAGS:
            raise refuse(event, UNKNOWN_TAG.format(tag=_short_tag(str(tag))))
        if isinstance(event, AliasEvent):
            aliases += 1
            if aliases > limits.max_aliases:
                raise refuse(event, TOO_MANY_ALIASES.format(limit=limits.max_aliases))
            if event.anchor not in sizes and any(anchor == event.anchor for anchor, _ in open_nodes):
                raise refuse(event, ALIAS_CYCLE.format(anchor=event.anchor))
            expanded += sizes.get(event.anchor, 1)
        elif isinstance(event, CollectionStartEvent):
            open_nodes.append((event.anchor, expanded))
            expanded += 1
            if len(open_nodes) > limits.max_depth:
                raise refuse(event, TOO_DEEP.format(limit=limits.max_depth))
        elif isinstance(event, CollectionEndEvent):
            anchor, before = open_nodes.pop()
            if anchor is not None:
                sizes[anchor] = expanded - before
        elif isinstance(event, NodeEvent):  # a scalar
            expanded += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        if expanded > limits.max_nodes:
            raise refuse(event, TOO_MANY_NODES.format(limit=limits.max_nodes))
    return expanded


def _short_tag(tag: str) -> str:
    """``tag:yaml.org,2002:binary`` as written, ``!!binary``."""
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org,2002:") else tag


def locate(positions: dict[str, tuple[int, int]], loc: Iterable[Any], tags: Iterable[str] = ()) -> tuple[str, tuple[int, int] | None]:
    """The dotted path of a pydantic error location and its nearest known position.

    ``tags`` are discriminator values pydantic inserts into locations (check
    names after a rule's index); they are dropped from the path.
    """
    tag_set = set(tags)
    cleaned: list[str] = []
    for p in map(str, loc):
        if cleaned and cleaned[-1].isdigit() and p in tag_set:
            continue
        cleaned.append(p)
    path = ".".join(cleaned)
    probe = cleaned[:]
    while probe:
        key = ".".join(probe)
        if probe == cleaned and key + "#key" in positions:
            return path, positions[key + "#key"]
        if key in positions:
            return path, positions[key]
        probe.pop()
    return path, None


def friendly(error: Any, known_tags: Iterable[str] | Mapping[str, Iterable[str]] = ()) -> str:
    """A pydantic error as a sentence saying what was expected (and what was found)."""
    kind = error["type"]
    got = error.get("input")
    if kind == "extra_forbidden":
        return "unknown key; check the spelling against the schema (recgov policy schema)"
    if kind == "missing":
        return "required key is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        ctx = error.get("ctx", {})
        field = str(ctx.get("discriminator", "'check'")).strip("'")
        what = {"check": ("check", "a rule"), "name": ("re-ranker", "a re-ranking step")}.get(field, (field, "an entry"))
        names = known_tags.get(field, ()) if isinstance(known_tags, Mapping) else known_tags
        expected = ", ".join(sorted(names)) or str(ctx.get("expected_tags", ""))
        if kind == "union_tag_not_found":
            return f"{what[1]} needs a '{field}' naming a registered {what[0]} ({expected})"
        return f"unknown {what[0]} {ctx.get('tag')!r}; the registered {what[0]}s are: {expected}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if got is not None and not isinstance(got, (dict, list)):
        message += f" (got {got!r})"
    return message


def validate_located(
    model: type[BaseModel],
    data: dict[str, Any],
    positions: dict[str, tuple[int, int]],
    source: str,
    tags: Mapping[str, Iterable[str]] | None = None,
) -> Any:
    """Validate ``data`` against ``model``; raise :class:`PolicyError` with every error located.

    ``tags`` maps each discriminator field (``check``, ``name``) to its valid
    values, for the messages and to drop pydantic's union tags from paths.
    """
    tags = {field: list(names) for field, names in (tags or {}).items()}
    all_tags = [t for names in tags.values() for t in names]
    try:
        validated = model.model_validate(data)
    except ValidationError as err:
        issues = []
        for e in err.errors():
            path, pos = locate(positions, e["loc"], all_tags)
            issues.append(PackIssue(source, pos[0] if pos else None, pos[1] if pos else None, path, friendly(e, tags)))
        raise PolicyError(issues) from err
    booleans = booleans_read_as_numbers(data, validated)
    if booleans:
        issues = []
        for loc, got in booleans:
            path, pos = locate(positions, loc)
            issues.append(PackIssue(source, pos[0] if pos else None, pos[1] if pos else None, path, BOOLEAN_FOR_NUMBER.format(got=str(got).lower())))
        raise PolicyError(issues)
    return validated


BOOLEAN_FOR_NUMBER = "expected a number, got the boolean {got}; write the number itself (true is not 1)"


def booleans_read_as_numbers(raw: Any, value: Any, loc: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], bool]]:
    """``(location, value)`` of every ``true``/``false`` of the document ``raw`` that validated into a number.

    pydantic's lax mode reads a boolean as 0 or 1 where a field expects a number (``quality.k: true`` is a
    cut-off of 1, ``min_ratio: false`` a bound of 0): a pack would mean something its author did not write.
    The validated document is walked beside the raw one, so every field of every section (the checks' own
    parameters included) is held to it without each model declaring it.
    """
    if isinstance(raw, bool):
        return [(loc, raw)] if isinstance(value, (int, float)) and not isinstance(value, bool) else []
    found: list[tuple[tuple[Any, ...], bool]] = []
    if isinstance(raw, Mapping):
        if isinstance(value, BaseModel):
            fields = type(value).model_fields
            names = {**{f.alias: n for n, f in fields.items() if f.alias}, **{n: n for n in fields}}
            for key, item in raw.items():
                if key in names:
                    found += booleans_read_as_numbers(item, getattr(value, names[key], None), (*loc, key))
        elif isinstance(value, Mapping):
            for key, item in raw.items():
                if key in value:
                    found += booleans_read_as_numbers(item, value[key], (*loc, key))
    elif isinstance(raw, list) and isinstance(value, (list, tuple)) and len(raw) == len(value):
        for index, (item, validated) in enumerate(zip(raw, value)):
            found += booleans_read_as_numbers(item, validated, (*loc, index))
    return found
