"""The store's tables as SQLAlchemy 2 typed models, one module per domain.

The schema is created and changed only by the Alembic migrations in
``migrations/versions``; a test checks that these models and the migrations agree.

Every table is declared on the one :class:`~audits.models.base.Base`, whose
``MetaData`` (with the constraint naming convention of the migrations) is the
whole schema: importing this package imports every domain module below, so
``Base.metadata`` holds every table, and that is what Alembic's ``env.py`` reads.
The domains, in the order a model's life passes through them:

* :mod:`~audits.models.trail`: the append-only audit trail, its head, signed
  checkpoints and their keys, pseudonym secrets, facts about the store;
* :mod:`~audits.models.lineage`: ``dataset_versions`` -> ``training_runs`` ->
  ``model_versions`` -> ``audit_runs`` (with ``audit_results``);
* :mod:`~audits.models.deployments`: stage changes of model versions and the
  deployment policy that gates them;
* :mod:`~audits.models.privacy`: consent records, data subject requests and the
  suppressions that outlive an erasure;
* :mod:`~audits.models.harm`: item flags and reports, escalation cases, blocks;
* :mod:`~audits.models.availability`: items out of stock, withdrawn or restricted in a region;
* :mod:`~audits.models.decisions`: served lists and failed requests;
* :mod:`~audits.models.online_store`: invalidations of the online store (Redis) not yet applied there;
* :mod:`~audits.models.outcomes`: what happened after a list was served (feedback);
* :mod:`~audits.models.keys` and :mod:`~audits.models.jobs`: the REST API's keys
  and its background audit jobs.

Tables refer to one another by foreign keys named as strings (``"trail_events.seq"``),
so the domain modules import only the base, never each other. Every name is
exported here: ``from audits.models import X`` is the import path to use.
"""

from __future__ import annotations

from audits.models.base import (
    HASH_LENGTH,
    ITEM_ID_LENGTH,
    NAMING_CONVENTION,
    TIME_LENGTH,
    UUID_LENGTH,
    Base,
    JsonType,
    SeqType,
    UtcDateTime,
)
from audits.models.availability import AVAILABILITY_REASONS, EVERYWHERE, ItemAvailability
from audits.models.decisions import DECISION_MODES, DecisionRecord, FailedRequest
from audits.models.deployments import DEPLOYMENT_STAGES, GATED_STAGES, Deployment, DeploymentPolicy
from audits.models.experiments import EXPERIMENT_STATUSES, LOOK_KINDS, Experiment, ExperimentLook
from audits.models.harm import (
    CASE_ACTIONS,
    CASE_SEVERITIES,
    CASE_STATUSES,
    FLAG_SOURCES,
    EscalationCase,
    ItemBlock,
    ItemFlag,
    ItemReport,
)
from audits.models.jobs import AUDIT_JOB_STATUSES, AuditJob
from audits.models.keys import API_ROLES, LADDER_ROLES, ApiKey
from audits.models.lineage import (
    AUDIT_VERDICTS,
    RESULT_STATUSES,
    AuditResult,
    AuditRun,
    DatasetVersion,
    ModelVersion,
    TrainingRun,
)
from audits.models.exposure import ExposureLedgerRow
from audits.models.monitoring import TERMINAL_TICKET_STATES, TICKET_STATES, ModelProfile, MonitorRun, RetrainTicket
from audits.models.online_store import OUTBOX_EVERYONE, OnlineStoreOutbox
from audits.models.outcomes import ATTRIBUTED, ATTRIBUTIONS, OUTCOME_KINDS, OUTCOME_SOURCES, UNATTRIBUTED, OutcomeEvent
from audits.models.privacy import (
    CONSENT_RESTRICTIVENESS,
    CONSENT_SOURCES,
    CONSENT_STATUSES,
    LAWFUL_BASES,
    REQUEST_KINDS,
    REQUEST_STATUSES,
    ConsentRecordRow,
    SubjectRequest,
    Suppression,
)
from audits.models.trail import (
    SigningKeyRecord,
    StoreMeta,
    SubjectSecret,
    TrailCheckpoint,
    TrailEvent,
    TrailHead,
)

__all__ = [
    "Base",
    # column types and sizes shared by the tables
    "UtcDateTime",
    "JsonType",
    "SeqType",
    "NAMING_CONVENTION",
    "HASH_LENGTH",
    "TIME_LENGTH",
    "UUID_LENGTH",
    "ITEM_ID_LENGTH",
    # the audit trail
    "TrailEvent",
    "TrailHead",
    "TrailCheckpoint",
    "SigningKeyRecord",
    "SubjectSecret",
    "StoreMeta",
    # lineage
    "DatasetVersion",
    "TrainingRun",
    "ModelVersion",
    "AuditRun",
    "AuditResult",
    "RESULT_STATUSES",
    "AUDIT_VERDICTS",
    # deployments
    "Deployment",
    "DeploymentPolicy",
    "DEPLOYMENT_STAGES",
    "GATED_STAGES",
    # privacy
    "ConsentRecordRow",
    "SubjectRequest",
    "Suppression",
    "CONSENT_STATUSES",
    "CONSENT_RESTRICTIVENESS",
    "LAWFUL_BASES",
    "CONSENT_SOURCES",
    "REQUEST_KINDS",
    "REQUEST_STATUSES",
    # availability
    "ItemAvailability",
    "AVAILABILITY_REASONS",
    "EVERYWHERE",
    # harmful content
    "ItemFlag",
    "ItemReport",
    "EscalationCase",
    "ItemBlock",
    "FLAG_SOURCES",
    "CASE_SEVERITIES",
    "CASE_STATUSES",
    "CASE_ACTIONS",
    # experiments
    "Experiment",
    "ExperimentLook",
    "EXPERIMENT_STATUSES",
    "LOOK_KINDS",
    # serving
    "DecisionRecord",
    "FailedRequest",
    "DECISION_MODES",
    # feedback
    "OutcomeEvent",
    # monitoring and the model lifecycle
    "MonitorRun",
    "ExposureLedgerRow",
    "OUTBOX_EVERYONE",
    "OnlineStoreOutbox",
    "ModelProfile",
    "RetrainTicket",
    "TICKET_STATES",
    "TERMINAL_TICKET_STATES",
    "OUTCOME_KINDS",
    "OUTCOME_SOURCES",
    "ATTRIBUTIONS",
    "ATTRIBUTED",
    "UNATTRIBUTED",
    # the REST API's keys and jobs
    "ApiKey",
    "LADDER_ROLES",
    "API_ROLES",
    "AuditJob",
    "AUDIT_JOB_STATUSES",
]
