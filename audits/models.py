"""The store's tables as SQLAlchemy 2 typed models.

The schema is created and changed only by the Alembic migrations in
``migrations/versions``; a test checks that these models and the migrations agree.

Three groups of tables:

* the audit trail: ``trail_events`` (append-only, enforced by triggers),
  ``trail_head`` (one row: the last sequence number and hash, locked by writers),
  ``trail_checkpoints`` and ``signing_keys`` (signed heads and the public keys
  that check them), ``subject_secrets`` (per-subject pseudonym secrets, deleted
  to erase a subject) and ``store_meta``;
* lineage: ``dataset_versions`` -> ``training_runs`` -> ``model_versions`` ->
  ``audit_runs`` (with ``audit_results``) and ``deployments``. Each lineage row
  names the trail event that recorded it (``trail_seq``);
* privacy, harmful content and serving: ``consent_records`` (append-only),
  ``subject_requests``, ``item_flags``, ``item_reports``, ``escalation_cases``,
  ``item_blocks``, ``decisions`` and ``failed_requests``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from recommender.errors import DataError

__all__ = [
    "Base",
    "TrailEvent",
    "TrailHead",
    "TrailCheckpoint",
    "SigningKeyRecord",
    "SubjectSecret",
    "StoreMeta",
    "DatasetVersion",
    "TrainingRun",
    "ModelVersion",
    "AuditRun",
    "AuditResult",
    "Deployment",
    "DEPLOYMENT_STAGES",
    "RESULT_STATUSES",
    "AUDIT_VERDICTS",
    "UtcDateTime",
    # privacy, harmful content, serving (revision 0004)
    "ConsentRecordRow",
    "SubjectRequest",
    "ItemFlag",
    "ItemReport",
    "EscalationCase",
    "ItemBlock",
    "DecisionRecord",
    "FailedRequest",
    "CONSENT_STATUSES",
    "CONSENT_RESTRICTIVENESS",
    "LAWFUL_BASES",
    "CONSENT_SOURCES",
    "REQUEST_KINDS",
    "REQUEST_STATUSES",
    "FLAG_SOURCES",
    "CASE_SEVERITIES",
    "CASE_STATUSES",
    "CASE_ACTIONS",
    "DECISION_MODES",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DEPLOYMENT_STAGES = ("shadow", "canary", "production", "retired")
"""The stages a model version can be deployed to."""

AUDIT_VERDICTS = ("pass", "fail", "error", "shadow")
"""The verdicts an audit run can end with (``shadow``: evaluated and reported, never blocking)."""

RESULT_STATUSES = ("pass", "warn", "fail", "error", "skipped")
"""The statuses a rule's result can have."""

# A sequence number: BIGINT on PostgreSQL; on SQLite an INTEGER primary key is the rowid.
SeqType = BigInteger().with_variant(Integer(), "sqlite")
JsonType = JSON().with_variant(JSONB(), "postgresql")
HASH_LENGTH = 64
TIME_LENGTH = 27  # 2024-01-31T12:34:56.123456Z


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both engines (SQLite stores naive UTC).

    Naive datetimes are refused: their zone is a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise DataError(f"expected a datetime, got {type(value).__name__} {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise DataError(
                f"datetime {value.isoformat()} has no time zone; pass an aware datetime such as datetime.now(UTC)"
            )
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every store table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# -- the audit trail -----------------------------------------------------------------------


class TrailEvent(Base):
    """One event of the append-only audit trail (see :mod:`audits.trail`)."""

    __tablename__ = "trail_events"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=False)
    """1, 2, 3, ... without gaps."""
    time: Mapped[str] = mapped_column(String(TIME_LENGTH))
    """UTC time, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; hashed exactly as stored."""
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str | None] = mapped_column(String(HASH_LENGTH), index=True)
    """The subject's pseudonym (never a raw id), or NULL."""
    objects: Mapped[str] = mapped_column(Text)
    """Canonical JSON object of the ids the event concerns (dataset, model, policy, ...)."""
    payload: Mapped[str] = mapped_column(Text)
    """Canonical JSON object."""
    prev_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH))


