"""Outcome events: what happened after a list was served, joined to the decision that served the item.

An outcome event (:data:`~audits.models.OUTCOME_KINDS`: an impression, a
click, a conversion, a dwell with its seconds, a rating with its value, each
with its time) is stored under the subject's pseudonym, never the raw id, in
``outcome_events``. :func:`record_outcomes` stores a batch of validated events
(columns :data:`BATCH_COLUMNS`) in the caller's transaction:

1. events dated outside :data:`EARLIEST` (the Unix epoch) .. :data:`LATEST` are refused; so are
   events of an erased subject dated at or before the erasure (the erasure's
   suppression record says when): storing them again would give the person
   back what the erasure took. That refusal is worded neutrally
   (:data:`NOT_STORABLE`): it tells the caller neither that nor when anyone was
   erased;
2. each event gets its pseudonym and an event key (:func:`event_key`); an
   event whose key is stored already (or earlier in the batch) is skipped, so
   importing the same file twice adds nothing, and the table's unique key keeps
   two racing imports from both storing it; an ``event_id`` that already names
   another event of the subject (another kind or item) is refused;
3. each event is joined to a decision (:func:`attribute`):

   * **by decision id**, when it carries one: the decision must exist, have
     been served (not a shadow list) to the same subject, have listed the item,
     and come at or before the event; otherwise the event is refused, with the
     reason (a wrong join is never stored);
   * **by subject, item and window** otherwise: the latest decision served to
     the subject at or before the event, and no earlier than ``window`` before
     it (both ends included), whose list held the item. Where there is none the
     event is stored *unattributed*, with why: ``no_decision_before`` (the
     subject had no decision at or before the event), ``outside_window`` (none
     within the window) or ``item_not_served`` (decisions within the window,
     none listing the item). It is never joined to a decision that did not
     serve the item;

4. ONE trail event, ``outcomes.recorded``, anchors the batch: the caller's
   anchor (a file's sha256 and lines, or the API call), the counts by kind and
   attribution, and a digest of the stored events' keys; it names no subject.
   Every row points at it.

Decisions' lists are sealed under each subject's record key
(:mod:`audits.sealing`); they are opened here to find the items. A decision
whose key is gone (its subject was erased) cannot be joined.

Erasure deletes a subject's outcome events (:func:`delete_subject_outcomes`,
called by :func:`governance.privacy.erasure.erase_subject` before the
shredding), and the retention purge deletes those older than the pack's window
(:func:`purge_outcomes`, called by :func:`governance.retention.purge_expired`).

For estimators, :func:`outcomes_of_decisions` returns the outcomes of a set of
decisions as a long DataFrame, and :func:`decision_rewards` as a dense
decisions x positions array.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from audits._common import actor_name, in_values, lookup_subject_secrets
from audits.models import ATTRIBUTED, OUTCOME_KINDS, OUTCOME_SOURCES, DecisionRecord, OutcomeEvent, StoreMeta, TrailEvent
from audits.sealing import open_decisions
from audits.subjects import _installation_key, hold_head_for_keys
from audits.suppression import suppressions_for
from audits.trail import append_event
from recommender.errors import DataError

__all__ = [
    "BATCH_COLUMNS",
    "DEFAULT_WINDOW",
    "RECORDED_ACTION",
    "OutcomeBatch",
    "OutcomesRefused",
    "PAST_RETENTION",
    "Refusal",
    "attribute",
    "decision_rewards",
    "delete_subject_outcomes",
    "event_key",
    "outcomes_of_decisions",
    "purge_outcomes",
    "record_outcomes",
    "retention_window",
    "retention_window_recorded",
    "set_retention_window",
]

log = logging.getLogger(__name__)

RECORDED_ACTION = "outcomes.recorded"
"""The trail action that anchors one batch of outcome events."""
DEFAULT_WINDOW = timedelta(hours=24)
"""How long after a decision an event without a decision id is still joined to it, by default."""
BATCH_COLUMNS = ("line", "subject", "kind", "item_id", "occurred_at", "value", "decision_id", "event_id")
"""A batch's columns: ``line`` where the event is in its source (a file line or a list index), ``subject`` the raw
id, ``occurred_at`` aware UTC timestamps, ``value`` floats (NaN: none), ``decision_id`` and ``event_id`` text
(``""``: none)."""
_KEY_DOMAIN = "recgov.outcome.v1"

NOT_STORABLE = "this event cannot be stored for this subject"
"""The refusal of an erased subject's event from before the erasure (GDPR Art. 17). Deliberately neutral: the
caller (a serving key) must not learn from it whether, or when, anyone was erased."""
TIME_OUT_OF_RANGE = "the time is out of range (years {lo} to {hi})"
BEFORE_EPOCH = (
    "the time is before 1970-01-01T00:00:00Z (a negative Unix time): no event log records such a time; it is a "
    "placeholder, a sign error or the wrong unit"
)
"""The refusal of an event time before :data:`EARLIEST`, as the event loaders refuse one (:mod:`recommender.loaders`)."""
EARLIEST = pd.Timestamp(0, tz="UTC")
"""The earliest event time stored: the Unix epoch, as for the events a model is trained on. An outcome dated before
was stored (down to 1678, where nanosecond joins end) and listed unattributed, though no list could have been served."""
LATEST = pd.Timestamp("2262-01-01", tz="UTC")
"""The end of the stored time range (exclusive)."""
EVENT_ID_REUSED = "the event_id already names another event of this subject (another kind or item)"
NO_SUCH_DECISION = "no decision {id}"
OTHER_SUBJECT = "decision {id} was not served to this subject"
SHADOW_DECISION = "decision {id} is a shadow list, never served"
UNREADABLE_DECISION = "decision {id}'s list can no longer be read"
NOT_IN_DECISION = "the item is not in the list of decision {id}"
BEFORE_DECISION = "the event ({at}) is before decision {id} ({decided})"
PAST_RETENTION = (
    "the time is before the retention window this store is purged by ({days} days under {pack}, the purge at trail seq "
    "{seq}): the next purge would delete it"
)
"""The refusal of an outcome event older than :func:`retention_window` allows: stored, it would outlive the window."""
PURGE_ACTION = "data.purged"
"""The trail action of a purge (:mod:`governance.retention`): its payload names the window the store is purged by."""
RETENTION_KEY = "retention_window"
"""The ``store_meta`` key of the window the store was last purged by (:func:`set_retention_window`)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """One event refused: where it is in its source, which field, why (never a subject id)."""

    line: int
    field: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """``{"line", "field", "reason"}``."""
        return asdict(self)


