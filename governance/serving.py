"""The governed request path: one function serves one request, in the order the rules require.

1. **Erasure, consent and minimization** decide what may be read: a subject who may not be
   profiled gets the non-profiling ranking (DSA Art. 38: popularity within the
   request's context) and their history is not read at all. A subject erased
   after the model read its training data is never profiled by it, whatever
   their consent says since (:func:`erasure_decision`, :mod:`governance.suppressed`).
   A provisional unlearned model (an erasure's stand-in until its full retrain)
   whose retrain is overdue profiles nobody (:func:`standing_decision`).
2. The **model** proposes candidates (seen items filtered); an unknown user gets
   the popularity fallback, tagged as such.
3. **Harmful items** are removed: every item of a blocked category (or of a harm
   category the pack does not know, :mod:`governance.harm_vocabulary`), and every
   item blocked by an escalation case, never reaches a list.
4. The pack's **re-rankers** run on the candidates.
5. **Tags** say why each item is there: the exact ALS decomposition for model
   items, the re-ranker's reason for moved items, the fallback's reason otherwise.
6. The **decision record** (decision id, pack revision, model version, the slate
   with tags, time) goes to the decision sink before the list is returned; if it
   cannot be written, nothing is served (fail closed).

The record is built once, here, as an :class:`audits.decision_record.Decision`: the
decision log validates, seals and stores exactly that object, and the served
list the caller gets (:class:`ServedList`) holds the same item, score and tag
lists. Tags are made from :class:`~governance.explain.TagKind` and re-ranking
moves read by :class:`~governance.rerank.Reason` (:data:`REASON_TAGS`); the
record carries their values, since the store sits below governance and only
encodes what it is given.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, NamedTuple, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from audits.decision_record import Decision
from governance.availability import AvailabilityMasks, combine
from governance.consent.state import ConsentRecord, ProfilingDecision, may_profile
from governance.consent.tcf import decode_tc_string
from governance.family_inputs import refuse_banned_item_columns
from governance.explain import TAG_TEXT, Tag, TagKind, explain_als_list, regularized_gram
from governance.harm_vocabulary import items_kept_out
from governance.ope_logging import DETERMINISTIC, LoggingHook, decision_seed, explored
from governance.policy import LoadedPack
from governance.rerank.candidates import Reason
from governance.suppressed import PROVISIONAL, TRAINED, ModelStanding
from recommender.als import ALSRecommender, blas_single_thread
from recommender.errors import ConfigError

_log = logging.getLogger(__name__)

__all__ = [
    "ERASED_HISTORY",
    "RETRAIN_OVERDUE",
    "PersonalizedList",
    "ServeRequest",
    "ServedList",
    "DecisionSink",
    "ServingEngine",
    "REASON_TAGS",
    "erasure_decision",
    "standing_decision",
]

REASON_TAGS: dict[Reason, TagKind] = {
    Reason.diversity: TagKind.diversity,
    Reason.provider_fairness: TagKind.under_exposed_provider,
    Reason.calibration: TagKind.calibration,
    Reason.popularity_debias: TagKind.long_tail,
    Reason.exposure_cap: TagKind.exposure_cap,
    Reason.exploration: TagKind.exploration,
    Reason.provider_calibration: TagKind.provider_calibration,
}
"""The explanation tag of each re-ranking move (an item in model order, ``Reason.model``, gets none).

``Reason`` is an ``IntEnum``: the pipeline's move codes (small integers in an array) look it up directly."""

PROTECTED_CODE = 1
"""The re-rankers' group code of the pack's protected provider group (``fairness.provider_group_codes`` keeps it 1)."""
_BALANCED = 100
"""The tag code of an item a provider-fairness step promoted although its group is not the protected one: a
multi-group step (``group_proportions``, ``exposure_targets``, ``amortised_exposure``) also lifts a major label's
item when the list holds less of that group than its target. Its tag says so; "from an under-exposed provider"
would claim of the over-exposed group what the data does not show."""
_TAG_OF: dict[int, TagKind] = {**{int(code): kind for code, kind in REASON_TAGS.items()}, _BALANCED: TagKind.provider_balance}
"""The tag of each move code of a served list: :data:`REASON_TAGS`, and :data:`_BALANCED`."""


class DecisionSink(Protocol):
    """Where decision records go; ``submit_and_wait`` returns once the record is durable."""

    def submit_and_wait(self, record: Decision, timeout: float = ...) -> Any: ...


class PersonalizedList(NamedTuple):
    """The model's part of a personalized list (:meth:`Personalizer.personalize`)."""

    items: np.ndarray
    """Model rows of the items, in served order."""
    scores: list[float | None]
    """Their scores, rounded to 6 decimals."""
    tags: list[list[dict[str, Any]]]
    """Their explanation tags, as JSON objects."""


_FLOAT32_MIN = np.finfo(np.float32).min
"""What implicit scores a filtered item with."""