class TrailHead(Base):
    """The one row naming the last event; writers lock it to serialize appends."""

    __tablename__ = "trail_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH))


class SigningKeyRecord(Base):
    """A public key that signed checkpoints; kept after rotation so old checkpoints stay checkable."""

    __tablename__ = "signing_keys"

    key_id: Mapped[str] = mapped_column(String(HASH_LENGTH), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(20))
    public_key_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_now)


class TrailCheckpoint(Base):
    """A signed statement: at ``time`` the trail's head was (``seq``, ``hash``)."""

    __tablename__ = "trail_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    time: Mapped[str] = mapped_column(String(TIME_LENGTH))
    key_id: Mapped[str] = mapped_column(ForeignKey("signing_keys.key_id"), index=True)
    signature: Mapped[str] = mapped_column(String(128))
    """Ed25519 signature, hex."""


class SubjectSecret(Base):
    """The random secret behind one subject's pseudonym, found by a keyed hash of its id."""

    __tablename__ = "subject_secrets"

    lookup: Mapped[str] = mapped_column(String(HASH_LENGTH), primary_key=True)
    """HMAC-SHA256 of the subject id under the installation key (never the id itself)."""
    secret: Mapped[str] = mapped_column(String(HASH_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_now)


class StoreMeta(Base):
    """Facts about this store (e.g. the fingerprint of its installation key)."""

    __tablename__ = "store_meta"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# -- lineage --------------------------------------------------------------------------------


class DatasetVersion(Base):
    """A version of a data set, identified by the hash of its content."""

    __tablename__ = "dataset_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(Text)
    n_events: Mapped[int] = mapped_column(BigInteger)
    n_users: Mapped[int] = mapped_column(Integer)
    n_items: Mapped[int] = mapped_column(Integer)
    data_schema: Mapped[dict[str, Any]] = mapped_column("schema", JsonType)
    validation: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_now)
    trail_seq: Mapped[int | None] = mapped_column(ForeignKey("trail_events.seq"))


class TrainingRun(Base):
    """One training run: its data, parameters, code and library versions, time and carbon."""

    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JsonType)
    code_version: Mapped[str | None] = mapped_column(String(80))
    library_versions: Mapped[dict[str, Any]] = mapped_column(JsonType)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime] = mapped_column(UtcDateTime)
    energy_kwh: Mapped[float | None] = mapped_column(Float)
    emissions_kg: Mapped[float | None] = mapped_column(Float)
    carbon_method: Mapped[str | None] = mapped_column(String(100))
    trail_seq: Mapped[int | None] = mapped_column(ForeignKey("trail_events.seq"))


class ModelVersion(Base):
    """A trained model, identified by a caller-given content hash."""

    __tablename__ = "model_versions"

    version_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    training_run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id"), index=True)
    dataset_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    artifact_hash: Mapped[str] = mapped_column(String(128))
    artifact_location: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_now)
    trail_seq: Mapped[int | None] = mapped_column(ForeignKey("trail_events.seq"))