class OutcomesRefused(DataError):
    """Events of a batch that must be stored whole were refused; nothing was stored."""

    def __init__(self, refusals: list[Refusal]) -> None:
        self.refusals = refusals
        first = refusals[0]
        more = f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else ""
        super().__init__(f"event {first.line}: {first.field}: {first.reason}{more}; nothing was stored")


@dataclass(frozen=True)
class OutcomeBatch:
    """What one batch stored: its trail anchor, counts, and each refused or unattributed event with its line."""

    trail_seq: int | None
    """The ``outcomes.recorded`` event (None when the batch stored nothing)."""
    rows: int
    added: int
    already_recorded: int
    by_attribution: dict[str, int] = field(default_factory=dict)
    """Among the events added: how each was joined (:data:`~audits.models.ATTRIBUTIONS`)."""
    refused: list[Refusal] = field(default_factory=list)
    unattributed: list[dict[str, Any]] = field(default_factory=list)
    """Per event added without a decision: ``{"line", "reason"}``."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "trail_seq": self.trail_seq, "rows": self.rows, "added": self.added, "already_recorded": self.already_recorded,
            "refused": len(self.refused), "by_attribution": self.by_attribution,
        }  # fmt: skip


def event_key(pseudonym: str, event_id: str, kind: str, item_id: str, occurred_at: str, decision_id: str, value: str) -> str:
    """The event key: SHA-256 over the pseudonym and the caller's ``event_id`` when there is one, else over what
    the event says (kind, item, ISO time, decision id, value).

    Made from the pseudonym, never the raw id, so it names no one.
    """
    if event_id:
        parts: tuple[str, ...] = (_KEY_DOMAIN, pseudonym, "id", event_id)
    else:
        parts = (_KEY_DOMAIN, pseudonym, "what", kind, item_id, occurred_at, decision_id, value)
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


def _value_text(values: pd.Series) -> list[str]:
    return ["" if np.isnan(v) else repr(float(v)) for v in values.to_numpy(dtype=float)]


def _keys(batch: pd.DataFrame, pseudonyms: list[str]) -> list[str]:
    times = batch["occurred_at"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00").tolist()
    return [
        event_key(p, e, k, i, t, d, v)
        for p, e, k, i, t, d, v in zip(
            pseudonyms, batch["event_id"].tolist(), batch["kind"].tolist(), batch["item_id"].tolist(), times,
            batch["decision_id"].tolist(), _value_text(batch["value"]), strict=True,
        )
    ]  # fmt: skip


def _reused_event_ids(session: Session, keyed: pd.DataFrame) -> tuple[pd.DataFrame, list[Refusal]]:
    """The events whose ``event_id`` is not already the subject's id of an event of *another* kind or item; a refusal
    for each that is.

    An event key made from the caller's ``event_id`` says the same event when it comes again, even re-stamped with
    another time (skipped: importing a file twice adds nothing). The same id on another kind or item is another event
    under a reused id: it is refused with its line, never counted as already recorded (that dropped it in silence).
    The first of them in the batch stands, unless the store holds the id already."""
    named = keyed["event_id"].map(bool).to_numpy(dtype=bool)
    if not named.any():
        return keyed, []
    rows = keyed[named]
    seen: dict[str, tuple[str, str]] = {}
    stored = select(OutcomeEvent.event_key, OutcomeEvent.kind, OutcomeEvent.item_id)
    for key, kind, item in session.execute(stored.where(in_values(session, OutcomeEvent.event_key, rows["event_key"].unique().tolist()))):
        seen[key] = (str(kind), str(item))
    bad = np.zeros(len(keyed), dtype=bool)
    for pos, key, kind, item in zip(np.flatnonzero(named), rows["event_key"], rows["kind"], rows["item_id"], strict=True):
        if seen.setdefault(key, (str(kind), str(item))) != (str(kind), str(item)):
            bad[pos] = True
    if not bad.any():
        return keyed, []
    return keyed[~bad], [Refusal(int(line), "event_id", EVENT_ID_REUSED) for line in keyed["line"][bad]]


def _known_keys(session: Session, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    return set(session.scalars(select(OutcomeEvent.event_key).where(in_values(session, OutcomeEvent.event_key, keys))))


# -- attribution ---------------------------------------------------------------------------------

_DECISION_COLUMNS = (DecisionRecord.decision_id, DecisionRecord.subject, DecisionRecord.decided_at, DecisionRecord.slate, DecisionRecord.context)


def _opened(session: Session, rows: Sequence[Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decisions as a frame (``decision_id, d_subject, decided_at, shadow, readable``) and their served items
    (``decision_id, item_id, position``, the first place of each item)."""
    opened = open_decisions(session, [(r.decision_id, r.subject, r.slate, r.context) for r in rows])
    ids, items, places = [], [], []
    shadow, readable = [], []
    for row, pair in zip(rows, opened, strict=True):
        context = pair[1] if pair is not None else (row.context or {})
        shadow.append(bool(isinstance(context, Mapping) and context.get("shadow_of")))
        readable.append(pair is not None)
        listed = (pair[0] or {}).get("items") or [] if pair is not None else []
        ids.extend([row.decision_id] * len(listed))
        items.extend(str(i) for i in listed)
        places.extend(range(len(listed)))
    decisions = pd.DataFrame(
        {
            "decision_id": [r.decision_id for r in rows],
            "d_subject": pd.Series([r.subject for r in rows], dtype=object),
            "decided_at": pd.to_datetime(pd.Series([r.decided_at for r in rows], dtype=object), utc=True).astype("datetime64[ns, UTC]"),
            "shadow": np.asarray(shadow, dtype=bool),
            "readable": np.asarray(readable, dtype=bool),
        }
    )
    served = pd.DataFrame({"decision_id": ids, "item_id": items, "position": np.asarray(places, dtype=np.int64)})
    return decisions, served.drop_duplicates(["decision_id", "item_id"])