@dataclass(frozen=True)
class ServeRequest:
    """One request for a list."""

    subject_id: str
    k: int = 10
    consent: tuple[ConsentRecord, ...] = ()
    """The subject's consent records (the caller reads them from the ledger)."""
    gpc: bool = False
    """The request carried ``Sec-GPC: 1``."""
    tcf: str | None = None
    """An IAB TCF v2.2 TC string sent with the request."""
    context: Mapping[str, Any] = field(default_factory=dict)
    """Free context; ``category`` restricts every list to items of that category."""
    erasure_seq: int | None = None
    """The trail sequence number of the subject's latest erasure (the caller reads it with
    :func:`governance.suppressed.erasure_seq`), None if they were never erased."""
    experiment: Mapping[str, Any] | None = None
    """The subject's experiment assignment ``{"id", "variant", "reason"}`` (:mod:`governance.experiments.assign`),
    recorded in the decision's context; None outside an experiment."""
    online_stamp: Any = None
    """The subject's online-store epochs (:class:`audits.online_store.Stamp`) read *before* ``consent`` was:
    a list cached for this request is written only if they still hold (None: read when the list is looked up)."""


@dataclass(frozen=True)
class ServedList:
    """What was served, and why."""

    decision_id: str
    mode: str
    """``personalized``, ``fallback`` (unknown user) or ``non_profiling`` (no lawful basis to profile)."""
    items: list[str]
    scores: list[float | None]
    tags: list[list[dict[str, Any]]]
    pack: dict[str, str]
    model_version: str | None
    consent_reason: str
    decided_at: str
    blocked_removed: int
    model_standing: str | None = None
    """``trained``, ``provisional`` (an unlearned stand-in until its full retrain) or ``replaced``; None: not read."""
    retrain_request: int | None = None
    """For an unlearned model: the retrain request that replaces it."""
    list_source: str | None = None
    """``online_store``: the model's part came from the online store's cached list; None: made for this request."""

    def item_dicts(self) -> list[dict[str, Any]]:
        """The served items as JSON objects (``item_id``, ``score``, ``tags``), in order."""
        return [{"item_id": item, "score": score, "tags": tags} for item, score, tags in zip(self.items, self.scores, self.tags, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "decision_id": self.decision_id,
            "mode": self.mode,
            "items": self.item_dicts(),
            **self.pack,
            "model_version": self.model_version,
            "consent": self.consent_reason,
            "decided_at": self.decided_at,
            "blocked_removed": self.blocked_removed,
            "model_standing": self.model_standing,
            "retrain_request": self.retrain_request,
        }


@dataclass(frozen=True)
class ServePlan:
    """A request between :meth:`ServingEngine.begin` and :meth:`ServingEngine.finish`."""

    request: ServeRequest
    now: datetime
    decision: ProfilingDecision
    allowed: np.ndarray | None
    """The items the request's context admits (None: all)."""
    row: int
    """The subject's model row (-1: unknown, or not to be profiled)."""
    mode: str
    """``personalized``, ``fallback`` or ``non_profiling``."""
    personalizer: Personalizer
    """The engine's model part when the plan was made: a list made elsewhere is made with it."""
    length: int | None = None
    """How long the governed list is made (the pack's logging policy draws ``k`` from a longer one); None: ``k``."""
    started: float | None = None
    """:func:`time.perf_counter` when the list's work began: its record's ``latency_ms`` is measured from it."""


ERASED_HISTORY = (
    "not profiled: the subject was erased (GDPR Art. 17) after model {model} read its training data, so its factors "
    "may hold their erased history; non-profiling list (a model trained after the erasure serves what they did since)"
)


def erasure_decision(erasure_seq: int | None, erasures_seen: int | None, model_version: str | None) -> ProfilingDecision | None:
    """The decision for an erased subject whose erased history the model may hold, or None to decide on consent.

    ``erasure_seq``: the trail event of the subject's latest erasure (None: never erased);
    ``erasures_seen``: up to which trail event erasures were left out of the model's data
    (None: unknown). Consent cannot lift this: a grant after an erasure starts a new
    history, it does not revive the factors learned from the old one.
    """
    if erasure_seq is None or (erasures_seen is not None and erasure_seq <= erasures_seen):
        return None
    return ProfilingDecision(
        allowed=False, reason=ERASED_HISTORY.format(model=model_version), purpose="personalization", legal_reference="GDPR Art. 17"
    )


RETRAIN_OVERDUE = (
    "not profiled: model {model} is a provisional unlearned model (an erasure's stand-in) and the full retrain that "
    "replaces it (retrain request #{request}) was due by {deadline}; nobody is profiled by it until that retrain "
    "replaces it: recgov retrain run DATA --pack {pack}, then serve the new version"
)
RETRAIN_OVERDUE_TRAINED = (
    "not profiled: model {model} was trained on data of a subject since erased, and the full retrain that replaces "
    "it (retrain request #{request}) was due by {deadline}; nobody is profiled by it until that retrain replaces it "
    "or it is retired: recgov retrain due names the pack, recgov retrain run DATA --pack PACK, then serve the new version"
)
STANDING_RECHECK_S = 30.0
"""Seconds between re-reads of a model's standing (a retirement, or a retrain that lifts an overdue block, since)."""


RETIRED_MODEL = (
    "not profiled: model {model} is retired (never served again); serve what is deployed (recgov deploy status)"
)


def standing_decision(standing: ModelStanding | None, now: datetime, pack: str) -> ProfilingDecision | None:
    """The decision for everyone when the model is retired, or a provisional unlearned one whose retrain is overdue;
    else None."""
    if standing is not None and standing.retired:
        return ProfilingDecision(
            allowed=False, reason=RETIRED_MODEL.format(model=standing.model_version), purpose="personalization", legal_reference=None
        )
    if standing is None or not standing.overdue(now):
        return None
    text = RETRAIN_OVERDUE if standing.standing == PROVISIONAL else RETRAIN_OVERDUE_TRAINED
    reason = text.format(model=standing.model_version, request=standing.retrain_request, deadline=standing.deadline.isoformat(), pack=pack)
    return ProfilingDecision(allowed=False, reason=reason, purpose="personalization", legal_reference="GDPR Art. 17")


_FIXED_TAGS: dict[TagKind, dict[str, Any]] = {kind: Tag(kind, TAG_TEXT[kind]).to_dict() for kind in TagKind}


def _tag(kind: TagKind) -> dict[str, Any]:
    """A fresh dict of a tag without items (a copy: callers may add to it)."""
    return dict(_FIXED_TAGS[kind])


class ServingEngine:
    """Serves governed lists for one pack and one model version.

    Parameters
    ----------
    loaded:
        The policy pack in force (its revision is stamped on every decision).
    model:
        The fitted ALS model.
    items:
        Item metadata (``provider_group``, ``categories``, ``flags``), indexed by item id.
    blocked:
        Item ids blocked by escalation cases (refresh with :meth:`set_blocked`).
    sink:
        The decision log. ``None`` records nothing: only for tests and
        benchmarks of the path itself; every command and the service pass one.
    pseudonymize:
        Maps a raw subject id to its pseudonym for the decision record.
    vendor_id:
        The IAB TCF vendor id whose consent a TC string must carry.
    erasures_seen:
        Up to which trail sequence number erasures were left out of the model's
        training data (:func:`governance.suppressed.erasures_seen`). A subject
        erased after it (or, when None, erased at all) may be in the model's
        factors with their erased history: they get the non-profiling list.
    """

    def __init__(
        self,
        loaded: LoadedPack,
        model: ALSRecommender,
        items: pd.DataFrame | None = None,
        *,
        blocked: Iterable[str] = (),
        sink: DecisionSink | None = None,
        pseudonymize: Callable[[str], str] | None = None,
        vendor_id: int | None = None,
        on_failure: Callable[[str, dict[str, Any]], None] | None = None,
        erasures_seen: int | None = None,
        standing: ModelStanding | None = None,
        reread_standing: Callable[[], ModelStanding] | None = None,
        unavailable: Any | None = None,
        exposure_store: Any = None,
    ) -> None:
        model.check_fitted("serve")
        # item categories read from a forbidden column reach the lists whatever the model reads: no engine is made
        refuse_banned_item_columns(loaded, items.attrs.get("columns_from") if items is not None else None)
        self.loaded = loaded
        self.model = model
        self.erasures_seen = erasures_seen
        self.standing = standing
        self._reread_standing = reread_standing
        self._standing_read_at = time.monotonic()
        self._standing_lock = threading.Lock()
        self.sink = sink
        self.pseudonymize = pseudonymize
        self.vendor_id = vendor_id
        self.on_failure = on_failure
        pack = loaded.pack
        ids = pd.Index(model.train_.item_ids.astype(str))
        self._item_ids = np.asarray(ids, dtype=object)
        self._gram = self._explanation_gram(model)
        meta = items.reindex(ids) if items is not None and len(items) else pd.DataFrame(index=ids)
        flags = meta["flags"].fillna("").astype(str) if "flags" in meta else pd.Series("", index=ids)
        # A blocked category, or one the pack does not know (never a flag that blocks nothing), stays out of lists.
        self._category_blocked = items_kept_out(pack, flags)
        self._categories = meta["categories"].fillna("").astype(str).to_numpy() if "categories" in meta else np.full(len(ids), "", dtype=object)
        self._popularity_order = np.argsort(-model.popularity_, kind="stable")
        self._pipeline = None
        self._catalog = None
        self._candidates = pack.reranking.candidates
        self._logging = LoggingHook.from_section(pack.logging_policy)
        if pack.reranking.enabled and pack.reranking.steps:
            from governance.rerank import CheckedCatalog, build_pipeline
            from governance.rerank.groups import provider_codes
            from recommender.metrics import item_category_matrix

            self._pipeline = build_pipeline([{"name": s.name, "params": s.params.model_dump()} for s in pack.reranking.steps])
            provider = pack.fairness.provider_attribute or "provider_group"
            groups = meta[provider].astype("string") if provider in meta else pd.Series(pd.NA, index=ids, dtype="string")
            protected = pack.fairness.protected_provider_group
            side = {
                "item_group": provider_codes(groups, protected, pack.fairness.provider_group_codes),
                "item_popularity": model.popularity_.astype(np.float64),
                "item_categories": item_category_matrix(list(self._categories)),
            }
            self._catalog = CheckedCatalog.check(**side)  # checked once, not per request
        from governance.exposure_state import ExposureState

        # amortised steps' exposure ledgers: loaded from exposure_store, saved behind the requests and by close_exposure_state
        self.exposure_state = ExposureState.attach(self._pipeline, exposure_store, loaded.name, model.version_id_, pack=loaded.pack)
        self.set_blocked(blocked)
        self.set_availability(unavailable)
        self.list_cache: Any | None = None
        """The online store's cached lists (a :class:`governance.online_store.ListCache`), read and written for
        personalized lists when set; None: every list is made here."""

    def set_blocked(self, item_ids: Iterable[str]) -> None:
        """Replace the set of items blocked by escalation cases (takes effect at the next request)."""
        mask = self._category_blocked.copy()
        idx = pd.Index(self._item_ids).get_indexer(list(map(str, item_ids)))
        mask[idx[idx >= 0]] = True
        self._blocked = mask
        self._blocked_count = int(mask.sum())
        self.personalizer = self.personalizer_class(
            self.model, self._gram, self._item_ids, self._pipeline, self._catalog, self._candidates, np.flatnonzero(mask)
        )

    personalizer_class: type[Personalizer]
    """The model's part of a list (:class:`Personalizer` for ALS; another family's engine gives its own)."""

    @staticmethod
    def _explanation_gram(model: Any) -> np.ndarray | None:
        """Y^T Y + lambda I, the user-independent part of every ALS list's explanation system (once per engine)."""
        factors = model.item_factors_.astype(np.float64)
        return regularized_gram(factors.T @ factors, model.regularization)

    def set_availability(self, unavailable: Any | None) -> None:
        """Replace what is unavailable (an :class:`audits.availability.Unavailable`, None: nothing): items out of
        stock or withdrawn, everywhere or in the region a request's context names (takes effect at the next request)."""
        self._available = AvailabilityMasks.of(self._item_ids, unavailable)

    # -- the path ---------------------------------------------------------------
    def decide_consent(self, request: ServeRequest) -> ProfilingDecision:
        """May this request's subject be profiled for personalization?"""
        tcf = decode_tc_string(request.tcf) if request.tcf else None
        if tcf is not None and self.vendor_id is None and self.loaded.pack.consent.tcf_requirements().vendor_id is None:
            raise ConfigError("a TCF string was sent but no TCF vendor id is configured for this service (nor in the pack's consent.tcf.vendor_id)")
        return may_profile(
            self.loaded.pack.consent, list(request.consent), purpose="personalization", gpc=request.gpc, tcf=tcf, vendor_id=self.vendor_id
        )

    def _standing_now(self, now: datetime) -> ModelStanding | None:
        """The standing to serve with: re-read (rarely, see ``reread_standing``) while the model is not retired, so that
        a retirement, or a retrain that lifts an overdue block, reaches an engine already open."""
        standing = self.standing
        if standing is None or self._reread_standing is None or standing.retired:
            return standing
        if time.monotonic() - self._standing_read_at < STANDING_RECHECK_S or not self._standing_lock.acquire(blocking=False):
            return standing
        try:
            self.standing = standing = self._reread_standing()
        except Exception as err:  # noqa: BLE001 - a failed re-read keeps the stricter standing already held
            _log.warning("model %s: re-reading its standing failed (%s); it stays overdue", standing.model_version, type(err).__name__)
        finally:
            self._standing_read_at = time.monotonic()
            self._standing_lock.release()
        return standing

    def _context_mask(self, context: Mapping[str, Any]) -> np.ndarray | None:
        category = context.get("category")
        if not category:
            return None
        return np.array([str(category) in c.split("|") for c in self._categories], dtype=bool)

    def _popular(self, k: int, allowed: np.ndarray | None) -> np.ndarray:
        order = self._popularity_order
        keep = ~self._blocked[order]
        if allowed is not None:
            keep &= allowed[order]
        return order[keep][:k]

    def serve(self, request: ServeRequest, *, shadow_of: str | None = None, report_failures: bool = True) -> ServedList:
        """Serve one governed list (see the module docstring for the steps).

        A request that fails is reported to ``on_failure`` with its cause (the
        subject id scrubbed from the message) before the error propagates.

        ``shadow_of``: this engine runs a shadow deployment and the request was
        served by the decision of that id; the list is made and recorded the
        same way (its record's context says ``served: false`` and names that
        decision) and must not be shown (see :mod:`governance.shadow`).

        ``report_failures=False``: the caller reports a failure itself
        (:meth:`report_failure`), e.g. from where a store write may block.
        """
        plans: list[ServePlan] = []
        try:
            if shadow_of is None:
                return self._serve(request, shadow_of, plans)
            from governance.rerank.amortised import unserved_lists

            with unserved_lists():  # a shadow list is never shown: it pays no exposure debt of the served lists
                return self._serve(request, shadow_of, plans)
        except Exception as err:
            if report_failures:
                self.report_failure(request, err, mode=plans[0].mode if plans else None, shadow_of=shadow_of)
            raise

    def report_failure(self, request: ServeRequest, err: BaseException, *, mode: str | None = None, shadow_of: str | None = None) -> None:
        """Report a failed request to ``on_failure``: its cause, the subject id scrubbed from the message.

        :meth:`serve` calls it for its own failures; a caller that waits for the
        decision's commit itself (a sink that defers it) calls it when the commit
        fails. It never raises: the request's own error is the one to raise.

        ``mode``: how the request's list was being made (``personalized``, ``fallback``, ``non_profiling``),
        when the failure came after that was decided; otherwise it is decided here again, and left out if that
        fails too. The record keeps the mode, never the subject: an experiment's error rate within a segment
        (subjects the model knows, or new ones) counts the failures of that segment's requests.
        ``shadow_of``: the request was a shadow deployment's copy (its failure is no failure of a served list).
        """
        if self.on_failure is None:
            return
        message = str(err).replace(str(request.subject_id), "<subject>") if request.subject_id else str(err)
        detail: dict[str, Any] = {
            "message": message[:1000],
            "k": request.k,
            "gpc": request.gpc,
            "tcf": request.tcf is not None,
            "context": sorted(request.context),
        }
        if mode is None:
            try:
                mode = self._decide(request, datetime.now(timezone.utc))[2]
            except Exception:  # noqa: BLE001 - what failed may be what decides the mode: the record then has none
                mode = None
        if mode is not None:
            detail["mode"] = mode
        if shadow_of is not None:
            detail["shadow"] = True
        if request.experiment is not None:  # the arm's error rate is an experiment guardrail (no subject id: the arm only)
            detail["experiment"] = {k: request.experiment.get(k) for k in ("id", "variant", "reason")}
        try:
            self.on_failure(f"serve.{type(err).__name__}"[:100], detail)
        except Exception:  # noqa: BLE001 - the original error is the one to raise
            pass

    def _serve(self, request: ServeRequest, shadow_of: str | None, plans: list[ServePlan]) -> ServedList:
        plans.append(self.begin(request))  # kept for a failure's report: how the list was being made
        return self.finish(plans[0], shadow_of=shadow_of)

    def begin(self, request: ServeRequest, *, started: float | None = None) -> ServePlan:
        """The request's consent decision and what its list will be made of (steps 1 and 2).

        :meth:`finish` makes the list and records it; between the two a caller may have
        :attr:`personalizer` run elsewhere (the service's compute process) for a personalized plan.

        ``started``: :func:`time.perf_counter` when the caller began the list's work (e.g. reading the
        request), so the record's ``latency_ms`` covers it; None: now.
        """
        started = time.perf_counter() if started is None else started
        if not isinstance(request.k, int) or request.k < 1:
            raise ConfigError(f"The 'k' parameter of serve must be an int in the range [1, inf). Got {request.k!r} instead.")
        now = datetime.now(timezone.utc)
        decision, row, mode = self._decide(request, now)
        length = self._logging.length(request.k) if self._logging is not None and mode == "personalized" else request.k
        allowed = combine(self._context_mask(request.context), self._available.allowed(request.context))
        return ServePlan(request, now, decision, allowed, row, mode, self.personalizer, length, started)

    def _decide(self, request: ServeRequest, now: datetime) -> tuple[ProfilingDecision, int, str]:
        """The request's consent decision, the subject's model row (-1: none to personalize from) and the list's mode."""
        decision = (
            erasure_decision(request.erasure_seq, self.erasures_seen, self.model.version_id_)
            or standing_decision(self._standing_now(now), now, self.loaded.name)
            or self.decide_consent(request)
        )
        row = int(self.model.train_.user_index(str(request.subject_id))[0]) if decision.allowed else -1
        if row >= 0:  # a known subject whose every interaction was removed has no history to personalize from
            indptr = self.model.train_.matrix.indptr
            row = row if indptr[row + 1] > indptr[row] else -1
        mode = "non_profiling" if not decision.allowed else ("fallback" if row < 0 else "personalized")
        return decision, row, mode

    def finish(self, plan: ServePlan, personalized: PersonalizedList | None = None, *, shadow_of: str | None = None) -> ServedList:
        """Make the plan's list (``personalized``: what ``plan.personalizer`` gave for it elsewhere,
        or None to run it here; it is made here again if the blocks changed since :meth:`begin`),
        record the decision and return the list (steps 3 to 6)."""
        request, now, decision, allowed, row, mode = plan.request, plan.now, plan.decision, plan.allowed, plan.row, plan.mode
        k = request.k
        model = self.model
        source = None
        if mode == "non_profiling":
            items = self._popular(k, allowed)
            scores = [None] * len(items)
            tags = [[_tag(TagKind.not_personalized), _tag(TagKind.popular_in_context)] for _ in items]
        elif mode == "fallback":
            items = self._popular(k, allowed)
            scores = [None] * len(items)
            tags = [[_tag(TagKind.popular_in_context)] for _ in items]
        else:
            if personalized is None or plan.personalizer is not self.personalizer:  # none given, or the blocks changed since
                personalized, source = self._personalized(plan)
            items, scores, tags = personalized
        stamp = self.loaded.stamp()
        standing = self.standing
        decision_uuid = uuid.uuid4()
        decision_id = str(decision_uuid)
        served_items = self._item_ids[np.asarray(items, dtype=np.int64)].tolist()  # the ids are str already
        slate: dict[str, Any] = {"items": served_items, "scores": scores, "tags": tags}
        if self._logging is not None:
            if mode == "personalized":
                # The pack's logging policy draws the k served items from the governed list (see governance.ope_logging).
                picks, drawn = self._logging.draw(served_items, scores, tags, k, decision_id, seed=decision_seed(decision_uuid))
                served_items = [served_items[i] for i in picks]
                scores = [scores[i] for i in picks]
                chosen = tags.take(picks) if isinstance(tags, PoolTags) else [tags[i] for i in picks]  # explained now, only these
                tags = [t if i == j else explored(t) for j, (i, t) in enumerate(zip(picks, chosen, strict=True))]
                slate = {"items": served_items, "scores": scores, "tags": tags, "logging": drawn}
            else:
                slate["logging"] = dict(DETERMINISTIC)
        context = _record_context(request, decision, standing, shadow_of) | ({"list_source": source} if source else {})
        if plan.started is not None:
            # serving latency, from the start of the list's work to its record (monitoring's latency percentiles)
            context["latency_ms"] = round((time.perf_counter() - plan.started) * 1000.0, 3)
        record = Decision(
            mode=mode, pack_name=stamp["pack"], pack_version=stamp["pack_version"], pack_hash=stamp["pack_hash"],
            slate=slate, model_version=model.version_id_,
            context=context,
            decision_id=decision_id, decided_at=now,
            **self._subject_of(request),
        )  # fmt: skip
        if self.sink is not None:
            self.sink.submit_and_wait(record)
        if self.exposure_state is not None and mode == "personalized":
            self.exposure_state.tick()
        return ServedList(
            decision_id=record.decision_id,
            mode=mode,
            items=served_items,
            scores=scores,
            tags=tags,
            pack=stamp,
            model_version=model.version_id_,
            consent_reason=decision.reason,
            decided_at=now.isoformat(timespec="microseconds"),
            blocked_removed=self._blocked_count,
            model_standing=None if standing is None else standing.standing,
            retrain_request=None if standing is None else standing.retrain_request,
            list_source=source,
        )

    def _personalized(self, plan: ServePlan) -> tuple[PersonalizedList, str | None]:
        """The model's part of a personalized plan's list, and where it came from: the online store's cached list
        (``list_cache``, :mod:`governance.online_store`; checked against what is kept out now), else made here."""
        plan = plan if plan.personalizer is self.personalizer else replace(plan, personalizer=self.personalizer)
        length = plan.length or plan.request.k
        cache = self.list_cache
        # with a logging policy only the drawn items are served: their tags are made after the draw;
        # a stateful pipeline's lists are never cached (a cached list would skip its exposure ledgers)
        if cache is None or self.personalizer.stateful:
            return self.personalizer.personalize(plan.row, length, plan.allowed, tag_all=self._logging is None), None
        found, ticket = cache.get(plan, self.model.version_id_, self.loaded.content_hash)
        if found is not None:
            return found, "online_store"
        made = self.personalizer.personalize(plan.row, length, plan.allowed)
        if ticket is not None:
            cache.put(plan, ticket, made)
        return made, None

    def close_exposure_state(self) -> None:
        """Save the amortised steps' exposure ledgers (at shutdown; nothing without such a step or a store)."""
        if self.exposure_state is not None:
            self.exposure_state.close()

    def _subject_of(self, request: ServeRequest) -> dict[str, str | None]:
        """How the record names the subject: nothing without a sink; else a pseudonym given here, or the
        raw id, which the sink turns into its pseudonym inside its own transaction (it is never stored)."""
        if self.sink is None:
            return {}
        if self.pseudonymize is not None:
            return {"subject": self.pseudonymize(request.subject_id)}
        return {"subject_id": request.subject_id}


def _record_context(request: ServeRequest, decision: ProfilingDecision, standing: ModelStanding | None, shadow_of: str | None) -> dict[str, Any]:
    """The record's context: why the subject was (not) profiled, the GPC signal, the request's category,
    an unlearned model's standing, and for a shadow's list that it was not served and whose list was."""
    context: dict[str, Any] = {"consent": decision.reason[:500], "gpc": request.gpc, **{k: v for k, v in request.context.items() if k in ("category", "region")}}
    if standing is not None and standing.standing != TRAINED:
        context |= {"model_standing": standing.standing, "retrain_request": standing.retrain_request}
    if shadow_of is not None:
        context |= {"served": False, "shadow_of": shadow_of}
    if request.experiment is not None:
        context["experiment"] = dict(request.experiment)
    return context


class PoolTags(Sequence):
    """The explanation tags of a governed list, each item's made when it is read (and kept).

    The same dicts as ``Tag(...).to_dict()``, built from whole arrays: plain lists and numbers (picklable,
    so a list made in another process carries its tags' figures, not their dicts).

    Made :meth:`deferred`, it holds no figures yet: the exact decomposition runs when tags are read, for the
    items read (:meth:`take` explains a whole selection in one batch), so a logging policy that serves ``k``
    items of a longer governed list explains those ``k`` only. Each item's figures are the ones the whole
    list's decomposition gives (one factorization per user; each item's solve is its own column).
    """

    __slots__ = ("_names", "_present", "_weights", "_reasons", "_made", "_pending")

    def __init__(self, names: list[list[str]], present: list[list[bool]], weights: list[list[float]], reasons: list[int]) -> None:
        self._names, self._present, self._weights, self._reasons = names, present, weights, reasons
        self._made: dict[int, list[dict[str, Any]]] = {}
        self._pending: tuple[Callable[[np.ndarray], tuple[list, list, list]], np.ndarray] | None = None

    @classmethod
    def deferred(cls, explain: Callable[[np.ndarray], tuple[list, list, list]], ids: np.ndarray, reasons: list[int]) -> PoolTags:
        """Tags of the list of model rows ``ids`` whose figures ``explain`` gives when read (``explain(rows)`` returns
        the contributors' names, which are present, and their weights, one list each per row)."""
        n = len(reasons)
        made = cls([[]] * n, [[]] * n, [[]] * n, reasons)
        made._pending = (explain, np.asarray(ids, dtype=np.int64))
        made._names = [None] * n  # type: ignore[list-item]  # None: not explained yet
        return made

    def _explain(self, positions: list[int]) -> None:
        explain, ids = self._pending  # type: ignore[misc]
        todo = [j for j in dict.fromkeys(positions) if self._names[j] is None]
        if not todo:
            return
        names, present, weights = explain(ids[todo])
        for j, n_, p_, w_ in zip(todo, names, present, weights, strict=True):
            self._names[j], self._present[j], self._weights[j] = n_, p_, w_

    def take(self, positions: Sequence[int]) -> list[list[dict[str, Any]]]:
        """The tags of the items at ``positions`` (explained together, in one batch, if they were not yet)."""
        n = len(self._reasons)
        positions = [j + n if j < 0 else j for j in map(int, positions)]
        if self._pending is not None:
            self._explain([j for j in positions if 0 <= j < n])
        return [self[j] for j in positions]

    def __reduce__(self) -> tuple[Any, ...]:
        if self._pending is not None:
            self._explain(list(range(len(self))))
        return (PoolTags, (self._names, self._present, self._weights, self._reasons))

    def __len__(self) -> int:
        return len(self._reasons)

    def __getitem__(self, j: Any) -> Any:
        if isinstance(j, slice):
            return self.take(range(*j.indices(len(self))))
        if j < 0:
            j += len(self)
        if not 0 <= j < len(self):
            raise IndexError(j)
        made = self._made.get(j)
        if made is None:
            if self._pending is not None and self._names[j] is None:
                self._explain([j])
            made = self._made[j] = _item_tags(self._names[j], self._present[j], self._weights[j], self._reasons[j])
        return made

    def __iter__(self) -> Any:
        if self._pending is not None:
            self._explain(list(range(len(self))))
        return (self[j] for j in range(len(self)))


def _item_tags(names: list[str], present: list[bool], weights: list[float], code: int) -> list[dict[str, Any]]:
    """One item's tags from its contributors' figures (see :class:`PoolTags`): the move's tag, if any, then
    ``because you interacted`` with the contributors present."""
    because = [name for name, here in zip(names, present) if here]
    tag: dict[str, Any] = {"kind": _BECAUSE, "text": _BECAUSE_TEXT.format(items=", ".join(because) or "your history")}
    if because:
        tag["items"] = because
        tag["weights"] = [round(w, 6) for w, here in zip(weights, present) if here]
    return [_tag(_TAG_OF[code]), tag] if code in _TAG_OF else [tag]


_BECAUSE = TagKind.because_you_interacted.value
TAG_CONTRIBUTORS = 3
"""History items a ``because you interacted`` tag names at most."""
_BECAUSE_TEXT = TAG_TEXT[TagKind.because_you_interacted]


class Personalizer:
    """The model's part of one served list: candidates without the blocked and seen items, the
    pack's re-ranking, and the explanation tags.

    A pure function of what it holds (the model, the re-ranking and its checked catalog, the
    blocked items), so it gives the same list wherever it runs: the service runs it in a process
    of its own beside the event loop (:mod:`governance.api.compute`), and here when that process
    cannot answer. It is never changed in place: :meth:`ServingEngine.set_blocked` makes a new one,
    with a new ``token``, the name a process that holds a copy knows it by.
    """

    def __init__(
        self,
        model: ALSRecommender,
        gram: np.ndarray,
        item_ids: np.ndarray,
        pipeline: Any,
        catalog: Any,
        candidates: int,
        blocked_idx: np.ndarray,
    ) -> None:
        self.token = uuid.uuid4().hex
        self.model = model
        self._gram = gram
        self._item_ids = item_ids
        self._pipeline = pipeline
        self._catalog = catalog
        self._n_groups = catalog.n_groups if catalog is not None else None
        self._candidates = candidates
        self._blocked_idx = blocked_idx
        mask = np.zeros(len(item_ids), dtype=bool)
        mask[blocked_idx] = True
        mask.flags.writeable = False
        self.blocked_mask = mask
        """The same items as a boolean mask over the model's rows (a cached list is checked against it)."""
        self.stateful = pipeline is not None and any(getattr(step, "stateful", False) for step in pipeline.steps)
        """A step carries state across requests (an exposure ledger): lists are made in this process, never cached."""

    def personalize(self, row: int, k: int, allowed: np.ndarray | None = None, *, tag_all: bool = True) -> PersonalizedList:
        """The list of the subject in model row ``row``: ``k`` items (fewer if the catalog runs out), none of
        ``allowed``'s excluded ones (``tag_all``: see :meth:`govern`)."""
        # One BLAS thread for the whole list: the model's scoring and the tags' small solves would
        # otherwise wake BLAS's pool for 64x64 products, which costs more than it saves and, on a
        # busy machine, stalls the request behind the other cores' work.
        with blas_single_thread():
            history, ids, scores = self._candidates_single_thread(row, k, allowed)
            return self.govern(row, history, ids, scores, k, tag_all=tag_all)

    def history_of(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """The items of model row ``row``'s training history and their values."""
        matrix = self.model.train_.matrix
        start, end = int(matrix.indptr[row]), int(matrix.indptr[row + 1])
        return matrix.indices[start:end], matrix.data[start:end]

    def candidates(self, row: int, k: int, allowed: np.ndarray | None = None) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
        """The history of model row ``row`` and the model's candidates for a list of ``k`` (ids, scores), best
        first, without the blocked, seen and ``allowed``-excluded items: what :meth:`govern` re-ranks."""
        with blas_single_thread():
            return self._candidates_single_thread(row, k, allowed)

    def _candidates_single_thread(
        self, row: int, k: int, allowed: np.ndarray | None
    ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
        model = self.model
        n_candidates = self.n_candidates(k)
        # The items the user has seen are filtered with the blocked ones: the model is asked for
        # its ranking of the rest, which is what filter_already_liked_items gives, without a
        # sparse row built and indexed per request.
        history = self.history_of(row)
        filter_items = np.concatenate((self._blocked_idx, history[0]))
        if allowed is not None:
            filter_items = np.concatenate((filter_items, np.flatnonzero(~allowed)))
        ids, scores = model.model_.recommend(
            row, None, N=min(n_candidates, model.train_.n_items), filter_already_liked_items=False,
            filter_items=filter_items if len(filter_items) else None,
        )  # fmt: skip
        ids = np.asarray(ids, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float32)
        valid = (ids >= 0) & np.isfinite(scores) & (scores > _FLOAT32_MIN)
        return history, ids[valid], scores[valid]

    def n_candidates(self, k: int) -> int:
        """How many candidates a list of ``k`` is made from: the pack's ``reranking.candidates`` when it re-ranks."""
        return max(k, self._candidates if self._pipeline is not None else k)

    @property
    def blocked_items(self) -> np.ndarray:
        """Model rows of the items no list may hold (blocked categories and escalation cases)."""
        return self._blocked_idx

    def govern(
        self, row: int, history: tuple[np.ndarray, np.ndarray], ids: np.ndarray, scores: np.ndarray, k: int, *, tag_all: bool = True
    ) -> PersonalizedList:
        """The pack's re-ranking of one user's candidates (model rows ``ids``, ``scores`` best first) to a list of
        ``k``, and its explanation tags: the code every engine runs, given candidates (:meth:`candidates` here;
        the Spark engine's own, :mod:`governance.spark.lists`).

        ``tag_all=False``: the tags as a :class:`PoolTags`, each item's made when it is read (a logging policy
        serves a few items of a longer governed list: only those need their tags)."""
        model = self.model
        ids = np.asarray(ids, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float32)
        reasons = np.zeros(len(ids), dtype=np.int8)
        if self._pipeline is not None and len(ids):
            extra = {}
            needs = self._pipeline.needs()
            if "user_category_dist" in needs:
                from governance.rerank import history_category_distribution

                n_items = len(self._item_ids)
                user_row = sp.csr_matrix((history[1], (np.zeros(len(history[0]), dtype=np.int64), history[0])), shape=(1, n_items))
                extra["user_category_dist"] = history_category_distribution(user_row, self._catalog.item_categories)
            if "user_group_dist" in needs:
                from governance.rerank.calibration import history_group_distribution_of_row

                extra["user_group_dist"] = history_group_distribution_of_row(history[0], history[1], self._catalog.item_group, self._n_groups)
            cands = self._catalog.candidates(items=ids[None, :], scores=scores[None, :], seeds=np.array([row]), **extra)
            out = self._pipeline(cands, k)
            keep = out.items[0] >= 0
            ids = out.items[0][keep]
            scores = out.scores[0][keep]
            reasons = _provider_moves(out.moves[0][keep], ids, self._catalog.item_group)
        else:
            ids, scores = ids[:k], scores[:k]
        rounded = [round(s, 6) for s in scores.tolist()]
        if not tag_all:  # explained when read: only the items a logging policy serves
            return PersonalizedList(ids, rounded, PoolTags.deferred(lambda rows: self._tag_figures(history, rows), ids, reasons.tolist()))
        names, present, weights = self._tag_figures(history, ids)
        return PersonalizedList(ids, rounded, list(map(_item_tags, names, present, weights, reasons.tolist())))

    def _tag_figures(self, history: tuple[np.ndarray, np.ndarray], ids: np.ndarray) -> tuple[list, list, list]:
        """The ``because you interacted`` figures of model rows ``ids``: contributors' names, which are present, weights.

        A tag names only what makes it true and may be shown: a history item whose contribution raised the
        score (one that lowered it is no reason), and never an item no list may hold (blocked, under review):
        the next contributors take their places."""
        hidden = self.blocked_mask[history[0]]
        ex = self.explain(history, ids, n=TAG_CONTRIBUTORS + int(np.count_nonzero(hidden)))
        contributors, weights = ex.contributors, ex.weights
        safe = np.maximum(contributors, 0)
        # A NaN weight (padding) compares False: it names nothing, as a weight of 0 would.
        named = (contributors >= 0) & (weights > 0) & ~self.blocked_mask[safe]
        order = np.argsort(~named, axis=1, kind="stable")[:, :TAG_CONTRIBUTORS]  # the named ones first, best first
        rows = np.arange(order.shape[0])[:, None]
        return self._item_ids[safe[rows, order]].tolist(), named[rows, order].tolist(), weights[rows, order].tolist()

    def explain(self, history: tuple[np.ndarray, np.ndarray], ids: np.ndarray, n: int = TAG_CONTRIBUTORS) -> Any:
        """The exact decomposition of the model's scores of ``ids`` over the user's history, its ``n`` largest
        contributions per item (:func:`governance.explain.explain_als_list`); another model's engine gives its own."""
        model = self.model
        return explain_als_list(model.item_factors_, model.regularization, model.alpha, history[0], history[1], ids, n=n, gram=self._gram)



_PROVIDER_FAIRNESS = int(Reason.provider_fairness)


def _provider_moves(reasons: np.ndarray, ids: np.ndarray, item_group: np.ndarray | None) -> np.ndarray:
    """``reasons`` with the provider-fairness moves of items outside the protected group marked :data:`_BALANCED`."""
    if item_group is None:
        return reasons
    other = (reasons == _PROVIDER_FAIRNESS) & (item_group[ids] != PROTECTED_CODE)
    if not other.any():
        return reasons
    out = reasons.astype(np.int16)
    out[other] = _BALANCED
    return out


ServingEngine.personalizer_class = Personalizer
