"""A file's column for each field of a table recgov imports (``--map`` and ``?map=``): parsed, checked, resolved.

What the consent import (:class:`governance.consent.import_table.ConsentImportMapping`)
and the feedback import (:class:`governance.feedback.FeedbackMapping`) share: a
subclass declares its fields (each defaulting to the column named like it, or None
for an optional one) and a ``delimiter``; this class reads ``field=column`` pairs
or a YAML file of them, refuses unknown fields and bad values with the place they
came from, and resolves each field to the file's column.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Self

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from recommender.errors import DataError

__all__ = ["UNKNOWN_MAP_FIELDS", "ColumnMap"]

UNKNOWN_MAP_FIELDS = "--map: unknown field(s) {unknown}; known: {known}"


class ColumnMap(BaseModel):
    """The file's column for each field (default: the column named like the field); see the module."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    NOT_FIELDS: ClassVar[frozenset[str]] = frozenset({"delimiter"})
    """Settings of the file rather than fields of a row."""

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The fields a row has, in declaration order."""
        return tuple(name for name in cls.model_fields if name not in cls.NOT_FIELDS)

    @classmethod
    def from_option(cls, text: str) -> Self:
        """The CLI's ``--map``: a YAML file of ``field: column`` pairs if ``text`` names one, else :meth:`parse`.

        Only for a local user: a service must not read files a caller names (use :meth:`parse`).
        """
        if text.endswith((".yaml", ".yml")) and Path(text).is_file():
            return cls._from_yaml(Path(text))
        return cls.parse(text)

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``"subject=user_id,time=ts"`` (an empty column leaves the field at its default)."""
        from recommender.option_pairs import parse_pairs

        return cls._checked(parse_pairs(text, "--map", "subject=user_id"), "--map")

    @classmethod
    def _from_yaml(cls, path: Path) -> Self:
        try:
            loaded: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise DataError(f"--map {path}: not a readable YAML mapping ({err})") from err
        if not isinstance(loaded, dict):
            raise DataError(f"--map {path}: expected a YAML mapping of field: column pairs")
        return cls._checked({str(k): None if v is None else str(v) for k, v in loaded.items()}, f"--map {path}")

    @classmethod
    def _checked(cls, pairs: dict[str, str | None], where: str) -> Self:
        unknown = sorted(set(pairs) - set(cls.model_fields))
        if unknown:
            raise DataError(UNKNOWN_MAP_FIELDS.format(unknown=", ".join(unknown), known=", ".join(cls.model_fields)).replace("--map", where, 1))
        try:
            return cls(**{k: v for k, v in pairs.items() if v is not None})
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise DataError(f"{where}: {problems}") from err

    def columns(self, available: Iterable[str] = ()) -> dict[str, str]:
        """Field -> the file's column: the required and mapped fields, and an optional field not
        mapped when ``available`` (the file's columns) has a column of its name."""
        present = set(available)
        out: dict[str, str] = {}
        for name in self.fields():
            column = getattr(self, name)
            if column is not None:
                out[name] = column
            elif name in present:
                out[name] = name
        return out