class AuditRun(Base):
    """One run of a policy pack against a model and/or data set."""

    __tablename__ = "audit_runs"
    __table_args__ = (CheckConstraint("verdict IN ('pass', 'fail', 'error', 'shadow')", name="verdict"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy_pack: Mapped[str] = mapped_column(String(200))
    policy_version: Mapped[str] = mapped_column(String(100))
    policy_hash: Mapped[str] = mapped_column(String(128))
    model_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.version_id"), index=True)
    dataset_version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    verdict: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime] = mapped_column(UtcDateTime)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    trail_seq: Mapped[int | None] = mapped_column(ForeignKey("trail_events.seq"))


class AuditResult(Base):
    """The result of one rule in one audit, stamped with what produced it.

    Each row repeats the pack (name, version, content hash), the model version and
    the dataset version, so that a result read on its own still says exactly
    which policy judged which model on which data.
    """

    __tablename__ = "audit_results"
    __table_args__ = (
        CheckConstraint("status IN ('pass', 'warn', 'fail', 'error', 'skipped')", name="status"),
        CheckConstraint("severity IN ('block', 'warn')", name="severity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    audit_run_id: Mapped[int] = mapped_column(ForeignKey("audit_runs.id"), index=True)
    rule_id: Mapped[str] = mapped_column(String(64))
    section: Mapped[str] = mapped_column(String(40))
    check_name: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[Any | None] = mapped_column(JsonType)
    threshold: Mapped[Any | None] = mapped_column(JsonType)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    legal_reference: Mapped[str | None] = mapped_column(String(500))
    pack_name: Mapped[str] = mapped_column(String(200))
    pack_version: Mapped[str] = mapped_column(String(100))
    pack_hash: Mapped[str] = mapped_column(String(128))
    model_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.version_id"))
    dataset_hash: Mapped[str | None] = mapped_column(String(128))
    pack_line: Mapped[int | None] = mapped_column(Integer)


class Deployment(Base):
    """A change of a model version's deployment stage."""

    __tablename__ = "deployments"
    __table_args__ = (CheckConstraint("stage IN ('shadow', 'canary', 'production', 'retired')", name="stage"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.version_id"), index=True)
    stage: Mapped[str] = mapped_column(String(20))
    previous_stage: Mapped[str | None] = mapped_column(String(20))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_now)
    actor: Mapped[str] = mapped_column(String(200))
    trail_seq: Mapped[int | None] = mapped_column(ForeignKey("trail_events.seq"))
    # The gate that allowed the move (revision 0010); NULL for a move no gate allows (into shadow).
    gate_pack: Mapped[str | None] = mapped_column(String(200))
    gate_pack_version: Mapped[str | None] = mapped_column(String(100))
    gate_pack_hash: Mapped[str | None] = mapped_column(String(128))
    gate_audit_id: Mapped[int | None] = mapped_column(Integer)
    """The ``audit_runs.id`` whose gate passed (no foreign key: added to a table SQLite cannot alter)."""
    gate_policy_id: Mapped[int | None] = mapped_column(Integer)
    """The ``deployment_policies.id`` binding in force when the gate ran (NULL before revision 0010)."""


# -- privacy, harmful content and serving (revision 0004) -----------------------------------
#
# No table below holds a raw subject id: a subject is always its pseudonym (see
# audits.subjects). Each row names the trail event that recorded it, or for rows that
# change (subject requests, cases, blocks) the event of their latest change.

CONSENT_STATUSES = ("granted", "denied", "withdrawn", "opted_out", "objected")
"""The statuses of a consent record (as in :mod:`governance.consent.state`)."""

CONSENT_RESTRICTIVENESS = {"granted": 0, "opted_out": 1, "objected": 2, "denied": 3, "withdrawn": 4}
"""Among records of one purpose with the same time, the most restrictive status wins."""

LAWFUL_BASES = ("consent", "legitimate_interest", "contract")
"""The lawful bases a consent record can be given under (GDPR Art. 6(1)(a), (f), (b))."""

CONSENT_SOURCES = ("api", "banner", "tcf", "gpc", "import")
"""Where a consent record came from."""

REQUEST_KINDS = ("access", "erasure", "objection", "retrain")
"""Data subject requests (GDPR Art. 15, 17, 21), and the full retrain an erasure calls for (revision 0008)."""

REQUEST_STATUSES = ("received", "in_progress", "completed", "failed")
"""A subject request's statuses; it moves received -> in_progress -> completed or failed."""

FLAG_SOURCES = ("metadata", "api", "model", "report")
"""Where a harmful-content flag on an item came from."""

CASE_SEVERITIES = ("low", "medium", "high", "critical")
CASE_STATUSES = ("open", "triaged", "resolved", "dismissed")
"""An escalation case moves open -> triaged -> resolved or dismissed (or straight from open)."""
CASE_ACTIONS = ("block", "unblock")

DECISION_MODES = ("personalized", "fallback", "non_profiling")
"""How a served list was made: from the subject's profile, a non-personal fallback, or on request without profiling (DSA Art. 38)."""

UUID_LENGTH = 36
ITEM_ID_LENGTH = 200


def _one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=column)


class ConsentRecordRow(Base):
    """One consent event of one subject (pseudonym) for one purpose: an append-only history.

    Triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL). Erasing a
    subject does not delete its rows: crypto-shredding (:func:`audits.shred_subject`)
    makes their pseudonym unlinkable (see :mod:`audits.consent`).
    """

    __tablename__ = "consent_records"
    __table_args__ = (
        _one_of("status", CONSENT_STATUSES),
        _one_of("lawful_basis", LAWFUL_BASES),
        _one_of("source", CONSENT_SOURCES),
        Index("ix_consent_records_subject", "subject", "purpose", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(HASH_LENGTH))
    """The subject's pseudonym."""
    jurisdiction: Mapped[str | None] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    lawful_basis: Mapped[str] = mapped_column(String(30))
    source: Mapped[str] = mapped_column(String(20))
    evidence: Mapped[dict[str, Any]] = mapped_column(JsonType)
    """What proves the record (GDPR Art. 7(1)): TCF string, GPC header, UI version; never a raw id."""
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))


class SubjectRequest(Base):
    """A data subject's access, erasure or objection request and where it stands."""

    __tablename__ = "subject_requests"
    __table_args__ = (_one_of("kind", REQUEST_KINDS), _one_of("status", REQUEST_STATUSES))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(HASH_LENGTH), index=True)
    """The subject's pseudonym when the request was opened."""
    status: Mapped[str] = mapped_column(String(20))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    deadline: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """When it reached ``completed`` or ``failed``."""
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    """What was done (models affected, residual influence, ...); never a raw id."""
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))
    """The trail event of the latest change."""