def _by_decision_id(session: Session, events: pd.DataFrame) -> tuple[pd.DataFrame, list[Refusal]]:
    """Events that carry a decision id, each with its ``position``; a refusal for each that cannot be joined."""
    ids = events["decision_id"].unique().tolist()
    rows = session.execute(select(*_DECISION_COLUMNS).where(in_values(session, DecisionRecord.decision_id, ids))).all()
    decisions, served = _opened(session, rows)
    events = events.astype({"decision_id": object, "item_id": object, "pseudonym": object})
    joined = events.merge(decisions, on="decision_id", how="left").merge(served, on=["decision_id", "item_id"], how="left")
    joined.index = events.index
    at = joined["occurred_at"].astype("datetime64[ns, UTC]")
    checks: list[tuple[pd.Series, str]] = [
        (joined["decided_at"].isna(), NO_SUCH_DECISION),
        (joined["d_subject"] != joined["pseudonym"], OTHER_SUBJECT),
        (joined["shadow"] == True, SHADOW_DECISION),  # noqa: E712 - a nullable column
        (joined["readable"] == False, UNREADABLE_DECISION),  # noqa: E712
        (joined["position"].isna(), NOT_IN_DECISION),
        (at < joined["decided_at"], BEFORE_DECISION),
    ]
    bad = np.zeros(len(joined), dtype=bool)
    refusals: list[Refusal] = []
    for mask, reason in checks:
        hit = mask.fillna(False).to_numpy(dtype=bool) & ~bad
        for row in joined[hit].itertuples(index=False):
            refusals.append(
                Refusal(int(row.line), "decision_id", reason.format(
                    id=row.decision_id, item=row.item_id, at=row.occurred_at.isoformat(),
                    decided="" if pd.isna(row.decided_at) else row.decided_at.isoformat(),
                ))  # fmt: skip
            )
        bad |= hit
    ok = joined[~bad]
    return events.loc[ok.index].assign(position=ok["position"].astype(np.int64), attribution="decision_id"), refusals


