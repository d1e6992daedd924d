"""The data of the guardrails that are not a number per subject: failed requests, harmful items, provider exposure,
the quality gap between consumer groups.

:func:`judge_arm_guardrails` answers, for each treatment, the guardrails that
read more than the subjects' list counts (:mod:`governance.experiments.lifecycle`
reads those):

* ``error_rate`` -- per request: the arm's failed requests (their record's detail
  carries the assignment and the mode the list was being made in, never the subject)
  over its lists plus its failures; Welch's non-inferiority test
  (:func:`recommender.experiments.guardrail_check`) on the 0/1 requests. A look on a
  segment counts the failures of that segment's mode (``known``: personalized) over
  the segment's lists, and refuses the figure when a failure recorded no mode;
  a shadow deployment's failed copy of a request is no failure of the arm;
* ``harmful_exposure`` -- the share of the arm's served items with an active
  harmful-content flag (``item_flags``), subjects as clusters
  (:func:`recommender.experiments.ratio_noninferiority`); a flag switched off
  since the experiment started still counts (switched off before a look, it
  would hide the harm served while it was on);
* ``provider_exposure_gap`` -- the gap between the provider groups' shares of the
  arm's exposure (``1 / log2(rank + 1)`` per served item) and their shares of the
  item table the plan names, by a bootstrap over subjects
  (:func:`recommender.experiments.gap_noninferiority`). The table is hashed at plan
  time; a table that changed since is a failed guardrail, not a silent new target;
* ``consumer_quality_gap`` -- the largest difference of a per-subject quality metric
  (``quality``: click-through, conversion, clicks per subject, from the feedback after
  each subject's first exposure) between consumer groups (``attribute``: the region of the
  subject's first list, as its sealed record has it, opened under the subject's key), over the groups of at least
  ``min_group_size`` analysed subjects in each arm; the difference of the arms' gaps by a
  bootstrap over subjects (:func:`recommender.experiments.quality_gap_noninferiority`).
  Its subjects are the analysed ones: randomised, whose consent covers ``analytics``.

The decisions of an experiment are found by the experiment id in their context:
:func:`experiment_id_of_decision` is that expression, written exactly as the
index ``ix_decisions_experiment`` (migration 0018) has it on each engine
(:class:`audits.models.decisions.ExperimentIdOf`), so an
analysis reads the experiment's records and not every list served since its start.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from audits._common import in_values
from audits.models import DecisionRecord, FailedRequest, ItemFlag
from audits.models.decisions import ExperimentIdOf
from audits.sealing import open_decisions
from recommender.errors import ConfigError, DataError

__all__ = [
    "ITEM_TABLE_CHANGED",
    "UNPLACED_FAILURES",
    "experiment_id_of_decision",
    "first_list_attributes",
    "item_table",
    "judge_arm_guardrails",
    "segment_of_mode",
]

ITEM_TABLE_CHANGED = "the item table {path} changed since the plan was frozen (hash {frozen}, now {now}): the target shares are not the planned ones"
UNPLACED_FAILURES = (
    "error_rate within segment {segment!r} is refused: {n} failed request(s) of the arms ({arms}) recorded no mode "
    "(recorded before failures carried one, or failed before the engine could tell whether the model knows the "
    "subject), so they cannot be placed in a segment; the whole arm's error rate is in a look without a segment"
)
BOOTSTRAP_REPLICATES = 2000


def experiment_id_of_decision(session: Session) -> Any:
    """The indexed SQL expression of a decision's experiment id (its context's ``experiment.id``), on either engine."""
    return ExperimentIdOf()


def item_table(path: str, attribute: str) -> tuple[pd.Series, str]:
    """The item table's provider group per item id (items without one left out) and the file's SHA-256.

    Raises ConfigError naming the file: unreadable, not CSV/Parquet, no ``item_id`` or ``attribute`` column, no group.
    """
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: the item table cannot be read ({err.strerror or err}); expected a CSV or Parquet file with item_id and {attribute!r}") from None
    try:
        table = pd.read_parquet(file) if file.suffix.lower() in (".parquet", ".pq") else pd.read_csv(file, dtype={"item_id": str})
    except Exception as err:  # noqa: BLE001 - any parser failure is this file's fault, said with its name
        raise ConfigError(f"{path}: not a readable item table ({type(err).__name__}: {str(err)[:200]})") from None
    missing = [c for c in ("item_id", attribute) if c not in table.columns]
    if missing:
        raise ConfigError(f"{path}: the item table has no column {', '.join(repr(c) for c in missing)} (columns: {', '.join(map(str, table.columns[:20]))})")
    groups = table.dropna(subset=[attribute]).drop_duplicates("item_id", keep="last")
    series = pd.Series(groups[attribute].astype(str).to_numpy(), index=groups["item_id"].astype(str).to_numpy())
    if series.nunique() < 2:
        raise ConfigError(f"{path}: column {attribute!r} names {series.nunique()} provider group(s); a gap needs 2 or more")
    return series, hashlib.sha256(raw).hexdigest()


def _served(session: Session, row: Any, subjects: pd.Index) -> pd.DataFrame:
    """Every item served to ``subjects`` in the experiment: ``subject, item, rank`` (one row per slot).

    Slates are sealed under their subject's record key (:mod:`audits.sealing`): they are opened here, all
    keys in one query; an erased subject's lists no longer open and are left out, as the subject is."""
    query = select(DecisionRecord.decision_id, DecisionRecord.subject, DecisionRecord.slate, DecisionRecord.context).where(
        experiment_id_of_decision(session) == row.id, DecisionRecord.decided_at >= row.started_at, DecisionRecord.subject.is_not(None)
    )
    if row.stopped_at is not None:
        query = query.where(DecisionRecord.decided_at <= row.stopped_at)
    wanted = set(subjects)
    found = []
    for decision_id, subject, slate, context in session.execute(query):
        exp = (context or {}).get("experiment")
        if subject in wanted and isinstance(exp, Mapping) and exp.get("id") == row.id and not (context or {}).get("shadow_of"):
            found.append((decision_id, subject, slate, context))
    who: list[str] = []
    items: list[Any] = []
    lengths: list[int] = []
    for (_, subject, _, _), opened in zip(found, open_decisions(session, found), strict=True):
        if opened is None:
            continue
        served = (opened[0] or {}).get("items") or []
        who.append(subject)
        items.extend(served)
        lengths.append(len(served))
    counts = np.asarray(lengths, dtype=np.int64)
    ranks = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    return pd.DataFrame({"subject": np.repeat(np.asarray(who, dtype=object), counts), "item": np.asarray(items, dtype=object).astype(str), "rank": ranks})


