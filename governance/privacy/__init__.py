"""The DPO's work: consent in training, subject access and erasure, the record of processing.

The procedures live in :mod:`governance.privacy.erasure`; this package names
the public ones, so that ``from governance.privacy import erase_subject`` keeps
working wherever it is written.
"""

from __future__ import annotations

from governance.privacy.erasure import (
    CANNOT_RETRAIN,
    EXCLUSION_REASONS,
    REQUEST_DEADLINE_DAYS,
    RESIDUAL_MAX_INTERACTIONS,
    TCF_NOT_A_SOURCE,
    TCF_OLDER_THAN_RECORD,
    erase_subject,
    export_subject,
    filter_training_events,
    pending_retrains,
    processing_record,
    record_consent_from_request,
    record_consent_under_pack,
    request_deadline,
    run_retrains,
    show_consent,
)

__all__ = [
    "CANNOT_RETRAIN",
    "EXCLUSION_REASONS",
    "REQUEST_DEADLINE_DAYS",
    "RESIDUAL_MAX_INTERACTIONS",
    "TCF_NOT_A_SOURCE",
    "TCF_OLDER_THAN_RECORD",
    "erase_subject",
    "export_subject",
    "filter_training_events",
    "pending_retrains",
    "processing_record",
    "record_consent_from_request",
    "record_consent_under_pack",
    "request_deadline",
    "run_retrains",
    "show_consent",
]
