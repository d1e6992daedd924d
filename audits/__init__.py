"""recgov's store: the SQL schema, the tamper-evident audit trail and lineage records.

Open a store and work in transactions::

    from audits import open_store, record_dataset_version, append_event, pseudonym

    store = open_store()              # RECGOV_DATABASE_URL, else $RECGOV_HOME/recgov.db
    with store.session() as session:  # one transaction
        who = pseudonym(session, "user-42")
        append_event(session, actor="serving", action="decision.served", subject=who,
                     objects={"model": "3f2a..."}, payload={"items": [1, 2, 3]})

See ``docs/store.md`` for where things live, the trail's hash construction,
checkpoints and offline verification, and crypto-shredding.
"""

from audits.checkpoints import CheckpointRecord, create_checkpoint, list_checkpoints
from audits.consent import consent_history, consent_states, effective_consent, lookup_pseudonyms, record_consent
from audits.db import Store, open_store
from audits.decisions import DecisionLog, DecisionReceipt, log_failure, verify_decisions
from audits.export import ExportSummary, export_trail, verify_export
from audits.harm import (
    block_item,
    blocked_items,
    flag_item,
    flags_for,
    list_cases,
    open_case,
    report_counts,
    report_item,
    set_flag_active,
    transition_case,
)
from audits.keys import SigningKey, load_signing_key, rotate_signing_key
from audits.lineage import (
    current_code_version,
    lineage_of,
    record_audit_run,
    record_carbon,
    record_dataset_version,
    record_deployment,
    record_model_version,
    record_training_run,
)
from audits.models import (
    AuditRun,
    DatasetVersion,
    Deployment,
    ModelVersion,
    TrainingRun,
)
from audits.requests import count_requests, list_requests, open_request, page_requests, update_request
from audits.subjects import pseudonym, shred_subject
from audits.trail import AppendResult, EventRecord, NewEvent, append_event, append_many, read_head
from audits.verify import StoreReport, TrailReport, verify_and_checkpoint, verify_store, verify_trail

__all__ = [
    "open_store",
    "Store",
    # trail
    "NewEvent",
    "EventRecord",
    "AppendResult",
    "append_event",
    "append_many",
    "read_head",
    "verify_trail",
    "verify_store",
    "verify_and_checkpoint",
    "TrailReport",
    "StoreReport",
    "pseudonym",
    "shred_subject",
    # checkpoints and export
    "SigningKey",
    "load_signing_key",
    "rotate_signing_key",
    "CheckpointRecord",
    "create_checkpoint",
    "list_checkpoints",
    "ExportSummary",
    "export_trail",
    "verify_export",
    # lineage
    "DatasetVersion",
    "TrainingRun",
    "ModelVersion",
    "AuditRun",
    "Deployment",
    "record_dataset_version",
    "record_training_run",
    "record_model_version",
    "record_audit_run",
    "record_deployment",
    "record_carbon",
    "lineage_of",
    "current_code_version",
    # consent history
    "record_consent",
    "consent_history",
    "effective_consent",
    "consent_states",
    "lookup_pseudonyms",
    # subject requests
    "open_request",
    "update_request",
    "list_requests",
    "page_requests",
    "count_requests",
    # harmful content
    "flag_item",
    "set_flag_active",
    "report_item",
    "open_case",
    "transition_case",
    "block_item",
    "blocked_items",
    "flags_for",
    "report_counts",
    "list_cases",
    # served decisions
    "DecisionLog",
    "DecisionReceipt",
    "verify_decisions",
    "log_failure",
]
