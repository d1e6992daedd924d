"""Policy packs: YAML -> a validated, hashed :class:`PolicyPack`.

A pack is data written by a compliance team. It says, per concern, which checks
must hold, with which thresholds, and why (a plain description and, where a law
requires it, the legal reference). Loading:

1. parses the YAML keeping every node's line and column (ruamel.yaml);
2. validates the whole document against the pydantic schema (unknown keys are
   rejected; every check's ``params`` against that check's own config class);
3. runs static analysis (:mod:`governance.analysis`);

and reports *every* problem at once, each with file, line, column, the path
inside the pack and what was expected. A pack with any error is never returned,
so it can never be half-applied.

The pack's identity is its ``metadata.version`` and its content hash (a SHA-256
over a canonical JSON of the normalized pack); both are stamped on every audit
result and every decision. The optional accountability sections (controller, DPO,
model card, systemic risks) are left out of the normal form when absent, so a pack
without them keeps its hash. The module is a little over 600 lines because the
whole pack schema, from which the reference and the JSON Schema are generated,
reads best in one place.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)

import governance.checks  # noqa: F401  (registers every check)
from governance.lifecycle_section import LifecycleSection
from governance.located import TOO_LARGE, YAML_LIMITS, PackIssue, PolicyError, load_yaml, validate_located
from governance.registry import Check, registered_checks
from governance.rerank import Reranker, registered_rerankers
from recommender.base import MAX_LIST_LENGTH
from recommender.errors import ConfigError

__all__ = [
    "API_VERSION",
    "MAX_LIST_LENGTH",
    "SECTIONS",
    "PackIssue",
    "PolicyError",
    "PolicyPack",
    "LoadedPack",
    "load_pack",
    "parse_pack",
    "pack_json_schema",
]

API_VERSION = "recgov/v1"
RULE_ID = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class _Strict(BaseModel):
    # A NaN threshold compares false with every figure (a "share > NaN" limit never fails) and an infinite one
    # bounds nothing, so a pack holds finite numbers only; a field that means "no end" says so itself.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)


MAX_RETENTION_DAYS = 36_525
"""The longest retention window a pack may set: a century. A window reaching before year 1 (a million days) made
every training run and audit under the pack fail with a date overflow; a pack with no limit leaves it out."""


# -- rules --------------------------------------------------------------------------
class RuleBase(_Strict):
    """Fields every rule has, whatever its check."""

    id: str = Field(pattern=RULE_ID)
    """Stable id of the rule, unique in the pack (lower case, digits, ``_ . -``)."""
    description: str = Field(min_length=1)
    """What the rule requires, in plain language."""
    legal_reference: str | None = None
    """The provision the rule implements, e.g. ``GDPR Art. 5(1)(c)``."""
    severity: Literal["block", "warn"] = "block"
    """``block``: a failure fails the gate; ``warn``: a failure is reported as a warning."""


_GENERATED: dict[str, Any] = {"use_attribute_docstrings": False}
"""Class keywords of the models built with ``create_model`` below. Their fields carry their descriptions
explicitly and have no source to read docstrings from; left on (inherited from ``_Strict``), pydantic would
search the call stack and every loaded module for a class statement that does not exist, which took seconds
per import of this module in a process with many modules loaded (the test suite, the API's workers)."""


def _rule_model(check: type[Check]) -> type[RuleBase]:
    model = create_model(
        f"{''.join(p.title() for p in check.name.split('_'))}Rule",
        __base__=RuleBase,
        __doc__=check.summary or check.__doc__,
        __cls_kwargs__=_GENERATED,
        check=(Literal[check.name], Field(description=f"The registered check {check.name!r}.")),
        params=(check.Config, Field(default_factory=dict, validate_default=True, description=f"Parameters of {check.name!r}.")),
    )
    return model


def _step_model(name: str, reranker: Any) -> type[BaseModel]:
    return create_model(
        f"{''.join(p.title() for p in name.split('_'))}Step",
        __base__=_Strict,
        __doc__=(reranker.__doc__ or "").strip().split("\n")[0],
        __cls_kwargs__=_GENERATED,
        name=(Literal[name], Field(description=f"The registered re-ranker {name!r}.")),
        params=(reranker.Config, Field(default_factory=dict, validate_default=True, description=f"Parameters of {name!r}.")),
    )


_CHECKS = registered_checks()
_RULE_MODELS = tuple(_rule_model(c) for c in _CHECKS.values())
Rule = Annotated[Union[_RULE_MODELS], Field(discriminator="check")]  # type: ignore[valid-type]


def _section_rules(section: str) -> Any:
    """The type of a section's ``rules``: any registered check, but only this section's."""

    def belongs(rule: Any) -> Any:
        home = _CHECKS[rule.check].section
        if home != section:
            raise ValueError(f"check {rule.check!r} belongs in section {home!r}, not {section!r}")
        return rule

    return list[Annotated[Rule, AfterValidator(belongs)]]  # type: ignore[valid-type]


class _Section(_Strict):
    rules: list[Rule] = Field(default_factory=list)  # type: ignore[valid-type]
    """The rules of this concern."""


# -- sections -----------------------------------------------------------------------
class PurposeInputs(_Strict):
    """The fields a processing purpose may use."""

    allowed_inputs: list[str] = Field(default_factory=list)
    """Fields the model may read for this purpose (event columns, user or item attributes)."""
    description: str = ""
    legal_reference: str | None = None


class MinimizationSection(_Section):
    """Data minimization (GDPR Art. 5(1)(c); CCPA regs §7027 for sensitive data)."""

    rules: _section_rules("minimization") = Field(default_factory=list)  # type: ignore[valid-type]
    """The rules of this concern."""

    purposes: dict[str, PurposeInputs] = Field(default_factory=dict)
    """Purpose -> the inputs it may use."""
    forbidden_attributes: list[str] = Field(default_factory=list)
    """Attributes that must never reach a model (e.g. special categories of GDPR Art. 9)."""
    audit_only_attributes: list[str] = Field(default_factory=list)
    """Attributes readable by fairness audits only, never by a model."""
    retention_days: int | None = Field(None, ge=1, le=MAX_RETENTION_DAYS)
    """Events older than this are excluded from training and purged (at most a century; leave it out for no limit)."""


class ConsentPurpose(_Strict):
    """The lawful basis of one processing purpose."""

    lawful_basis: Literal["consent", "legitimate_interest", "contract"]
    """GDPR Art. 6(1) basis."""
    model: Literal["opt_in", "opt_out"] = "opt_in"
    """``opt_in``: no record means no; ``opt_out``: allowed until an objection or opt-out."""
    erase_on_withdrawal: bool = False
    """A withdrawal, objection or opt-out of this purpose, recorded under this pack (``recgov consent
    set --pack``, ``POST /v1/consent`` with ``pack``), also opens an erasure request for the subject
    (GDPR Art. 17(1)(b) and (c): no other ground to keep their data), due within
    ``requests.erasure_days``; ``recgov subject erase`` carries it out. Opt-outs carried by a request's
    GPC or TCF signal stop profiling only. Off: profiling stops, the data is kept."""
    legal_reference: str | None = None


MAX_REQUEST_DAYS = 366
"""The longest deadline a pack may set for a subject request (the store refuses longer ones)."""


class RequestDeadlines(_Strict):
    """Days to answer each kind of subject request, counted from its receipt.

    The defaults are GDPR Art. 12(3)'s one month, read as 30 days; CCPA
    §1798.130(a)(2)(A) allows 45. A request's deadline is fixed when it is
    opened, so changing the pack moves only the deadlines of later requests.
    """

    access_days: int = Field(30, strict=True, ge=1, le=MAX_REQUEST_DAYS)
    """Days to answer an access request (GDPR Art. 15; CCPA §1798.110)."""
    erasure_days: int = Field(30, strict=True, ge=1, le=MAX_REQUEST_DAYS)
    """Days to answer an erasure request (GDPR Art. 17; CCPA §1798.105)."""
    objection_days: int = Field(30, strict=True, ge=1, le=MAX_REQUEST_DAYS)
    """Sets no deadline: recgov honours an objection to profiling (GDPR Art. 21), an opt-out or a withdrawal
    when it is recorded (serving stops profiling the subject at once, training leaves their events out), so no
    objection request is opened and none can fall overdue. Still read, so that the content hash of a pack
    written with it does not change; leave it out of new packs."""
    retrain_days: int = Field(30, strict=True, ge=1, le=MAX_REQUEST_DAYS)
    """Days, from an erasure, to replace by a full retrain every model the erasure could not replace at once: a
    version made by the approximate update (``--approximate``; an exact erasure refits and replaces it there and
    then), or of a family that forgets only by a retrain."""
    legal_reference: str | None = "GDPR Art. 12(3)"
    """The provision the deadlines implement, quoted with every request they set."""

    def days_for(self, kind: str) -> int:
        """The deadline in days for a request of ``kind`` (access, erasure, objection, retrain)."""
        try:
            return int(getattr(self, f"{kind}_days"))
        except AttributeError:
            raise ValueError(f"no deadline for request kind {kind!r}; kinds: access, erasure, objection, retrain") from None


TCF_CONSENT_ONLY_PURPOSES = (1, 3, 4, 5, 6)
"""TCF purposes that rest on consent only: purpose 1 (store and/or access information on a device, which
ePrivacy Art. 5(3) ties to consent) and, since TCF v2.2, purposes 3 to 6 (personalised advertising and
content profiles: "Vendors will only be able to select consent as an acceptable legal basis for purposes
3, 4, 5 and 6", IAB Europe, TCF v2.2 Implementation FAQs)."""
TCF_POLICY_VERSION_V22 = 4
"""``TcfPolicyVersion`` of strings made under TCF Policies v2.2 (5 under v2.3); 2 is v2.0/v2.1."""


MSG_TCF_PURPOSE_ONE = (
    "consent.tcf.purposes must include TCF purpose 1 (store and/or access information on a device), which "
    "every other purpose needs; got {purposes}"
)
MSG_TCF_LI_OUTSIDE = "consent.tcf.legitimate_interest_purposes {outside} are not in consent.tcf.purposes {purposes}"
MSG_TCF_LI_FORBIDDEN = (
    "TCF purposes {purposes} cannot rest on legitimate interest: the TCF Policies v2.2 allow only consent for "
    "purposes 1, 3, 4, 5 and 6; remove them from consent.tcf.legitimate_interest_purposes"
)


class TcfRequirements(_Strict):
    """What a request's IAB TCF v2.2 TC string must show before personalisation, and whether it may grant.

    Read with the IAB Tech Lab "Transparency and Consent String with Global Vendor & CMP List Formats"
    (TCF v2.2: the core segment's ``TcfPolicyVersion``, ``Created``, ``LastUpdated``, ``PurposesConsent``,
    ``PurposesLITransparency``, ``Vendor Consent`` and ``Vendor Legitimate Interest`` sections and the
    ``PubRestrictionEntry`` list) and the IAB Europe TCF Policies v2.2.
    """

    purpose: str = "personalization"
    """The pack purpose (a key of ``consent.purposes`` resting on consent) that the TCF purposes below stand for."""
    purposes: list[Annotated[int, Field(ge=1, le=11)]] = Field(default_factory=lambda: [1, 5, 6])
    """TCF purposes that must each have a legal basis for the installation's vendor: 1 (store and/or access
    information on a device) underlies the others and is always required; 5 (create profiles for
    personalised content) and 6 (use profiles to select personalised content); 11 (use limited data to
    select content) where the service uses it."""
    legitimate_interest_purposes: list[Annotated[int, Field(ge=1, le=11)]] = Field(default_factory=list)
    """Of ``purposes``, those that may rest on the vendor's legitimate interest instead of consent (the
    string's purpose LI transparency and vendor LI bits, no objection, no publisher restriction requiring
    consent). Purposes 1 and 3 to 6 are refused here: the TCF Policies v2.2 allow them only on consent."""
    min_policy_version: int = Field(TCF_POLICY_VERSION_V22, ge=2, le=63)
    """Lowest ``TcfPolicyVersion`` accepted: 4 is TCF Policies v2.2 (2023), 5 v2.3; a version 2 string was
    made under v2.0/v2.1, when vendors could still claim legitimate interest for purposes 3 to 6."""
    max_age_days: int | None = Field(390, ge=1, le=3660)
    """Oldest ``LastUpdated`` accepted, in days (also the life of a grant a TC string recorded). The TCF
    v2.0 Policies asked for users to be reminded of their choices at least every 13 months; the v2.2
    Policies defer the interval to the publisher's data protection authority (6 to 24 months in the
    guidance IAB Europe's v2.2 FAQs list). 390 days is 13 months; null: no limit."""
    vendor_id: int | None = Field(None, ge=1, le=65535)
    """The installation's IAB Global Vendor List id: the vendor whose consent (or legitimate interest)
    the string must carry and whose publisher restrictions apply. A service may also be given one."""
    grants: bool = False
    """TCF is a consent source for ``purpose``: a string that meets these requirements records a grant
    (source ``tcf``, the string as evidence, GDPR Art. 7(1)). Off: a string can only refuse."""

    @model_validator(mode="after")
    def _purpose_one_and_bases(self) -> TcfRequirements:
        if 1 not in self.purposes:
            raise ValueError(MSG_TCF_PURPOSE_ONE.format(purposes=self.purposes))
        outside = sorted(set(self.legitimate_interest_purposes) - set(self.purposes))
        if outside:
            raise ValueError(MSG_TCF_LI_OUTSIDE.format(outside=outside, purposes=self.purposes))
        consent_only = sorted(set(self.legitimate_interest_purposes) & set(TCF_CONSENT_ONLY_PURPOSES))
        if consent_only:
            raise ValueError(MSG_TCF_LI_FORBIDDEN.format(purposes=consent_only))
        return self


class ConsentSection(_Section):
    """Who may be profiled, for which purpose (GDPR Art. 6, 7, 21; CCPA §1798.120)."""

    rules: _section_rules("consent") = Field(default_factory=list)  # type: ignore[valid-type]
    """The rules of this concern."""

    purposes: dict[str, ConsentPurpose] = Field(default_factory=dict)
    honour_gpc: bool = True
    """Treat ``Sec-GPC: 1`` as an opt-out of sale/sharing (CCPA regs §7025)."""
    requests: RequestDeadlines = Field(default_factory=RequestDeadlines)
    """Deadlines of subject requests (access, erasure, objection) and of the full retrain an erasure calls for."""
    tcf: TcfRequirements | None = None
    """How a request's IAB TCF v2.2 TC string is judged (null: by the defaults of this section, TCF only
    refusing); see :class:`TcfRequirements`."""

    def tcf_requirements(self) -> TcfRequirements:
        """The TCF requirements in force: the pack's, else the defaults (TCF Policies v2.2; TCF never grants)."""
        return self.tcf if self.tcf is not None else TcfRequirements()


class AttributeBins(_Strict):
    """Bands of a numeric audit attribute (age -> ``18-24``, ``25-34``): its groups are the bands."""

    edges: list[Annotated[float, Field(allow_inf_nan=True)]] = Field(min_length=2)
    """Increasing edges; bin ``j`` is ``[edges[j], edges[j+1])`` (``.inf`` for an open end; never ``.nan``)."""
    labels: list[str]
    """One label per bin (``len(edges) - 1``), distinct, never ``missing``."""
    right: bool = False
    """Close bins on the right, ``(a, b]``, instead."""


class FairnessSection(_Section):
    """Fairness audits across user groups and item providers (DSA Art. 34, 35)."""

    rules: _section_rules("fairness") = Field(default_factory=list)  # type: ignore[valid-type]
    """The rules of this concern."""

    bins: dict[str, AttributeBins] = Field(default_factory=dict)
    """Numeric audit attributes cut into labelled bands; a value outside every band, or not a number,
    is missing (reported, never judged)."""
    intersections: list[list[str]] = Field(default_factory=list)
    """Attribute combinations that matter jointly (``[gender, age]`` gives groups such as
    ``F x 25-34`` under the attribute ``gender_x_age``, which rules may name); each part an audit attribute.
    That joined name must be new (not an audit attribute's, not another intersection's): a clash is refused."""
    min_group_size: int = Field(30, ge=1)
    """The census reports every group's size and marks groups under this size as reported, not judged
    (the literature metrics leave them out of their gaps); each rule's own ``min_group_size`` decides
    what that rule judges."""
    literature_metrics: bool = False
    """Also report the metrics the fairness literature cites (PopREO, PopRSP, ACLT, user and item MAD,
    bias disparity, RBP, rank-weighted exposure Gini, exposure entropy, aggregate diversity, serendipity)."""

    @model_validator(mode="after")
    def _groups_declared(self) -> FairnessSection:
        from recommender.fairness import Binning

        codes = self.provider_group_codes
        if codes is not None:
            if any(c < 0 for c in codes.values()) or len(set(codes.values())) != len(codes):
                raise ValueError(f"provider_group_codes: codes must be distinct and >= 0; got {codes}")
            if codes.get(self.protected_provider_group, 1) != 1:
                raise ValueError(
                    f"provider_group_codes: the protected group {self.protected_provider_group!r} must keep code 1 "
                    f"(FA*IR and the provider rules protect code 1); got {codes[self.protected_provider_group]}"
                )

        declared = set(self.audit_attributes)
        for name, spec in self.bins.items():
            if name not in declared:
                raise ValueError(f"bins: {name!r} is not one of fairness.audit_attributes ({sorted(declared)})")
            try:
                Binning(name, tuple(spec.edges), tuple(spec.labels), spec.right)
            except Exception as err:  # ConfigError: the edges or labels are wrong
                raise ValueError(str(err)) from None
        # An intersection is judged under its joined name (gender_x_age); that name must be new, or its groups
        # would silently replace those of the attribute (or earlier intersection) already holding it.
        named: dict[str, str] = {a: "an attribute of fairness.audit_attributes" for a in declared}
        seen: dict[frozenset[str], int] = {}
        for j, combo in enumerate(self.intersections):
            if len(combo) < 2 or len(set(combo)) != len(combo):
                raise ValueError(f"intersections.{j}: {combo} must name two or more distinct attributes")
            unknown = [a for a in combo if a not in declared]
            if unknown:
                raise ValueError(f"intersections.{j}: {unknown} not in fairness.audit_attributes ({sorted(declared)})")
            if frozenset(combo) in seen:
                raise ValueError(
                    f"intersections.{j}: {combo} repeats intersections.{seen[frozenset(combo)]} "
                    "(the same attributes in any order form the same groups); declare it once"
                )
            seen[frozenset(combo)] = j
            key = self.intersection_names()[j]
            if key in named:
                raise ValueError(
                    f"intersections.{j}: {combo} is judged under the name {key!r}, which is already "
                    f"{named[key]}; rename that attribute so the two groupings stay apart"
                )
            named[key] = f"the name of intersections.{j}"
        return self

    def intersection_names(self) -> list[str]:
        """The attribute names of the declared intersections (``gender_x_age``)."""
        from recommender.fairness import INTERSECTION_JOIN

        return [INTERSECTION_JOIN.join(combo) for combo in self.intersections]

    audit_attributes: list[str] = Field(default_factory=list)
    """User attributes the fairness audit groups by (they never reach a model)."""
    provider_attribute: str | None = None
    """Item metadata column holding the provider group."""
    protected_provider_group: str = "independent"
    """The provider group the provider-side rules and re-rankers protect (e.g. independents against majors)."""
    provider_group_codes: dict[str, int] | None = None
    """The re-rankers' code of every provider group (``{major: 0, independent: 1, regional: 2}``), so that
    ``group_proportions`` and ``exposure_targets`` can target several groups; groups not listed are unknown (-1). The protected
    group must keep code 1 (FA*IR protects code 1). Default: 1 for the protected group, 0 for the others."""


_RERANKERS = registered_rerankers()
RerankStep = Annotated[Union[tuple(_step_model(n, r) for n, r in _RERANKERS.items())], Field(discriminator="name")]  # type: ignore[valid-type]


class RerankingSection(_Section):
    """Post-processing of ranked lists, in the order given (DSA Art. 35(1)(d))."""

    rules: _section_rules("reranking") = Field(default_factory=list)  # type: ignore[valid-type]
    """The rules of this concern."""

    enabled: bool = False
    """Apply the steps to every served list and to the audited lists."""
    candidates: int = Field(100, ge=1, le=10_000)
    """How many of the model's best items the steps choose from."""
    steps: list[RerankStep] = Field(default_factory=list)  # type: ignore[valid-type]
    """Re-rankers by registered name with their params: fair_star, mmr, calibration,
    provider_calibration, popularity_debias, exposure_cap, exploration, group_proportions,
    amortised_exposure, exposure_targets. Constraint steps (fair_star, exposure_cap, group_proportions,
    amortised_exposure, exposure_targets) belong last: later relevance-weighing steps can undo them."""


class ExplanationsSection(_Section):
    """Explanation tags and the recommender disclosure (DSA Art. 27)."""

    rules: _section_rules("explanations") = Field(default_factory=list)  # type: ignore[valid-type]
    """The rules of this concern."""

    required: bool = True
    """Every served item must carry at least one explanation tag."""


class CarbonSection(_Section):
    """Energy and emissions accounting of training and audits."""

    rules: _section_rules("carbon") = Field(default_factory=list)  # type: ignore[valid-type]
    """The rules of this concern."""

    country_iso_code: str = Field("USA", pattern=r"^[A-Z]{3}$")
    """ISO 3166-1 alpha-3 code of the grid the runs use (codecarbon's offline mode)."""

    @field_validator("country_iso_code")
    @classmethod
    def _known_grid(cls, value: str) -> str:
        from governance.carbon import unknown_grid

        problem = unknown_grid(value)
        if problem is not None:  # codecarbon would use the world average without a word, under this country's name
            raise ValueError(problem)
        return value
    measure: bool = True
    """Measure runs with codecarbon."""


HARM_CATEGORY = r"^[a-z0-9][a-z0-9_-]{0,99}$"
"""A harm category: lower case letters, digits, ``-`` and ``_`` (``self-harm``, ``csam``)."""


class HarmfulContentSection(_Section):
    """Harmful-content blocking and escalation (DSA Art. 34, 35)."""

    rules: _section_rules("harmful_content") = Field(default_factory=list)  # type: ignore[valid-type]
    """The rules of this concern."""

    categories: list[Annotated[str, Field(pattern=HARM_CATEGORY)]] = Field(default_factory=list)
    """The harm categories this pack knows, besides ``blocked_categories`` (which it knows too): its
    vocabulary. A flag must name a known category (``recgov harm flag``, ``POST /v1/items/{item_id}/flags``
    refuse any other, naming the known ones), so that a misspelt category never blocks nothing in
    silence. A flag of a known category that is not blocked counts towards ``max_flagged_share``."""
    blocked_categories: list[Annotated[str, Field(pattern=HARM_CATEGORY)]] = Field(default_factory=list)
    """Flag categories never served."""
    block_confidence: float = Field(0.8, ge=0, le=1)
    """A flag of a blocked category at or above this confidence blocks the item at once;
    below it, the item goes to the review queue (an escalation case) and stays out of lists."""
    reports_to_escalate: int = Field(3, ge=1)
    """User reports on one item that open an escalation case."""
    max_flagged_share: float = Field(0.05, ge=0, le=1)
    """Largest share of served list places that may go to flagged (not yet blocked) items before a case opens."""
    sla_hours: float = Field(24, gt=0, le=24 * 90)
    """Time to resolve an escalation case."""

    def known_categories(self) -> list[str]:
        """The pack's harm vocabulary: ``categories`` and ``blocked_categories``, sorted."""
        return sorted(set(self.categories) | set(self.blocked_categories))


class QualitySection(_Section):
    """How the offline evaluation behind the quality rules is run."""

    rules: _section_rules("quality") = Field(default_factory=list)  # type: ignore[valid-type]
    """The rules of this concern."""

    k: int = Field(10, ge=1, le=MAX_LIST_LENGTH)
    """List length of every metric."""
    split: Literal["random", "time", "leave_last"] = "random"
    test_fraction: float = Field(0.2, gt=0, lt=1)
    rating_threshold: float = Field(4.0, ge=0)
    """Ratings at or above this are positives."""
    tune: bool = True
    """Tune ALS on a validation split of the training data before the audit."""


class TrainingFairness(_Strict):
    """In-training fairness: re-weighting the training interactions by group (Kamiran & Calders reweighing
    adapted to implicit ALS, :mod:`recommender.fair_training`). The attribute only scales confidence weights,
    never a model input; a user attribute must be declared (audit-only or an audit attribute) and not forbidden."""

    attribute: str = Field(min_length=1, max_length=64)
    """The users-table column (consumer side) or items-table column (provider side) that defines the groups."""
    side: Literal["consumer", "provider"] = "consumer"
    """Re-weight users' rows (consumer side) or items' columns (provider side)."""
    strength: float = Field(1.0, ge=0.0, le=4.0)
    """Exponent of the mass-balancing weight: 0 is plain ALS, 1 balances each group's confidence mass to its head count."""
    group_weights: dict[str, float] | None = None
    """Explicit per-group multipliers instead of mass balancing (groups not listed keep 1; then normalised)."""

    @field_validator("group_weights")
    @classmethod
    def _as_the_trainer_reads_them(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        from recommender.fair_training import parse_fair_reweighting

        try:
            parse_fair_reweighting({"attribute": "_", "group_weights": value}, where="training.fairness")
        except ConfigError as err:
            raise ValueError(str(err).removeprefix("training.fairness.group_weights: ")) from None
        return value

    def reweighting(self) -> Any:
        """As the trainer's :class:`~recommender.fair_training.FairReweighting`."""
        from recommender.fair_training import parse_fair_reweighting

        return parse_fair_reweighting(self.model_dump(), where="training.fairness")


class TrainingSection(_Strict):
    """How every governed training run under this pack trains (``recgov train --pack``, the audit's training,
    retrains)."""

    fairness: TrainingFairness | None = None
    """In-training fairness re-weighting applied to every governed run (absent: plain ALS). The audit then
    puts it side by side with the pack's post-processing re-ranking."""


class DataSection(_Section):
    """Raw-data validation and drift."""

    rules: _section_rules("data") = Field(default_factory=list)  # type: ignore[valid-type]
    """The rules of this concern."""


class GateSection(_Strict):
    """When ``recgov gate`` blocks a release."""

    block_on: list[Literal["fail", "error", "warn", "skipped"]] = Field(default_factory=lambda: ["fail", "error"])
    """Result statuses that block."""
    required_rules: list[str] = Field(default_factory=list)
    """Rule ids that must be present and pass (a skipped required rule blocks)."""
    max_warnings: int | None = Field(None, ge=0)
    """Block when more rules than this end in ``warn``."""


class ExperimentsSection(_Strict):
    """What a promotion needs from governed experiments (:mod:`governance.experiments`)."""

    require_positive_result: bool = False
    """Promotion to canary or production needs a stopped or concluded experiment whose last planned
    (pre-registered) look found that a variant serving the model version won on the primary metric,
    with the SRM check passed and no guardrail failed; exploratory looks never count."""


# -- logging policy: a stochastic policy after the governed re-ranking (optional) -------------------------
CONSTRAINT_RERANKERS = tuple(name for name, cls in _RERANKERS.items() if cls.check is not Reranker.check)
"""Re-rankers that state a constraint over the lists they make (they implement ``check``: a share in every
prefix, target proportions per list, an exposure cap, an exposure window): a draw that permutes the governed
list, or serves part of it, could undo it. Read from the registry, so a new constraint step is refused with a
logging policy without being listed here (fair_star, exposure_cap, group_proportions, amortised_exposure,
exposure_targets)."""
MAX_PL_POOL = 20
"""A Plackett-Luce pool at most this large keeps its exact marginals within the bound for every list length."""


class LoggingPolicySection(_Strict):
    """A stochastic logging policy applied after the governed re-ranking, so that other policies can be
    evaluated from the decision log (a deterministic list gives every other list probability 0).

    It draws only from the governed list (made ``pool`` long: every item in it passed the blocks, the
    consent and context filters and the re-ranking); ``fixed_slots`` keep the governed item. Each
    decision records the policy, its seed, the pool with its scores, the slate's probability, its
    top-k prefix probabilities and its items' position marginals. Lists that are not personalized
    (non-profiling, fallback) stay deterministic and are recorded as such."""

    kind: Literal["plackett_luce", "epsilon_slots"]
    """``plackett_luce``: positions filled by Plackett-Luce draws over ``exp(score / temperature)``;
    ``epsilon_slots``: each of ``explore_slots`` shows, with probability ``epsilon``, an item drawn
    uniformly from the pool beyond the list's length."""
    pool: int = Field(10, ge=2, le=62)
    """How many governed candidates the policy draws from (Plackett-Luce: at most 20, so that the
    exact marginals stay bounded)."""
    temperature: float = Field(1.0, gt=0, le=1000)
    """Plackett-Luce: small keeps the governed order, large approaches uniform."""
    epsilon: float = Field(0.1, ge=0, le=1)
    """epsilon_slots: the probability that an exploration slot explores."""
    explore_slots: list[int] = Field(default_factory=list)
    """epsilon_slots: 1-based positions that may explore."""
    fixed_slots: list[int] = Field(default_factory=list)
    """Plackett-Luce: 1-based positions that always keep the governed item."""

    @model_validator(mode="after")
    def _consistent(self) -> LoggingPolicySection:
        for name in ("explore_slots", "fixed_slots"):
            slots = getattr(self, name)
            if any(s < 1 for s in slots) or len(set(slots)) != len(slots):
                raise ValueError(f"{name} must be distinct 1-based positions, got {slots}")
        if self.kind == "plackett_luce":
            if self.explore_slots:
                raise ValueError("explore_slots belong to kind epsilon_slots; Plackett-Luce draws every position not in fixed_slots")
            if self.pool > MAX_PL_POOL:
                raise ValueError(f"a Plackett-Luce pool holds at most {MAX_PL_POOL} items (its exact marginals stay bounded), got {self.pool}")
        elif self.fixed_slots:
            raise ValueError("fixed_slots belong to kind plackett_luce; epsilon_slots keeps every position but explore_slots")
        elif not self.explore_slots:
            raise ValueError("epsilon_slots needs explore_slots (1-based positions that may explore)")
        return self


# -- accountability: who answers for the system, what it is for, the risks it carries (optional) ----------
MITIGATION_MECHANISMS = ("item_blocks", "escalation", "non_profiling", "exploration", "reranking")
"""Mechanisms a systemic risk may name besides the pack's rule ids and re-rankers."""


class Controller(_Strict):
    """The controller (GDPR Art. 4(7)) the report names as answerable for the recommender."""

    name: str = Field(min_length=1)
    address: str = Field(min_length=1)
    contact: str = Field(min_length=1)
    """Where a regulator or a data subject reaches the controller: an e-mail address, a web form."""


class DataProtectionOfficer(_Strict):
    """The data protection officer (GDPR Art. 37 to 39)."""

    name: str = Field(min_length=1)
    contact: str = Field(min_length=1)


class SystemicRisk(_Strict):
    """A systemic risk of the recommender (DSA Art. 34(1)) as assessed, and what mitigates it (Art. 35(1))."""

    id: str = Field(pattern=RULE_ID)
    category: Literal["illegal_content", "fundamental_rights", "civic_discourse", "public_health_and_minors"]
    """The Art. 34(1) category: (a) illegal content, (b) fundamental rights, (c) civic discourse, elections and
    public security, (d) gender-based violence, public health, minors and well-being."""
    description: str = Field(min_length=1)
    likelihood: Literal["low", "medium", "high"]
    severity: Literal["low", "medium", "high"]
    mitigations: list[str] = Field(default_factory=list)
    """Rule ids of this pack, re-ranker names, or one of ``item_blocks``, ``escalation``, ``non_profiling``,
    ``exploration``, ``reranking``; the report shows the evidence each one works."""


class ModelCard(_Strict):
    """What the model is for and what it is not (the model-card content of the report)."""

    intended_use: str = Field(min_length=1)
    out_of_scope_use: list[str] = Field(default_factory=list)
    limitations: list[str] = Field(default_factory=list)


ACCOUNTABILITY: tuple[str, ...] = ("controller", "dpo", "model_card", "systemic_risks")
"""Optional top-level sections, left out of a pack's normal form (and so of its hash) when absent."""


class Metadata(_Strict):
    """Who owns the pack and where it applies."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    # Semantic versioning: dot-separated identifiers, none empty (a stored pack's file is named by its version).
    version: str = Field(pattern=r"^\d+\.\d+\.\d+(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$")
    """Semantic version of the pack."""
    owner: str = Field(min_length=1)
    jurisdictions: list[str] = Field(default_factory=list)
    description: str = ""


SECTIONS: tuple[str, ...] = (
    "data",
    "minimization",
    "consent",
    "fairness",
    "reranking",
    "explanations",
    "carbon",
    "harmful_content",
    "quality",
)


class PolicyPack(_Strict):
    """A recgov policy pack (``apiVersion: recgov/v1``)."""

    apiVersion: Literal["recgov/v1"]  # noqa: N815  (the YAML key)
    metadata: Metadata
    data: DataSection = Field(default_factory=DataSection)
    minimization: MinimizationSection = Field(default_factory=MinimizationSection)
    consent: ConsentSection = Field(default_factory=ConsentSection)
    fairness: FairnessSection = Field(default_factory=FairnessSection)
    reranking: RerankingSection = Field(default_factory=RerankingSection)
    explanations: ExplanationsSection = Field(default_factory=ExplanationsSection)
    carbon: CarbonSection = Field(default_factory=CarbonSection)
    harmful_content: HarmfulContentSection = Field(default_factory=HarmfulContentSection)
    quality: QualitySection = Field(default_factory=QualitySection)
    gate: GateSection = Field(default_factory=GateSection)
    controller: Controller | None = None
    """Who answers for the recommender (GDPR Art. 4(7)); the report names them, or says the pack does not."""
    dpo: DataProtectionOfficer | None = None
    """The data protection officer and how to reach them (GDPR Art. 37 to 39)."""
    model_card: ModelCard | None = None
    """Intended use, out-of-scope use and limitations, shown in the report's model card."""
    systemic_risks: list[SystemicRisk] | None = None
    """DSA Art. 34/35: the risks assessed, each with its likelihood, severity and mitigations."""
    lifecycle: LifecycleSection | None = None
    """Monitoring, retrain triggers, the canary's watch and retirement (absent: nothing is watched or retrained automatically)."""
    experiments: ExperimentsSection | None = None
    """What a promotion needs from experiments (absent: nothing)."""
    training: TrainingSection | None = None
    """How governed training runs train, e.g. in-training fairness re-weighting (absent: plain ALS)."""
    logging_policy: LoggingPolicySection | None = None
    """A stochastic logging policy after the governed re-ranking, with exact propensities in every decision
    (absent: lists are deterministic, and cannot evaluate another policy off-line)."""

    @model_validator(mode="after")
    def _known_mitigations(self) -> PolicyPack:
        """Every mitigation a risk names is a rule of this pack, a re-ranker or a known mechanism; ids are unique."""
        known = {rule.id for _, rule in self.rules()} | set(_RERANKERS) | set(MITIGATION_MECHANISMS)
        ids = [risk.id for risk in self.systemic_risks or ()]
        if len(set(ids)) < len(ids):
            raise ValueError(f"systemic_risks: ids must be unique, got {sorted({i for i in ids if ids.count(i) > 1})}")
        for index, risk in enumerate(self.systemic_risks or ()):
            if unknown := [m for m in risk.mitigations if m not in known]:
                raise ValueError(
                    f"systemic_risks.{index} ({risk.id}): mitigations {unknown} name no rule of this pack, "
                    f"no re-ranker and none of {', '.join(MITIGATION_MECHANISMS)}"
                )
        if self.logging_policy is not None and self.reranking.enabled:
            if constraints := [s.name for s in self.reranking.steps if s.name in CONSTRAINT_RERANKERS]:
                raise ValueError(
                    f"logging_policy: re-ranking step(s) {constraints} guarantee shares or caps over whole lists that a "
                    "random draw from their pool could undo; a stochastic logging policy cannot be declared with them"
                )
        return self

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: Any) -> dict[str, Any]:
        """Leave absent optional sections out, so a pack without them keeps the hash it always had."""
        data = handler(self)
        for key in (*ACCOUNTABILITY, "logging_policy", "lifecycle", "experiments", "training"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    def training_reweighting(self) -> Any:
        """The pack's in-training fairness re-weighting (a ``FairReweighting``), or None."""
        if self.training is None or self.training.fairness is None:
            return None
        return self.training.fairness.reweighting()

    def rules(self) -> list[tuple[str, Any]]:
        """Every rule as ``(section, rule)``, in pack order."""
        return [(section, rule) for section in SECTIONS for rule in getattr(self, section).rules]


# -- loading ------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedPack:
    """A validated pack with its provenance."""

    pack: PolicyPack
    source: str
    content_hash: str
    positions: dict[str, tuple[int, int]] = field(repr=False, default_factory=dict)
    """Pack path (``quality.rules.0``) -> (line, column), 1-based."""
    warnings: list[PackIssue] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.pack.metadata.name

    @property
    def version(self) -> str:
        return self.pack.metadata.version

    def stamp(self) -> dict[str, str]:
        """The identity stamped on every result and decision."""
        return {"pack": self.name, "pack_version": self.version, "pack_hash": self.content_hash}

    def rule_position(self, rule_id: str) -> tuple[int, int] | None:
        """Line and column of the rule with ``rule_id`` in the source file."""
        for section, rule in self.pack.rules():
            if rule.id == rule_id:
                index = getattr(self.pack, section).rules.index(rule)
                return self.positions.get(f"{section}.rules.{index}")
        return None


def content_hash(pack: PolicyPack) -> str:
    """SHA-256 over the canonical JSON of the normalized pack (domain separated)."""
    document = json.dumps(pack.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(b"recgov.policy-pack.v1\x00" + document.encode("utf-8")).hexdigest()


def parse_pack(
    text: str,
    source: str = "<string>",
    *,
    dataset_columns: list[str] | None = None,
    item_harm_categories: dict[str, int] | None = None,
    item_table: Any | None = None,
) -> LoadedPack:
    """Validate pack ``text``; raise :class:`PolicyError` listing every problem.

    ``dataset_columns``, when given, enables the check that every attribute a
    rule refers to exists in the dataset; ``item_harm_categories`` (category ->
    items its item table flags), the check that the pack knows every category;
    ``item_table`` (a dataset's item table), the check that every provider group
    has the items its re-ranking targets need.
    """
    from governance.analysis import analyse

    data, positions = load_yaml(text, source, "a YAML policy pack starting with 'apiVersion: recgov/v1'")
    pack = validate_located(PolicyPack, data, positions, source, tags={"check": _CHECKS, "name": _RERANKERS})
    issues = analyse(pack, positions, source, dataset_columns=dataset_columns, item_harm_categories=item_harm_categories, item_table=item_table)
    if any(i.severity == "error" for i in issues):
        raise PolicyError(issues)
    return LoadedPack(pack=pack, source=source, content_hash=content_hash(pack), positions=positions, warnings=issues)


def load_pack(
    path: str | Path,
    *,
    dataset_columns: list[str] | None = None,
    item_harm_categories: dict[str, int] | None = None,
    item_table: Any | None = None,
) -> LoadedPack:
    """Read and validate the pack at ``path`` (see :func:`parse_pack`)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:  # never more than the limit: a device or a huge file is not read whole
            raw = handle.read(YAML_LIMITS.max_bytes + 1)
    except FileNotFoundError:
        raise PolicyError([PackIssue(str(path), None, None, "", "no such file; expected a YAML policy pack")]) from None
    except OSError as err:
        raise PolicyError([PackIssue(str(path), None, None, "", f"cannot be read ({err.strerror})")]) from err
    if len(raw) > YAML_LIMITS.max_bytes:
        size = _file_size(path, len(raw))
        raise PolicyError([PackIssue(str(path), None, None, "", TOO_LARGE.format(size=size, limit=YAML_LIMITS.max_bytes))])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise PolicyError([PackIssue(str(path), line, None, "", f"not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); a policy pack is UTF-8 YAML")]) from err
    return parse_pack(text, str(path), dataset_columns=dataset_columns, item_harm_categories=item_harm_categories, item_table=item_table)


def _file_size(path: Path, read: int) -> str:
    """The size of ``path`` for a message: its length, or "more than N" for what has no length (a device, a pipe)."""
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    return str(size) if size >= read else f"more than {read - 1}"


def pack_json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy pack, for editors and CI validation."""
    schema = PolicyPack.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://recgov.dev/schemas/policy-pack-v1.json"
    schema["title"] = "recgov policy pack (apiVersion recgov/v1)"
    return schema

