"""Off-policy evaluation from the decision log: what a candidate pack would have earned on the lists already served.

:func:`evaluate_from_log` reads the decisions served under the logged pack (those whose recorded
``pack_hash`` is the given pack's content hash; a pack file whose name and version match decisions
recorded under another hash is refused, since the consent rule and the re-ranking are read from it), keeps
those of subjects whose consent covers the ``analytics`` purpose (under the
logged pack's rules for it: ``opt_in`` needs a grant in force, ``opt_out`` is
allowed until an objection, opt-out, denial or withdrawal), replays the target
pack on each logged candidate pool, reads the outcomes joined to the decisions
(:func:`audits.outcomes.decision_rewards`), and estimates the target's reward per
list with the estimators of :mod:`recommender.ope`. The report names every
exclusion with its count and never a subject.

Replay. Each decision's ``slate["logging"]`` holds the governed pool (items and
scores, in governed order), the logging policy, the served positions and their
probabilities (:mod:`governance.ope_logging`). The target pack is replayed on that
pool: its own logging policy (or, without one, its deterministic top ``k``) over
the same governed order. The governed order is only valid for the target when
both packs re-rank alike, so a target whose ``reranking`` section differs is
refused (re-running another re-ranking needs the subject's history under its raw
id, which the log does not hold). A target whose logging policy draws from more places than the logged
pool held (a larger ``pool`` than the logger's, where the catalogue had more candidates) is refused
estimate by estimate: it puts probability on places the logs never held. A decision without a logging record (a pack
without a logging policy) is a deterministic log: its pool is the served list,
and every estimate for another policy is refused for lack of overlap.

Segments. With ``segment`` (item ids, e.g. newly launched items), every estimate is
made again for the outcomes on those items alone (the reward at a position counts
only when its item is in the segment), with its own interval: rare items get their
own, usually wider, intervals instead of vanishing in the average.

Views. Slate estimators take the list's reward (the sum over positions, or
per position for the independent and cascade estimators); the single-action
estimators (IPS, SNIPS, DM, DR) take the first position as the action and its
reward, with per-item means as the direct method's reward model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from governance.ope_logging import LoggingHook
from governance.policy import LoadedPack
from recommender.errors import ConfigError
from recommender.ope import (
    DEFAULT_MIN_ESS,
    ExactBoundError,
    SlatePolicy,
    cascade_ips,
    direct_method,
    doubly_robust,
    independent_ips,
    ips,
    item_mean_rewards,
    pairwise_probabilities,
    position_marginals,
    pseudo_inverse,
    slate_probabilities,
    snips,
    standard_ips,
)
from recommender.ope.policies import first_position, support_mask

__all__ = [
    "ALL_REFUSED",
    "ANALYTICS",
    "NO_OFF_POLICY_RULE",
    "OFF_POLICY_CHECKS",
    "OpeSettings",
    "analytics_allowed",
    "analytics_model",
    "audit_off_policy",
    "LOGGED_PACK_MISMATCH",
    "LoggedPackMismatch",
    "check_logged_hash",
    "evaluate_from_log",
    "refused_estimates",
    "off_policy_facts",
    "off_policy_gate",
]

ANALYTICS = "analytics"
"""The consent purpose that covers evaluating policies on a subject's logs."""
REFUSING_STATUSES = frozenset({"denied", "withdrawn", "opted_out", "objected"})
NO_ANALYTICS_PURPOSE = (
    "pack {pack} declares no '{purpose}' consent purpose; off-policy evaluation reads subjects' logs for analytics, "
    "so the pack must say on which basis (consent.purposes.{purpose})"
)
RERANKING_DIFFERS = (
    "the target pack re-ranks differently from the logged pack ({logged} vs {target}); replaying another re-ranking "
    "needs each subject's history under its raw id, which the decision log does not hold. Compare packs that differ "
    "in their logging policy, or evaluate the re-ranking off-line with 'recgov evaluate'"
)

LOGGED_PACK_MISMATCH = (
    "{source}: the logged pack {pack} (content hash {hash}) is not the pack that served the decisions recorded under "
    "{pack}: {n} decision(s) of that name and version carry another pack hash ({others}). The consent rule and the "
    "re-ranking are taken from the logged pack, so it must be the file that served them: give that file (its content "
    "hash is the pack_hash the decisions record)"
)
TARGET_POOL_BEYOND_LOG = (
    "overlap fails: the target's logging policy draws from a pool of {target} places, beyond the logged pool of {m} "
    "(in {n} of {total} lists the logger's pool was cut at {m} while more candidates existed): the target puts probability "
    "on places the logger never held, so no reweighting of the logs can show what it would do there. Widen the logged "
    "pack's logging_policy.pool to at least {target} and log again, or evaluate a target whose pool is at most {m}"
)


