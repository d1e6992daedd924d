"""A Python client of the recgov compliance API, for a whole review over HTTP.

:class:`Client` wraps one ``httpx.Client`` with the caller's API key (keys are
made by an admin with ``recgov keys create NAME --role ROLE``) and has one
method per step of a review: packs and their exact text, audits (start, wait,
gate), deployments (promotion, rollback), consent imports, subject requests, the trail (events, verification, the signed export and the
signers' keys), the regulator's report, models and lineage, and the records
(GDPR Art. 30, DSA Art. 27). Every refusal of the API is raised as a
:class:`ClientError` that carries the problem document (RFC 9457), so a caller
reads the same ``detail`` and located ``errors`` the API sent.

The export is verified offline, on the caller's machine, by
:func:`audits.export.verify_export`: it trusts nothing in the file and checks the
signed header (the export's extent), the chain and a checkpoint covering its
last event against public keys the caller chose (by default the keys
``GET /v1/trail/keys`` answers; pass keys obtained over another channel to trust
the server less), with the defaults of ``recgov trail verify-export``.

Example
-------
>>> with Client("https://recgov.example", token) as api:                          # doctest: +SKIP
...     job = api.wait_for_audit(api.start_audit("eu-gdpr-dsa", data="events/2026-11.csv", model_version=mv)["id"])
...     api.download_report(mv, Path("report.html"))
...     export = api.download_trail_export(Path("trail.jsonl"))
...     assert api.verify_export(export).intact
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx

from audits.chain import TrailReport
from audits.export import verify_export

__all__ = ["AuditTimeout", "Client", "ClientError"]

DONE = ("succeeded", "failed")
NO_KEYS = "the API knows no key that signed a checkpoint or an export: ask an admin to sign one (POST /v1/trail/checkpoint) before verifying"
REPORT_SUFFIXES = {".html": "html", ".htm": "html", ".pdf": "pdf"}


class ClientError(Exception):
    """The API refused a request: ``status`` and the problem document it answered (``problem``)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        super().__init__(f"{status} {problem.get('title', 'Error')}: {problem.get('detail', '')}")

    @property
    def detail(self) -> str:
        """What went wrong, and what to do, as the API said."""
        return str(self.problem.get("detail", ""))


class AuditTimeout(TimeoutError):
    """An audit was still queued or running when the wait ran out; ``job`` is its last state."""

    def __init__(self, job: dict[str, Any], timeout: float) -> None:
        self.job = job
        super().__init__(f"audit job {job.get('id')} is still {job.get('status')} after {timeout:g} s; wait again or look at GET /v1/audits/{job.get('id')}")


def _problem(response: httpx.Response) -> dict[str, Any]:
    """The problem document of a refusal (a minimal one when the body is not JSON)."""
    try:
        document = response.json()
    except ValueError:
        document = None
    if isinstance(document, dict):
        return document
    return {"title": response.reason_phrase, "status": response.status_code, "detail": response.text[:500]}


