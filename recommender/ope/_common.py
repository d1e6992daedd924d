"""What every off-policy estimator returns, and the pieces they share: weights, overlap, the bootstrap.

Every estimator here reduces to a ratio of per-context sums, ``sum(num) / sum(den)``
(``den`` is all ones for the plain means), so one seeded bootstrap serves them all:
it resamples contexts (the unit the logs are independent in), never positions or
items of one slate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from recommender.errors import ConfigError, DataError, RecgovError

__all__ = [
    "DEFAULT_MIN_ESS",
    "Estimate",
    "OverlapError",
    "effective_sample_size",
]

DEFAULT_MIN_ESS = 30.0
"""The effective sample size below which an estimate is refused unless the caller declares another floor."""
SUPPORT_TOL = 1e-12
"""Target probability on what the logger could not produce, above which overlap has failed (rounding stays below)."""
_BOOTSTRAP_CELLS = 4_000_000
"""How many resampling counts one bootstrap chunk holds at most (memory stays bounded for large logs)."""


class OverlapError(RecgovError, ValueError):
    """The target policy cannot be evaluated from these logs (raised by :meth:`Estimate.require`)."""


@dataclass(frozen=True)
class Estimate:
    """One off-policy estimate of a target policy's mean reward per context.

    A refused estimate has ``refused=True``, ``value`` and the interval None, and
    ``reason`` says why in plain language; its ``ess`` and ``max_weight`` are still
    reported when they could be computed, so the refusal can be checked.
    """

    estimator: str
    """``ips``, ``snips``, ``dm``, ``dr``, ``slate_standard_ips``, ``slate_independent_ips``,
    ``slate_cascade_ips`` or ``slate_pseudo_inverse``."""
    value: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float
    ess: float | None
    """Effective sample size of the importance weights, ``(sum w)^2 / sum w^2`` (Kong 1992); ``n`` for the DM."""
    max_weight: float | None
    n: int
    refused: bool = False
    reason: str | None = None
    n_bootstrap: int = 0
    seed: int | None = None

    def require(self) -> Estimate:
        """This estimate, or :class:`OverlapError` with its reason if it was refused."""
        if self.refused:
            raise OverlapError(f"{self.estimator}: {self.reason}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (floats rounded to 9 significant digits)."""
        out = asdict(self)
        for key in ("value", "ci_low", "ci_high", "ess", "max_weight"):
            if out[key] is not None:
                out[key] = float(f"{out[key]:.9g}")
        return out


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size of importance weights: ``(sum w)^2 / sum w^2`` (0 when every weight is 0)."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    sq = float(np.dot(w, w))
    return 0.0 if sq == 0.0 else float(w.sum()) ** 2 / sq


def plain(value: Any) -> Any:
    """``value`` as the Python number it holds when it is a numpy scalar: a message says ``1.5``, not ``np.float64(1.5)``."""
    return value.item() if isinstance(value, np.generic) else value


