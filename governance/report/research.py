"""A data-access package for vetted researchers (DSA Art. 40; Delegated Regulation (EU) 2025/2050).

What a researcher gets is documented, pseudonymised and minimised, built from
the decision log of one model over a time window:

* ``decisions_by_day.csv``: served lists per day and mode (personalized,
  fallback, non-profiling), with the number of distinct subjects;
* ``exposure_by_provider_group.csv`` and ``exposure_by_category.csv``: how
  much attention each provider group and each category got (impressions, and
  position-weighted exposure ``1 / log2(rank + 1)`` with its share), when the
  caller gives the item table;
* ``slates.csv``: every served top-k list, item by item, with the day (never
  the time), the mode and a *package subject*: a random id drawn for this
  package alone (HMAC-SHA256 of the store's pseudonym under a fresh random
  key that is thrown away), so no one, the provider included, can link it back
  to the store or to another package;
* ``README.md`` (the datasheet: every file and column) and ``manifest.json``
  (the parameters and each file's SHA-256).

Minimisation: no user attribute, no raw id, no store pseudonym, no score, no
timestamp finer than a day. Suppression: a cell that counts fewer than
``min_group`` distinct subjects (the k-anonymity threshold, default 10) is
published empty with ``suppressed=true``, and in the slates an item shown to
fewer than ``min_group`` distinct subjects in the window is replaced by
``suppressed``. The package's lineage goes on the trail as
``research.package_written`` with the parameters and the file hashes.

Consent: a package is an analysis of subjects' logs, so it applies the rule
every such analysis applies (:func:`governance.ope.analytics_allowed`, as
off-policy evaluation and experiment looks do): the lists of a subject whose
consent does not cover ``analytics`` under the packs that served them (an
objection under GDPR Art. 21, an opt-out, refusal or withdrawal; where a pack
asks a grant, no grant) are left out of every file, and the manifest, the
datasheet and the trail event count them. A controller answering a Digital
Services Coordinator's reasoned request (DSA Art. 40(4)) may hold that the
disclosure rests on a legal obligation (GDPR Art. 6(1)(c)), against which
Art. 21 gives no right to object; recgov cannot tell such a request from a
package made on the provider's own initiative, so it does not assume that
basis.

>>> with store.session() as session:                                     # doctest: +SKIP
...     written = write_research_package(session, "als-66329e", Path("pkg"), items=dataset.items)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from audits.lineage import lineage_of
from audits.models import DecisionRecord
from audits.sealing import open_decisions
from audits.trail import append_event
from governance.report.accountability import served_lists
from recommender.errors import ConfigError

__all__ = [
    "DEFAULT_MIN_GROUP",
    "PACKAGE_FILES",
    "RESEARCH_SCHEMA",
    "PackageParameters",
    "ResearchPackage",
    "discard_package",
    "write_research_package",
]

RESEARCH_SCHEMA = "recgov.research-package/v1"
DEFAULT_MIN_GROUP = 10
SUPPRESSED = "suppressed"
PACKAGE_FILES = (
    "decisions_by_day.csv",
    "exposure_by_provider_group.csv",
    "exposure_by_category.csv",
    "slates.csv",
    "README.md",
    "manifest.json",
)
"""Every file a package may hold (the exposure files only with an item table)."""
MIN_GROUP_TOO_SMALL = "min_group must be an integer of at least 2 (a group of one is a person), got {value}"
WINDOW_REVERSED = "since ({since}) must be before until ({until})"
NOT_A_FOLDER = "cannot write the research package to {path}: {reason}"
DATASHEET = """# Research data package ({schema})

Recommendations served by model `{model_version}` from {since} to {until} (days in UTC),
prepared for vetted researchers under DSA Art. 40 and Delegated Regulation (EU) 2025/2050.

Files: {files}. Exposure files: {exposure}.

## What is in it, and what is not

- No raw subject id, no store pseudonym, no user attribute (age, gender, country, ...), no score,
  no time finer than a day.
