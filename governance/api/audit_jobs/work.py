"""A job's work: what the job asked for, audited as the command line audits it (the pack as it was, the data under ``$RECGOV_HOME/data``).

Shared by the runner's thread (``RECGOV_AUDIT_ISOLATION=thread``) and the
child process a job runs in by default (:mod:`governance.api.audit_jobs.process`).
Files named in a request are read only from ``$RECGOV_HOME/data``
(:func:`resolve_input`); ``synthetic:...`` specs work as on the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from governance import audit
from governance import packs as pack_store
from recommender.errors import ConfigError, DataError
from recommender.loaders import load_data

__all__ = ["SYNTHETIC", "off_policy_input", "resolve_input", "run_job"]

SYNTHETIC = "synthetic"


def resolve_input(spec: str, data_dir: Path) -> str:
    """``spec`` as the loader takes it: a synthetic spec unchanged, a file as its path under ``data_dir``.

    Raises
    ------
    DataError
        The file is outside ``data_dir`` or does not exist (the message says which).
    """
    if spec == SYNTHETIC or spec.startswith(SYNTHETIC + ":"):
        return spec
    root = data_dir.resolve()
    try:
        path = (root / spec).resolve()
        inside = path.is_relative_to(root)
        found = inside and path.exists()
    except OSError as err:  # a name too long for the file system, say
        raise DataError(f"{spec!r} is not a usable path: {err.strerror or err}") from None
    if not inside:
        raise DataError(f"{spec!r} is outside $RECGOV_HOME/data ({data_dir}); the API reads files only from there (or use synthetic:...)")
    if not found:
        raise DataError(f"{spec!r}: no such file or folder under $RECGOV_HOME/data ({data_dir})")
    return str(path)


def run_job(store: Any, settings: Any, job_id: str, request: dict[str, Any], pack_hash: str, actor: str) -> audit.AuditOutcome:
    """Load the pack (as it was when asked for) and the data, then run and record the job's audit as the CLI does.

    ``governance.audit`` is called through the module, so that a test may replace its functions.
    """
    loaded = pack_store.load_ref(settings.packs_dir, request["pack"])
    if loaded.content_hash != pack_hash:
        raise ConfigError(
            f"pack {request['pack']!r} has changed since the audit was asked for (hash {pack_hash[:12]}... then, "
            f"{loaded.content_hash[:12]}... now); start a new audit"
        )
    off_policy = off_policy_input(settings, request)  # before the data is read, as on the command line
    data_dir = settings.home / "data"
    dataset = load_data(resolve_input(request["data"], data_dir))
    baseline = load_data(resolve_input(request["baseline"], data_dir)) if request.get("baseline") else None
    out_dir = settings.home / "audits" / job_id
    if request.get("slates"):
        slates = Path(resolve_input(request["slates"], data_dir))
        return audit.run_slate_audit(
            loaded, dataset, slates, store=store, out_dir=out_dir, baseline=baseline, shadow=request["shadow"], actor=actor,
            off_policy=off_policy,
        )
    return audit.run_audit(
        loaded, dataset, store=store, out_dir=out_dir, models_dir=settings.home / "models",
        model_version=request.get("model_version"), train=False, baseline=baseline, shadow=request["shadow"], actor=actor,
        off_policy=off_policy,
    )  # fmt: skip


def off_policy_input(settings: Any, request: dict[str, Any]) -> audit.OffPolicyInput | None:
    """The job's off-policy input (``ope_logged_pack``, ``ope_provider_groups``), or None when it asked for none.

    Raises ConfigError when the logged pack's content is not what it was when the job was asked for: the
    decisions it reads are those recorded with that content hash, so another content is another evaluation.
    """
    ref = request.get("ope_logged_pack")
    if ref is None:
        return None
    logged = pack_store.load_ref(settings.packs_dir, ref)
    asked = request.get("ope_logged_pack_hash")
    if logged.content_hash != asked:
        raise ConfigError(
            f"the logged pack {ref!r} has changed since the audit was asked for (hash {str(asked)[:12]}... then, "
            f"{logged.content_hash[:12]}... now); start a new audit"
        )
    groups = request.get("ope_provider_groups") or {}
    return audit.OffPolicyInput(logged, {name: frozenset(items) for name, items in groups.items()} or None)