class Client:
    """The compliance API at ``base_url``, called with ``api_key`` (a token ``rgk_...``).

    Use it as a context manager, or call :meth:`close`. ``transport`` is passed
    to ``httpx.Client`` (tests give an in-process one).
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 60.0, transport: httpx.BaseTransport | None = None) -> None:
        if not api_key:
            raise ValueError("an API key is needed: create one with 'recgov keys create NAME --role auditor'")
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    # -- plumbing ---------------------------------------------------------------------------------
    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            raise ClientError(response.status_code, _problem(response))
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def _download(self, path: str, target: Path, **kwargs: Any) -> Path:
        """Stream ``path`` into ``target`` (through a file beside it: a failed download leaves nothing)."""
        target = Path(target)
        partial = target.with_name(f".{target.name}.partial")
        with self._http.stream("GET", path, **kwargs) as response:
            if response.is_error:
                response.read()
                raise ClientError(response.status_code, _problem(response))
            with partial.open("wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
        partial.replace(target)
        return target

    # -- packs ------------------------------------------------------------------------------------
    def packs(self) -> list[dict[str, Any]]:
        """Every shipped pack and stored version: origin, ref, pack, pack_version, pack_hash."""
        return self._json("GET", "/v1/packs")["packs"]

    def validate_pack(self, text: str) -> dict[str, Any]:
        """Validate a pack's YAML; its identity, or a :class:`ClientError` (422) with every located issue."""
        return self._json("POST", "/v1/packs/validate", content=text.encode("utf-8"), headers={"Content-Type": "application/yaml"})

    def store_pack(self, text: str) -> dict[str, Any]:
        """Store a pack version (admin); ``created`` is false when that exact version was stored already."""
        return self._json("POST", "/v1/packs", content=text.encode("utf-8"), headers={"Content-Type": "application/yaml"})

    def pack_text(self, name: str, version: str) -> str:
        """A pack's exact text, as stored (or shipped)."""
        return self._send("GET", f"/v1/packs/{_segment(name)}/{_segment(version)}/text").text

    def diff_packs(self, name: str, before: str, after: str) -> dict[str, Any]:
        """What changed in stored pack ``name`` from version ``before`` to ``after``."""
        return self._json("GET", f"/v1/packs/{_segment(name)}/diff", params={"from": before, "to": after})

    # -- off-policy evaluation --------------------------------------------------------------------
    def evaluate_off_policy(self, logged_pack: str, target_pack: str, **options: Any) -> dict[str, Any]:
        """Estimate ``target_pack`` on the lists served under ``logged_pack`` (auditor), as ``recgov ope``; the stored
        report with its ``id``. ``options`` are the other fields of ``POST /v1/ope`` (``kinds``, ``min_ess``,
        ``n_bootstrap``, ``seed``, ``confidence``, ``limit``, ``segment_items``). A refused evaluation (a deterministic
        log, poor overlap, no analytics purpose) raises :class:`ClientError` (422) with each reason located."""
        return self._json("POST", "/v1/ope", json={"logged_pack": logged_pack, "target_pack": target_pack, **options})

    def off_policy_report(self, report_id: int) -> dict[str, Any]:
        """A stored off-policy report, read back from the trail."""
        return self._json("GET", f"/v1/ope/{int(report_id)}")

    # -- audits and the gate ----------------------------------------------------------------------
    def start_audit(self, pack: str, *, data: str, model_version: str | None = None, **options: Any) -> dict[str, Any]:
        """Queue an audit of ``data`` (and ``model_version``) under ``pack`` (auditor); the job, with its ``id``.

        ``options`` are the other fields of ``POST /v1/audits`` (``slates``, ``baseline``, ``shadow``, and
        ``ope_logged_pack`` with ``ope_provider_groups`` to judge the pack's off-policy rules on the decision log).
        """
        body = {"pack": pack, "data": data, **({"model_version": model_version} if model_version is not None else {}), **options}
        return self._json("POST", "/v1/audits", json=body)

    def audit(self, job_id: str) -> dict[str, Any]:
        """An audit job; once it has succeeded, its results, verdict and gate decision."""
        return self._json("GET", f"/v1/audits/{_segment(job_id)}")

    def wait_for_audit(self, job_id: str, *, timeout: float = 600.0, poll_s: float = 1.0) -> dict[str, Any]:
        """Poll the job until it has succeeded or failed; raise :class:`AuditTimeout` past ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.audit(job_id)
            if job["status"] in DONE:
                return job
            if time.monotonic() >= deadline:
                raise AuditTimeout(job, timeout)
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))

    def gate(self, job_id: str) -> dict[str, Any]:
        """The gate document (recgov.gate/v1) of a finished audit."""
        return self._json("GET", f"/v1/audits/{_segment(job_id)}/gate")

    def deployments(self) -> dict[str, list[dict[str, Any]]]:
        """Deployed model versions by stage, each with its gate and latest audit."""
        return self._json("GET", "/v1/deployments")

    def promote(
        self, model_version: str, stage: Literal["shadow", "canary", "production"], *, data: str | None = None, expected_production: str | None = None
    ) -> dict[str, Any]:
        """Move a model version one stage on, through the gate (admin).

        A refusal of the gate (``gate-refused``), of the deployment policy (``deployment-policy``) or of a
        move out of order (``deployment-state``) is a 409 :class:`ClientError`; its ``problem["type"]`` says which.
        ``expected_production``: move only if that version is in production (else 409 ``production-changed``).
        """
        body = {"stage": stage, **({"data": data} if data is not None else {}), **({"expected_production": expected_production} if expected_production is not None else {})}
        return self._json("POST", f"/v1/deployments/{_segment(model_version)}/promote", json=body)

    def rollback(self, *, expected_production: str | None = None) -> dict[str, Any]:
        """Restore the previous production version (admin); nothing to restore is a 409 ``deployment-state``.

        ``expected_production``: roll back only from that version; if production moved meanwhile (another
        rollback came first), a 409 ``production-changed`` and nothing changes.
        """
        if expected_production is None:
            return self._json("POST", "/v1/deployments/rollback")
        return self._json("POST", "/v1/deployments/rollback", json={"expected_production": expected_production})

    # -- consent ----------------------------------------------------------------------------------
    def import_consent(
        self, export: str | bytes, *, fmt: Literal["csv", "jsonl"], pack: str | None = None, mapping: str | None = None, name: str = "upload"
    ) -> dict[str, Any]:
        """Import a consent-management platform's export (operator), as ``recgov consent import``: the report.

        ``mapping`` is ``field=column,...`` (as ``--map``); refused rows are listed in the report, and a
        body that is not a table of ``fmt`` is a 422 :class:`ClientError` locating the fault.
        """
        params = {"format": fmt, "name": name, **({"pack": pack} if pack else {}), **({"map": mapping} if mapping else {})}
        media = "text/csv" if fmt == "csv" else "application/x-ndjson"
        body = export.encode("utf-8") if isinstance(export, str) else export
        return self._json("POST", "/v1/consent-imports", params=params, content=body, headers={"Content-Type": media})

    # -- the trail --------------------------------------------------------------------------------
    def trail_events(
        self, *, action: str | None = None, since: datetime | None = None, until: datetime | None = None, page_size: int = 500
    ) -> Iterator[dict[str, Any]]:
        """Every trail event that matches, in sequence order, page after page (the cursor is followed for you)."""
        params: dict[str, Any] = {"limit": page_size}
        params.update({k: v for k, v in (("action", action), ("since", since and since.isoformat()), ("until", until and until.isoformat())) if v})
        after: int | None = 0
        while after is not None:
            page = self._json("GET", "/v1/trail/events", params={**params, "after": after})
            yield from page["events"]
            after = page["next_after"]

    # -- subject requests -------------------------------------------------------------------------
    def subject_requests(
        self, *, kind: str | None = None, status: str | None = None, overdue: bool = False, page_size: int = 500
    ) -> Iterator[dict[str, Any]]:
        """Every subject request that matches (auditor), oldest first, page after page (the cursor is followed for you);
        subjects by pseudonym only. ``overdue``: only those still open past their deadline."""
        params: dict[str, Any] = {"limit": page_size, **({"kind": kind} if kind else {}), **({"status": status} if status else {})}
        if overdue:
            params["overdue"] = "true"
        after: int | None = 0
        while after is not None:
            page = self._json("GET", "/v1/requests", params={**params, "after": after})
            yield from page["requests"]
            after = page["next_after"]

    def verify_trail(self) -> dict[str, Any]:
        """The server's verification of the whole trail, its checkpoints and every record it anchors (auditor):
        ``intact`` is true only when all of it holds (``trail_intact``: the chain alone)."""
        return self._json("GET", "/v1/trail/verify")

    def checkpoint(self) -> dict[str, Any]:
        """Verify the trail and every record it anchors, then sign its head (admin); 409 when any of it fails."""
        return self._json("POST", "/v1/trail/checkpoint")

    def trail_keys(self) -> list[dict[str, Any]]:
        """The public keys that signed checkpoints: key_id, public_key_pem, jwk, checkpoints."""
        return self._json("GET", "/v1/trail/keys")["keys"]

    def download_trail_export(self, target: Path, *, signed_only: bool = False) -> Path:
        """Download the signed export of the whole trail to ``target`` (auditor).

        ``signed_only``: end it at the last signed checkpoint, so that it verifies whole (no unsigned tail)."""
        params = {"signed_only": "true"} if signed_only else None
        return self._download("/v1/trail/export", target, params=params)

    def verify_export(
        self,
        export: Path,
        public_keys: str | Sequence[str] | None = None,
        *,
        allow_unsigned_tail: bool = False,
        allow_unsigned_header: bool = False,
    ) -> TrailReport:
        """Verify a downloaded export offline (:func:`audits.export.verify_export`), as ``recgov trail verify-export`` does.

        ``public_keys``: PEM keys to trust (one or several); default: every key
        :meth:`trail_keys` lists (the keys that signed checkpoints or export
        headers). The export is intact when its header is signed by one of them
        and the file holds exactly the extent it signs, its chain holds, and a
        checkpoint by one of them covers its last event. Events after the last
        checkpoint fail (``unsigned_tail``) unless ``allow_unsigned_tail``; a
        version 1 export (unsigned header) fails (``unsigned_header``) unless
        ``allow_unsigned_header``, and then its ``extent`` says what it proves.
        """
        if public_keys is None:
            public_keys = [k["public_key_pem"] for k in self.trail_keys()]
        keys = [public_keys] if isinstance(public_keys, str) else list(public_keys)
        if not keys:
            raise ValueError(NO_KEYS)
        return verify_export(
            Path(export), keys, signed_to_the_end=not allow_unsigned_tail, signed_header=not allow_unsigned_header
        )

    # -- models, the report and the records -------------------------------------------------------
    def models(self, *, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        """A page of model versions, newest first: ``models``, ``total``, ``limit``, ``offset``."""
        return self._json("GET", "/v1/models", params={"limit": limit, "offset": offset})

    def model(self, version: str) -> dict[str, Any]:
        """A model version's summary and its lineage."""
        return self._json("GET", f"/v1/models/{_segment(version)}")

    def lineage(self, model_version: str) -> dict[str, Any]:
        """The chain from data to deployments of a model version."""
        return self._json("GET", f"/v1/lineage/{_segment(model_version)}")

    def download_report(self, model_version: str, target: Path, *, pack: str | None = None) -> Path:
        """The regulator's report of ``model_version``, as HTML or PDF after ``target``'s suffix (auditor)."""
        kind = REPORT_SUFFIXES.get(Path(target).suffix.lower())
        if kind is None:
            raise ValueError(f"the report is written as .html or .pdf; got {str(target)!r}")
        params = {"format": kind, **({"pack": pack} if pack is not None else {})}
        return self._download(f"/v1/reports/{_segment(model_version)}", Path(target), params=params)

    def processing_record(self, pack: str, *, recipients: Sequence[str] | None = None) -> dict[str, Any]:
        """The record of processing activities (GDPR Art. 30) under ``pack`` (auditor)."""
        return self._json("GET", "/v1/records/processing", params={"pack": pack, "recipient": list(recipients or [])})

    def disclosure(self, pack: str, *, model_version: str | None = None) -> dict[str, Any]:
        """The DSA Art. 27 disclosure under ``pack``, with ``model_version``'s parameters when given."""
        params = {"pack": pack, **({"model_version": model_version} if model_version is not None else {})}
        return self._json("GET", "/v1/records/disclosure", params=params)

    def consent_state(self, subject: str, pack: str) -> dict[str, Any]:
        """``subject``'s consent judged under ``pack``: each purpose's verdict, the records in force, the history (operator).

        The id goes in the request body, never in a URL; the answer names the subject by pseudonym.
        """
        return self._json("POST", "/v1/consent-state", json={"subject": subject, "pack": pack})

    def datasets(self) -> dict[str, Any]:
        """The data sets an audit may use on the installation: files under its data folder, the generator's limits, recorded sets (auditor)."""
        return self._json("GET", "/v1/datasets")

    # -- experiments ------------------------------------------------------------------------------
    def plan_experiment(self, text: str) -> dict[str, Any]:
        """Plan an experiment from its YAML (admin): validated, sized and frozen; a :class:`ClientError` 422 lists every located problem."""
        return self._json("POST", "/v1/experiments", content=text.encode("utf-8"), headers={"Content-Type": "application/yaml"})

    def experiments(self) -> list[dict[str, Any]]:
        """Every experiment and its state."""
        return self._json("GET", "/v1/experiments")["experiments"]

    def experiment(self, name: str) -> dict[str, Any]:
        """One experiment as frozen, with its looks (not a look at the data)."""
        return self._json("GET", f"/v1/experiments/{_segment(name)}")

    def start_experiment(self, name: str, *, plan_hash: str | None = None) -> dict[str, Any]:
        """Start a planned experiment (admin); 409 if it changed since it was frozen (or ``plan_hash`` is not the frozen one)."""
        return self._json("POST", f"/v1/experiments/{_segment(name)}/start", json={"plan_hash": plan_hash} if plan_hash else {})

    def stop_experiment(self, name: str) -> dict[str, Any]:
        """Stop a running experiment (admin)."""
        return self._json("POST", f"/v1/experiments/{_segment(name)}/stop")

    def experiment_status(self, name: str) -> dict[str, Any]:
        """Subjects per variant and reason, and the SRM check (a look at the data, on the trail; auditor)."""
        return self._json("GET", f"/v1/experiments/{_segment(name)}/status")

    def analyze_experiment(self, name: str, *, metric: str | None = None, segment: str | None = None) -> dict[str, Any]:
        """One look at the data (auditor): planned, or labelled exploratory for another metric, a segment or a look too many."""
        body = {k: v for k, v in (("metric", metric), ("segment", segment)) if v is not None}
        return self._json("POST", f"/v1/experiments/{_segment(name)}/analyses", json=body)


def _segment(value: str) -> str:
    """``value`` as one path segment (a '/' or '?' in an id must not change the path)."""
    return quote(str(value), safe="")
