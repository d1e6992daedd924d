"""The DPO's work: consent in training, subject access and erasure, the record of processing.

Library functions over the store (:mod:`audits`) and the pure consent logic
(:mod:`governance.consent`); the command line (:mod:`governance.cli.consent`,
:mod:`governance.cli.subjects`, :mod:`governance.cli.retrain`,
:mod:`governance.cli.processing`) and the API call them. One module per right:

* :func:`filter_training_events` (in :mod:`governance.training_filter`, named
  here too) -- privacy by construction: a training set holds only events of
  subjects the pack allows to be profiled and only events younger than
  ``minimization.retention_days``. It stays outside this package because
  :mod:`governance.training` reads it and the retrains here call training.
* :mod:`~governance.privacy.consent` -- :func:`show_consent`,
  :func:`record_consent_under_pack`, and :func:`record_consent_from_request`
  (the ``Sec-GPC: 1`` signal and a TCF string as consent records).
* :mod:`~governance.privacy.access` -- GDPR Art. 15 and 20:
  :func:`export_subject`, what recgov holds about a subject.
* :mod:`~governance.privacy.erasure` -- GDPR Art. 17: :func:`erase_subject`
  unlearns the subject from a model artifact, lists the models that may still
  hold them, records it all, then crypto-shreds the subject's pseudonym secret.
* :mod:`~governance.privacy.retrains` -- :func:`pending_retrains` and
  :func:`run_retrains`, the full retrain an erasure calls for within the pack's
  ``consent.requests.retrain_days``.
* :mod:`~governance.privacy.record` -- GDPR Art. 30: :func:`processing_record`.
* :mod:`~governance.privacy.common` -- what they share: the pack and its stamp,
  the moment (from :mod:`governance.privacy_common`, shared with the training
  filter), the subject key, request deadlines (:func:`request_deadline`),
  and the raw-id guard.

The dependencies run one way: every right imports ``common``; access reads the
consent history and the models an erasure would list; an erasure may run the
retrains; nothing imports this package's ``__init__`` from inside it.

The raw-id guard's rule: subjects reach the store only as pseudonyms (the
:mod:`audits` functions see to it), and nothing here writes a raw subject id to
a table, a trail payload, a request result or an exception message
(:func:`governance.privacy.common.guard` and ``scrubbed`` enforce it). The one
place a raw id appears is the access export, which goes to the subject who asked.

This package names the public functions, so ``from governance.privacy import
erase_subject`` works wherever it is written.
"""

from __future__ import annotations

from governance.privacy.access import EXPORT_FORMAT, export_subject
from governance.privacy.common import REQUEST_DEADLINE_DAYS, request_deadline
from governance.privacy.consent import (
    TCF_NOT_A_SOURCE,
    TCF_OLDER_THAN_RECORD,
    WITHDRAWAL_STATUSES,
    record_consent_from_request,
    request_signals_unchanged,
    record_consent_under_pack,
    show_consent,
)
from governance.privacy.erasure import erase_subject
from governance.privacy.record import DEFAULT_RECIPIENTS, processing_record
from governance.privacy.retrains import CANNOT_RETRAIN, pending_retrains, run_retrains
from governance.privacy.unlearning import RESIDUAL_MAX_INTERACTIONS
from governance.training_filter import EXCLUSION_REASONS, filter_training_events

__all__ = [
    "CANNOT_RETRAIN",
    "DEFAULT_RECIPIENTS",
    "EXCLUSION_REASONS",
    "EXPORT_FORMAT",
    "REQUEST_DEADLINE_DAYS",
    "RESIDUAL_MAX_INTERACTIONS",
    "TCF_NOT_A_SOURCE",
    "TCF_OLDER_THAN_RECORD",
    "WITHDRAWAL_STATUSES",
    "erase_subject",
    "export_subject",
    "filter_training_events",
    "pending_retrains",
    "processing_record",
    "record_consent_from_request",
    "record_consent_under_pack",
    "request_deadline",
    "request_signals_unchanged",
    "run_retrains",
    "show_consent",
]