- `package_subject` is a random id drawn for this package alone: the store's pseudonym keyed with a
  fresh random key that was discarded, so it links rows within this package and nowhere else.
- Minimum group size (k-anonymity threshold): {min_group}. A cell counting fewer distinct subjects is
  published empty with `suppressed` = true; in `slates.csv` an item shown to fewer distinct subjects
  in the window is written `suppressed`.
- `manifest.json` gives the parameters and the SHA-256 of every other file; the same figures are on
  the provider's audit trail as the event `research.package_written`.
- A list served to a subject who was erased since is counted in `decisions_by_day.csv`, but its
  items were sealed under a key the erasure destroyed: it has no rows in the other files.
- Consent: the lists of subjects whose consent does not cover `analytics` ({analytics_rule}) are left out
  of every file, as the provider's own analyses leave them out: {excluded}.

## decisions_by_day.csv

| column | meaning |
|---|---|
| day | the UTC day the lists were served (YYYY-MM-DD) |
| mode | how the list was made: `personalized` (from the subject's history), `fallback` (popular items: no usable history), `non_profiling` (DSA Art. 38: not based on profiling) |
| decisions | lists served that day in that mode (empty when suppressed) |
| subjects | distinct subjects they were served to; anonymous requests count one each (empty when suppressed) |
| suppressed | true when subjects < {min_group} |

## exposure_by_provider_group.csv and exposure_by_category.csv

| column | meaning |
|---|---|
| provider_group / category | the item's provider group, or one of its categories (an item of several categories counts in each); `missing` when the item table has no value |
| impressions | list positions the group's items took (empty when suppressed) |
| subjects | distinct subjects who saw them (empty when suppressed) |
| exposure_share | the group's share of position-weighted attention, each position weighing 1 / log2(rank + 1) (empty when suppressed; when only one group is suppressed, the smallest published share is left empty too, so that the suppressed one cannot be worked out as one minus the others) |
| suppressed | true when subjects < {min_group} |

## slates.csv

| column | meaning |
|---|---|
| package_subject | the package's random id of the subject (an anonymous request gets an id of its own) |
| list | a random id of the served list, to group its rows |
| day | the UTC day it was served |
| mode | as in decisions_by_day.csv |
| rank | the item's position, from 1 |
| item_id | the catalogue item, or `suppressed` when fewer than {min_group} distinct subjects saw it in the window |
"""


@dataclass(frozen=True)
class PackageParameters:
    """What a package was made from: recorded in its manifest and on the trail."""

    model_version: str
    since: str | None
    until: str | None
    min_group: int
    item_table: bool


@dataclass
class ResearchPackage:
    """What was written: the folder, each file's SHA-256 and row count, the cells suppressed, the lists left out
    for consent, the trail event."""

    directory: Path
    parameters: PackageParameters
    files: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)
    consent: dict[str, Any] = field(default_factory=dict)
    """The ``analytics`` rule applied (purpose, model, packs not read) and what it left out (lists, subjects)."""
    trail_seq: int | None = None


def _check(out: Path, min_group: int, since: datetime | None, until: datetime | None) -> None:
    """Refuse bad input before anything is read or written."""
    if isinstance(min_group, bool) or not isinstance(min_group, int) or min_group < 2:
        raise ConfigError(MIN_GROUP_TOO_SMALL.format(value=min_group))
    if since is not None and until is not None and since >= until:
        raise ConfigError(WINDOW_REVERSED.format(since=since.isoformat(), until=until.isoformat()))
    if out.exists() and not out.is_dir():
        raise ConfigError(NOT_A_FOLDER.format(path=out, reason="it is a file"))
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(NOT_A_FOLDER.format(path=out, reason="the folder is not empty (a package is written whole, into a new folder)"))
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ConfigError(NOT_A_FOLDER.format(path=out, reason=err.strerror or str(err))) from err


def _window(query: Any, model_version: str, since: datetime | None, until: datetime | None) -> Any:
    """The model's served lists in the window (a shadow version's lists were never served: left out)."""
    query = served_lists(query.where(DecisionRecord.model_version == model_version))
    if since is not None:
        query = query.where(DecisionRecord.decided_at >= since)
    if until is not None:
        query = query.where(DecisionRecord.decided_at < until)
    return query


def _analytics_consent(
    session: Session, model_version: str, since: datetime | None, until: datetime | None, subjects: list[str], packs_dir: Path | None
) -> tuple[dict[str, bool], dict[str, Any]]:
    """Which subjects' consent covers ``analytics`` (:func:`governance.ope.analytics_allowed`) under the packs that
    served the window's lists (:func:`governance.ope.analytics_model`), and the rule applied."""
    from governance.ope import ANALYTICS, analytics_allowed, analytics_model

    stamps = session.execute(
        _window(select(DecisionRecord.pack_name, DecisionRecord.pack_version, DecisionRecord.pack_hash), model_version, since, until).distinct()
    ).all()
    model, unread = analytics_model(stamps, packs_dir)
    allowed = analytics_allowed(session, subjects, model=model)
    return allowed, {"purpose": ANALYTICS, "model": model, "packs_not_read": unread}