def as_vector(values: Any, name: str, n: int | None = None) -> np.ndarray:
    """``values`` as a finite float vector (of length ``n`` when given); a located :class:`DataError` otherwise."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise DataError(f"{name} must be one value per context (a 1-d array), got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise DataError(f"{name} has {len(arr)} values, expected {n} (one per context)")
    bad = np.flatnonzero(~np.isfinite(arr))
    if len(bad):
        raise DataError(f"{name} must be finite; context {int(bad[0])} holds {plain(arr[bad[0]])}")
    return arr


def as_matrix(values: Any, name: str, n: int, ndim: int = 2) -> np.ndarray:
    """``values`` as a finite float array with ``n`` rows (one per context)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != ndim or arr.shape[0] != n:
        raise DataError(f"{name} must be a {ndim}-d array with one row per context ({n}), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        row = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise DataError(f"{name} must be finite; context {row} holds a non-finite value")
    return arr


def probabilities(values: Any, name: str, n: int | None = None, *, positive: bool = False) -> np.ndarray:
    """A vector of probabilities in [0, 1] (in (0, 1] with ``positive``), located when not."""
    arr = as_vector(values, name, n)
    low = (arr <= 0) if positive else (arr < 0)
    bad = np.flatnonzero(low | (arr > 1 + 1e-9))
    if len(bad):
        need = "in (0, 1]" if positive else "in [0, 1]"
        raise DataError(f"{name} must be probabilities {need}; context {int(bad[0])} holds {plain(arr[bad[0]])!r}")
    return arr


def check_settings(n_bootstrap: int, confidence: float, min_ess: float, seed: int = 0) -> None:
    """The bootstrap and refusal settings every estimator takes, checked once (the seed as
    ``numpy.random.default_rng`` takes it: an int >= 0)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be an int >= 0, got {plain(seed)!r}")
    if not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ConfigError(f"n_bootstrap must be an int >= 0, got {plain(n_bootstrap)!r}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {plain(confidence)!r}")
    if not np.isfinite(min_ess) or min_ess < 0:
        raise ConfigError(f"min_ess must be a number >= 0, got {plain(min_ess)!r}")


def bootstrap_ratio(
    num: np.ndarray, den: np.ndarray | None, *, n_bootstrap: int, seed: int, confidence: float
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of ``sum(num) / sum(den)`` over contexts resampled with replacement.

    Seeded (``numpy.random.default_rng(seed)``): the same inputs give the same interval.
    Resamples whose denominator is 0 (possible for self-normalised IPS) are dropped.
    """
    n = len(num)
    if n_bootstrap == 0 or n == 0:
        return None, None
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CELLS // n)
    stats = []
    done = 0
    while done < n_bootstrap:
        size = min(chunk, n_bootstrap - done)
        idx = rng.integers(0, n, size=(size, n))
        top = num[idx].sum(axis=1)
        bottom = den[idx].sum(axis=1) if den is not None else np.full(size, float(n))
        ok = bottom != 0
        stats.append(top[ok] / bottom[ok])
        done += size
    values = np.concatenate(stats)
    if len(values) == 0:
        return None, None
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def finish(
    estimator: str,
    num: np.ndarray,
    den: np.ndarray | None,
    weights: np.ndarray,
    *,
    n_bootstrap: int,
    seed: int,
    confidence: float,
    min_ess: float,
    refusal: str | None = None,
    check_ess: bool = True,
    ess: float | None = None,
) -> Estimate:
    """The :class:`Estimate` of ``sum(num) / sum(den)``, refused for ``refusal`` or an effective sample size below ``min_ess``."""
    n = len(num)
    if ess is None:
        ess = effective_sample_size(weights) if len(weights) else 0.0
    max_w = float(np.max(np.abs(weights))) if len(weights) else None
    common = {"estimator": estimator, "confidence": confidence, "ess": ess, "max_weight": max_w, "n": n, "seed": seed}
    if n == 0:
        refusal = refusal or "no logged contexts to estimate from"
    if refusal is None and check_ess and ess < min_ess:
        refusal = (
            f"effective sample size {ess:.1f} is below the declared floor {min_ess:g}: the target policy "
            f"puts its mass where the logger rarely did (largest weight {max_w:.3g}), so the estimate would rest on a few contexts"
        )
    if refusal is not None:
        return Estimate(value=None, ci_low=None, ci_high=None, refused=True, reason=refusal, **common)
    bottom = float(den.sum()) if den is not None else float(n)
    if bottom == 0:
        return Estimate(value=None, ci_low=None, ci_high=None, refused=True, reason="every importance weight is 0: the logs never show what the target policy does", **common)
    value = float(num.sum()) / bottom
    low, high = bootstrap_ratio(num, den, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence)
    return Estimate(value=value, ci_low=low, ci_high=high, n_bootstrap=n_bootstrap, **common)


def unsupported_reason(mass: np.ndarray, what: str) -> str | None:
    """The refusal when the target puts probability on what the logger could not produce, else None."""
    bad = mass > SUPPORT_TOL
    if not bad.any():
        return None
    return (
        f"overlap fails: in {int(bad.sum())} of {len(mass)} contexts the target policy puts probability "
        f"(up to {float(mass.max()):.3g}) on {what} the logging policy gave probability 0, so no reweighting of the logs "
        "can show what it would do there (a deterministic logger gives every other choice probability 0)"
    )