def _first_decisions(session: Session, pseudonyms: list[str]) -> dict[str, pd.Timestamp]:
    """Each pseudonym's first decision time (any decision); pseudonyms without one are left out."""
    if not pseudonyms:
        return {}
    rows = session.execute(
        select(DecisionRecord.subject, func.min(DecisionRecord.decided_at))
        .where(in_values(session, DecisionRecord.subject, pseudonyms))
        .group_by(DecisionRecord.subject)
    ).all()
    return {subject: pd.Timestamp(t).tz_localize("UTC") if pd.Timestamp(t).tzinfo is None else pd.Timestamp(t).tz_convert("UTC") for subject, t in rows if t is not None}


def _by_window(session: Session, events: pd.DataFrame, window: timedelta) -> pd.DataFrame:
    """Events without a decision id, each joined by subject, item and window, or told why not (``attribution``)."""
    at = events["occurred_at"].astype("datetime64[ns, UTC]")
    pseudonyms = events["pseudonym"].unique().tolist()
    lo, hi = (at.min() - window).to_pydatetime(), at.max().to_pydatetime()
    rows = session.execute(
        select(*_DECISION_COLUMNS).where(
            in_values(session, DecisionRecord.subject, pseudonyms), DecisionRecord.decided_at >= lo, DecisionRecord.decided_at <= hi
        )
    ).all()
    decisions, served = _opened(session, rows)
    decisions = decisions[~decisions["shadow"] & decisions["readable"]]
    served = served.merge(decisions[["decision_id", "d_subject", "decided_at"]], on="decision_id")
    left = events.assign(_at=at, _row=np.arange(len(events))).sort_values("_at", kind="stable")
    right = served.rename(columns={"d_subject": "pseudonym"}).sort_values(["decided_at", "decision_id"], kind="stable")
    for frame in (left, right):  # the join keys as plain objects on both sides (pandas' str dtype does not match object)
        frame["pseudonym"], frame["item_id"] = frame["pseudonym"].astype(object), frame["item_id"].astype(object)
    tolerance = pd.Timedelta(window)
    matched = pd.merge_asof(
        left, right[["decided_at", "pseudonym", "item_id", "decision_id", "position"]], left_on="_at", right_on="decided_at",
        by=["pseudonym", "item_id"], direction="backward", tolerance=tolerance, allow_exact_matches=True, suffixes=("", "_served"),
    )  # fmt: skip
    any_list = pd.merge_asof(
        left[["_at", "pseudonym"]],
        decisions.rename(columns={"d_subject": "pseudonym"}).sort_values("decided_at", kind="stable")[["decided_at", "pseudonym"]],
        left_on="_at", right_on="decided_at", by="pseudonym", direction="backward", tolerance=tolerance, allow_exact_matches=True,
    )  # fmt: skip
    firsts = _first_decisions(session, pseudonyms)
    first = pd.to_datetime(left["pseudonym"].map(lambda p: firsts.get(p, pd.NaT)), utc=True).astype("datetime64[ns, UTC]")
    hit = matched["decision_id_served"].notna().to_numpy()
    reason = np.where(
        any_list["decided_at"].notna().to_numpy(), "item_not_served",
        np.where((first.notna() & (first <= left["_at"])).to_numpy(), "outside_window", "no_decision_before"),
    )  # fmt: skip
    out = left.drop(columns=["_at"]).assign(
        decision_id=np.where(hit, matched["decision_id_served"].to_numpy(dtype=object), ""),
        position=np.where(hit, matched["position"].fillna(-1).to_numpy(dtype=np.int64), -1),
        attribution=np.where(hit, "window", reason),
    )
    return out.sort_values("_row", kind="stable").drop(columns=["_row"]).set_axis(events.index)