def _decisions(
    session: Session, model_version: str, since: datetime | None, until: datetime | None, packs_dir: Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The window's decisions (decision, day, the store's pseudonym, mode) and their items, one row per served item,
    and the consent rule applied with what it left out.

    The pseudonym only groups rows here; it is replaced before anything is
    written. Only the lists of subjects whose consent covers ``analytics`` are
    kept (an anonymous list, which no one could object to, only where no pack
    asks a grant) and only those are opened. Slates are opened with their
    subjects' record keys; the list of an erased subject stays sealed by
    construction, so it counts as a decision but contributes no item.
    """
    query = select(DecisionRecord.decision_id, DecisionRecord.decided_at, DecisionRecord.subject, DecisionRecord.mode, DecisionRecord.slate)
    rows = session.execute(_window(query, model_version, since, until)).all()
    allowed, consent = _analytics_consent(session, model_version, since, until, sorted({s for _, _, s, _, _ in rows if s is not None}), packs_dir)
    anonymous_allowed = consent["model"] == "opt_out"
    kept = [r for r in rows if (allowed[r[2]] if r[2] is not None else anonymous_allowed)]
    refused = [r for r in rows if r[2] is not None and not allowed[r[2]]]
    consent["excluded"] = {
        "analytics_consent_not_in_force": {"lists": len(refused), "subjects": len({r[2] for r in refused})},
        "no_subject_to_check_consent": sum(1 for r in rows if r[2] is None and not anonymous_allowed),
    }
    rows = kept
    opened = open_decisions(session.connection(), ((d, s, slate, {}) for d, _, s, _, slate in rows))
    decisions = pd.DataFrame(
        [(d, at.date().isoformat(), s or f"anonymous:{d}", mode) for d, at, s, mode, _ in rows],
        columns=["decision", "day", "subject", "mode"],
    )
    items = [
        (row[0], rank, str(item))
        for row, both in zip(rows, opened)
        if both is not None
        for rank, item in enumerate(both[0].get("items") or [], start=1)
    ]
    served = decisions.merge(pd.DataFrame(items, columns=["decision", "rank", "item_id"]), on="decision", how="inner")
    return decisions, served, consent


def _suppress(frame: pd.DataFrame, min_group: int, counts: list[str]) -> tuple[pd.DataFrame, int]:
    """Blank the count columns of every cell with fewer than ``min_group`` distinct subjects; flag it."""
    small = frame["subjects"] < min_group
    out = frame.astype({c: "Int64" for c in counts} | {"subjects": "Int64"})
    out.loc[small, [*counts, "subjects"]] = pd.NA
    if "exposure_share" in out:
        out.loc[small, "exposure_share"] = np.nan
    out["suppressed"] = small.to_numpy()
    return out, int(small.sum())


def _by_day(decisions: pd.DataFrame, min_group: int) -> tuple[pd.DataFrame, int]:
    grouped = decisions.groupby(["day", "mode"], sort=True).agg(decisions=("decision", "nunique"), subjects=("subject", "nunique"))
    return _suppress(grouped.reset_index(), min_group, ["decisions"])


def _exposure(served: pd.DataFrame, groups: pd.Series, column: str, min_group: int) -> tuple[pd.DataFrame, int]:
    """Impressions and position-weighted exposure by ``column`` (items without a value go to ``missing``).

    ``groups`` maps item id to group, one row per (item, group): an item of several
    categories appears once per category, so it counts in each.
    """
    pairs = pd.DataFrame({"item_id": groups.index.astype(str), column: groups.astype(str).to_numpy()})
    frame = served.merge(pairs, on="item_id", how="left")
    frame[column] = frame[column].fillna("missing")
    frame = frame.assign(exposure=1.0 / np.log2(frame["rank"].to_numpy() + 1.0))
    grouped = frame.groupby(column, sort=True).agg(impressions=("item_id", "size"), subjects=("subject", "nunique"), exposure=("exposure", "sum"))
    grouped["exposure_share"] = grouped["exposure"] / grouped["exposure"].sum() if len(grouped) else []
    grouped = grouped.drop(columns="exposure").reset_index()
    out, n = _suppress(grouped, min_group, ["impressions"])
    return _complement(out), n


def _complement(frame: pd.DataFrame) -> pd.DataFrame:
    """Blank one more share when exactly one is suppressed: shares sum to one, so the lone blank could be worked out.

    The published group with the smallest share loses its share too (its counts
    stay: no total of them is published); with two or more blanks, none can be solved for.
    """
    blank = frame["exposure_share"].isna()
    if int(blank.sum()) == 1 and int((~blank).sum()) >= 1:
        frame.loc[frame.loc[~blank, "exposure_share"].idxmin(), "exposure_share"] = np.nan
    return frame


def _categories(items: pd.DataFrame) -> pd.Series:
    """Item id -> one category per row (an item of several categories counts in each)."""
    split = items["categories"].fillna("").astype(str).str.split("|").explode()
    return split[split != ""]


def _slates(served: pd.DataFrame, min_group: int) -> tuple[pd.DataFrame, int]:
    """The lists with package subjects; an item seen by fewer than ``min_group`` subjects is suppressed."""
    key = secrets.token_bytes(32)  # never stored: the mapping cannot be rebuilt, not even by the provider
    ids = {s: hmac.new(key, s.encode(), hashlib.sha256).hexdigest()[:20] for s in served["subject"].unique()}
    reach = served.groupby("item_id")["subject"].nunique()
    rare = served["item_id"].map(reach).fillna(0).to_numpy() < min_group
    lists = {d: secrets.token_hex(8) for d in served["decision"].unique()}
    out = pd.DataFrame(
        {
            "package_subject": served["subject"].map(ids).to_numpy(),
            "list": served["decision"].map(lists).to_numpy(),
            "day": served["day"].to_numpy(),
            "mode": served["mode"].to_numpy(),
            "rank": served["rank"].to_numpy(),
            "item_id": np.where(rare, SUPPRESSED, served["item_id"].to_numpy()),
        }
    )
    return out.sort_values(["day", "list", "rank"], kind="stable").reset_index(drop=True), int(rare.sum())


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, lineterminator="\n", float_format="%.6g")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_research_package(
    session: Session,
    model_version: str,
    out: Path,
    *,
    items: pd.DataFrame | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    min_group: int = DEFAULT_MIN_GROUP,
    actor: str = "recgov",
    packs_dir: Path | None = None,
) -> ResearchPackage:
    """Write the package of ``model_version``'s served lists in ``[since, until)`` into the new folder ``out``.

    ``items`` is the item table (``provider_group``, ``categories``) for the
    exposure files; without it they are left out and the datasheet says so.
    Lists of subjects whose consent does not cover ``analytics`` are left out
    and counted (see the module doc); ``packs_dir`` holds the installation's
    stored packs, read for the consent model when a list was served under one.
    The trail event is appended in the caller's transaction. Raises
    :class:`~recommender.errors.ConfigError`, with nothing written, for an
    unknown model version, ``min_group`` under 2, a reversed window, or a
    folder that is a file, not empty or not writable.
    """
    lineage_of(session, model_version)  # an unknown model version is refused before anything is written
    _check(out, min_group, since, until)
    decisions, served, consent = _decisions(session, model_version, since, until, packs_dir)
    params = PackageParameters(
        model_version, since and since.isoformat(), until and until.isoformat(), min_group, items is not None
    )
    tables = {"decisions_by_day.csv": _by_day(decisions, min_group)}
    if items is not None and "provider_group" in items:
        tables["exposure_by_provider_group.csv"] = _exposure(served, items["provider_group"].astype(str), "provider_group", min_group)
    if items is not None and "categories" in items:
        tables["exposure_by_category.csv"] = _exposure(served, _categories(items), "category", min_group)
    tables["slates.csv"] = _slates(served, min_group)
    package = ResearchPackage(out, params, consent=consent)
    for name, (frame, n_suppressed) in tables.items():
        _write_csv(frame, out / name)
        package.rows[name], package.suppressed[name] = len(frame), n_suppressed
    (out / "README.md").write_text(DATASHEET.format(**_datasheet_fields(package)), encoding="utf-8")
    package.files = {p.name: _sha256(p) for p in sorted(out.iterdir())}
    manifest = {
        "schema": RESEARCH_SCHEMA, "parameters": asdict(params), "files": package.files, "rows": package.rows,
        "suppressed": package.suppressed, "consent": package.consent,
    }  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    event = append_event(
        session,
        actor=actor,
        action="research.package_written",
        objects={"model": model_version},
        payload={**manifest, "manifest_sha256": _sha256(out / "manifest.json")},
    )
    package.trail_seq = event.seq
    return package


def discard_package(out: Path) -> None:
    """Remove a package's files from ``out`` (and ``out`` when left empty): a package whose trail event was not
    committed must not be handed out, since nothing would show it was made."""
    for name in PACKAGE_FILES:
        (out / name).unlink(missing_ok=True)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def _datasheet_fields(package: ResearchPackage) -> dict[str, str]:
    p = package.parameters
    files = ", ".join(f"`{name}` ({package.rows[name]} rows, {package.suppressed[name]} suppressed)" for name in package.rows)
    return {
        "schema": RESEARCH_SCHEMA,
        "model_version": p.model_version,
        "since": p.since or "the first decision",
        "until": p.until or "the last decision",
        "min_group": str(p.min_group),
        "files": files,
        "exposure": "included" if p.item_table else "left out: no item table was given",
        "analytics_rule": _rule_text(package.consent),
        "excluded": _excluded_text(package.consent),
    }


def _rule_text(consent: dict[str, Any]) -> str:
    rule = (
        "a grant in force is needed" if consent["model"] == "opt_in"
        else "allowed until an objection (GDPR Art. 21), opt-out, refusal or withdrawal"
    )  # fmt: skip
    unread = consent["packs_not_read"]
    return rule + (f"; packs that could not be read, taken as opt_out: {', '.join(unread)}" if unread else "")


def _excluded_text(consent: dict[str, Any]) -> str:
    refused = consent["excluded"]["analytics_consent_not_in_force"]
    anonymous = consent["excluded"]["no_subject_to_check_consent"]
    text = f"{refused['lists']} list(s) of {refused['subjects']} subject(s) left out"
    return text + (f", and {anonymous} anonymous list(s) (no subject whose grant could be checked)" if anonymous else "")