TARGET_POOL_WITHIN_LOG = (
    "the target's logging policy draws from a pool of {target} places, fewer than the logged pool of {m} (in {n} of "
    "{total} lists): the replay has the logged pool's scores, not the target's own governed list of {target}, so it "
    "would estimate a draw over {m} places instead of the target's. Evaluate a target whose pool equals the logged "
    "pool, or log with the target's pool"
)


class LoggedPackMismatch(ConfigError):
    """The logged pack given is not the one whose hash the decisions of its name and version record."""


@dataclass(frozen=True)
class OpeSettings:
    """How the estimates are made."""

    kinds: tuple[str, ...] = ("click", "conversion")
    min_ess: float = DEFAULT_MIN_ESS
    n_bootstrap: int = 1000
    seed: int = 0
    confidence: float = 0.95
    max_states: int = 200_000
    max_slates: int = 50_000
    limit: int | None = None
    """Read at most this many decisions (the newest)."""
    segment: frozenset[str] | None = None
    """Item ids of a segment (e.g. newly launched items): the report adds estimates of the outcomes on them alone."""
    provider_groups: dict[str, frozenset[str]] | None = None
    """Provider group name -> its item ids: the report adds each group's estimated exposure share under the target
    (item-position IPS over the logged lists) beside its share in the logged lists, and the difference."""


@dataclass(frozen=True)
class _Logged:
    decision_id: str
    slate: dict[str, Any]
    context: dict[str, Any]


@dataclass
class _Contexts:
    ids: list[str] = field(default_factory=list)
    k: list[int] = field(default_factory=list)
    log_prob: list[float] = field(default_factory=list)
    tgt_prob: list[float] = field(default_factory=list)
    log_prefix: list[np.ndarray] = field(default_factory=list)
    tgt_prefix: list[np.ndarray] = field(default_factory=list)
    log_marg: list[np.ndarray] = field(default_factory=list)
    tgt_marg: list[np.ndarray] = field(default_factory=list)
    unsupported: list[float] = field(default_factory=list)
    first_log: list[np.ndarray] = field(default_factory=list)
    first_tgt: list[np.ndarray] = field(default_factory=list)
    first_items: list[list[str]] = field(default_factory=list)
    first_action: list[int] = field(default_factory=list)
    shown: list[list[str]] = field(default_factory=list)
    pi_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = field(default_factory=list)
    pi_refusal: str | None = None
    marg_refusal: str | None = None
    beyond_pool: list[tuple[int, int]] = field(default_factory=list)
    """(target pool, logged pool) of each list where the target would draw from places the logger never held."""
    within_pool: list[tuple[int, int]] = field(default_factory=list)
    """(target pool, logged pool) of each list where a stochastic target would draw from fewer places than were logged."""

    def pool_refusal(self) -> str | None:
        """Why every estimate of the target is refused for its pool (None: its pool fits the logged pools)."""
        if not self.beyond_pool:
            if self.within_pool:
                target = max(t for t, _ in self.within_pool)
                m = min(m for _, m in self.within_pool)
                return TARGET_POOL_WITHIN_LOG.format(target=target, m=m, n=len(self.within_pool), total=len(self.ids))
            return None
        target = max(t for t, _ in self.beyond_pool)
        m = min(m for _, m in self.beyond_pool)
        return TARGET_POOL_BEYOND_LOG.format(target=target, m=m, n=len(self.beyond_pool), total=len(self.ids))


def _target_policy(target: LoadedPack, m: int, k: int) -> SlatePolicy:
    hook = LoggingHook.from_section(target.pack.logging_policy)
    return SlatePolicy() if hook is None else hook.policy_for(m, k)


def _pool_length(pack: LoadedPack, k: int) -> int:
    """How many governed places the pack's serving path draws a list of ``k`` from (its pool; ``k`` without a logging policy)."""
    hook = LoggingHook.from_section(pack.pack.logging_policy)
    return k if hook is None else hook.length(k)


def check_logged_hash(session: Any, logged: LoadedPack) -> None:
    """Refuse a logged pack whose content is not that of the decisions recorded under its name and version."""
    from sqlalchemy import func

    from audits.models import DecisionRecord as DecisionRow

    others = session.execute(
        select(DecisionRow.pack_hash, func.count())
        .where(DecisionRow.pack_name == logged.name, DecisionRow.pack_version == logged.version, DecisionRow.pack_hash != logged.content_hash)
        .group_by(DecisionRow.pack_hash)
        .order_by(DecisionRow.pack_hash)
    ).all()
    if others:
        raise LoggedPackMismatch(LOGGED_PACK_MISMATCH.format(
            source=logged.source, pack=f"{logged.name} {logged.version}", hash=logged.content_hash[:16], n=sum(int(c) for _, c in others),
            others=", ".join(f"{h[:16]}: {int(c)}" for h, c in others),
        ))  # fmt: skip