class ItemFlag(Base):
    """A harmful-content flag on an item (a category with a confidence)."""

    __tablename__ = "item_flags"
    __table_args__ = (
        _one_of("source", FLAG_SOURCES),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(ITEM_ID_LENGTH), index=True)
    category: Mapped[str] = mapped_column(String(100))
    confidence: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    active: Mapped[bool] = mapped_column(Boolean)
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))
    """The trail event of the latest change."""


class ItemReport(Base):
    """A user's report of an item (DSA notice), the reporter named only by pseudonym."""

    __tablename__ = "item_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(ITEM_ID_LENGTH), index=True)
    reporter: Mapped[str | None] = mapped_column(String(HASH_LENGTH))
    """The reporter's pseudonym, or NULL for an anonymous report."""
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))


class EscalationCase(Base):
    """A harmful-content case for human review: one per open (item, rule)."""

    __tablename__ = "escalation_cases"
    __table_args__ = (
        _one_of("severity", CASE_SEVERITIES),
        _one_of("status", CASE_STATUSES),
        _one_of("action", CASE_ACTIONS),
        # At most one case per (item, rule) that is still open or triaged.
        Index(
            "uq_escalation_cases_open",
            "item_id",
            "rule_id",
            unique=True,
            sqlite_where=text("status IN ('open', 'triaged')"),
            postgresql_where=text("status IN ('open', 'triaged')"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(ITEM_ID_LENGTH), index=True)
    rule_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10))
    sla_due: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resolution: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str | None] = mapped_column(String(10))
    """The latest action taken on the item through this case: ``block``, ``unblock`` or NULL."""
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))
    """The trail event of the latest change."""


class ItemBlock(Base):
    """The current block state of an item (one row per item ever blocked or unblocked)."""

    __tablename__ = "item_blocks"

    item_id: Mapped[str] = mapped_column(String(ITEM_ID_LENGTH), primary_key=True)
    blocked: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("escalation_cases.id"))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))