def segment_of_mode(mode: Any) -> str | None:
    """The exploratory segment of a list made in ``mode``: ``known`` (personalized) or ``new``; None: not recorded."""
    if mode not in ("personalized", "fallback", "non_profiling"):
        return None
    return "known" if mode == "personalized" else "new"


def _failures(session: Session, row: Any) -> dict[str, dict[str | None, int]]:
    """Failed requests of the experiment's randomised subjects: per variant, per segment of the request's recorded mode
    (None: a failure that recorded none). A shadow deployment's failed copy of a request is left out: its list is never
    served, as its decision records are left out of the lists (failures are few: read and filtered here)."""
    query = select(FailedRequest.detail).where(FailedRequest.at >= row.started_at)
    if row.stopped_at is not None:
        query = query.where(FailedRequest.at <= row.stopped_at)
    counts: dict[str, dict[str | None, int]] = {}
    for (detail,) in session.execute(query):
        detail = detail or {}
        exp = detail.get("experiment")
        if isinstance(exp, Mapping) and exp.get("id") == row.id and exp.get("reason") == "randomised" and not detail.get("shadow"):
            per_segment = counts.setdefault(str(exp.get("variant")), {})
            segment = segment_of_mode(detail.get("mode"))
            per_segment[segment] = per_segment.get(segment, 0) + 1
    return counts


def _exact(control: float, treatment: float, guardrail: Mapping[str, Any], why: str) -> dict[str, Any]:
    """A difference with no sampling error (nothing varies): held to the margin as it is."""
    harm = (control - treatment) if guardrail["direction"] == "higher_is_better" else (treatment - control)
    return {"non_inferior": bool(harm <= guardrail["margin"]), "exact": True, "estimate": treatment - control, "reason": why}


