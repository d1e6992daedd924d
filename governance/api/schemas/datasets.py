"""Body of ``GET /v1/datasets``: what the ``data``, ``slates`` and ``baseline`` of an audit may name.

Built by :func:`governance.api.services.datasets.audit_inputs` with the very
checks an audit applies to its input, so the list cannot promise what an audit
then refuses.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AuditInputs", "DataEntryPublic", "RecordedSetPublic", "SyntheticLimits"]


class DataEntryPublic(BaseModel):
    """A file or folder under ``$RECGOV_HOME/data``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="What an audit's data field names to read it (relative to $RECGOV_HOME/data).")
    kind: str = Field(description="file or folder")
    layout: str = Field(description="The layout an audit reads it in (a published data set's, or an event log), or why it cannot.")
    size_bytes: int = Field(ge=0)
    over_limit: bool = Field(description="Larger than the installation's RECGOV_AUDIT_MAX_FILE_BYTES: an audit refuses it.")
    modified: datetime
    usable: bool = Field(description="An audit may read it: a known layout, within the limit.")


class RecordedSetPublic(BaseModel):
    """A data set recorded in the store (a model was trained on it), and how an audit would load it again."""

    model_config = ConfigDict(extra="forbid")

    id: int
    name: str
    source: str = Field(description="Where it was read from, server paths shown as the key's role may see them.")
    content_hash: str
    n_events: int
    n_users: int
    n_items: int
    recorded_at: datetime | None
    audit_data: str | None = Field(description="The data an audit gives to read it again; null when it cannot (see why_not).")
    why_not: str | None


class SyntheticLimits(BaseModel):
    """The synthetic generator an audit may name instead of a file, and its limits."""

    model_config = ConfigDict(extra="forbid")

    spec: str
    max_interactions: int
    max_subjects: int


class AuditInputs(BaseModel):
    """What an audit asked for over the API may read on this installation."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "data_dir": "$RECGOV_HOME/data", "data_dir_exists": True,
                    "entries": [{"name": "ml-100k", "kind": "folder", "layout": "movielens-100k", "size_bytes": 16049542, "over_limit": False,
                                 "modified": "2026-12-01T09:00:00Z", "usable": True}],
                    "truncated": False, "max_entries": 500, "max_file_bytes": 2147483648,
                    "synthetic": {"spec": "synthetic:n_users=...,n_items=...,n_interactions=...,seed=...", "max_interactions": 5000000, "max_subjects": 1000000},
                    "recorded": [], "max_recorded": 100,
                }
            ]
        },
    )  # fmt: skip

    data_dir: str
    data_dir_exists: bool
    entries: list[DataEntryPublic]
    truncated: bool = Field(description="More entries than max_entries: the list was cut.")
    max_entries: int
    max_file_bytes: int
    synthetic: SyntheticLimits
    recorded: list[RecordedSetPublic] = Field(description="Recorded data sets, newest first, at most max_recorded.")
    max_recorded: int