class DecisionRecord(Base):
    """One served list: who (pseudonym), how (mode, pack, model) and what (slate, context).

    Written in batches by :class:`audits.decisions.DecisionLog`; ``batch_seq`` is the
    trail event (``decisions.committed``) whose SHA-256 covers the batch's rows.
    """

    __tablename__ = "decisions"
    __table_args__ = (_one_of("mode", DECISION_MODES),)

    decision_id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    subject: Mapped[str | None] = mapped_column(String(HASH_LENGTH), index=True)
    """The subject's pseudonym, or NULL for an anonymous request."""
    mode: Mapped[str] = mapped_column(String(20))
    pack_name: Mapped[str] = mapped_column(String(200))
    pack_version: Mapped[str] = mapped_column(String(100))
    pack_hash: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str | None] = mapped_column(String(128))
    slate: Mapped[dict[str, Any]] = mapped_column(JsonType)
    """``{"items": [...], "scores": [...], "tags": ...}``."""
    context: Mapped[dict[str, Any]] = mapped_column(JsonType)
    batch_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"), index=True)


class FailedRequest(Base):
    """A request that could not be served as asked (EU AI Act Art. 12 logging); never a raw id."""

    __tablename__ = "failed_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    cause: Mapped[str] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]] = mapped_column(JsonType)
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))


# -- API keys (revisions 0005, 0011) ----------------------------------------------------------

LADDER_ROLES = ("viewer", "auditor", "operator", "admin")
"""The people's roles, from least to most privileged; each may do what the roles before it may."""
API_ROLES = (*LADDER_ROLES, "serving")
"""Every role a key may have: the ladder, and ``serving`` (a serving system's key) outside it.

What each role may do is :data:`governance.api.keys.ROLE_SCOPES`.
"""