def attribute(session: Session, events: pd.DataFrame, window: timedelta = DEFAULT_WINDOW) -> tuple[pd.DataFrame, list[Refusal]]:
    """Join each event to its decision (see the module docstring); events need ``pseudonym`` beside :data:`BATCH_COLUMNS`.

    Returns the events that can be stored, with ``decision_id`` (``""`` when
    unattributed), ``position`` (-1 when unattributed) and ``attribution``; and a
    refusal for each event whose decision id cannot be joined.
    """
    if window <= timedelta(0):
        raise DataError(f"the attribution window must be positive; got {window}")
    carried = events["decision_id"] != ""
    parts: list[pd.DataFrame] = []
    refusals: list[Refusal] = []
    if carried.any():
        joined, refusals = _by_decision_id(session, events[carried])
        parts.append(joined)
    if (~carried).any():
        parts.append(_by_window(session, events[~carried], window))
    out = pd.concat(parts).sort_index() if parts else events.assign(position=[], attribution=[])
    return out, refusals


# -- storing -------------------------------------------------------------------------------------


def _in_range(batch: pd.DataFrame) -> tuple[pd.DataFrame, list[Refusal]]:
    """The events whose time is within [:data:`EARLIEST`, :data:`LATEST`); a refusal for each other (never a crash)."""
    at = pd.to_datetime(batch["occurred_at"], utc=True)
    early = (at < EARLIEST).fillna(False).to_numpy(dtype=bool)
    out = early | (at >= LATEST).fillna(True).to_numpy(dtype=bool)
    if not out.any():
        return batch, []
    late = TIME_OUT_OF_RANGE.format(lo=EARLIEST.year, hi=LATEST.year - 1)
    refused = [Refusal(int(line), "time", BEFORE_EPOCH if before else late) for line, before in zip(batch["line"][out], early[out], strict=True)]
    return batch[~out], refused


def set_retention_window(session: Session, days: int | None, pack: str, seq: int) -> None:
    """Record, in the transaction of a purge's trail event ``seq``, the window the store is purged by (None: the
    pack sets none): outcome events older than it are refused from then on (:func:`retention_window`)."""
    import json

    value = json.dumps({"days": days, "pack": pack, "trail_seq": seq}, sort_keys=True)
    session.merge(StoreMeta(key=RETENTION_KEY, value=value))


def _trail_window(session: Session) -> dict[str, Any] | None:
    """``{"days", "pack", "trail_seq"}`` of the last ``data.purged`` event of the trail, or None (never purged)."""
    import json

    purge = session.execute(
        select(TrailEvent.seq, TrailEvent.payload).where(TrailEvent.action == PURGE_ACTION).order_by(TrailEvent.seq.desc()).limit(1)
    ).first()
    if purge is None:
        return None
    payload = json.loads(purge.payload)
    return {"days": payload.get("retention_days"), "pack": f"{payload.get('pack')} {payload.get('pack_version')}", "trail_seq": int(purge.seq)}


def _recorded_window(session: Session) -> dict[str, Any] | None:
    import json

    stored = session.scalar(select(StoreMeta.value).where(StoreMeta.key == RETENTION_KEY))
    return json.loads(stored) if stored is not None else None


def retention_window_recorded(session: Session) -> bool:
    """Whether the ``store_meta`` row of the window is the one the last purge on the trail recorded (a purge
    records it again when not)."""
    return _recorded_window(session) == _trail_window(session)