def _analytics_allowed(session: Any, logged: LoadedPack, subjects: list[str]) -> dict[str, bool]:
    purpose = logged.pack.consent.purposes.get(ANALYTICS)
    if purpose is None:
        raise ConfigError(NO_ANALYTICS_PURPOSE.format(pack=logged.name, purpose=ANALYTICS))
    return analytics_allowed(session, subjects, model=purpose.model)


def analytics_allowed(session: Any, subjects: list[str], *, model: str) -> dict[str, bool]:
    """Per subject, whether their consent covers reading their logs for analytics under a purpose of ``model``:
    ``opt_in`` needs a grant in force; ``opt_out`` allows it until an objection, opt-out, denial or withdrawal.
    The one rule every analysis of subjects' logs applies (off-policy evaluation, experiment looks)."""
    from audits.consent import consent_states

    states = consent_states(session, sorted(set(subjects))) if subjects else {}
    allowed = {}
    for subject in set(subjects):
        status = states.get(subject, {}).get(ANALYTICS)
        allowed[subject] = status == "granted" if model == "opt_in" else status not in REFUSING_STATUSES
    return allowed


def analytics_model(stamps: Iterable[Sequence[str]], packs_dir: Path | None = None) -> tuple[str, list[str]]:
    """The ``analytics`` consent model for lists served under the packs ``stamps`` names, and the packs not read.

    ``stamps``: ``(name, version, content hash)`` of each pack that served the lists, as the decision log records
    them. Each is read from the shipped pack of that name, else from the stored ``name@version`` under
    ``packs_dir``, when its content hash matches. ``opt_in`` when any read pack asks a grant for ``analytics``, and
    when any pack cannot be read (its rule is unknown, so the strict one applies: only subjects holding a grant are
    analysed; the pack is named); else ``opt_out`` (a pack without the purpose still honours an objection: the rule
    of :func:`analytics_allowed` refuses an objection, opt-out, denial or withdrawal under either model).
    """
    from governance.packs import load_stored, shipped_pack_path
    from governance.policy import load_pack

    models, unread = set(), []
    for name, version, content_hash in stamps:
        pack = None
        if "/" not in name and ".." not in name:
            path = shipped_pack_path(name)
            candidate = load_pack(path) if path.is_file() else None
            if candidate is not None and candidate.content_hash == content_hash:
                pack = candidate
            elif packs_dir is not None:
                try:
                    candidate = load_stored(packs_dir, name, version)
                except ConfigError:
                    candidate = None
                pack = candidate if candidate is not None and candidate.content_hash == content_hash else None
        if pack is None:
            unread.append(f"{name} {version}")
            models.add("opt_in")  # fail closed: a rule that cannot be read is not assumed to be the looser one
            continue
        purpose = pack.pack.consent.purposes.get(ANALYTICS)
        models.add(purpose.model if purpose is not None else "opt_out")
    return ("opt_in" if "opt_in" in models else "opt_out"), sorted(set(unread))


ALL_REFUSED = "every estimate of {kinds} is refused (a deterministic log, poor overlap or too few effective samples)"
"""Why an evaluation is refused as a whole (API 422 ``ope-refused``, ``recgov ope`` exit 2): see :func:`refused_estimates`."""


