"""YAML documents whose every problem is reported with file, line, column and path.

Shared by policy packs and their fixture cases: ruamel.yaml keeps each node's
position, pydantic validates the plain data, and every validation error is mapped
back to where it stands in the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from recommender.errors import ConfigError

__all__ = ["PackIssue", "PolicyError", "load_yaml", "validate_located"]


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
    try:
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
        return model.model_validate(data)
    except ValidationError as err:
        issues = []
        for e in err.errors():
            path, pos = locate(positions, e["loc"], all_tags)
            issues.append(PackIssue(source, pos[0] if pos else None, pos[1] if pos else None, path, friendly(e, tags)))
        raise PolicyError(issues) from err