def _error_rate(
    lists: Mapping[str, int], failures: Mapping[str, Mapping[str | None, int]], control: str, t: str, guardrail: Mapping[str, Any],
    alpha: float, segment: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The arm's failed requests over its requests (lists plus failures), Welch's non-inferiority test on the 0/1 requests.

    With ``segment`` (``known`` or ``new``) only the failures whose recorded mode is of that segment count, over the
    lists of the segment's subjects; a failure of either arm that recorded no mode cannot be placed in a segment, so
    the segment's error rate is refused (a located reason), never computed on the whole arm."""
    from recommender.experiments import ArmData, guardrail_check

    if segment is not None:
        unplaced = {v: int(failures.get(v, {}).get(None, 0)) for v in (control, t)}
        if any(unplaced.values()):
            return {"non_inferior": False, "exact": False, "refused": True, "segment": segment, "failed_without_mode": unplaced,
                    "reason": UNPLACED_FAILURES.format(n=sum(unplaced.values()), arms=", ".join(f"{v} {n}" for v, n in unplaced.items()),
                                                       segment=segment)}  # fmt: skip
        failed = {v: int(failures.get(v, {}).get(segment, 0)) for v in (control, t)}
    else:
        failed = {v: int(sum(failures.get(v, {}).values())) for v in (control, t)}
    arms = {v: ArmData(n=int(lists.get(v, 0) + failed[v]), total=float(failed[v]), total_sq=float(failed[v])) for v in (control, t)}
    counts = {"requests": {v: a.n for v, a in arms.items()}, "failed": {v: int(a.total) for v, a in arms.items()}}
    if segment is not None:
        counts["segment"] = segment
    try:
        result = guardrail_check(arms[control], arms[t], margin=guardrail["margin"], direction=guardrail["direction"], alpha=alpha)
        return {**_as_dict(result), **counts}
    except DataError as err:
        if min(a.n for a in arms.values()) < 2:
            return {"non_inferior": False, "exact": False, "reason": str(err), **counts}
        return {**_exact(arms[control].mean, arms[t].mean, guardrail, "no request failed, or every one did, in either arm: the difference is exact"), **counts}


def _as_dict(result: Any) -> dict[str, Any]:
    """A library result as JSON-ready data (a non-finite bound, the open side of a one-sided test, is null)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(result).items()}


def _harmful(served: pd.DataFrame, flagged: set[str], by_variant: dict[str, pd.Index], control: str, t: str, guardrail: Mapping[str, Any], alpha: float) -> dict[str, Any]:
    from recommender.experiments import ratio_noninferiority

    harmful = served.assign(harmful=served["item"].isin(flagged).astype(float)).groupby("subject")["harmful"].agg(["sum", "size"])
    arms = {v: harmful.reindex(by_variant[v]).dropna() for v in (control, t)}
    try:
        result = ratio_noninferiority(
            arms[control]["sum"].to_numpy(), arms[control]["size"].to_numpy(), arms[t]["sum"].to_numpy(), arms[t]["size"].to_numpy(),
            margin=guardrail["margin"], direction=guardrail["direction"], alpha=alpha,
        )  # fmt: skip
        return _as_dict(result)
    except DataError as err:
        if min(len(a) for a in arms.values()) < 2 or min(a["size"].sum() for a in arms.values()) == 0:
            return {"non_inferior": False, "exact": False, "reason": str(err)}
        shares = {v: float(a["sum"].sum() / a["size"].sum()) for v, a in arms.items()}
        return _exact(shares[control], shares[t], guardrail, "the harmful share does not vary within either arm: the difference is exact")


def _gap(served: pd.DataFrame, groups: pd.Series, by_variant: dict[str, pd.Index], control: str, t: str, guardrail: Mapping[str, Any],
         alpha: float, seed: int) -> dict[str, Any]:  # fmt: skip
    from recommender.experiments import gap_noninferiority

    names = np.sort(groups.unique())
    target = groups.value_counts(normalize=True).reindex(names).to_numpy()
    codes = pd.Categorical(groups.reindex(served["item"]).to_numpy(), categories=names).codes
    known = codes >= 0
    weights = 1.0 / np.log2(served["rank"].to_numpy()[known] + 1.0)
    subjects = pd.Index(served["subject"].to_numpy()[known]).unique()
    rows = subjects.get_indexer(served["subject"].to_numpy()[known])
    exposure = np.zeros((len(subjects), names.size))
    np.add.at(exposure, (rows, codes[known]), weights)
    matrix = pd.DataFrame(exposure, index=subjects)
    arms = {v: matrix.reindex(by_variant[v]).dropna().to_numpy() for v in (control, t)}
    try:
        result = gap_noninferiority(arms[control], arms[t], target, margin=guardrail["margin"], alpha=alpha,
                                    direction=guardrail["direction"], n_boot=BOOTSTRAP_REPLICATES, random_state=seed)  # fmt: skip
    except DataError as err:
        return {"non_inferior": False, "exact": False, "reason": str(err)}
    return {**_as_dict(result), "groups": [str(g) for g in names], "unknown_items": int((~known).sum())}


def first_list_attributes(session: Session, subjects: pd.DataFrame, attributes: set[str]) -> pd.DataFrame:
    """Per subject, the consumer ``attributes`` their first list's record names (None where it names none).

    The request's attributes are sealed with the list under the subject's record key (:mod:`audits.sealing`):
    only each subject's first decision (``first_decision``) is read and opened, all keys in one query; an
    erased subject's no longer opens (None: in no group)."""
    ids = [str(d) for d in subjects["first_decision"].dropna()]
    found: dict[str, tuple[Any, Any, Any]] = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        query = select(DecisionRecord.decision_id, DecisionRecord.subject, DecisionRecord.slate, DecisionRecord.context).where(
            in_values(session, DecisionRecord.decision_id, chunk)
        )
        rows = session.execute(query).all()
        for (decision_id, *_), opened in zip(rows, open_decisions(session, rows), strict=True):
            found[decision_id] = opened
    names = sorted(attributes)
    rows = []
    for decision_id in subjects["first_decision"]:
        opened = found.get(str(decision_id))
        context = (opened[1] or {}) if opened is not None else {}
        rows.append([value if isinstance(value := context.get(name), str) and value else None for name in names])
    return pd.DataFrame(rows, index=subjects.index, columns=names, dtype=object)


def _consumer_gap(randomised: pd.DataFrame, groups_of: pd.DataFrame, values: pd.Series, control: str, t: str, guardrail: Mapping[str, Any],
                  alpha: float, seed: int) -> dict[str, Any]:  # fmt: skip
    """The consumer quality gap of ``t`` against ``control`` (see the module doc), with every group's size and mean.

    A subject whose first list named no value of the attribute is in no group (counted, left out); a group with
    fewer than ``min_group_size`` subjects in either arm is reported and left out of both arms' gaps."""
    from governance.experiments.spec import DEFAULT_MIN_GROUP_SIZE
    from recommender.experiments import quality_gap_noninferiority

    arms = {v: randomised.index[randomised["variant"] == v] for v in (control, t)}
    frames = {v: pd.DataFrame({"group": groups_of.loc[idx, guardrail["attribute"]], "value": values.reindex(idx)}) for v, idx in arms.items()}
    no_group = {v: int(f["group"].isna().sum()) for v, f in frames.items()}
    frames = {v: f.dropna() for v, f in frames.items()}
    sizes = {v: f.groupby("group").size() for v, f in frames.items()}
    means = {v: f.groupby("group")["value"].mean() for v, f in frames.items()}
    names = sorted(set(sizes[control].index) | set(sizes[t].index))
    least = guardrail.get("min_group_size", DEFAULT_MIN_GROUP_SIZE)
    judged = [g for g in names if min(int(sizes[v].get(g, 0)) for v in (control, t)) >= least]
    groups = {
        str(g): {v: {"subjects": int(sizes[v].get(g, 0)), "mean": float(means[v][g]) if g in means[v].index else None} for v in (control, t)}
        | {"judged": g in judged}
        for g in names
    }
    about = {"quality": guardrail["quality"], "attribute": guardrail["attribute"], "min_group_size": least, "groups": groups,
             "without_group": no_group}  # fmt: skip
    if len(judged) < 2:
        return {"non_inferior": False, "exact": False, **about,
                "reason": f"{len(judged)} {guardrail['attribute']} group(s) have {least} or more analysed subjects in each arm; a gap needs 2"}  # fmt: skip
    codes = {v: pd.Index(judged).get_indexer(f["group"]) for v, f in frames.items()}  # -1: a group not judged
    keep = {v: codes[v] >= 0 for v in codes}
    try:
        result = quality_gap_noninferiority(
            frames[control]["value"].to_numpy()[keep[control]], codes[control][keep[control]].astype(np.int64),
            frames[t]["value"].to_numpy()[keep[t]], codes[t][keep[t]].astype(np.int64), groups=len(judged),
            margin=guardrail["margin"], alpha=alpha, direction=guardrail["direction"], n_boot=BOOTSTRAP_REPLICATES, random_state=seed,
        )  # fmt: skip
    except DataError as err:
        return {"non_inferior": False, "exact": False, **about, "reason": str(err)}
    return {**_as_dict(result), **about}


def _flagged(session: Session, row: Any) -> set[str]:
    """Items with a harmful-content flag active now, or switched off since the experiment started (the flag's last
    change, its ``trail_seq``, after the ``experiment.started`` event): the harm the arm served while it was on."""
    since = row.start_seq or 0
    query = select(ItemFlag.item_id).where(or_(ItemFlag.active.is_(True), ItemFlag.trail_seq > since))
    return set(session.scalars(query))


def judge_arm_guardrails(
    session: Session, row: Any, randomised: pd.DataFrame, guardrails: list[Mapping[str, Any]], control: str,
    treatments: list[str], alpha: float, frozen_items: Mapping[str, Any], segment: str | None = None,
    quality: Mapping[str, pd.Series] | None = None,
) -> dict[tuple[int, str], dict[str, Any]]:  # fmt: skip
    """``{(guardrail index, treatment): result}`` for the guardrails this module reads (see the module doc).

    ``randomised``: the analysed subjects (of ``segment`` only, when the look has one); ``segment`` places the
    failed requests too (:func:`_error_rate`). ``quality``: per quality metric a ``consumer_quality_gap``
    names, its value per analysed subject."""
    from governance.experiments.spec import ARM_LEVEL_METRICS

    wanted = [(i, g) for i, g in enumerate(guardrails) if g["metric"] in (*ARM_LEVEL_METRICS, "error_rate")]
    if not wanted:
        return {}
    by_variant = {v: randomised.index[randomised["variant"] == v] for v in (control, *treatments)}
    out: dict[tuple[int, str], dict[str, Any]] = {}
    served = _served(session, row, randomised.index) if any(g["metric"] in ("harmful_exposure", "provider_exposure_gap") for _, g in wanted) else None
    flagged = _flagged(session, row) if any(g["metric"] == "harmful_exposure" for _, g in wanted) else set()
    failed = _failures(session, row) if any(g["metric"] == "error_rate" for _, g in wanted) else {}
    consumer = {g["attribute"] for _, g in wanted if g["metric"] == "consumer_quality_gap"}
    groups_of = first_list_attributes(session, randomised, consumer) if consumer else None
    lists = randomised.groupby("variant")["lists"].sum().to_dict()
    for i, g in wanted:
        groups = None
        if g["metric"] == "provider_exposure_gap":
            frozen = frozen_items.get(str(i), {})
            try:
                groups, digest = item_table(g["items"], g["attribute"])
            except ConfigError as err:
                for t in treatments:
                    out[(i, t)] = {"non_inferior": False, "exact": False, "reason": str(err)}
                continue
            if frozen.get("sha256") not in (None, digest):
                for t in treatments:
                    out[(i, t)] = {"non_inferior": False, "exact": False, "reason": ITEM_TABLE_CHANGED.format(path=g["items"], frozen=frozen["sha256"][:12], now=digest[:12])}
                continue
        for t in treatments:
            if g["metric"] == "error_rate":
                out[(i, t)] = _error_rate(lists, failed, control, t, g, alpha, segment)
            elif g["metric"] == "harmful_exposure":
                out[(i, t)] = _harmful(served, flagged, by_variant, control, t, g, alpha)
            elif g["metric"] == "consumer_quality_gap":
                out[(i, t)] = _consumer_gap(randomised, groups_of, (quality or {})[g["quality"]], control, t, g, alpha, seed=int(row.id))
            else:
                out[(i, t)] = _gap(served, groups, by_variant, control, t, g, alpha, seed=int(row.id))
    return out
