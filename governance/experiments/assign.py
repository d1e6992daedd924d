"""Which variant serves a subject: deterministic, consent-aware, recorded with the list.

A subject's bucket is ``HMAC-SHA256(salt, subject id)`` read as a number in
[0, 1): the same subject always lands in the same variant of an experiment, and
another experiment (another salt) shuffles subjects independently. The id is
hashed where the request is read and never stored; the decision record carries
the subject's pseudonym with ``{"id", "variant", "reason"}`` in its context.

Reasons: ``randomised`` (in the analysis), ``holdback`` (the long-term holdback:
served the control, left out of the analysis), ``not_profiled`` (a subject who
may not be profiled is never randomised into a personalised variant: they get
the control's non-profiling list and are counted as such, outside the analysis)
and ``arm_refused`` (the arm could not serve as the plan froze it: its pack no
longer has the pinned content, or does not admit the model the arm would serve;
the subject got the list a request outside the experiment gets, and is left out
of the analysis: see :mod:`governance.api.services.experiments`).

After an experiment stops, a plan with ``holdback_days`` keeps its holdback
(:class:`InForce`): the subjects whose bucket put them in the holdback are
still served the control, under the same salt, so they are the same subjects;
everyone else leaves the experiment (or enters the next one, which never takes
a subject another experiment still holds back).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ASSIGNMENT_REASONS", "InForce", "RunningExperiment", "assign", "assign_in_force", "bucket"]

ASSIGNMENT_REASONS = ("randomised", "holdback", "not_profiled", "arm_refused")


@dataclass(frozen=True)
class RunningExperiment:
    """What serving needs of the experiment in force (read once per plan, see :func:`from_row`)."""

    id: int
    name: str
    salt: bytes
    variants: tuple[dict[str, Any], ...]
    """Each ``{"name", "control", "model_version", "pack"}``, in plan order."""
    allocation: tuple[tuple[str, float], ...]
    holdback: float
    pins: Mapping[str, str] = field(default_factory=dict)
    """Variant name -> the content hash of its pack, frozen with the plan (``pack_pins``; none in plans frozen before)."""

    @classmethod
    def from_row(cls, id_: int, name: str, plan: dict[str, Any], salt_hex: str) -> RunningExperiment:
        spec = plan["spec"]
        return cls(
            id=id_, name=name, salt=bytes.fromhex(salt_hex), variants=tuple(spec["variants"]),
            allocation=tuple((v["name"], float(spec["allocation"][v["name"]])) for v in spec["variants"]),
            holdback=float(spec.get("holdback", 0.0)),
            pins={name: pin["content_hash"] for name, pin in (plan.get("pack_pins") or {}).items()},
        )  # fmt: skip

    @property
    def control(self) -> dict[str, Any]:
        return next(v for v in self.variants if v["control"])

    def variant(self, name: str) -> dict[str, Any]:
        return next(v for v in self.variants if v["name"] == name)


def bucket(salt: bytes, subject_id: str) -> float:
    """The subject's fixed number in [0, 1) under ``salt``."""
    digest = hmac.new(salt, str(subject_id).encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(experiment: RunningExperiment, subject_id: str, *, may_profile: bool) -> dict[str, Any]:
    """The subject's ``{"id", "variant", "reason"}`` (see the module doc)."""
    control = experiment.control["name"]
    if not may_profile:
        return {"id": experiment.id, "variant": control, "reason": "not_profiled"}
    u = bucket(experiment.salt, subject_id)
    if u < experiment.holdback:
        return {"id": experiment.id, "variant": control, "reason": "holdback"}
    u = (u - experiment.holdback) / (1.0 - experiment.holdback)
    edge = 0.0
    for name, share in experiment.allocation:
        edge += share
        if u < edge:
            return {"id": experiment.id, "variant": name, "reason": "randomised"}
    return {"id": experiment.id, "variant": experiment.allocation[-1][0], "reason": "randomised"}  # rounding at the top edge


@dataclass(frozen=True)
class InForce:
    """The experiments serving must honour: the running one (if any) and the stopped ones still holding back."""

    running: RunningExperiment | None
    holdbacks: tuple[RunningExperiment, ...] = ()


def assign_in_force(in_force: InForce, subject_id: str, *, may_profile: bool) -> tuple[RunningExperiment, dict[str, Any]] | None:
    """The experiment and assignment that serve the subject, or None when no experiment takes them.

    A subject in a stopped experiment's holdback stays there (reason ``holdback``, the control); otherwise the
    running experiment assigns them (:func:`assign`). A subject who may not be profiled was never in a holdback.
    """
    if may_profile:
        for held in in_force.holdbacks:
            if bucket(held.salt, subject_id) < held.holdback:
                return held, {"id": held.id, "variant": held.control["name"], "reason": "holdback"}
    if in_force.running is None:
        return None
    return in_force.running, assign(in_force.running, subject_id, may_profile=may_profile)