def retention_window(session: Session) -> dict[str, Any] | None:
    """``{"days", "pack", "trail_seq"}`` of the window the store was last purged by, or None (never purged, or
    last purged under a pack without one).

    Read from the last ``data.purged`` event of the trail, which its hash chain
    protects, never from ``store_meta`` alone: that row is a plain table, and
    editing or deleting it would silently stop the refusal of events past the
    window. A row that disagrees with the trail is logged as an error and the
    trail's window is used."""
    trusted = _trail_window(session)
    recorded = _recorded_window(session)
    if recorded != trusted:
        log.error(
            "the store_meta row %r (%s) does not match the last data.purged event of the trail (%s): the trail's "
            "window is used; the row was changed outside a purge ('recgov data purge' records it again)", RETENTION_KEY, recorded, trusted,
        )  # fmt: skip
    return trusted if trusted is not None and trusted.get("days") is not None else None


def _within_retention(session: Session, batch: pd.DataFrame) -> tuple[pd.DataFrame, list[Refusal]]:
    """The events within the window the store is purged by; a refusal (:data:`PAST_RETENTION`) for each older one,
    as the purge would delete it (older than the cutoff; one at the cutoff stays)."""
    window = retention_window(session)
    if window is None or batch.empty:
        return batch, []
    cutoff = pd.Timestamp(datetime.now(UTC) - timedelta(days=int(window["days"])))
    old = (pd.to_datetime(batch["occurred_at"], utc=True) < cutoff).fillna(False).to_numpy(dtype=bool)
    reason = PAST_RETENTION.format(days=window["days"], pack=window["pack"], seq=window["trail_seq"])
    return batch[~old], [Refusal(int(line), "time", reason) for line in batch["line"][old]]


def _erased(session: Session, batch: pd.DataFrame) -> tuple[pd.DataFrame, list[Refusal]]:
    """The events that may be stored; a neutral refusal (:data:`NOT_STORABLE`) for each event of an erased subject
    dated at or before the erasure, which says neither that the subject was erased nor when."""
    suppressed = suppressions_for(session, batch["subject"].unique().tolist())
    if not suppressed:
        return batch, []
    erased_at = pd.to_datetime(batch["subject"].map({s: e.erased_at for s, e in suppressed.items()}), utc=True)
    before = (batch["occurred_at"].astype("datetime64[ns, UTC]") <= erased_at).fillna(False).to_numpy(dtype=bool)
    refusals = [Refusal(int(line), "subject", NOT_STORABLE) for line in batch["line"][before]]
    return batch[~before], refusals


