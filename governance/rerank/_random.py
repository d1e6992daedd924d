"""Counter-based randomness: reproducible per user, vectorized over users.

Every draw is a SplitMix64 hash of ``(user seed, step seed, stream, counter)``,
so a user's draws depend only on their own seed and the step's
``random_state``, never on the other users in the batch or on chunking, and no
per-user generator object is needed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["uniform"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finalizer (uint64 in, uint64 out; wraps modulo 2**64)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def uniform(user_seeds: np.ndarray, random_state: int, stream: int, width: int) -> np.ndarray:
    """``(n_users, width)`` floats in ``[0, 1)``, one independent stream per user.

    ``stream`` separates the draws a step makes for different purposes.
    """
    with np.errstate(over="ignore"):
        key = _mix(
            np.atleast_1d(np.asarray(user_seeds, dtype=np.uint64)) + _mix(np.array([random_state], dtype=np.uint64))
        )
        key = _mix(key ^ (np.uint64(stream) * _GOLDEN))
        counter = (np.arange(1, width + 1, dtype=np.uint64) * _GOLDEN)[None, :]
        bits = _mix(key[:, None] + counter)
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)
