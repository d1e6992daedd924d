"""OpenLineage run events for a model's training run and each of its audits.

Each run gets a START and a COMPLETE event (OpenLineage 2-0-2 ``RunEvent``): job
namespace ``recgov``, name ``train`` or ``audit``; input the data set (namespace
``recgov``, name its content hash), output the model version. Custom run facets
carry the policy (``recgov_policy``), the audit outcome (``recgov_audit``) and the
carbon figures (``recgov_carbon``: kWh and kg CO2eq with the method, or ``measured: false`` when the run was
not measured, never zeros). Run ids are UUIDs derived from the store's run
ids (UUID5), so exporting twice gives the same ids. Plain dicts: no dependency on
``openlineage-python`` at run time (the tests validate with its model classes).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

__all__ = ["NAMESPACE", "PRODUCER", "SCHEMA_URL", "carbon_facet", "openlineage_events", "run_uuid", "write_jsonl"]

NAMESPACE = "recgov"
PRODUCER = "https://github.com/recgov/recgov"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
FACET_SCHEMA = "https://recgov.dev/schemas/openlineage/{name}-facet-v1.json"
_RUN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://recgov.dev/openlineage/runs")


def run_uuid(kind: str, run_id: Any, model_version: str) -> str:
    """A UUID for store run ``run_id`` of ``kind`` (``train``/``audit``): the same inputs, the same UUID."""
    return str(uuid.uuid5(_RUN_NAMESPACE, f"{kind}:{model_version}:{run_id}"))


def _facet(name: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": FACET_SCHEMA.format(name=name), **fields}


def _zulu(iso: str) -> str:
    return iso.replace("+00:00", "Z")


def _event(
    kind: str, state: str, time: str, run_id: str, facets: dict[str, Any], inputs: list[Any], outputs: list[Any]
) -> dict[str, Any]:
    return {
        "eventType": state,
        "eventTime": _zulu(time),
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
        "run": {"runId": run_id, "facets": facets},
        "job": {"namespace": NAMESPACE, "name": kind, "facets": {}},
        "inputs": inputs,
        "outputs": outputs,
    }


def carbon_facet(run: dict[str, Any]) -> dict[str, Any]:
    """The training run's energy and emissions with their units and method; a run not measured says so.

    ``measured`` is false and the figures null when the store holds none (``--no-carbon``, or codecarbon measured
    nothing): a consumer summing the facets must not read a missing measurement as zero.
    """
    measured = run.get("energy_kwh") is not None and run.get("emissions_kg") is not None
    return _facet(
        "carbon",
        measured=measured,
        energyKwh=run["energy_kwh"] if measured else None,
        emissionsKg=run["emissions_kg"] if measured else None,
        energyUnit="kWh",
        emissionsUnit="kg CO2eq",
        method=run.get("carbon_method") if measured else None,
        note=None if measured else "not measured for this training run",
    )


def openlineage_events(document: dict[str, Any]) -> list[dict[str, Any]]:
    """START and COMPLETE events of the training run, then of each audit run, in time order per run."""
    model = document["model_version"]
    data = document["dataset_version"]
    run = document["training_run"]
    dataset = {"namespace": NAMESPACE, "name": data["content_hash"], "facets": {}, "inputFacets": {}}
    output = {"namespace": NAMESPACE, "name": model["version_id"], "facets": {}, "outputFacets": {}}
    events: list[dict[str, Any]] = []

    run_facets: dict[str, Any] = {"recgov_carbon": carbon_facet(run)}
    train_id = run_uuid("train", run["id"], model["version_id"])
    events.append(_event("train", "START", run["started_at"], train_id, {}, [dataset], []))
    events.append(_event("train", "COMPLETE", run["ended_at"], train_id, run_facets, [dataset], [output]))

    for audit in document["audit_runs"]:
        summary = audit.get("summary") or {}
        audit_id = run_uuid("audit", audit["id"], model["version_id"])
        policy = _facet("policy", pack=audit["policy_pack"], version=audit["policy_version"], hash=audit["policy_hash"])
        outcome = _facet(
            "audit",
            verdict=audit["verdict"],
            counts=summary.get("counts", {}),
            enforced=summary.get("enforced"),
            resultsSha256=summary.get("results_sha256"),
        )
        model_input = {"namespace": NAMESPACE, "name": model["version_id"], "facets": {}, "inputFacets": {}}
        events.append(
            _event(
                "audit", "START", audit["started_at"], audit_id, {"recgov_policy": policy}, [dataset, model_input], []
            )
        )
        events.append(
            _event(
                "audit",
                "COMPLETE",
                audit["ended_at"],
                audit_id,
                {"recgov_policy": policy, "recgov_audit": outcome},
                [dataset, model_input],
                [output],
            )
        )
    return events


def write_jsonl(events: list[dict[str, Any]], path: str | Path) -> Path:
    """Write one event per line (UTF-8) and return the path."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(event, sort_keys=True, allow_nan=False) + "\n")
    return path