def record_outcomes(
    session: Session,
    batch: pd.DataFrame,
    *,
    source: Literal["api", "import"],
    anchor: Mapping[str, Any],
    window: timedelta = DEFAULT_WINDOW,
    actor: str | None = None,
    whole: bool = False,
) -> OutcomeBatch:
    """Store a batch of validated outcome events (columns :data:`BATCH_COLUMNS`), anchored by one trail event.

    ``anchor`` goes into the event's payload beside the counts (never a raw
    subject id). Events already stored (same event key) are skipped and counted
    in ``already_recorded``. With ``whole``, any refused event raises
    :class:`OutcomesRefused` before anything is written (the API's JSON body is
    all or nothing); otherwise refused events are returned and the others stored.
    Runs in the caller's transaction.
    """
    if source not in OUTCOME_SOURCES:
        raise DataError(f"source must be one of {', '.join(OUTCOME_SOURCES)}; got {source!r}")
    if batch.empty:
        return OutcomeBatch(trail_seq=None, rows=0, added=0, already_recorded=0)
    missing = [c for c in BATCH_COLUMNS if c not in batch.columns]
    if missing:
        raise DataError(f"an outcome batch needs the columns {', '.join(BATCH_COLUMNS)}; missing {', '.join(missing)}")
    installation_key = _installation_key(session)
    hold_head_for_keys(session)
    ranged, out_of_range = _in_range(batch.reset_index(drop=True))
    ranged, past_retention = _within_retention(session, ranged.reset_index(drop=True))
    kept, refused = _erased(session, ranged.reset_index(drop=True))
    refused = [*out_of_range, *past_retention, *refused]
    found = lookup_subject_secrets(session, kept["subject"].unique().tolist(), create=True, key=installation_key)
    pseudonyms = [found[s][0] for s in kept["subject"].tolist()]  # type: ignore[index]
    keyed = kept.assign(pseudonym=pseudonyms, event_key=_keys(kept, pseudonyms))
    keyed, reused = _reused_event_ids(session, keyed)
    refused = [*refused, *reused]
    unique = keyed.drop_duplicates("event_key")
    fresh = unique[~unique["event_key"].isin(_known_keys(session, unique["event_key"].tolist()))]
    joined, wrong = attribute(session, fresh, window) if not fresh.empty else (fresh, [])
    refused = sorted([*refused, *wrong], key=lambda r: r.line)
    if whole and refused:
        raise OutcomesRefused(refused)
    already = len(keyed) - len(fresh)
    if joined.empty:
        return OutcomeBatch(trail_seq=None, rows=len(batch), added=0, already_recorded=already, refused=refused)
    by_kind = {k: int(v) for k, v in sorted(joined["kind"].value_counts().items())}
    by_attribution = {k: int(v) for k, v in sorted(joined["attribution"].value_counts().items())}
    keys = sorted(joined["event_key"].tolist())
    event = append_event(
        session,
        actor=actor_name(actor),
        action=RECORDED_ACTION,
        payload={
            **anchor, "source": source, "window_seconds": window.total_seconds(), "rows": len(batch), "added": len(joined),
            "already_recorded": already, "refused": len(refused), "by_kind": by_kind, "by_attribution": by_attribution,
            "event_keys_sha256": hashlib.sha256("\n".join(keys).encode("ascii")).hexdigest(),
        },
    )  # fmt: skip
    attributed = joined["attribution"].isin(ATTRIBUTED).to_numpy()
    now = datetime.now(UTC)
    values = joined["value"].to_numpy(dtype=float)
    rows = [
        {
            "event_key": k, "subject": p, "kind": kind, "item_id": item, "occurred_at": t, "source": source,
            "value": None if np.isnan(v) else float(v), "decision_id": d if a else None, "position": int(pos) if a else None,
            "attribution": how, "trail_seq": event.seq, "recorded_at": now,
        }
        for k, p, kind, item, t, v, d, pos, how, a in zip(
            joined["event_key"].tolist(), joined["pseudonym"].tolist(), joined["kind"].tolist(), joined["item_id"].tolist(),
            joined["occurred_at"].dt.to_pydatetime().tolist(), values, joined["decision_id"].tolist(),
            joined["position"].tolist(), joined["attribution"].tolist(), attributed, strict=True,
        )
    ]  # fmt: skip
    session.execute(insert(OutcomeEvent.__table__), rows)
    unattributed = [
        {"line": int(line), "reason": how}
        for line, how in zip(joined["line"][~attributed].tolist(), joined["attribution"][~attributed].tolist(), strict=True)
    ]
    return OutcomeBatch(
        trail_seq=event.seq, rows=len(batch), added=len(joined), already_recorded=already,
        by_attribution=by_attribution, refused=refused, unattributed=unattributed,
    )  # fmt: skip


# -- erasure and retention ------------------------------------------------------------------------


def delete_subject_outcomes(session: Session, pseudonym: str) -> int:
    """Delete every outcome event stored under ``pseudonym`` (erasure: behaviour is no proof to keep); how many."""
    result = session.execute(delete(OutcomeEvent).where(OutcomeEvent.subject == pseudonym))
    return int(result.rowcount or 0)


def count_outcomes_before(session: Session, cutoff: datetime) -> int:
    """How many outcome events happened before ``cutoff`` (what :func:`purge_outcomes` would delete)."""
    return int(session.scalar(select(func.count()).select_from(OutcomeEvent).where(OutcomeEvent.occurred_at < cutoff)) or 0)


def purge_outcomes(session: Session, cutoff: datetime) -> int:
    """Delete the outcome events that happened before ``cutoff`` (the retention window's start); how many."""
    result = session.execute(delete(OutcomeEvent).where(OutcomeEvent.occurred_at < cutoff))
    return int(result.rowcount or 0)


# -- reading, for estimators ---------------------------------------------------------------------

OUTCOME_COLUMNS = ("decision_id", "position", "item_id", "kind", "value", "occurred_at", "subject", "attribution")


