"""Consent: who may be profiled, for which purpose (GDPR Art. 6, 7, 21; CCPA §1798.120; IAB TCF v2.2).

Pure logic, no I/O: the records come from the store and the signals from the
request, both through the caller.

* :func:`may_profile` -- the decision, from the pack's ``consent`` section, the
  subject's :class:`ConsentRecord` history and the request's signals;
* :func:`effective_state` -- the record in force per purpose;
* :func:`gpc_opt_out` -- the ``Sec-GPC: 1`` header;
* :func:`decode_tc_string`, :func:`tcf_allows_profiling` -- IAB TCF v2 TC strings.

Consent histories in bulk, from another system's export, are the one part that
reads files and writes to the store, each step a module of its own:
:mod:`~governance.consent.import_table` reads a CSV, JSON Lines or Parquet
export into mapped columns, :mod:`~governance.consent.import_rows` judges every
row (pure), and :mod:`~governance.consent.imports` appends the valid ones in
batches through :func:`audits.consent.append_consent_batch`;
:mod:`~governance.consent.synthetic_export` makes such an export for a data set.
"""

from governance.consent.gpc import GPC_HEADER, gpc_opt_out
from governance.consent.state import ConsentRecord, ProfilingDecision, effective_state, may_profile
from governance.consent.tcf import TcfDecision, TCString, decode_tc_string, tcf_allows_profiling

__all__ = [
    "GPC_HEADER",
    "ConsentRecord",
    "ProfilingDecision",
    "TCString",
    "TcfDecision",
    "decode_tc_string",
    "effective_state",
    "gpc_opt_out",
    "may_profile",
    "tcf_allows_profiling",
]
