"""The health of an iterative training run: its loss trajectory, its gradient norms, and whether it went unstable.

A gradient-trained model (the neural families of :mod:`recommender.families`)
records, for every epoch, the mean training loss and the mean and largest
gradient norm of its steps (:class:`TrainingLog`). :func:`check_training`
reads the record and names the first sign of instability:

* ``non_finite``: a loss or a gradient norm is NaN or infinite;
* ``exploding_gradients``: a step's gradient norm exceeds ``max_grad_norm``, or
  grows more than ``grad_growth`` times the first epoch's median norm;
* ``loss_divergence``: the epoch loss exceeds ``divergence_factor`` times the
  first epoch's, or rises above the best loss so far (by more than
  ``rise_tolerance``) for ``rise_patience`` epochs in a row.

The thresholds are generous on purpose: a healthy run on sampled negatives is
noisy, and a false alarm stops a training. An unstable run raises
:class:`TrainingInstabilityError` (the default) or is flagged in the log
(``on_instability="flag"``), so a pipeline can record it and refuse to deploy.

Pure numpy: nothing here needs a deep-learning library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recommender.errors import RecgovError

__all__ = ["HealthConfig", "Instability", "TrainingInstabilityError", "TrainingLog", "check_training"]


class HealthConfig(BaseModel):
    """When a training run counts as unstable, and what happens then."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_grad_norm: float = Field(1e4, gt=0)
    """A step whose gradient norm exceeds this is exploding, whatever the first epoch did."""
    grad_growth: float = Field(1e3, gt=1)
    """A step whose gradient norm exceeds this many times the first epoch's median is exploding."""
    divergence_factor: float = Field(3.0, gt=1)
    """An epoch loss above this many times the first epoch's is divergence."""
    rise_tolerance: float = Field(0.1, ge=0)
    """A rise of the epoch loss above the best so far by more than this share counts as a rise."""
    rise_patience: int = Field(3, ge=1)
    """This many rising epochs in a row is divergence."""
    on_instability: Literal["raise", "flag"] = "raise"
    """``raise``: :class:`TrainingInstabilityError`; ``flag``: keep the model, mark the log unstable."""


@dataclass(frozen=True)
class Instability:
    """The first sign of instability of a run."""

    kind: Literal["non_finite", "exploding_gradients", "loss_divergence"]
    epoch: int
    """0-based epoch where it showed."""
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"kind": self.kind, "epoch": self.epoch, "detail": self.detail}


@dataclass
class TrainingLog:
    """Per-epoch loss and gradient norms of one training run."""

    losses: list[float] = field(default_factory=list)
    """Mean loss of the epoch's steps."""
    grad_norm_mean: list[float] = field(default_factory=list)
    """Mean of the steps' total gradient L2 norms (before any clipping)."""
    grad_norm_max: list[float] = field(default_factory=list)
    """Largest step gradient norm of the epoch."""
    first_epoch_median_norm: float | None = None
    """Median step gradient norm of the first epoch (the reference for growth)."""
    steps: int = 0
    instability: Instability | None = None
    stopped_early: bool = False
    """True when training stopped at the first sign of instability."""

    @property
    def unstable(self) -> bool:
        """Whether :func:`check_training` found instability."""
        return self.instability is not None

    def add_epoch(self, step_losses: np.ndarray, step_norms: np.ndarray) -> None:
        """Record an epoch from its steps' losses and gradient norms."""
        step_losses = np.asarray(step_losses, dtype=np.float64)
        step_norms = np.asarray(step_norms, dtype=np.float64)
        self.losses.append(float(step_losses.mean()) if len(step_losses) else math.nan)
        self.grad_norm_mean.append(float(step_norms.mean()) if len(step_norms) else math.nan)
        self.grad_norm_max.append(float(step_norms.max()) if len(step_norms) else math.nan)
        if self.first_epoch_median_norm is None and len(step_norms):
            self.first_epoch_median_norm = float(np.median(step_norms))
        self.steps += len(step_losses)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite figures as strings, which JSON cannot hold)."""

        def num(values: list[float]) -> list[float | str]:
            return [round(v, 6) if math.isfinite(v) else str(v) for v in values]

        return {
            "epochs": len(self.losses),
            "steps": self.steps,
            "loss": num(self.losses),
            "grad_norm_mean": num(self.grad_norm_mean),
            "grad_norm_max": num(self.grad_norm_max),
            "unstable": self.unstable,
            "instability": self.instability.to_dict() if self.instability else None,
            "stopped_early": self.stopped_early,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> TrainingLog:
        """The log :meth:`to_dict` wrote (for a saved model)."""

        def num(values: list[Any]) -> list[float]:
            return [float(v) for v in values]

        inst = doc.get("instability")
        log = cls(
            losses=num(doc["loss"]),
            grad_norm_mean=num(doc["grad_norm_mean"]),
            grad_norm_max=num(doc["grad_norm_max"]),
            steps=int(doc["steps"]),
            stopped_early=bool(doc.get("stopped_early", False)),
        )
        if inst:
            log.instability = Instability(inst["kind"], int(inst["epoch"]), str(inst["detail"]))
        return log


class TrainingInstabilityError(RecgovError, RuntimeError):
    """A training run went unstable; ``log`` holds its record up to the failure."""

    def __init__(self, message: str, log: TrainingLog) -> None:
        super().__init__(message)
        self.log = log


def check_training(log: TrainingLog, config: HealthConfig | None = None) -> Instability | None:
    """The first sign of instability in ``log``'s last epoch (the one just recorded), or None.

    Each step is tested through the epoch's largest gradient norm; the loss
    through the epoch means.
    """
    config = config or HealthConfig()
    epoch = len(log.losses) - 1
    if epoch < 0:
        return None
    loss, norm_max = log.losses[epoch], log.grad_norm_max[epoch]
    if not math.isfinite(loss) or not math.isfinite(norm_max):
        return Instability("non_finite", epoch, f"epoch {epoch}: loss {loss}, largest gradient norm {norm_max}")
    if norm_max > config.max_grad_norm:
        return Instability(
            "exploding_gradients", epoch, f"epoch {epoch}: a gradient norm of {norm_max:.4g} exceeds the limit {config.max_grad_norm:.4g}"
        )
    reference = log.first_epoch_median_norm
    if reference is not None and reference > 0 and norm_max > config.grad_growth * reference:
        return Instability(
            "exploding_gradients",
            epoch,
            f"epoch {epoch}: a gradient norm of {norm_max:.4g} is {norm_max / reference:.4g}x the first epoch's median "
            f"{reference:.4g} (limit {config.grad_growth:g}x)",
        )
    first = log.losses[0]
    if epoch > 0 and first > 0 and loss > config.divergence_factor * first:
        return Instability(
            "loss_divergence", epoch, f"epoch {epoch}: loss {loss:.4g} is over {config.divergence_factor:g}x the first epoch's {first:.4g}"
        )
    if epoch >= config.rise_patience:
        window = log.losses[epoch - config.rise_patience + 1 : epoch + 1]
        best_before = min(log.losses[: epoch - config.rise_patience + 1])
        if best_before > 0 and all(value > (1 + config.rise_tolerance) * best_before for value in window):
            return Instability(
                "loss_divergence",
                epoch,
                f"epochs {epoch - config.rise_patience + 1}-{epoch}: loss stayed over {1 + config.rise_tolerance:g}x "
                f"the best earlier loss {best_before:.4g} (last {loss:.4g})",
            )
    return None