class ApiKey(Base):
    """One API key of the REST API: who it is for, what it may do, and the hash of its token.

    The token itself is shown once, when the key is created, and never stored:
    ``key_hash`` is the hex SHA-256 of the token. A key is revoked by setting
    ``revoked_at``; revoked keys stay listed so the trail's ``key:<id>:<name>``
    actors can always be resolved.
    """

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("role IN ('viewer', 'auditor', 'operator', 'admin', 'serving')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(HASH_LENGTH), unique=True)
    """Hex SHA-256 of the token; the token itself is never stored."""
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# -- suppression (revision 0008) -------------------------------------------------------------


class Suppression(Base):
    """What must stay true of a subject after erasure, keyed so that it survives crypto-shredding.

    Shredding makes a new pseudonym for a returning subject, with no consent
    history: an opt-out or objection would be forgotten, and the raw logs
    recgov trains from would teach the subject to the next model again. A row
    here is found by ``lookup``, a keyed hash of the raw subject id under the
    installation key (a domain of its own, see :mod:`audits.suppression`), and
    says which purposes stay denied and that events up to ``erased_at`` are
    never learned again. Append-only (triggers refuse UPDATE and DELETE).
    """

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lookup: Mapped[str] = mapped_column(String(HASH_LENGTH), index=True)
    """HMAC-SHA256 of the subject id under the installation key (never the id itself)."""
    denied: Mapped[dict[str, Any]] = mapped_column(JsonType)
    """Purpose -> ``{"status", "lawful_basis"}``: the opt-outs and objections in force at erasure, which stay."""
    erased_at: Mapped[datetime] = mapped_column(UtcDateTime)
    """The subject's events up to this time are excluded from every later training run."""
    request_id: Mapped[int | None] = mapped_column(ForeignKey("subject_requests.id"))
    """The erasure request that wrote the row."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_now)
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))


__all__ += ["Suppression"]


# -- audit jobs (revision 0007) -----------------------------------------------------------------

AUDIT_JOB_STATUSES = ("queued", "running", "succeeded", "failed")
"""An audit job moves queued -> running -> succeeded or failed (a queued job may fail before it runs)."""


class AuditJob(Base):
    """An audit requested over the REST API and run in the background (see :mod:`audits.jobs`).

    The status lives here, not in the serving process: a job outlives the
    process that accepted it (a queued job starts again at the next startup).
    ``request`` holds the pack reference, the DATA spec and the options as
    asked; ``pack_hash`` the content hash of the pack when it was asked, so
    that a pack changed in between is refused rather than audited unknowingly.
    Each change of status is a trail event (``trail_seq`` names the latest).
    A running job is held on a lease that its runner renews (``heartbeat_at``).
    """

    __tablename__ = "audit_jobs"
    __table_args__ = (_one_of("status", AUDIT_JOB_STATUSES), Index("ix_audit_jobs_created_at", "created_at"))

    id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    """A random UUID: job ids are not guessable from one another."""
    status: Mapped[str] = mapped_column(String(20), index=True)
    request: Mapped[dict[str, Any]] = mapped_column(JsonType)
    """The request as accepted: ``pack``, ``model_version``, ``data``, ``slates``, ``baseline``, ``shadow``."""
    pack_hash: Mapped[str] = mapped_column(String(128))
    model_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.version_id"), index=True)
    requested_by: Mapped[str] = mapped_column(String(200))
    """The trail actor of the key that asked (``key:<id>:<name>``)."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    runner: Mapped[str | None] = mapped_column(String(200))
    """Which process runs or ran the job (``host:pid:token``), to tell a live job from an interrupted one."""
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """The runner's latest renewal of its lease on the running job (revision 0009): set at the claim,
    renewed while the audit runs. A running job whose heartbeat is older than the lease is failed as
    interrupted, whatever host it ran on. NULL for jobs never claimed (or claimed before 0009)."""
    audit_run_id: Mapped[int | None] = mapped_column(ForeignKey("audit_runs.id"), index=True)
    """The recorded audit, once the job has succeeded."""
    gate: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    """The gate document (``recgov.gate/v1``) of the recorded audit, once the job has succeeded."""
    error: Mapped[str | None] = mapped_column(Text)
    """One line: why the job failed."""
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))
    """The trail event of the latest change of status."""


__all__ += ["AuditJob", "AUDIT_JOB_STATUSES"]


# -- deployment policy (revision 0010) ---------------------------------------------------------

GATED_STAGES = ("canary", "production")
"""The stages a deployment policy binds to a pack: the ones that serve (shadow is never served)."""


class DeploymentPolicy(Base):
    """One binding of a gated stage to a pack and to what the gate's data must cover.

    Rows are only added, never changed: the binding in force for a stage is its
    latest row, and the rows before it are the policy's history. Each row names
    the trail event (``deployment.policy_set``) that recorded it. The pack is
    pinned by content hash: a promotion whose gate would run under any other
    content is refused (see :mod:`governance.deploy_policy`).
    """

    __tablename__ = "deployment_policies"
    __table_args__ = (_one_of("stage", GATED_STAGES), Index("ix_deployment_policies_stage", "stage", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[str] = mapped_column(String(20))
    pack_ref: Mapped[str] = mapped_column(String(300))
    """Where the pack is read from: a shipped name, or a stored pack as ``NAME@VERSION``."""
    pack_name: Mapped[str] = mapped_column(String(200))
    pack_version: Mapped[str] = mapped_column(String(100))
    pack_hash: Mapped[str] = mapped_column(String(128))
    """The content hash the installation reviewed: any other content is another pack."""
    min_events: Mapped[int] = mapped_column(BigInteger)
    min_users: Mapped[int] = mapped_column(Integer)
    dataset: Mapped[str] = mapped_column(String(128))
    """``training`` (the model's own training data), ``any``, or a recorded dataset content hash."""
    set_at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    trail_seq: Mapped[int] = mapped_column(ForeignKey("trail_events.seq"))


__all__ += ["DeploymentPolicy", "GATED_STAGES"]