def refused_estimates(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The located refusals of a report whose every estimate of some outcome kind is refused (else none).

    ``logged_policy`` (the on-policy mean of what was served) is not an estimate of the target and never counts.
    """
    errors = []
    for kind, estimates in report.get("metrics", {}).items():
        of_target = {name: est for name, est in estimates.items() if name != "logged_policy"}
        if of_target and all(est.get("refused") for est in of_target.values()):
            errors += [
                {"location": "report", "field": f"metrics.{kind}.{name}", "message": str(est.get("reason")), "type": "estimate_refused"}
                for name, est in of_target.items()
            ]
    return errors


def evaluate_from_log(store: Any, logged: LoadedPack, target: LoadedPack, settings: OpeSettings | None = None) -> dict[str, Any]:
    """The off-policy report of ``target`` on the decisions served under ``logged`` (see the module docstring)."""
    from audits.models import DecisionRecord as DecisionRow
    from audits.outcomes import decision_rewards
    from audits.sealing import open_decisions

    settings = settings or OpeSettings()
    _check_settings(settings)  # before anything is read
    if logged.pack.reranking.model_dump(mode="json") != target.pack.reranking.model_dump(mode="json"):
        raise ConfigError(RERANKING_DIFFERS.format(logged=f"{logged.name} {logged.version}", target=f"{target.name} {target.version}"))
    excluded: dict[str, int] = {}
    with store.session() as session:
        check_logged_hash(session, logged)
        query = (
            select(DecisionRow.decision_id, DecisionRow.subject, DecisionRow.slate, DecisionRow.context)
            .where(DecisionRow.pack_name == logged.name, DecisionRow.pack_version == logged.version, DecisionRow.pack_hash == logged.content_hash)
            .order_by(DecisionRow.decided_at.desc(), DecisionRow.decision_id)
        )
        if settings.limit is not None:
            query = query.limit(settings.limit)
        rows = session.execute(query).all()
        anonymous = [r for r in rows if r.subject is None]
        _count(excluded, "no_subject_to_check_consent", len(anonymous))
        named = [r for r in rows if r.subject is not None]
        allowed = _analytics_allowed(session, logged, [r.subject for r in named])
        consenting = [r for r in named if allowed[r.subject]]
        refused_subjects = {r.subject for r in named if not allowed[r.subject]}
        _count(excluded, "analytics_consent_not_in_force", len(named) - len(consenting))
        # Only the lists of consenting subjects are opened (they are sealed under each subject's key).
        opened = open_decisions(session, [(r.decision_id, r.subject, r.slate, r.context) for r in consenting])
        erased = sum(o is None for o in opened)
        _count(excluded, "erased_subjects", erased)
        lists = [_Logged(r.decision_id, o[0], o[1]) for r, o in zip(consenting, opened) if o is not None]
        kept = [d for d in lists if (d.context or {}).get("served", True) is not False]
        _count(excluded, "shadow_lists_not_served", len(lists) - len(kept))
        empty = [d for d in kept if not d.slate.get("items")]
        _count(excluded, "empty_lists", len(empty))
        kept = [d for d in kept if d.slate.get("items")]
        contexts = _replay(kept, logged, target, settings)
        big_k = max(contexts.k, default=1)
        rewards = {kind: decision_rewards(session, contexts.ids, kind=kind, slate_size=big_k) for kind in settings.kinds}
    report: dict[str, Any] = {
        "logged_pack": logged.stamp(),
        "target_pack": target.stamp(),
        "decisions_read": len(rows),
        "decisions_used": len(contexts.ids),
        "excluded": excluded,
        "subjects_excluded_for_consent": len(refused_subjects),
        "consent_purpose": ANALYTICS,
        "logging_policies": _policy_counts(kept),
        "settings": {"min_ess": settings.min_ess, "n_bootstrap": settings.n_bootstrap, "seed": settings.seed, "confidence": settings.confidence},
        "metrics": {kind: _estimates(contexts, rewards[kind], big_k, settings) for kind in settings.kinds},
        "assumptions": {
            "slate_standard_ips": "none on the reward; variance grows with the list length",
            "slate_independent_ips": "the reward at a position depends only on the item there (item-position model)",
            "slate_cascade_ips": "the reward at a position depends only on the items at and above it (cascade)",
            "slate_pseudo_inverse": "the list's reward is a sum of (item, position) terms (linearity)",
            "ips/snips/dm/dr": "single-action view: the first position is the action and its outcome the reward; dm/dr use per-item mean rewards",
        },
    }
    report["differences"] = {kind: _differences(contexts, rewards[kind], big_k, settings) for kind in settings.kinds}
    if settings.provider_groups:
        report["exposure"] = _exposure(contexts, big_k, settings)
    if (gate := off_policy_gate(target, report)) is not None:
        report["gate"] = gate
    if settings.segment is not None:
        mask = _pad([np.array([item in settings.segment for item in shown], dtype=float) for shown in contexts.shown], big_k, 0.0)
        report["segment"] = {
            "items": len(settings.segment),
            "lists_showing_one": int((mask.sum(axis=1) > 0).sum()),
            "metrics": {kind: _estimates(contexts, rewards[kind] * mask, big_k, settings) for kind in settings.kinds},
        }
    return report


def _check_settings(settings: OpeSettings) -> None:
    from audits.models import OUTCOME_KINDS
    from recommender.ope._common import check_settings

    check_settings(settings.n_bootstrap, settings.confidence, settings.min_ess, settings.seed)
    if unknown := sorted(set(settings.kinds) - set(OUTCOME_KINDS)):
        raise ConfigError(f"unknown outcome kind(s) {', '.join(unknown)}; known: {', '.join(OUTCOME_KINDS)}")
    if not settings.kinds:
        raise ConfigError("name at least one outcome kind to estimate")
    if settings.limit is not None and settings.limit < 1:
        raise ConfigError(f"limit must be at least 1, got {settings.limit}")
    for name, items in (settings.provider_groups or {}).items():
        if not name or not items:
            raise ConfigError(f"provider group {name!r} must have a name and at least one item id")


def _count(counts: dict[str, int], reason: str, n: int) -> None:
    if n:
        counts[reason] = counts.get(reason, 0) + n


def _policy_counts(rows: list[_Logged]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for r in rows:
        kind = ((r.slate.get("logging") or {}).get("policy") or {}).get("kind", "deterministic (no logging policy declared)")
        kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items()))


def _replay(rows: list[_Logged], logged: LoadedPack, target: LoadedPack, settings: OpeSettings) -> _Contexts:
    """The logged and target probabilities of each decision's served list (one pass over the decisions).

    A list whose logged pool was cut at the logger's pool length (``m`` places while the catalogue had more) cannot
    show what a target drawing from more than ``m`` places would do: such lists are counted in ``beyond_pool``, and
    every estimate of the target is then refused. A pool shorter than the logger asked for held every candidate
    there was, so a target with a larger pool would have drawn from the same places."""
    out = _Contexts()
    for r in rows:
        slate = r.slate
        log = slate.get("logging")
        if log and log.get("pool"):
            pool_items = list(log["pool"]["items"])
            scores = np.array([0.0 if s is None else s for s in log["pool"]["scores"]], dtype=np.float64)
            positions = np.array(log["positions"], dtype=np.int64)
            policy = SlatePolicy.from_dict(log["policy"])
        else:  # a deterministic list: its pool is what was served
            pool_items = list(slate["items"])
            scores = np.array([0.0 if s is None else s for s in (slate.get("scores") or [None] * len(pool_items))], dtype=np.float64)
            positions = np.arange(len(pool_items))
            policy = SlatePolicy()
        m, k = len(pool_items), len(positions)
        wanted = _pool_length(target, k)
        if wanted > m and m >= (_pool_length(logged, k) if log and log.get("pool") else k):
            out.beyond_pool.append((wanted, m))
        elif k < wanted < m:  # a stochastic target over fewer places than were logged: its own pool is not recorded
            out.within_pool.append((wanted, m))
        tpol = _target_policy(target, m, k)
        lp, lprefix = slate_probabilities(policy, scores, positions)
        tp, tprefix = slate_probabilities(tpol, scores, positions)
        recorded = log.get("marginals") if log else None
        cells = (np.arange(k), positions)
        try:
            lmarg = np.array(recorded) if recorded is not None else position_marginals(policy, scores, k, max_states=settings.max_states)[cells]
            tmat = position_marginals(tpol, scores, k, max_states=settings.max_states)
            tmarg = tmat[cells]
            unsupported = float(tmat[~support_mask(policy, m, k)].sum())
        except ExactBoundError as err:
            out.marg_refusal = str(err)
            lmarg, tmarg, tmat, unsupported = np.ones(k), np.ones(k), None, 0.0
        out.ids.append(r.decision_id)
        out.k.append(k)
        out.log_prob.append(lp)
        out.tgt_prob.append(tp)
        out.log_prefix.append(lprefix)
        out.tgt_prefix.append(tprefix)
        out.log_marg.append(lmarg)
        out.tgt_marg.append(tmarg)
        out.unsupported.append(unsupported)
        out.first_log.append(first_position(policy, scores, k))
        out.first_tgt.append(first_position(tpol, scores, k))
        out.first_items.append(pool_items)
        out.first_action.append(int(positions[0]))
        out.shown.append([pool_items[p] for p in positions])
        if out.pi_parts is not None and tmat is not None:
            try:
                gamma = pairwise_probabilities(policy, scores, k, max_slates=settings.max_slates)
            except ExactBoundError as err:
                out.pi_parts, out.pi_refusal = None, f"pseudo-inverse: {err}"
                continue
            indicator = np.zeros(k * m)
            indicator[positions + np.arange(k) * m] = 1.0
            out.pi_parts.append((gamma, tmat.ravel(), indicator))
    return out


def _pad(rows: list[np.ndarray], width: int, fill: float) -> np.ndarray:
    out = np.full((len(rows), width), fill)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _estimates(c: _Contexts, rewards: np.ndarray, big_k: int, s: OpeSettings) -> dict[str, Any]:
    """Every estimator's result for one outcome kind (rewards ``(n, K)``, NaN read as no reward)."""
    common = {"min_ess": s.min_ess, "n_bootstrap": s.n_bootstrap, "seed": s.seed, "confidence": s.confidence}
    n = len(c.ids)
    r = np.nan_to_num(rewards, nan=0.0)
    total = r.sum(axis=1)
    unsupported = np.array(c.unsupported)
    results: dict[str, Any] = {}
    logged = standard_ips(total, np.ones(n), np.ones(n), unsupported_mass=0.0, **{**common, "min_ess": 0.0})
    results["logged_policy"] = logged.to_dict() | {"estimator": "on_policy_mean"}
    results["slate_standard_ips"] = standard_ips(total, c.log_prob, c.tgt_prob, unsupported_mass=unsupported, **common).to_dict()
    if c.marg_refusal:
        refused = {"refused": True, "reason": c.marg_refusal, "value": None}
        results["slate_independent_ips"] = refused | {"estimator": "slate_independent_ips"}
        results["slate_cascade_ips"] = cascade_ips(r, _pad(c.log_prefix, big_k, 1.0), _pad(c.tgt_prefix, big_k, 1.0), unsupported_mass=unsupported, **common).to_dict()
    else:
        results["slate_independent_ips"] = independent_ips(r, _pad(c.log_marg, big_k, 1.0), _pad(c.tgt_marg, big_k, 1.0), unsupported_mass=unsupported, **common).to_dict()
        results["slate_cascade_ips"] = cascade_ips(r, _pad(c.log_prefix, big_k, 1.0), _pad(c.tgt_prefix, big_k, 1.0), unsupported_mass=unsupported, **common).to_dict()
    results["slate_pseudo_inverse"] = _pseudo_inverse(c, total, common)
    results.update(_single_action(c, r[:, 0] if n else np.zeros(0), common))
    return _refuse_beyond_pool(c, results, keep=("logged_policy",))


def _refuse_beyond_pool(c: _Contexts, results: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """``results`` with every estimate of the target (all but ``keep``) refused when the target's pool exceeds the
    logged pool (:meth:`_Contexts.pool_refusal`); the figures computed on the logged pool would describe another policy."""
    reason = c.pool_refusal()
    if reason is None:
        return results
    out = dict(results)
    for name, est in results.items():
        if name not in keep and isinstance(est, dict):
            out[name] = est | {"value": None, "ci_low": None, "ci_high": None, "refused": True, "reason": reason}
    return out


def _pseudo_inverse(c: _Contexts, total: np.ndarray, common: dict[str, Any]) -> dict[str, Any]:
    if c.pi_parts is None or c.marg_refusal or len(c.pi_parts) != len(c.ids):
        return {"estimator": "slate_pseudo_inverse", "refused": True, "value": None, "reason": c.pi_refusal or c.marg_refusal or "no lists"}
    if not c.pi_parts:
        return pseudo_inverse(total, np.zeros((0, 1)), np.zeros((0, 1, 1)), np.zeros((0, 1)), **common).to_dict()
    d = max(p[0].shape[0] for p in c.pi_parts)
    n = len(c.pi_parts)
    gamma, q, ind = np.zeros((n, d, d)), np.zeros((n, d)), np.zeros((n, d))
    for i, (g, qi, si) in enumerate(c.pi_parts):  # lists of other sizes padded with empty cells
        gamma[i, : len(qi), : len(qi)], q[i, : len(qi)], ind[i, : len(qi)] = g, qi, si
    return pseudo_inverse(total, ind, gamma, q, **common).to_dict()


def _single_action(c: _Contexts, first: np.ndarray, common: dict[str, Any]) -> dict[str, Any]:
    n = len(c.ids)
    width = max((len(p) for p in c.first_items), default=1)  # no list: every estimator is refused, as the slate ones are
    mu, pi = _pad(c.first_log, width, 0.0), _pad(c.first_tgt, width, 0.0)
    codes: dict[str, int] = {}
    cand = np.full((n, width), -1, dtype=np.int64)
    for i, items in enumerate(c.first_items):
        cand[i, : len(items)] = [codes.setdefault(item, len(codes)) for item in items]
    actions = np.array(c.first_action, dtype=np.int64)
    q = item_mean_rewards(cand, actions, first, mask=cand >= 0)
    view = {"view": "first position"}
    return {
        "ips": ips(actions, first, mu, pi, **common).to_dict() | view,
        "snips": snips(actions, first, mu, pi, **common).to_dict() | view,
        "dm": direct_method(actions, first, mu, pi, q, **common).to_dict() | view,
        "dr": doubly_robust(actions, first, mu, pi, q, **common).to_dict() | view,
    }


DIFFERENCE_ESTIMATORS = ("slate_standard_ips", "slate_independent_ips", "slate_cascade_ips")
"""The estimators whose difference to the logged policy is reported: linear in per-list terms, so the difference
is one mean over lists and its interval a paired bootstrap over the same resampled lists."""
ATTENTION = "1/log2(position + 1)"
"""The attention a position gets in the exposure figures (position 1 gets 1), as in DCG."""


def _paired(estimator: str, target: Any, num: np.ndarray, logged: np.ndarray, s: OpeSettings) -> dict[str, Any]:
    """``target - logged`` per list: the estimate of what changes, with a paired bootstrap interval (same lists resampled
    for both terms, so their covariance counts). Refused with the target's reason when the target's estimate is."""
    from recommender.ope._common import bootstrap_ratio

    base = {"estimator": estimator, "of": "target - logged_policy", "confidence": s.confidence, "n": int(len(num)), "n_bootstrap": s.n_bootstrap, "seed": s.seed}
    if target.refused:
        return base | {"value": None, "ci_low": None, "ci_high": None, "refused": True, "reason": target.reason}
    diff = num - logged
    low, high = bootstrap_ratio(diff, None, n_bootstrap=s.n_bootstrap, seed=s.seed, confidence=s.confidence)
    return base | {"value": float(diff.mean()), "ci_low": low, "ci_high": high, "refused": False, "reason": None}


def _weights(c: _Contexts, big_k: int) -> dict[str, np.ndarray | None]:
    """Per-list (standard) and per-position (independent, cascade) importance weights ``target / logged``."""
    lp, tp = np.asarray(c.log_prob, dtype=float), np.asarray(c.tgt_prob, dtype=float)
    out: dict[str, np.ndarray | None] = {"slate_standard_ips": np.divide(tp, lp, out=np.zeros_like(tp), where=lp > 0)}
    lpre, tpre = _pad(c.log_prefix, big_k, 1.0), _pad(c.tgt_prefix, big_k, 1.0)
    out["slate_cascade_ips"] = np.divide(tpre, lpre, out=np.zeros_like(tpre), where=lpre > 0)
    if c.marg_refusal:
        out["slate_independent_ips"] = None
    else:
        lm, tm = _pad(c.log_marg, big_k, 1.0), _pad(c.tgt_marg, big_k, 1.0)
        out["slate_independent_ips"] = np.divide(tm, lm, out=np.zeros_like(tm), where=lm > 0)
    return out


def _differences(c: _Contexts, rewards: np.ndarray, big_k: int, s: OpeSettings) -> dict[str, Any]:
    """Each linear slate estimator's ``target - logged`` mean reward per list, with its paired interval."""
    common = {"min_ess": s.min_ess, "n_bootstrap": 0, "seed": s.seed, "confidence": s.confidence}
    r = np.nan_to_num(rewards, nan=0.0)
    total = r.sum(axis=1)
    unsupported = np.array(c.unsupported)
    w = _weights(c, big_k)
    out: dict[str, Any] = {}
    target = standard_ips(total, c.log_prob, c.tgt_prob, unsupported_mass=unsupported, **common)
    out["slate_standard_ips"] = _paired("slate_standard_ips", target, w["slate_standard_ips"] * total, total, s)
    lpre, tpre = _pad(c.log_prefix, big_k, 1.0), _pad(c.tgt_prefix, big_k, 1.0)
    target = cascade_ips(r, lpre, tpre, unsupported_mass=unsupported, **common)
    out["slate_cascade_ips"] = _paired("slate_cascade_ips", target, (w["slate_cascade_ips"] * r).sum(axis=1), total, s)
    if w["slate_independent_ips"] is None:
        out["slate_independent_ips"] = {"estimator": "slate_independent_ips", "value": None, "refused": True, "reason": c.marg_refusal}
    else:
        lm, tm = _pad(c.log_marg, big_k, 1.0), _pad(c.tgt_marg, big_k, 1.0)
        target = independent_ips(r, lm, tm, unsupported_mass=unsupported, **common)
        out["slate_independent_ips"] = _paired("slate_independent_ips", target, (w["slate_independent_ips"] * r).sum(axis=1), total, s)
    return _refuse_beyond_pool(c, out)


def _exposure(c: _Contexts, big_k: int, s: OpeSettings) -> dict[str, Any]:
    """Each provider group's share of the lists' attention (:data:`ATTENTION`, normalised per list): in the logged
    lists, under the target (item-position IPS over the logged lists: exposure is a sum over (item, position)
    cells, which is the independent estimator's model exactly), and the paired difference."""
    common = {"min_ess": s.min_ess, "n_bootstrap": s.n_bootstrap, "seed": s.seed, "confidence": s.confidence}
    n = len(c.ids)
    attention = 1.0 / np.log2(np.arange(big_k) + 2.0)
    unsupported = np.array(c.unsupported)
    lengths = np.array(c.k, dtype=np.int64)
    filled = np.arange(big_k)[None, :] < lengths[:, None]
    per_list = np.where(filled, attention[None, :], 0.0)
    per_list = per_list / np.maximum(per_list.sum(axis=1, keepdims=True), 1e-300)
    w = _weights(c, big_k)["slate_independent_ips"]
    out: dict[str, Any] = {"attention": ATTENTION, "groups": {}}
    for name, items in sorted((s.provider_groups or {}).items()):
        member = _pad([np.array([item in items for item in shown], dtype=float) for shown in c.shown], big_k, 0.0) if n else np.zeros((0, big_k))
        share = per_list * member
        logged_share = share.sum(axis=1)
        logged = standard_ips(logged_share, np.ones(n), np.ones(n), unsupported_mass=0.0, **{**common, "min_ess": 0.0}).to_dict() | {"estimator": "on_policy_mean"}
        if w is None:
            refused = {"estimator": "slate_independent_ips", "value": None, "refused": True, "reason": c.marg_refusal}
            out["groups"][name] = {"items": len(items), "logged_policy": logged, "target": refused, "difference": refused}
            continue
        lm, tm = _pad(c.log_marg, big_k, 1.0), _pad(c.tgt_marg, big_k, 1.0)
        target = independent_ips(share, lm, tm, unsupported_mass=unsupported, **common)
        out["groups"][name] = {
            "items": len(items),
            "logged_policy": logged,
            "target": target.to_dict(),
            "difference": _paired("slate_independent_ips", target, (w * share).sum(axis=1), logged_share, s),
        }
    out["groups"] = {name: _refuse_beyond_pool(c, figs, keep=("items", "logged_policy")) for name, figs in out["groups"].items()}
    return out


OFF_POLICY_CHECKS = ("off_policy_non_inferiority", "off_policy_exposure")
"""The checks judged on an off-policy report (:mod:`governance.checks.off_policy`)."""


def _figure(est: dict[str, Any] | None) -> dict[str, Any] | None:
    if est is None:
        return None
    ci = None if est.get("ci_low") is None or est.get("ci_high") is None else (est["ci_low"], est["ci_high"])
    return {"value": est.get("value"), "ci": ci, "refused": bool(est.get("refused")), "reason": est.get("reason")}


def off_policy_facts(report: dict[str, Any]) -> Any:
    """The :class:`~governance.facts.OffPolicyFacts` of a report of :func:`evaluate_from_log`."""
    from governance.facts import OffPolicyFacts

    def name(stamp: dict[str, str]) -> str:
        return f"{stamp['pack']} {stamp['pack_version']}"

    groups = (report.get("exposure") or {}).get("groups", {})
    return OffPolicyFacts(
        logged_pack=name(report["logged_pack"]),
        target_pack=name(report["target_pack"]),
        decisions_used=report["decisions_used"],
        confidence=report["settings"]["confidence"],
        logged={kind: _figure(m.get("logged_policy")) for kind, m in report["metrics"].items()},
        differences={kind: {e: _figure(d) for e, d in ests.items()} for kind, ests in report.get("differences", {}).items()},
        exposure={g: {part: _figure(fig) for part, fig in figs.items() if isinstance(fig, dict)} for g, figs in groups.items()},
    )


def off_policy_gate(target: LoadedPack, report: dict[str, Any]) -> dict[str, Any] | None:
    """The candidate pack's off-policy rules judged on ``report``, and the gate's decision on them (None: the pack has none).

    Only the off-policy rules run (the audit's other facts are not here), and only those of
    ``gate.required_rules`` are required; a refused estimate fails its rule (missing evidence).
    """
    from governance.engine import evaluate as run_rules
    from governance.facts import AuditFacts
    from governance.gate import decide

    if not any(rule.check in OFF_POLICY_CHECKS for _, rule in target.pack.rules()):
        return None
    audit = run_rules(target, AuditFacts(off_policy=off_policy_facts(report)))
    results = [r for r in audit.results if r.check in OFF_POLICY_CHECKS]
    ids = {r.rule_id for r in results}
    gate = target.pack.gate.model_copy(update={"required_rules": [r for r in target.pack.gate.required_rules if r in ids]})
    decision = decide(audit.model_copy(update={"results": results}), gate)
    return {"decision": decision.model_dump(mode="json"), "results": [r.model_dump(mode="json") for r in results]}


NO_OFF_POLICY_RULE = (
    "pack {pack} declares no off-policy rule ({checks}): the logged pack given to the audit would judge nothing; "
    "leave the option out, or add such a rule"
)


def audit_off_policy(
    store: Any, logged: LoadedPack, target: LoadedPack, *, provider_groups: dict[str, frozenset[str]] | None = None,
    n_bootstrap: int = 1000, seed: int = 0,
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """The off-policy facts an audit (``recgov audit|gate``) judges ``target``'s off-policy rules on, and a summary.

    The logged data are the store's decision log under ``logged`` (with the outcomes joined to it); the
    outcome kinds are those the rules name. Raises ConfigError when ``target`` has no off-policy rule
    (a logged pack given for nothing is a usage error) or when the log cannot be read for it
    (:func:`evaluate_from_log`: no analytics purpose, a different re-ranking). The summary names the packs,
    the lists used and the exclusions with their counts, never a subject.
    """
    rules = [rule for _, rule in target.pack.rules() if rule.check in OFF_POLICY_CHECKS]
    if not rules:
        raise ConfigError(NO_OFF_POLICY_RULE.format(pack=f"{target.name} {target.version}", checks=", ".join(OFF_POLICY_CHECKS)))
    kinds = tuple(dict.fromkeys(rule.params.outcome for rule in rules if rule.check == "off_policy_non_inferiority")) or ("click",)
    settings = OpeSettings(kinds=kinds, n_bootstrap=n_bootstrap, seed=seed, provider_groups=provider_groups or None)
    report = evaluate_from_log(store, logged, target, settings)
    summary = {
        "logged_pack": report["logged_pack"], "decisions_read": report["decisions_read"], "decisions_used": report["decisions_used"],
        "excluded": report["excluded"], "subjects_excluded_for_consent": report["subjects_excluded_for_consent"], "kinds": list(kinds),
        "provider_groups": sorted(provider_groups or {}),
    }  # fmt: skip
    return off_policy_facts(report), summary
