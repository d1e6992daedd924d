"""Audit jobs: audits asked for over the API (``POST /v1/audits``), run in the background.

A job is one request to audit (a pack, the data, a model version or logged
slates), accepted with ``202`` and a job id before any work is done. Its row in
the store (:mod:`audits.jobs`) is the truth about it, so that any server on the
database can answer for it and a restart loses nothing:

* ``queued``: accepted, its inputs checked against the installation's limits
  (:mod:`~governance.api.audit_jobs.input_limits`), waiting for a worker;
* ``running``: claimed by one runner, held on a lease the runner renews;
* ``succeeded``: its audit run, results and gate document recorded;
* ``failed``: with a one-line cause the caller can read (never a 500).

Where it runs. :mod:`~governance.api.audit_jobs.runner` keeps a bounded pool of
threads in the server; each thread claims a job and hands its work
(:mod:`~governance.api.audit_jobs.work`: load the pack as it was, load the data
from ``$RECGOV_HOME/data``, audit and record as the command line does) to a
child process of its own (:mod:`~governance.api.audit_jobs.process`, the
default) or runs it on the thread (``RECGOV_AUDIT_ISOLATION=thread``).

What ends it early. The memory budget (``RECGOV_AUDIT_MEMORY_BUDGET_MB``, the
child's address space) fails it with that reason; the time budget
(``RECGOV_AUDIT_TIME_BUDGET_S``) fails it and kills its child; a shutdown fails
the audits still running after ``RECGOV_AUDIT_SHUTDOWN_GRACE_S`` and leaves the
queued ones for the next start; a lease that expires (its server gone) lets any
other runner fail it as interrupted.
"""

from governance.api.audit_jobs.input_limits import SPEC_TOO_LARGE, check_input_size
from governance.api.audit_jobs.process import AUDIT_OVER_MEMORY, AUDIT_PROCESS_DIED, AuditFailed, IsolatedAudit
from governance.api.audit_jobs.runner import AUDIT_OVER_TIME, AUDIT_STOPPED, MAX_CONCURRENT_AUDITS, AuditRunner, failure_cause
from governance.api.audit_jobs.work import resolve_input, run_job

__all__ = [
    "AUDIT_OVER_MEMORY",
    "AUDIT_OVER_TIME",
    "AUDIT_PROCESS_DIED",
    "AUDIT_STOPPED",
    "MAX_CONCURRENT_AUDITS",
    "SPEC_TOO_LARGE",
    "AuditFailed",
    "AuditRunner",
    "IsolatedAudit",
    "check_input_size",
    "failure_cause",
    "resolve_input",
    "run_job",
]