def outcomes_of_decisions(
    bind: Any, decision_ids: Iterable[str], *, kinds: Iterable[str] | None = None
) -> pd.DataFrame:
    """The outcome events joined to ``decision_ids``, one row per event (columns :data:`OUTCOME_COLUMNS`).

    ``position`` is the item's place in the decision's list (from 0); ``value``
    NaN where the kind has none; ``subject`` the pseudonym; ``occurred_at`` UTC.
    Unattributed events are never returned (they belong to no decision).
    ``kinds`` narrows to some of :data:`~audits.models.OUTCOME_KINDS`. Sorted by
    decision id, position, time. ``bind``: a session.
    """
    ids = list(dict.fromkeys(decision_ids))
    wanted = list(OUTCOME_KINDS if kinds is None else kinds)
    unknown = sorted(set(wanted) - set(OUTCOME_KINDS))
    if unknown:
        raise DataError(f"unknown outcome kind(s) {', '.join(unknown)}; known: {', '.join(OUTCOME_KINDS)}")
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in OUTCOME_COLUMNS})
    if not ids:
        return empty
    query = select(*(getattr(OutcomeEvent, c) for c in OUTCOME_COLUMNS)).where(
        in_values(bind, OutcomeEvent.decision_id, ids), in_values(bind, OutcomeEvent.kind, wanted)
    )
    rows = bind.execute(query).all()
    if not rows:
        return empty
    frame = pd.DataFrame(rows, columns=list(OUTCOME_COLUMNS))
    frame["position"] = frame["position"].astype(np.int64)
    frame["value"] = frame["value"].astype(float)
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    return frame.sort_values(["decision_id", "position", "occurred_at"], kind="stable").reset_index(drop=True)


_REDUCERS = ("any", "count", "sum", "max", "mean", "last")
DEFAULT_REDUCER = {"impression": "any", "click": "any", "conversion": "any", "dwell": "sum", "rating": "last"}
"""How :func:`decision_rewards` folds a kind's events at one position, by default."""


def decision_rewards(
    bind: Any, decision_ids: Sequence[str], *, kind: str = "click", slate_size: int, reduce: str | None = None
) -> np.ndarray:
    """The rewards of ``decision_ids`` as a ``(len(decision_ids), slate_size)`` float array, in the order given
    (a decision named twice gets two equal rows).

    Cell ``[i, j]`` folds the ``kind`` events at position ``j`` of decision
    ``i`` with ``reduce``: ``any`` (1.0 if there is one; the default for
    impressions, clicks and conversions), ``count``, ``sum`` of values (the
    default for dwell seconds), ``max``, ``mean``, or ``last`` value by time
    (the default for ratings). A cell with no event is 0.0 (``any``, ``count``,
    ``sum``) or NaN (``max``, ``mean``, ``last``: no value is not a value of 0).
    Positions at or beyond ``slate_size`` are left out.
    """
    if kind not in OUTCOME_KINDS:
        raise DataError(f"unknown outcome kind {kind!r}; known: {', '.join(OUTCOME_KINDS)}")
    how = reduce or DEFAULT_REDUCER[kind]
    if how not in _REDUCERS:
        raise DataError(f"unknown reduce {how!r}; choose one of {', '.join(_REDUCERS)}")
    if isinstance(slate_size, bool) or not isinstance(slate_size, int) or slate_size < 1:
        raise DataError(f"slate_size must be a positive integer; got {slate_size!r}")
    given = list(decision_ids)
    ids, inverse = np.unique(np.asarray(given, dtype=object).astype(str), return_inverse=True) if given else (np.asarray([], dtype=str), np.asarray([], dtype=np.int64))
    ids = ids.tolist()
    empty_value = 0.0 if how in ("any", "count", "sum") else np.nan
    out = np.full((len(ids), slate_size), empty_value, dtype=float)
    frame = outcomes_of_decisions(bind, ids, kinds=[kind])
    frame = frame[frame["position"] < slate_size]
    if frame.empty:
        return out[inverse]
    index = pd.Index(ids)
    row = index.get_indexer(frame["decision_id"])
    frame = frame.assign(_row=row)
    grouped = frame.groupby(["_row", "position"], sort=False)
    if how == "any":
        folded = grouped.size().clip(upper=1).astype(float)
    elif how == "count":
        folded = grouped.size().astype(float)
    elif how == "sum":
        folded = grouped["value"].sum(min_count=1).fillna(0.0)
    elif how == "last":
        folded = grouped["value"].last()
    else:
        folded = grouped["value"].agg(how)
    rows, cols = zip(*folded.index.tolist(), strict=True)
    out[np.asarray(rows), np.asarray(cols)] = folded.to_numpy(dtype=float)
    return out[inverse]  # the rows in the order given, a decision named twice twice
